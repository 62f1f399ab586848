"""prune-for-target: the pruning method the target's parallelism calls for (seed 004 §3.1, §3.5).

    low       (arm-m4)  SIMD-aware weight pruning on every FC and conv   (runtime/compress/scalpel.py)
    high      (cuda)    node pruning on every FC and conv                (runtime/compress/node_prune.py)
    moderate  (x86)     node pruning on conv, then SIMD-aware weight pruning on FC

Both methods retrain, so this needs a solver and data. As a function:
`prune_for_target(graph, target, data, solver, max_drop=0.5)`. As a pass,
`prune-for-target{target=arm-m4, max_accuracy_drop=0.5, data=digits, solver=path}`: `data`
and `solver` come from the options, else from `graph.meta["train"]` ({"data": ..., "solver":
Solver or path}), else data defaults to digits and the solver to a short SGD one (noted in
the report). The report goes to `graph.meta["prune_for_target"]` and `ctx.notes`; the
retraining steps to `ctx.log` (`cococ build --prune auto` prints them and the report).

The pass is registered here, not in passes/, because it trains: the pass manager finds it by
its full module path in PASS_MODULES (docs/design.md).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from cococ.frontend.solver import Solver, load_solver
from cococ.ir.core import CococError, Graph
from cococ.ir.target import get_target
from cococ.passes.manager import register_pass
from cococ.passes.simd_group import weight_layers
from cococ.runtime.compress.node_prune import node_prune
from cococ.runtime.compress.scalpel import simd_prune
from cococ.runtime.compress.training import accuracy, load_dataset


def method_for(parallelism: str) -> list[tuple[str, tuple[str, ...]]]:
    """[(method, ops)] in the order applied."""
    if parallelism == "low":
        return [("simd-group", ("dense", "conv2d"))]
    if parallelism == "high":
        return [("node", ("conv2d", "dense"))]
    if parallelism == "moderate":
        return [("node", ("conv2d",)), ("simd-group", ("dense",))]
    raise CococError(f"prune-for-target: unknown parallelism '{parallelism}'")


def default_solver(max_iter: int = 100) -> Solver:
    return Solver(base_lr=0.01, max_iter=max_iter, momentum=0.9, weight_decay=5e-4, random_seed=1)


def _solver(s):
    if s is None or s == "":
        return None
    if isinstance(s, str):
        return load_solver(s)
    return s


def prune_for_target(graph: Graph, target, data, solver, max_drop: float = 0.5, *, retrain_iter: int = 100,
                     dtype: str = "q15", seed: int = 0, log=None) -> tuple[Graph, dict]:
    """Prune `graph` (trained) for `target` (a name or Target) within `max_drop` accuracy points."""
    t = get_target(target)
    solver = _solver(solver) or default_solver(retrain_iter)
    if t.name != "arm-m4" and dtype == "q15":
        dtype = "f32"
    plan = method_for(t.parallelism)
    report: dict = {"target": t.name, "parallelism": t.parallelism, "methods": [m for m, _ in plan],
                    "max_accuracy_drop": max_drop}
    # both methods decide on the validation split (where the data set has one); the test set
    # is read here only, before and after, for the reported accuracy
    data = load_dataset(graph, data)
    test_before = accuracy(graph, data) if data.has_validation else None
    for method, ops in plan:
        if method == "node":
            graph, r = node_prune(graph, solver, data, max_drop=max_drop, ops=ops, mask_iter=retrain_iter,
                                  retrain_iter=retrain_iter, seed=seed, log=log)
            report["node"] = r.to_dict()
        else:
            names = [l.name for l in weight_layers(graph, ()) if l.op in ops]
            if not names:
                continue
            graph, r = simd_prune(graph, solver, data, target=t.name, dtype=dtype, max_drop=max_drop,
                                  retrain_iter=retrain_iter, layers=names, seed=seed, log=log)
            report["simd_group"] = r.to_dict()
            report["table"] = r.table()
    if test_before is not None:
        report["test_accuracy"] = [test_before, accuracy(graph, data)]
    graph.meta["prune_for_target"] = report
    return graph, report


@register_pass
@dataclass(frozen=True)
class PruneForTarget:
    """Prune and retrain by the target's parallelism: simd-group (low), node (high), both (moderate)."""
    name: ClassVar[str] = "prune-for-target"
    in_place: ClassVar[bool] = True    # both methods change the graph they are given
    target: str = "arm-m4"
    max_accuracy_drop: float = 0.5     # percentage points
    data: str = ""                     # data set; "" = graph.meta["train"]["data"] or digits
    solver: str = ""                   # solver prototxt; "" = graph.meta["train"]["solver"] or a short SGD
    retrain_iter: int = 100
    dtype: str = "q15"
    seed: int = 0

    def apply(self, graph: Graph, ctx=None) -> Graph:
        meta = graph.meta.get("train", {}) or {}
        data = self.data or meta.get("data") or "digits"
        solver = _solver(self.solver) or _solver(meta.get("solver"))
        graph, report = prune_for_target(graph, self.target, data, solver, self.max_accuracy_drop,
                                         retrain_iter=self.retrain_iter, dtype=self.dtype, seed=self.seed,
                                         log=getattr(ctx, "log", None))
        if ctx is not None:
            ctx.notes["prune-for-target"] = report
        return graph
