"""Scalpel's cost model: a layer's time dense and as simd_group, from measured break-even tables.

Dense time is the layer's MACs times the measured dense kernel's cycles (M4) or ns (x86) per
MAC; sparse time is that times the measured simd_group/dense ratio at the layer's sparsity.
The tables and their reading (`kernel_model`) belong to the kernel library's dense-or-sparse
choice (backends/kernels/choice.py), so pruning and the backends judge a layer alike.
"""
from __future__ import annotations

from cococ.backends.kernels.choice import KernelModel, kernel_model
from cococ.ir.core import Layer

__all__ = ["KernelModel", "kernel_model", "layer_macs"]


def layer_macs(layer: Layer) -> int:
    in_types = [v.type for v in layer.inputs]
    out_types = [v.type for v in layer.outputs]
    return int(layer.opdef.cost(layer, in_types, out_types).macs)
