"""Sparse matrix-matrix kernels as TIR (TVMScript): Y[rows, n] = W[rows, cols] @ X[cols, n].

A conv layer is this product (Scalpel §2): W is the OIHW weight's im2col view [O, C*kh*kw],
X the im2col matrix of the input (cols = C*kh*kw, n = out_h*out_w), W sparse, X dense. What
makes a sparse MM worth having, unlike MV, is reuse: every stored weight (or group) is read
once and applied to several output positions, so its index costs less per MAC. Each builder
specialises one kernel to the layer's sizes, as mv.py's builders do.

f32 (x86, LLVM), X row-major [cols, n_pad]: vectorised along n. Per stored weight, one
broadcast of the weight against `vecs` vectors of `lanes` consecutive output positions,
accumulated in registers; the output-position blocks are the outer loop so the X slice of
one block (cols x vecs*lanes floats) stays in L2 while all rows run over it. The caller pads
n to a multiple of lanes*vecs (and, for dense, rows to a multiple of `rblock`); simd_group
groups sit on the reduction axis, so on x86 they only save index loads (one per group).

q15 (arm-m4, C): X is passed transposed, XT[n, k2] int16, k2 = cols rounded up to even,
zero-padded: each output position's reduction vector is contiguous, so the two
reduction-adjacent inputs of a width-2 group (or of a dense weight pair) are one aligned
32-bit word, the operand SMLAD wants (the layout of CMSIS-NN's q15 im2col buffer). Dense
and simd_group read XT as int32 words [n, k2/2], csr as int16 [n, k2] (same memory). Output
Y int32, row r of W at y[r*ldy + p] for output position p (ldy >= n: a caller can run the
conv in chunks of positions with a small im2col buffer, writing into the full [rows, N]
output by passing y + first position). Dense works on 2 x 4 tiles (two weight rows x four
positions: 2 weight words + 4 input words feed 8 SMLADs; CMSIS-NN's q15 mat-mult uses 2 x 2);
the sparse kernels take one row x four positions (rows differ in their patterns, so only
positions can share a weight): simd_group loads one A' word and one JA' index per group and
issues four SMLADs, csr loads one value and one index per stored weight and issues four MACs.
Four positions per stored weight cost 29-33% fewer cycles than two at 100x100x100 and 50%
sparsity (six or eight: at most 7% fewer again, as registers run out), and 2 x 4 tiles 13% fewer than
2 x 2 for dense, so both sides of the break-even get the same tuning. Accumulators live in
y (restrict: gcc keeps them in registers), as in mv.py. Positions left over from a block
(n % 4) and an odd last row take one-at-a-time tail loops.
"""
from __future__ import annotations

from tvm.script import tirx as T

from cococ.backends.kernels.layout import nonempty


# ---- f32 (x86 through LLVM) -------------------------------------------------------------------

def dense_mm_f32(rows: int, cols: int, n_pad: int, lanes: int, vecs: int = 2, rblock: int = 4):
    """Dense baseline: rblock x (vecs*lanes) register tile; rows % rblock == 0, n_pad % (vecs*lanes) == 0."""
    tile = vecs * lanes

    @T.prim_func
    def dense_mm(w: T.Buffer((rows * cols,), "float32"), x: T.Buffer((cols * n_pad,), "float32"),
                 y: T.Buffer((rows * n_pad,), "float32")):
        T.func_attr({"tirx.noalias": True})
        for b in range(n_pad // tile):
            for i0 in range(rows // rblock):
                acc = T.decl_buffer((rblock * tile,), "float32", scope="local")
                for r in T.unroll(rblock):
                    for u in T.unroll(vecs):
                        for l in T.vectorized(lanes):
                            acc[(r * vecs + u) * lanes + l] = T.float32(0)
                for j in range(cols):
                    for r in T.unroll(rblock):
                        for u in T.unroll(vecs):
                            for l in T.vectorized(lanes):
                                acc[(r * vecs + u) * lanes + l] = acc[(r * vecs + u) * lanes + l] \
                                    + w[(i0 * rblock + r) * cols + j] * x[j * n_pad + b * tile + u * lanes + l]
                for r in T.unroll(rblock):
                    for u in T.unroll(vecs):
                        for l in T.vectorized(lanes):
                            y[(i0 * rblock + r) * n_pad + b * tile + u * lanes + l] = acc[(r * vecs + u) * lanes + l]
    return dense_mm


def sparse_mm_f32(rows: int, cols_pad: int, n_pad: int, stored: int, width: int, lanes: int, vecs: int = 4,
                  index: str = "int32"):
    """CSR (width 1) and SIMD-group: per stored entry one index, then each of its `width`
    weights broadcast against `vecs` vector loads of X's rows and FMAs."""
    tile = vecs * lanes

    @T.prim_func
    def sparse_mm(values: T.Buffer((nonempty(stored) * width,), "float32"), indptr: T.Buffer((rows + 1,), index),
                  indices: T.Buffer((nonempty(stored),), index), x: T.Buffer((cols_pad * n_pad,), "float32"),
                  y: T.Buffer((rows * n_pad,), "float32")):
        T.func_attr({"tirx.noalias": True})
        for b in range(n_pad // tile):
            for i in range(rows):
                acc = T.decl_buffer((tile,), "float32", scope="local")
                for u in T.unroll(vecs):
                    for l in T.vectorized(lanes):
                        acc[u * lanes + l] = T.float32(0)
                for g in range(T.Cast("int32", indptr[i]), T.Cast("int32", indptr[i + 1])):
                    for t in T.unroll(width):
                        for u in T.unroll(vecs):
                            for l in T.vectorized(lanes):
                                acc[u * lanes + l] = acc[u * lanes + l] + values[g * width + t] * \
                                    x[(T.Cast("int32", indices[g]) + t) * n_pad + b * tile + u * lanes + l]
                for u in T.unroll(vecs):
                    for l in T.vectorized(lanes):
                        y[i * n_pad + b * tile + u * lanes + l] = acc[u * lanes + l]
    return sparse_mm


# ---- q15 (arm-m4 through C) -------------------------------------------------------------------

def dense_mm_q15(rows: int, cols: int, n: int, ldy: int, pb: int = 4):
    """Dense Q15 on 2 x pb tiles: W words [rows, k2/2], XT words [n, k2/2], SMLAD.

    2 x 4 without unrolling the pair loop was the fastest of 2x2 / 2x4, unrolled by 1 / 2 at
    100x100x100 in the emulator (unrolling made gcc spill the accumulators)."""
    c2 = -(-cols // 2)
    r2, nb = rows // 2 * 2, n // pb * pb

    @T.prim_func
    def dense_mm(w: T.Buffer((nonempty(rows * c2),), "int32"), x: T.Buffer((nonempty(n * c2),), "int32"),
                 y: T.Buffer((nonempty((rows - 1) * ldy + n),), "int32")):
        T.func_attr({"tirx.noalias": True})
        for i0 in range(r2 // 2):
            for p0 in range(nb // pb):
                for r in T.unroll(2):
                    for q in T.unroll(pb):
                        y[(2 * i0 + r) * ldy + p0 * pb + q] = 0
                for j in range(c2):
                    for r in T.unroll(2):
                        for q in T.unroll(pb):
                            y[(2 * i0 + r) * ldy + p0 * pb + q] = T.call_extern(
                                "int32", "cococ_smlad", w[(2 * i0 + r) * c2 + j],
                                x[(p0 * pb + q) * c2 + j], y[(2 * i0 + r) * ldy + p0 * pb + q])
        for i in range(r2):  # positions left over from the blocks, for the paired rows
            for p in range(n - nb):
                y[i * ldy + nb + p] = 0
                for j in range(c2):
                    y[i * ldy + nb + p] = T.call_extern("int32", "cococ_smlad", w[i * c2 + j],
                                                        x[(nb + p) * c2 + j], y[i * ldy + nb + p])
        for i in range(rows - r2):  # odd rows: the last row at every position
            for p in range(n):
                y[(r2 + i) * ldy + p] = 0
                for j in range(c2):
                    y[(r2 + i) * ldy + p] = T.call_extern("int32", "cococ_smlad", w[(r2 + i) * c2 + j],
                                                          x[p * c2 + j], y[(r2 + i) * ldy + p])
    return dense_mm


def sparse_mm_q15(fmt: str, rows: int, cols: int, n: int, stored: int, ldy: int, index: str = "int16",
                  pb: int = 4):
    """Per stored entry of a row, `pb` positions: csr loads one halfword value and one index and
    issues `pb` MLAs on gathered int16 inputs; simd_group (width 2) loads one A' word and one
    JA' index and issues `pb` SMLADs on the inputs' words (`cols` padded to even either way)."""
    csr = fmt == "csr"
    c2 = -(-cols // 2)
    nb = n // pb * pb
    elem, xw = ("int16", 2 * c2) if csr else ("int32", c2)   # x: halfwords or words per position

    @T.prim_func
    def sparse_mm(values: T.Buffer((nonempty(stored),), elem), indptr: T.Buffer((rows + 1,), index),
                  indices: T.Buffer((nonempty(stored),), index), x: T.Buffer((nonempty(n * xw),), elem),
                  y: T.Buffer((nonempty((rows - 1) * ldy + n),), "int32")):
        T.func_attr({"tirx.noalias": True})
        for i in range(rows):
            for p0 in range(nb // pb):
                for q in T.unroll(pb):
                    y[i * ldy + p0 * pb + q] = 0
                for k in range(T.Cast("int32", indptr[i]), T.Cast("int32", indptr[i + 1])):
                    for q in T.unroll(pb):
                        if csr:
                            y[i * ldy + p0 * pb + q] = y[i * ldy + p0 * pb + q] + T.Cast("int32", values[k]) * \
                                T.Cast("int32", x[(p0 * pb + q) * xw + T.Cast("int32", indices[k])])
                        else:
                            y[i * ldy + p0 * pb + q] = T.call_extern(
                                "int32", "cococ_smlad", values[k],
                                x[(p0 * pb + q) * xw + T.shift_right(T.Cast("int32", indices[k]), 1)],
                                y[i * ldy + p0 * pb + q])
            for p in range(n - nb):  # the positions left over from the blocks, one at a time
                y[i * ldy + nb + p] = 0
                for k in range(T.Cast("int32", indptr[i]), T.Cast("int32", indptr[i + 1])):
                    if csr:
                        y[i * ldy + nb + p] = y[i * ldy + nb + p] + T.Cast("int32", values[k]) * \
                            T.Cast("int32", x[(nb + p) * xw + T.Cast("int32", indices[k])])
                    else:
                        y[i * ldy + nb + p] = T.call_extern(
                            "int32", "cococ_smlad", values[k],
                            x[(nb + p) * xw + T.shift_right(T.Cast("int32", indices[k]), 1)], y[i * ldy + nb + p])
    return sparse_mm
