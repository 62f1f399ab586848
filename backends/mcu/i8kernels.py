"""int8 kernels: conv2d and dense with int8 weights and activations, SXTB16 + SMLAD inner loops.

Why int8 on an M4 at all: the core has no 4-way int8 MAC, so int8 runs at about q15's speed,
but the weights take half the flash (and activations half the SRAM). The arithmetic is the
CMSIS-NN one (arm_nn_mat_mult_kernel_q7_q15_reordered / arm_fully_connected_q7): the
activations are widened to a q15 column (a conv's im2col gathers one output pixel's receptive
field; a dense layer widens its input once per call), and the weights stay int8 in flash: one
32-bit load brings four of them (arm_nn_read_q7x4), SXTB16 sign-extends bytes 0 and 2 into two
q15 lanes and SXTB16 with ROR #8 bytes 1 and 3. So that those pairs line up with consecutive
activations, each group of four weights is stored reordered [w0, w2, w1, w3] (done here at
compile time, as CMSIS expects of its offline-reordered weights). Two output channels are
computed together: the two activation words of a group feed four SMLADs (8 MACs per 2
activation loads + 2 weight loads + 4 SXTB16 + 4 SMLAD), two groups per loop iteration.

GCC's ACLE has `__sxtb16` but no rotate form, and writes `__sxtb16(__ror(w, 8))` as two
instructions; the `cococ_sxtb16_ror8` helper (inline asm, emitted once at the top of
kernels.c) is the single `sxtb16 rd, rm, ror #8` CMSIS's `__SXTB16_RORn` gives.

Numerics: symmetric, zero point 0, int32 accumulators (acc = bias_q + sum x_q w_q: with |x_q|,
|w_q| <= 128 a sum of up to 2^16 terms stays within 2^30), requantised to int8 as q15 is
(the `qkernels.requant` macro), saturated to [-128, 127] ([0, 127] with a fused ReLU).
"""
from __future__ import annotations

from functools import partial

import numpy as np
from tvm.script import tirx as T

from cococ.backends.kernels import im2col
from cococ.backends.kernels.im2col import Geometry
from cococ.backends.mcu.codegen import Kernel
from cococ.backends.mcu.qkernels import FixedPoint, channel_pairs, lower_fixed, requant_store

PRELUDE = """/* SXTB16 with ROR #8: bytes 1 and 3 of w sign-extended into two q15 lanes (CMSIS __SXTB16_RORn). */
__attribute__((always_inline)) static inline int32_t cococ_sxtb16_ror8(int32_t w) {
  int32_t r;
  __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(w));
  return r;
}
"""


@T.macro
def _group(COL, WW, acc, r, kc, w0, w1, two):
    """One weight word (WW[w0], and WW[w1] of the second row when `two`) against the column's
    words kc * 2 and kc * 2 + 1: 4 MACs per row, the loads issued first (into `r`)."""
    r[0] = COL[kc * 2]
    r[1] = COL[kc * 2 + 1]
    r[2] = WW[w0]
    if two:
        r[3] = WW[w1]
    acc[0] = T.call_pure_extern("int32", "__smlad", r[0], T.call_pure_extern("int32", "__sxtb16", r[2]), acc[0])
    acc[0] = T.call_pure_extern("int32", "__smlad", r[1], T.call_pure_extern("int32", "cococ_sxtb16_ror8", r[2]),
                                acc[0])
    if two:
        acc[1] = T.call_pure_extern("int32", "__smlad", r[0], T.call_pure_extern("int32", "__sxtb16", r[3]), acc[1])
        acc[1] = T.call_pure_extern("int32", "__smlad", r[1], T.call_pure_extern("int32", "cococ_sxtb16_ror8", r[3]),
                                    acc[1])


@T.macro
def _pair(COL, WW, acc, r, kw4, o2, k):
    """Two weight words of each of two rows (16 MACs)."""
    _group(COL, WW, acc, r, k * 2, o2 * (2 * kw4) + k * 2, o2 * (2 * kw4) + kw4 + k * 2, True)
    _group(COL, WW, acc, r, k * 2 + 1, o2 * (2 * kw4) + k * 2 + 1, o2 * (2 * kw4) + kw4 + k * 2 + 1, True)


@T.macro
def _last(COL, WW, acc, r, kw4, o2):
    """The odd last weight word of two rows."""
    _group(COL, WW, acc, r, kw4 - 1, o2 * (2 * kw4) + (kw4 - 1), o2 * (2 * kw4) + kw4 + (kw4 - 1), True)


@T.macro
def _single(COL, WW, acc, r, kw4, row, k):
    """Weight word k of the odd last row."""
    _group(COL, WW, acc, r, k, row * kw4 + k, 0, False)


@T.macro
def _dot8(COL, WW, b, m, sh, acc, r, y, at, o, kw4, store):
    """`o` output channels of a q15 column COL (2 * kw4 words) against the int8 weight words WW
    (kw4 per channel), in qkernels' channel_pairs loop nest."""
    channel_pairs(b, m, sh, acc, y, at, o, kw4, partial(_pair, COL, WW, acc, r, kw4),
                  partial(_last, COL, WW, acc, r, kw4), partial(_single, COL, WW, acc, r, kw4, o - 1), store)


def _kernel(name, x_shape, o: int, y_shape, k: int, g: Geometry | None, relu: bool, fast: bool, doc: str) -> Kernel:
    """Both int8 kernels: the int32 views of the q15 column and the weights, the accumulators, the
    zeroed column tail; then per output position (conv, geometry `g`: im2col of its window) or
    per batch item (dense, g None: the input row widened) the column, and `_dot8` on it."""
    kw4 = (k + 3) // 4
    xs, ys, n = tuple(x_shape), tuple(y_shape), x_shape[0]
    store = requant_store(relu, fast, "int8")
    zero = T.int16(0)

    @T.prim_func(s_tir=True)
    def f(x: T.Buffer(xs, "int8"), w: T.Buffer((o * kw4 * 4,), "int8"),
          b: T.Buffer((o,), "int32"), m: T.Buffer((o,), "int32"), sh: T.Buffer((o,), "int32"),
          col: T.Buffer((kw4 * 4,), "int16"), y: T.Buffer(ys, "int8")):
        T.func_attr({"tirx.noalias": True})
        COL = T.decl_buffer((kw4 * 2,), "int32", data=col.data)
        WW = T.decl_buffer((o * kw4,), "int32", data=w.data)
        acc = T.sblock_alloc_buffer((2,), "int32")
        r = T.sblock_alloc_buffer((4,), "int32")
        for p in range(k, kw4 * 4):
            col[p] = zero
        if g is not None:
            for nn, i, j in T.grid(n, y_shape[2], y_shape[3]):
                for c, kh, kw in T.grid(g.c, g.kh, g.kw):
                    im2col.gather(col, c * (g.kh * g.kw) + kh * g.kw + kw, x, lambda iy, ix: (nn, c, iy, ix),
                                  i * g.sh - g.t + kh * g.dh, j * g.sw - g.l + kw * g.dw, g, zero, "int16")
                _dot8(COL, WW, b, m, sh, acc, r, y, lambda oo: (nn, oo, i, j), o, kw4, store)
        else:
            for nn in range(n):
                for p in range(k):
                    col[p] = T.Cast("int16", x[nn, p])
                _dot8(COL, WW, b, m, sh, acc, r, y, lambda oo: (nn, oo), o, kw4, store)
    args = [("x", "int8", False), ("w", "int8", False), ("b", "int32", False), ("m", "int32", False),
            ("sh", "int32", False), ("col", "int16", True), ("y", "int8", True)]
    return Kernel(name, f, args, origin="tvm-tir", includes=("<arm_acle.h>",),
                  meta={"doc": doc + (" +relu" if relu else ""), "prelude": PRELUDE})


def conv2d_int8(name, x_shape, o: int, y_shape, attrs, relu: bool, fast: bool) -> Kernel:
    g = Geometry.of(x_shape, y_shape, attrs)
    doc = f"int8 conv2d {list(x_shape)}->{list(y_shape)} (im2col to q15 + SXTB16/SMLAD, 2 rows)"
    return _kernel(name, x_shape, o, y_shape, g.c * g.kh * g.kw, g, relu, fast, doc)


def dense_int8(name, n: int, k: int, o: int, relu: bool, fast: bool) -> Kernel:
    doc = f"int8 dense {k}->{o} (input widened to q15 + SXTB16/SMLAD, 2 rows)"
    return _kernel(name, (n, k), o, (n, o), k, None, relu, fast, doc)


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
    """(kernel, args) of one int8 layer (`lower_fixed` with the int8 kernels)."""
    return lower_fixed(lw, layer, ins, out, params, act, INT8)


__all__ = ["conv2d_int8", "dense_int8", "lower_int8", "reorder_weights", "PRELUDE"]
