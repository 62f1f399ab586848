"""The static arena: one byte array that holds every intermediate tensor of a model run.

A tensor lives from the step that writes it to the last step that reads it (both inclusive,
so a kernel's output never shares bytes with its own inputs). Tensors whose lifetimes do not
overlap may share bytes. Placement is the greedy heuristic TFLite Micro's planner and TVM's
USMP use: largest tensor first, each at the lowest offset where it overlaps no
already-placed tensor that is live at the same time (first fit). It is not optimal, but it
is never worse than the largest two live sets stacked, and it is fast and deterministic.
"""
from __future__ import annotations

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


def plan_arena(intervals: list[Interval], align: int = 8) -> int:
    """Assign `offset` to every interval; returns the arena size in bytes (aligned)."""
    placed: list[Interval] = []
    order = sorted(intervals, key=lambda iv: (-iv.size, iv.start, iv.name))
    for iv in order:
        size = align_up(max(iv.size, 1), align)
        busy = sorted((p.offset, p.offset + align_up(p.size, align)) for p in placed if p.overlaps(iv))
        offset = 0
        for lo, hi in busy:
            if offset + size <= lo:
                break
            offset = max(offset, hi)
        iv.offset = offset
        placed.append(iv)
    return max((p.offset + align_up(p.size, align) for p in placed), default=0)


def check_arena(intervals: list[Interval]) -> None:
    """Raise AssertionError if two tensors live at the same time share a byte (used by tests)."""
    for i, a in enumerate(intervals):
        for b in intervals[i + 1:]:
            if a.overlaps(b) and a.offset < b.offset + b.size and b.offset < a.offset + a.size:
                raise AssertionError(f"{a.name} [{a.offset},{a.offset + a.size}) and {b.name} "
                                     f"[{b.offset},{b.offset + b.size}) are live together at steps "
                                     f"{max(a.start, b.start)}..{min(a.end, b.end)} and overlap")


def peak_live(intervals: list[Interval]) -> int:
    """The lower bound on any arena: the most bytes live at one step."""
    steps = {s for iv in intervals for s in range(iv.start, iv.end + 1)}
    return max((sum(iv.size for iv in intervals if iv.start <= s <= iv.end) for s in steps), default=0)
