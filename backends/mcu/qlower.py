"""The fixed-point lowering of the layers that are not a plain conv or dense (i8ops.py's kernels).

lower.py asks fixed.integer_reason per layer of a q15/int8 build (None: it runs on integers,
else why not, which the build's warning quotes); `lower_integer` turns such a layer into (kernel, args): depthwise conv, eltwise sum (the residual add), avg and global avg
pool, clip (ReLU6), hardswish, hardsigmoid, concat and (int8) softmax, each requantising from its inputs'
scales to its output's (the quantize pass's calibrated scales), and a fused trailing ReLU or
Clip (`final`) as the output clamp.
"""
from __future__ import annotations

import numpy as np

from cococ.backends.mcu import i8depthwise as D
from cococ.backends.mcu import i8ops as I
from cococ.backends.mcu import kernels as K
from cococ.backends.mcu.lower import Step, Tensor, describe, frozen_attrs, m4_shapes
from cococ.backends.mcu.qkernels import integer_layer, requant_params
from cococ.backends.mcu.fixed import LIMITS, bounds, clamp_bounds
from cococ.ir.core import Layer
from cococ.ir.ops.activation import norm_axis
from cococ.ir.ops.hard_activation import Hardsigmoid, Hardswish
from cococ.ir.ops.nn import Conv2d
from cococ.ir.ops.pool import AvgPool, GlobalAvgPool
from cococ.ir.ops.softmax import Softmax
from cococ.ir.ops.tensor import Concat, Eltwise

def lower_integer(lw, layer: Layer, ins: list[Tensor], out: Tensor, params: dict, final: Layer):
    """(kernel, args) of one integer layer `layer` (through `final`, its fused clamp, if any)."""
    dtype, quant = out.dtype, lw.quant
    lo, hi = bounds(final if final is not layer else None, dtype, out.scale)
    op, a, x = layer.opdef, layer.attrs, ins[0]
    if op is Conv2d:
        w2, bq, mm, sh, fast = integer_layer(layer, params, x.scale, out.scale, LIMITS[dtype][1])
        wq = D.depthwise_weights(w2.reshape(params["weight"].shape))
        wts = [lw.weight(layer, "weight_dw", wq), lw.weight(layer, "bias_q", bq), lw.weight(layer, "mult", mm),
               lw.weight(layer, "shift", sh)]
        plane = Tensor(f"{out.name}_plane", "int16", (D.plane_geometry(x.shape, a)[1],))
        key = ("depthwise", dtype, x.shape, out.shape, frozen_attrs(a), lo, hi, fast)
        k = lw.kernel(key, lambda n: D.depthwise(n, x.shape, out.shape, a, lo, hi, fast, dtype))
        return k, [x] + wts + [plane, out]
    if op in (AvgPool, GlobalAvgPool):
        kernel = a["kernel"] if op is AvgPool else x.shape[2:]
        stride, pad = (a["stride"], a["pad"]) if op is AvgPool else ((1, 1), (0, 0, 0, 0))
        mm, sh = requant_params(np.array([x.scale / (out.scale * kernel[0] * kernel[1])]))
        fast = bool(sh[0] >= 33)
        sh = sh - 32 if fast else sh
        key = ("avg_pool", dtype, x.shape, out.shape, tuple(kernel), tuple(stride), tuple(pad), fast, lo, hi)
        k = lw.kernel(key, lambda n: I.avg_pool(n, x.shape, out.shape, kernel, stride, pad, dtype, fast, lo, hi))
        return k, [x, lw.weight(layer, "mult", mm), lw.weight(layer, "shift", sh.astype(np.int32)), out]
    if op is Softmax:
        ax = norm_axis(layer, a["axis"], len(x.shape))
        outer, d, inner = int(np.prod(x.shape[:ax])), x.shape[ax], int(np.prod(x.shape[ax + 1:]))
        q = int(round(1.0 / out.scale))
        k = lw.kernel(("softmax", outer, d, inner, q), lambda n: I.softmax(n, outer, d, inner, q))
        return k, [x, lw.weight(layer, "exp", I.softmax_table(x.scale, q)), out]
    if op is Hardswish:
        key = ("hardswish", dtype, x.size, x.scale, out.scale)
        return lw.kernel(key, lambda n: I.hardswish(n, x.size, dtype, x.scale, out.scale)), [x, out]
    if op is Concat:
        same = [rescaled(lw, t, out.scale) for t in ins]
        shapes = m4_shapes(layer, [t.shape for t in same])
        key = ("concat", quant, tuple(map(tuple, shapes)), frozen_attrs(a))
        k = lw.kernel(key, lambda n: K.op_kernel(n, layer, shapes, {}, dtype=dtype,
                                                 doc=describe(layer, shapes, out.shape)))
        return k, same + [out]
    if op is Eltwise:
        co = a.get("coeffs") or [1.0] * len(ins)
        ratios, const, what = [c * t.scale / out.scale for c, t in zip(co, ins)], 0.0, "add"
    elif op is Hardsigmoid:
        ratios, const, what = [a["alpha"] * x.scale / out.scale], a["beta"] / out.scale, "hardsigmoid"
        lo, hi = max(lo, clamp_bounds(dtype, out.scale, 0.0, 1.0)[0]), min(hi, clamp_bounds(dtype, out.scale,
                                                                                                   0.0, 1.0)[1])
    else:  # Clip
        lo, hi = clamp_bounds(dtype, out.scale, a.get("min"), a.get("max"))
        ratios, const, what = [x.scale / out.scale], 0.0, "clip"
    key = ("affine", dtype, x.size, tuple(ratios), const, lo, hi, what)
    k = lw.kernel(key, lambda n: I.affine(n, x.size, dtype, ratios, const, lo, hi, what))
    return k, ins + [out]


def rescaled(lw, t: Tensor, scale: float) -> Tensor:
    """`t` at `scale` (a requantising copy step, or t itself when it already is)."""
    if abs(t.scale - scale) <= 1e-7 * scale:
        return t
    out = Tensor(f"{t.name}_rq", t.dtype, t.shape, scale=scale)
    lo, hi = LIMITS[t.dtype]
    k = lw.kernel(("affine", t.dtype, t.size, (t.scale / scale,), 0.0, lo, hi, "rescale"),
                  lambda n: I.affine(n, t.size, t.dtype, [t.scale / scale], 0.0, lo, hi, "rescale"))
    lw.prog.steps.append(Step(k, [t, out], [], "rescale"))
    return out


__all__ = ["lower_integer", "rescaled"]
