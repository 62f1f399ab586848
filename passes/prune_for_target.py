"""prune-for-target: the pruning method the target's parallelism calls for (seed 004 §3.1, §3.5).

    low       (arm-m4)  SIMD-aware weight pruning on every FC and conv   (passes/scalpel.py)
    high      (cuda)    node pruning on every FC and conv                (passes/node_prune.py)
    moderate  (x86)     node pruning on conv, then SIMD-aware weight pruning on FC

Both methods retrain, so this needs a solver and data. As a function:
`prune_for_target(graph, target, data, solver, max_drop=0.5)`. As a pass,
`prune-for-target{target=arm-m4, max_accuracy_drop=0.5, data=digits, solver=path}`: `data`
and `solver` come from the options, else from `graph.meta["train"]` ({"data": ..., "solver":
Solver or path}), else data defaults to digits and the solver to a short SGD one (noted in
the report). The report goes to `graph.meta["prune_for_target"]` and `ctx.notes`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from cococ.ir.core import CococError, Graph
from cococ.passes.manager import register_pass


def method_for(parallelism: str) -> list[tuple[str, tuple[str, ...]]]:
    """[(method, ops)] in the order applied."""
    if parallelism == "low":
        return [("simd-group", ("dense", "conv2d"))]
    if parallelism == "high":
        return [("node", ("conv2d", "dense"))]
    if parallelism == "moderate":
        return [("node", ("conv2d",)), ("simd-group", ("dense",))]
    raise CococError(f"prune-for-target: unknown parallelism '{parallelism}'")


def default_solver(max_iter: int = 100):
    from cococ.frontend.solver import Solver
    return Solver(base_lr=0.01, max_iter=max_iter, momentum=0.9, weight_decay=5e-4, random_seed=1)


def _solver(s):
    if s is None or s == "":
        return None
    if isinstance(s, str):
        from cococ.frontend.solver import load_solver
        return load_solver(s)
    return s


def prune_for_target(graph: Graph, target, data, solver, max_drop: float = 0.5, *, retrain_iter: int = 100,
                     dtype: str = "q15", seed: int = 0, log=None) -> tuple[Graph, dict]:
    """Prune `graph` (trained) for `target` (a name or Target) within `max_drop` accuracy points."""
    from cococ.backends.target import get_target
    from cococ.passes.node_prune import node_prune
    from cococ.passes.scalpel import simd_prune
    t = get_target(target)
    solver = _solver(solver) or default_solver(retrain_iter)
    if t.name != "arm-m4" and dtype == "q15":
        dtype = "f32"
    plan = method_for(t.parallelism)
    report: dict = {"target": t.name, "parallelism": t.parallelism, "methods": [m for m, _ in plan],
                    "max_accuracy_drop": max_drop}
    for method, ops in plan:
        if method == "node":
            graph, r = node_prune(graph, solver, data, max_drop=max_drop, ops=ops, mask_iter=retrain_iter,
                                  retrain_iter=retrain_iter, seed=seed, log=log)
            report["node"] = r.to_dict()
        else:
            from cococ.passes.simd_group import weight_layers
            names = [l.name for l in weight_layers(graph, []) if l.op in ops]
            if not names:
                continue
            graph, r = simd_prune(graph, solver, data, target=t.name, dtype=dtype, max_drop=max_drop,
                                  retrain_iter=retrain_iter, layers=names, seed=seed, log=log)
            report["simd_group"] = r.to_dict()
            report["table"] = r.table()
    graph.meta["prune_for_target"] = report
    return graph, report


@register_pass
@dataclass
class PruneForTarget:
    """Prune and retrain by the target's parallelism: simd-group (low), node (high), both (moderate)."""
    name: ClassVar[str] = "prune-for-target"
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
                                         retrain_iter=self.retrain_iter, dtype=self.dtype, seed=self.seed)
        if ctx is not None and hasattr(ctx, "notes"):
            ctx.notes["prune-for-target"] = report
        return graph


def cli_prune(graph: Graph, target, args) -> Graph:
    """`cococ build --prune auto`: prune for `target`, print the report (accuracy, sparsity, time)."""
    import sys
    graph, report = prune_for_target(graph, target, args.data, getattr(args, "solver", None),
                                     args.max_accuracy_drop, log=lambda s: print(s, file=sys.stderr))
    print(f"prune-for-target {report['target']} ({report['parallelism']} parallelism): "
          f"{' then '.join(report['methods'])}")
    if "node" in report:
        n = report["node"]
        print(f"  node pruning: channels {n['channels']}, MACs {n['macs_before']:,} -> {n['macs_after']:,}, "
              f"accuracy {n['accuracy_before']:.2%} -> {n['accuracy_after']:.2%}")
    if "table" in report:
        print("  " + report["table"].replace("\n", "\n  "))
    for w in report.get("simd_group", {}).get("warnings", []):
        print(f"warning: {w}", file=sys.stderr)
    return graph
