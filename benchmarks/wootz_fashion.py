"""Wootz §7 where recovery is slow: ResNet-20 (9 residual modules) on Fashion-MNIST (issue 16).

The teacher is examples/resnet20 (trained with its solver; weights shipped). Three parts, each
on top of the search machinery the digits benchmarks use (composability.py, wootz_search.py):

(a) Recovery curves and the fine-tuning budget: a few candidates per rate set (the uniform
    highest-rate network and a sampled one), each fine-tuned as a default network (ℓ1-pruned,
    weights inherited) and as a block-trained one (modules taken from pre-trained tuning
    blocks), validation accuracy every --curve-interval iterations. The budget a default
    candidate needs = iterations until its curve stays within 1 point of its final accuracy.
(b) Table 2: over --n networks per rate set (ORNL §5.2 sample), init / init+ (before
    fine-tuning: default / block-trained) and final / final+ (after --ft-steps, the budget of
    (a)); accuracies on the test set.
(c) Table 3 at a subspace of --table3 configurations: the 1-node search for
    `min ModelSize constraint Accuracy >= full − α`, base vs comp (comp with all pre-training),
    searched exhaustively once and replayed per α (runtime.explore.replay); decisions on the
    validation split.

Tuning blocks are per module (`identify_tuning_blocks(method="modules")`, as composability.py's
Table 2), pre-trained teacher-student (runtime.blocks.pretrain) for --pretrain-steps per group.
Decisions and curves read the validation split (the first --val images of Fashion-MNIST's
5,000-image split, seed 0); reported accuracies the first --test images of the test set.

    python benchmarks/wootz_fashion.py                 # the documented run (docs/performance.md)
    python benchmarks/wootz_fashion.py --quick --no-write --work /tmp/wf   # minutes, tiny scale

The defaults are what fitted the ~1 hour left of a shared 2-core machine at load 3-16 on
2026-12-07 (the fine-tuning budget capped at 60 iterations although the default candidates
needed up to 175, Table 3 at a subspace of 32); the issue's scale is e.g. `--ft-cap 200
--table3 64` (hours at that load).

Each part's records are kept in --work/results.json under its settings: a rerun with the same
settings reuses them (e.g. after --table3 was added), another setting recomputes that part.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from composability import finetune_solver  # noqa: E402  (reused: the Table 2 fine-tuning solver)
from report import markdown_table, write_section  # noqa: E402

EXAMPLE = ROOT / "examples" / "resnet20"
ALPHAS = (-0.01, 0.0, 0.01, 0.02)
QUICK = {"n": 3, "curve_nets": 1, "curve_steps": 6, "curve_interval": 3, "ft_steps": 0, "ft_cap": 4,
         "pretrain_steps": 3, "val": 200, "test": 200, "table3": 4, "table3_steps": 0,
         "sets": "0.3,0.5,0.7;0.5,0.7,0.9"}


def conditions() -> str:
    """Load average and CPU affinity, printed beside every time (the machine is shared)."""
    return (f"load {os.getloadavg()[0]:.1f}, affinity {sorted(os.sched_getaffinity(0))}, "
            f"{os.cpu_count()} cores")


def cpu_seconds() -> float:
    """CPU time of this process and of its finished workers."""
    import resource
    return sum(r.ru_utime + r.ru_stime for r in (resource.getrusage(resource.RUSAGE_SELF),
                                                  resource.getrusage(resource.RUSAGE_CHILDREN)))


class Stopwatch:
    """Wall and CPU seconds of a part (workers included), and the conditions at its start and end."""

    def __init__(self):
        self.t0, self.c0, self.at_start = time.perf_counter(), cpu_seconds(), conditions()

    def done(self) -> dict:
        return {"wall_s": time.perf_counter() - self.t0, "cpu_s": cpu_seconds() - self.c0,
                "start": self.at_start, "end": conditions()}


def within(curve, tol: float = 0.01):
    """The first test iteration from which the curve stays within `tol` of its final accuracy
    (the mean of its last three tests, so that one noisy test does not decide)."""
    final = float(np.mean([acc for _, acc in curve[-3:]]))
    first = curve[-1][0]
    for it, acc in reversed(curve):
        if acc < final - tol:
            break
        first = it
    return first


def subset(ds, n: int, split: str):
    """The data set with the first n images of `split` (val | test) as the split train() tests on."""
    x, y = ds.val_arrays() if split == "val" else ds.test_arrays()
    return dataclasses.replace(ds, x_test=x[:n], y_test=y[:n])


def accuracy(g, ds) -> float:
    from cococ.runtime.torch.module import to_torch
    from cococ.runtime.train import evaluate, logits_value
    x, y = ds.test_arrays()
    return float(evaluate(to_torch(g, outputs=[logits_value(g)]), x, y)["accuracy"])


# What the fine-tuning runs read: set before the worker pool is forked, so that the teacher,
# the data set and the plan are shared with the workers, not pickled for every job.
JOBS: dict = {}


def run_jobs(fn, items: list, workers: int) -> list:
    """fn over items, in `workers` forked processes (1 torch thread each) or here for 1."""
    if workers <= 1 or len(items) <= 1:
        return [fn(x) for x in items]
    import multiprocessing as mp
    with mp.get_context("fork").Pool(min(workers, len(items))) as pool:
        return pool.map(fn, items, chunksize=1)


def candidate(i: int, kind: str):
    """The default (kind "default") or block-trained ("block") network of configuration i."""
    from cococ.passes.teacher_student import finetune_graph, pruned_network
    j = JOBS
    if kind == "default":
        return pruned_network(j["full"], j["configs"][i])
    return finetune_graph(j["full"], j["configs"][i], j["plan"].composite[i], j["plan"].blocks, j["store"])


def curve_job(item) -> dict:
    """One recovery curve: validation accuracy every --curve-interval iterations, test at the end."""
    from cococ.runtime.train import train
    i, kind = item
    a, t0 = JOBS["args"], time.perf_counter()
    g = candidate(i, kind)
    r = train(g, finetune_solver(a.curve_steps, a.ft_lr, a.curve_interval), JOBS["val"], progress=False, threads=1)
    curve = [[int(t["iter"]), float(t["accuracy"])] for t in r.test_log]
    print(f"curve {kind} {JOBS['configs'][i]}: {' '.join(f'{v:.3f}' for _, v in curve)}", flush=True)
    return {"curve": curve, "within_1pt": within(curve), "test": accuracy(g, JOBS["test"]),
            "seconds": time.perf_counter() - t0}


def table2_job(item) -> dict:
    """One Table 2 entry: test accuracy before (init) and after `steps` iterations (final)."""
    from cococ.runtime.train import train
    i, kind, steps = item
    g = candidate(i, kind)
    r = train(g, finetune_solver(steps, JOBS["args"].ft_lr, steps), JOBS["test"], progress=False, threads=1)
    print(f"net {i} {kind}: init {r.test_log[0]['accuracy']:.3f} final {r.test_log[-1]['accuracy']:.3f}", flush=True)
    return {"init": r.test_log[0]["accuracy"], "final": r.test_log[-1]["accuracy"],
            "blocks_used": len(g.meta.get("blocks_used", []))}


def part_curves(idx: list[int], workers: int) -> list[dict]:
    jobs = [(i, kind) for i in idx for kind in ("default", "block")]
    got = dict(zip(jobs, run_jobs(curve_job, jobs, workers)))
    return [{"rates": list(JOBS["configs"][i]), **{k: got[(i, k)] for k in ("default", "block")}} for i in idx]


def part_table2(idx: list[int], steps: int, workers: int) -> list[dict]:
    jobs = [(i, kind, steps) for i in idx for kind in ("default", "block")]
    got = dict(zip(jobs, run_jobs(table2_job, jobs, workers)))
    return [{"rates": list(JOBS["configs"][i]), **{k: got[(i, k, steps)] for k in ("default", "block")}}
            for i in idx]


def part_table3(a, full, ds, configs, full_val):
    """Both searches over the subspace, every candidate once; each α's 1-node search replayed."""
    from cococ.frontend.objective import parse_objective
    from cococ.runtime.blocks import make_solver, teacher_hash
    from cococ.runtime.explore import explore, replay
    solver = finetune_solver(a.table3_steps, a.ft_lr, 0)
    solver.test_iter = [max(1, a.val // 100)]            # candidates tested on the first --val images
    run_dir = Path(a.work) / f"t3_{teacher_hash(full)[:8]}_n{len(configs)}_t{a.table3_steps}_p{a.pretrain_steps}"
    run = explore(full, configs, parse_objective("min ModelSize constraint Accuracy >= 2"), solver, ds, run_dir,
                  steps=a.table3_steps, pretrain_steps=a.pretrain_steps,
                  pretrain_solver=make_solver({"base_lr": a.pretrain_lr}, a.pretrain_steps),
                  baseline=True, resume=True, exhaustive=True, method="modules", progress=False, workers=a.workers)
    pre = run.comp.pretrain_seconds
    rows = []
    for alpha in ALPHAS:
        o = parse_objective(f"min ModelSize constraint Accuracy >= {full_val - alpha!r}")
        b = replay(o, run.statics, run.base.evaluated)
        c = replay(o, run.statics, run.comp.evaluated, pre)
        size = lambda r: None if r["answer"] is None else r["answer"]["params"] / run.full_size  # noqa: E731
        rows.append({"alpha": alpha, "threshold": full_val - alpha, "configs base": b["configs"],
                     "configs comp": c["configs"], "time base": b["seconds"], "time comp": c["seconds"],
                     "size base": size(b), "size comp": size(c), "pretrain": pre,
                     "speedup": b["seconds"] / c["seconds"] if c["seconds"] else None,
                     "overhead": pre / c["seconds"] if c["seconds"] else None})
    mean = lambda ev: float(np.mean([e["accuracy"] for e in ev]))  # noqa: E731
    return {"rows": rows, "blocks": run.blocks, "mean acc base": mean(run.base.evaluated),
            "mean acc comp": mean(run.comp.evaluated)}


def cached(state: dict, path: Path, name: str, settings: dict, compute):
    """A part's records from `state` if computed with the same settings, else computed and saved."""
    key = f"{name} {json.dumps(settings, sort_keys=True)}"
    if key not in state:
        sw = Stopwatch()
        result = compute()
        state[key] = {"result": result, "time": sw.done()}
        path.write_text(json.dumps(state, indent=1))
    else:
        print(f"{name}: reused from {path}", flush=True)
    return state[key]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default=str(EXAMPLE / "resnet20.safetensors"))
    ap.add_argument("--sets", default="0.3,0.5,0.7;0.5,0.7,0.9", help="rate sets, ';'-separated")
    ap.add_argument("--n", type=int, default=32, help="Table 2 networks per rate set")
    ap.add_argument("--table2-sets", type=int, default=2, help="how many of --sets get a Table 2")
    ap.add_argument("--final-sets", type=int, default=2,
                    help="how many of those are fine-tuned (final, final+); the others get init, init+ only")
    ap.add_argument("--curve-nets", type=int, default=1, help="candidates per rate set for the curves")
    ap.add_argument("--curve-steps", type=int, default=200)
    ap.add_argument("--curve-interval", type=int, default=25)
    ap.add_argument("--ft-steps", type=int, default=0,
                    help="Table 2's fixed fine-tuning budget (0: what (a)'s default candidates needed, up to --ft-cap)")
    ap.add_argument("--ft-cap", type=int, default=60)
    ap.add_argument("--workers", type=int, default=2, help="fine-tuning processes (1 torch thread each)")
    ap.add_argument("--ft-lr", type=float, default=0.01)
    ap.add_argument("--pretrain-steps", type=int, default=150)
    ap.add_argument("--pretrain-lr", type=float, default=0.02)
    ap.add_argument("--val", type=int, default=1000, help="validation images for curves and decisions")
    ap.add_argument("--test", type=int, default=500, help="test images for reported accuracies")
    ap.add_argument("--table3", type=int, default=32, help="Table 3's subspace size (0: not run)")
    ap.add_argument("--table3-steps", type=int, default=0, help="Table 3's fine-tuning (0: Table 2's budget)")
    ap.add_argument("--work", default="/tmp/cococ-wootz-fashion")
    ap.add_argument("--quick", action="store_true", help="tiny scale, minutes (the test runs it)")
    ap.add_argument("--no-write", action="store_true", help="print only; do not touch docs/performance.md")
    a = ap.parse_args(argv)
    if a.quick:
        for k, v in QUICK.items():
            setattr(a, k, v)

    import torch

    import cococ
    from cococ.frontend.subspace import sample_subspace
    from cococ.ir.verify import infer_shapes
    from cococ.passes.tuning_blocks import identify_tuning_blocks
    from cococ.runtime.blocks import BlockStore, pretrain, teacher_hash
    from cococ.runtime.data import load_data

    torch.set_num_threads(1)
    sw_all = Stopwatch()
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    state_path = work / "results.json"
    state = json.loads(state_path.read_text()) if state_path.exists() else {}
    full = cococ.load(EXAMPLE / "resnet20.prototxt", weights=a.weights)
    infer_shapes(full)
    ds = load_data("fashion-mnist", full.inputs[0].type.shape)
    val, test = subset(ds, a.val, "val"), subset(ds, a.test, "test")
    full_val, full_test = accuracy(full, val), accuracy(full, test)
    print(f"teacher {Path(a.weights).name}: validation {full_val:.4f} ({a.val} images), test {full_test:.4f} "
          f"({a.test} images); {len(full.modules)} modules; {conditions()}", flush=True)

    sets = [[float(r) for r in s.split(",")] for s in a.sets.split(";")]
    colls = [sample_subspace(a.n, len(full.modules), rates, seed=0) for rates in sets]
    offsets = [int(o) for o in np.cumsum([0] + [len(c) for c in colls])]
    # curves: the uniform highest-rate network, then sampled ones (after the uniform ones)
    curve_idx = [[offsets[s] + i for i in [min(len(r), a.n) - 1, *range(len(r), min(a.n, len(r) + a.curve_nets - 1))]]
                 for s, r in enumerate(sets)]
    configs = [c for coll in colls for c in coll]
    plan = identify_tuning_blocks(configs, method="modules")
    th = teacher_hash(full)
    store = BlockStore(work / "blocks", th)
    JOBS.update(args=a, full=full, configs=configs, plan=plan, store=store, val=val, test=test)
    common = {"teacher": th, "sets": a.sets, "n": a.n, "pretrain_steps": a.pretrain_steps,
              "pretrain_lr": a.pretrain_lr}
    pre = cached(state, state_path, "pretrain", common, lambda: [
        {k: v for k, v in r.items()} for r in
        pretrain(full, plan, ds, {"base_lr": a.pretrain_lr}, store, steps=a.pretrain_steps, progress=False)])
    print(f"pre-training: {sum(b.needs_training for b in plan.blocks)} blocks in {len(plan.groups)} groups, "
          f"{pre['time']['wall_s']:.0f} s wall", flush=True)

    curves = cached(state, state_path, "curves", {**common, "val": a.val, "test": a.test, "steps": a.curve_steps,
                                                  "interval": a.curve_interval, "nets": a.curve_nets, "lr": a.ft_lr},
                    lambda: [part_curves(idx, a.workers) for idx in curve_idx])
    needed = max(rec["default"]["within_1pt"] for recs in curves["result"] for rec in recs)
    steps = a.ft_steps or max(a.curve_interval, min(needed, a.ft_cap))
    print(f"default candidates came within 1 point of their final accuracy after {needed} iterations at most; "
          f"Table 2 fine-tunes {steps}", flush=True)
    tables2 = []
    for s in range(min(a.table2_sets, len(sets))):
        n_steps = steps if s < a.final_sets else 0
        tables2.append(cached(state, state_path, f"table2 set {s}", {**common, "test": a.test, "steps": n_steps,
                                                                    "lr": a.ft_lr},
                              lambda: part_table2(list(range(offsets[s], offsets[s + 1])), n_steps, a.workers)))
        tables2[-1]["steps"] = n_steps
    t3 = None
    if a.table3:
        a.table3_steps = a.table3_steps or steps
        t3 = cached(state, state_path, "table3", {"teacher": th, "n": a.table3, "steps": a.table3_steps,
                                                  "pretrain_steps": a.pretrain_steps, "val": a.val},
                    lambda: part_table3(a, full, ds, sample_subspace(a.table3, len(full.modules), sets[0], seed=0),
                                        full_val))
    body = render(a, sets, full_val, full_test, plan, pre, curves, (needed, steps), tables2, t3, sw_all.done())
    print(body)
    if not a.no_write:
        write_section("wootz-fashion", body, {"settings": vars(a), "full": {"val": full_val, "test": full_test},
                                              "pretrain": pre, "curves": curves, "table2": tables2, "table3": t3})
    return 0


def timing(t: dict) -> str:
    return (f"{t['wall_s']:.0f} s wall, {t['cpu_s']:.0f} s CPU; at its start {t['start']}, "
            f"at its end {t['end']}")


def render(a, sets, full_val, full_test, plan, pre, curves, budget, tables2, t3, total) -> str:
    name = lambda s: "{" + ", ".join(f"{r:g}" for r in sets[s]) + "}"  # noqa: E731
    trained = [r for r in pre["result"] if "mse_after" in r]
    stored = sum(r["status"] == "stored" for r in pre["result"])
    mse = np.median([[r["mse_before"], r["mse_after"]] for r in trained], axis=0) if trained else [np.nan] * 2
    needed, steps = budget
    out = ["## Wootz at a scale where recovery is slow: ResNet-20 on Fashion-MNIST (`benchmarks/wootz_fashion.py`)\n",
           f"Teacher: examples/resnet20 (9 residual modules, {Path(a.weights).name}), validation accuracy "
           f"{full_val:.4f} on the first {a.val} validation images, test {full_test:.4f} on the first {a.test} test "
           f"images. Tuning blocks: one per module and rate ({sum(b.needs_training for b in plan.blocks)} blocks in "
           f"{len(plan.groups)} groups; {len(trained)} trained in this run, {stored} found in the store), "
           f"teacher-student for {a.pretrain_steps} iterations per group (batch 32, fixed lr {a.pretrain_lr}), block "
           f"MSE median {mse[0]:.4g} → {mse[1]:.4g}; pre-training {timing(pre['time'])}. Fine-tuning: batch 32, "
           f"fixed lr {a.ft_lr}, momentum 0.9, the same batch stream for both kinds; {a.workers} worker "
           f"process{'es' if a.workers > 1 else ''}, 1 torch thread each.\n"]
    rows = []
    for s, recs in enumerate(curves["result"]):
        for rec in recs:
            for kind in ("default", "block"):
                c = rec[kind]["curve"]
                rows.append([name(s), " ".join(f"{r:g}" for r in rec["rates"]), kind,
                             " → ".join(f"{acc:.3f}" for _, acc in c), rec[kind]["within_1pt"], rec[kind]["test"]])
    out.append(f"### (a) Recovery curves and the fine-tuning budget\n\nValidation accuracy every {a.curve_interval} "
               f"iterations over {a.curve_steps} iterations of fine-tuning (from iteration 0, before any). "
               f"\"within 1 pt\" = the iteration from which the curve stays within 1 point of its final accuracy "
               f"(mean of its last three tests); test = test accuracy at the end. The default candidates needed "
               f"{needed} iterations at most: Table 2's budget is {steps}"
               f"{' (--ft-steps)' if a.ft_steps else f' (capped at --ft-cap {a.ft_cap})' if steps < needed else ''}. "
               f"{timing(curves['time'])}.\n\n"
               + markdown_table(["rates", "configuration", "network", "validation accuracy curve", "within 1 pt",
                                 "test"], rows))
    for s, t in enumerate(tables2):
        nets = t["result"]
        med = lambda kind, k: float(np.median([p[kind][k] for p in nets]))  # noqa: E731
        better = sum(p["block"]["final"] >= p["default"]["final"] for p in nets)
        tuned = (f"and after {t['steps']} iterations (final, final+). Block-trained final ≥ default's on {better} of "
                 f"{len(nets)}" if t["steps"] else "(not fine-tuned in this run, `--final-sets`: no final, final+)")
        out.append(f"### (b) Table 2, rates {name(s)}\n\nMedians over {len(nets)} networks (ORNL §5.2 sample, seed 0) "
                   f"of the test accuracy before fine-tuning (init: default network, init+: block-trained) {tuned}. "
                   f"{timing(t['time'])}.\n\n"
                   + markdown_table(["networks", "teacher (test)", "init", "init+", "init+ − init (points)",
                                     "final", "final+"],
                                    [[len(nets), full_test, med("default", "init"), med("block", "init"),
                                      100 * (med("block", "init") - med("default", "init")),
                                      med("default", "final") if t["steps"] else "—",
                                      med("block", "final") if t["steps"] else "—"]]))
    if t3 is not None:
        r3 = t3["result"]
        pct = lambda v: "—" if v is None else f"{100 * v:.1f}%"  # noqa: E731
        x = lambda v: "—" if v is None else f"{v:.2f}×"  # noqa: E731
        out.append(f"### (c) Table 3, subspace of {a.table3}, rates {name(0)}\n\nBoth searches run over every "
                   f"candidate once ({a.table3_steps} fine-tuning iterations each, validation accuracy on {a.val} "
                   f"images) and each α's 1-node search replayed from the records; time = compute seconds to the "
                   f"answer, comp including all pre-training ({r3['rows'][0]['pretrain']:.0f} s, {r3['blocks']} "
                   f"blocks). Mean validation accuracy over the subspace: default {r3['mean acc base']:.4f}, "
                   f"block-trained {r3['mean acc comp']:.4f}. {timing(t3['time'])}."
                   + (" The issue's subspaces of 64, 256 and ≥ 500 were not run (time)." if a.table3 < 64 else "")
                   + "\n\n"
                   + markdown_table(["α", "threshold", "#configs base", "#configs comp", "time base (s)",
                                     "time comp (s)", "size base", "size comp", "speedup", "overhead"],
                                    [[f"{100 * r['alpha']:+g}%", r["threshold"], r["configs base"],
                                      r["configs comp"], r["time base"], r["time comp"], pct(r["size base"]),
                                      pct(r["size comp"]), x(r["speedup"]), x(r["overhead"])]
                                     for r in r3["rows"]]))
    else:
        out.append("### (c) Table 3\n\nNot run in this run (`--table3 0`).")
    out.append("### Against the issue's goals\n\n" + goals(sets, curves["result"], tables2, t3)
               + f"\n\nThis invocation (parts found in --work are reused, not recomputed; each part's own time is "
                 f"given with it): {timing(total)}.")
    return "\n\n".join(out)


def goals(sets, curves, tables2, t3) -> str:
    """The issue's two goals, read off the tables, and where the time of each search went."""
    lines = []
    for s, recs in enumerate(curves):
        for rec in recs:
            d, b = rec["default"], rec["block"]
            lines.append(f"- Curve {' '.join(f'{r:g}' for r in rec['rates'])}: the default network starts at "
                         f"{d['curve'][0][1]:.3f} and stays within 1 point of its final {d['curve'][-1][1]:.3f} from "
                         f"iteration {d['within_1pt']}; the block-trained one starts at {b['curve'][0][1]:.3f} "
                         f"(from iteration {b['within_1pt']}, final {b['curve'][-1][1]:.3f}).")
    for s, t in enumerate(tables2):
        nets = t["result"]
        gap = [100 * (p["block"]["init"] - p["default"]["init"]) for p in nets]
        fin = [100 * (p["block"]["final"] - p["default"]["final"]) for p in nets]
        lines.append(f"- Rates {{{', '.join(f'{r:g}' for r in sets[s])}}}: block-trained networks start a median "
                     f"{np.median(gap):.1f} points above default ones (goal ≥ 40: "
                     f"{'met' if np.median(gap) >= 40 else 'missed'}; per network {min(gap):.1f} to "
                     f"{max(gap):.1f})" + (f"; after {t['steps']} iterations the median difference is "
                                            f"{np.median(fin):+.1f} points." if t["steps"] else "."))
    if t3 is None:
        lines.append("- The 10× search goal was not measured in this run (Table 3 not run).")
    else:
        rows = t3["result"]["rows"]
        ok = [r for r in rows if r["speedup"] and r["size comp"] is not None
              and (r["size base"] is None or r["size comp"] <= r["size base"] + 1e-12)]
        best = max(ok, key=lambda r: r["speedup"], default=None)
        if best is None:
            lines.append("- Composability search: no α where it found an answer no larger than the baseline's.")
        else:
            evals = best["time comp"] - best["pretrain"]
            per_b, per_c = best["time base"] / best["configs base"], evals / best["configs comp"]
            equal = best["configs base"] / (best["configs comp"] + best["pretrain"] / per_c)
            lines.append(f"- Composability search: best {best['speedup']:.2f}× at α = {100 * best['alpha']:+g}% with "
                         f"an answer no larger than the baseline's (goal ≥ 10×: "
                         f"{'met' if best['speedup'] >= 10 else 'missed'}). There comp took {best['time comp']:.0f} s: "
                         f"{best['pretrain']:.0f} s pre-training and {evals:.0f} s for {best['configs comp']} "
                         f"candidates; base took {best['time base']:.0f} s for {best['configs base']} candidates. "
                         f"Every candidate gets the same fine-tuning budget, so the speedup can only come from "
                         f"evaluating fewer candidates ({best['configs base']} / {best['configs comp']} = "
                         f"{best['configs base'] / best['configs comp']:.2f}× here), less the pre-training. The "
                         f"seconds per candidate differ by the machine's load, not the work: {per_c:.1f} s in comp, "
                         f"{per_b:.1f} s in base (the two searches ran one after the other, see the loads above); "
                         f"at comp's cost per candidate for both, the speedup would be {equal:.2f}×.")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
