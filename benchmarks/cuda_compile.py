"""CUDA compile of the issue-4 nets from the corpus: LeNet, ResNet-50, MobileNet v2, SqueezeNet.

    python benchmarks/cuda_compile.py [--nets lenet,resnet50,mobilenet_v2,squeezenet] [--arch sm_80]

Each net (batch 1, random He weights, the final softmax kept) is built with
`build_tvm(graph, "cuda")`: lowering, dlight + cococ schedules, TVM's CUDA codegen, then nvcc
on the generated source (fatbin for --arch). The table gives, per net: layers of the graph,
kernels (PrimFuncs after fusion; identical kernels are shared), kernel calls in the Relax main,
`__global__` functions defined in the CUDA source, lines of CUDA, TVM's time (lower +
schedule + codegen), nvcc's time, the whole build, the sizes of model.so and kernels.fatbin,
and which schedule rule took how many kernels. Nothing runs on a GPU here: this measures
compilation only. Writes docs/benchmarks/cuda-compile.json and the section of docs/performance.md.
"""
from __future__ import annotations

import argparse
import re
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from report import markdown_table, write_section  # noqa: E402

CORPUS = ROOT.parent / "shared" / "corpus" / "prototxt"
NETS = {
    "lenet": CORPUS / "bvlc_caffe/examples/mnist/lenet.prototxt",
    "resnet50": CORPUS / "deep-residual-networks/prototxt/ResNet-50-deploy.prototxt",
    "mobilenet_v2": CORPUS / "MobileNet-Caffe/mobilenet_v2_deploy.prototxt",
    "squeezenet": CORPUS / "SqueezeNet/SqueezeNet_v1.1/deploy.prototxt",
}


def load(net: str):
    """The net at batch 1 (Caffe deploy files often say batch 10), shapes inferred."""
    import cococ
    from cococ.ir.verify import infer_shapes
    g = cococ.load(NETS[net], init="random", seed=0)
    for layer in g.layers:
        if layer.op == "input":
            layer.attrs["shape"][0] = 1
    for v in g.values():
        v.type = None
    infer_shapes(g)
    return g


def kernel_facts(graph, target_obj) -> tuple[Counter, int]:
    """How many kernels each CUDA schedule rule takes (schedule_cuda.RULES order), and how many
    kernel calls `main` makes (a kernel shared by identical layers is called once per layer)."""
    from cococ.backends.tvm.lower import lower_graph
    from cococ.backends.tvm.schedule_cuda import rule_names
    from cococ.backends.kernels.compute import LowerCtx
    mod = lower_graph(graph, LowerCtx(oc_block=1))
    return Counter(rule_names(mod, target_obj).values()), mod["main"].script().count("R.call_tir(")


def measure(net: str, arch: str) -> dict:
    from cococ.backends.tvm import build_tvm
    from cococ.backends.tvm.build import tvm_target
    from cococ.ir.target import get_target
    graph = load(net)
    target = get_target("cuda", {"arch": arch})
    t0 = time.perf_counter()
    art = build_tvm(graph, target)
    wall = time.perf_counter() - t0
    bt = art.manifest["build_times"]
    src = art.cuda_source()
    rules, calls = kernel_facts(graph, tvm_target(target))
    return {
        "layers": sum(l.op != "input" for l in graph.layers), "kernels": art.manifest["kernels"], "kernel_calls": calls,
        "global_functions": len(re.findall(r"__global__[^;{]*\{", src)),  # definitions, not declarations
        "cuda_lines": src.count("\n") + 1,
        "tvm_s": bt["lower_s"] + bt["schedule_s"] + bt["codegen_s"], "nvcc_s": bt["nvcc_s"], "build_s": wall,
        "model_so_bytes": (art.dir / "model.so").stat().st_size,
        "fatbin_bytes": (art.dir / "kernels.fatbin").stat().st_size,
        "rules": dict(rules.most_common()), "build_times": bt,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nets", default=",".join(NETS))
    ap.add_argument("--arch", default="sm_80")
    args = ap.parse_args(argv)
    if shutil.which("nvcc") is None:
        print("nvcc is not on PATH: the cuda build needs it", file=sys.stderr)
        return 2
    rows, data = [], {"arch": args.arch, "nets": {}}
    for net in args.nets.split(","):
        if not NETS[net].exists():
            print(f"{net}: corpus file {NETS[net]} not present, skipped", file=sys.stderr)
            continue
        d = measure(net, args.arch)
        data["nets"][net] = d
        print(net, d, flush=True)
        mib = lambda b: f"{b / 2**20:.2f}"  # noqa: E731
        rows.append([net, d["layers"], d["kernels"], d["kernel_calls"], d["global_functions"], d["cuda_lines"], d["tvm_s"],
                     d["nvcc_s"], d["build_s"], mib(d["model_so_bytes"]), mib(d["fatbin_bytes"]),
                     ", ".join(f"{k} {n}" for k, n in d["rules"].items())])
    headers = ["net", "layers", "kernels", "kernel calls", "`__global__`", "CUDA lines", "TVM s", "nvcc s", "build s",
               "model.so MiB", "fatbin MiB", "schedule rules (kernels)"]
    body = (f"## CUDA compile\n\n`benchmarks/cuda_compile.py`: `build_tvm(graph, \"cuda\")`, batch 1, "
            f"random weights, arch {args.arch}. kernels = fused PrimFuncs (identical ones shared); kernel calls = "
            "call_tir in the Relax main (one per fused group); "
            "`__global__` = functions defined in the generated CUDA; TVM s = lower + schedule + codegen; nvcc s = nvcc "
            "on the whole source (fatbin); build s = all of build_tvm (with export). model.so holds the "
            "weights. Compile only: no GPU ran these kernels. Timings on a shared 2-core machine vary "
            "with load.\n\n" + markdown_table(headers, rows))
    write_section("cuda-compile", body, data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
