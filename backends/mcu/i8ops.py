"""Fixed-point kernels of the layers around the convs: depthwise conv, add, pools, clamps, edges.

With these, an int8 (or q15) build of a MobileNet/ResNet/DS-CNN-style network stays integer from
the input's quantize step to the output's dequantize step: `lower.py` asks `fixed.integer_reason`
which layers have one (qlower.py builds them), and every layer that still runs in float is a
warning naming it and why.

- depthwise conv (`depthwise`): per channel, the input plane is widened into an int16 scratch
  plane with the padding already in place (zeroed once per call, so the MAC loop never tests
  bounds: padding is handled outside the inner loop; int8 rows four elements per word), then
  two outputs of a row at a time, SMLAD on pairs of taps (a word of the plane against a word of
  two int16 weights; an odd kernel width pairs its last tap with a zero weight), bias, the
  per-channel requantisation of the conv kernels (qkernels.requant) and the clamp.
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

from cococ.backends.kernels.im2col import Geometry
from cococ.backends.mcu.codegen import Kernel
from cococ.backends.mcu.fixed import LIMITS
from cococ.backends.mcu.qkernels import requant, requant_params

READ_Q15X2 = """/* Unaligned word access for the depthwise conv's int16 plane (the M4's LDR/STR take any address;
   CMSIS arm_nn_read_q15x2 / arm_nn_read_q7x4 / arm_nn_write_q15x2), and the halfword packs (PKHBT, PKHTB). */
__attribute__((always_inline)) static inline int32_t cococ_read_q15x2(const int16_t* p) {
  int32_t v;
  __builtin_memcpy(&v, p, 4);
  return v;
}
__attribute__((always_inline)) static inline int32_t cococ_read_q7x4(const int8_t* p) {
  int32_t v;
  __builtin_memcpy(&v, p, 4);
  return v;
}
__attribute__((always_inline)) static inline int32_t cococ_write_q15x2(int16_t* p, int32_t v) {
  __builtin_memcpy(p, &v, 4);
  return 0;
}
__attribute__((always_inline)) static inline int32_t cococ_sxtb16_odd(int32_t v) {  /* bytes 1, 3: SXTB16 ROR #8 */
  int32_t r;
  __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(v));
  return r;
}
__attribute__((always_inline)) static inline int32_t cococ_pack_lo(int32_t a, int32_t b) {  /* (a.lo, b.lo) */
  int32_t r;
  __asm__("pkhbt %0, %1, %2, lsl #16" : "=r"(r) : "r"(a), "r"(b));
  return r;
}
__attribute__((always_inline)) static inline int32_t cococ_pack_hi(int32_t a, int32_t b) {  /* (b.hi, a.hi) */
  int32_t r;
  __asm__("pkhtb %0, %1, %2, asr #16" : "=r"(r) : "r"(a), "r"(b));
  return r;
}
"""


def plane_geometry(x_shape, attrs) -> tuple[int, int]:
    """(row length, elements) of a depthwise conv's padded int16 plane: rows of even length (so a
    pair of outputs reads aligned words), plus a tail a pair's last word may read into."""
    _, _, h, wd = x_shape
    t, l, b, r = attrs["pad"]
    pw = (wd + l + r + 1) // 2 * 2
    return pw, (h + t + b) * pw + 4


def depthwise(name, x_shape, y_shape, attrs, lo: int, hi: int, fast: bool, dtype: str) -> Kernel:
    """Depthwise conv on `dtype` (int8 or int16) tensors: per channel the padded int16 plane,
    then two outputs of a row at a time (stride 1 or 2), both against the same weight words
    (w[2k], w[2k+1]) of a kernel row, which stay in registers: output j SMLADs the words of the
    plane at its window, output j + 1 at stride 2 the same words one further, at stride 1 its
    own (unaligned) words, except that an odd last tap is the top half of output j's last word
    (SMLATB). An odd last output (and other strides) one at a time. Requantised, clamped."""
    n, c, h, wd = x_shape
    oh, ow = y_shape[2], y_shape[3]
    g = Geometry.of(x_shape, y_shape, attrs)
    t, l = attrs["pad"][:2]
    kwp = (g.kw + 1) // 2                      # weight words of a kernel row (zero after an odd width)
    paired = g.sw in (1, 2) and ow >= 2
    own = kwp - g.kw % 2                       # stride 1: words output j + 1 loads itself
    na = (kwp + own if g.sw == 1 else kwp + 1) if paired else 1   # plane words a pair loads per row
    pw, size = plane_geometry(x_shape, attrs)
    store = partial(requant, lo=lo, hi=hi, dtype=dtype, fast=fast)
    zero = T.int16(0)
    xs, ys = tuple(x_shape), tuple(y_shape)

    @T.macro
    def load(r, plane, e, at):
        """r[e] = the plane word at element `at` (two int16, any halfword address)."""
        r[e] = T.call_pure_extern("int32", "cococ_read_q15x2", T.address_of(plane[at]))

    @T.macro
    def widen4(r, plane, at, v):
        """plane[at .. at + 4] = the four int8 of the word v, as int16: SXTB16 gives (x0, x2),
        SXTB16 of v ROR 8 (x1, x3); PKHBT / PKHTB make (x0, x1), (x2, x3)."""
        r[0] = T.call_pure_extern("int32", "__sxtb16", v)
        r[1] = T.call_pure_extern("int32", "cococ_sxtb16_odd", v)
        T.evaluate(T.call_extern("int32", "cococ_write_q15x2", T.address_of(plane[at]),
                                 T.call_pure_extern("int32", "cococ_pack_lo", r[0], r[1])))
        T.evaluate(T.call_extern("int32", "cococ_write_q15x2", T.address_of(plane[at + 2]),
                                 T.call_pure_extern("int32", "cococ_pack_hi", r[1], r[0])))

    @T.prim_func(s_tir=True)
    def f(x: T.Buffer(xs, dtype), w: T.Buffer((c * g.kh * kwp * 2,), "int16"),
          bq: T.Buffer((c,), "int32"), m: T.Buffer((c,), "int32"), sh: T.Buffer((c,), "int32"),
          plane: T.Buffer((size,), "int16"), y: T.Buffer(ys, dtype)):
        T.func_attr({"tirx.noalias": True})
        WW = T.decl_buffer((c * g.kh * kwp,), "int32", data=w.data)
        acc = T.sblock_alloc_buffer((2,), "int32")
        r = T.sblock_alloc_buffer((max(2, g.kh * na),), "int32")
        for p in range(size):
            plane[p] = zero
        for nn, ch in T.grid(n, c):
            for iy in range(h):
                if dtype == "int8":  # four at a time: one word, SXTB16 twice, two packs, two words
                    for q in T.unroll(wd // 4) if wd <= 64 else range(wd // 4):
                        widen4(r, plane, (iy + t) * pw + q * 4 + l,
                               T.call_pure_extern("int32", "cococ_read_q7x4", T.address_of(x[nn, ch, iy, q * 4])))
                for ix in range(wd // 4 * 4 if dtype == "int8" else 0, wd):
                    plane[(iy + t) * pw + ix + l] = T.Cast("int16", x[nn, ch, iy, ix])
            for i in range(oh):
                if paired:
                    for j2 in range(ow // 2):
                        acc[0] = bq[ch]
                        acc[1] = bq[ch]
                        for ky in T.unroll(g.kh):  # all loads first: back to back, the M4 pipelines them
                            for k in T.unroll(na - own if g.sw == 1 else na):  # output j's words (+ one at stride 2)
                                load(r, plane, ky * na + k, (i * g.sh + ky * g.dh) * pw + j2 * (2 * g.sw) + k * 2)
                            if g.sw == 1:
                                for k in T.unroll(own):  # output j + 1's own words
                                    load(r, plane, ky * na + kwp + k, (i * g.sh + ky * g.dh) * pw + j2 * 2 + k * 2 + 1)
                        for ky in T.unroll(g.kh):
                            for k in T.unroll(kwp):
                                acc[0] = T.call_pure_extern("int32", "__smlad", r[ky * na + k],
                                                            WW[(ch * g.kh + ky) * kwp + k], acc[0])
                            if g.sw == 2:
                                for k in T.unroll(kwp):
                                    acc[1] = T.call_pure_extern("int32", "__smlad", r[ky * na + k + 1],
                                                                WW[(ch * g.kh + ky) * kwp + k], acc[1])
                            else:
                                for k in T.unroll(own):
                                    acc[1] = T.call_pure_extern("int32", "__smlad", r[ky * na + kwp + k],
                                                                WW[(ch * g.kh + ky) * kwp + k], acc[1])
                                if g.kw % 2 == 1:
                                    acc[1] = T.call_pure_extern("int32", "__smlatb", r[ky * na + kwp - 1],
                                                                WW[(ch * g.kh + ky) * kwp + kwp - 1], acc[1])
                        store(y, (nn, ch, i, j2 * 2), acc[0], m, sh, ch)
                        store(y, (nn, ch, i, j2 * 2 + 1), acc[1], m, sh, ch)
                for j in range(ow // 2 * 2 if paired else 0, ow):
                    acc[0] = bq[ch]
                    for ky in T.unroll(g.kh):
                        for k in T.unroll(kwp):
                            acc[0] = T.call_pure_extern("int32", "__smlad", T.call_pure_extern(
                                "int32", "cococ_read_q15x2",
                                T.address_of(plane[(i * g.sh + ky * g.dh) * pw + j * g.sw + k * 2])),
                                WW[(ch * g.kh + ky) * kwp + k], acc[0])
                    store(y, (nn, ch, i, j), acc[0], m, sh, ch)
    args = [("x", dtype, False), ("w", "int16", False), ("bq", "int32", False), ("m", "int32", False),
            ("sh", "int32", False), ("plane", "int16", True), ("y", dtype, True)]
    return Kernel(name, f, args, origin="tvm-tir", includes=("<arm_acle.h>",),
                  meta={"doc": f"{dtype} depthwise conv2d {list(x_shape)}->{list(y_shape)} k{g.kh}x{g.kw} "
                        f"s{g.sh}x{g.sw} (padded int16 plane; SMLAD on tap pairs"
                        f"{', two outputs at a time' if paired else ''}), clamp [{lo}, {hi}]",
                        "prelude": READ_Q15X2})


def depthwise_weights(wq: np.ndarray) -> np.ndarray:
    """[c, 1, kh, kw] integer weights -> [c, kh, 2 * ceil(kw / 2)] int16: per kernel row the words
    (w[2k], w[2k+1]) `depthwise` reads, a zero after an odd width."""
    c, _, kh, kw = wq.shape
    out = np.zeros((c, kh, (kw + 1) // 2 * 2), np.int16)
    out[:, :, :kw] = wq[:, 0]
    return out.reshape(-1)


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
            acc[0] = 0
            for a, bb in T.grid(kh, kw):
                if padded:
                    acc[0] = acc[0] + T.if_then_else(
                        i * sy - t + a >= 0 and i * sy - t + a < h and j * sx - l + bb >= 0 and j * sx - l + bb < w,
                        T.Cast("int32", x[nn, ch, i * sy - t + a, j * sx - l + bb]), 0)
                else:
                    acc[0] = acc[0] + T.Cast("int32", x[nn, ch, i * sy + a, j * sx + bb])
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


__all__ = ["depthwise", "depthwise_weights", "affine", "affine_params", "hardswish", "avg_pool", "quantize",
           "READ_Q15X2", "softmax", "softmax_table"]
