"""x86: each fused group of a net timed alone against onnxruntime's per-node profile (issue 17).

    .venv/bin/python benchmarks/x86_layers.py --net mobilenet_v2 [--rounds 5] [--top 20]
        [--groups SUBSTR,...] [--ab DIR] [--no-ort] [--whole]
    (the A/B of a schedule edit: copy backends/tvm/schedule_x86*.py to DIR first, then edit)

The net's ONNX file is the one benchmarks/x86_vs_onnxruntime.py prepares (WORK/NET/model.onnx;
made here through its `--worker prepare` when missing), so both engines see the same weights.
Each engine runs in its own process at one thread:
  - onnxruntime: one InferenceSession (intra_op_num_threads=1, its default graph optimisations,
    enable_profiling), warm-up runs, then --rounds rounds of --runs runs; per node, the mean of
    its kernel time over a round, the minimum over rounds;
  - cococ: the net imported as `cococ build` does, then every fused group built alone
    (backends/tvm/group_timing.py, the group lowered as the build lowers it: Winograd where the
    table chooses it) and its CPU time per run at one thread measured in --rounds interleaved
    rounds (process CPU time over a ~20 ms batch, the minimum over rounds: other jobs of a shared
    machine stretch wall times but barely a run's own CPU time).
Each onnxruntime node is matched to the cococ group holding the layer of its name (onnxruntime
folds BatchNorm/Mul/Add/Relu into its Conv node, named after one of them, "_nchwc" appended
where it took its blocked layout); the groups are ranked by cococ's time minus onnxruntime's, and
the nodes of no group (onnxruntime's layout reorders) are summed apart.
--ab DIR times every group twice, interleaved in each round: with the schedules of this tree and
with the copies of schedule_x86.py / schedule_x86_window.py in DIR (a baseline), and prints both
and their ratio per group: the A/B of a schedule change on one net's own layers.
--whole builds the whole net instead (with --ab: once per scheduler, in one process), times it at
one thread in interleaved rounds (CPU ms per run) and checks its output against onnxruntime's
(and, with --ab, the two builds' outputs against each other).
Prints only (no docs section): load average and CPU affinity before and after.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "build" / "bench-x86"


def state() -> str:
    return f"load {' / '.join(f'{x:.1f}' for x in os.getloadavg())}, affinity {sorted(os.sched_getaffinity(0))}"


def ort_nodes(onnx: Path, warmup: int, rounds: int, runs: int) -> dict[str, float]:
    """{node name: seconds}: onnxruntime's profiled kernel time per node at one thread."""
    import numpy as np
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    so.enable_profiling = True
    so.profile_file_prefix = str(onnx.parent / "ort-layers")
    s = ort.InferenceSession(str(onnx), so, providers=["CPUExecutionProvider"])
    x = np.load(onnx.parent / "input.npy")
    feed = {s.get_inputs()[0].name: x}
    for _ in range(warmup):
        s.run(None, feed)
    for _ in range(rounds * runs):
        s.run(None, feed)
    path = s.end_profiling()
    events = [e for e in json.loads(Path(path).read_text()) if e.get("cat") == "Node"
              and e["name"].endswith("_kernel_time")]
    os.unlink(path)
    per_node: dict[str, list[float]] = {}
    for e in events:
        per_node.setdefault(e["name"][:-len("_kernel_time")].removesuffix("_nchwc"), []).append(e["dur"] * 1e-6)
    out = {}
    for name, ds in per_node.items():
        ds = ds[warmup:]  # each node runs once per run: drop the warm-up runs
        out[name] = min(statistics.fmean(ds[i:i + runs]) for i in range(0, len(ds) - runs + 1, runs))
    return out


def baseline_scheduler(folder: Path):
    """schedule_module of the copies of schedule_x86.py / schedule_x86_window.py in `folder`."""
    win_name = "cococ.backends.tvm.schedule_x86_window"
    live = sys.modules[win_name]
    mods = {}
    for stem in ("schedule_x86_window", "schedule_x86"):
        spec = importlib.util.spec_from_file_location(f"baseline_{stem}", folder / f"{stem}.py")
        mods[stem] = importlib.util.module_from_spec(spec)
        sys.modules[win_name] = mods["schedule_x86_window"]  # the copy's import of the window module
        try:
            spec.loader.exec_module(mods[stem])
        finally:
            sys.modules[win_name] = live
    return mods["schedule_x86"].schedule_module


def cococ_groups(onnx: Path, rounds: int, only: list[str], ab: str) -> list[dict]:
    """Per fused group: its layer names, its anchor's shape and its 1-thread CPU time per run."""
    import cococ
    from cococ.backends.kernels.compute import LowerCtx
    from cococ.backends.tvm import schedule_x86, winograd_x86
    from cococ.backends.tvm.artifact import set_threads
    from cococ.backends.tvm.build import f32_lanes
    from cococ.backends.tvm.group_timing import group_feeds, group_timer
    from cococ.backends.tvm.lower import emit_dense_group, fusion_groups, group_inputs
    from cococ.ir.target import get_target
    from cococ.passes import run as run_passes
    from cococ.passes.pipeline import default_pipeline
    set_threads(1)
    t = get_target("x86")
    lanes = f32_lanes(t)
    ctx = LowerCtx(oc_block=lanes, sparse="", winograd="table")
    g = cococ.load(onnx)
    pipeline = default_pipeline(t)
    if pipeline:
        g = run_passes(g.clone(), pipeline)
    variants = {"new": schedule_x86.schedule_module}
    if ab:
        variants["base"] = baseline_scheduler(Path(ab))
    rows = []
    for group in fusion_groups(g):
        if only and not any(s in l.name for s in only for l in group):
            continue
        ext = group_inputs(group)
        feeds = group_feeds(ext)

        def lower(bb, env, group=group):
            m = winograd_x86.choose(group, ctx)
            return winograd_x86.emit(bb, group, env, ctx, m, "w") if m else emit_dense_group(bb, group, env, ctx)
        fns = {}
        for k, sched in variants.items():
            schedule_x86.schedule_module = sched  # group_timer schedules through this name
            try:
                fns[k] = group_timer(group, ext, feeds, lanes, lower)[0]["main"]
            finally:
                schedule_x86.schedule_module = variants["new"]
        a = group[0]
        rows.append({"layers": [l.name for l in group], "op": a.op, "attrs": _shape_note(a), "fns": fns,
                     "feeds": feeds, "cpu": {k: float("inf") for k in fns}})
    if ab:  # the two variants compute the same thing
        import numpy as np
        for r in rows:
            y = {k: f(*r["feeds"]).numpy() for k, f in r["fns"].items()}
            r["diff"] = float(np.max(np.abs(y["new"] - y["base"]) / (1 + np.abs(y["base"]))))
    for _ in range(rounds):
        for r in rows:
            for k, f in r["fns"].items():
                f(*r["feeds"])
                n, c0 = 0, time.process_time()
                while n < 3 or time.process_time() - c0 < 0.02:
                    f(*r["feeds"])
                    n += 1
                r["cpu"][k] = min(r["cpu"][k], (time.process_time() - c0) / n)
    for r in rows:
        del r["fns"], r["feeds"]
    return rows


def whole_net(onnx: Path, rounds: int, ab: str) -> dict:
    """The whole net built with this tree's schedules (and the baseline's, --ab) in this process,
    one thread, interleaved rounds: CPU ms per run (minimum over rounds), and each build's output
    against onnxruntime's (max |y - ref| / (1 + |ref|), the tests' 1e-4 criterion)."""
    import numpy as np
    import onnxruntime as ort
    import cococ
    from cococ.backends.tvm import schedule_x86
    from cococ.backends.tvm.artifact import set_threads
    x = np.load(onnx.parent / "input.npy")
    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    s = ort.InferenceSession(str(onnx), so, providers=["CPUExecutionProvider"])
    ref = s.run(None, {s.get_inputs()[0].name: x})[0]
    live = schedule_x86.schedule_module
    variants = {"new": live, **({"base": baseline_scheduler(Path(ab))} if ab else {})}
    arts = {}
    for k, sched in variants.items():
        schedule_x86.schedule_module = sched
        try:
            arts[k] = cococ.build(cococ.load(onnx), "x86", threads=1)
        finally:
            schedule_x86.schedule_module = live
    set_threads(1)
    out, ys = {}, {}
    for k, art in arts.items():
        y = art.run({art.input_names[0]: x})[art.output_names[0]]
        ys[k] = y
        out[k] = {"cpu_ms": float("inf"), "err": float(np.max(np.abs(y - ref) / (1 + np.abs(ref)))),
                  "err_scaled": float(np.max(np.abs(y - ref)) / np.max(np.abs(ref)))}
    if ab:
        out["new"]["vs_base"] = float(np.max(np.abs(ys["new"] - ys["base"]) / (1 + np.abs(ys["base"]))))
    for _ in range(rounds):
        for k, art in arts.items():
            feed = {art.input_names[0]: x}
            n, c0 = 0, time.process_time()
            while n < 3 or time.process_time() - c0 < 0.2:
                art.run(feed)
                n += 1
            out[k]["cpu_ms"] = min(out[k]["cpu_ms"], (time.process_time() - c0) / n * 1e3)
    return out


def _shape_note(layer) -> str:
    x = layer.inputs[0].type.shape
    y = layer.outputs[0].type.shape
    if layer.op != "conv2d":
        return f"{list(x)} -> {list(y)}"
    a = layer.attrs
    kind = "dw " if a["groups"] > 1 and a["groups"] == x[1] else ""
    return f"{kind}{a['kernel'][0]}x{a['kernel'][1]}/{a['stride'][0]} {x[1]}->{y[1]} {x[2]}x{x[3]}->{y[2]}x{y[3]}"


def worker(args) -> int:
    onnx = Path(args.dir) / "model.onnx"
    if args.worker == "ort":
        out = ort_nodes(onnx, args.warmup, args.rounds, args.runs)
    elif args.worker == "whole":
        out = whole_net(onnx, args.rounds, args.ab)
    else:
        only = [s for s in args.groups.split(",") if s]
        out = cococ_groups(onnx, args.rounds, only, args.ab)
    print(json.dumps(out))
    return 0


def spawn(kind: str, args, d: Path) -> object:
    cmd = [sys.executable, __file__, "--worker", kind, "--dir", str(d), "--rounds", str(args.rounds),
           "--runs", str(args.runs), "--warmup", str(args.warmup), "--groups", args.groups, "--ab", args.ab]
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TVM_NUM_THREADS": "1",
                                                                   "OMP_NUM_THREADS": "1"})
    if r.returncode != 0:
        raise SystemExit(f"{kind} failed:\n{r.stderr[-4000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--net", default="mobilenet_v2")
    ap.add_argument("--work", default=str(WORK))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=20, help="onnxruntime: runs per round")
    ap.add_argument("--warmup", type=int, default=10, help="onnxruntime: warm-up runs")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--groups", default="", help="only the groups holding a layer whose name contains one of these")
    ap.add_argument("--ab", default="", help="also time the groups with the schedules copied into this folder")
    ap.add_argument("--no-ort", action="store_true", help="cococ only (with --ab: the A/B alone)")
    ap.add_argument("--whole", action="store_true", help="the whole net instead (with --ab: both builds)")
    ap.add_argument("--worker", choices=["ort", "cococ", "whole"], help=argparse.SUPPRESS)
    ap.add_argument("--dir", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return worker(args)
    d = Path(args.work) / args.net
    if not (d / "model.onnx").exists():
        subprocess.run([sys.executable, str(ROOT / "benchmarks" / "x86_vs_onnxruntime.py"), "--worker", "prepare",
                        "--dir", str(d), "--net", args.net], check=True)
    print(f"{args.net}: {state()}", flush=True)
    if args.whole:
        res = spawn("whole", args, d)
        print(f"after: {state()}")
        for k, r in res.items():
            print(f"{k}: {r['cpu_ms']:.2f} CPU ms per run (1 thread), error vs onnxruntime {r['err']:.1e} "
                  f"(max |diff| / max |logit| {r['err_scaled']:.1e})"
                  + (f", vs the baseline build {r['vs_base']:.1e}" if "vs_base" in r else ""))
        if args.ab:
            print(f"new / base: {res['new']['cpu_ms'] / res['base']['cpu_ms']:.3f}")
        return 0
    ort = {} if args.no_ort else spawn("ort", args, d)
    rows = spawn("cococ", args, d)
    print(f"after: {state()}", flush=True)
    for r in rows:
        r["ort"] = sum(ort.pop(n, 0.0) for n in r["layers"])
        r["cpu_ms"] = r["cpu"]["new"] * 1e3
    rows.sort(key=lambda r: r["ort"] * 1e3 - r["cpu_ms"])
    head = f"{'group':34} {'shape':34} {'cococ us':>9} {'ort us':>8} {'ratio':>6} {'diff us':>8}"
    print(head + ("  base us  new/base  maxdiff" if args.ab else ""))
    for r in rows[:args.top]:
        c, o = r["cpu_ms"] * 1e3, r["ort"] * 1e6
        line = f"{r['layers'][0][:34]:34} {r['attrs'][:34]:34} {c:9.1f} {o:8.1f} {c / o if o else 0:6.2f} {c - o:8.1f}"
        if args.ab:
            b = r["cpu"]["base"] * 1e6
            line += f"  {b:7.1f}  {c / b:7.3f}  {r['diff']:.1e}"
        print(line)
    tot_c = sum(r["cpu_ms"] for r in rows)
    tot_o = (sum(ort.values()) + sum(r["ort"] for r in rows)) * 1e3
    if ort:
        print(f"onnxruntime nodes of no cococ group: {sum(ort.values()) * 1e6:.1f} us ({', '.join(sorted(ort))[:300]})")
    print(f"total: cococ {tot_c:.2f} ms (groups timed alone), onnxruntime {tot_o:.2f} ms (all nodes)"
          + (f", cococ baseline {sum(r['cpu']['base'] for r in rows) * 1e3:.2f} ms" if args.ab else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
