"""x86 latency of cococ-compiled nets vs onnxruntime on the same ONNX export (issue 4, benchmark a).

    python benchmarks/x86_vs_onnxruntime.py [--nets resnet50,mobilenet_v2,squeezenet]
        [--threads 2] [--runs 20] [--tune N] [--tuning-dir DIR]

Each net comes from the corpus prototxt with random (He) weights, batch 1. The same graph is
exported with cococ.to_onnx and run by onnxruntime (CPU provider, intra-op threads = --threads,
one inter-op thread, all graph optimizations), and built by cococ for x86 (TVM thread pool =
--threads). Both are timed over --runs runs after a warm-up; the table gives medians and the
ratio cococ / onnxruntime (below 1: cococ is faster). Outputs are compared (max |diff| of the
logits) so a fast wrong kernel cannot hide. --tune N adds a MetaSchedule-tuned build (N trials
per kernel; the database is kept in --tuning-dir, default benchmarks/.tuning/NET, so a rerun
reuses it). Writes docs/benchmarks/x86-vs-onnxruntime.json and the section of docs/performance.md.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from report import markdown_table, write_section  # noqa: E402

CORPUS = Path("/work/shared/corpus/prototxt")
NETS = {
    "resnet50": CORPUS / "deep-residual-networks/prototxt/ResNet-50-deploy.prototxt",
    "mobilenet_v2": CORPUS / "MobileNet-Caffe/mobilenet_v2_deploy.prototxt",
    "squeezenet": CORPUS / "SqueezeNet/SqueezeNet_v1.1/deploy.prototxt",
}


def load(net: str):
    import cococ
    from cococ.ir.verify import infer_shapes
    g = cococ.load(NETS[net], init="random", seed=0)
    for layer in g.layers:  # Caffe deploy files often say batch 10; the benchmark is batch 1
        if layer.op == "input":
            layer.attrs["shape"][0] = 1
    for v in g.values():
        v.type = None
    infer_shapes(g)
    last = g.layers[-1]
    if last.op == "softmax":  # random weights saturate softmax; compare (and time) the logits
        g.outputs = [last.inputs[0]]
        g.layers = g.layers[:-1]
    return g


def time_ort(graph, x: np.ndarray, threads: int, runs: int):
    import onnxruntime as ort
    from cococ.backends.onnx_export import to_onnx
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(to_onnx(graph).SerializeToString(), so, providers=["CPUExecutionProvider"])
    feed = {sess.get_inputs()[0].name: x}
    y = sess.run(None, feed)[0]
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        sess.run(None, feed)
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), y


def time_cococ(graph, x: np.ndarray, threads: int, runs: int, **build_opts):
    from cococ.backends.tvm import build_tvm
    t0 = time.perf_counter()
    art = build_tvm(graph, "x86", threads=threads, **build_opts)
    build_s = time.perf_counter() - t0
    y = art.run(x)[graph.outputs[0].name]
    return art.bench(runs, x)["median_s"], y, build_s, art.manifest.get("tuned_kernels", 0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nets", default=",".join(NETS))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--tune", type=int, default=0, help="MetaSchedule trials per kernel (0: untuned only)")
    ap.add_argument("--tuning-dir", default=str(ROOT / "benchmarks" / ".tuning"))
    args = ap.parse_args(argv)
    from cococ.backends.tvm.artifact import set_threads
    set_threads(args.threads)
    rows, data = [], {"threads": args.threads, "runs": args.runs, "tune": args.tune, "nets": {}}
    for net in args.nets.split(","):
        graph = load(net)
        x = np.random.default_rng(0).standard_normal(graph.inputs[0].type.shape).astype(np.float32)
        ort_s, y_ort = time_ort(graph, x, args.threads, args.runs)
        c_s, y_c, build_s, _ = time_cococ(graph, x, args.threads, args.runs)
        d = {"ort_ms": ort_s * 1e3, "cococ_ms": c_s * 1e3, "ratio": c_s / ort_s, "build_s": build_s,
             "max_abs_diff": float(np.abs(y_c - y_ort).max()), "max_abs_logit": float(np.abs(y_ort).max())}
        row = [net, d["ort_ms"], d["cococ_ms"], d["ratio"], d["build_s"]]
        if args.tune:
            t_s, y_t, tb_s, n_tuned = time_cococ(graph, x, args.threads, args.runs, tune=args.tune,
                                                 tuning_dir=str(Path(args.tuning_dir) / net))
            d.update(tuned_ms=t_s * 1e3, tuned_ratio=t_s / ort_s, tuned_build_s=tb_s, tuned_kernels=n_tuned,
                     tuned_max_abs_diff=float(np.abs(y_t - y_ort).max()))
            row += [d["tuned_ms"], d["tuned_ratio"], d["tuned_build_s"]]
        row.append(f"{d['max_abs_diff']:.2g} / {d['max_abs_logit']:.3g}")
        rows.append(row)
        data["nets"][net] = d
        print(net, {k: round(v, 4) if isinstance(v, float) else v for k, v in d.items()}, flush=True)
    headers = ["net", "onnxruntime ms", "cococ ms", "ratio", "build s"]
    if args.tune:
        headers += [f"tuned ({args.tune}/kernel) ms", "tuned ratio", "tune+build s"]
    headers.append("max |diff| / max |logit|")
    body = (f"## x86 vs onnxruntime (issue 4, benchmark a)\n\n`benchmarks/x86_vs_onnxruntime.py`: batch 1, random "
            f"weights, {args.threads} threads each, median of {args.runs} runs; ratio = cococ / onnxruntime "
            "(< 1: cococ faster). Same ONNX export (cococ.to_onnx) for onnxruntime. Both run in one process, "
            "one after the other, so machine load affects both; compare ratios more than milliseconds.\n\n"
            + markdown_table(headers, rows))
    write_section("x86-vs-onnxruntime", body, data)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
