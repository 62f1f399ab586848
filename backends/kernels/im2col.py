"""The one im2col of cococ's sparse conv kernels, as TVMScript.

A conv is W[O, C*kh*kw] @ X[C*kh*kw, positions] (Scalpel §2); X's column for output position
(oy, ox) holds the input window in the OIHW weight's (channel, ky, kx) order, zero where the
window leaves the padded input. Two layouts use it:

  x86 (`matrix_f32`): the whole X[cols_pad, n_pad], one row per (channel, ky, kx), plain nested
      loops with the innermost along an input row (contiguous for stride 1), so LLVM vectorises
      the copy; no fused-loop div/mod, no parallel region (as a TE compute with the generic
      schedule this took 13-24 us on LeNet-5's conv2, now about 3.5);
  arm-m4 (`block`): the loop body of the fused sparse conv (backends/mcu/sparse_kernels.py):
      XT[q, (channel, ky, kx)] for a block of `count` consecutive positions, each position's
      reduction vector contiguous (the q15 kernels read two of its inputs as one SMLAD word).
"""
from __future__ import annotations

import tvm


def _geometry(x_shape, y_shape, attrs):
    _, c, h, w = x_shape
    (kh, kw), (sh, sw), (dh, dw), (t, l, _, _) = attrs["kernel"], attrs["stride"], attrs["dilation"], attrs["pad"]
    return c, h, w, kh, kw, sh, sw, dh, dw, t, l


def window(x_shape, y_shape, attrs, oy: str, ox: str, zero: str, base: str = "") -> str:
    """TVMScript of the input element under kernel tap (ci, r, s) of output position (oy, ox),
    `zero` outside the input; `base` offsets the batch item."""
    c, h, w, kh, kw, sh, sw, dh, dw, t, l = _geometry(x_shape, y_shape, attrs)
    iy, ix = f"{oy} * {sh} - {t} + r * {dh}", f"{ox} * {sw} - {l} + s * {dw}"
    xv = f"x[{base}ci * {h * w} + ({iy}) * {w} + {ix}]"
    if any(attrs["pad"]):
        xv = f"T.if_then_else({iy} >= 0 and {iy} < {h} and {ix} >= 0 and {ix} < {w}, {xv}, {zero})"
    return xv


def block(x_shape, y_shape, attrs, ld: int, cols: int, count, p0: str, zero: str) -> str:
    """TVMScript filling col[q * ld + (ci, r, s)] for `count` positions from p0 of batch item
    `nn`, and zeroing col[q * ld + cols .. ld) so a padded group or word reads zeros."""
    c, h, w, kh, kw = _geometry(x_shape, y_shape, attrs)[:5]
    ow = y_shape[3]
    p = f"({p0} + q)"
    xv = window(x_shape, y_shape, attrs, f"({p} // {ow})", f"({p} % {ow})", zero, f"nn * {c * h * w} + ")
    src = (f"            for q in range({count}):\n"
           f"                for ci, r, s in T.grid({c}, {kh}, {kw}):\n"
           f"                    col[q * {ld} + ci * {kh * kw} + r * {kw} + s] = {xv}\n")
    for e in range(cols, ld):
        src += f"                col[q * {ld} + {e}] = {zero}\n"
    return src


def matrix_f32(x_shape, y_shape, attrs, cols: int, cp: int, n_pad: int):
    """PrimFunc x (flat input, batch 1) -> X[cp * n_pad]: X[(ci, r, s) * n_pad + position],
    zero in the position padding (n_pad > oh*ow) and in the rows past `cols`."""
    c, h, w, kh, kw = _geometry(x_shape, y_shape, attrs)[:5]
    _, _, oh, ow = y_shape
    row = f"(ci * {kh * kw} + r * {kw} + s) * {n_pad}"
    src = f'''
@T.prim_func(s_tir=True)
def f(x: T.Buffer(({c * h * w},), "float32"), X: T.Buffer(({cp * n_pad},), "float32")):
    T.func_attr({{"tirx.noalias": True}})
    with T.sblock("root"):
        for ci, r, s, i in T.grid({c}, {kh}, {kw}, {oh}):
            for j in range({ow}):
                X[{row} + i * {ow} + j] = {window(x_shape, y_shape, attrs, "i", "j", "T.float32(0)")}
'''
    # (the explicit root block: Relax's RewriteDataflowReshape inspects one-input call_tir callees
    # and requires block-form TIR)
    if n_pad > oh * ow:
        src += f"        for ci, r, s, q in T.grid({c}, {kh}, {kw}, {n_pad - oh * ow}):\n"
        src += f"            X[{row} + {oh * ow} + q] = T.float32(0)\n"
    if cp > cols:
        src += f"        for e in range({(cp - cols) * n_pad}):\n            X[{cols * n_pad} + e] = T.float32(0)\n"
    return tvm.script.from_source(src)
