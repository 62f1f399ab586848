"""The one im2col of cococ's kernels, as TVMScript macros.

A conv is W[O, C*kh*kw] @ X[C*kh*kw, positions] (Scalpel §2); X's column for output position
(oy, ox) holds the input window in the OIHW weight's (channel, ky, kx) order, zero where the
window leaves the padded input. `gather` is the copy of one element (the bounds test only when
the conv pads); it serves:

  x86 (`matrix_f32`): the whole X[cols_pad, n_pad], one row per (channel, ky, kx), plain nested
      loops with the innermost along an input row (contiguous for stride 1), so LLVM vectorises
      the copy; no fused-loop div/mod, no parallel region (as a TE compute with the generic
      schedule this took 13-24 us on LeNet-5's conv2, now about 3.5);
  arm-m4 (`block`): the loop body of the fused sparse conv (layer.py): XT[q, (channel, ky, kx)]
      for a block of `count` consecutive positions, each position's reduction vector contiguous
      (the q15 kernels read two of its inputs as one SMLAD word);
  arm-m4 dense q15 / int8 convs (backends/mcu/qkernels.py, i8kernels.py): one position's
      column, from the 4-D input.

Geometry (`Geometry.of`) is plain Python; the loops read it as constants, so each kernel is
specialised to its layer's sizes.
"""
from __future__ import annotations

from typing import NamedTuple

from tvm.script import tirx as T


class Geometry(NamedTuple):
    """A conv's sizes: input channels, height, width; kernel; stride; dilation; top/left pad;
    whether it pads at all (then `gather` tests bounds); the output width."""
    c: int
    h: int
    w: int
    kh: int
    kw: int
    sh: int
    sw: int
    dh: int
    dw: int
    t: int
    l: int
    padded: bool
    ow: int

    @staticmethod
    def of(x_shape, y_shape, attrs) -> "Geometry":
        _, c, h, w = x_shape
        (kh, kw), (sh, sw), (dh, dw), (t, l, _, _) = attrs["kernel"], attrs["stride"], attrs["dilation"], attrs["pad"]
        return Geometry(c, h, w, kh, kw, sh, sw, dh, dw, t, l, any(attrs["pad"]), y_shape[3])


@T.macro
def gather(col, e, x, at, iy, ix, g, zero, cast):
    """col[e] = x[at(iy, ix)] (cast to `cast` unless None), `zero` outside the input."""
    if g.padded:
        col[e] = T.if_then_else(iy >= 0 and iy < g.h and ix >= 0 and ix < g.w,
                                T.Cast(cast, x[at(iy, ix)]) if cast is not None else x[at(iy, ix)], zero)
    else:
        col[e] = T.Cast(cast, x[at(iy, ix)]) if cast is not None else x[at(iy, ix)]


@T.macro
def block(col, x, nn, p0, count, ld, cols, g, zero):
    """col[q * ld + (ci, r, s)] for `count` positions from p0 of batch item `nn` (flat x), and
    col[q * ld + cols .. ld) zeroed so a padded group or word reads zeros."""
    for q in range(count):
        for ci, r, s in T.grid(g.c, g.kh, g.kw):
            gather(col, q * ld + ci * (g.kh * g.kw) + r * g.kw + s, x,
                   lambda iy, ix: nn * (g.c * g.h * g.w) + ci * (g.h * g.w) + iy * g.w + ix,
                   (p0 + q) // g.ow * g.sh - g.t + r * g.dh, (p0 + q) % g.ow * g.sw - g.l + s * g.dw, g, zero, None)
        if ld > cols:
            for e in T.unroll(ld - cols):
                col[q * ld + cols + e] = zero


def matrix_f32(x_shape, y_shape, attrs, cols: int, cp: int, n_pad: int):
    """PrimFunc x (flat input, batch 1) -> X[cp * n_pad]: X[(ci, r, s) * n_pad + position],
    zero in the position padding (n_pad > oh*ow) and in the rows past `cols`."""
    g = Geometry.of(x_shape, y_shape, attrs)
    oh, ow = y_shape[2], y_shape[3]
    zero = T.float32(0)

    # (the explicit root block: Relax's RewriteDataflowReshape inspects one-input call_tir callees
    # and requires block-form TIR)
    @T.prim_func(s_tir=True)
    def f(x: T.Buffer((g.c * g.h * g.w,), "float32"), X: T.Buffer((cp * n_pad,), "float32")):
        T.func_attr({"tirx.noalias": True})
        with T.sblock("root"):
            for ci, r, s, i in T.grid(g.c, g.kh, g.kw, oh):
                for j in range(ow):
                    gather(X, (ci * (g.kh * g.kw) + r * g.kw + s) * n_pad + i * ow + j, x,
                           lambda iy, ix: ci * (g.h * g.w) + iy * g.w + ix,
                           i * g.sh - g.t + r * g.dh, j * g.sw - g.l + s * g.dw, g, zero, None)
            if n_pad > oh * ow:
                for ci, r, s, q in T.grid(g.c, g.kh, g.kw, n_pad - oh * ow):
                    X[(ci * (g.kh * g.kw) + r * g.kw + s) * n_pad + oh * ow + q] = zero
            if cp > cols:
                for e in range((cp - cols) * n_pad):
                    X[cols * n_pad + e] = zero
    return f
