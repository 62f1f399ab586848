"""Table 3 of benchmarks/wootz_fashion.py (issue 16): both 1-node searches over a subspace, every
candidate fine-tuned once (exhaustive), each α's search replayed from the records.

With a test every --table3-interval iterations the records hold each candidate's validation
curve, which gives three more views from the same run, all replays (no extra training):

- the search at every shorter fine-tuning budget k (a multiple of the interval): the learning
  rate is fixed and the batch stream the same, so a candidate's accuracy at iteration k of its
  run is what a k-iteration fine-tuning ends with; its seconds are scaled by k / steps (an
  estimate: assembly and tests do not scale);
- the search with the early-stop rule both searches share (runtime/explore/earlystop.py,
  simulated from the curves as explore.replay does);
- the per-candidate curves and final accuracies (Figures 6 and 7 of Wootz).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

ALPHAS = (-0.01, 0.0, 0.01, 0.02, 0.03, 0.04, 0.06, 0.08)   # Wootz: -2% .. +8%


REUSED = "reused from "      # how a record copied by reuse_shared names its worker


def slim(r: dict) -> dict:
    """What the tables and figures read of an evaluation record."""
    return {"idx": r["idx"], "config": list(r["config"]), "params": r["params"], "accuracy": r["accuracy"],
            "curve": r["curve"], "seconds": r["seconds"], "blocks_used": len(r.get("blocks_used", [])),
            "finished_at": r.get("finished_at"), "reused": str(r.get("worker", "")).startswith(REUSED)}


def at_budget(records: list[dict], k: int, steps: int) -> list[dict]:
    """The records a k-iteration fine-tuning would have made (fixed lr: the curve's value at k)."""
    out = []
    for r in records:
        acc = dict((int(it), a) for it, a in r["curve"]).get(k) if k != steps else r["accuracy"]
        if acc is None:
            return []
        out.append({**r, "accuracy": acc, "metrics": {**r["metrics"], "Accuracy": acc},
                    "seconds": r["seconds"] * k / steps, "curve": [c for c in r["curve"] if c[0] <= k]})
    return out


def replay_or_bound(objective, statics, evaluations, pre, stopper) -> dict:
    """explore.replay over the records of the search order's longest prefix the records hold (all
    of them, unless a cut-off run left a gap: e.g. after `--table3-reuse`), or, where that prefix
    ends before the search's answer, what it bounds: more than its length configurations and
    seconds (covered False)."""
    from cococ.ir.core import CococError
    from cococ.runtime.explore import replay
    from cococ.runtime.explore.search import order_candidates
    order, _ = order_candidates(objective, statics)
    have = {r["idx"] for r in evaluations}
    k = next((j for j, i in enumerate(order) if i not in have), len(order))
    prefix = [r for r in evaluations if r["idx"] in set(order[:k])]
    try:
        return {**replay(objective, statics, prefix, pre, stopper=stopper), "covered": True}
    except CococError:
        return {"answer": None, "configs": len(prefix), "stopped": 0, "covered": False,
                "seconds": sum(r["seconds"] for r in prefix) + pre}


def rows_for(objective_at, statics, base, comp, pre, full_size, alphas, stopper_for=None) -> list[dict]:
    """One row per α: both searches replayed (with `stopper_for(objective)`: under early stop)."""
    rows = []
    for alpha in alphas:
        o = objective_at(alpha)
        st = stopper_for(o) if stopper_for else None
        b = replay_or_bound(o, statics, base, 0.0, st)
        c = replay_or_bound(o, statics, comp, pre, st)
        size = lambda r: None if r["answer"] is None else r["answer"]["params"] / full_size  # noqa: E731
        rows.append({"alpha": alpha, "threshold": o.constraints[0].value, "configs base": b["configs"],
                     "configs comp": c["configs"], "time base": b["seconds"], "time comp": c["seconds"],
                     "size base": size(b), "size comp": size(c), "pretrain": pre,
                     "covered base": b["covered"], "covered comp": c["covered"],
                     "stopped base": b["stopped"], "stopped comp": c["stopped"],
                     "speedup": b["seconds"] / c["seconds"] if c["seconds"] else None,
                     "overhead": pre / c["seconds"] if c["seconds"] else None})
    return rows


def table4_sizes(n: int) -> list[int]:
    """The sub-subspace sizes of Table 4 for a run over n configurations: 4, 8, 16, ... below n."""
    return [m for m in (4 << k for k in range(max(1, n).bit_length())) if m < n]


def table4(objective_at, statics, base, comp, pre, full_size, sizes=None, draws=5) -> dict:
    """Table 4 from the same records: subspaces of `sizes` (table4_sizes: 4, 8, 16, ... below the
    run's size) drawn (seed 0, `draws` each) from the run's subspace, both searches replayed on
    each. A cut-off run bounds a drawn subspace as it does the whole (replay_or_bound: up to the
    first gap in its order). Comp is charged all of the pre-training (every block of the whole
    subspace)."""
    rng = np.random.default_rng(0)
    idx = sorted(statics)
    out = {}
    for m in table4_sizes(len(idx)) if sizes is None else sizes:
        if m >= len(idx):
            continue
        subs = [sorted(int(i) for i in rng.choice(idx, m, replace=False)) for _ in range(draws)]
        out[str(m)] = [rows_for(objective_at, {i: statics[i] for i in sub}, [r for r in base if r["idx"] in sub],
                                [r for r in comp if r["idx"] in sub], pre, full_size, ALPHAS) for sub in subs]
    return out


def table3_rates(a) -> str | None:
    """The rate set Table 3 samples when it is not the first of --sets (`--table3-set`), as
    --sets spells it; None for the first, whose run folders and settings keys stay as they were."""
    return a.sets.split(";")[a.table3_set] if getattr(a, "table3_set", 0) else None


def table3_dir(a, full, configs) -> Path:
    from cococ.runtime.blocks import teacher_hash
    rates = table3_rates(a)
    return Path(a.work) / (f"t3_{teacher_hash(full)[:8]}_n{len(configs)}_t{a.table3_steps}_p{a.pretrain_steps}"
                           + (f"_i{a.table3_interval}" if a.table3_interval else "")
                           + (f"_r{rates.replace(',', '-')}" if rates else ""))


def explore_args(a, finetune_solver) -> tuple:
    """(objective, fine-tuning solver, pre-training solver) of Table 3's exhaustive run."""
    from cococ.frontend.objective import parse_objective
    from cococ.runtime.blocks import make_solver
    solver = finetune_solver(a.table3_steps, a.ft_lr, a.table3_interval)
    solver.test_iter = [max(1, a.val // 100)]            # candidates tested on the first --val images
    return (parse_objective("min ModelSize constraint Accuracy >= 2"), solver,
            make_solver({"base_lr": a.pretrain_lr}, a.pretrain_steps))


def run_explore(a, full, ds, configs, finetune_solver, base: bool = True, comp: bool = True):
    """The exhaustive run of both searches (or one: `--table3-modes`, to run a subspace in
    pieces; a later call resumes it), in --work/t3_<teacher>_n<N>_t<steps>_p<pre-training>[_i<interval>]."""
    from cococ.runtime.explore import explore
    objective, solver, pretrain_solver = explore_args(a, finetune_solver)
    run_dir = table3_dir(a, full, configs)
    return explore(full, configs, objective, solver, ds, run_dir, steps=a.table3_steps, pretrain_steps=a.pretrain_steps,
                   pretrain_solver=pretrain_solver, baseline=base, comp=comp, resume=True, exhaustive=True,
                   method="modules", progress=False, workers=a.workers), run_dir


def reuse_shared(a, full, ds, configs, finetune_solver, other: Path) -> int:
    """`--table3-reuse`: copy the evaluations of another Table 3 run folder (another subspace
    size) whose configurations this subspace shares into this run's database, so that its resume
    skips them; refused unless the two runs' settings agree apart from the subspace. A candidate's
    fine-tuning is deterministic (fixed seed and batch stream, 1 thread; the pre-trained blocks
    the same tensors), so a copied record is the one this run would make, apart from its seconds
    (another time, another load). Copied records name their worker "reused from <folder>"."""
    from cococ.ir.core import CococError
    from cococ.runtime.explore.records import RunDB
    from cococ.runtime.explore.settings import differences, run_settings
    objective, solver, pretrain_solver = explore_args(a, finetune_solver)
    mine = run_settings(full, configs, objective, solver, pretrain_solver, ds, steps=a.table3_steps,
                        pretrain_steps=a.pretrain_steps, method="modules", seed=None)
    src = RunDB(other / "run.sqlite") if (other / "run.sqlite").exists() else None
    if src is None:
        raise CococError(f"--table3-reuse {other}: no run database (run.sqlite) there")
    try:
        diff = [d for d in differences(src.get_meta("settings") or {}, mine) if not d.startswith("subspace")]
        if diff:
            raise CococError(f"--table3-reuse {other}: its settings differ from this run's ({'; '.join(diff)})")
        where = {tuple(c): i for i, c in enumerate(configs)}
        dst = RunDB(table3_dir(a, full, configs) / "run.sqlite")
        try:
            copied = 0
            for r in src.evaluations():     # a record the other run had copied keeps its first source
                worker = r["worker"] if r["worker"].startswith(REUSED) else f"{REUSED}{other.name} {r['worker']}"
                if r["config"] in where:
                    copied += dst.add_evaluation(r["mode"], {**r, "idx": where[r["config"]], "worker": worker})
            return copied
        finally:
            dst.close()
    finally:
        src.close()


def partial_records(a, full, configs, run_dir) -> dict:
    """What a cut-off run left in its database: statics, records per mode, pre-training seconds."""
    from cococ.passes.tuning_blocks import identify_tuning_blocks
    from cococ.runtime.explore.evaluate import graph_cost
    from cococ.runtime.explore.records import RunDB
    db = RunDB(run_dir / "run.sqlite")
    try:
        return {"statics": db.static_metrics(), "base": db.evaluations("base"), "comp": db.evaluations("comp"),
                "pretrain": db.phase_seconds("pretrain"), "full size": graph_cost(full.clone())[0],
                "blocks": sum(b.needs_training for b in identify_tuning_blocks(configs, method="modules").blocks)}
    finally:
        db.close()


def part_table3(a, full, ds, configs, full_val, finetune_solver, partial: bool = False) -> dict:
    """Both searches over the subspace, every candidate once; each α's 1-node search replayed.
    `partial`: from the records a cut-off run left (nothing trained; rows whose answer lies
    beyond them say so)."""
    from cococ.frontend.objective import parse_objective
    from cococ.runtime.explore.earlystop import EarlyStop
    if partial:
        got = partial_records(a, full, configs, table3_dir(a, full, configs))
        statics, base, comp, pre, full_size, blocks = (got[k] for k in ("statics", "base", "comp", "pretrain",
                                                                        "full size", "blocks"))
    else:
        run, _ = run_explore(a, full, ds, configs, finetune_solver)
        statics, base, comp, pre = run.statics, run.base.evaluated, run.comp.evaluated, run.comp.pretrain_seconds
        full_size, blocks = run.full_size, run.blocks
    steps, interval = a.table3_steps, a.table3_interval
    objective_at = lambda alpha: parse_objective(f"min ModelSize constraint Accuracy >= {full_val - alpha!r}")  # noqa: E731
    args = (objective_at, statics)
    rows = rows_for(*args, base, comp, pre, full_size, ALPHAS)
    budgets = sorted({int(it) for r in base + comp for it, _ in r["curve"] if 0 < it < steps}) if interval else []
    sweep = {k: rows_for(*args, at_budget(base, k, steps), at_budget(comp, k, steps), pre, full_size, ALPHAS)
             for k in budgets + [steps]}
    early = (rows_for(*args, base, comp, pre, full_size, ALPHAS, lambda o: EarlyStop(o, steps, True, 0.02))
             if interval else None)
    t4 = table4(*args, base, comp, pre, full_size)
    mean = lambda ev: float(np.mean([e["accuracy"] for e in ev])) if ev else None  # noqa: E731
    return {"rows": rows, "blocks": blocks, "mean acc base": mean(base), "mean acc comp": mean(comp),
            "steps": steps, "interval": interval, "full size": full_size, "n": len(configs),
            "evaluated": {"base": len(base), "comp": len(comp)}, "partial": partial,
            "sweep": {str(k): v for k, v in sweep.items()}, "early stop": early, "table4": t4,
            "records": {"base": [slim(r) for r in base], "comp": [slim(r) for r in comp]}}


def part_cost(a, full, ds, configs, finetune_solver) -> dict:
    """Process CPU seconds (1 torch thread) of Table 3's units of work, measured one after the
    other in this process: pre-training all of the subspace's tuning blocks (a fresh store), one
    default and one block-trained candidate of Table 3's budget and tests. CPU time depends far
    less on the machine's load than the wall times of the searches, which ran at other times."""
    import tempfile

    from cococ.passes.teacher_student import finetune_graph, pruned_network
    from cococ.passes.tuning_blocks import identify_tuning_blocks
    from cococ.runtime.blocks import BlockStore, pretrain, teacher_hash
    from cococ.runtime.train import train
    plan = identify_tuning_blocks(configs, method="modules")
    i = len(configs) // 2
    out = {"candidate": list(configs[i])}
    with tempfile.TemporaryDirectory() as tmp:
        store = BlockStore(Path(tmp), teacher_hash(full))
        c0 = time.process_time()
        pretrain(full, plan, ds, {"base_lr": a.pretrain_lr}, store, steps=a.pretrain_steps, progress=False)
        out["pretrain_cpu"] = time.process_time() - c0
        solver = finetune_solver(a.table3_steps, a.ft_lr, a.table3_interval)
        solver.test_iter = [max(1, a.val // 100)]
        data = ds.for_decisions()
        for kind in ("default", "block"):
            c0 = time.process_time()
            g = (pruned_network(full, configs[i]) if kind == "default" else
                 finetune_graph(full, configs[i], plan.composite[i], plan.blocks, store))
            train(g, solver, data, max_iter=a.table3_steps, progress=False, threads=1)
            out[f"{kind}_cpu"] = time.process_time() - c0
    out["groups"], out["blocks"] = len(plan.groups), sum(b.needs_training for b in plan.blocks)
    return out
