"""Scalpel's cost model: a layer's time dense and as simd_group, from measured break-even tables.

Dense time is the layer's MACs times the measured dense kernel's cycles (M4) or ns (x86) per
MAC; sparse time is that times the measured simd_group/dense ratio at the layer's sparsity.
The tables and their reading (`kernel_model`) belong to the kernel library's dense-or-sparse
choice (backends/kernels/choice.py), so pruning and the backends judge a layer alike: an int8
build's FC layers are judged by the int8 matrix-vector table and its conv layers by the int8
conv table (sparse-breakeven-mm-int8-m4.json: the executor's int8 conv kernels, im2col
included; a width that never beats dense there has `breakeven` None and Scalpel does not prune
such a conv), at the group width the FC table chooses (`simd_width`); other builds by the
target's own tables, at its SIMD lanes.
"""
from __future__ import annotations

from cococ.backends.kernels.choice import KernelModel, int8_width, kernel_model
from cococ.ir.core import Layer
from cococ.passes.simd_group import target_width

__all__ = ["KernelModel", "kernel_model", "layer_macs", "simd_width"]


def simd_width(target: str, dtype: str) -> int:
    """The group width Scalpel prunes to: under int8, the simd_group width whose measured
    break-even is lower on `target` (SXTB16 on words of four or on halfword pairs; the int8
    table chooses), elsewhere - and on a target without an int8 table - its SIMD lanes."""
    return (dtype == "int8" and int8_width(target)) or target_width(target, dtype)


def layer_macs(layer: Layer) -> int:
    in_types = [v.type for v in layer.inputs]
    out_types = [v.type for v in layer.outputs]
    return int(layer.opdef.cost(layer, in_types, out_types).macs)
