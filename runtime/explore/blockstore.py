"""Pre-training tuning blocks for the search, one group at a time, recorded as each group finishes.

Uses runtime/blocks.py (BlockStore, teacher_hash, pretrain). Each group of non-overlapping blocks
(Wootz §6.2) is pre-trained by its own `pretrain` call on a one-group plan (in this process, or
as a Ray task with `--executor ray`), so a killed run keeps every finished group: `--resume`
skips the blocks the run database lists.
"""
from __future__ import annotations

import time

from cococ.passes.teacher_student import block_key
from cococ.passes.tuning_blocks import BlockPlan
from cococ.runtime.blocks import pretrain
from cococ.runtime.explore.ray_exec import pretrain_ray


def pretrain_groups(full, plan: BlockPlan, data, solver, store, db, *, steps: int, progress: bool = True,
                    executor: str = "local", address: str | None = None) -> float:
    """Pre-train every group not yet recorded; returns the seconds spent now (the db keeps the sum).

    executor "local": one group after the other in this process; "ray": every group a Ray task
    (ray_exec.pretrain_ray), the groups being independent (each starts from the teacher), stored
    and recorded here as each task finishes. Either way the blocks are the same.
    """
    recorded = db.blocks()
    groups = plan.groups or [[i] for i in range(len(plan.blocks))]
    todo = []
    for gi, group in enumerate(groups):
        blocks = [plan.blocks[b] for b in group if plan.blocks[b].needs_training]
        if blocks and not all(block_key(full, b) in recorded for b in blocks):
            todo.append((gi, blocks))
    if executor == "ray" and todo:
        return pretrain_ray(full, todo, data, solver, store, db, steps=steps, address=address, progress=progress)
    spent = 0.0
    for n, (gi, blocks) in enumerate(todo):
        keys = [block_key(full, b) for b in blocks]
        sub = BlockPlan(blocks, [], None, [list(range(len(blocks)))])
        t0 = time.perf_counter()
        pretrain(full, sub, data, solver, store, steps=steps, progress=progress, numbering=(gi, n + 1, len(todo)))
        dt = time.perf_counter() - t0
        for k in keys:
            db.add_block(k, gi, dt / len(keys))
        db.add_phase_seconds("pretrain", dt)
        spent += dt
    return spent
