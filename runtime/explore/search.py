"""Composability-based exploration (Wootz §4, §6.2): order, pre-train, evaluate, stop when certain.

This module orders the candidates and runs the search loop over an executor; what one
evaluation does (metrics before training, fine-tuning a candidate) is evaluate.py.

Candidates are ordered by the objective's metric (ModelSize/MACs/Cycles/Latency: min → smallest
first; Accuracy: max → largest model first). Metrics that need no training are computed from the
pruned graph (params, MACs) or by building it with a backend (Cycles[arm-m4], Latency[x86]),
cached in the run database; candidates failing a constraint on them are never trained. For
`min X constraint Accuracy ≥ t` (X known before training) the search stops at the first candidate
in ascending X that meets t: once it is found, candidates later in the order cannot beat it.
mode "comp" assembles each candidate from pre-trained tuning blocks (finetune_graph); mode "base"
runs the same search with default networks (pruned_network: ℓ1-pruned, inherited weights).
Both modes take the same early-stop rule (earlystop.py): fine-tuning of a candidate that can no
longer win stops at a test; the result counts the iterations this saved.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Sequence

from cococ.frontend.objective import Objective
from cococ.runtime.explore.earlystop import EarlyStop, saved_iterations, seconds_per_iteration
from cococ.runtime.explore.evaluate import Config, Task
from cococ.runtime.explore.executors import run_local
from cococ.runtime.explore.ray_exec import run_ray


def order_candidates(objective: Objective, statics: dict[int, dict]) -> tuple[list[int], bool]:
    """Candidate indices in exploration order, and whether the first satisfying one is the answer.

    Candidates whose pre-training metrics already break a constraint are left out.
    """
    static_cons = [c for c in objective.constraints if str(c.metric) != "Accuracy"]
    keep = [i for i, m in statics.items() if all(c.holds(m) for c in static_cons)]
    key = str(objective.metric)
    if key == "Accuracy":   # larger models tend to be more accurate: largest first; no early answer
        sign = -1 if objective.direction == "max" else 1
        return sorted(keep, key=lambda i: (sign * statics[i]["ModelSize"], i)), False
    sign = 1 if objective.direction == "min" else -1
    return sorted(keep, key=lambda i: (sign * statics[i][key], i)), True


@dataclass
class SearchResult:
    mode: str
    answer: dict | None             # the chosen evaluation record (None: nothing satisfies)
    evaluated: list[dict]           # every evaluation of this mode, in the order they finished
    order: list[int]
    certain: bool                   # the answer is provably the first satisfying one in order
    eval_seconds: float             # summed training time of evaluated candidates (1-node equivalent)
    wall_seconds: float
    pretrain_seconds: float = 0.0
    steps: int = 0                  # the fine-tuning budget per candidate

    @property
    def stopped(self) -> list[dict]:
        """The evaluations the early-stop rule ended before their budget."""
        return [r for r in self.evaluated if r.get("stop", "full") != "full"]

    @property
    def iterations(self) -> int:
        """Fine-tuning iterations run by the evaluated candidates."""
        return sum(r["iterations"] if r.get("iterations") is not None else self.steps for r in self.evaluated)

    @property
    def saved_seconds(self) -> float:
        """An estimate of the training time the early stop saved: the iterations not run, at the
        mean seconds per iteration of the candidates that trained to the end."""
        per = seconds_per_iteration(self.evaluated, self.steps)
        return saved_iterations(self.evaluated, self.steps) * per if per else 0.0

    def early_stop_summary(self) -> str:
        n, full = len(self.evaluated), self.steps * len(self.evaluated)
        return (f"{self.mode}: {len(self.stopped)} of {n} candidates stopped early; {self.iterations} of "
                f"{full} fine-tuning iterations run; ~{self.saved_seconds:.1f} s saved (estimate)")

    @property
    def configs_evaluated(self) -> int:
        """#configs evaluated to reach the answer (those before it in the order, and in flight)."""
        return len(self.evaluated)

    @property
    def total_seconds(self) -> float:
        return self.eval_seconds + self.pretrain_seconds


def decide(objective: Objective, order: list[int], done: dict[int, dict], early: bool
           ) -> tuple[dict | None, int | None]:
    """(answer, position) from the finished evaluations; position bounds what is still useful."""
    if early:
        for pos, i in enumerate(order):
            r = done.get(i)
            if r is not None and objective.satisfied(r["metrics"]):
                return r, pos
        return None, None
    sat = [done[i] for i in order if i in done and objective.satisfied(done[i]["metrics"])]
    if not sat:
        return None, None
    key = str(objective.metric)
    best = sat[0]
    for r in sat[1:]:
        if objective.better(r["metrics"][key], best["metrics"][key]):
            best = r
    return best, None


def search(task: Task, configs: Sequence[Config], objective: Objective, statics: dict[int, dict], db,
           composite: Sequence | None = None, *, executor: str = "local", workers: int = 1,
           address: str | None = None, on_result: Callable[[dict], None] | None = None,
           progress: bool = True, exhaustive: bool = False, stopper: EarlyStop | None = None) -> SearchResult:
    """Evaluate candidates of `task.mode` in objective order until the answer is certain.

    Finished evaluations already in `db` (a resumed run) are taken as they are. `on_result` is
    called after each new record is stored (tests use it to abort a run). `exhaustive`
    evaluates every candidate (benchmarks replay any threshold from the records). `stopper`: the
    early-stop rule (None: every candidate trains for `task.steps`).
    """
    t0 = time.perf_counter()
    order, early = order_candidates(objective, statics)
    early = early and not exhaustive
    done = db.done(task.mode)
    answer, pos = decide(objective, order, done, early)
    limit = pos if pos is not None else len(order) - 1
    todo = [p for p in range(limit + 1) if order[p] not in done]
    if todo:
        comp = composite or [None] * len(configs)
        jobs = [(p, order[p], tuple(configs[order[p]]), comp[order[p]], statics[order[p]]) for p in range(len(order))]
        run = run_ray if executor == "ray" else run_local
        run(task, jobs, todo, workers=workers, db=db, objective=objective, early=early, address=address,
            on_result=on_result, progress=progress, stopper=stopper)
        done = db.done(task.mode)
        answer, pos = decide(objective, order, done, early)
    evaluated = [r for r in db.evaluations(task.mode)]
    if pos is not None:   # what counted for this answer: everything at or before it, and any in flight
        keep = set(order[:pos + 1])
        evaluated = [r for r in evaluated if r["idx"] in keep] + \
                    [r for r in evaluated if r["idx"] not in keep]
    return SearchResult(task.mode, answer, evaluated, order, early and answer is not None,
                        sum(r["seconds"] for r in evaluated), time.perf_counter() - t0, steps=task.steps)
