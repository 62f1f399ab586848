"""`--tune N`: MetaSchedule (tvm.s_tir.meta_schedule) over cococ's kernels, N trials per kernel.

Tasks are the module's PrimFuncs before any schedule (what MetaSchedule's own search space
starts from). Records go to a JSON database in the tuning folder (OUT/tuning by default:
database_workload.json, database_tuning_record.json, logs/); a rebuild pointing at the same
folder tunes only the kernels that have no record yet, so rebuilding is cheap and repeatable.
At schedule time a kernel with a record takes MetaSchedule's best schedule; the others keep
cococ's hand-written ones (build.schedule).
"""
from __future__ import annotations

import os
from pathlib import Path

import tvm
from tvm import tirx


def _ms():
    from tvm.s_tir import meta_schedule as ms
    return ms


def tuning_target(target: tvm.target.Target) -> tvm.target.Target:
    """MetaSchedule needs the CPU core count in an llvm target."""
    if target.kind.name == "llvm" and "num-cores" not in target.attrs:
        d = dict(target.export())
        d["num-cores"] = os.cpu_count() or 1
        return tvm.target.Target(d)
    return target


def open_database(work_dir: Path):
    work_dir.mkdir(parents=True, exist_ok=True)
    return _ms().database.JSONDatabase(work_dir=str(work_dir), module_equality="structural")


def tune_module(mod: tvm.IRModule, target: tvm.target.Target, work_dir: Path, trials: int):
    """Tune every kernel without a record for `trials` trials; returns the database."""
    ms = _ms()
    target = tuning_target(target)
    db = open_database(work_dir)
    if trials <= 0:
        return db
    tasks = ms.relax_integration.extract_tasks(mod, target)
    todo = [t for t in tasks if db.query_tuning_record(t.dispatched[0], target, "main") is None]
    if not todo:
        return db
    ctxs, weights = ms.relax_integration.extracted_tasks_to_tune_contexts(todo, str(work_dir), seed=0)
    ms.tune_tasks(tasks=ctxs, task_weights=weights, work_dir=str(work_dir),
                  max_trials_global=trials * len(ctxs), max_trials_per_task=trials,
                  num_trials_per_iter=min(64, max(1, trials)), database=db)
    return db


def apply_database(mod: tvm.IRModule, target: tvm.target.Target, db) -> tuple[tvm.IRModule, int]:
    """Kernels with a tuning record replaced by MetaSchedule's best schedule (marked scheduled)."""
    target = tuning_target(target)
    mod = mod.clone()
    n = 0
    for gv, func in list(mod.functions.items()):
        if not isinstance(func, tirx.PrimFunc):
            continue
        sch = db.query_schedule(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), target,
                                workload_name="main")
        if sch is None:
            continue
        new = sch.mod["main"].with_attr("tirx.is_scheduled", True)
        mod[gv] = new.with_attr("global_symbol", func.attrs["global_symbol"]) \
            if func.attrs and "global_symbol" in func.attrs else new.without_attr("global_symbol")
        n += 1
    return mod, n
