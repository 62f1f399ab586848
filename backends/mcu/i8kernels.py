"""int8 kernels: conv2d and dense with int8 weights and activations, SXTB16 + SMLAD inner loops.

Why int8 on an M4 at all: the core has no 4-way int8 MAC, but the weights take half the
flash (and activations half the SRAM), and with a conv's weights widened once for two output
positions int8 runs faster than q15. The arithmetic is CMSIS-NN's
(arm_nn_mat_mult_kernel_s8_s16 / arm_fully_connected_s8): the activations are widened to q15
columns, and the weights stay int8 in flash: one 32-bit load brings four of them
(arm_nn_read_q7x4), SXTB16 sign-extends bytes 0 and 2 into two q15 lanes and SXTB16 with
ROR #8 bytes 1 and 3. So that those pairs line up with consecutive activations, each group of
four weights is stored reordered [w0, w2, w1, w3] (done here at compile time, as CMSIS expects
of its offline-reordered weights).

- conv: a matrix-matrix product, two output positions at a time. Their receptive fields are
  gathered into two q15 columns (im2col; the bounds tests only for a pair whose windows touch
  the padding, small windows unrolled; an odd position count makes the last pair overlap the
  one before, recomputing one output). Then per two output channels a 2 x 2 block of
  accumulators: per weight word of each channel one load and one SXTB16 pair, per column word
  one load, and 8 SMLADs (16 MACs per 6 loads + 4 SXTB16 + 8 SMLAD: 19 cycles), four words per
  loop iteration; the four sums are requantised together.
- dense (matrix-vector, batch items one at a time): the input widened once per call, then four
  output channels at a time (16 MACs per 2 column loads + 4 weight loads + 8 SXTB16 + 8 SMLAD:
  23 cycles), four words per loop iteration. The last dense of a build with float outputs
  (`i8wide.float_tail`) dequantises its int32 sums to float32 instead (the logits not rounded to int8).

Both steps are inline asm (the COCOC_MAC2X2 / COCOC_MAC4X1 macros of PRELUDE, emitted once at
the top of kernels.c): GCC's own schedule of the same TIR split the six loads (an LDR that does
not follow another costs 2 cycles instead of 1) and ran out of registers for the loop bound
(2 x 2 conv: 47 cycles per 32 MACs against 38 + loop; four rows of dense: accumulators spilled).
Macros, so that the offsets are literal LDR immediates at any -O level (checked -O0 to -O3);
a layer whose offsets exceed LDR's 12 bits (k > ~2000) uses the TIR form.

Layout: NCHW, as every other M4 kernel. With two positions per column pair the im2col is a
small part of a conv's cycles (the gather of two columns is amortised over all output
channels), so channels-last would save little here; depthwise convs are where HWC pays.

The requantisation's int8 saturation is one SSAT #8 (USAT #7 with a fused ReLU). Cycles/MAC per
layer shape: docs/performance.md, "arm-m4 int8 kernels per layer shape" (m4_kernels.py --int8-shapes).

GCC's ACLE has `__sxtb16` but no rotate form, and writes `__sxtb16(__ror(w, 8))` as two
instructions; the `cococ_sxtb16_ror8` helper (inline asm, emitted once at the top of
kernels.c) is the single `sxtb16 rd, rm, ror #8` CMSIS's `__SXTB16_RORn` gives.

Numerics: symmetric, zero point 0, int32 accumulators (acc = bias_q + sum x_q w_q: with |x_q|,
|w_q| <= 128 a sum of up to 2^16 terms stays within 2^30), requantised to int8 as q15 is
(`qkernels.requant`; its fast form here as `_requant_sat`, the same integers), saturated to
[-128, 127] ([0, 127] with a fused ReLU).
"""
from __future__ import annotations

from functools import partial

import numpy as np
import tvm
from tvm.script import tirx as T

from cococ.backends.kernels import im2col
from cococ.backends.kernels.im2col import Geometry
from cococ.backends.mcu.codegen import Kernel
from cococ.backends.mcu.lower import Tensor, frozen_attrs
from cococ.backends.mcu.qkernels import FixedPoint, integer_layer, lower_fixed, requant_store, weight_scales
from cococ.ir.ops.activation import Relu
from cococ.ir.ops.nn import Conv2d

PRELUDE = """/* SXTB16 with ROR #8: bytes 1 and 3 of w sign-extended into two q15 lanes (CMSIS __SXTB16_RORn). */
__attribute__((always_inline)) static inline int32_t cococ_sxtb16_ror8(int32_t w) {
  int32_t r;
  __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(w));
  return r;
}
/* The 2 x 2 block's step: the weight words at w + wo (channel a) and w + wo + ws (channel b)
   against the column words at c + co, c + co + 1 (position 0) and c + co + cs, + 1 (position 1):
   16 MACs. In asm so that the six loads issue back to back (the M4 pipelines them: 7 cycles), at
   constant offsets from two base registers, and the four accumulators stay in registers: GCC's
   own schedule of the same C split the loads and spilled (47 cycles per two steps against 38).
   A macro, so that the offsets are literal immediates at any -O level. */
#define COCOC_MAC2X2(acc, w, wo, ws, c, co, cs) do { \
  int32_t x0_, x1_, y0_, y1_, w0_, w1_, t_; \
  __asm__("ldr %[w0], [%[pw], %[o0]]\\n\\tldr %[w1], [%[pw], %[o1]]\\n\\t" \
          "ldr %[x0], [%[pc], %[o2]]\\n\\tldr %[x1], [%[pc], %[o3]]\\n\\t" \
          "ldr %[y0], [%[pc], %[o4]]\\n\\tldr %[y1], [%[pc], %[o5]]\\n\\t" \
          "sxtb16 %[t], %[w0]\\n\\tsxtb16 %[w0], %[w0], ror #8\\n\\t" \
          "smlad %[a0], %[x0], %[t], %[a0]\\n\\tsmlad %[a0], %[x1], %[w0], %[a0]\\n\\t" \
          "smlad %[a1], %[y0], %[t], %[a1]\\n\\tsmlad %[a1], %[y1], %[w0], %[a1]\\n\\t" \
          "sxtb16 %[t], %[w1]\\n\\tsxtb16 %[w1], %[w1], ror #8\\n\\t" \
          "smlad %[a2], %[x0], %[t], %[a2]\\n\\tsmlad %[a2], %[x1], %[w1], %[a2]\\n\\t" \
          "smlad %[a3], %[y0], %[t], %[a3]\\n\\tsmlad %[a3], %[y1], %[w1], %[a3]" \
          : [a0] "+r"((acc)[0]), [a1] "+r"((acc)[1]), [a2] "+r"((acc)[2]), [a3] "+r"((acc)[3]), \
            [w0] "=&r"(w0_), [w1] "=&r"(w1_), [x0] "=&r"(x0_), [x1] "=&r"(x1_), [y0] "=&r"(y0_), \
            [y1] "=&r"(y1_), [t] "=&r"(t_) \
          : [pw] "r"(w), [pc] "r"(c), [o0] "i"(4 * (wo)), [o1] "i"(4 * ((wo) + (ws))), [o2] "i"(4 * (co)), \
            [o3] "i"(4 * (co) + 4), [o4] "i"(4 * ((co) + (cs))), [o5] "i"(4 * ((co) + (cs)) + 4) \
          : "memory"); } while (0)
/* Dense's step: the weight words at w + wo + j * ws of four channels j against the column words
   at c + co, + 1: 16 MACs, the six loads back to back (as COCOC_MAC2X2). */
#define COCOC_MAC4X1(acc, w, wo, ws, c, co) do { \
  int32_t x0_, x1_, w0_, w1_, w2_, w3_, t_; \
  __asm__("ldr %[x0], [%[pc], %[o4]]\\n\\tldr %[x1], [%[pc], %[o5]]\\n\\t" \
          "ldr %[w0], [%[pw], %[o0]]\\n\\tldr %[w1], [%[pw], %[o1]]\\n\\t" \
          "ldr %[w2], [%[pw], %[o2]]\\n\\tldr %[w3], [%[pw], %[o3]]\\n\\t" \
          "sxtb16 %[t], %[w0]\\n\\tsxtb16 %[w0], %[w0], ror #8\\n\\t" \
          "smlad %[a0], %[x0], %[t], %[a0]\\n\\tsmlad %[a0], %[x1], %[w0], %[a0]\\n\\t" \
          "sxtb16 %[t], %[w1]\\n\\tsxtb16 %[w1], %[w1], ror #8\\n\\t" \
          "smlad %[a1], %[x0], %[t], %[a1]\\n\\tsmlad %[a1], %[x1], %[w1], %[a1]\\n\\t" \
          "sxtb16 %[t], %[w2]\\n\\tsxtb16 %[w2], %[w2], ror #8\\n\\t" \
          "smlad %[a2], %[x0], %[t], %[a2]\\n\\tsmlad %[a2], %[x1], %[w2], %[a2]\\n\\t" \
          "sxtb16 %[t], %[w3]\\n\\tsxtb16 %[w3], %[w3], ror #8\\n\\t" \
          "smlad %[a3], %[x0], %[t], %[a3]\\n\\tsmlad %[a3], %[x1], %[w3], %[a3]" \
          : [a0] "+r"((acc)[0]), [a1] "+r"((acc)[1]), [a2] "+r"((acc)[2]), [a3] "+r"((acc)[3]), \
            [w0] "=&r"(w0_), [w1] "=&r"(w1_), [w2] "=&r"(w2_), [w3] "=&r"(w3_), [x0] "=&r"(x0_), \
            [x1] "=&r"(x1_), [t] "=&r"(t_) \
          : [pw] "r"(w), [pc] "r"(c), [o0] "i"(4 * (wo)), [o1] "i"(4 * ((wo) + (ws))), \
            [o2] "i"(4 * ((wo) + 2 * (ws))), [o3] "i"(4 * ((wo) + 3 * (ws))), [o4] "i"(4 * (co)), \
            [o5] "i"(4 * (co) + 4) \
          : "memory"); } while (0)
"""


def _sx(w):
    """SXTB16: bytes 0 and 2 of a weight word as two q15 lanes."""
    return tvm.tirx.call_pure_extern("int32", "__sxtb16", w)


def _sx8(w):
    """SXTB16 ROR 8: bytes 1 and 3."""
    return tvm.tirx.call_pure_extern("int32", "cococ_sxtb16_ror8", w)


def _smlad(a, b, acc):
    return tvm.tirx.call_pure_extern("int32", "__smlad", a, b, acc)


@T.macro
def _requant_sat(y, at, acc, m, sh, o, relu):
    """qkernels.requant's fast form (SMULL high word, 32-bit rounding shift) with the int8
    saturation as one SSAT #8 ([-128, 127]) or, with a fused ReLU, USAT #7 ([0, 127]): GCC writes
    the min/max clamp as two compare + IT + move pairs."""
    y[at] = T.Cast("int8", tvm.tirx.call_pure_extern("int32", "__usat" if relu else "__ssat", T.shift_right(
        T.Cast("int32", T.shift_right(T.Cast("int64", acc) * T.Cast("int64", m[o]), T.int64(32)))
        + T.shift_left(1, sh[o] - 1), sh[o]), 7 if relu else 8))


def _store(relu: bool, fast: bool):
    """The int8 requantisation as a store(y, at, acc, m, sh, row) macro."""
    return partial(_requant_sat, relu=relu) if fast else requant_store(relu, fast, "int8")


@T.macro
def _word(COL, WW, acc, r, kc0, w0, u, stride, rows, q, cb, asm):
    """Weight word w0 + u of `rows` consecutive channels (words `stride` apart) against words
    (kc0 + u) * 2 and + 1 of `q` columns (`cb` words apart): rows * q * 4 MACs. Per row one
    SXTB16 pair feeding 2 * q SMLADs: a weight word is widened once for every column, a column
    word loaded once for every row. 2 rows x 2 columns and 4 rows x 1 column are the asm steps
    (`asm`: their offsets fit LDR's 12-bit immediate); otherwise (1 or 2 rows, 1 or 2 columns)
    TIR, all loads first (into `r`: GCC then issues them mostly back to back)."""
    if asm and rows == 2 and q == 2:
        T.evaluate(T.call_extern("void", "COCOC_MAC2X2", T.address_of(acc[0]), T.address_of(WW[w0]), u, stride,
                                 T.address_of(COL[kc0 * 2]), u * 2, cb))
    elif asm and rows == 4:
        T.evaluate(T.call_extern("void", "COCOC_MAC4X1", T.address_of(acc[0]), T.address_of(WW[w0]), u, stride,
                                 T.address_of(COL[kc0 * 2]), u * 2))
    else:
        for j in T.unroll(rows):
            r[j] = WW[w0 + u + j * stride]
        for p in T.unroll(q):
            r[4 + 2 * p] = COL[p * cb + (kc0 + u) * 2]
            r[5 + 2 * p] = COL[p * cb + (kc0 + u) * 2 + 1]
        for j in T.unroll(rows):
            r[8] = _sx(r[j])
            r[j] = _sx8(r[j])
            for p in T.unroll(q):
                acc[j * q + p] = _smlad(r[4 + 2 * p], r[8], acc[j * q + p])
                acc[j * q + p] = _smlad(r[5 + 2 * p], r[j], acc[j * q + p])


@T.macro
def _block(COL, WW, b, m, sh, acc, r, Y, at, row0, rows, q, kw4, cb, store, unroll, asm):
    """Channels row0 .. row0 + rows - 1 at `q` columns: rows * q accumulators (registers), the
    reduction `unroll` weight words per iteration, each sum requantised into Y[at(channel, column)]."""
    for j in T.unroll(rows):
        for p in T.unroll(q):
            acc[j * q + p] = b[row0 + j]
    if kw4 >= unroll:
        for k in range(kw4 // unroll):
            for u in T.unroll(unroll):
                _word(COL, WW, acc, r, k * unroll, row0 * kw4 + k * unroll, u, kw4, rows, q, cb, asm)
    for u in T.unroll(kw4 % unroll):
        _word(COL, WW, acc, r, kw4 // unroll * unroll, row0 * kw4 + kw4 // unroll * unroll, u, kw4, rows, q, cb, asm)
    for j in T.unroll(rows):
        for p in T.unroll(q):
            store(Y, at(row0 + j, p), acc[j * q + p], m, sh, row0 + j)


@T.macro
def _channels(COL, WW, b, m, sh, acc, r, Y, at, o, rows, q, kw4, cb, store, asm):
    """All `o` channels, `rows` (2 or 4) at a time (then two, then an odd last one alone), at `q`
    columns; the reduction loop unrolled by four weight words (the measured best), wholly when
    a row has at most 16 (k <= 64: pointwise convs, whose blocks are short)."""
    for o2 in range(o // rows):
        _block(COL, WW, b, m, sh, acc, r, Y, at, o2 * rows, rows, q, kw4, cb, store, kw4 if kw4 <= 16 else 4, asm)
    if rows == 4 and o % 4 >= 2:
        _block(COL, WW, b, m, sh, acc, r, Y, at, o // 4 * 4, 2, q, kw4, cb, store, 4, asm)
    if o % 2 == 1:
        _block(COL, WW, b, m, sh, acc, r, Y, at, o - 1, 1, q, kw4, cb, store, 4, asm)


@T.macro
def _column(col, base, x, nn, i, j, g, zero, u):
    """col[base + (c, kh, kw)] = x's window of output position (i, j), widened to int16 (zero in
    the padding when `g.padded`); small windows unrolled, and a 1x1 or 1x2 window `u` channels
    per iteration (`u`: a loop iteration costs more than the copy of one element)."""
    for c0 in range(g.c // u):
        for cu in T.unroll(u):
            for kh in (T.unroll if g.kh * g.kw <= 16 else T.serial)(g.kh):
                for kw in (T.unroll if g.kw <= 8 else T.serial)(g.kw):
                    im2col.gather(col, base + (c0 * u + cu) * (g.kh * g.kw) + kh * g.kw + kw, x,
                                  lambda iy, ix: (nn, c0 * u + cu, iy, ix), i * g.sh - g.t + kh * g.dh,
                                  j * g.sw - g.l + kw * g.dw, g, zero, "int16")


def _inside(g: Geometry, i, j):
    """Whether output position (i, j)'s window lies wholly inside the input (no padding read)."""
    iy, ix = i * g.sh - g.t, j * g.sw - g.l
    return T.And(T.And(iy >= 0, iy + (g.kh - 1) * g.dh < g.h), T.And(ix >= 0, ix + (g.kw - 1) * g.dw < g.w))


def conv2d_int8(name, x_shape, o: int, y_shape, attrs, relu: bool, fast: bool, x_dtype: str = "int8") -> Kernel:
    """int8 conv2d, two output positions at a time: their two columns (im2col, widened to q15;
    the bounds tests only for a pair whose windows touch the padding), then the channels two
    at a time, a 2 x 2 block of accumulators per pair of SMLAD groups (each weight word widened
    once for both positions, each column word used for both channels). `x_dtype` int16: an
    int16 input (i8wide.py), copied into the columns."""
    g = Geometry.of(x_shape, y_shape, attrs)
    k = g.c * g.kh * g.kw
    kw4 = (k + 3) // 4
    kp = kw4 * 4
    xs, ys, n, (oh, ow) = tuple(x_shape), tuple(y_shape), x_shape[0], y_shape[2:]
    npos = oh * ow
    step = 1 if npos > 1 else 0          # one position: both columns are it
    inner = g._replace(padded=False)
    u = max(d for d in (1, 2, 4, 8) if g.c % d == 0 and (d == 1 or d * g.kh * g.kw <= 8))
    asm = 4 * (kw4 * 2 + 8) < 4096      # COCOC_MAC2X2's largest offset, (co + cs + 1) words, is an imm12
    store = _store(relu, fast)
    zero = T.int16(0)

    @T.prim_func(s_tir=True)
    def f(x: T.Buffer(xs, x_dtype), w: T.Buffer((o * kp,), "int8"),
          b: T.Buffer((o,), "int32"), m: T.Buffer((o,), "int32"), sh: T.Buffer((o,), "int32"),
          col: T.Buffer((2 * kp,), "int16"), y: T.Buffer(ys, "int8")):
        T.func_attr({"tirx.noalias": True})
        COL = T.decl_buffer((kw4 * 4,), "int32", data=col.data)
        WW = T.decl_buffer((o * kw4,), "int32", data=w.data)
        Y = T.decl_buffer((n * o * npos,), "int8", data=y.data)
        acc = T.sblock_alloc_buffer((4,), "int32")
        r = T.sblock_alloc_buffer((9,), "int32")
        for p in range(k, kp):
            col[p] = zero
            col[kp + p] = zero
        for nn, pq in T.grid(n, (npos + 1) // 2):
            p0 = T.meta_var(T.min(pq * 2, npos - 1 - step))    # an odd count: the last pair overlaps the one before
            if g.padded:
                if T.And(_inside(g, p0 // ow, p0 % ow), _inside(g, (p0 + step) // ow, (p0 + step) % ow)):
                    for p in T.unroll(2):
                        _column(col, p * kp, x, nn, (p0 + p * step) // ow, (p0 + p * step) % ow, inner, zero, u)
                else:
                    for p in T.unroll(2):
                        _column(col, p * kp, x, nn, (p0 + p * step) // ow, (p0 + p * step) % ow, g, zero, u)
            else:
                for p in T.unroll(2):
                    _column(col, p * kp, x, nn, (p0 + p * step) // ow, (p0 + p * step) % ow, g, zero, u)
            _channels(COL, WW, b, m, sh, acc, r, Y, lambda oo, p: (nn * o + oo) * npos + p0 + p * step, o, 2,
                      2, kw4, kw4 * 2, store, asm)
    args = [("x", x_dtype, False), ("w", "int8", False), ("b", "int32", False), ("m", "int32", False),
            ("sh", "int32", False), ("col", "int16", True), ("y", "int8", True)]
    doc = f"int8 conv2d {list(x_shape)}->{list(y_shape)} (im2col of 2 positions to q15 + SXTB16/SMLAD, 2x2 block)"
    doc = doc.replace("int8 conv2d", "int8 conv2d, int16 input,") if x_dtype == "int16" else doc
    return Kernel(name, f, args, origin="tvm-tir", includes=("<arm_acle.h>",),
                  meta={"doc": doc + (" +relu" if relu else ""), "prelude": PRELUDE, "col_len": 2 * kp})


@T.macro
def _dense_body(x, w, b, m, sh, col, y, n, k, o, kw4, kp, out, store, asm):
    """The dense kernel's body, whatever its output (`out`: int8 requantised, or float32 with `m`
    the float scales s and `sh` unused): the word views of column, weights and output, the
    column's padding zeroed, then per batch item the input widened into the q15 column and the
    channels four at a time."""
    COL = T.decl_buffer((kw4 * 2,), "int32", data=col.data)
    WW = T.decl_buffer((o * kw4,), "int32", data=w.data)
    Y = T.decl_buffer((n * o,), out, data=y.data)
    acc = T.sblock_alloc_buffer((4,), "int32")
    r = T.sblock_alloc_buffer((9,), "int32")
    for p in range(k, kp):
        col[p] = T.int16(0)
    for nn in range(n):
        for p in range(k):
            col[p] = T.Cast("int16", x[nn, p])
        _channels(COL, WW, b, m, sh, acc, r, Y, lambda oo, p: nn * o + oo, o, 4 if asm else 2, 1, kw4, 0, store, asm)


@T.macro
def _dequantised(y, at, acc, s, sh, o, relu):
    """Float output: the int32 sum (bias in it) times s[o] = s_x * s_w[o] (`sh` unused), max(0, .) with ReLU."""
    if relu:
        y[at] = T.max(T.Cast("float32", acc) * s[o], T.float32(0))
    else:
        y[at] = T.Cast("float32", acc) * s[o]


def dense_int8(name, n: int, k: int, o: int, relu: bool, fast: bool, out: str = "int8",
               x_dtype: str = "int8") -> Kernel:
    """int8 dense: per batch item the input widened once into the q15 column, then the channels
    four at a time (COCOC_MAC4X1: each column word loaded once for four SMLAD pairs; two at a
    time in TIR when a row is too long for its immediate offsets). `out="float32"`: the float
    output of an int8 build's last layer (`i8wide.float_tail`): each sum dequantised by the per-channel
    float scale s (argument s instead of m, sh) instead of requantised to int8. `x_dtype` int16:
    an int16 input (i8wide.py: an average pool's window sums), copied into the column."""
    kw4 = (k + 3) // 4
    kp = kw4 * 4
    asm = 4 * (kw4 * 3 + 4) < 4096      # COCOC_MAC4X1's largest offset, (wo + 3 ws) words, is an imm12
    if out == "float32":
        store = partial(_dequantised, relu=relu)

        @T.prim_func(s_tir=True)
        def f(x: T.Buffer((n, k), x_dtype), w: T.Buffer((o * kp,), "int8"), b: T.Buffer((o,), "int32"),
              s: T.Buffer((o,), "float32"), col: T.Buffer((kp,), "int16"), y: T.Buffer((n, o), "float32")):
            T.func_attr({"tirx.noalias": True})
            _dense_body(x, w, b, s, s, col, y, n, k, o, kw4, kp, out, store, asm)
        scales = [("s", "float32", False)]
    else:
        store = _store(relu, fast)

        @T.prim_func(s_tir=True)
        def f(x: T.Buffer((n, k), x_dtype), w: T.Buffer((o * kp,), "int8"),
              b: T.Buffer((o,), "int32"), m: T.Buffer((o,), "int32"), sh: T.Buffer((o,), "int32"),
              col: T.Buffer((kp,), "int16"), y: T.Buffer((n, o), "int8")):
            T.func_attr({"tirx.noalias": True})
            _dense_body(x, w, b, m, sh, col, y, n, k, o, kw4, kp, out, store, asm)
        scales = [("m", "int32", False), ("sh", "int32", False)]
    args = [("x", x_dtype, False), ("w", "int8", False), ("b", "int32", False), *scales,
            ("col", "int16", True), ("y", out, True)]
    doc = f"int8 dense {k}->{o} (input widened to q15 + SXTB16/SMLAD, {4 if asm else 2} rows)"
    doc = doc.replace("input widened", "int16 input copied") if x_dtype == "int16" else doc
    doc += " -> f32 (int32 sums dequantised)" if out == "float32" else ""
    return Kernel(name, f, args, origin="tvm-tir", includes=("<arm_acle.h>",),
                  meta={"doc": doc + (" +relu" if relu else ""), "prelude": PRELUDE, "col_len": kp})


def reorder_weights(wq: np.ndarray) -> np.ndarray:
    """[o, k] integer weights -> [o, 4 * ceil(k / 4)] int8, zero-padded, each group of four
    stored [w0, w2, w1, w3] so that SXTB16 gives (w0, w1) and SXTB16 ROR 8 gives (w2, w3)."""
    o, k = wq.shape
    kp = (k + 3) // 4 * 4
    out = np.zeros((o, kp), np.int8)
    out[:, :k] = wq
    return np.ascontiguousarray(out.reshape(o, kp // 4, 4)[:, :, [0, 2, 1, 3]].reshape(o, kp))


INT8 = FixedPoint("int8", "int8", 127, "weight_i8", reorder_weights, conv2d_int8, dense_int8, True)


def lower_int8(lw, layer, ins, out, params, act):
    """(kernel, args) of one int8 layer (`lower_fixed` with the int8 kernels); an int16 input
    (i8wide.py) or a float32 `out` (`i8wide.float_tail`'s dense: its int32 sums dequantised, acc * s_x *
    s_w[o], not requantised) here."""
    x, f32 = ins[0], out.dtype == "float32"
    if not f32 and x.dtype == "int8":
        return lower_fixed(lw, layer, ins, out, params, act, INT8)
    w2, bq, mm, sh, fast = integer_layer(layer, params, x.scale, 1.0 if f32 else out.scale, INT8.qmax)
    (o, kk), relu, fast = w2.shape, act is Relu, fast and not f32
    wts = [lw.weight(layer, INT8.weight, reorder_weights(w2)), lw.weight(layer, "bias_q", bq)]
    if f32:
        s = (x.scale * weight_scales(layer.params["weight"], o, INT8.qmax)).astype(np.float32)
        wts.append(lw.weight(layer, "scale", s))
    else:
        wts += [lw.weight(layer, "mult", mm), lw.weight(layer, "shift", sh)]
    if layer.opdef is Conv2d:
        key = ("conv2d_int8", x.dtype, x.shape, o, out.shape, frozen_attrs(layer.attrs), relu, fast)
        k = lw.kernel(key, lambda nm: conv2d_int8(nm, x.shape, o, out.shape, layer.attrs, relu, fast, x.dtype))
    else:
        key = ("dense_int8_f32" if f32 else "dense_int8", x.dtype, x.shape[0], kk, o, relu, fast)
        k = lw.kernel(key, lambda nm: dense_int8(nm, x.shape[0], kk, o, relu, fast, out.dtype, x.dtype))
    return k, [x] + wts + [Tensor(f"{out.name}_col", "int16", (k.meta["col_len"],)), out]


__all__ = ["conv2d_int8", "dense_int8", "lower_int8", "reorder_weights", "PRELUDE"]
