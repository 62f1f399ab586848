"""The kernel library's sparse kernels as backends/mcu Kernels (C through TVM's codegen).

Layer steps (what the executor runs, sparse.py): the format's loop with the layer's epilogue
(backends/kernels/layer.py); here the q15 epilogue is the dense q15 path's requantisation
(the qkernels.requant macro: per-row multiplier and shift, the fast SMULL form when every shift
allows it, saturation, ReLU as the lower clamp), so a sparse step's output equals the dense
step's. Bare kernels (benchmarks, tests; emulate.py runs them alone): the library's q15
matrix-vector and matrix-matrix loops (mv.py, mm.py) with int32 accumulators out, and `c_file`,
their C with the SIMD header inlined.

int8 FC and conv steps (`fc_int8`, `conv_int8`): int8 weights in flash, int8 activations,
int32 sums, the dense int8 kernel's requantisation (qkernels.requant to int8), so the output
equals the dense int8 step's bit for bit. csr: per stored weight one LDRSB of A' and an MLA
(FC reads x as it is; conv the widened im2col columns). simd_group: the input widened once
per call into a q15 column (as i8kernels.dense_int8 does; conv: im2col of PB positions),
JA' halved at build time (the column's word index); width 4 (SXTB16): one A' word per group,
stored [w0, w2, w1, w3] (i8kernels.reorder_weights), SXTB16 and SXTB16 ROR 8 give the two
q15 pairs, two SMLADs; width 2: one A' halfword per group, `h | h << 8` puts w1 in byte 2 so
that one SXTB16 gives the pair, one SMLAD. Which width pays is measured
(benchmarks/sparse_breakeven.py, the int8 table of backends/kernels/data).
"""
from __future__ import annotations

import numpy as np
import tvm
from tvm.script import tirx as T

from cococ.backends.kernels import im2col, layer, mm, mv
from cococ.backends.kernels.im2col import Geometry
from cococ.backends.kernels.layer import ACLE, PB, Epilogue, Fused
from cococ.backends.kernels.layout import TVM_DTYPE, nonempty, q15_args
from cococ.backends.mcu.codegen import Kernel, generate_c
from cococ.backends.mcu.i8kernels import PRELUDE, reorder_weights
from cococ.backends.mcu.qkernels import requant_store
from cococ.ir.core import CococError, Param
from cococ.ir.formats import cols_padded, matrix_shape


def _kernel(name: str, f: Fused) -> Kernel:
    return Kernel(name, f.prim, f.args, origin="tvm-tir", includes=f.includes, meta={"doc": f.doc})


def epilogue(quant: str | None, bias: bool, relu: bool, fast: bool = False) -> Epilogue:
    """A sparse layer step's epilogue. q15: the sums start at the int32 bias (a q15 layer always
    has one) and end in the dense q15 kernel's requantisation (`fast`: the SMULL form), ReLU as
    its lower clamp. f32: the bias if the layer has one, ReLU if fused."""
    tag = " +relu" if relu else ""
    if quant == "q15":
        return Epilogue("int16", requant_store(relu, fast, "int16"), True, tag)
    return Epilogue("float32", layer.relu if relu else None, bias, (" +bias" if bias else "") + tag)


def fc(name: str, fmt: str, rows: int, cols: int, stored: int, width: int, index: str, epi: Epilogue) -> Kernel:
    """Sparse FC step, batch 1: x[cols] -> y[rows]; `stored` = nnz (csr) or groups (simd_group)."""
    return _kernel(name, layer.fc(fmt, rows, cols, stored, width, index, epi))


def conv(name: str, fmt: str, x_shape, rows: int, y_shape, attrs, cols: int, stored: int, width: int,
         index: str, epi: Epilogue) -> Kernel:
    """Sparse conv step (groups 1): im2col of PB positions, sparse MM, the epilogue."""
    return _kernel(name, layer.conv(fmt, x_shape, rows, y_shape, attrs, cols, stored, width, index, epi))


def fc_q15(name: str, fmt: str, rows: int, cols: int, stored: int, index: str, relu: bool,
           fast: bool) -> Kernel:
    """q15 sparse FC step with the dense q15 kernel's bias and requantisation (the benchmarks')."""
    return fc(name, fmt, rows, cols, stored, 1 if fmt == "csr" else 2, index, epilogue("q15", True, relu, fast))


def int8_ld(cols: int) -> int:
    """Length (int16) of one widened int8 column: whole groups of four, so that a group's
    padded tail reads zeros."""
    return -(-cols // 4) * 4


def int8_col_len(fmt: str, cols: int) -> int:
    """Length of an int8 sparse FC step's widened column; csr reads x as it is (no column)."""
    return 0 if fmt == "csr" else int8_ld(cols)


def _ext(name: str, *args):
    return tvm.tirx.call_pure_extern("int32", name, *args)


@T.macro
def _entry_int8(xs, vals, indices, acc, v, k, width):
    """One stored entry k into acc[0]: its value (word, halfword or byte) and index into
    registers `v` first (gcc then loads each once), then width 1: an MLA with the int8 x;
    width 2: `h | h << 8`, one SXTB16, one SMLAD with the column word; width 4: SXTB16 and
    SXTB16 ROR 8, two SMLADs with the column words."""
    v[0] = T.Cast("int32", vals[k])
    v[1] = T.Cast("int32", indices[k])
    if width == 1:
        acc[0] = acc[0] + v[0] * T.Cast("int32", xs[v[1]])
    elif width == 2:
        acc[0] = _ext("__smlad", xs[v[1]], _ext("__sxtb16", T.bitwise_or(v[0], T.shift_left(v[0], 8))), acc[0])
    else:
        acc[0] = _ext("__smlad", xs[v[1]], _ext("__sxtb16", v[0]), acc[0])
        acc[0] = _ext("__smlad", xs[v[1] + 1], _ext("cococ_sxtb16_ror8", v[0]), acc[0])


@T.macro
def _stored_int8(xs, vals, indptr, indices, acc, v, i, width):
    """Row i's stored entries, unrolled by two (pairs, then an odd last one), as layer.py's
    q15 loop: on the M4 the loop's counter, compare and branch cost about one entry's MAC."""
    for k2 in range(T.shift_right(T.Cast("int32", indptr[i + 1]) - T.Cast("int32", indptr[i]), 1)):
        _entry_int8(xs, vals, indices, acc, v, T.Cast("int32", indptr[i]) + k2 * 2, width)
        _entry_int8(xs, vals, indices, acc, v, T.Cast("int32", indptr[i]) + k2 * 2 + 1, width)
    if T.bitwise_and(T.Cast("int32", indptr[i + 1]) - T.Cast("int32", indptr[i]), 1) == 1:
        _entry_int8(xs, vals, indices, acc, v, T.Cast("int32", indptr[i + 1]) - 1, width)


@T.macro
def _positions_int8(x, col, CC, vals, indptr, indices, b, m, sh, y, acc, v, nn, p0, cnt, rows, npos, ld, cols, g,
                    width, store):
    """Output positions p0 .. p0 + cnt - 1 of batch item nn: their windows widened into `col`
    (cnt columns of `ld`, the pad zeroed), then per row cnt sums over the stored entries, each
    entry's value and index loaded once for the cnt positions, and the requantisation."""
    for q in range(cnt):
        for ci, r, s in T.grid(g.c, g.kh, g.kw):
            im2col.gather(col, q * ld + ci * (g.kh * g.kw) + r * g.kw + s, x,
                          lambda iy, ix: nn * (g.c * g.h * g.w) + ci * (g.h * g.w) + iy * g.w + ix,
                          (p0 + q) // g.ow * g.sh - g.t + r * g.dh, (p0 + q) % g.ow * g.sw - g.l + s * g.dw, g,
                          T.int16(0), "int16")
        for e in range(cols, ld):
            col[q * ld + e] = T.int16(0)
    for i in range(rows):
        for q in T.unroll(cnt):
            acc[q] = b[i]
        for k in range(T.Cast("int32", indptr[i]), T.Cast("int32", indptr[i + 1])):
            v[0] = T.Cast("int32", vals[k])
            v[1] = T.Cast("int32", indices[k])
            if width == 1:
                for q in T.unroll(cnt):
                    acc[q] = acc[q] + v[0] * T.Cast("int32", col[q * ld + v[1]])
            elif width == 2:
                v[0] = _ext("__sxtb16", T.bitwise_or(v[0], T.shift_left(v[0], 8)))
                for q in T.unroll(cnt):
                    acc[q] = _ext("__smlad", CC[q * (ld // 2) + v[1]], v[0], acc[q])
            else:
                v[2] = _ext("cococ_sxtb16_ror8", v[0])
                v[0] = _ext("__sxtb16", v[0])
                for q in T.unroll(cnt):
                    acc[q] = _ext("__smlad", CC[q * (ld // 2) + v[1]], v[0], acc[q])
                    acc[q] = _ext("__smlad", CC[q * (ld // 2) + v[1] + 1], v[2], acc[q])
        for q in T.unroll(cnt):
            store(y, nn * (rows * npos) + i * npos + p0 + q, acc[q], m, sh, i)


def conv_int8(name: str, fmt: str, x_shape, rows: int, y_shape, attrs, cols: int, stored: int, width: int,
              index: str, relu: bool, fast: bool) -> Kernel:
    """int8 sparse conv step (groups 1): per block of PB output positions their windows widened
    to q15 columns (im2col), the stored entries of each row against the PB columns (csr: MLA;
    simd_group: SXTB16 once per group, SMLADs per position), the dense int8 requantisation.
    Arguments: x, values, indptr, indices, b, m, sh, the scratch column (PB x int8_ld), y."""
    g = Geometry.of(x_shape, y_shape, attrs)
    n, npos, ld, ne = x_shape[0], y_shape[2] * y_shape[3], int8_ld(cols), nonempty(stored)
    store = requant_store(relu, fast, "int8")
    word = {1: "int8", 2: "uint16", 4: "int32"}[width]

    @T.prim_func(s_tir=True)
    def f(x: T.Buffer((n * g.c * g.h * g.w,), "int8"), values: T.Buffer((ne * width,), "int8"),
          indptr: T.Buffer((rows + 1,), index), indices: T.Buffer((ne,), index), b: T.Buffer((rows,), "int32"),
          m: T.Buffer((rows,), "int32"), sh: T.Buffer((rows,), "int32"), col: T.Buffer((PB * ld,), "int16"),
          y: T.Buffer((n * rows * npos,), "int8")):
        T.func_attr({"tirx.noalias": True})
        CC = T.decl_buffer((PB * ld // 2,), "int32", data=col.data)
        VV = T.decl_buffer((ne,), word, data=values.data)
        acc = T.sblock_alloc_buffer((PB,), "int32")
        v = T.sblock_alloc_buffer((3,), "int32")
        for nn in range(n):
            if npos >= PB:
                for p4 in range(npos // PB):
                    _positions_int8(x, col, CC, VV, indptr, indices, b, m, sh, y, acc, v, nn, p4 * PB, PB, rows,
                                    npos, ld, cols, g, width, store)
            if npos % PB != 0:
                _positions_int8(x, col, CC, VV, indptr, indices, b, m, sh, y, acc, v, nn, npos // PB * PB, npos % PB,
                                rows, npos, ld, cols, g, width, store)
    args = [("x", "int8", False), ("values", "int8", False), ("indptr", index, False), ("indices", index, False),
            ("b", "int32", False), ("m", "int32", False), ("sh", "int32", False), ("col", "int16", True),
            ("y", "int8", True)]
    what = "csr (MLA) int8" if fmt == "csr" else f"simd_group w{width} (SXTB16 + SMLAD) int8"
    doc = (f"{what} conv2d {list(x_shape)}->{list(y_shape)} (im2col x{PB} to q15 + sparse MM), {stored} stored"
           + (" +relu" if relu else ""))
    return Kernel(name, f, args, origin="tvm-tir", includes=ACLE, meta={"doc": doc, "prelude": PRELUDE})


def fc_int8(name: str, fmt: str, rows: int, cols: int, stored: int, width: int, index: str, relu: bool,
            fast: bool) -> Kernel:
    """int8 sparse FC step, batch 1: x[cols] int8 -> y[rows] int8 (module doc). Arguments: x,
    values, indptr, indices, b, m, sh, then (simd_group) the scratch column, then y."""
    ne, store = nonempty(stored), requant_store(relu, fast, "int8")
    if fmt == "csr":

        @T.prim_func(s_tir=True)
        def f(x: T.Buffer((cols,), "int8"), values: T.Buffer((ne,), "int8"), indptr: T.Buffer((rows + 1,), index),
              indices: T.Buffer((ne,), index), b: T.Buffer((rows,), "int32"), m: T.Buffer((rows,), "int32"),
              sh: T.Buffer((rows,), "int32"), y: T.Buffer((rows,), "int8")):
            T.func_attr({"tirx.noalias": True})
            acc = T.sblock_alloc_buffer((1,), "int32")
            v = T.sblock_alloc_buffer((2,), "int32")
            for i in range(rows):
                acc[0] = b[i]
                _stored_int8(x, values, indptr, indices, acc, v, i, 1)
                store(y, i, acc[0], m, sh, i)
        col = []
        what = "csr (MLA) int8"
    else:
        xw = int8_col_len(fmt, cols)
        word = "int32" if width == 4 else "uint16"

        @T.prim_func(s_tir=True)
        def f(x: T.Buffer((cols,), "int8"), values: T.Buffer((ne * width,), "int8"),
              indptr: T.Buffer((rows + 1,), index), indices: T.Buffer((ne,), index), b: T.Buffer((rows,), "int32"),
              m: T.Buffer((rows,), "int32"), sh: T.Buffer((rows,), "int32"), col: T.Buffer((xw,), "int16"),
              y: T.Buffer((rows,), "int8")):
            T.func_attr({"tirx.noalias": True})
            CC = T.decl_buffer((xw // 2,), "int32", data=col.data)
            VV = T.decl_buffer((ne,), word, data=values.data)
            acc = T.sblock_alloc_buffer((1,), "int32")
            v = T.sblock_alloc_buffer((2,), "int32")
            for p in range(cols):
                col[p] = T.Cast("int16", x[p])
            for p in range(cols, xw):
                col[p] = T.int16(0)
            for i in range(rows):
                acc[0] = b[i]
                _stored_int8(CC, VV, indptr, indices, acc, v, i, width)
                store(y, i, acc[0], m, sh, i)
        col = [("col", "int16", True)]
        what = f"simd_group w{width} (SXTB16 + SMLAD) int8"
    args = [("x", "int8", False), ("values", "int8", False), ("indptr", index, False), ("indices", index, False),
            ("b", "int32", False), ("m", "int32", False), ("sh", "int32", False)] + col + [("y", "int8", True)]
    doc = f"{what} FC {cols}->{rows}, {stored} stored" + (" +relu" if relu else "")
    return Kernel(name, f, args, origin="tvm-tir", includes=ACLE, meta={"doc": doc, "prelude": PRELUDE})


def values_int8(fmt: str, width: int, vq: np.ndarray) -> np.ndarray:
    """A' of an int8 step from the stored entries' int8 values (groups in order): width-4 groups
    reordered for SXTB16 (i8kernels.reorder_weights), csr and width 2 as they are."""
    return reorder_weights(vq.reshape(-1, 4)).reshape(-1) if fmt == "simd_group" and width == 4 else vq


# ---- the library's bare q15 kernels as C functions (benchmarks, tests) ----------------------------

def _bare(param: Param, name: str, prim, doc: str) -> Kernel:
    xdt = "int16" if param.format == "csr" else "int32"
    sig = [(k, TVM_DTYPE[a.dtype], False) for k, a in q15_args(param)] + [("x", xdt, False), ("y", "int32", True)]
    return Kernel(name, prim, sig, origin="tvm-tir", meta={"doc": doc})


def kernel_q15(param: Param, name: str) -> Kernel:
    """The bare q15 matrix-vector kernel of the param (backends/kernels/mv.py): int32 y out.
    Arguments: q15_args(param) (backends/kernels/layout.py), then x (x_q15), then y."""
    rows, cols = matrix_shape(param.shape)
    q15_args(param)  # validates dtype, format and (simd_group) width 2
    if param.format == "dense":
        prim = mv.dense(rows, cols, "q15")
    else:
        index, n = TVM_DTYPE[param.arrays["indices"].dtype], param.arrays["indices"].size
        prim = mv.csr(rows, cols, n, index, "q15") if param.format == "csr" \
            else mv.simd_group(rows, cols_padded(param), n, 2, index, "q15")
    return _bare(param, name, prim, f"{param.format} q15 matrix-vector {rows}x{cols}")


def kernel_q15_mm(param: Param, name: str, n: int, ldy: int | None = None) -> Kernel:
    """The bare q15 matrix-matrix kernel of the param over `n` positions (backends/kernels/mm.py),
    C signature (all pointers restrict, inputs const, IDX the param's index dtype):
      dense:      void name(const int32_t* w,      const int32_t* x, int32_t* y)
      csr:        void name(const int16_t* values, const IDX* indptr, const IDX* indices,
                            const int16_t* x, int32_t* y)
      simd_group: void name(const int32_t* values, const IDX* indptr, const IDX* indices,
                            const int32_t* x, int32_t* y)
    x is the im2col buffer XT[n, k2] (layout.x_q15_mm), y the int32 accumulators, row r and
    position p at y[r*ldy + p] (ldy = n by default; ldy > n: a chunk of a wider output)."""
    rows, cols = matrix_shape(param.shape)
    ldy = n if ldy is None else int(ldy)
    if ldy < n:
        raise CococError(f"ldy ({ldy}) must be at least n ({n})")
    q15_args(param)
    if param.format == "dense":
        prim = mm.dense_mm_q15(rows, cols, n, ldy)
    else:
        index, g = TVM_DTYPE[param.arrays["indices"].dtype], param.arrays["indices"].size
        prim = mm.sparse_mm_q15(param.format, rows, cols, n, g, ldy, index)
    return _bare(param, name, prim, f"{param.format} q15 matrix-matrix {rows}x{cols} @ {cols}x{n} (ldy {ldy})")


def c_file(kernels) -> str:
    """One C translation unit: the SIMD header, then every kernel's TVM-generated function."""
    generate_c(kernels)
    head = mv.SIMD_HEADER.replace("#include <stdint.h>\n", "")
    return "#include <stdint.h>\n" + head + "\n" + "\n".join(k.source for k in kernels)


def mm_q15_c(param: Param, name: str, n: int, ldy: int | None = None) -> str:
    """C source (SIMD header inlined) of the bare q15 MM kernel."""
    return c_file([kernel_q15_mm(param, name, n, ldy)])
