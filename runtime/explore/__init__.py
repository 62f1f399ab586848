"""`cococ prune`'s engine: composability-based exploration of a promising subspace (Wootz §4–§7).

    run = explore(full, configs, objective, solver, data, run_dir, steps=..., pretrain_steps=...,
                  baseline=True)
    run.comp.answer, run.base.answer, run.table_row()

With `early_stop=True` (`cococ prune`'s default) fine-tuning of a candidate that can no longer
win stops early (earlystop.py; the same rule in both searches; never in `exhaustive` runs, whose
records must hold for any threshold: `replay(..., stopper=EarlyStop(...))` replays the rule).
Pre-training runs its groups together, one teacher forward per batch for all of them, split
over `pretrain_workers` processes (blockstore.py).

Everything finished is in `run_dir/run.sqlite` (evaluations, blocks, static metrics, phase
times) and in `run_dir/blocks/` (the block store): calling `explore` again on the same folder
(`resume=True`) continues a killed run without redoing anything.
"""
from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from tqdm import tqdm

from cococ.frontend.objective import Objective
from cococ.ir.core import CococError, Graph
from cococ.passes.tuning_blocks import identify_tuning_blocks
from cococ.runtime.blocks import BlockStore, teacher_hash
from cococ.runtime.data import Dataset, load_data
from cococ.runtime.explore.blockstore import pretrain_groups
from cococ.runtime.explore.earlystop import EarlyStop, accuracy_floor, simulate
from cococ.runtime.explore.evaluate import Task, graph_cost, static_metrics
from cococ.runtime.explore.records import RunDB
from cococ.runtime.explore.search import SearchResult, decide, order_candidates, search
from cococ.runtime.explore.settings import check_resume, run_settings

__all__ = ["explore", "ExploreRun", "RunDB", "replay"]


@dataclass
class ExploreRun:
    objective: Objective
    configs: list
    statics: dict
    comp: SearchResult | None
    base: SearchResult | None
    run_dir: Path
    full_size: int
    full_accuracy: float | None = None
    blocks: int = 0

    @property
    def chosen(self) -> SearchResult | None:
        """The search whose answer is the run's answer (written as pruned.*): the composability
        search's; the baseline's when only the baseline found one (or ran at all)."""
        if self.comp is not None and (self.comp.answer is not None or self.base is None or self.base.answer is None):
            return self.comp
        return self.base


def explore(full: Graph, configs: Sequence, objective: Objective, solver, data, run_dir, *,
            steps: int, pretrain_steps: int, pretrain_solver=None, baseline: bool = False,
            comp: bool = True, executor: str = "local", workers: int = 1, address: str | None = None,
            resume: bool = False, method: str = "sequitur", on_result: Callable[[dict], None] | None = None,
            progress: bool = True, exhaustive: bool = False, seed: int | None = None,
            early_stop: bool = False, stop_margin: float = 0.02, shared_teacher: bool = True,
            pretrain_workers: int = 1) -> ExploreRun:
    """Pre-train the tuning blocks, then search (comp, and with `baseline` the default networks).

    `early_stop` and `stop_margin`: earlystop.EarlyStop, one rule for both searches (off by default
    here, on by default in `cococ prune`; never with `exhaustive`, whose records must hold for any
    threshold: replay(..., stopper=...) replays the rule from them). `workers`: candidates
    evaluated at once. `pretrain_workers`: pre-training processes (local executor; default 1: a
    process costs ~5-10 s of CPU to start, more than it saves on small nets, see
    benchmarks/explore_parallel.py). `shared_teacher`: pre-train all groups of a process in one
    run, one teacher forward per batch (False: one run per group, as before; the same blocks).
    """
    run_dir = Path(run_dir)
    configs = [tuple(float(r) for r in c) for c in configs]
    if len(configs[0]) != len(full.modules):
        raise CococError(f"the subspace gives {len(configs[0])} rates per configuration, the network has "
                         f"{len(full.modules)} modules ({', '.join(full.modules) or 'none: annotate module {...}'})")
    db_path = run_dir / "run.sqlite"
    if db_path.exists() and not resume:
        raise CococError(f"{run_dir} already holds a run; pass --resume to continue it or choose another -o")
    # everything that can be refused is checked before the run folder is made: a failed start
    # leaves nothing behind that would refuse the corrected command
    ds = data if isinstance(data, Dataset) else load_data(data, full.inputs[0].type.shape)
    settings = run_settings(full, configs, objective, solver, pretrain_solver, ds, steps=steps,
                            pretrain_steps=pretrain_steps, method=method, seed=seed)
    fresh = FreshRun(run_dir)
    db = RunDB(db_path)
    try:
        check_resume(run_dir, db, settings, ds.name if isinstance(data, Dataset) else str(data))
        db.set_meta("objective", str(objective))
        statics = db.static_metrics()
        need = [i for i in range(len(configs)) if i not in statics
                or any(str(m) not in statics[i] for m in objective.metrics() if m.measured)]
        for i in _progress(need, progress, "metrics"):
            statics[i] = static_metrics(full, configs[i], objective)
            db.set_static(i, statics[i])
        full_size, _ = graph_cost(full.clone())
        run = ExploreRun(objective, configs, statics, None, None, run_dir, full_size)
        stopper = EarlyStop(objective, steps, bool(early_stop) and not exhaustive, float(stop_margin))
        refuse_stopped_records(db, stopper, run_dir)
        if comp:
            plan = identify_tuning_blocks(configs, method=method)
            run.blocks = sum(b.needs_training for b in plan.blocks)
            store = BlockStore(run_dir / "blocks", teacher_hash(full))
            # the order first: with nothing to evaluate (all broken constraints) skip pre-training
            order, _ = order_candidates(objective, statics)
            if order:
                pretrain_groups(full, plan, ds, pretrain_solver or solver, store, db,
                                steps=pretrain_steps, progress=progress, executor=executor, address=address,
                                workers=pretrain_workers, shared_teacher=shared_teacher)
            task = Task(full, "comp", solver, ds.for_decisions(), steps, list(plan.blocks), str(run_dir / "blocks"),
                        teacher_hash(full), seed, str(run_dir / "networks"))
            run.comp = search(task, configs, objective, statics, db, plan.composite, executor=executor,
                              workers=workers, address=address, on_result=on_result, progress=progress,
                              exhaustive=exhaustive, stopper=stopper)
            run.comp.pretrain_seconds = db.phase_seconds("pretrain")
        if baseline:
            task = Task(full, "base", solver, ds.for_decisions(), steps, seed=seed,
                        weights_dir=str(run_dir / "networks"))
            run.base = search(task, configs, objective, statics, db, None, executor=executor, workers=workers,
                              address=address, on_result=on_result, progress=progress, exhaustive=exhaustive,
                              stopper=stopper)
        db.set_meta("finished", time.time())
        return run
    except BaseException:
        fresh.undo_if_nothing_done(db)
        raise
    finally:
        db.close()


def refuse_stopped_records(db: RunDB, stopper: EarlyStop, run_dir: Path) -> None:
    """A resumed run takes its records as they are: a candidate stopped early is valid only under
    the rule that stopped it, so a run holding such records resumes with early stop on."""
    stopped = [r for r in db.evaluations() if r["stop"] != "full"]
    if stopped and not stopper.enabled:
        raise CococError(f"{run_dir}: the run there stopped {len(stopped)} candidates early; resume it with "
                         "early stop on (without --no-early-stop), or start a new run (another -o)")


class FreshRun:
    """What a new run creates (the folder, run.sqlite), taken away again when it fails before
    anything was finished: the corrected command then starts clean instead of being refused."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.made_dir = not run_dir.exists()
        self.new = not (run_dir / "run.sqlite").exists()

    def undo_if_nothing_done(self, db: RunDB) -> None:
        if not self.new or db.evaluations() or db.blocks():
            return
        db.close()
        if self.made_dir:
            shutil.rmtree(self.run_dir, ignore_errors=True)
            return
        for name in ("run.sqlite", "run.sqlite-wal", "run.sqlite-shm"):
            (self.run_dir / name).unlink(missing_ok=True)


def replay(objective: Objective, statics: dict, evaluations: list[dict], pretrain_seconds: float = 0.0,
           stopper: EarlyStop | None = None) -> dict:
    """The 1-node search for `objective` replayed from finished evaluations (deterministic
    training makes this what a fresh search would do): answer, #configs, seconds. With `stopper`
    (records of candidates trained to the end, e.g. an exhaustive run), the search as the
    early-stop rule would have run it (earlystop.simulate): "stopped" and "saved_seconds" too."""
    order, early = order_candidates(objective, statics)
    done = {r["idx"]: r for r in evaluations}
    full_seconds = {i: r["seconds"] for i, r in done.items()}
    if stopper is not None and stopper.enabled:
        done = simulate(stopper, objective, order, done, early)
    answer, pos = decide(objective, order, done, early)
    if early and pos is None and any(i not in done for i in order):
        raise CococError("replay: the records do not cover the order up to an answer")
    upto = order[:pos + 1] if pos is not None else [i for i in order if i in done]
    floor = accuracy_floor(objective) if early else None
    for i in upto:      # a stopped candidate failed its run's target; a lower one it might have met
        r = done[i]
        if r.get("stop", "full") != "full" and (floor is None or r.get("stop_target") is None
                                                or floor < r["stop_target"]):
            raise CococError(f"replay: candidate {i} was stopped early (accuracy target "
                             f"{r.get('stop_target')}); replaying '{objective}' needs records of a run "
                             "without early stop (exhaustive=True or early_stop=False)")
    secs = sum(done[i]["seconds"] for i in upto)
    stopped = [i for i in upto if done[i].get("stop", "full") != "full"]
    return {"answer": answer, "configs": len(upto), "seconds": secs + pretrain_seconds,
            "eval_seconds": secs, "pretrain_seconds": pretrain_seconds, "stopped": len(stopped),
            "saved_seconds": sum(full_seconds[i] - done[i]["seconds"] for i in stopped)}


def _progress(items, on: bool, desc: str):
    if not on or not items:
        return items
    return tqdm(items, desc=desc, unit="cfg", dynamic_ncols=True)
