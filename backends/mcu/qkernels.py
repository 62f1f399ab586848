"""q15 kernels: conv2d and dense whose inner loop is SMLAD, plus quantize/dequantize.

TVM 0.27 has no Cortex-M DSP schedules any more, so the SMLAD loops are cococ's own TIR
(written as TVMScript below) and go through TVM's C codegen like every other kernel. The
int16 activations and weights are read as int32 words holding two q15 lanes, and each
`__smlad(x2, w2, acc)` (ACLE, arm_acle.h; one cycle on the M4) does two multiply-accumulates.
As CMSIS-NN's q15 kernels do, two output channels are computed together so one column load
feeds two SMLADs: 4 MACs per 3 loads + 2 SMLADs. A conv first gathers the receptive field of
one output pixel into a q15 column (im2col, zero-padded to an even length; the column lives
in the arena as a scratch tensor), then runs the same dot-product loop as dense.

Numerics: symmetric, zero point 0. acc (int32) = bias_q + sum x_q * w_q, with bias_q at scale
s_in * s_w[o]; the output is round(acc * M[o] / 2^sh[o]) saturated to int16 (to 0..32767 when a
ReLU is fused), where M[o] / 2^sh[o] ~ s_in * s_w[o] / s_out with M < 2^31.
"""
from __future__ import annotations

import math

import numpy as np

from cococ.backends.mcu.codegen import Kernel

_REQ = ('T.Cast("int16", T.max(T.min(T.shift_right(T.Cast("int64", {acc}) * T.Cast("int64", m[{o}]) '
        '+ T.shift_left(T.int64(1), T.Cast("int64", sh[{o}] - 1)), T.Cast("int64", sh[{o}])), '
        'T.int64(32767)), T.int64({lo})))')

_DOT = '''
        for o2 in range({O2}):
            acc[0] = b[o2 * 2]
            acc[1] = b[o2 * 2 + 1]
            for k in range({KP2}):
                acc[0] = T.call_pure_extern("int32", "__smlad", {X}[{XOFF}k], WW[o2 * {KP} + k], acc[0])
                acc[1] = T.call_pure_extern("int32", "__smlad", {X}[{XOFF}k], WW[o2 * {KP} + {KP2} + k], acc[1])
            {Y0} = {REQ0}
            {Y1} = {REQ1}
'''
_TAIL = '''
        acc[0] = b[{OL}]
        for k in range({KP2}):
            acc[0] = T.call_pure_extern("int32", "__smlad", {X}[{XOFF}k], WW[{OL} * {KP2} + k], acc[0])
        {YL} = {REQL}
'''


def _dot(x: str, xoff: str, o: int, kp2: int, lo: int, yexpr) -> str:
    """The two-rows-at-a-time SMLAD loop over `o` output channels (yexpr(o) = output element)."""
    req = lambda o_: _REQ.format(acc="acc[0]" if not o_.endswith("+ 1") else "acc[1]", o=o_, lo=lo)  # noqa: E731
    text = ""
    if o >= 2:
        text += _DOT.format(O2=o // 2, KP2=kp2, KP=2 * kp2, X=x, XOFF=xoff, Y0=yexpr("o2 * 2"),
                            Y1=yexpr("o2 * 2 + 1"), REQ0=req("o2 * 2"), REQ1=req("o2 * 2 + 1"))
    if o % 2:
        text += _TAIL.format(OL=o - 1, KP2=kp2, X=x, XOFF=xoff, YL=yexpr(str(o - 1)),
                             REQL=_REQ.format(acc="acc[0]", o=o - 1, lo=lo))
    return text


def _parse(src: str):
    import tvm
    return tvm.script.from_source(src)


def conv2d_q15(name, x_shape, o: int, y_shape, attrs, relu: bool) -> Kernel:
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
    body = _dot("COL", "", o, kp2, 0 if relu else -32768, lambda oo: f"y[nn, {oo}, i, j]")
    src = f'''
@T.prim_func(s_tir=True)
def f(x: T.Buffer(({n}, {c}, {h}, {w}), "int16"), w: T.Buffer(({o * kp2 * 2},), "int16"),
      b: T.Buffer(({o},), "int32"), m: T.Buffer(({o},), "int32"), sh: T.Buffer(({o},), "int32"),
      col: T.Buffer(({kp2 * 2},), "int16"), y: T.Buffer(({n}, {o}, {oh}, {ow}), "int16")):
    T.func_attr({{"tirx.noalias": True}})
    COL = T.decl_buffer(({kp2},), "int32", data=col.data)
    WW = T.decl_buffer(({o * kp2},), "int32", data=w.data)
    acc = T.sblock_alloc_buffer((2,), "int32")
    for nn, i, j in T.grid({n}, {oh}, {ow}):
        for c, kh, kw in T.grid({c}, {kh}, {kw}):
            col[c * {kh * kw} + kh * {kw} + kw] = {xval}{pad_tail}
{body}'''
    args = [("x", "int16", False), ("w", "int16", False), ("b", "int32", False), ("m", "int32", False),
            ("sh", "int32", False), ("col", "int16", True), ("y", "int16", True)]
    return Kernel(name, _parse(src), args, origin="tvm-tir", includes=("<arm_acle.h>",),
                  meta={"doc": f"q15 conv2d {list(x_shape)}->{list(y_shape)} (im2col + SMLAD, 2 rows)"
                        + (" +relu" if relu else "")})


def dense_q15(name, n: int, k: int, o: int, relu: bool) -> Kernel:
    kp2 = (k + 1) // 2
    body = _dot("XX", f"nn * {kp2} + ", o, kp2, 0 if relu else -32768, lambda oo: f"y[nn, {oo}]")
    src = f'''
@T.prim_func(s_tir=True)
def f(x: T.Buffer(({n * kp2 * 2},), "int16"), w: T.Buffer(({o * kp2 * 2},), "int16"),
      b: T.Buffer(({o},), "int32"), m: T.Buffer(({o},), "int32"), sh: T.Buffer(({o},), "int32"),
      y: T.Buffer(({n}, {o}), "int16")):
    T.func_attr({{"tirx.noalias": True}})
    XX = T.decl_buffer(({n * kp2},), "int32", data=x.data)
    WW = T.decl_buffer(({o * kp2},), "int32", data=w.data)
    acc = T.sblock_alloc_buffer((2,), "int32")
    for nn in range({n}):
{body}'''
    args = [("x", "int16", False), ("w", "int16", False), ("b", "int32", False), ("m", "int32", False),
            ("sh", "int32", False), ("y", "int16", True)]
    return Kernel(name, _parse(src), args, origin="tvm-tir", includes=("<arm_acle.h>",),
                  meta={"doc": f"q15 dense {k}->{o} (SMLAD, 2 rows)" + (" +relu" if relu else "")})


def quantize(name, size: int, scale: float) -> Kernel:
    import tvm
    from tvm import te
    x = te.placeholder((size,), name="x")
    inv = tvm.tirx.const(1.0 / scale, "float32")
    y = te.compute((size,), lambda i: te.max(te.min(te.round(x[i] * inv), tvm.tirx.const(32767.0, "float32")),
                                             tvm.tirx.const(-32768.0, "float32")).astype("int16"), name="y")
    return Kernel(name, te.create_prim_func([x, y]), [("x", "float32", False), ("y", "int16", True)],
                  meta={"doc": f"f32 -> q15, scale {scale:.6g}"})


def dequantize(name, size: int, scale: float) -> Kernel:
    import tvm
    from tvm import te
    x = te.placeholder((size,), name="x", dtype="int16")
    y = te.compute((size,), lambda i: x[i].astype("float32") * tvm.tirx.const(scale, "float32"), name="y")
    return Kernel(name, te.create_prim_func([x, y]), [("x", "int16", False), ("y", "float32", True)],
                  meta={"doc": f"q15 -> f32, scale {scale:.6g}"})


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


def weight_scales(p, o: int) -> np.ndarray:
    """The quantize pass's per-channel (or per-tensor) weight scales as an [o] array."""
    s = p.attrs.get("scale")
    if s is None:
        w = p.dense()
        s = float(np.abs(w).max() / 32767.0) or 1.0
    return np.broadcast_to(np.asarray(s, np.float64).reshape(-1), (o,)).copy()


def lower_q15(lw, layer, ins, out, params, act):
    """(kernel, args) of one q15 layer; `lw` is the lowering (kernel cache, weights, scales)."""
    from cococ.backends.mcu import kernels as K
    from cococ.backends.mcu.lower import Tensor, Weight, _frz
    op, a = layer.op, layer.attrs
    x = ins[0]
    if op in ("max_pool", "global_max_pool"):
        k = lw.kernel((op, "q15", x.shape, out.shape, _frz(a)),
                      lambda n: K.pool2d(n, op, x.shape, out.shape, a, dtype="int16"))
        return k, [x, out]
    if op == "relu":
        k = lw.kernel(("relu", "q15", x.size), lambda n: K.elementwise(n, "relu", x.size, {}, dtype="int16"))
        return k, [x, out]
    w = params["weight"].astype(np.float64)
    o = w.shape[0]
    w2 = w.reshape(o, -1)
    kk = w2.shape[1]
    kp = kk + (kk % 2)
    s_w = weight_scales(layer.params["weight"], o)
    wq = np.zeros((o, kp), np.int16)
    wq[:, :kk] = np.clip(np.round(w2 / s_w[:, None]), -32768, 32767)
    bias = params.get("bias", np.zeros(o)).astype(np.float64)
    bq = np.clip(np.round(bias / (x.scale * s_w)), -2 ** 31, 2 ** 31 - 1).astype(np.int32)
    mm, sh = requant_params(x.scale * s_w / out.scale)
    wts = [lw.weight(layer, "weight_q15", wq), lw.weight(layer, "bias_q", bq), lw.weight(layer, "mult", mm),
           lw.weight(layer, "shift", sh)]
    relu = act == "relu"
    if op == "conv2d":
        key = ("conv2d_q15", x.shape, o, out.shape, _frz(a), relu)
        k = lw.kernel(key, lambda n: conv2d_q15(n, x.shape, o, out.shape, a, relu))
        col = Tensor(f"{out.name}_col", "int16", (kp,))
        return k, [x] + wts + [col, out]
    n = x.shape[0]
    k = lw.kernel(("dense_q15", n, kk, o, relu), lambda nm: dense_q15(nm, n, kk, o, relu))
    if n > 1 and kk % 2:
        raise layer.error("q15 dense with batch > 1 needs an even number of input features")
    return k, [x] + wts + [out]


__all__ = ["conv2d_q15", "dense_q15", "quantize", "dequantize", "lower_q15", "requant_params"]
