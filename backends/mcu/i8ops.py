"""Fixed-point kernels of the layers around the convs: add, pools, clamps, edges (depthwise: i8depthwise.py).

With these, an int8 (or q15) build of a MobileNet/ResNet/DS-CNN-style network stays integer from
the input's quantize step to the output's dequantize step: `lower.py` asks `fixed.integer_reason`
which layers have one (qlower.py builds them), and every layer that still runs in float is a
warning naming it and why.

- depthwise conv: backends/mcu/i8depthwise.py.
- residual add / eltwise sum, hardsigmoid, clip, concat's rescale (`affine`): y = clamp((sum_i x_i A_i
  + C + 2^(S-1)) >> S), one integer multiplier A_i per input (s_i / s_y * 2^S: both inputs
  requantised) in int32 where that cannot overflow (int8 sums), else int64.
- avg pool / global avg pool (`avg_pool`): the window's int32 sum requantised by s_x / (s_y * k).
- clip / ReLU6: `affine` with one input (the clamp at round(min / s_y), round(max / s_y),
  `fixed.clamp_bounds`); fused after a depthwise conv or an add it is that kernel's output clamp.
- softmax (`softmax`, int8): exp of x - max from a 256-entry table built for the input's
  scale, normalised by one integer division per element.
- hardswish (`hardswish`): x * clamp(x + 3, 0, 6) / 6 with 3 and 6 at the input's scale, the
  product requantised in int64.
- quantize at the input (`quantize`): f32 -> int by multiply, VCVTR (round to nearest, ties to
  even, saturating) and SSAT: no libm call (newlib's nearbyintf cost 48-63 cycles per element).
"""
from __future__ import annotations

import math
from functools import partial

import numpy as np
import tvm
from tvm import te
from tvm.script import tirx as T

from cococ.backends.mcu.codegen import Kernel
from cococ.backends.mcu.fixed import LIMITS
from cococ.backends.mcu.qkernels import requant, requant_params

def affine_params(ratios: list[float], const: float, qmax: int) -> tuple[list[int], int, int, bool]:
    """Integer multipliers A_i ~ ratios[i] * 2^S, C ~ const * 2^S and S for `affine`, and whether
    the sum needs int64: int32 when sum_i |x_i| A_i + |C| + 2^S stays below 2^31."""
    top = max([abs(v) for v in ratios] + [1e-30])
    s32 = int(math.floor(math.log2((2 ** 30) / ((qmax + 1) * len(ratios) * top))))
    if 8 <= s32 <= 30 and abs(const) * 2 ** s32 < 2 ** 29:
        s, wide = s32, False
    else:
        s, wide = max(1, min(62, int(math.floor(math.log2((2 ** 30) / top))))), True
    return [int(round(v * 2 ** s)) for v in ratios], int(round(const * 2 ** s)), s, wide


def saturate(v, lo: int, hi: int, dtype: str):
    """int32 `v` clamped to [lo, hi] as `dtype`: one SSAT (the type's range) or USAT ([0, max]),
    else a compare pair."""
    bits = {"int8": 8, "int16": 16}[dtype]
    qlo, qhi = LIMITS[dtype]
    if (lo, hi) == (qlo, qhi):
        return tvm.tirx.call_pure_extern("int32", "__ssat", v, bits).astype(dtype)
    if (lo, hi) == (0, qhi):
        return tvm.tirx.call_pure_extern("int32", "__usat", v, bits - 1).astype(dtype)
    return te.max(te.min(v, tvm.tirx.const(hi, "int32")), tvm.tirx.const(lo, "int32")).astype(dtype)


def affine(name, size: int, dtype: str, ratios: list[float], const: float, lo: int, hi: int, what: str) -> Kernel:
    """y = clamp(round(sum_i ratios[i] * x_i + const), lo, hi) over flat `dtype` buffers x, x1, ...:
    y = (sum_i x_i A_i + C + 2^(S-1)) >> S (an arithmetic shift: round half up)."""
    qmax = LIMITS[dtype][1]
    mults, c, s, wide = affine_params(ratios, const, qmax)
    acc_t = "int64" if wide else "int32"
    xs = [te.placeholder((size,), name="x" if i == 0 else f"x{i}", dtype=dtype) for i in range(len(ratios))]
    k = lambda v: tvm.tirx.const(v, acc_t)  # noqa: E731

    def f(i):
        v = k(c + (1 << (s - 1)))
        for x, a in zip(xs, mults):
            v = v + x[i].astype(acc_t) * k(a)
        return saturate((v >> k(s)).astype("int32"), lo, hi, dtype)
    y = te.compute((size,), f, name="y")
    return Kernel(name, te.create_prim_func(xs + [y]), [(x.op.name, dtype, False) for x in xs] + [("y", dtype, True)],
                  includes=("<arm_acle.h>",), meta={"doc": f"{dtype} {what} x{size}: ({' + '.join(f'x{i}*{a}' for i, a in enumerate(mults))}"
                        f"{f' + {c}' if c else ''}) >> {s} ({acc_t}), clamp [{lo}, {hi}]"})


def hardswish(name, size: int, dtype: str, s_x: float, s_y: float) -> Kernel:
    """y = x * clamp(x + 3, 0, 6) / 6: t = clamp(x_q + round(3 / s_x), 0, round(6 / s_x)), then
    x_q * t requantised by s_x^2 / (6 s_y) (M / 2^sh, int64)."""
    lo, hi = LIMITS[dtype]
    three, six = int(round(3 / s_x)), int(round(6 / s_x))
    (mm,), (sh,) = requant_params(np.array([s_x * s_x / (6 * s_y)]))
    x = te.placeholder((size,), name="x", dtype=dtype)
    k = lambda v: tvm.tirx.const(int(v), "int64")  # noqa: E731

    def f(i):
        xi = x[i].astype("int64")
        t = te.max(te.min(xi + k(three), k(six)), k(0))
        v = (xi * t * k(mm) + (k(1) << k(sh - 1))) >> k(sh)
        return te.max(te.min(v, k(hi)), k(lo)).astype(dtype)
    y = te.compute((size,), f, name="y")
    return Kernel(name, te.create_prim_func([x, y]), [("x", dtype, False), ("y", dtype, True)],
                  meta={"doc": f"{dtype} hardswish x{size} (3 = {three}, 6 = {six}; * {mm} >> {sh})"})


@T.macro
def window_sum(acc, x, nn, ch, i, j, kh, kw, sy, sx, t, l, h, w, padded):
    """acc[0] = the int32 sum of output (i, j)'s kh x kw pooling window (strides sy, sx; top/left
    padding t, l of an h x w plane) over plane (nn, ch) of `x`, zeros in the padding (the bounds
    test only when `padded`, a Python bool). The average pool's requantised mean and i8wide's
    int16 sums share it."""
    acc[0] = 0
    for a, bb in T.grid(kh, kw):
        if padded:
            acc[0] = acc[0] + T.if_then_else(
                i * sy - t + a >= 0 and i * sy - t + a < h and j * sx - l + bb >= 0 and j * sx - l + bb < w,
                T.Cast("int32", x[nn, ch, i * sy - t + a, j * sx - l + bb]), 0)
        else:
            acc[0] = acc[0] + T.Cast("int32", x[nn, ch, i * sy + a, j * sx + bb])


def avg_pool(name, x_shape, y_shape, kernel, stride, pad, dtype: str, fast: bool, lo: int, hi: int) -> Kernel:
    """Average pool on integers: the window's int32 sum (zeros in the padding) times the constant
    requantisation M / 2^sh = s_x / (s_y * kh * kw) (the arguments m[0], sh[0])."""
    n, c, h, w = x_shape
    _, _, oh, ow = y_shape
    (kh, kw), (sy, sx), (t, l) = kernel, stride, pad[:2]
    padded = any(pad)
    store = partial(requant, lo=lo, hi=hi, dtype=dtype, fast=fast)
    xs, ys = tuple(x_shape), tuple(y_shape)

    @T.prim_func(s_tir=True)
    def f(x: T.Buffer(xs, dtype), m: T.Buffer((1,), "int32"), sh: T.Buffer((1,), "int32"), y: T.Buffer(ys, dtype)):
        T.func_attr({"tirx.noalias": True})
        acc = T.sblock_alloc_buffer((1,), "int32")
        for nn, ch, i, j in T.grid(n, c, oh, ow):
            window_sum(acc, x, nn, ch, i, j, kh, kw, sy, sx, t, l, h, w, padded)
            store(y, (nn, ch, i, j), acc[0], m, sh, 0)
    args = [("x", dtype, False), ("m", "int32", False), ("sh", "int32", False), ("y", dtype, True)]
    return Kernel(name, f, args, origin="tvm-tir",
                  meta={"doc": f"{dtype} avg_pool {list(x_shape)}->{list(y_shape)} k{kh}x{kw} (int32 sum, requantised)"})


def softmax_table(s_x: float, q: int) -> np.ndarray:
    """exp(d * s_x) * 2^b, rounded, for d = -255 .. 0 (the int8 differences x - max); b = 16, or
    less where e * q (the kernel's numerator, q = round(1 / s_y)) would not fit 31 bits."""
    b = min(16, int(math.log2((2 ** 31 - 1) / (q + 1))))
    return np.round(np.exp(np.arange(-255, 1, dtype=np.float64) * s_x) * 2.0 ** b).astype(np.int32)


def softmax(name, outer: int, d: int, inner: int, q: int) -> Kernel:
    """int8 softmax over the middle axis of [outer, d, inner]: per slice the max m, then
    e_k = table[x_k - m + 255] (exp at the input's scale, times 2^b: `softmax_table`), their sum S, and
    y_k = min(127, (e_k * q + S / 2) / S) with q = round(1 / s_y): one division per element."""
    size = outer * d * inner

    @T.prim_func(s_tir=True)
    def f(x: T.Buffer((size,), "int8"), e: T.Buffer((256,), "int32"), y: T.Buffer((size,), "int8")):
        T.func_attr({"tirx.noalias": True})
        acc = T.sblock_alloc_buffer((2,), "int32")
        for o, i in T.grid(outer, inner):
            acc[0] = -128
            for k in range(d):
                acc[0] = T.max(acc[0], T.Cast("int32", x[(o * d + k) * inner + i]))
            acc[1] = 0
            for k in range(d):
                acc[1] = acc[1] + e[T.Cast("int32", x[(o * d + k) * inner + i]) - acc[0] + 255]
            for k in range(d):
                y[(o * d + k) * inner + i] = T.Cast("int8", T.min(T.truncdiv(
                    e[T.Cast("int32", x[(o * d + k) * inner + i]) - acc[0] + 255] * q + T.shift_right(acc[1], 1),
                    acc[1]), 127))
    return Kernel(name, f, [("x", "int8", False), ("e", "int32", False), ("y", "int8", True)], origin="tvm-tir",
                  meta={"doc": f"int8 softmax [{outer},{d},{inner}] (exp table, one division per element)"})


ROUND_F32 = """/* float -> int32, rounded to nearest (ties to even: FPSCR's default mode) and saturated: one VCVTR. */
__attribute__((always_inline)) static inline int32_t cococ_round_f32(float v) {
  float r;
  __asm__("vcvtr.s32.f32 %0, %1" : "=t"(r) : "t"(v));
  int32_t i;
  __builtin_memcpy(&i, &r, 4);
  return i;
}
"""


def quantize(name, size: int, scale: float, dtype: str) -> Kernel:
    """f32 -> int8 at `scale` without libm: VCVTR (round to nearest, ties to even, as the
    nearbyintf it replaces; saturating) of x / scale, then SSAT to the type's range."""
    bits = {"int8": 8, "int16": 16}[dtype]
    x = te.placeholder((size,), name="x")
    y = te.compute((size,), lambda i: T.call_pure_extern("int32", "__ssat", T.call_pure_extern(
        "int32", "cococ_round_f32", x[i] * tvm.tirx.const(1.0 / scale, "float32")), bits).astype(dtype), name="y")
    return Kernel(name, te.create_prim_func([x, y]), [("x", "float32", False), ("y", dtype, True)],
                  includes=("<arm_acle.h>",),
                  meta={"doc": f"f32 -> {dtype}, scale {scale:.6g} (VCVTR + SSAT, no libm)", "prelude": ROUND_F32})


__all__ = ["affine", "affine_params", "hardswish", "avg_pool", "quantize", "softmax", "softmax_table"]
