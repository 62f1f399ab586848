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
(`qkernels.requant`), saturated to [-128, 127] ([0, 127] with a fused ReLU).
"""
from __future__ import annotations

import numpy as np

from cococ.backends.mcu.codegen import Kernel
from cococ.backends.mcu.qkernels import _parse, integer_layer, requant, scale_preserving_step
from cococ.ir.ops.activation import Relu
from cococ.ir.ops.nn import Conv2d

PRELUDE = """/* SXTB16 with ROR #8: bytes 1 and 3 of w sign-extended into two q15 lanes (CMSIS __SXTB16_RORn). */
__attribute__((always_inline)) static inline int32_t cococ_sxtb16_ror8(int32_t w) {
  int32_t r;
  __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(w));
  return r;
}
"""


def _dot8(o: int, kw4: int, lo: int, yexpr, fast: bool) -> str:
    """Loops over `o` output channels of a q15 column COL (2 * kw4 words) against the int8
    weight words WW (kw4 per channel): two channels at a time, two weight words (16 MACs) per
    iteration with the loads issued back to back (into the local array `r`), then the odd
    word and the odd channel."""
    def group(rows, k: str, ind: str) -> str:  # one weight word of each row in `rows`: 4 MACs per row
        t = f"{ind}r[0] = COL[({k}) * 2]\n{ind}r[1] = COL[({k}) * 2 + 1]\n"
        t += "".join(f"{ind}r[{2 + i}] = WW[{base} + {k}]\n" for i, (_, base) in enumerate(rows))
        for i, (a, _) in enumerate(rows):
            lo_ = f'T.call_pure_extern("int32", "__sxtb16", r[{2 + i}])'
            hi_ = f'T.call_pure_extern("int32", "cococ_sxtb16_ror8", r[{2 + i}])'
            t += (f'{ind}acc[{a}] = T.call_pure_extern("int32", "__smlad", r[0], {lo_}, acc[{a}])\n'
                  f'{ind}acc[{a}] = T.call_pure_extern("int32", "__smlad", r[1], {hi_}, acc[{a}])\n')
        return t
    req = lambda a, oo: requant(f"acc[{a}]", oo, lo, 127, "int8", fast)  # noqa: E731
    text = ""
    if o >= 2:
        rows = [(0, f"o2 * {2 * kw4}"), (1, f"o2 * {2 * kw4} + {kw4}")]
        text += f"        for o2 in range({o // 2}):\n            acc[0] = b[o2 * 2]\n            acc[1] = b[o2 * 2 + 1]\n"
        if kw4 // 2:
            text += f"            for k in range({kw4 // 2}):\n"
            text += group(rows, "k * 2", " " * 16) + group(rows, "k * 2 + 1", " " * 16)
        if kw4 % 2:
            text += group(rows, str(kw4 - 1), " " * 12)
        text += f"            {yexpr('o2 * 2')} = {req(0, 'o2 * 2')}\n"
        text += f"            {yexpr('o2 * 2 + 1')} = {req(1, 'o2 * 2 + 1')}\n"
    if o % 2:
        ol = o - 1
        text += f"        acc[0] = b[{ol}]\n        for k in range({kw4}):\n"
        text += group([(0, str(ol * kw4))], "k", " " * 12)
        text += f"        {yexpr(str(ol))} = {req(0, str(ol))}\n"
    return text


def _kernel(name, src, args, doc) -> Kernel:
    return Kernel(name, _parse(src), args, origin="tvm-tir", includes=("<arm_acle.h>",),
                  meta={"doc": doc, "prelude": PRELUDE})


_ARGS = [("w", "int8", False), ("b", "int32", False), ("m", "int32", False), ("sh", "int32", False),
         ("col", "int16", True), ("y", "int8", True)]


def _source(x_shape: str, y_shape: str, o: int, k: int, kw4: int, loops: str) -> str:
    """The TVMScript both int8 kernels share: the signature (x, y shapes differ), the int32 views
    of the column and the weights, the accumulators, the zeroed column tail; then `loops`, which
    fill the q15 column per output position and run `_dot8` on it."""
    return f'''
@T.prim_func(s_tir=True)
def f(x: T.Buffer({x_shape}, "int8"), w: T.Buffer(({o * kw4 * 4},), "int8"),
      b: T.Buffer(({o},), "int32"), m: T.Buffer(({o},), "int32"), sh: T.Buffer(({o},), "int32"),
      col: T.Buffer(({kw4 * 4},), "int16"), y: T.Buffer({y_shape}, "int8")):
    T.func_attr({{"tirx.noalias": True}})
    COL = T.decl_buffer(({kw4 * 2},), "int32", data=col.data)
    WW = T.decl_buffer(({o * kw4},), "int32", data=w.data)
    acc = T.sblock_alloc_buffer((2,), "int32")
    r = T.sblock_alloc_buffer((4,), "int32")
    for p in range({k}, {kw4 * 4}):
        col[p] = T.int16(0)
{loops}'''


def conv2d_int8(name, x_shape, o: int, y_shape, attrs, relu: bool, fast: bool) -> Kernel:
    n, c, h, w = x_shape
    _, _, oh, ow = y_shape
    (kh, kw), (sh_, sw), (dh, dw), (t, l, _, _) = attrs["kernel"], attrs["stride"], attrs["dilation"], attrs["pad"]
    k = c * kh * kw
    kw4 = (k + 3) // 4
    ih, iw = f"i * {sh_} - {t} + kh * {dh}", f"j * {sw} - {l} + kw * {dw}"
    xval = f'T.Cast("int16", x[nn, c, {ih}, {iw}])'
    if any(attrs["pad"]):
        xval = f"T.if_then_else({ih} >= 0 and {ih} < {h} and {iw} >= 0 and {iw} < {w}, {xval}, T.int16(0))"
    body = _dot8(o, kw4, 0 if relu else -128, lambda oo: f"y[nn, {oo}, i, j]", fast)
    src = _source(f"({n}, {c}, {h}, {w})", f"({n}, {o}, {oh}, {ow})", o, k, kw4, f'''
    for nn, i, j in T.grid({n}, {oh}, {ow}):
        for c, kh, kw in T.grid({c}, {kh}, {kw}):
            col[c * {kh * kw} + kh * {kw} + kw] = {xval}
{body}''')
    doc = f"int8 conv2d {list(x_shape)}->{list(y_shape)} (im2col to q15 + SXTB16/SMLAD, 2 rows)"
    return _kernel(name, src, [("x", "int8", False)] + _ARGS, doc + (" +relu" if relu else ""))


def dense_int8(name, n: int, k: int, o: int, relu: bool, fast: bool) -> Kernel:
    kw4 = (k + 3) // 4
    body = _dot8(o, kw4, 0 if relu else -128, lambda oo: f"y[nn, {oo}]", fast)
    src = _source(f"({n}, {k})", f"({n}, {o})", o, k, kw4, f'''
    for nn in range({n}):
        for p in range({k}):
            col[p] = T.Cast("int16", x[nn, p])
{body}''')
    doc = f"int8 dense {k}->{o} (input widened to q15 + SXTB16/SMLAD, 2 rows)"
    return _kernel(name, src, [("x", "int8", False)] + _ARGS, doc + (" +relu" if relu else ""))


def reorder_weights(wq: np.ndarray) -> np.ndarray:
    """[o, k] integer weights -> [o, 4 * ceil(k / 4)] int8, zero-padded, each group of four
    stored [w0, w2, w1, w3] so that SXTB16 gives (w0, w1) and SXTB16 ROR 8 gives (w2, w3)."""
    o, k = wq.shape
    kp = (k + 3) // 4 * 4
    out = np.zeros((o, kp), np.int8)
    out[:, :k] = wq
    return np.ascontiguousarray(out.reshape(o, kp // 4, 4)[:, :, [0, 2, 1, 3]].reshape(o, kp))


def lower_int8(lw, layer, ins, out, params, act):
    """(kernel, args) of one int8 layer; `lw` is the lowering (kernel cache, weights, scales)."""
    from cococ.backends.mcu.lower import Tensor, _frz, fused_act
    a = layer.attrs
    x = ins[0]
    if layer.opdef.keeps_scale:
        return scale_preserving_step(lw, layer, x, out, "int8", "int8")
    w2, bq, mm, sh, fast = integer_layer(layer, params, x.scale, out.scale, 127)
    o, kk = w2.shape
    wq = reorder_weights(w2)
    wts = [lw.weight(layer, "weight_i8", wq), lw.weight(layer, "bias_q", bq), lw.weight(layer, "mult", mm),
           lw.weight(layer, "shift", sh)]
    col = Tensor(f"{out.name}_col", "int16", (wq.shape[1],))
    relu = fused_act(act) is Relu
    if layer.opdef is Conv2d:
        key = ("conv2d_int8", x.shape, o, out.shape, _frz(a), relu, fast)
        k = lw.kernel(key, lambda n: conv2d_int8(n, x.shape, o, out.shape, a, relu, fast))
    else:
        n = x.shape[0]
        k = lw.kernel(("dense_int8", n, kk, o, relu, fast), lambda nm: dense_int8(nm, n, kk, o, relu, fast))
    return k, [x] + wts + [col, out]


__all__ = ["conv2d_int8", "dense_int8", "lower_int8", "reorder_weights", "PRELUDE"]
