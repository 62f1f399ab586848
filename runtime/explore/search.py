"""Composability-based exploration (Wootz §4, §6.2): order, pre-train, evaluate, stop when certain.

Candidates are ordered by the objective's metric (ModelSize/MACs/Cycles/Latency: min → smallest
first; Accuracy: max → largest model first). Metrics that need no training are computed from the
pruned graph (params, MACs) or by building it with a backend (Cycles[arm-m4], Latency[x86]),
cached in the run database; candidates failing a constraint on them are never trained. For
`min X constraint Accuracy ≥ t` (X known before training) the search stops at the first candidate
in ascending X that meets t: once it is found, candidates later in the order cannot beat it.
mode "comp" assembles each candidate from pre-trained tuning blocks (finetune_graph); mode "base"
runs the same search with default networks (pruned_network: ℓ1-pruned, inherited weights).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from cococ.frontend.objective import Objective
from cococ.ir.core import Graph
from cococ.passes.teacher_student import finetune_graph, pruned_network

Config = tuple[float, ...]
STATIC = ("ModelSize", "MACs")


def graph_cost(g: Graph) -> tuple[int, int]:
    """(parameters, MACs) of a graph, from the ops' cost functions."""
    from cococ.ir.verify import infer_shapes
    infer_shapes(g)
    params = macs = 0
    for layer in g.layers:
        c = layer.opdef.cost(layer, [v.type for v in layer.inputs], [v.type for v in layer.outputs])
        params, macs = params + c.params, macs + c.macs
    return int(params), int(macs)


def measure(g: Graph, metric: str) -> float:
    """A measured metric: Cycles[arm-m4] (emulator estimate) or Latency[x86] (median seconds)."""
    from cococ.backends.build import build
    name, target = metric.rstrip("]").split("[")
    art = build(g, target)
    if name == "Cycles":
        return float(art.bench()["cycles"])
    return float(art.bench(n=10)["median_s"])


def static_metrics(full: Graph, config: Config, objective: Objective) -> dict[str, float]:
    g = pruned_network(full, config)
    params, macs = graph_cost(g)
    out: dict[str, float] = {"ModelSize": params, "MACs": macs}
    for m in objective.metrics():
        if m.measured:
            out[str(m)] = measure(g, str(m))
    return out


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
class Task:
    """What a worker needs to evaluate candidates of one mode (picklable: sent to processes)."""
    full: Graph
    mode: str                       # base | comp
    solver: Any
    data: Any                       # a Dataset or a spec for load_data
    steps: int
    blocks: list = field(default_factory=list)           # TuningBlocks (comp)
    store_dir: str | None = None
    teacher: str | None = None
    seed: int | None = None
    weights_dir: str | None = None  # where each evaluated network's trained weights go

    def dataset(self):
        from cococ.runtime.data import Dataset, load_data
        if isinstance(self.data, Dataset):
            return self.data
        self.data = load_data(self.data, self.full.inputs[0].type.shape)
        return self.data


class _Arrays:
    """A BlockStore seen as the mapping finetune_graph reads: key -> {layer/param: array}."""

    def __init__(self, store):
        self.store = store

    def get(self, key):
        got = self.store.get(key)
        if isinstance(got, tuple):
            got = got[0]
        return got


def evaluate_candidate(task: Task, idx: int, config: Config, composite, static: dict, worker: str = "0") -> dict:
    """Assemble, fine-tune for `task.steps` and test one candidate: a record for the database."""
    from cococ.runtime.train import train
    t0 = time.perf_counter()
    if task.mode == "comp":
        from cococ.runtime.explore.blockstore import open_store
        store = open_store(task.store_dir, task.teacher)
        g = finetune_graph(task.full, config, composite, task.blocks, _Arrays(store))
    else:
        g = pruned_network(task.full, config)
    res = train(g, task.solver, task.dataset(), max_iter=task.steps, seed=task.seed, progress=False, threads=1)
    acc = float(res.accuracy)
    if task.weights_dir:
        from pathlib import Path

        from cococ.runtime.train import save_weights
        save_weights(g, Path(task.weights_dir) / f"{task.mode}_{idx}.safetensors", {"config": list(config)})
    metrics = dict(static)
    metrics["Accuracy"] = acc
    return {"idx": idx, "config": tuple(config), "params": int(static["ModelSize"]), "macs": int(static["MACs"]),
            "metrics": metrics, "accuracy": acc,
            "curve": [[int(r["iter"]), float(r["accuracy"])] for r in res.test_log],
            "seconds": time.perf_counter() - t0, "worker": worker,
            "blocks_used": g.meta.get("blocks_used", [])}


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

    @property
    def configs_evaluated(self) -> int:
        """#configs evaluated to reach the answer (those before it in the order, and in flight)."""
        return len(self.evaluated)

    @property
    def total_seconds(self) -> float:
        return self.eval_seconds + self.pretrain_seconds


def trained_network(task_full: Graph, weights_dir, mode: str, rec: dict) -> Graph:
    """The evaluated network of record `rec`, with the weights its fine-tuning ended with."""
    from pathlib import Path

    from cococ.frontend.weights import load_weights
    g = pruned_network(task_full, rec["config"])
    load_weights(g, Path(weights_dir) / f"{mode}_{rec['idx']}.safetensors")
    return g


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
           progress: bool = True, exhaustive: bool = False) -> SearchResult:
    """Evaluate candidates of `task.mode` in objective order until the answer is certain.

    Finished evaluations already in `db` (a resumed run) are taken as they are. `on_result` is
    called after each new record is stored (tests use it to abort a run). `exhaustive`
    evaluates every candidate (benchmarks replay any threshold from the records).
    """
    from cococ.runtime.explore.executors import run_local, run_ray
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
            on_result=on_result, progress=progress)
        done = db.done(task.mode)
        answer, pos = decide(objective, order, done, early)
    evaluated = [r for r in db.evaluations(task.mode)]
    if pos is not None:   # what counted for this answer: everything at or before it, and any in flight
        keep = set(order[:pos + 1])
        evaluated = [r for r in evaluated if r["idx"] in keep] + \
                    [r for r in evaluated if r["idx"] not in keep]
    return SearchResult(task.mode, answer, evaluated, order, early and answer is not None,
                        sum(r["seconds"] for r in evaluated), time.perf_counter() - t0)
