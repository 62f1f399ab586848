"""Which layers a q15/int8 build on the M4 runs on integers, and their integer clamps.

Plain facts about layers (no kernels, no lowering), so that lower.py can ask them at import
time: `integer_reason` (None, or why a layer stays float32: the build's warning quotes it),
whether a trailing ReLU/Clip fuses as a kernel's output clamp, and that clamp's bounds.
"""
from __future__ import annotations

import math

from cococ.ir.core import Layer
from cococ.ir.ops.activation import Clip, Relu
from cococ.ir.ops.hard_activation import Hardsigmoid, Hardswish
from cococ.ir.ops.nn import Conv2d, Dense
from cococ.ir.ops.pool import AvgPool, GlobalAvgPool
from cococ.ir.ops.softmax import Softmax
from cococ.ir.ops.tensor import Concat, Eltwise

LIMITS = {"int16": (-32768, 32767), "int8": (-128, 127)}


def clamp_bounds(dtype: str, scale: float, lo: float | None = None, hi: float | None = None) -> tuple[int, int]:
    """The integer clamp of a fused ReLU/ReLU6/Clip at `scale`, within the type's range."""
    qlo, qhi = LIMITS[dtype]
    if lo is not None:
        qlo = max(qlo, min(qhi, int(math.floor(lo / scale + 0.5))))
    if hi is not None:
        qhi = min(qhi, max(qlo, int(math.floor(hi / scale + 0.5))))
    return qlo, qhi


def depthwise_fits(layer) -> str | None:
    """Why `depthwise` cannot run this grouped conv (None: it can)."""
    a = layer.attrs
    c = layer.inputs[0].type.shape[1]
    if not (a["groups"] == c == a["out_channels"]):
        return "grouped conv that is not depthwise (groups != channels or a channel multiplier)"
    if a["dilation"][1] != 1:
        return "depthwise conv with horizontal dilation"
    return None


def pool_fits(layer) -> str | None:
    """Why `avg_pool` cannot run this average pool (None: it can): the divisor must be one
    number, so no ceil-mode overhang and no padding left out of the count."""
    if layer.op == "global_avg_pool":
        return None
    a = layer.attrs
    if any(a["pad"]) and not a["count_include_pad"]:
        return "avg_pool with padding and count_include_pad=false (a divisor per window)"
    _, _, h, w = layer.inputs[0].type.shape
    _, _, oh, ow = layer.outputs[0].type.shape
    (kh, kw), (sh, sw), (t, l, b, r) = a["kernel"], a["stride"], a["pad"]
    if (oh - 1) * sh + kh > h + t + b or (ow - 1) * sw + kw > w + l + r:
        return "avg_pool whose last window hangs past the padding (ceil mode)"
    return None


def integer_reason(layer: Layer, quant: str) -> str | None:
    """None if a `quant` build runs `layer` on integers, else why it stays float32."""
    op = layer.opdef
    if op.keeps_scale or op is Dense or (op is Conv2d and layer.attrs.get("groups", 1) == 1):
        return None
    if op is Conv2d:
        return depthwise_fits(layer)
    if op is Eltwise:
        return None if layer.attrs["mode"] == "sum" else f"eltwise mode={layer.attrs['mode']} (only sum has one)"
    if op in (AvgPool, GlobalAvgPool):
        return pool_fits(layer)
    if op in (Clip, Hardswish, Hardsigmoid, Concat):
        return None
    if op is Softmax:
        return None if quant == "int8" else f"no {quant} kernel for softmax (int8 only: a 256-entry exp table)"
    return f"no {quant} kernel for {layer.op}"


def by_lower_integer(layer: Layer) -> bool:
    """Whether `lower_integer` (not the conv/dense or order-preserving lowering) builds `layer`."""
    return not (layer.opdef.keeps_scale or layer.opdef is Dense
                or (layer.opdef is Conv2d and layer.attrs.get("groups", 1) == 1))


def fuses_clamp(layer: Layer, act: Layer, dtype: str, scale: float) -> bool:
    """Whether a trailing ReLU/Clip `act` can be `layer`'s output clamp: after an integer
    depthwise conv or eltwise sum any; after a conv/dense kernel (whose clamp is ReLU's 0 or the
    type's range) a Clip only when its bounds at the output scale are exactly those."""
    if act.opdef is Relu:
        return True
    if act.opdef is not Clip:
        return False
    if by_lower_integer(layer):
        return True
    lo, hi = LIMITS[dtype]
    return bounds(act, dtype, scale) in ((0, hi), (lo, hi))


def bounds(final: Layer | None, dtype: str, scale: float) -> tuple[int, int]:
    """The integer output clamp of a layer whose last fused layer is `final`."""
    lo, hi = LIMITS[dtype]
    if final is not None and final.opdef is Relu:
        return 0, hi
    if final is not None and final.opdef is Clip:
        return clamp_bounds(dtype, scale, final.attrs.get("min"), final.attrs.get("max"))
    return lo, hi


__all__ = ["LIMITS", "clamp_bounds", "depthwise_fits", "pool_fits", "integer_reason", "by_lower_integer",
           "fuses_clamp", "bounds"]
