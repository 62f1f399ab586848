"""simd-group: Scalpel's SIMD-aware weight pruning (seed 004 §3.3), one shot per layer.

The weight of every FC and conv layer (a conv as its im2col matrix [O, I*kh*kw]) is cut into
aligned groups of `width` consecutive weights along the reduction axis — the width of one
SIMD multiply-accumulate on the target (Cortex-M4 q15: 2 lanes of SMLAD; x86 AVX2 f32: 8),
so a kept group is one vector load of weights and one of inputs. Groups are ranked by RMS;
those under `threshold`, or the lowest fraction `sparsity` of each layer, are removed and
the param is stored as `simd_group` (ir/formats.py). Removed groups are not written as zeros
first: the format simply does not hold them, so a later dense() gives the masked weights.

The iterative prune/retrain loop of §3.3 (slowest layer first, retrain, re-measure) drives
this pass layer by layer through `layers`; see docs/pruning.md for what exists of it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Sequence

import numpy as np

from cococ.ir.core import CococError, Graph, Layer
from cococ.ir.formats import compress, group_view, matrix_shape, sparsity as param_sparsity
from cococ.ir.target import get_target
from cococ.passes.manager import register_pass

# the pass's `dtype` option (what the kernels compute in) -> the IR dtype of Target.lanes
KERNEL_DTYPES = {"q15": "i16", "q7": "i8", "int8": "i8", "i8": "i8", "i16": "i16", "f32": "f32"}
PRUNABLE_OPS = ("dense", "conv2d")


def target_width(target: str, dtype: str) -> int:
    """SIMD lanes of `target` for `dtype`: the group width Scalpel matches to the hardware."""
    if dtype not in KERNEL_DTYPES:
        raise CococError(f"simd-group: unknown dtype '{dtype}' (known: {', '.join(KERNEL_DTYPES)})")
    lanes = get_target(target).lanes
    ir_dtype = KERNEL_DTYPES[dtype]
    if ir_dtype not in lanes:
        raise CococError(f"simd-group: target {target} has no SIMD lanes for {dtype}")
    return int(lanes[ir_dtype])


def weight_layers(graph: Graph, names: Sequence[str]) -> list[Layer]:
    """FC and conv layers with a weight, restricted to `names` when given (unknown names fail)."""
    if names:
        for n in names:
            graph.layer(n)  # raises naming the missing layer
    return [l for l in graph.layers if l.op in PRUNABLE_OPS and "weight" in l.params
            and (not names or l.name in names)]


def check_prune_options(pass_name: str, sparsity: float, threshold: float) -> None:
    """The options simd-group and prune-weights share, checked once for both."""
    if not 0.0 <= sparsity < 1.0:
        raise CococError(f"{pass_name}: sparsity {sparsity} is outside [0, 1)")
    if threshold < 0:
        raise CococError(f"{pass_name}: threshold {threshold} is negative")


def group_rms(w2: np.ndarray, width: int) -> np.ndarray:
    """[rows, ngroups] RMS of each group; a padded tail group averages its real weights only."""
    rows, cols = w2.shape
    g = group_view(w2.astype(np.float64), width)
    real = np.minimum(width, cols - np.arange(g.shape[1]) * width)
    return np.sqrt((g ** 2).sum(-1) / real[None, :])


def select_groups(rms: np.ndarray, threshold: float, sparsity: float) -> np.ndarray:
    """Bool [rows, ngroups] of the groups kept: RMS >= threshold and not in the lowest `sparsity`."""
    keep = rms >= threshold if threshold > 0 else np.ones(rms.shape, bool)
    n_drop = int(np.floor(sparsity * rms.size + 1e-9))
    if n_drop:
        order = np.argsort(rms.reshape(-1), kind="stable")
        flat = keep.reshape(-1)
        flat[order[:n_drop]] = False
    return keep & (rms > 0)


@register_pass
@dataclass(frozen=True)
class SimdGroup:
    """Remove the weakest SIMD-width weight groups of FC/conv layers; store them as simd_group."""
    name: ClassVar[str] = "simd-group"
    in_place: ClassVar[bool] = True
    width: int = 0                  # 0 = the target's SIMD lanes for dtype
    target: str = "arm-m4"
    dtype: str = "q15"              # what the kernels compute in: q15 | q7 | f32
    threshold: float = 0.0          # groups with RMS under this are removed
    sparsity: float = 0.0           # and/or this fraction of each layer's groups (lowest RMS)
    layers: tuple[str, ...] = ()    # layer names; empty = every FC and conv

    def apply(self, graph: Graph, ctx=None) -> Graph:
        check_prune_options(self.name, self.sparsity, self.threshold)
        width = int(self.width) or target_width(self.target, self.dtype)
        report = {}
        for layer in weight_layers(graph, self.layers):
            p = layer.params["weight"]
            w = p.dense()
            rows, cols = matrix_shape(w.shape)
            keep = select_groups(group_rms(w.reshape(rows, cols), width), self.threshold, self.sparsity)
            layer.params["weight"] = compress(p, "simd_group", width=width, keep=keep)
            report[layer.name] = param_sparsity(layer.params["weight"])
            layer.meta["sparsity"] = report[layer.name]
        graph.meta["simd_group"] = {"width": width, "sparsity": report}
        return graph
