"""ResNet-8 (MLPerf Tiny IC) co-design for the Cortex-M4 on Fashion-MNIST (issue 15 item 5).

The network is mlcommons/tiny's IC ResNet-8 unchanged (benchmarks/mlperf_tiny_models.ResNet8:
16/32/64 filters, BatchNorm, 3x32x32 input, softmax). Fashion-MNIST's 28x28 grey images are
padded to 32x32 and the grey channel repeated three times (runtime/data.py does both for a
3x32x32 input). examples/ic_resnet8/ holds it as a Caffe prototxt, its solvers, the trained
weights and the trained network as ONNX (benchmarks/resnet8_model.py; `--write-prototxt`,
`--export-onnx`).

Four methods, each in a process of its own, every result built `--target=arm-m4 --quantize
int8` (the CLI's default pipeline, canonicalize, then int8 calibrated on 64 training images):

    dense     the trained network;
    auto      `--prune auto`'s method on arm-m4 (Scalpel's SIMD-group weight pruning against the
              int8 sparse kernels, width 4), at most `--max-drop` points under dense, with a
              schedule sized to the time (`--auto-steps`, `--auto-layers`, `--auto-backoffs`);
    filters   `cococ prune` (Wootz: filter pruning of each module's first conv, composability,
              tuning blocks pre-trained), `min METRIC constraint Accuracy >= t` with t the dense
              network's validation accuracy minus `--filter-drop` points;
    combined  the filters result, then `--prune auto` with what is left of `--max-drop`.

Every accept/undo and search decision reads the 5,000-image validation split; the test set is
read only for the reported accuracies. Each chosen network is built in a fresh process
(`--build`): estimated cycles of one emulated inference, flash and SRAM from report.json, int8
top-1 of the ELF itself on the emulated M4 over the first `--device-images` test images (and
float32 top-1 on the same images and on the whole test set).

    python benchmarks/resnet8_codesign.py            # the defaults: the published run's budgets
    python benchmarks/resnet8_codesign.py --resume --methods combined --auto-layers 2   # more later
    python benchmarks/resnet8_codesign.py --quick --no-write      # tiny net and budgets (the test)
    python benchmarks/resnet8_codesign.py --render --work DIR     # rewrite the section from a run
    python benchmarks/resnet8_codesign.py --rebuild --work DIR    # build a run's networks again, render
    python benchmarks/resnet8_codesign.py --export-onnx           # examples/ic_resnet8/*.onnx
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import shlex
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import markdown_table, write_section  # noqa: E402
from resnet8_model import NET, RETRAIN, WEIGHTS, export_onnx, write_prototxt  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SECTION = "resnet8-codesign"
METHODS = ("dense", "auto", "filters", "combined")
# ---- the methods (each `--method NAME`, a process of its own) ----------------------------------

def scalpel(graph, args, max_drop: float, log):
    """`--prune auto` for arm-m4 int8: what prune_for_target runs there (simd_prune against the
    int8 sparse kernels, width 4, decisions on the validation split), on the `--auto-layers`
    conv/dense layers of most MACs, the schedule `--auto-steps`, `--auto-backoffs` back-offs and
    no retry of a failed step (the default, 8 steps with retries on all 10 layers, was on its
    first layer after 15 minutes at one thread on the shared machine: it did not fit the time)."""
    from cococ.frontend.solver import load_solver
    from cococ.passes.simd_group import weight_layers
    from cococ.runtime.compress.scalpel import StepPolicy, simd_prune
    from cococ.runtime.compress.cost import layer_macs
    cand = sorted((l for l in weight_layers(graph, ()) if l.op in ("dense", "conv2d")), key=lambda l: -layer_macs(l))
    names = [l.name for l in cand[:args.auto_layers or None]]
    steps = tuple(float(v) for v in args.auto_steps.split(","))
    g, r = simd_prune(graph, load_solver(RETRAIN), args.data, target="arm-m4", dtype="int8", max_drop=max_drop,
                      steps=steps, retrain_iter=args.retrain_iter, layers=names, seed=args.seed, log=log,
                      policy=StepPolicy(retries=0, backoffs=args.auto_backoffs))
    sg = r.to_dict()
    return g, {"max_drop": max_drop, "retrain_iter": args.retrain_iter, "steps": list(steps), "pruned": names,
               "retrainings": len(sg["steps"]), "layers": {l["layer"]: round(l["sparsity"], 3) for l in sg["layers"]},
               "est_speedup": sg.get("speedup"), "warnings": sg.get("warnings", [])}


def filters(net: Path, weights: Path, dense_val: float, args, out: Path) -> tuple[Path | None, dict]:
    """`cococ prune` as a user runs it; returns (the chosen network's prototxt or None, facts)."""
    t = dense_val - args.filter_drop / 100
    cococ = shutil.which("cococ", path=str(Path(sys.executable).parent)) or "cococ"
    cmd = [cococ, "prune", str(net), "--weights", str(weights), "--sample", str(args.sample), "--rates", args.rates,
           "--objective", f"min {args.filter_metric} constraint Accuracy >= {t:.4f}", "--solver", str(RETRAIN),
           "--steps", str(args.steps), "--pretrain-steps", str(args.pretrain_steps), "--data", args.data,
           "--workers", "1", "--threads", "1", "-o", str(out), "--no-progress"]
    shutil.rmtree(out, ignore_errors=True)    # a run folder of an earlier (--resume) attempt
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    (out.parent / "filters.log").write_text(r.stdout + r.stderr)
    facts = {"command": cmd, "exit": r.returncode, "threshold": t}
    if not (out / "report.json").exists():
        return None, {**facts, "error": (r.stderr.strip().splitlines() or ["no output"])[-1][:300]}
    rep = json.loads((out / "report.json").read_text())
    row = rep["table3"]
    facts.update(answer=row.get("answer comp"), configs=rep.get("configs"), blocks=rep.get("tuning_blocks"),
                 evaluated=len(rep["evaluations"].get("comp", [])), full_accuracy=rep.get("full_accuracy"))
    chosen = out / "pruned.prototxt"
    return (chosen if chosen.exists() and row.get("answer comp") is not None else None), facts


def run_method(method: str, args, work: Path) -> dict:
    """Prune by `method`, pickle the graph for `--build`, return its row (float accuracies)."""
    import torch
    import cococ
    from cococ.runtime.compress.training import accuracy, load_dataset
    torch.set_num_threads(1)
    log = lambda s: print(f"[{method}] {s}", file=sys.stderr, flush=True)  # noqa: E731
    net, weights = nets(args, work)
    t0 = time.perf_counter()
    row: dict = {"method": method}
    graph = cococ.load(net, weights=weights)
    ds = load_dataset(graph, args.data)
    dense_val = accuracy(graph, ds.for_decisions())
    if method == "auto":
        graph, row["auto"] = scalpel(graph, args, args.max_drop, log)
    elif method in ("filters", "combined"):   # combined starts from the filters run's answer
        chosen, row["filters"] = (filters(net, weights, dense_val, args, work / "filters") if method == "filters"
                                  else chosen_of(work))
        if chosen is None:
            return {**row, "error": f"cococ prune chose no network: {row['filters'].get('error', 'none met t')}"}
        graph = cococ.load(chosen, weights=chosen.with_suffix(".safetensors"))
        row["filters"]["val"] = accuracy(graph, ds.for_decisions())
        left = args.max_drop - 100 * (dense_val - row["filters"]["val"])
        if method == "combined":
            if left <= 0:
                return {**row, "error": f"no accuracy budget left after filter pruning ({left:.2f} points)"}
            graph, row["auto"] = scalpel(graph, args, left, log)
    row.update(prune_s=time.perf_counter() - t0, val=accuracy(graph, ds.for_decisions()), test=accuracy(graph, ds),
               dense_val=dense_val)
    (work / f"{method}.pkl").write_bytes(pickle.dumps(graph))
    return row


def chosen_of(work: Path) -> tuple[Path | None, dict]:
    """The filters method's answer, for combined."""
    facts = json.loads((work / "filters.json").read_text()).get("filters", {})
    chosen = work / "filters" / "pruned.prototxt"
    return (chosen if facts.get("answer") is not None and chosen.exists() else None), facts


def nets(args, work: Path) -> tuple[Path, Path]:
    """(prototxt, weights): the shipped trained network, or for --quick a 4-filter variant with
    random weights (the structure, not a result)."""
    if not args.quick:
        return NET, WEIGHTS
    net, w = work / "quick.prototxt", work / "quick.safetensors"
    if not net.exists():
        import cococ
        from cococ.runtime.train import save_weights
        write_prototxt(net, filters=4)
        save_weights(cococ.load(net, init="random"), w)
    return net, w


def quick_data(spec: str, work: Path) -> str:
    """--quick: 512 training, 200 validation and 200 test images of `spec` as an .npz."""
    import numpy as np
    from cococ.runtime.data import load_data
    ds = load_data(spec, (1, 3, 32, 32))
    path = work / "quick.npz"
    np.savez(path, x_train=ds.x_train[:512], y_train=ds.y_train[:512], x_val=ds.x_val[:200], y_val=ds.y_val[:200],
             x_test=ds.x_test[:200], y_test=ds.y_test[:200])
    return str(path)


# ---- the build of each result (`--build PKL`, a process of its own) ----------------------------

def build_row(pkl: Path, data: str, n_images: int) -> dict:
    """int8 arm-m4 build of the pickled graph: estimated cycles, flash, SRAM, device top-1."""
    import warnings
    import numpy as np
    from cococ.backends.build import build
    from cococ.passes.pipeline import default_pipeline
    from cococ.ir.target import get_target
    from cococ.passes import run as run_passes
    from cococ.passes.pipeline import parse_pipeline
    from cococ.runtime.data import load_data
    from cococ.runtime.mcu.qeval import calibration_samples
    from cococ.runtime.train import evaluate, logits_value
    from cococ.runtime.torch.module import to_torch
    from scalpel_table3 import step_layers
    graph = run_passes(pickle.loads(pkl.read_bytes()), parse_pipeline(default_pipeline(get_target("arm-m4"))))
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        art = build(graph, "arm-m4", quantize="int8", out_dir=pkl.with_suffix(""),
                    calibration=calibration_samples(graph, data))
    build_s = time.perf_counter() - t0
    rep = art.report
    xs, ys = load_data(data, graph.inputs[0].type.shape).test_arrays()
    art.run({graph.inputs[0].name: xs[:1]})
    prof = art.profile()
    art.emulator()
    n = min(n_images, len(ys))
    dev = np.array([art.device_outputs(x.reshape(-1)).argmax() for x in xs[:n]])
    f32 = evaluate(to_torch(graph, outputs=[logits_value(graph)]), xs[:n], ys[:n])["accuracy"]
    return {"cycles": prof["cycles"], "macs": rep["macs"], "flash": rep["flash"], "sram": rep["sram"],
            "sram_lower_bound": rep["sram_lower_bound"], "memory": rep["memory"], "build_s": build_s,
            "device_top1": float(np.mean(dev == ys[:n])), "f32_top1_same_images": float(f32), "device_images": n,
            "kernels": sorted({s["kernel"] for s in step_layers(art)}),
            "warnings": rep["warnings"] + sorted({str(w.message) for w in caught} - set(rep["warnings"]))}


# ---- the driver ---------------------------------------------------------------------------------

def child(args, flag: list[str], row: Path, log: Path) -> dict:
    """This script with `flag` in a fresh process; its JSON row (or the error it ended with)."""
    cmd = [sys.executable, __file__, *flag, "--row", str(row), *passthrough(args)]
    with open(log, "a") as f:
        r = subprocess.run(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, check=False)
    if r.returncode != 0 or not row.exists():
        tail = log.read_text().strip().splitlines() or ["no output"]
        return {"error": f"exit {r.returncode}: {tail[-1][:300]}"}
    return json.loads(row.read_text())


def passthrough(args) -> list[str]:
    keep = ["--work", str(args.work), "--data", args.data, "--retrain-iter", str(args.retrain_iter),
            "--auto-steps", args.auto_steps, "--auto-layers", str(args.auto_layers),
            "--auto-backoffs", str(args.auto_backoffs), "--max-drop", str(args.max_drop),
            "--filter-drop", str(args.filter_drop), "--filter-metric", args.filter_metric, "--sample",
            str(args.sample), "--rates", args.rates, "--steps", str(args.steps), "--pretrain-steps",
            str(args.pretrain_steps), "--seed", str(args.seed), "--device-images", str(args.device_images)]
    return keep + (["--quick"] if args.quick else [])


def chain(args, work: Path, methods: list[str]) -> list[dict]:
    """Prune by each method in turn (combined starts from filters' answer), each result's build
    starting beside the next method's pruning."""
    def build_of(m, row, t0):
        if "error" not in row:
            row["m4"] = child(args, ["--build", str(work / f"{m}.pkl")], work / f"{m}.build.json", work / f"{m}.log")
        row.update(method=m, wall_s=time.time() - t0)
        (work / f"{m}.row.json").write_text(json.dumps(row, indent=1))
        return row

    with ThreadPoolExecutor(len(methods)) as builds:
        pending = []
        for m in methods:
            t0 = time.time()
            row = child(args, ["--method", m], work / f"{m}.json", work / f"{m}.log")
            pending.append(builds.submit(build_of, m, row, t0))
        return [f.result() for f in pending]


def rebuild(args, work: Path) -> None:
    """--rebuild: each method's chosen network (its .pkl) built again in a fresh process, one after
    the other, with the code as it is now; the pruning facts of the row stay. For a run whose
    builds met a changed backend (the M4 cycles are deterministic: a rebuild only follows the code)."""
    for m in METHODS:
        row_file = work / f"{m}.row.json"
        if not (work / f"{m}.pkl").exists() or not row_file.exists():
            continue
        row = json.loads(row_file.read_text())
        row["m4"] = child(args, ["--build", str(work / f"{m}.pkl")], work / f"{m}.build.json", work / f"{m}.log")
        row_file.write_text(json.dumps(row, indent=1))


def done(work: Path, method: str) -> bool:
    """--resume: `method` finished (pruned and built) in an earlier run into `work`."""
    p = work / f"{method}.row.json"
    return p.exists() and "error" not in (r := json.loads(p.read_text())) and "error" not in r.get("m4", {})


def render(rows: list[dict], runs: list[dict]) -> str:
    args = runs[0]["args"]
    by = {r["method"]: r for r in rows}
    dense = by.get("dense", {}).get("m4", {})
    what = {"dense": "dense int8", "auto": "`--prune auto` (SIMD-group weights)",
            "filters": f"`cococ prune` (filters, `min {args['filter_metric']}`)",
            "combined": "filters, then `--prune auto`"}
    kib = lambda b: f"{b / 1024:.1f}"  # noqa: E731
    body, notes = [], []
    for m in METHODS:
        r = by.get(m)
        if r is None or "error" in r or "error" in r.get("m4", {"error": 1}):
            why = "not run" if r is None else (r.get("error") or r["m4"].get("error", "?"))
            notes.append(f"- {what[m]}: {why}")
            continue
        b = r["m4"]
        body.append([what[m], f"{100 * r['val']:.2f}", f"{100 * r['test']:.2f}",
                     f"{100 * b['device_top1']:.1f} ({100 * b['f32_top1_same_images']:.1f})", f"{b['cycles']:,}",
                     f"{dense['cycles'] / b['cycles']:.2f}×" if dense.get("cycles") else "—",
                     f"{b['cycles'] / b['macs']:.2f}", kib(b["flash"]), kib(b["sram"]),
                     "—" if m == "dense" else f"{r['prune_s'] / 60:.1f}", f"{b['build_s'] / 60:.1f}"])
    n = next((r["m4"]["device_images"] for r in rows if "device_images" in r.get("m4", {})), 0)
    head = ["method", "val top-1 f32 %", "test top-1 f32 %", f"int8 on the M4, first {n} test images % (f32 on them)",
            "est. cycles", "speedup", "cyc/MAC", "flash KiB", "SRAM KiB", "prune min", "build min"]
    detail = []
    for m in ("auto", "combined"):
        a = by.get(m, {}).get("auto")
        if a:
            detail.append(f"- {what[m]}: drop budget {a['max_drop']:.2f} points, group sparsities {a['steps']} on "
                          f"{', '.join(a['pruned'])}, {a['retrainings']} retrainings of {a['retrain_iter']} "
                          f"iterations; sparsity per layer {a['layers']}")
    detail += [f"- {what[m]}: {by[m]['rebuilt']} (the first build: {by[m]['m4_first_build'].get('error', '?')[:160]}…)"
               for m in METHODS if by.get(m, {}).get("rebuilt")]
    f = by.get("filters", {}).get("filters") or by.get("combined", {}).get("filters")
    if f:
        cmd = " ".join(shlex.quote(c) for c in ["cococ", *f["command"][1:]]).replace(str(ROOT) + "/", "")
        detail.append(f"- `cococ prune`: t = {f['threshold']:.4f} (the dense network's validation accuracy minus the "
                      f"filter budget), answer {f.get('answer')}, {f.get('evaluated')} candidates fine-tuned of "
                      f"{f.get('configs')}, {f.get('blocks')} tuning blocks; exit {f['exit']}:\n  `{cmd}`")
    text = (
        "## ResNet-8 (MLPerf Tiny IC) co-design on the M4, Fashion-MNIST (`benchmarks/resnet8_codesign.py`)\n\n"
        "The MLPerf Tiny IC network unchanged (16/32/64 filters, BatchNorm, 3×32×32 input); Fashion-MNIST's "
        "28×28 images padded to 32×32 and the grey channel repeated three times. Trained weights "
        "`examples/ic_resnet8/ic_resnet8_fmnist.safetensors` (command in examples/ic_resnet8/README.md). "
        "Every result built `--target=arm-m4 --quantize int8` (canonicalize, 64 calibration images); cycles are "
        "**emulator estimates** of one inference at 0 wait states; flash and SRAM from report.json (default part "
        "512 KiB / 128 KiB). Decisions on the 5,000-image validation split, test accuracies reported only. "
        f"Budget: {args['max_drop']} points of validation accuracy under dense for `--prune auto` and for the "
        "combination as a whole; each method's schedule is under the table. Each method and each build in its own "
        "process, 1 torch thread.\n\n"
        + (markdown_table(head, body) if body else "(no method finished)") + "\n\n"
        + "\n".join(detail) + ("\n\nNot in the table:\n" + "\n".join(notes) if notes else "") + "\n\n"
        + "; ".join(f"run {i + 1} ({', '.join(r['methods'])}): {r['wall_s'] / 60:.1f} min wall, load average "
                    f"{r['machine']['load_before']:.1f} at the start, {r['machine']['load_after']:.1f} at the end, CPU "
                    f"affinity {r['machine']['affinity']}" for i, r in enumerate(runs))
        + ", on a 2-core machine shared with other jobs. Prune and build minutes are wall times under that load "
        "(methods ran in parallel chains: dense, auto, filters → combined).")
    return text + ("\n\n(`--quick`: a 4-filter net with random weights and tiny budgets; a smoke run, not a result.)"
                   if args.get("quick") else "")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/cococ-resnet8-codesign"))
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--data", default="fashion-mnist")
    ap.add_argument("--retrain-iter", type=int, default=20, help="--prune auto: iterations per retraining")
    ap.add_argument("--auto-steps", default="0.6,0.8,0.9", help="--prune auto: group sparsities tried")
    ap.add_argument("--auto-layers", type=int, default=4, help="--prune auto: only the N layers of most MACs (0: all)")
    ap.add_argument("--auto-backoffs", type=int, default=0, help="--prune auto: back-offs of a failed step")
    ap.add_argument("--max-drop", type=float, default=1.0, help="points of validation accuracy vs dense")
    ap.add_argument("--filter-drop", type=float, default=0.75, help="cococ prune: t = dense validation - this")
    ap.add_argument("--filter-metric", default="MACs", help="cococ prune's objective metric (see docs/pruning.md)")
    ap.add_argument("--sample", type=int, default=3)
    ap.add_argument("--rates", default="0.3,0.5,0.7")
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--pretrain-steps", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device-images", type=int, default=200)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--render", action="store_true", help="rewrite the section from --work's rows")
    ap.add_argument("--resume", action="store_true", help="keep --work; run only the methods not finished there")
    ap.add_argument("--rebuild", action="store_true",
                    help="build --work's pruned networks again with the current code (rows kept) and render")
    ap.add_argument("--note", default="", help="a paragraph added to the section (what was not run, and why)")
    ap.add_argument("--method"), ap.add_argument("--build", type=Path), ap.add_argument("--row", type=Path)
    ap.add_argument("--write-prototxt", type=Path), ap.add_argument("--export-onnx", action="store_true")
    args = ap.parse_args(argv)
    if args.write_prototxt:
        return write_prototxt(args.write_prototxt) or 0
    if args.export_onnx:
        return export_onnx() or 0
    if args.method or args.build:
        row = (run_method(args.method, args, args.work) if args.method
               else build_row(args.build, args.data, args.device_images))
        args.row.write_text(json.dumps(row, indent=1))
        return 0
    if args.quick:
        args.retrain_iter, args.sample, args.steps, args.pretrain_steps, args.device_images = 1, 2, 2, 2, 3
        args.auto_steps = "0.5,0.9"
        args.max_drop, args.filter_drop = 100.0, 50.0
    work, runs_file = args.work, args.work / "run.json"
    if args.rebuild:
        rebuild(args, work)
    elif not args.render:
        if not args.resume:
            shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True, exist_ok=True)
        machine = {"load_before": os.getloadavg()[0], "affinity": sorted(os.sched_getaffinity(0))}
        if args.quick:    # the small net and a small slice of the data, once, before the children read them
            nets(args, work)
            args.data = quick_data(args.data, work)
        t0, want = time.time(), [m for m in args.methods.split(",") if not done(work, m)]
        chains = [[m for m in c if m in want] for c in (["dense"], ["auto"], ["filters", "combined"])]
        with ThreadPoolExecutor(3) as pool:
            list(pool.map(lambda c: chain(args, work, c), [c for c in chains if c]))
        machine["load_after"] = os.getloadavg()[0]
        opts = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
        runs = json.loads(runs_file.read_text()).get("runs", []) if args.resume and runs_file.exists() else []
        runs.append({"machine": machine, "wall_s": time.time() - t0, "args": opts, "methods": want})
        runs_file.write_text(json.dumps({"runs": runs}, indent=1))
    runs = json.loads(runs_file.read_text())["runs"]
    rows = [json.loads((work / f"{m}.row.json").read_text()) for m in METHODS if (work / f"{m}.row.json").exists()]
    body = render(rows, runs) + (f"\n\n{args.note.strip()}" if args.note.strip() else "")
    print(body)
    if not args.no_write:
        write_section(SECTION, body, {"rows": rows, "runs": runs})
    return 0 if all("error" not in r and "error" not in r.get("m4", {}) for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
