"""The arm-m4 executor's per-layer kernel choice for compressed (csr / simd_group) weights.

Called by lower.py for a conv2d/dense layer whose weight is not dense. A dense (FC) layer at
batch 1 gets the sparse matrix-vector kernel of its format, a conv (groups 1, any batch) the
sparse conv kernel: im2col of four output positions at a time into an arena scratch tensor,
then the matrix-matrix loop of backends/kernels/mm.py (each stored group feeds four
positions) with the epilogue fused (sparse_kernels.py). The format's arrays (A', IA', JA') are
const weights in flash — so the image shrinks with the weight — and the kernel runs *if* it is
faster than the layer's dense kernel. "Faster" is measured, not assumed: both kernels of this
very layer (its sizes, its sparsity pattern, its epilogue) are compiled into one small image
and run once in the emulator of backends/mcu, and the cycle counts compared. Without
arm-none-eabi-gcc there is nothing to run, and the measured break-even tables of
benchmarks/sparse_breakeven*.py decide (backends/kernels/choice.py; matrix-matrix for conv).
A layer kept dense gets a warning naming it (Scalpel's rule: never ship a slower "speedup").

int8: the stored entries' int8 values of the dense int8 path's rounded weight, its bias and
requantisation, sparse_kernels.fc_int8 / conv_int8 (csr, simd_group width 2 or 4); the output
equals the dense int8 step's bit for bit. Without the emulator an int8 FC layer reads the int8
table, an int8 conv the int8 conv table (the shape nearest its output channels).

Not sparse (dense kernel, with the reason recorded; choice.dense_reason): an FC layer at
batch > 1 (those kernels are matrix-vector), q15 simd_group of width != 2 (the SMLAD kernels
read pairs), int8 simd_group of width other than 2 or 4, and a grouped conv.
"""
from __future__ import annotations

import numpy as np

from cococ.backends.kernels.choice import (Choice, crossing, dense_reason, estimate, int8_width,
                                           keep_dense_message, kernel_sparsity, not_compared, table)
from cococ.backends.kernels.layer import PB
from cococ.backends.kernels.layout import TVM_DTYPE, filled
from cococ.backends.mcu import sparse_kernels as S
from cococ.backends.mcu.codegen import Kernel
from cococ.backends.mcu.emulate import available as m4_available, emulate
from cococ.backends.mcu.i8kernels import lower_int8
from cococ.backends.mcu.lower import Tensor  # lower.py imports this module lazily
from cococ.backends.mcu.qkernels import integer_layer, lower_q15
from cococ.ir.formats import matrix_shape
from cococ.ir.ops.activation import Relu

TARGET = "arm-m4"


def lower_sparse(lw, layer, ins, out, act):
    """(kernel, args, format) for a layer whose sparse kernel runs, or None (dense kernel);
    `act` is the fused activation's op class or None; the choice and any warning go to
    lw.prog.choices / lw.prog.warnings."""
    p = layer.params["weight"]
    x = ins[0]
    reason = dense_reason(layer, TARGET, lw.quant)
    if reason:
        return _record(lw, not_compared(layer, reason), None)
    c = Choice(layer.name, p.format, "dense", kernel_sparsity(p), None, "not compared")
    build, args = _sparse_step(lw, layer, x, out, act)
    c = _compare(lw, layer, ins, out, act, build, args, c)
    if c.kernel == "dense":
        return _record(lw, c, None)
    # the kernel is specialised to sizes, not to the pattern (the arrays are arguments)
    key = ("sparse_" + layer.op, p.format, lw.quant, matrix_shape(p.shape), p.arrays["indices"].size,
           str(p.arrays["indices"].dtype), p.attrs.get("width"), "bias" in layer.params, act,
           tuple(x.shape), tuple(out.shape), repr(sorted(layer.attrs.items())))
    k = lw.kernel(key, build)
    return _record(lw, c, (k, args, p.format))


def _record(lw, c: Choice, result):
    lw.prog.choices.append(c.as_dict())
    if c.reason:
        lw.prog.warnings.append(c.reason)
    return result


# ---- the sparse step (FC, conv) -----------------------------------------------------------------------

def _arrays(lw, layer, p, values: np.ndarray) -> list:
    """values, IA', JA' as flash weights; a q15 simd_group's JA' halved (word index of the pair:
    the SMLAD kernels then need no shift per group)."""
    idx = p.arrays["indices"]
    if lw.quant and p.format == "simd_group":
        idx = idx >> 1
    return [lw.weight(layer, "values", values), lw.weight(layer, "indptr", p.arrays["indptr"]),
            lw.weight(layer, "indices", filled(idx))]


def _fmt(p):
    """(format, group width, stored count, TVM index dtype) of a compressed weight."""
    a = p.arrays
    width = int(p.attrs.get("width", 1)) if p.format == "simd_group" else 1
    return p.format, width, a["indices"].size, TVM_DTYPE[a["indices"].dtype]


def _f32_values(p, width: int) -> np.ndarray:
    vals = p.arrays["values"]
    return vals.astype(np.float32) if vals.size else np.zeros(width, np.float32)


def _fixed_layer(lw, layer, x, out, qmax: int, dtype):
    """The dense q15 (int8) path's integer weights, bias and requantisation
    (qkernels.integer_layer), with the stored entries' values picked out of the rounded weight
    as `dtype`: (values, weight args after the arrays, fast)."""
    p = layer.params["weight"]
    rows, cols = matrix_shape(p.shape)
    a = p.arrays
    width = _fmt(p)[1]
    dense = {k: q.dense() for k, q in layer.params.items()}
    wq, bq, mm, sh, fast = integer_layer(layer, dense, x.scale, out.scale, qmax)
    wq = np.pad(wq, ((0, 0), (0, -cols % width)))
    row_of = np.repeat(np.arange(rows), np.diff(a["indptr"].astype(np.int64)))
    cols_of = a["indices"].astype(np.int64)[:, None] + np.arange(width)[None, :]
    vq = wq[row_of[:, None], cols_of].reshape(-1).astype(dtype)
    if not vq.size:
        vq = np.zeros(width, dtype)
    rest = [lw.weight(layer, "bias_q", bq), lw.weight(layer, "mult", mm), lw.weight(layer, "shift", sh)]
    return vq, rest, fast


def _sparse_step(lw, layer, x, out, act):
    """(kernel builder name -> Kernel, args) of the layer's sparse step: the FC kernel, or for a
    conv one kernel doing im2col of PB positions into a scratch tensor of the arena (`<out>_col`,
    live during this step only, like the dense q15 conv's column), the sparse matrix-matrix loop
    and the dense path's epilogue (sparse_kernels.epilogue)."""
    p = layer.params["weight"]
    rows, cols = matrix_shape(p.shape)
    fmt, width, stored, index = _fmt(p)
    bias = "bias" in layer.params
    if lw.quant == "int8":
        vq, rest, fast = _fixed_layer(lw, layer, x, out, 127, np.int8)
        args = [x] + _arrays(lw, layer, p, S.values_int8(fmt, width, vq)) + rest
        relu = act is Relu
        if layer.op == "conv2d":
            a, xs, ys = layer.attrs, tuple(x.shape), tuple(out.shape)
            col = Tensor(f"{out.name}_col", "int16", (PB * S.int8_ld(cols),))
            return (lambda n: S.conv_int8(n, fmt, xs, rows, ys, a, cols, stored, width, index, relu, fast)), \
                args + [col, out]
        col = [Tensor(f"{out.name}_col", "int16", (S.int8_col_len(fmt, cols),))] if fmt != "csr" else []
        return (lambda n: S.fc_int8(n, fmt, rows, cols, stored, width, index, relu, fast)), args + col + [out]
    if lw.quant is None:
        args = [x] + _arrays(lw, layer, p, _f32_values(p, width))
        if bias:
            args.append(lw.weight(layer, "bias", layer.params["bias"].dense().astype(np.float32)))
        epi, ld = S.epilogue(None, bias, act is Relu), -(-cols // width) * width
    else:
        vq, rest, fast = _fixed_layer(lw, layer, x, out, 32767, np.int16)
        args = [x] + _arrays(lw, layer, p, vq) + rest
        epi, ld = S.epilogue(lw.quant, bias, act is Relu, fast), cols + cols % 2
    if layer.op != "conv2d":
        return (lambda n: S.fc(n, fmt, rows, cols, stored, width, index, epi)), args + [out]
    a, xs, ys = layer.attrs, tuple(x.shape), tuple(out.shape)
    col = Tensor(f"{out.name}_col", x.dtype, (PB * ld,))
    return (lambda n: S.conv(n, fmt, xs, rows, ys, a, cols, stored, width, index, epi)), args + [col, out]


# ---- dense or sparse? -----------------------------------------------------------------------------

class _Scratch:
    """Stands in for the lowering while building the comparison's dense kernel: same weights,
    but kernels are not added to the model."""

    def __init__(self, lw):
        self.lw, self.quant = lw, lw.quant

    def kernel(self, key, build) -> Kernel:
        return build(f"k0_{key[0]}")

    def weight(self, layer, name, data):
        return self.lw.weight(layer, name, data)


def _dense_step(lw, layer, ins, out, act):
    params = {k: q.dense() for k, q in layer.params.items()}
    if lw.quant == "int8":
        return lower_int8(_Scratch(lw), layer, ins, out, params, act)
    if lw.quant:
        return lower_q15(_Scratch(lw), layer, ins, out, params, act)
    # the lowering's own f32 rule, run against the scratch stand-in
    return type(lw).lower_f32(_Scratch(lw), layer, ins, out, params, act, [v.type.shape for v in layer.inputs])


def _compare(lw, layer, ins, out, act, build, args, c: Choice) -> Choice:
    p = layer.params["weight"]
    kind = "mm" if layer.op == "conv2d" else "mv"
    t = table(TARGET, p.format, kind, lw.quant, p.attrs.get("width"), p.shape[0])
    own = lw.quant in ("q15", "int8")  # a table of the build's own kernels
    if own and t is not None:  # context only
        be = crossing(t[0], t[1])
        c.breakeven = None if be is None else round(be, 4)
    if not m4_available():
        e = estimate(layer.name, p, TARGET, kind, lw.quant)
        if not own:
            e.basis += f", q15 table used for an {lw.quant or 'f32'} build"
        return e
    dk, dargs = _dense_step(lw, layer, ins, out, act)
    dense, sparse = emulate([(dk, dargs), (build("k1_sparse"), args)])
    c.ratio, c.basis = sparse / dense, f"emulated: {sparse:,} cycles vs {dense:,} dense"
    c.kernel = p.format if sparse < dense else "dense"
    if c.kernel == "dense":
        c.reason = keep_dense_message(c, TARGET, f"emulated {sparse:,} vs {dense:,} dense cycles" + _width_hint(lw, p))
    return c


def _width_hint(lw, p) -> str:
    """For an int8 simd_group kept dense: the group width the int8 table says breaks even earlier,
    when it is not this weight's (re-pruning with it may pay)."""
    if lw.quant != "int8" or p.format != "simd_group":
        return ""
    w = int8_width(TARGET)
    return "" if w in (None, int(p.attrs["width"])) else f"; int8 simd_group width {w} breaks even earlier"
