"""Pre-training tuning blocks for the search, recorded as each run of groups finishes.

Uses runtime/blocks.py (BlockStore, teacher_hash, pretrain). The groups of non-overlapping
blocks (Wootz §6.2) are independent (each starts from the teacher), so they are split over
`workers` processes, balanced by their modules; each process trains its share in one run with
one teacher forward per batch (`shared_teacher`; False: one run per group). The driver stores
the blocks and records them in the run database as each process finishes, so a killed run keeps
every finished share: `--resume` skips the blocks the run database lists. With `--executor ray`
every group is a Ray task (ray_exec.pretrain_ray). Either way the blocks are the same.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed

import torch

from cococ.passes.teacher_student import block_key
from cococ.passes.tuning_blocks import BlockPlan
from cococ.runtime.blocks import group_plan, pretrain, pretrain_detached
from cococ.runtime.explore.executors import die_with_parent
from cococ.runtime.explore.ray_exec import pretrain_ray


def split_groups(todo: list[tuple[int, list]], parts: int) -> list[list[tuple[int, list]]]:
    """`todo` ([(group id, blocks)]) in at most `parts` shares of about equal work (the modules
    their blocks span; largest group first to the lightest share), each share in group order."""
    shares: list[list[tuple[int, list]]] = [[] for _ in range(max(1, min(parts, len(todo))))]
    load = [0] * len(shares)
    for gi, blocks in sorted(todo, key=lambda t: -sum(len(b.rates) for b in t[1])):
        k = load.index(min(load))
        shares[k].append((gi, blocks))
        load[k] += sum(len(b.rates) for b in blocks)
    return [sorted(s, key=lambda t: t[0]) for s in shares if s]


def _worker_init(parent: int) -> None:
    die_with_parent(parent)
    torch.set_num_threads(1)


def _record(full, db, blocks_of_share, dt) -> None:
    keys = [(gi, block_key(full, b)) for gi, blocks in blocks_of_share for b in blocks]
    for gi, k in keys:
        db.add_block(k, gi, dt / len(keys))
    db.add_phase_seconds("pretrain", dt)


def pretrain_groups(full, plan: BlockPlan, data, solver, store, db, *, steps: int, progress: bool = True,
                    executor: str = "local", address: str | None = None, workers: int = 1,
                    shared_teacher: bool = True) -> float:
    """Pre-train every group not yet recorded; returns the seconds spent now (summed over the
    processes: the db keeps the sum, the 1-node compute time of Table 3)."""
    recorded = db.blocks()
    groups = plan.groups or [[i] for i in range(len(plan.blocks))]
    todo = []
    for gi, group in enumerate(groups):
        blocks = [plan.blocks[b] for b in group if plan.blocks[b].needs_training]
        for b in blocks:     # stored but not recorded (a store filled by another run): recorded now
            if block_key(full, b) not in recorded and block_key(full, b) in store:
                db.add_block(block_key(full, b), gi, 0.0)
        recorded = db.blocks()
        blocks = [b for b in blocks if block_key(full, b) not in recorded]
        if blocks:
            todo.append((gi, blocks))
    if executor == "ray" and todo:
        return pretrain_ray(full, todo, data, solver, store, db, steps=steps, address=address, progress=progress)
    if not todo:
        return 0.0
    shares = split_groups(todo, int(workers) or 1) if shared_teacher else [[t] for t in todo]
    if len(shares) > 1 and int(workers) > 1:
        return _in_processes(full, shares, data, solver, store, db, steps, progress, shared_teacher)
    spent = 0.0
    for n, share in enumerate(shares):
        sub = group_plan([blocks for _, blocks in share])
        t0 = time.perf_counter()
        pretrain(full, sub, data, solver, store, steps=steps, progress=progress, shared_teacher=shared_teacher,
                 group_ids=[gi for gi, _ in share],
                 numbering=(share[0][0], n + 1, len(shares)) if len(share) == 1 else None)
        dt = time.perf_counter() - t0
        _record(full, db, share, dt)
        spent += dt
    return spent


def _in_processes(full, shares, data, solver, store, db, steps, progress, shared_teacher) -> float:
    """Each share in its own process (one torch thread); blocks stored here as each finishes."""
    if progress:
        print(f"pre-training {sum(len(s) for s in shares)} groups in {len(shares)} processes: "
              + "; ".join(",".join(str(gi) for gi, _ in s) for s in shares), flush=True)
    spent = 0.0
    with ProcessPoolExecutor(len(shares), mp_context=mp.get_context("spawn"), initializer=_worker_init,
                             initargs=(os.getpid(),)) as pool:
        futures = {pool.submit(pretrain_detached, full, [blocks for _, blocks in s], data, solver, steps=steps,
                               shared_teacher=shared_teacher, group_ids=[gi for gi, _ in s]): s for s in shares}
        for fut in as_completed(futures):
            blocks, dt = fut.result()
            for key, (arrays, meta) in blocks.items():
                store.put(key, arrays, meta)
            _record(full, db, futures[fut], dt)
            spent += dt
    return spent
