"""Sparse matrix-vector kernels as TIR (TVMScript): data-dependent loops over indptr/indices.

TVM 0.27 has no sparse operators, so these loop nests are cococ's own. Each builder
specialises one kernel to a layer's sizes (rows, cols, stored count, index dtype): a
compiler knows them at build time, and constant bounds let TVM and the C compiler drop
every shape check. All kernels compute y = W @ x for one input vector (FC, batch 1).

f32 (x86, LLVM): the simd_group kernel keeps a `width`-lane accumulator and reads each
group's weights and its `width` inputs with one vector load each (T.vectorized lowers to
LLVM vector loads of x[j:j+width]); the lanes are summed once per row.

q15 (arm-m4, C): weights and inputs are Q15 (int16), accumulators int32, y int32 (the
requantisation belongs to the quantizer). Dense and simd_group kernels read two weights
and two inputs as one 32-bit word each and feed them to SMLAD (two 16x16 MACs), through
`cococ_smlad`, an inline helper of the header `SIMD_HEADER` (T.call_extern: TVM's C
codegen has no ARM intrinsics). Their `values`/`x` arguments are therefore int32 pointers
to Q15 pairs (the caller passes the int16 arrays' memory, 4-byte aligned, x padded to an
even length). They accumulate in y[i] (restrict: kept in a register by the C
compiler; a local buffer would become a TVM workspace allocation in the C output). JA' holds the first column of each group, so the word of x is indices[g]>>1.
"""
from __future__ import annotations

from tvm.script import tirx as T

SIMD_HEADER_NAME = "cococ_simd.h"
SIMD_HEADER = r"""/* cococ_simd.h: SIMD helpers for cococ's generated kernels. */
#ifndef COCOC_SIMD_H
#define COCOC_SIMD_H
#include <stdint.h>
/* acc + lo(a)*lo(b) + hi(a)*hi(b), 16-bit halves signed: the Cortex-M4 SMLAD instruction. */
static inline int32_t cococ_smlad(int32_t a, int32_t b, int32_t acc) {
#if defined(__ARM_FEATURE_DSP)
  int32_t r;
  __asm__("smlad %0, %1, %2, %3" : "=r"(r) : "r"(a), "r"(b), "r"(acc));
  return r;
#else
  return acc + (int32_t)(int16_t)a * (int16_t)b + (a >> 16) * (b >> 16);
#endif
}
#endif
"""


def _n(v: int) -> int:
    return max(1, int(v))  # a zero-length buffer is not allowed; an empty matrix reads nothing


# ---- f32 (x86 through LLVM) -------------------------------------------------------------------

def dense_mv_f32(rows: int, cols: int, width: int):
    """Dense W[rows, cols] @ x with a `width`-lane accumulator (cols padded to a multiple)."""
    cw = -(-cols // width)

    @T.prim_func
    def dense_mv(w: T.Buffer((rows * cw * width,), "float32"), x: T.Buffer((cw * width,), "float32"),
                 y: T.Buffer((rows,), "float32")):
        T.func_attr({"tirx.noalias": True})
        for i in range(rows):
            acc = T.decl_buffer((width,), "float32", scope="local")
            for l in T.vectorized(width):
                acc[l] = T.float32(0)
            for j in range(cw):
                for l in T.vectorized(width):
                    acc[l] = acc[l] + w[(i * cw + j) * width + l] * x[j * width + l]
            y[i] = T.float32(0)
            for l in range(width):
                y[i] = y[i] + acc[l]
    return dense_mv


def csr_mv_f32(rows: int, cols: int, nnz: int, index: str = "int32"):
    """Plain CSR: one index load, one gather of x and one multiply-add per stored weight."""
    @T.prim_func
    def csr_mv(values: T.Buffer((_n(nnz),), "float32"), indptr: T.Buffer((rows + 1,), index),
               indices: T.Buffer((_n(nnz),), index), x: T.Buffer((cols,), "float32"),
               y: T.Buffer((rows,), "float32")):
        T.func_attr({"tirx.noalias": True})
        for i in range(rows):
            acc = T.decl_buffer((1,), "float32", scope="local")
            acc[0] = T.float32(0)
            for k in range(T.Cast("int32", indptr[i]), T.Cast("int32", indptr[i + 1])):
                acc[0] = acc[0] + values[k] * x[T.Cast("int32", indices[k])]
            y[i] = acc[0]
    return csr_mv


def simd_group_mv_f32(rows: int, cols_pad: int, groups: int, width: int, index: str = "int32"):
    """Modified CSR: per group one index load, then `width`-lane loads of weights and inputs."""
    @T.prim_func
    def simd_group_mv(values: T.Buffer((_n(groups) * width,), "float32"), indptr: T.Buffer((rows + 1,), index),
                      indices: T.Buffer((_n(groups),), index), x: T.Buffer((cols_pad,), "float32"),
                      y: T.Buffer((rows,), "float32")):
        T.func_attr({"tirx.noalias": True})
        for i in range(rows):
            acc = T.decl_buffer((width,), "float32", scope="local")
            for l in T.vectorized(width):
                acc[l] = T.float32(0)
            for g in range(T.Cast("int32", indptr[i]), T.Cast("int32", indptr[i + 1])):
                for l in T.vectorized(width):
                    acc[l] = acc[l] + values[g * width + l] * x[T.Cast("int32", indices[g]) + l]
            y[i] = T.float32(0)
            for l in range(width):
                y[i] = y[i] + acc[l]
    return simd_group_mv


# ---- q15 (arm-m4 through C) -------------------------------------------------------------------

def dense_mv_q15(rows: int, cols: int):
    """Dense Q15 W @ x: per pair of columns one word of W, one word of x, one SMLAD.

    The pair loop is unrolled by the largest of 4, 5, 3, 2 dividing it (as CMSIS-NN's dense
    q15 kernels unroll): the baseline the sparse kernels must beat should be a good one.
    """
    c2 = -(-cols // 2)
    u = next(u for u in (4, 5, 3, 2, 1) if c2 % u == 0)

    @T.prim_func
    def dense_mv(w: T.Buffer((rows * c2,), "int32"), x: T.Buffer((c2,), "int32"),
                 y: T.Buffer((rows,), "int32")):
        T.func_attr({"tirx.noalias": True})
        for i in range(rows):
            y[i] = 0
            for j0 in range(c2 // u):
                for j1 in T.unroll(u):
                    y[i] = T.call_extern("int32", "cococ_smlad", w[i * c2 + j0 * u + j1], x[j0 * u + j1], y[i])
    return dense_mv


def csr_mv_q15(rows: int, cols: int, nnz: int, index: str = "int16"):
    """Plain CSR in Q15: one halfword weight, one index, one gathered input, one MLA each."""
    @T.prim_func
    def csr_mv(values: T.Buffer((_n(nnz),), "int16"), indptr: T.Buffer((rows + 1,), index),
               indices: T.Buffer((_n(nnz),), index), x: T.Buffer((cols,), "int16"),
               y: T.Buffer((rows,), "int32")):
        T.func_attr({"tirx.noalias": True})
        for i in range(rows):
            y[i] = 0
            for k in range(T.Cast("int32", indptr[i]), T.Cast("int32", indptr[i + 1])):
                y[i] = y[i] + T.Cast("int32", values[k]) * T.Cast("int32", x[T.Cast("int32", indices[k])])
    return csr_mv


def simd_group_mv_q15(rows: int, cols_pad: int, groups: int, index: str = "int16"):
    """Modified CSR, width 2: per group one word of A', one index of JA', one word of x, SMLAD."""
    @T.prim_func
    def simd_group_mv(values: T.Buffer((_n(groups),), "int32"), indptr: T.Buffer((rows + 1,), index),
                      indices: T.Buffer((_n(groups),), index), x: T.Buffer((cols_pad // 2,), "int32"),
                      y: T.Buffer((rows,), "int32")):
        T.func_attr({"tirx.noalias": True})
        for i in range(rows):
            y[i] = 0
            for g in range(T.Cast("int32", indptr[i]), T.Cast("int32", indptr[i + 1])):
                y[i] = T.call_extern("int32", "cococ_smlad", values[g],
                                       x[T.shift_right(T.Cast("int32", indices[g]), 1)], y[i])
    return simd_group_mv
