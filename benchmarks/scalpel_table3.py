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
node pruning beside): benchmarks/scalpel_table3_mnist.py. The default stays `digits`.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import markdown_table, write_section  # noqa: E402

from cococ.backends.kernels.choice import load_table  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MODELS = {"lenet300": "LeNet-300-100", "lenet": "LeNet-5"}
# Scalpel (seed 004) Table 3, ARM Cortex-M4 column, and its traditional-pruning mean
SCALPEL = {"lenet300": {"speedup": 9.17, "size": 0.0693}, "lenet": {"speedup": 3.51, "size": 0.0672}}
SCALPEL_TRADITIONAL_M4 = 1.90


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


def kernels(layers: list[dict]) -> str:
    return ", ".join(f"{'+'.join(l['layers'])} {l['kernel']}" for l in layers)


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
    body = render(results, args, wall, machine)
    print(body)
    if not args.no_write:
        for r in results:
            r["scalpel"].pop("table", None)
        write_section("scalpel-table3", body, {"results": results, "args": {k: v for k, v in vars(args).items()
                                                                            if k != "render"}, "seconds": wall,
                                               "machine": machine})
    return 0


def _cycles(built: dict) -> str:
    return ", ".join(f"{'+'.join(l['layers'])} {l['kernel']} {l['cycles']:,}" for l in built["layers"])


def _stops(m: dict) -> str:
    """Per layer: the sparsity kept and the step that ended it (from the run's step records)."""
    out = []
    for l in m["layers"]:
        steps = [t for t in m.get("steps", []) if t["layer"] == l["layer"]]
        fails = [t for t in steps if not t["accepted"]]
        end = f" ({fails[-1]['sparsity']:.0%} failed)" if steps and not steps[-1]["accepted"] else ""
        out.append(f"{l['layer']} {l['sparsity']:.0%}{end}")
    return ", ".join(out)


def _vs_scalpel(results: list[dict], models: list[str]) -> str:
    out = []
    for n, r in zip(models, results):
        m, ref = r["scalpel"], SCALPEL[n]
        word = "above" if m["m4_speedup"] > ref["speedup"] else "below"
        out.append(f"{r['model']}: {m['m4_speedup']:.2f}× at {m['size']:.2%} size, {word} Scalpel's "
                   f"{ref['speedup']:.2f}× at {ref['size']:.2%}")
    return "; ".join(out) + "."


def _rest(results: list[dict]) -> str:
    """Cycles outside the FC/conv steps, per model (dense build / Scalpel build)."""
    out = []
    for r in results:
        b = r["built"]
        rest = {k: b[k]["m4_cycles"] - sum(l["cycles"] for l in b[k]["layers"]) for k in ("dense", "scalpel")}
        out.append(f"{r['model']} {rest['dense']:,} / {rest['scalpel']:,} cycles (dense / pruned build), "
                   f"{rest['scalpel'] / b['scalpel']['m4_cycles']:.0%} of the pruned model's")
    return "; ".join(out)


def _conv1(results: list[dict]) -> str:
    """LeNet-5 conv1's dense vs pruned cycles, from the built artifacts."""
    for r in results:
        b = r["built"]
        dense = {'+'.join(l["layers"]): l["cycles"] for l in b["dense"]["layers"]}
        for k in ("scalpel", "traditional"):
            for l in b[k]["layers"]:
                name = '+'.join(l["layers"])
                if name == "conv1" and l["kernel"] != "dense":
                    sp = next(x["sparsity"] for x in r[k]["layers"] if x["layer"] == "conv1")
                    return (f"LeNet-5 conv1 (25 columns, 576 positions) at {sp:.0%} {l['kernel']} runs in "
                            f"{l['cycles']:,} instead of {dense[name]:,} cycles ({dense[name] / l['cycles']:.1f}×)")
    return "no pruned conv1 in this run"


def render(results: list[dict], args, wall: float, machine: dict) -> str:
    """The docs section (markdown) of one run's results."""
    rows = []
    for n, r in zip(args.models, results):
        s, b, bu = r["scalpel"], r["traditional"], r["built"]
        for label, m, method in (("scalpel", s, "cococ `--prune auto` (simd_group, w=2)"),
                                 ("traditional", b, "cococ magnitude pruning (csr)")):
            rows.append([r["model"], method, f"{m['accuracy_before']:.2%} → {m['accuracy_after']:.2%}",
                         f"{m['m4_speedup']:.2f}×", f"{m['speedup']:.2f}×", f"{m['x86_speedup']:.2f}×",
                         f"{m['size']:.2%} ({m['bytes']:,} B)", f"{m['flash']:,} / {r['dense_flash']:,}",
                         ", ".join(f"{l['layer']} {l['sparsity']:.0%}" for l in m["layers"]),
                         kernels(bu[label]["layers"])])
        rows.append([r["model"], "Scalpel (paper, MNIST, M4)", "", f"{SCALPEL[n]['speedup']:.2f}×", "", "",
                     f"{SCALPEL[n]['size']:.2%}", "", "", ""])
    rows.append(["mean", "Scalpel traditional pruning (paper, M4)", "", f"{SCALPEL_TRADITIONAL_M4:.2f}×",
                 "", "", "", "", "", ""])
    warn = [w for r in results for w in r["scalpel"]["warnings"]]
    built_warn = sorted({f"{r['model']} ({k}): {w}" for r in results for k, v in r["built"].items()
                         for w in v["warnings"] if "kept dense" in w or "dense conv kernel" in w})
    cyc = "; ".join(f"{r['model']} dense {r['built']['dense']['m4_cycles']:,}, scalpel "
                    f"{r['built']['scalpel']['m4_cycles']:,}, magnitude {r['built']['traditional']['m4_cycles']:,}"
                    for r in results)
    x86 = "; ".join(f"{r['model']} " + ", ".join(
        f"{k.replace('traditional', 'magnitude')} {r['built'][k]['x86_min_s'] * 1e6:.1f} / "
        f"{r['built'][k]['x86_s'] * 1e6:.1f}" for k in ("dense", "scalpel", "traditional")) for r in results)
    body = (
        "## Scalpel Table 3 on our scale: `--prune auto` vs traditional pruning on arm-m4\n\n"
        "`benchmarks/scalpel_table3.py`. Trained examples (`examples/lenet300`, `examples/lenet`) on `digits` "
        "(360 test images: one image = 0.28 points), max accuracy drop "
        f"{args.max_drop} points, {args.retrain_iter} retraining iterations (shipped solver, batch 64) after "
        "every pruning step, for both methods. A step that falls under the floor gets a second chance "
        f"before it ends the layer (`runtime/compress/scalpel.StepPolicy`): it is retrained again from where it stands "
        f"with {2 * args.retrain_iter} iterations; if it still fails, the sparsity half-way between the "
        "last accepted step and it is tried (with the same retry) and, if that holds, the failed step again; "
        "at most two such back-offs per layer, then the first failure ends the layer. Every accepted state "
        "is the one measured, so the accuracy after is within the floor by construction. The baseline is "
        "Deep Compression-style per-layer magnitude "
        "pruning driven by the same slowest-layer-first loop, sparsity steps, retraining helper "
        "(`runtime/compress/training.retrain`, element masks) and accuracy floor, stored `csr`.\n\n"
        "**M4 speedup (built)** = emulated cycles of the whole unpruned q15 model / those of the pruned one, "
        "each built by `cococ.build(..., \"arm-m4\", quantize=\"q15\")` and run once on a test image "
        "(cycle table of backends/mcu/cycles.py, docs/mcu.md). The executor runs a layer's csr / simd_group kernel "
        "(FC: sparse matrix-vector; conv: im2col of four output positions into an arena scratch + sparse "
        "matrix-matrix, epilogue fused) where emulating both kernels of that layer shows it faster, else "
        "the dense kernel with a warning. **x86 speedup** = minimum "
        "wall time (200 calls in 5 interleaved rounds, 1 thread; medians below) of the same graphs built for x86 (f32; FC and conv layers with the "
        "f32 sparse TIR kernels — conv: im2col kernel + sparse matrix-matrix — where timing both forms of "
        "the layer at build time shows the sparse one faster); these graphs "
        "are pruned for the M4 (simd_group width 2), not for x86. **Est. M4 speedup** = the model the "
        "pruning loop steers by: per FC/conv layer, MACs × the dense q15 kernel's measured cycles/MAC × the "
        "measured sparse/dense ratio at the layer's sparsity (`docs/benchmarks/sparse-breakeven-m4.json`, "
        "100×100 matrix-vector of the executor's FC steps; conv layers use it too), summed over FC/conv "
        "layers only. "
        "Size = Σ `Param.nbytes` of all params (kept values f32 + i16/i32 indices, biases dense) over the "
        "dense f32 model; flash = the linked q15 image (code + weights), pruned / dense. "
        "Scalpel's numbers are MNIST on a real Cortex-M4 — a different data set and scale, compared side by "
        "side, not like for like.\n\n"
        + markdown_table(["model", "method", "accuracy before → after", "M4 speedup (built, emulated)",
                          "est. M4 speedup", "x86 speedup (built)", "relative size (all params)",
                          "M4 flash B (pruned / dense)", "per-layer sparsity", "M4 kernel per layer"], rows)
        + "\n\n"
        + f"Emulated M4 cycles (estimates from the Cortex-M4 cycle table, not a board), whole model: {cyc}. x86 µs, minimum / median: {x86}.\n\n"
        + (f"Kept dense by the pruning loop's break-even rule: {'; '.join(warn)}.\n\n" if warn else "")
        + (f"Build warnings (layers with a compressed weight that run a dense kernel): "
           f"{'; '.join(built_warn)}.\n\n" if built_warn else "")
        + "Emulated M4 cycles per conv/FC step (kernel, cycles): "
        + "; ".join(f"{r['model']} {k}: {_cycles(r['built'][k])}" for r in results
                    for k in ("dense", "scalpel", "traditional")) + ".\n\n"
        + "**Where each layer's pruning stopped** (`--prune auto`; the first failure with no back-off left, "
        "after its retry): " + "; ".join(f"{r['model']}: {_stops(r['scalpel'])}" for r in results) + ". "
        "Magnitude baseline: " + "; ".join(f"{r['model']}: {_stops(r['traditional'])}" for r in results) + ".\n\n"
        + "**Against Scalpel** (MNIST on a real M4; ours: `digits`, emulated cycle estimates — side by side, "
        "not like for like). " + _vs_scalpel(results, args.models) + " What bounds ours: (1) where each layer's pruning "
        "stops: an accepted state must stay within one test image of the unpruned model after "
        f"{args.retrain_iter}–{2 * args.retrain_iter} retraining iterations (seconds; Scalpel does not give "
        "its retraining length), so where a layer stops is partly luck, and the steps are coarse near the top "
        "(…, 95%, 97%; none beyond 97%). (2) Our dense q15 baseline is strong (2.56 cycles/MAC for FC with "
        "the requantisation, two rows per pass), while a stored SIMD pair still costs about 10 cycles (JA' "
        "load, A' load, gathered input word, SMLAD, loop), so the executor's matrix-vector break-even is 58% "
        "(section above; Scalpel: 48%) and a 97%-pruned FC layer runs about 11× faster, not 33×. (3) The "
        "steps that are not FC/conv (input quantisation, pooling, softmax, …) take the same cycles before and "
        "after pruning: " + _rest(results) + ". (4) A pruned conv's im2col is the same work as the dense "
        "conv's, so it bounds the sparse conv's gain at high sparsity: " + _conv1(results) + ". "
        "Where ours is above Scalpel's (LeNet-5), the data set may be why: `digits` (8×8 images, scaled into "
        "LeNet-5's 28×28 input) is easier than MNIST and may tolerate more pruning within the same "
        "accuracy drop: on MNIST (the next section, decisions on a validation split) the same loop stops far "
        "earlier.\n\n"
        + "Retrainings, retries included (scalpel / baseline): "
        + ", ".join(f"{r['model']} {r['scalpel']['retrain_steps']} / {r['traditional']['retrain_steps']}" for r in results)
        + f". Whole run {wall / 60:.1f} min, {args.threads} torch thread(s), on a shared machine"
        + (f" (load average {machine['load_before']:.1f} before, {machine['load_after']:.1f} after; CPU "
           f"affinity {machine['affinity_before']} before, {machine['affinity_after']} after)" if machine else "")
        + ".\n\n"
        "**Read with care**: on 360 test images a 0.5-point tolerance is one image (floor = before − 1.8 "
        "images), and one 100-iteration retraining moves accuracy by about ±2 images (measured on LeNet-5's "
        "ip1, 4 seeds per sparsity, docs/pruning.md); the retry and back-off make a layer's end depend less on "
        "one draw, but every retraining is judged on the same test images (digits has no validation split "
        "here), so the \"after\" accuracies are optimistic by selection, and where each layer stops (hence "
        "speedup and size) varies with the seed and retraining length, for both methods. Single run, one seed. "
        "x86 times are microseconds on a shared 2-core machine (other jobs, including builds, ran beside it): "
        "indicative.\n"
    )
    return body


if __name__ == "__main__":
    sys.exit(main())
