"""Sparse FC and conv layers as the C executor runs them: a format's loop with the layer's epilogue.

mv.py and mm.py have the bare sparse matrix-vector / matrix-matrix loops (int32 accumulators
out, the interface their tests and the break-even tables are measured with). A layer step must
produce what the dense kernel of the same layer produces, so these are the same loops with the
epilogue fused in (and, for conv, the im2col of PB output positions at a time, im2col.block) and
the activation tensor as the executor lays it out. One generator per layer kind (`fc`, `conv`)
serves both formats and both number types: what a format does per stored entry is its
multiply-accumulate (`mac` below, picked by the Python value `fmt` while the TVMScript is
parsed), and what a layer does with a row's sum is its `Epilogue`, a T.macro (backends/mcu's
sparse_kernels.py gives the q15 one: the dense q15 path's requantisation macro). FC:

f32   y[i] = relu?(b[i] + sum_k values[k] * x[indices[k]]) (csr), or per group of `width`
      consecutive columns starting at JA' (simd_group; the M4 has one f32 lane, so a group is
      `width` scalar multiply-adds behind one index load). The activation holds `cols` floats
      and nothing after it is ours to read: when cols is not a multiple of `width`, the padded
      tail of a group is guarded (its weight is zero, but 0 * garbage can be NaN).
q15   acc = b_q[i] + sum (SMLAD of one A' word and one x word per group, simd_group width 2,
      whose `indices` are JA' / 2 — the word index, halved at build time: no shift per group;
      or one halfword MLA per element, csr), then y[i] = epilogue(acc) (the dense q15 kernel's
      requantisation: per-row multiplier m and shift sh, saturation, ReLU as the lower clamp).
      The q15 activation tensor is word-padded in the arena, and a padded group's weight lane
      is zero, so the word read of the tail needs no guard.

Accumulators live in y (f32 FC, restrict: gcc keeps them in a register) or in a small local
buffer (q15: y is int16, the sum is int32; conv: PB positions). The kernels are `T.jit`
functions so that the parameters a layer lacks (f32 without bias: b; f32: m, sh) leave the
C signature (`T.Optional`, specialised away).
"""
# (no `from __future__ import annotations`: T.jit falls back to the evaluated annotations for the
# sizes the kernels' signatures name, and PEP 563 would leave it strings)
from dataclasses import dataclass

from tvm.script import tirx as T

from cococ.backends.kernels import im2col
from cococ.backends.kernels.im2col import Geometry
from cococ.backends.kernels.layout import nonempty

ACLE = ("<arm_acle.h>",)  # the q15 kernels call __smlad
PB = 4  # conv: output positions per block: each stored weight (group) is loaded once for PB MACs (mm.py)


@dataclass(frozen=True)
class Epilogue:
    """What a layer kernel does with a row's sum. `store` is a T.macro store(y, at, acc, m, sh, row)
    writing y[at] from the sum `acc` (m, sh: the q15 kernel's per-row requantisation arguments),
    or None: the sum is the output. `dtype` is the output's: "float32", or "int16" (int32 sums,
    the kernel takes the m and sh arguments); `bias`: the sums start at b[row]; `tag` ends the
    kernel's doc line."""
    dtype: str = "float32"
    store: object = None
    bias: bool = False
    tag: str = ""

    @property
    def q15(self) -> bool:
        return self.dtype == "int16"


@T.macro
def relu(y, at, acc, m, sh, row):
    """The f32 epilogue of a fused ReLU."""
    y[at] = T.max(acc, T.float32(0))


@dataclass(frozen=True)
class Fused:
    """A layer kernel: the PrimFunc, its arguments (name, dtype, written), a doc line, C includes."""
    prim: object
    args: list
    doc: str
    includes: tuple = ()


@T.macro
def _stored(indptr, i, mac, unroll):
    """mac(k) for row i's stored entries k = indptr[i] .. indptr[i+1]-1 (the start and count
    inline, not TVMScript variables: gcc loads each once per row); with `unroll`, by two (pairs,
    then an odd last one; the count is data-dependent). On the M4 the loop's counter, compare and
    taken branch cost about as much as a q15 group's SMLAD; unrolled, the q15 simd_group FC of
    the tests went from 174,280 to 153,641 cycles (fc1, 784->300, 90%). The f32 kernels got
    slower unrolled (265,645 -> 299,951: gcc runs out of registers for the recomputed
    addresses), so they keep the plain loop."""
    if unroll:
        for k2 in range(T.shift_right(T.Cast("int32", indptr[i + 1]) - T.Cast("int32", indptr[i]), 1)):
            mac(T.Cast("int32", indptr[i]) + k2 * 2)
            mac(T.Cast("int32", indptr[i]) + k2 * 2 + 1)
        if T.bitwise_and(T.Cast("int32", indptr[i + 1]) - T.Cast("int32", indptr[i]), 1) == 1:
            mac(T.Cast("int32", indptr[i]) + (T.Cast("int32", indptr[i + 1]) - T.Cast("int32", indptr[i])) - 1)
    else:
        for k in range(T.Cast("int32", indptr[i]), T.Cast("int32", indptr[i + 1])):
            mac(k)


def _specialize(f, epi: Epilogue):
    """The PrimFunc of T.jit kernel `f` without the arguments `epi` does not use."""
    absent = {} if epi.bias else {"b": None}
    return f.specialize(**absent) if epi.q15 else f.specialize(m=None, sh=None, **absent)


def _args(head: list, index: str, epi: Epilogue, tail: list) -> list:
    """(name, dtype, written) of a kernel: x and values (`head`), the arrays, b / m / sh as `epi`
    needs them, then `tail` (the scratch column and y)."""
    acc = "int32" if epi.q15 else "float32"
    extra = [("b", acc, False)] * epi.bias + [("m", "int32", False), ("sh", "int32", False)] * epi.q15
    return head + [("indptr", index, False), ("indices", index, False)] + extra + tail


def _what(fmt: str, width: int, epi: Epilogue) -> str:
    if epi.q15:
        return "csr (MLA) q15" if fmt == "csr" else "simd_group w2 (SMLAD) q15"
    return ("csr" if fmt == "csr" else f"simd_group w{width}") + " f32"


def fc(fmt: str, rows: int, cols: int, stored: int, width: int, index: str, epi: Epilogue) -> Fused:
    """Sparse FC, batch 1: x[cols] -> y[rows]; `stored` = nnz (csr) or groups (simd_group; q15:
    width 2, x read as words)."""
    csr, q15, ne = fmt == "csr", epi.q15, nonempty(stored)
    xlen = cols + cols % 2 if q15 else cols
    nvals = ne * width
    elem, acc_t = ("int16", "int32") if q15 else ("float32", "float32")

    @T.jit
    def f(x: T.Buffer((xlen,), elem), values: T.Buffer((nvals,), elem),
          indptr: T.Buffer((rows + 1,), index), indices: T.Buffer((ne,), index),
          b: T.Optional(T.Buffer((rows,), acc_t)), m: T.Optional(T.Buffer((rows,), "int32")),
          sh: T.Optional(T.Buffer((rows,), "int32")), y: T.Buffer((rows,), epi.dtype)):
        T.func_attr({"tirx.noalias": True})
        if q15:
            XX = T.decl_buffer((xlen // 2,), "int32", data=x.data)
            if not csr:
                VV = T.decl_buffer((ne,), "int32", data=values.data)
            acc = T.alloc_buffer((1,), "int32")
        for i in range(rows):
            if q15:
                acc[0] = b[i]
            else:
                y[i] = b[i] if epi.bias else T.float32(0)

            @T.inline
            def mac(k):
                if q15 and csr:
                    acc[0] = acc[0] + T.Cast("int32", values[k]) * T.Cast("int32", x[T.Cast("int32", indices[k])])
                elif q15:
                    acc[0] = T.call_pure_extern("int32", "__smlad", XX[T.Cast("int32", indices[k])], VV[k], acc[0])
                elif csr:
                    y[i] = y[i] + values[k] * x[T.Cast("int32", indices[k])]
                else:
                    for l in T.unroll(width):
                        y[i] = y[i] + values[k * width + l] * (
                            T.if_then_else(T.Cast("int32", indices[k]) + l < cols, x[T.Cast("int32", indices[k]) + l],
                                           T.float32(0)) if cols % width != 0 else x[T.Cast("int32", indices[k]) + l])
            _stored(indptr, i, mac, q15)
            if q15:
                epi.store(y, i, acc[0], m, sh, i)
            elif epi.store is not None:
                epi.store(y, i, y[i], m, sh, i)
    args = _args([("x", elem, False), ("values", elem, False)], index, epi, [("y", epi.dtype, True)])
    return Fused(_specialize(f, epi), args, f"{_what(fmt, width, epi)} FC {cols}->{rows}, {stored} stored"
                 + epi.tag, ACLE if q15 else ())


def conv(fmt: str, x_shape, rows: int, y_shape, attrs, cols: int, stored: int, width: int, index: str,
         epi: Epilogue) -> Fused:
    """Sparse conv (groups 1): per block of PB output positions, im2col into the scratch `col`
    (XT[PB, ld]: ld = cols rounded up to the group width, even in q15 (mm.py's q15 layout), the
    pad zeroed: no guard in the loop), then per weight row PB accumulators over the stored
    entries: q15 simd_group one A' word + one halved JA' index -> PB SMLADs, q15 csr one value +
    one index -> PB MLAs, f32 one index load per entry or group -> `width` x PB multiply-adds;
    then the epilogue (q15: the dense q15 kernel's requantisation and ReLU clamp: integer sums
    are exact, so the output equals the dense q15 conv bit for bit)."""
    csr, q15, ne = fmt == "csr", epi.q15, nonempty(stored)
    g = Geometry.of(x_shape, y_shape, attrs)
    n, npos = x_shape[0], y_shape[2] * y_shape[3]
    ld = cols + cols % 2 if q15 else -(-cols // width) * width
    nvals = ne * width
    elem, acc_t = ("int16", "int32") if q15 else ("float32", "float32")
    zero = T.int16(0) if q15 else T.float32(0)

    @T.jit
    def f(x: T.Buffer((n * g.c * g.h * g.w,), elem), values: T.Buffer((nvals,), elem),
          indptr: T.Buffer((rows + 1,), index), indices: T.Buffer((ne,), index),
          b: T.Optional(T.Buffer((rows,), acc_t)), m: T.Optional(T.Buffer((rows,), "int32")),
          sh: T.Optional(T.Buffer((rows,), "int32")), col: T.Buffer((PB * ld,), elem),
          y: T.Buffer((n * rows * npos,), epi.dtype)):
        T.func_attr({"tirx.noalias": True})
        if q15:
            CC = T.decl_buffer((PB * ld // 2,), "int32", data=col.data)
            if not csr:
                VV = T.decl_buffer((ne,), "int32", data=values.data)
        acc = T.alloc_buffer((PB,), acc_t)
        if q15:
            v = T.alloc_buffer((2,), "int32")
        for nn in range(n):

            @T.inline
            def positions(p0, cnt):
                im2col.block(col, x, nn, p0, cnt, ld, cols, g, zero)
                for i in range(rows):
                    for q in T.unroll(cnt):
                        acc[q] = b[i] if epi.bias else T.float32(0)

                    @T.inline
                    def mac(k):
                        if q15:
                            v[0] = T.Cast("int32", values[k]) if csr else VV[k]
                            v[1] = T.Cast("int32", indices[k])
                            for q in T.unroll(cnt):
                                if csr:
                                    acc[q] = acc[q] + v[0] * T.Cast("int32", col[q * ld + v[1]])
                                else:
                                    acc[q] = T.call_pure_extern("int32", "__smlad", v[0], CC[q * (ld // 2) + v[1]],
                                                                acc[q])
                        elif csr:
                            for q in T.unroll(cnt):
                                acc[q] = acc[q] + values[k] * col[q * ld + T.Cast("int32", indices[k])]
                        else:
                            for l in T.unroll(width):
                                for q in T.unroll(cnt):
                                    acc[q] = acc[q] + values[k * width + l] * col[q * ld + T.Cast("int32", indices[k])
                                                                                  + l]
                    _stored(indptr, i, mac, False)
                    for q in T.unroll(cnt):
                        if epi.store is None:
                            y[nn * (rows * npos) + i * npos + p0 + q] = acc[q]
                        else:
                            epi.store(y, nn * (rows * npos) + i * npos + p0 + q, acc[q], m, sh, i)
            if npos >= PB:
                for p0 in range(npos // PB):
                    positions(p0 * PB, PB)
            if npos % PB != 0:
                for pt in range(1):
                    positions(npos // PB * PB, npos % PB)
    args = _args([("x", elem, False), ("values", elem, False)], index, epi,
                 [("col", elem, True), ("y", epi.dtype, True)])
    return Fused(_specialize(f, epi), args, f"{_what(fmt, width, epi)} conv2d {list(x_shape)}->{list(y_shape)} "
                 f"(im2col x{PB} + sparse MM), {stored} stored{epi.tag}", ACLE if q15 else ())
