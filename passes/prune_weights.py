"""prune-weights: Deep Compression's magnitude pruning (Han et al.), the baseline of Scalpel.

Every weight of an FC or conv layer whose magnitude is under `threshold`, or in the lowest
fraction `sparsity` of its layer, is removed and the weight stored as plain CSR (one column
index per kept weight). Scalpel §2 shows why this alone rarely speeds anything up on a
microcontroller or CPU — the per-element index costs more than the skipped multiply until
~70% are gone (fig. 9, 13) — which is what benchmarks/sparse_breakeven.py measures here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from cococ.ir.core import Graph
from cococ.ir.formats import compress, sparsity as param_sparsity
from cococ.passes.manager import register_pass
from cococ.passes.simd_group import check_prune_options, weight_layers


def magnitude_keep(w: np.ndarray, threshold: float, sparsity: float) -> np.ndarray:
    """Bool mask of the weights kept: |w| >= threshold and not in the lowest `sparsity`."""
    a = np.abs(w.astype(np.float64))
    keep = a >= threshold if threshold > 0 else np.ones(w.shape, bool)
    n_drop = int(np.floor(sparsity * w.size + 1e-9))
    if n_drop:
        flat = keep.reshape(-1)
        flat[np.argsort(a.reshape(-1), kind="stable")[:n_drop]] = False
    return keep & (a > 0)


@register_pass
@dataclass(frozen=True)
class PruneWeights:
    """Remove small-magnitude weights of FC/conv layers; store them as csr."""
    name: ClassVar[str] = "prune-weights"
    in_place: ClassVar[bool] = True
    sparsity: float = 0.0           # fraction of each layer's weights removed (smallest |w|)
    threshold: float = 0.0          # and/or every weight with |w| under this
    layers: tuple[str, ...] = ()    # layer names; empty = every FC and conv

    def apply(self, graph: Graph, ctx=None) -> Graph:
        check_prune_options(self.name, self.sparsity, self.threshold)
        report = {}
        for layer in weight_layers(graph, self.layers):
            p = layer.params["weight"]
            keep = magnitude_keep(p.dense(), self.threshold, self.sparsity)
            layer.params["weight"] = compress(p, "csr", keep=keep)
            report[layer.name] = param_sparsity(layer.params["weight"])
            layer.meta["sparsity"] = report[layer.name]
        graph.meta["prune_weights"] = {"sparsity": report}
        return graph
