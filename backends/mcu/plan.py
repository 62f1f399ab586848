"""The static arena: one byte array that holds every intermediate tensor of a model run.

A tensor lives from the step that writes it to the last step that reads it (both inclusive,
so a kernel's output never shares bytes with its own inputs). Tensors whose lifetimes do not
overlap may share bytes. Placement is the greedy heuristic TFLite Micro's planner and TVM's
USMP use: largest tensor first, each at the lowest offset where it overlaps no
already-placed tensor that is live at the same time (first fit). First fit depends on the
order, so other orders are tried too (longest-lived first, earliest first, largest
size x lifetime first, the tensors live at the peak step first, and 32 seeded perturbations
of the size order) and the smallest arena is kept (the first order on ties): deterministic,
and a few milliseconds for a hundred tensors. On lifetimes shaped like real nets (chains,
residual skips, scratch columns) this stays within 1% of the lower bound
(tests/backends/test_mcu_memory.py). The lower bound of any placement is `peak_live`, the most bytes
live at one step; `report.json` gives both.
"""
from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass
class Interval:
    name: str
    size: int        # bytes
    start: int       # first step index that writes it
    end: int         # last step index that reads it
    offset: int = -1

    def overlaps(self, other: "Interval") -> bool:
        return self.start <= other.end and other.start <= self.end


def align_up(n: int, a: int) -> int:
    return (n + a - 1) // a * a


# first-fit orders tried, the first one TFLite Micro's (ties keep the earlier order)
ORDERS = (
    lambda iv: (-iv.size, iv.start, iv.name),
    lambda iv: (-(iv.end - iv.start), -iv.size, iv.start, iv.name),
    lambda iv: (iv.start, -iv.size, iv.name),
    lambda iv: (-iv.size * (iv.end - iv.start + 1), iv.start, iv.name),
)


def _first_fit(intervals: list[Interval], order, align: int) -> tuple[dict[int, int], int]:
    """Offsets (by id) and arena size of first fit in `order`."""
    placed: list[tuple[Interval, int, int]] = []
    for iv in sorted(intervals, key=order):
        size = align_up(max(iv.size, 1), align)
        busy = sorted((lo, hi) for p, lo, hi in placed if p.overlaps(iv))
        offset = 0
        for lo, hi in busy:
            if offset + size <= lo:
                break
            offset = max(offset, hi)
        placed.append((iv, offset, offset + size))
    return {id(p): lo for p, lo, _ in placed}, max((hi for _, _, hi in placed), default=0)


PERTURBED = 32  # more orders: size order with each size scaled by a seeded random factor in [0.5, 1.5)


def _orders(intervals: list[Interval]) -> list:
    """ORDERS, then the tensors live at the peak step first, then the perturbed size orders."""
    peak = {id(iv) for iv in live_at(intervals, peak_step(intervals))}
    orders = [*ORDERS, lambda iv: (id(iv) not in peak, -iv.size, iv.start, iv.name)]
    for seed in range(PERTURBED):
        rnd = random.Random(seed)
        scale = {id(iv): 0.5 + rnd.random() for iv in intervals}
        orders.append(lambda iv, scale=scale: (-iv.size * scale[id(iv)], iv.start, iv.name))
    return orders


def plan_arena(intervals: list[Interval], align: int = 8) -> int:
    """Assign `offset` to every interval; returns the arena size in bytes (aligned)."""
    best = None
    for order in _orders(intervals):
        offsets, total = _first_fit(intervals, order, align)
        if best is None or total < best[1]:
            best = (offsets, total)
    for iv in intervals:
        iv.offset = best[0][id(iv)]
    return best[1]


def check_arena(intervals: list[Interval]) -> None:
    """Raise AssertionError if two tensors live at the same time share a byte (used by tests)."""
    for i, a in enumerate(intervals):
        for b in intervals[i + 1:]:
            if a.overlaps(b) and a.offset < b.offset + b.size and b.offset < a.offset + a.size:
                raise AssertionError(f"{a.name} [{a.offset},{a.offset + a.size}) and {b.name} "
                                     f"[{b.offset},{b.offset + b.size}) are live together at steps "
                                     f"{max(a.start, b.start)}..{min(a.end, b.end)} and overlap")


def live_at(intervals: list[Interval], step: int) -> list[Interval]:
    return [iv for iv in intervals if iv.start <= step <= iv.end]


def peak_step(intervals: list[Interval]) -> int:
    """The step at which the most bytes are live (the earliest of equals; -1: no intervals)."""
    steps = sorted({s for iv in intervals for s in range(iv.start, iv.end + 1)})
    return max(steps, key=lambda s: (sum(iv.size for iv in live_at(intervals, s)), -s), default=-1)


def peak_live(intervals: list[Interval]) -> int:
    """The lower bound on any arena: the most bytes live at one step."""
    return sum(iv.size for iv in live_at(intervals, peak_step(intervals)))
