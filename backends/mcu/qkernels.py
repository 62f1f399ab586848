"""q15 kernels: conv2d and dense whose inner loop is SMLAD, plus quantize/dequantize.

TVM 0.27 has no Cortex-M DSP schedules any more, so the SMLAD loops are cococ's own TIR
(TVMScript below: each kernel a `T.prim_func` specialised to its layer by the Python values it
closes over, the shared loops and the requantisation `T.macro`s) and go through TVM's C codegen
like every other kernel. The
int16 activations and weights are read as int32 words holding two q15 lanes, and each
`__smlad(x2, w2, acc)` (ACLE, arm_acle.h; one cycle on the M4) does two multiply-accumulates.
As CMSIS-NN's q15 kernels do, two output channels are computed together so one column load
feeds two SMLADs, two words per iteration: 8 MACs per 6 loads + 4 SMLADs. A conv first gathers the receptive field of
one output pixel into a q15 column (im2col, zero-padded to an even length; the column lives
in the arena as a scratch tensor), then runs the same dot-product loop as dense.

Numerics: symmetric, zero point 0. acc (int32) = bias_q + sum x_q * w_q, with bias_q at scale
s_in * s_w[o]; the output is round(acc * M[o] / 2^sh[o]) saturated to int16 (to 0..32767 when a
ReLU is fused), where M[o] / 2^sh[o] ~ s_in * s_w[o] / s_out with M < 2^31 (`requant`: one
SMULL high word and a 32-bit rounding shift when every shift >= 33, bit-identical to the 64-bit
form it replaces). int8 (i8kernels.py, its own two-position loop nest) shares the
requantisation's definition, the weight rounding and the lowering (`lower_fixed`); the sparse
layer kernels (backends/kernels/layer.py) end in the same requantisation.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Callable

import numpy as np
import tvm
from tvm import te
from tvm.script import tirx as T

from cococ.backends.kernels import im2col
from cococ.backends.kernels.im2col import Geometry
from cococ.backends.mcu import kernels as K
from cococ.backends.mcu.codegen import Kernel
from cococ.backends.mcu.fixed import LIMITS
from cococ.backends.mcu.lower import Tensor, describe, frozen_attrs, m4_shapes
from cococ.ir.ops.activation import Relu
from cococ.ir.ops.nn import Conv2d


@T.macro
def requant(y, at, acc, m, sh, o, lo, hi, dtype, fast):
    """y[at] = round(acc * m[o] / 2^shift) saturated to [lo, hi] and cast to `dtype`.

    fast (every channel's shift >= 33, i.e. M / 2^shift < 1/4, the usual case): `sh` holds
    shift - 32 and the code takes the high word of the 64-bit product (one SMULL, the CMSIS
    `arm_nn_requantize` shape) and then rounds with a 32-bit shift; floor(floor(v / 2^32) / 2^s)
    = floor(v / 2^(32+s)), so this is bit-identical to the 64-bit form. Otherwise the exact
    64-bit multiply-round-shift with a variable 64-bit shift (about 25 instructions per output)."""
    if fast:
        y[at] = T.Cast(dtype, T.max(T.min(T.shift_right(T.Cast("int32", T.shift_right(
            T.Cast("int64", acc) * T.Cast("int64", m[o]), T.int64(32))) + T.shift_left(1, sh[o] - 1), sh[o]), hi), lo))
    else:
        y[at] = T.Cast(dtype, T.max(T.min(T.shift_right(T.Cast("int64", acc) * T.Cast("int64", m[o]) + T.shift_left(
            T.int64(1), T.Cast("int64", sh[o] - 1)), T.Cast("int64", sh[o])), T.int64(hi)), T.int64(lo)))


@T.macro
def channel_pairs(b, m, sh, acc, y, at, o, words, pair, last, single, store):
    """The loop nest of the q15 dot products, as CMSIS-NN's mat-mult kernels: `o` output
    channels two at a time (acc[0], acc[1] start at their biases), so each activation word is
    loaded once for both; two words per iteration, `pair(o2, k)` (words 2k and 2k + 1 of channels
    2 * o2 and 2 * o2 + 1), then `last(o2)` for an odd last word; an odd last channel one word at
    a time, `single(k)`. Each channel's sum ends in `store(y, at(channel), sum, m, sh, channel)`
    (the requantisation)."""
    if o >= 2:
        for o2 in range(o // 2):
            acc[0] = b[o2 * 2]
            acc[1] = b[o2 * 2 + 1]
            if words >= 2:
                for k in range(words // 2):
                    pair(o2, k)
            if words % 2 == 1:
                last(o2)
            store(y, at(o2 * 2), acc[0], m, sh, o2 * 2)
            store(y, at(o2 * 2 + 1), acc[1], m, sh, o2 * 2 + 1)
    if o % 2 == 1:
        acc[0] = b[o - 1]
        for k in range(words):
            single(k)
        store(y, at(o - 1), acc[0], m, sh, o - 1)


@T.macro
def _pair(X, xoff, WW, r, acc, kp2, o2, k):
    """Two words of two rows (8 MACs: 2 activation loads, 4 weight loads, 4 SMLADs). The six loads
    go to the local array `r` first, then the SMLADs: GCC then issues the six loads back to back,
    which the M4 pipelines (one cycle each after the first)."""
    r[0] = X[xoff + k * 2]
    r[1] = X[xoff + k * 2 + 1]
    r[2] = WW[o2 * (2 * kp2) + k * 2]
    r[3] = WW[o2 * (2 * kp2) + kp2 + k * 2]
    r[4] = WW[o2 * (2 * kp2) + k * 2 + 1]
    r[5] = WW[o2 * (2 * kp2) + kp2 + k * 2 + 1]
    acc[0] = T.call_pure_extern("int32", "__smlad", r[0], r[2], acc[0])
    acc[1] = T.call_pure_extern("int32", "__smlad", r[0], r[3], acc[1])
    acc[0] = T.call_pure_extern("int32", "__smlad", r[1], r[4], acc[0])
    acc[1] = T.call_pure_extern("int32", "__smlad", r[1], r[5], acc[1])


@T.macro
def _last(X, xoff, WW, acc, kp2, o2):
    """The odd last word of two rows."""
    acc[0] = T.call_pure_extern("int32", "__smlad", X[xoff + (kp2 - 1)], WW[o2 * (2 * kp2) + (kp2 - 1)], acc[0])
    acc[1] = T.call_pure_extern("int32", "__smlad", X[xoff + (kp2 - 1)], WW[o2 * (2 * kp2) + kp2 + (kp2 - 1)], acc[1])


@T.macro
def _single(X, xoff, WW, acc, kp2, row, k):
    """Word k of the odd last row."""
    acc[0] = T.call_pure_extern("int32", "__smlad", X[xoff + k], WW[row * kp2 + k], acc[0])


@T.macro
def _dot(X, xoff, WW, b, m, sh, acc, r, y, at, o, kp2, store):
    """The q15 SMLAD dot products of `o` channels against the activation words X[xoff ..]."""
    channel_pairs(b, m, sh, acc, y, at, o, kp2, partial(_pair, X, xoff, WW, r, acc, kp2),
                  partial(_last, X, xoff, WW, acc, kp2), partial(_single, X, xoff, WW, acc, kp2, o - 1), store)


def requant_store(relu: bool, fast: bool, dtype: str):
    """The requantisation (`requant`) to `dtype` as a store(y, at, acc, m, sh, row) macro, ReLU as
    its lower clamp."""
    lo, hi = LIMITS[dtype]
    return partial(requant, lo=0 if relu else lo, hi=hi, dtype=dtype, fast=fast)


def conv2d_q15(name, x_shape, o: int, y_shape, attrs, relu: bool, fast: bool = False) -> Kernel:
    """q15 conv2d: per output position, im2col into the q15 column `col` (odd length: a zeroed
    last element), then the SMLAD loop of two channels at a time with the requantisation."""
    xs, n, (_, _, oh, ow) = tuple(x_shape), x_shape[0], y_shape
    g = Geometry.of(x_shape, y_shape, attrs)
    k = g.c * g.kh * g.kw
    kp2 = (k + 1) // 2
    store = requant_store(relu, fast, "int16")
    zero = T.int16(0)

    @T.prim_func(s_tir=True)
    def f(x: T.Buffer(xs, "int16"), w: T.Buffer((o * kp2 * 2,), "int16"),
          b: T.Buffer((o,), "int32"), m: T.Buffer((o,), "int32"), sh: T.Buffer((o,), "int32"),
          col: T.Buffer((kp2 * 2,), "int16"), y: T.Buffer((n, o, oh, ow), "int16")):
        T.func_attr({"tirx.noalias": True})
        COL = T.decl_buffer((kp2,), "int32", data=col.data)
        WW = T.decl_buffer((o * kp2,), "int32", data=w.data)
        acc = T.sblock_alloc_buffer((2,), "int32")
        r = T.sblock_alloc_buffer((6,), "int32")
        for nn, i, j in T.grid(n, oh, ow):
            for c, kh, kw in T.grid(g.c, g.kh, g.kw):
                im2col.gather(col, c * (g.kh * g.kw) + kh * g.kw + kw, x, lambda iy, ix: (nn, c, iy, ix),
                              i * g.sh - g.t + kh * g.dh, j * g.sw - g.l + kw * g.dw, g, zero, None)
            if k % 2 == 1:
                col[k] = zero
            _dot(COL, 0, WW, b, m, sh, acc, r, y, lambda oo: (nn, oo, i, j), o, kp2, store)
    args = [("x", "int16", False), ("w", "int16", False), ("b", "int32", False), ("m", "int32", False),
            ("sh", "int32", False), ("col", "int16", True), ("y", "int16", True)]
    return Kernel(name, f, args, origin="tvm-tir", includes=("<arm_acle.h>",),
                  meta={"doc": f"q15 conv2d {list(x_shape)}->{list(y_shape)} (im2col + SMLAD, 2 rows)"
                        + (" +relu" if relu else "")})


def dense_q15(name, n: int, k: int, o: int, relu: bool, fast: bool = False) -> Kernel:
    """q15 dense: the SMLAD loop of two channels at a time over the input's words, requantised."""
    kp2 = (k + 1) // 2
    store = requant_store(relu, fast, "int16")

    @T.prim_func(s_tir=True)
    def f(x: T.Buffer((n * kp2 * 2,), "int16"), w: T.Buffer((o * kp2 * 2,), "int16"),
          b: T.Buffer((o,), "int32"), m: T.Buffer((o,), "int32"), sh: T.Buffer((o,), "int32"),
          y: T.Buffer((n, o), "int16")):
        T.func_attr({"tirx.noalias": True})
        XX = T.decl_buffer((n * kp2,), "int32", data=x.data)
        WW = T.decl_buffer((o * kp2,), "int32", data=w.data)
        acc = T.sblock_alloc_buffer((2,), "int32")
        r = T.sblock_alloc_buffer((6,), "int32")
        for nn in range(n):
            _dot(XX, nn * kp2, WW, b, m, sh, acc, r, y, lambda oo: (nn, oo), o, kp2, store)
    args = [("x", "int16", False), ("w", "int16", False), ("b", "int32", False), ("m", "int32", False),
            ("sh", "int32", False), ("y", "int16", True)]
    return Kernel(name, f, args, origin="tvm-tir", includes=("<arm_acle.h>",),
                  meta={"doc": f"q15 dense {k}->{o} (SMLAD, 2 rows)" + (" +relu" if relu else "")})


def quantize(name, size: int, scale: float, dtype: str = "int16") -> Kernel:
    """f32 -> `dtype` at `scale`: round to nearest, saturate (a TE compute)."""
    lo, hi = LIMITS[dtype]
    x = te.placeholder((size,), name="x")
    inv = tvm.tirx.const(1.0 / scale, "float32")
    y = te.compute((size,), lambda i: te.max(te.min(te.round(x[i] * inv), tvm.tirx.const(float(hi), "float32")),
                                             tvm.tirx.const(float(lo), "float32")).astype(dtype), name="y")
    return Kernel(name, te.create_prim_func([x, y]), [("x", "float32", False), ("y", dtype, True)],
                  meta={"doc": f"f32 -> {dtype}, scale {scale:.6g}"})


def dequantize(name, size: int, scale: float, dtype: str = "int16") -> Kernel:
    """`dtype` at `scale` -> f32 (a TE compute)."""
    x = te.placeholder((size,), name="x", dtype=dtype)
    y = te.compute((size,), lambda i: x[i].astype("float32") * tvm.tirx.const(scale, "float32"), name="y")
    return Kernel(name, te.create_prim_func([x, y]), [("x", dtype, False), ("y", "float32", True)],
                  meta={"doc": f"{dtype} -> f32, scale {scale:.6g}"})


# -- quantizing the weights ------------------------------------------------------------------

def requant_params(real: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per channel (M, sh) with M / 2^sh ~ real, M in [2^30, 2^31)."""
    m = np.zeros(real.shape, np.int32)
    s = np.zeros(real.shape, np.int32)
    for i, r in enumerate(np.asarray(real, np.float64)):
        if r <= 0:
            m[i], s[i] = 0, 1
            continue
        e = math.frexp(r)[1]                    # r = f * 2^e, f in [0.5, 1)
        shift = min(62, 31 - e)
        mm = int(round(r * 2.0 ** shift))
        if mm >= 2 ** 31:
            mm, shift = mm // 2, shift - 1
        m[i], s[i] = mm, max(shift, 1)
    return m, s


def weight_scales(p, o: int, qmax: int = 32767) -> np.ndarray:
    """The quantize pass's per-channel (or per-tensor) weight scales as an [o] array."""
    s = p.attrs.get("scale")
    if s is None:
        w = p.dense()
        s = float(np.abs(w).max() / qmax) or 1.0
    return np.broadcast_to(np.asarray(s, np.float64).reshape(-1), (o,)).copy()


def integer_layer(layer, params, s_in: float, s_out: float, qmax: int):
    """The integer form of a conv/dense layer, shared by q15 and int8: weights round(w / s_w)
    as an [o, k] int64 array, the int32 bias at scale s_in * s_w, the requantisation (M, shift)
    and whether every channel can take the fast requantisation (then `shift` holds shift - 32)."""
    w2 = params["weight"].astype(np.float64).reshape(params["weight"].shape[0], -1)
    o = w2.shape[0]
    s_w = weight_scales(layer.params["weight"], o, qmax)
    wq = np.clip(np.round(w2 / s_w[:, None]), -qmax - 1, qmax).astype(np.int64)
    bias = params.get("bias", np.zeros(o)).astype(np.float64)
    bq = np.clip(np.round(bias / (s_in * s_w)), -2 ** 31, 2 ** 31 - 1).astype(np.int32)
    mm, sh = requant_params(s_in * s_w / s_out)
    fast = bool(np.all(sh >= 33))
    return wq, bq, mm, (sh - 32 if fast else sh).astype(np.int32), fast


def scale_preserving_step(lw, layer, x, out, quant: str, dtype: str):
    """(kernel, args) of an order-preserving layer (`Op.keeps_scale`: max pools, relu) on
    fixed-point values: the output keeps the input's scale, so the op's TVM rule runs unchanged
    on the integer type (q15 and int8 alike)."""
    op, a = layer.op, layer.attrs
    shapes = m4_shapes(layer, [x.shape])
    key = (op, quant, x.size) if layer.opdef.elementwise else (op, quant, x.shape, out.shape, frozen_attrs(a))
    doc = describe(layer, shapes, out.shape)
    k = lw.kernel(key, lambda n: K.op_kernel(n, layer, shapes, {}, dtype=dtype, doc=doc))
    return k, [x, out]


@dataclass(frozen=True)
class FixedPoint:
    """What differs between the q15 and the int8 lowering of a weighted layer: the type's name and
    activation dtype, its largest weight value, the weight array's name and layout (`pack`: the
    [o, k] integer weights as the kernels read them), the conv and dense kernel builders, and
    whether the dense kernel takes the column scratch (int8 widens its input into it)."""
    quant: str
    dtype: str
    qmax: int
    weight: str
    pack: Callable
    conv: Callable
    dense: Callable
    dense_col: bool


def lower_fixed(lw, layer, ins, out, params, act, fx: FixedPoint):
    """(kernel, args) of one fixed-point layer; `lw` is the lowering (kernel cache, weights,
    scales), `act` the fused activation's op class or None."""
    a = layer.attrs
    x = ins[0]
    if layer.opdef.keeps_scale:
        return scale_preserving_step(lw, layer, x, out, fx.quant, fx.dtype)
    w2, bq, mm, sh, fast = integer_layer(layer, params, x.scale, out.scale, fx.qmax)
    wq = fx.pack(w2)
    wts = [lw.weight(layer, fx.weight, wq), lw.weight(layer, "bias_q", bq), lw.weight(layer, "mult", mm),
           lw.weight(layer, "shift", sh)]
    (o, kp), kk = wq.shape, w2.shape[1]
    relu = act is Relu
    # the scratch column: one row of kp, or what the kernel asks for (int8 convs gather two positions)
    col = lambda k: Tensor(f"{out.name}_col", "int16", (k.meta.get("col_len", kp),))  # noqa: E731
    if layer.opdef is Conv2d:
        key = (f"conv2d_{fx.quant}", x.shape, o, out.shape, frozen_attrs(a), relu, fast)
        k = lw.kernel(key, lambda n: fx.conv(n, x.shape, o, out.shape, a, relu, fast))
        return k, [x] + wts + [col(k), out]
    n = x.shape[0]
    k = lw.kernel((f"dense_{fx.quant}", n, kk, o, relu, fast), lambda nm: fx.dense(nm, n, kk, o, relu, fast))
    if fx.quant == "q15" and n > 1 and kk % 2:
        raise layer.error("q15 dense with batch > 1 needs an even number of input features")
    return k, [x] + wts + ([col(k)] if fx.dense_col else []) + [out]


def _pad_pairs(w2: np.ndarray) -> np.ndarray:
    """[o, k] integer weights -> [o, k rounded up to even] int16: rows of whole SMLAD words."""
    o, kk = w2.shape
    wq = np.zeros((o, kk + kk % 2), np.int16)
    wq[:, :kk] = w2
    return wq


Q15 = FixedPoint("q15", "int16", 32767, "weight_q15", _pad_pairs, conv2d_q15, dense_q15, False)


def lower_q15(lw, layer, ins, out, params, act):
    """(kernel, args) of one q15 layer (`lower_fixed` with the q15 kernels)."""
    return lower_fixed(lw, layer, ins, out, params, act, Q15)


__all__ = ["conv2d_q15", "dense_q15", "quantize", "dequantize", "lower_q15", "lower_fixed", "FixedPoint",
           "requant_params", "requant", "requant_store", "channel_pairs", "integer_layer", "scale_preserving_step"]
