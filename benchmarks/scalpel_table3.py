"""Scalpel Table 3 on our scale: `--prune auto` for arm-m4 vs traditional magnitude pruning.

For LeNet-300-100 and LeNet-5 (examples/, trained on `digits`) this runs

(a) `prune_for_target(graph, "arm-m4", "digits", solver, max_drop)` — on arm-m4 (low
    parallelism) that is Scalpel's iterative SIMD-group pruning (runtime/compress/scalpel.simd_prune:
    slowest layer first, group-RMS threshold steps, retrain with masks after each step, undo
    the first step that loses more than `max_drop` points, keep layers under the measured
    break-even dense), weights stored `simd_group` (width 2, q15 lanes);
(b) the traditional baseline, Deep Compression-style magnitude pruning (passes/prune_weights
    `magnitude_keep`), driven by the *same* loop shape so only the structure differs: the same
    layer order, the same sparsity steps, the same step driver (runtime/compress/scalpel.prune_layer:
    retraining with element masks, the same iterations per step, the same retry and back-off
    of a failed step), the same accuracy floor; no break-even
    skip (traditional pruning does not know the target); weights stored `csr`.

Reported per model: test accuracy before/after, arm-m4 speedup and relative model size.
Speedup, measured: the unpruned and both pruned graphs are built for arm-m4 (q15) and run
once in the emulator (`built_speed`): whole-model estimated cycles, dense / pruned. The
executor runs a layer's csr / simd_group kernel (FC: sparse matrix-vector; conv: im2col of
four positions + sparse matrix-matrix) when the emulated comparison of the two kernels of that
layer says it is faster (backends/mcu/sparse.py), else dense with a warning. The same graphs
are built for x86 (each compressed layer timed both ways at build time, the faster kept) and
timed (minimum wall time over interleaved rounds, one thread). Speedup, estimated (the
number the pruning loop steers by): per-layer cycles = MACs x the measured dense cycles/MAC,
times the measured sparse/dense ratio at the layer's sparsity (docs/benchmarks/
sparse-breakeven-m4.json), summed over FC/conv layers.
Size: sum of `Param.nbytes` of every parameter (compressed values + indices, biases dense)
over the same model stored dense f32.

    python benchmarks/scalpel_table3.py [--retrain-iter 100] [--max-drop 0.5] [--models lenet300 lenet]
    python benchmarks/scalpel_table3.py --data mnist --seeds 0 1 2 [--out R.json] [--quick]

`--data mnist` is Table 3 like for like (MNIST, decisions on a validation split, q15 and int8,
node pruning beside): benchmarks/scalpel_table3_mnist.py. The default stays `digits`. Both
sections' markdown is written by benchmarks/scalpel_tables_render.py.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import write_section  # noqa: E402
from scalpel_tables_render import kernels, render_digits  # noqa: E402

from cococ.backends.kernels.choice import load_table  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MODELS = {"lenet300": "LeNet-300-100", "lenet": "LeNet-5"}

def model_bytes(graph) -> tuple[int, int]:
    """(stored bytes of every param, the same params dense f32)."""
    stored = dense = 0
    for l in graph.layers:
        for p in l.params.values():
            stored += int(p.nbytes)
            dense += int(np.prod(p.type.shape)) * 4
    return stored, dense


def csr_ratio(sparsity: float, table: dict) -> float:
    rows = table["rows"]     # [sparsity%, dense, csr, simd_group, csr/dense, simd/dense]
    return float(np.interp(sparsity, [r[0] / 100 for r in rows], [r[4] for r in rows]))


def magnitude_prune(graph, solver, ds, *, max_drop, steps, retrain_iter, seed, log):
    """The baseline: per layer (slowest first, as simd_prune), raise the magnitude-pruned fraction
    through `steps` with simd_prune's own step driver (runtime/compress/scalpel.prune_layer: retrain with
    element masks, the same retry and back-off of a failed step, the same floor).
    Returns (graph with csr weights, accuracy before, after, per-layer sparsity, steps tried)."""
    from cococ.ir.formats import compress, sparsity as param_sparsity
    from cococ.passes.prune_weights import magnitude_keep
    from cococ.runtime.compress.cost import kernel_model, layer_macs
    from cococ.runtime.compress.scalpel import StepPolicy, prune_layer
    from cococ.runtime.compress.training import accuracy
    from cococ.passes.simd_group import weight_layers
    base = accuracy(graph, ds)
    floor = base - max_drop / 100.0
    cand = weight_layers(graph, [])
    order = sorted(cand, key=lambda l: -layer_macs(l) * kernel_model("arm-m4", l.op).dense_per_mac)
    masks: dict[str, np.ndarray] = {}
    tried: list[dict] = []
    it_seed = seed
    for layer in order:
        w0 = layer.params["weight"].dense()

        def mask_for(s, w0=w0):
            return magnitude_keep(w0, 0.0, s).astype(np.float32), {}

        graph, it_seed, _, m, _ = prune_layer(graph, layer.name, steps, mask_for, masks, solver, ds, floor,
                                              retrain_iter, it_seed, StepPolicy(), tried.append, log, "magnitude")
        if m is not None:
            masks[layer.name] = m
    per_layer = {}
    for l in cand:
        if l.name in masks:
            l.params["weight"] = compress(l.params["weight"], "csr", keep=masks[l.name] > 0)
        per_layer[l.name] = param_sparsity(l.params["weight"]) if l.name in masks else 0.0
    for d in graph.layers:
        if d.op == "dropout" and "dropout_original" in d.meta:
            d.attrs["ratio"] = d.meta.pop("dropout_original")
    return graph, base, accuracy(graph, ds), per_layer, tried


def step_layers(art) -> list[dict]:
    """The conv/dense steps of an emulated M4 artifact's last run: layers, kernel, cycles."""
    steps = art.report["steps"]
    return [{"layers": steps[s["step"]]["layers"], "kernel": steps[s["step"]]["kernel"], "cycles": s["cycles"]}
            for s in art.profile()["steps"] if steps[s["step"]]["op"].split("+")[0] in ("conv2d", "dense")]


def interleaved_times(arts: dict, runs: int, rounds: int) -> dict:
    """{label: (min s, median s)} of each (artifact, feed) in `arts`, timed interleaved: `rounds`
    rounds of runs / rounds calls each, so a busy spell of the machine hits all of them alike."""
    times = {k: [] for k in arts}
    for _ in range(rounds):
        for label, (art, feed) in arts.items():
            r = art.bench(max(1, runs // rounds), feed)
            times[label].append((r["min_s"], r["median_s"]))
    return {k: (min(t[0] for t in v), float(np.median([t[1] for t in v]))) for k, v in times.items()}


def built_speed(graphs: dict, x: np.ndarray, log, x86_runs: int = 200, rounds: int = 5) -> dict:
    """Build each graph for arm-m4 (q15, emulated once on `x`) and x86 (f32, one thread). Returns
    per graph: M4 cycles (whole model), flash bytes, the kernel of every conv/dense step with its
    cycles, the build's warnings, and x86 seconds: `x86_min_s` (the speedups: the minimum over
    all calls — on a shared machine other jobs only ever add time) and `x86_s` (median). The x86
    artifacts are timed interleaved (`interleaved_times`)."""
    import warnings
    from cococ.backends.build import build
    out, x86s = {}, {}
    for label, g in graphs.items():
        feed = {g.inputs[0].name: x}
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            m4 = build(g, "arm-m4", quantize="q15", target_options={"flash": "2M"})
            m4.run(feed)
            x86s[label] = (build(g, "x86", threads=1), feed)
        out[label] = {"m4_cycles": m4.profile()["cycles"], "flash": m4.report["flash"], "layers": step_layers(m4),
                      "warnings": [str(m.message) for m in w],
                      "x86_kernels": [c["kernel"] for c in x86s[label][0].manifest.get("sparse", [])]}
    times = interleaved_times(x86s, x86_runs, rounds)
    for label, v in out.items():
        v["x86_min_s"], v["x86_s"] = times[label]
        log(f"built {label}: {v['m4_cycles']:,} M4 cycles, flash {v['flash']:,} B, x86 min {v['x86_min_s'] * 1e6:.1f} "
            f"us (median {v['x86_s'] * 1e6:.1f}); " + kernels(v["layers"]))
    return out


def run_model(name: str, args, table: dict, log) -> dict:
    import cococ
    from cococ.frontend.solver import load_solver
    from cococ.runtime.compress.cost import kernel_model, layer_macs
    from cococ.runtime.compress.prune_for_target import prune_for_target
    from cococ.runtime.compress.scalpel import DEFAULT_STEPS
    from cococ.runtime.compress.training import load_dataset
    from cococ.passes.simd_group import weight_layers
    d = ROOT / "examples" / name
    load = lambda: cococ.load(d / f"{name}.prototxt", weights=d / f"{name}.safetensors")  # noqa: E731
    solver = load_solver(d / f"{name}_solver.prototxt")
    out = {"model": MODELS[name], "retrain_iter": args.retrain_iter, "max_drop": args.max_drop}

    # (a) --prune auto for arm-m4
    g = load()
    dense_graph = g.clone()
    dense_stored, dense_f32 = model_bytes(g)
    t = time.perf_counter()
    g, rep = prune_for_target(g, "arm-m4", "digits", solver, args.max_drop, retrain_iter=args.retrain_iter,
                              seed=args.seed, log=log)
    sg = rep["simd_group"]
    stored, _ = model_bytes(g)
    out["scalpel"] = {
        "accuracy_before": sg["accuracy_before"], "accuracy_after": sg["accuracy_after"],
        "speedup": sg["speedup"], "size": stored / dense_f32, "weights_size": sg["size_ratio"],
        "bytes": stored, "dense_bytes": dense_f32, "seconds": time.perf_counter() - t,
        "retrain_steps": len(sg["steps"]), "layers": sg["layers"], "warnings": sg["warnings"], "steps": sg["steps"],
        "table": rep["table"]}
    log(rep["table"])
    scalpel_graph = g

    # (b) traditional magnitude pruning, same loop / retraining / floor, csr storage
    g = load()
    ds = load_dataset(g, "digits")
    t = time.perf_counter()
    g, base, after, per_layer, tried = magnitude_prune(g, solver, ds, max_drop=args.max_drop, steps=DEFAULT_STEPS,
                                                       retrain_iter=args.retrain_iter, seed=args.seed, log=log)
    layers, dense_c, sparse_c = [], 0.0, 0.0
    for l in weight_layers(g, []):
        dc = layer_macs(l) * kernel_model("arm-m4", l.op).dense_per_mac
        sp = per_layer[l.name]
        sc = dc * csr_ratio(sp, table) if sp > 0 else dc
        dense_c += dc
        sparse_c += sc
        layers.append({"layer": l.name, "sparsity": sp, "dense_time": dc, "sparse_time": sc,
                       "note": "csr slower than dense (under csr break-even)" if sc > dc else ""})
    stored, _ = model_bytes(g)
    out["traditional"] = {"accuracy_before": base, "accuracy_after": after, "speedup": dense_c / sparse_c,
                          "size": stored / dense_f32, "bytes": stored, "seconds": time.perf_counter() - t,
                          "retrain_steps": len(tried), "layers": layers, "steps": tried}

    # the built artifacts: emulated M4 cycles and x86 wall time, dense vs each pruned graph
    built = built_speed({"dense": dense_graph, "scalpel": scalpel_graph, "traditional": g},
                        ds.x_test[:1].astype(np.float32), log)
    out["built"] = built
    for k in ("scalpel", "traditional"):
        out[k]["m4_speedup"] = built["dense"]["m4_cycles"] / built[k]["m4_cycles"]
        out[k]["x86_speedup"] = built["dense"]["x86_min_s"] / built[k]["x86_min_s"]
        out[k]["x86_speedup_median"] = built["dense"]["x86_s"] / built[k]["x86_s"]
        out[k]["flash"] = built[k]["flash"]
    out["dense_flash"] = built["dense"]["flash"]
    return out


def main(argv=None) -> int:
    import json
    import torch
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--retrain-iter", type=int, default=100)
    ap.add_argument("--max-drop", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--render", action="store_true",
                    help="rewrite the docs section from the last run's docs/benchmarks/scalpel-table3.json, no run")
    ap.add_argument("--data", choices=("digits", "mnist"), default="digits",
                    help="digits: the section above on our scale; mnist: Table 3 like for like "
                         "(benchmarks/scalpel_table3_mnist.py)")
    ap.add_argument("--seeds", type=int, nargs="+", help="mnist: the seeds of the --prune auto rows (default: --seed)")
    ap.add_argument("--quick", action="store_true",
                    help="mnist: a smoke run for the test, not a result (2 retraining iterations, 2 steps, "
                         "1 node trial; LeNet-300-100 with --no-x86 takes 2-4 minutes on the loaded 2-core machine)")
    ap.add_argument("--no-x86", action="store_true", help="mnist: skip the x86 builds and timing")
    ap.add_argument("--methods", nargs="+", choices=("auto", "magnitude", "node"), default=["auto", "magnitude", "node"],
                    help="mnist: which rows to run (split a model's methods over processes, merge with --render --from)")
    ap.add_argument("--retrain-lr", type=float,
                    help="mnist: retrain at this base_lr instead of the shipped solver's (both methods)")
    ap.add_argument("--out", help="mnist: save the results so far here (JSON) after every finished piece")
    ap.add_argument("--from", dest="sources", nargs="+", help="mnist --render: the --out files to merge")
    ap.add_argument("--rebuild", action="store_true",
                    help="mnist --render: build again the M4 builds that failed, from the graphs kept beside --from")
    ap.add_argument("--x86-child", help=argparse.SUPPRESS)
    ap.add_argument("--m4-child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.x86_child or args.m4_child:  # builds (and x86 timing) in a process of their own
        from scalpel_table3_mnist import m4_child, x86_child  # a cycle: that module reads this one's helpers
        (x86_child if args.x86_child else m4_child)(args.x86_child or args.m4_child)
        return 0
    if args.data == "mnist":
        from scalpel_table3_mnist import main as mnist_main  # a cycle, as above
        args.seeds = args.seeds or [args.seed]
        if args.render and not args.sources:
            ap.error("--data mnist --render needs --from FILE...")
        return mnist_main(args)
    if args.render:  # the prose changed, the numbers did not: no 10-minute rerun
        saved = json.loads((ROOT / "docs" / "benchmarks" / "scalpel-table3.json").read_text())
        results, wall, machine = saved["results"], saved["seconds"], saved.get("machine", {})
        args = argparse.Namespace(**{**saved["args"], "no_write": args.no_write, "render": True})
    else:
        torch.set_num_threads(args.threads)
        table = load_table("sparse-breakeven-m4")  # the table the build's choice reads (package data)
        log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
        # the x86 times are cococ's own builds against each other in this one process (TVM binds its
        # thread: the affinity after is printed), on a shared machine (the load before and after)
        machine = {"load_before": os.getloadavg()[0], "affinity_before": sorted(os.sched_getaffinity(0))}
        t0 = time.perf_counter()
        results = [run_model(n, args, table, log) for n in args.models]
        wall = time.perf_counter() - t0
        machine.update(load_after=os.getloadavg()[0], affinity_after=sorted(os.sched_getaffinity(0)))
    body = render_digits(results, args, wall, machine)
    print(body)
    if not args.no_write:
        for r in results:
            r["scalpel"].pop("table", None)
        write_section("scalpel-table3", body, {"results": results, "args": {k: v for k, v in vars(args).items()
                                                                            if k != "render"}, "seconds": wall,
                                               "machine": machine})
    return 0


if __name__ == "__main__":
    sys.exit(main())
