"""Early stop of fine-tuning: a candidate that can no longer become the answer stops training.

Both searches (default networks and block-trained ones) use the same rule, `EarlyStop`, with
the same settings; each applies it to the evaluations of its own search.

The rule, at each test of a candidate's fine-tuning before its last iteration (the solver's
`test_interval`, iteration 0 included):

    stop at iteration k  iff  acc(k) + R(k) + margin < target

  target  the accuracy a candidate must reach to be able to win: for `min X constraint
          Accuracy >= t` (X known before training) t itself (the search order already skips
          every candidate not smaller than the answer found: they are never trained); for
          `max Accuracy ...` the best accuracy among the satisfying candidates so far (and any
          Accuracy constraint). Other objectives have no target: nothing stops.
  R(k)    the largest gain from iteration k to the end, acc(end) − acc(k), among the candidates
          of this search that trained to the end — only once at least `min_complete` of them
          have a test at k; before that nothing stops.

How it can err: it is not sound. A candidate is stopped wrongly exactly when its own gain from
k to the end would have exceeded R(k) + margin, i.e. it would have recovered more than every
fully trained candidate of its search did from the same iteration; the search may then return
a worse answer than without the rule (a larger network; for `max Accuracy` a less accurate one),
never one that misses the objective (every answer is a fully trained candidate that meets it). The defaults, `margin` 0.02 (2 points) and
`min_complete` 3, are set from that failure: on the digits test net (40 iterations, a test every
10) margin 0 with 2 complete candidates stopped one at iteration 10 (0.717 + 0.172 < 0.9) that
would have ended at 0.906, so the search answered a larger candidate; with the defaults both
searches stop 2 of 7 candidates and answer as without the rule (tests/runtime/test_earlystop.py).
A stopped candidate is recorded with its iterations and the reason; its accuracy is the one at
the stop, below the target, so it never counts as satisfying.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from cococ.frontend.objective import Constraint, Objective


def accuracy_constraints(objective: Objective) -> list[Constraint]:
    """The objective's constraints on Accuracy, in the order written (any direction)."""
    return [c for c in objective.constraints if str(c.metric) == "Accuracy"]


def accuracy_floor(objective: Objective) -> float | None:
    """The largest t of the `Accuracy >= t` (or `> t`) constraints, if the objective has one: the
    accuracy every answer reaches. (The prune report's "threshold acc", report._threshold, is the
    first Accuracy constraint's value instead, an upper bound `Accuracy <= t` too.)"""
    ts = [c.value for c in accuracy_constraints(objective) if c.op in (">=", ">")]
    return max(ts) if ts else None


@dataclass(frozen=True)
class StopRule:
    """The rule's current state, sent to the worker evaluating a candidate (picklable)."""
    target: float | None = None
    recovery: dict[int, float] = field(default_factory=dict)   # iteration k -> R(k)
    margin: float = 0.0

    def hopeless(self, it: int, acc: float) -> bool:
        r = self.recovery.get(int(it))
        return self.target is not None and r is not None and acc + r + self.margin < self.target

    def reason(self, it: int, acc: float) -> str:
        return (f"hopeless at iteration {it}: accuracy {acc:.4f} + best recovery {self.recovery[int(it)]:.4f}"
                f"{f' + margin {self.margin:g}' if self.margin else ''} < target {self.target:.4f}")


@dataclass(frozen=True)
class EarlyStop:
    """The rule's settings; `rule(records)` is its state after the finished evaluations `records`."""
    objective: Objective
    steps: int
    enabled: bool = True
    margin: float = 0.02
    min_complete: int = 3

    def target(self, records) -> float | None:
        floor = accuracy_floor(self.objective)
        if str(self.objective.metric) != "Accuracy":
            return floor
        if self.objective.direction != "max":
            return None
        best = [r["accuracy"] for r in records if self.objective.satisfied(r["metrics"])]
        cands = [a for a in [floor, max(best) if best else None] if a is not None]
        return max(cands) if cands else None

    def rule(self, records) -> StopRule:
        if not self.enabled:
            return StopRule()
        gains: dict[int, list[float]] = {}
        for r in records:
            if r.get("stop", "full") != "full" or not r.get("curve"):
                continue
            final = r["accuracy"]
            for it, acc in r["curve"]:
                if it < self.steps:
                    gains.setdefault(int(it), []).append(final - acc)
        recovery = {k: max(g) for k, g in gains.items() if len(g) >= self.min_complete}
        return StopRule(self.target(records), recovery, self.margin)


def saved_iterations(records, steps: int) -> int:
    """Fine-tuning iterations the stopped candidates did not run."""
    return sum(steps - r["iterations"] for r in records if r.get("stop", "full") != "full")


def seconds_per_iteration(records, steps: int) -> float | None:
    """Mean seconds per iteration of the candidates that trained to the end (None: none did)."""
    full = [r["seconds"] / steps for r in records if r.get("stop", "full") == "full" and steps]
    return sum(full) / len(full) if full else None


def simulate(stopper: EarlyStop, objective: Objective, order: list[int], done: dict[int, dict],
             early: bool) -> dict[int, dict]:
    """The records a one-node search with `stopper` would have made, from records of candidates
    trained to the end (an exhaustive run), walking `order` as the search does: a candidate the
    rule stops gets its accuracy at the stop, and its seconds scaled to the iterations it ran
    (an estimate: assembly and tests are not proportional). Benchmarks replay both searches
    with the same rule this way (explore.replay(..., stopper=...))."""
    seen: list[dict] = []
    out: dict[int, dict] = {}
    for i in order:
        r = done.get(i)
        if r is None:
            break
        rule = stopper.rule(seen)
        cut = next(((it, acc) for it, acc in r["curve"] if it < stopper.steps and rule.hopeless(it, acc)), None)
        if cut is not None:
            it, acc = cut
            r = {**r, "accuracy": acc, "metrics": {**r["metrics"], "Accuracy": acc}, "iterations": it,
                 "stop": rule.reason(it, acc), "stop_target": rule.target,
                 "seconds": r["seconds"] * it / stopper.steps, "curve": [c for c in r["curve"] if c[0] <= it]}
        out[i] = r
        seen.append(r)
        if early and cut is None and objective.satisfied(r["metrics"]):
            break
    return out
