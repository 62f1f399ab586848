"""The docs sections of the Scalpel Table 3 benchmarks, rendered from their saved results.

`render_digits` (benchmarks/scalpel_table3.py, Table 3 on `digits`) and `render_mnist`
(benchmarks/scalpel_table3_mnist.py, Table 3 on MNIST like for like) turn a run's result
records into the markdown of their docs/performance.md section (also what `--render` prints
from a saved run's JSON). The prose and the tables live here, the runs in their own modules,
so that each file stays readable; Scalpel's published numbers sit here once for both.
"""
from __future__ import annotations

import numpy as np

from report import markdown_table

# Scalpel (seed 004) Table 3, ARM Cortex-M4 column, and its traditional-pruning mean
SCALPEL = {"lenet300": {"speedup": 9.17, "size": 0.0693}, "lenet": {"speedup": 3.51, "size": 0.0672}}
SCALPEL_TRADITIONAL_M4 = 1.90

# Scalpel Table 4 (MNIST): % of nodes removed per hidden layer -> nodes left (ours: layer names)
SCALPEL_NODES = {"lenet300": {"ip1": (300, 0.31), "ip2": (100, 0.32)},
                 "lenet": {"conv1": (20, 0.50), "conv2": (50, 0.68), "ip1": (500, 0.65)}}
METHODS = ("auto", "magnitude", "node")
GOALS = {"lenet300": (10.0, 0.0693), "lenet": (4.0, 0.0672)}   # issue 15: speedup at most this size


def kernels(layers: list[dict]) -> str:
    """`conv1 simd_group, ip1 dense`: the kernel each conv/dense step of a build ran (a log line, a table cell)."""
    return ", ".join(f"{'+'.join(l['layers'])} {l['kernel']}" for l in layers)


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


def render_digits(results: list[dict], args, wall: float, machine: dict) -> str:
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



def _pct(v) -> str:
    return f"{v:.2%}"


def _m4(r: dict, dense: dict, q: str) -> str:
    b = r["m4"].get(q, {})
    if "cycles" not in b or "cycles" not in dense.get(q, {}):
        err = b.get("error", dense.get(q, {}).get("error", "?"))
        return err if err.startswith("not built") else "build failed (below)"
    return f"{dense[q]['cycles'] / b['cycles']:.2f}×"


def _spread(vals: list[float], fmt) -> str:
    vals = [v for v in vals if v == v]
    if not vals:
        return "–"
    if len(vals) == 1:
        return fmt(vals[0])
    return f"{fmt(float(np.mean(vals)))} ({fmt(min(vals))}–{fmt(max(vals))})"


def _ratio(r: dict, dense: dict, q: str) -> float:
    b = r["m4"].get(q, {})
    return dense[q]["cycles"] / b["cycles"] if "cycles" in b and "cycles" in dense.get(q, {}) else float("nan")


def _goal(r: dict) -> str:
    want, size = GOALS[r["key"]]
    sp = float(np.nanmean([_ratio(m, r["built_dense"], "q15") for m in r["scalpel"]]))
    sz = float(np.mean([m["size"] for m in r["scalpel"]]))
    say = lambda ok: "met" if ok else "missed"  # noqa: E731
    return (f"{r['model']} ≥ {want:g}× at ≤ {size:.2%}: {sp:.2f}× ({say(sp >= want)}) at {sz:.2%} "
            f"({say(sz <= size)})")


def x86_runs(res: dict) -> list[dict]:
    """The x86 child runs of a model (a dict in files of the first runs, a list since)."""
    x = res.get("x86", [])
    return [x] if isinstance(x, dict) else x


def _x86(res: dict, label: str) -> str:
    """dense / `label` minimum time, both from the same child run (interleaved)."""
    for run in x86_runs(res):
        t = run.get("times", {})
        if label in t and "dense" in t:
            return f"{t['dense']['min_s'] / t[label]['min_s']:.2f}×"
    return "not timed"


def render_mnist(results: list[dict], args, wall: float, machine: dict) -> str:
    rows, nodes, notes = [], [], []
    for r in results:
        dense, key = r["built_dense"], r["key"]
        before = r["test_before"]

        def line(method, m, sparsity):
            return [r["model"], method, str(m["seed"]),
                    f"{_pct(before)} → {_pct(m['test_after'])} ({(before - m['test_after']) * 100:.2f})",
                    f"{_pct(r['val_before'])} → {_pct(m['val_after'])}", _m4(m, dense, "q15"), _m4(m, dense, "int8"),
                    f"{m['est_speedup']:.2f}×" if "est_speedup" in m else "–", sparsity,
                    f"{m['size']:.2%}", ]

        for m in r["scalpel"]:
            rows.append(line("`--prune auto` (simd_group w=2)", m, ", ".join(
                f"{k} {v:.0%}" for k, v in m["layers"].items())) + [_x86(r, "scalpel") if m is r["scalpel"][0] else ""])
        if len(r["scalpel"]) > 1:
            s = r["scalpel"]
            rows.append([r["model"], "`--prune auto`, mean (min–max)", f"{len(s)} seeds",
                         _spread([(before - m["test_after"]) * 100 for m in s], lambda v: f"{v:.2f}") + " pt drop", "",
                         _spread([_ratio(m, dense, "q15") for m in s], lambda v: f"{v:.2f}×"),
                         _spread([_ratio(m, dense, "int8") for m in s], lambda v: f"{v:.2f}×"),
                         _spread([m["est_speedup"] for m in s], lambda v: f"{v:.2f}×"), "",
                         _spread([m["size"] for m in s], lambda v: f"{v:.2%}"), ""])
        if len(r["scalpel"]) < len(args.seeds) and "auto" in (getattr(args, "methods", None) or METHODS):
            notes.append(f"{r['model']} `--prune auto` seeds {args.seeds[len(r['scalpel']):]} did not finish")
        if "traditional" in r:
            m = r["traditional"]
            rows.append(line("magnitude pruning (csr)", m, ", ".join(f"{k} {v:.0%}" for k, v in m["layers"].items()))
                        + [_x86(r, "traditional")])
        elif "magnitude" in (getattr(args, "methods", None) or METHODS):
            notes.append(f"{r['model']} magnitude pruning did not finish")
        if "node" in r:
            m = r["node"]
            left = ", ".join(f"{k} {a} → {b}" for k, (a, b) in m["channels"].items())
            rows.append(line("node pruning (dense)", m, left) + [_x86(r, "node")])
            ref = SCALPEL_NODES[key]
            nodes.append([r["model"], left or "none removed",
                          ", ".join(f"{k} {n} → {round(n * (1 - p))} (−{p:.0%})" for k, (n, p) in ref.items()),
                          f"{m['macs'][0]:,} → {m['macs'][1]:,}", f"{m['test_after']:.2%}", f"{m['seconds']:.0f} s"])
        elif "node" in (getattr(args, "methods", None) or METHODS) and not getattr(args, "no_node", False):
            notes.append(f"{r['model']} node pruning did not finish")
        rows.append([r["model"], "Scalpel (paper, MNIST, real M4)", "", "no loss", "", f"{SCALPEL[key]['speedup']:.2f}×",
                     "", "", "", f"{SCALPEL[key]['size']:.2%}", ""])
    rows.append(["mean", "Scalpel traditional pruning (paper, M4)", "", "", "", f"{SCALPEL_TRADITIONAL_M4:.2f}×",
                 "", "", "", "", ""])
    goals = "; ".join(_goal(r) for r in results if r["scalpel"])
    failed = [f"{r['model']} {m.get('graph', 'auto' + str(m.get('seed')))} {q}: {v['error']}" for r in results
              for m in r["scalpel"] + [r[k] for k in ("traditional", "node") if k in r]
              for q, v in m["m4"].items() if "cycles" not in v and not v["error"].startswith("not built")]
    cyc = "; ".join(
        f"{r['model']} " + ", ".join(f"{q} dense {r['built_dense'][q].get('cycles', 'failed'):,}" if "cycles" in
                                     r['built_dense'][q] else f"{q} dense failed" for q in ("q15", "int8"))
        + "; " + "; ".join(f"{lab} {q} " + ", ".join(f"{'+'.join(l['layers'])} {l['kernel']} {l['cycles']:,}"
                                                    for l in m["m4"][q].get("layers", []))
                           for lab, m in [("auto s" + str(s["seed"]), s) for s in r["scalpel"][:1]]
                           + [(k, r[k]) for k in ("traditional", "node") if k in r] for q in ("q15", "int8"))
        for r in results)
    kept = sorted({f"{r['model']}: {w}" for r in results for m in r["scalpel"] + [r[k] for k in ("traditional", "node")
                                                                                  if k in r]
                   for q in ("q15", "int8") for w in m["m4"].get(q, {}).get("warnings", [])})
    x86m = "; ".join(f"{r['model']}: " + ("; ".join(
        ", ".join(f"{k} {v['min_s'] * 1e6:.1f} / {v['median_s'] * 1e6:.1f} µs" for k, v in run["times"].items())
        + f" (child load {run['machine']['load_before']:.1f} → {run['machine']['load_after']:.1f}, affinity "
        f"{run['machine']['affinity_before']} → {run['machine']['affinity_after']})" if "times" in run
        else run.get("error", "failed") for run in x86_runs(r)) or "not timed") for r in results)
    body = (
        "## Scalpel Table 3 on MNIST, like for like (`benchmarks/scalpel_table3.py --data mnist`)\n\n"
        f"Shipped MNIST weights (`examples/*/*_mnist.safetensors`) and their Caffe solvers; {results[0]['split'] if results else ''}. "
        "Every accept/undo decision of every method reads the 5,000-image **validation split** (drawn from the "
        "training file with seed 0, `runtime/data.py`); the test set is read only before and after. Max drop "
        f"{args.max_drop} points (the loop's floor, on validation); {results[0]['retrain_iter'] if results else args.retrain_iter} "
        "retraining iterations per step (batch 64"
        + (f", base_lr {args.retrain_lr} instead of the solver's" if getattr(args, "retrain_lr", None) else "")
        + "), the step policy of the digits section above. `--prune auto` = "
        "`prune_for_target(..., \"arm-m4\")` (SIMD-group pruning, width 2), seeds "
        f"{', '.join(map(str, args.seeds))} (the seed of the retraining batches); magnitude pruning and node pruning: seed "
        f"{args.seeds[0]}. **M4 speedup** = emulated whole-model cycles (estimates from the Cortex-M4 cycle table, not a "
        "board) dense / pruned, each graph built with `--quantize q15` and `--quantize int8` (int8 calibrated on random "
        "inputs: cycles do not depend on values); **est.** = the q15 cost model the loop steers by (FC/conv only). "
        "M4 cycles are deterministic estimates: the process a build runs in does not change them. **x86** = TVM f32, one thread, minimum of 200 calls in 5 interleaved "
        "rounds, built and timed in a child process of its own (the first seed's graphs). Size = Σ `Param.nbytes` (values + indices, biases dense) over the dense f32 "
        "model. Drop = test points lost (negative: gained).\n\n"
        + markdown_table(["model", "method", "seed", "test accuracy (drop, points)", "validation accuracy",
                          "M4 speedup q15 (built)", "M4 speedup int8 (built)", "est. M4 speedup",
                          "per-layer sparsity / nodes", "relative size", "x86 speedup"], rows)
        + (f"\n\n**Goals** (issue 15: beat Scalpel's M4 speedup at no more than its size; `--prune auto`, "
           f"q15, mean over the seeds run): {goals}. What bounds each number: docs/pruning.md." if goals else "")
        + "\n\n**Node pruning vs Scalpel's Table 4** (nodes left per hidden layer; Scalpel runs node pruning on the GPU, "
        "we build its result for the M4 above):\n\n"
        + markdown_table(["model", "ours (nodes before → after)", "Scalpel Table 4", "MACs", "test accuracy after",
                          "time"], nodes)
        + f"\n\nEmulated M4 cycles: {cyc}.\n\n"
        + (f"Compressed layers the M4 build ran dense: {'; '.join(kept)}.\n\n" if kept else "")
        + f"x86 minimum / median: {x86m}.\n\n"
        + (f"**Not finished**: {'; '.join(notes)}.\n\n" if notes else "")
        + (f"**M4 builds that failed** in the run's own process (a kernel source file edited meanwhile) and were not redone (that run kept no graph): {'; '.join(failed)}.\n\n"
           if failed else "")
        + ("M4 builds redone after the run, each in a fresh process (`--render --rebuild`: in the run's own "
           "process they failed, a kernel source file having been edited meanwhile): " + ", ".join(
               f"{r['model']} {m['graph']}" for r in results for m in r["scalpel"] + [r[k] for k in ("traditional", "node")
                                                                                   if k in r] if m.get("rebuilt"))
           + ".\n\n" if any(m.get("rebuilt") for r in results for m in r["scalpel"] + [r[k] for k in
                                                                                      ("traditional", "node") if k in r])
           else "")
        + f"Whole run {wall / 60:.1f} min (the longest of the runs merged here, which ran side by side as separate "
        "processes (per model, or per method with `--methods`), on the shared 2-core machine; load average "
        f"{machine.get('load_before', float('nan')):.1f} before, {machine.get('load_after', float('nan')):.1f} after; "
        f"CPU affinity {machine.get('affinity_before')}), 1 torch thread per run.\n"
    )
    return body
