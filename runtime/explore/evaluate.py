"""One candidate of the exploration: its metrics before training and its evaluation.

Metrics that need no training come from the pruned graph (params, MACs) or from building it
with a backend (Cycles[arm-m4], Latency[x86]). An evaluation assembles the candidate (mode
"comp": from pre-trained tuning blocks, finetune_graph; "base": the default ℓ1-pruned network,
pruned_network), fine-tunes it for `task.steps` and tests it. The executors (executors.py,
ray_exec.py) call `evaluate_candidate` in worker processes or Ray tasks; search.py drives them.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from cococ.backends.build import build
from cococ.frontend.objective import Metric, Objective
from cococ.frontend.weights import load_weights
from cococ.ir.core import Graph
from cococ.ir.target import get_target
from cococ.ir.verify import infer_shapes
from cococ.passes import run as run_passes
from cococ.passes.pipeline import default_pipeline
from cococ.passes.teacher_student import finetune_graph, pruned_network
from cococ.runtime.blocks import BlockStore
from cococ.runtime.data import Dataset, load_data
from cococ.runtime.train import save_weights, train

Config = tuple[float, ...]


def graph_cost(g: Graph) -> tuple[int, int]:
    """(parameters, MACs) of a graph, from the ops' cost functions."""
    infer_shapes(g)
    params = macs = 0
    for layer in g.layers:
        c = layer.opdef.cost(layer, [v.type for v in layer.inputs], [v.type for v in layer.outputs])
        params, macs = params + c.params, macs + c.macs
    return int(params), int(macs)


def measure(g: Graph, metric: Metric) -> float:
    """A measured metric: Cycles[arm-m4] (emulator estimate; Cycles[arm-m4, int8]: built as
    `cococ build --quantize int8` deploys it, after the same default passes) or Latency[x86]
    (median seconds)."""
    passes = default_pipeline(get_target(metric.target))   # as `cococ build` would: BatchNorm folded
    art = build(run_passes(g.clone(), passes, reproducer=None) if passes else g, metric.target, quantize=metric.quantize)
    if metric.name == "Cycles":
        return float(art.bench()["cycles"])
    return float(art.bench(n=10)["median_s"])


def static_metrics(full: Graph, config: Config, objective: Objective) -> dict[str, float]:
    g = pruned_network(full, config)
    params, macs = graph_cost(g)
    out: dict[str, float] = {"ModelSize": params, "MACs": macs}
    for m in objective.metrics():
        if m.measured:
            out[str(m)] = measure(g, m)
    return out


@dataclass
class Task:
    """What a worker needs to evaluate candidates of one mode (picklable: sent to processes)."""
    full: Graph
    mode: str                       # base | comp
    solver: Any
    data: Any                       # a Dataset or a spec for load_data; candidates are tested on its
                                    # test_arrays(): explore passes Dataset.for_decisions() (validation)
    steps: int
    blocks: list = field(default_factory=list)           # TuningBlocks (comp)
    store_dir: str | None = None
    teacher: str | None = None
    seed: int | None = None
    weights_dir: str | None = None  # where each evaluated network's trained weights go

    def dataset(self):
        if isinstance(self.data, Dataset):
            return self.data
        self.data = load_data(self.data, self.full.inputs[0].type.shape).for_decisions()
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


def evaluate_candidate(task: Task, idx: int, config: Config, composite, static: dict, worker: str = "0",
                       rule=None) -> dict:
    """Assemble, fine-tune for `task.steps` and test one candidate: a record for the database.

    `rule` (earlystop.StopRule, or anything with its `hopeless(it, acc)` / `reason(it, acc)` /
    `target`) stops the fine-tuning at a test where the candidate can no longer win; the record
    then says so (`stop`, `iterations`). `started_at`/`ended_at` (wall clock) and `threads` are
    for checking the executors (two workers overlap in time, one torch thread each).
    """
    t0 = time.perf_counter()
    started = time.time()
    if task.mode == "comp":
        store = BlockStore(task.store_dir, task.teacher)
        g = finetune_graph(task.full, config, composite, task.blocks, _Arrays(store))
    else:
        g = pruned_network(task.full, config)
    stopped: list = []

    def stop(it, acc):
        if rule is not None and rule.hopeless(it, acc):
            stopped.append((it, acc, rule.reason(it, acc), rule.target))
        return bool(stopped)

    res = train(g, task.solver, task.dataset(), max_iter=task.steps, seed=task.seed, progress=False, threads=1,
                stop=stop)
    acc = float(res.accuracy)
    if task.weights_dir:
        save_weights(g, Path(task.weights_dir) / f"{task.mode}_{idx}.safetensors", {"config": list(config)})
    metrics = dict(static)
    metrics["Accuracy"] = acc
    return {"idx": idx, "config": tuple(config), "params": int(static["ModelSize"]), "macs": int(static["MACs"]),
            "metrics": metrics, "accuracy": acc,
            "curve": [[int(r["iter"]), float(r["accuracy"])] for r in res.test_log],
            "seconds": time.perf_counter() - t0, "worker": worker,
            "blocks_used": g.meta.get("blocks_used", []),
            "iterations": stopped[0][0] if stopped else task.steps,
            "stop": stopped[0][2] if stopped else "full", "stop_target": stopped[0][3] if stopped else None,
            "started_at": started, "ended_at": time.time(), "threads": torch.get_num_threads()}


def trained_network(task_full: Graph, weights_dir, mode: str, rec: dict) -> Graph:
    """The evaluated network of record `rec`, with the weights its fine-tuning ended with."""
    g = pruned_network(task_full, rec["config"])
    load_weights(g, Path(weights_dir) / f"{mode}_{rec['idx']}.safetensors")
    return g
