"""q15 kernels: conv2d and dense whose inner loop is SMLAD, plus quantize/dequantize.

TVM 0.27 has no Cortex-M DSP schedules any more, so the SMLAD loops are cococ's own TIR
(written as TVMScript below) and go through TVM's C codegen like every other kernel. The
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
form it replaces). int8 (i8kernels.py) shares the requantisation and the weight rounding.
"""
from __future__ import annotations

import math

import numpy as np

from cococ.backends.mcu.codegen import Kernel
from cococ.ir.ops.activation import Relu
from cococ.ir.ops.nn import Conv2d


def requant(acc: str, o: str, lo: int, hi: int, dtype: str, fast: bool) -> str:
    """TVMScript of round(acc * m[o] / 2^shift) saturated to [lo, hi] and cast to `dtype`.

    fast (every channel's shift >= 33, i.e. M / 2^shift < 1/4, the usual case): `sh` holds
    shift - 32 and the code takes the high word of the 64-bit product (one SMULL, the CMSIS
    `arm_nn_requantize` shape) and then rounds with a 32-bit shift; floor(floor(v / 2^32) / 2^s)
    = floor(v / 2^(32+s)), so this is bit-identical to the 64-bit form. Otherwise the exact
    64-bit multiply-round-shift with a variable 64-bit shift (about 25 instructions per output)."""
    if fast:
        v = (f'T.shift_right(T.Cast("int32", T.shift_right(T.Cast("int64", {acc}) * T.Cast("int64", m[{o}]), '
             f'T.int64(32))) + T.shift_left(1, sh[{o}] - 1), sh[{o}])')
        return f'T.Cast("{dtype}", T.max(T.min({v}, {hi}), {lo}))'
    v = (f'T.shift_right(T.Cast("int64", {acc}) * T.Cast("int64", m[{o}]) + T.shift_left(T.int64(1), '
         f'T.Cast("int64", sh[{o}] - 1)), T.Cast("int64", sh[{o}]))')
    return f'T.Cast("{dtype}", T.max(T.min({v}, T.int64({hi})), T.int64({lo})))'


def _dot(x: str, xoff: str, o: int, kp2: int, lo: int, yexpr, fast: bool) -> str:
    """The SMLAD loop over `o` output channels (yexpr(o) = output element): two rows at a time,
    so each activation word is loaded once for two SMLADs, and two words per iteration
    (8 MACs: 2 activation loads, 4 weight loads, 4 SMLADs), as CMSIS-NN's mat-mult kernel.
    The six loads go to a local array `r` first, then the SMLADs: GCC then issues the six loads back to
    back, which the M4 pipelines (one cycle each after the first)."""
    sm = lambda a, xv, wv: f'acc[{a}] = T.call_pure_extern("int32", "__smlad", {xv}, {wv}, acc[{a}])'  # noqa: E731
    req = lambda a, oo: requant(f"acc[{a}]", oo, lo, 32767, "int16", fast)  # noqa: E731
    text = ""
    if o >= 2:
        r0, r1 = f"o2 * {2 * kp2}", f"o2 * {2 * kp2} + {kp2}"
        text += f"        for o2 in range({o // 2}):\n            acc[0] = b[o2 * 2]\n            acc[1] = b[o2 * 2 + 1]\n"
        if kp2 // 2:
            i = " " * 16
            text += f"            for k in range({kp2 // 2}):\n"
            text += (f"{i}r[0] = {x}[{xoff}k * 2]\n{i}r[1] = {x}[{xoff}k * 2 + 1]\n"
                     f"{i}r[2] = WW[{r0} + k * 2]\n{i}r[3] = WW[{r1} + k * 2]\n"
                     f"{i}r[4] = WW[{r0} + k * 2 + 1]\n{i}r[5] = WW[{r1} + k * 2 + 1]\n"
                     f"{i}{sm(0, 'r[0]', 'r[2]')}\n{i}{sm(1, 'r[0]', 'r[3]')}\n{i}{sm(0, 'r[1]', 'r[4]')}\n{i}{sm(1, 'r[1]', 'r[5]')}\n")
        if kp2 % 2:
            t, i = kp2 - 1, " " * 12
            text += (f"{i}{sm(0, f'{x}[{xoff}{t}]', f'WW[{r0} + {t}]')}\n"
                     f"{i}{sm(1, f'{x}[{xoff}{t}]', f'WW[{r1} + {t}]')}\n")
        text += f"            {yexpr('o2 * 2')} = {req(0, 'o2 * 2')}\n"
        text += f"            {yexpr('o2 * 2 + 1')} = {req(1, 'o2 * 2 + 1')}\n"
    if o % 2:
        ol = o - 1
        text += f"        acc[0] = b[{ol}]\n        for k in range({kp2}):\n"
        text += f"            {sm(0, f'{x}[{xoff}k]', f'WW[{ol * kp2} + k]')}\n"
        text += f"        {yexpr(str(ol))} = {req(0, str(ol))}\n"
    return text


def _parse(src: str):
    import tvm
    return tvm.script.from_source(src)


def conv2d_q15(name, x_shape, o: int, y_shape, attrs, relu: bool, fast: bool = False) -> Kernel:
    n, c, h, w = x_shape
    _, _, oh, ow = y_shape
    (kh, kw), (sh_, sw), (dh, dw), (t, l, _, _) = attrs["kernel"], attrs["stride"], attrs["dilation"], attrs["pad"]
    k = c * kh * kw
    kp2 = (k + 1) // 2
    ih, iw = f"i * {sh_} - {t} + kh * {dh}", f"j * {sw} - {l} + kw * {dw}"
    if any(attrs["pad"]):
        xval = (f"T.if_then_else({ih} >= 0 and {ih} < {h} and {iw} >= 0 and {iw} < {w}, "
                f"x[nn, c, {ih}, {iw}], T.int16(0))")
    else:
        xval = f"x[nn, c, {ih}, {iw}]"
    pad_tail = f"\n        col[{k}] = T.int16(0)" if k % 2 else ""
    body = _dot("COL", "", o, kp2, 0 if relu else -32768, lambda oo: f"y[nn, {oo}, i, j]", fast)
    src = f'''
@T.prim_func(s_tir=True)
def f(x: T.Buffer(({n}, {c}, {h}, {w}), "int16"), w: T.Buffer(({o * kp2 * 2},), "int16"),
      b: T.Buffer(({o},), "int32"), m: T.Buffer(({o},), "int32"), sh: T.Buffer(({o},), "int32"),
      col: T.Buffer(({kp2 * 2},), "int16"), y: T.Buffer(({n}, {o}, {oh}, {ow}), "int16")):
    T.func_attr({{"tirx.noalias": True}})
    COL = T.decl_buffer(({kp2},), "int32", data=col.data)
    WW = T.decl_buffer(({o * kp2},), "int32", data=w.data)
    acc = T.sblock_alloc_buffer((2,), "int32")
    r = T.sblock_alloc_buffer((6,), "int32")
    for nn, i, j in T.grid({n}, {oh}, {ow}):
        for c, kh, kw in T.grid({c}, {kh}, {kw}):
            col[c * {kh * kw} + kh * {kw} + kw] = {xval}{pad_tail}
{body}'''
    args = [("x", "int16", False), ("w", "int16", False), ("b", "int32", False), ("m", "int32", False),
            ("sh", "int32", False), ("col", "int16", True), ("y", "int16", True)]
    return Kernel(name, _parse(src), args, origin="tvm-tir", includes=("<arm_acle.h>",),
                  meta={"doc": f"q15 conv2d {list(x_shape)}->{list(y_shape)} (im2col + SMLAD, 2 rows)"
                        + (" +relu" if relu else "")})


def dense_q15(name, n: int, k: int, o: int, relu: bool, fast: bool = False) -> Kernel:
    kp2 = (k + 1) // 2
    body = _dot("XX", f"nn * {kp2} + ", o, kp2, 0 if relu else -32768, lambda oo: f"y[nn, {oo}]", fast)
    src = f'''
@T.prim_func(s_tir=True)
def f(x: T.Buffer(({n * kp2 * 2},), "int16"), w: T.Buffer(({o * kp2 * 2},), "int16"),
      b: T.Buffer(({o},), "int32"), m: T.Buffer(({o},), "int32"), sh: T.Buffer(({o},), "int32"),
      y: T.Buffer(({n}, {o}), "int16")):
    T.func_attr({{"tirx.noalias": True}})
    XX = T.decl_buffer(({n * kp2},), "int32", data=x.data)
    WW = T.decl_buffer(({o * kp2},), "int32", data=w.data)
    acc = T.sblock_alloc_buffer((2,), "int32")
    r = T.sblock_alloc_buffer((6,), "int32")
    for nn in range({n}):
{body}'''
    args = [("x", "int16", False), ("w", "int16", False), ("b", "int32", False), ("m", "int32", False),
            ("sh", "int32", False), ("y", "int16", True)]
    return Kernel(name, _parse(src), args, origin="tvm-tir", includes=("<arm_acle.h>",),
                  meta={"doc": f"q15 dense {k}->{o} (SMLAD, 2 rows)" + (" +relu" if relu else "")})


LIMITS = {"int16": (-32768, 32767), "int8": (-128, 127)}


def quantize(name, size: int, scale: float, dtype: str = "int16") -> Kernel:
    import tvm
    from tvm import te
    lo, hi = LIMITS[dtype]
    x = te.placeholder((size,), name="x")
    inv = tvm.tirx.const(1.0 / scale, "float32")
    y = te.compute((size,), lambda i: te.max(te.min(te.round(x[i] * inv), tvm.tirx.const(float(hi), "float32")),
                                             tvm.tirx.const(float(lo), "float32")).astype(dtype), name="y")
    return Kernel(name, te.create_prim_func([x, y]), [("x", "float32", False), ("y", dtype, True)],
                  meta={"doc": f"f32 -> {dtype}, scale {scale:.6g}"})


def dequantize(name, size: int, scale: float, dtype: str = "int16") -> Kernel:
    import tvm
    from tvm import te
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
    from cococ.backends.mcu import kernels as K
    from cococ.backends.mcu.lower import _frz, describe, m4_shapes
    op, a = layer.op, layer.attrs
    shapes = m4_shapes(layer, [x.shape])
    key = (op, quant, x.size) if layer.opdef.elementwise else (op, quant, x.shape, out.shape, _frz(a))
    doc = describe(layer, shapes, out.shape)
    k = lw.kernel(key, lambda n: K.op_kernel(n, layer, shapes, {}, dtype=dtype, doc=doc))
    return k, [x, out]


def lower_q15(lw, layer, ins, out, params, act):
    """(kernel, args) of one q15 layer; `lw` is the lowering (kernel cache, weights, scales)."""
    from cococ.backends.mcu.lower import Tensor, _frz, fused_act
    a = layer.attrs
    x = ins[0]
    if layer.opdef.keeps_scale:
        return scale_preserving_step(lw, layer, x, out, "q15", "int16")
    w2, bq, mm, sh, fast = integer_layer(layer, params, x.scale, out.scale, 32767)
    o, kk = w2.shape
    kp = kk + (kk % 2)
    wq = np.zeros((o, kp), np.int16)
    wq[:, :kk] = w2
    wts = [lw.weight(layer, "weight_q15", wq), lw.weight(layer, "bias_q", bq), lw.weight(layer, "mult", mm),
           lw.weight(layer, "shift", sh)]
    relu = fused_act(act) is Relu
    if layer.opdef is Conv2d:
        key = ("conv2d_q15", x.shape, o, out.shape, _frz(a), relu, fast)
        k = lw.kernel(key, lambda n: conv2d_q15(n, x.shape, o, out.shape, a, relu, fast))
        col = Tensor(f"{out.name}_col", "int16", (kp,))
        return k, [x] + wts + [col, out]
    n = x.shape[0]
    k = lw.kernel(("dense_q15", n, kk, o, relu, fast), lambda nm: dense_q15(nm, n, kk, o, relu, fast))
    if n > 1 and kk % 2:
        raise layer.error("q15 dense with batch > 1 needs an even number of input features")
    return k, [x] + wts + [out]


__all__ = ["conv2d_q15", "dense_q15", "quantize", "dequantize", "lower_q15", "requant_params", "requant",
           "integer_layer"]
