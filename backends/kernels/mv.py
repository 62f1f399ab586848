"""Sparse matrix-vector kernels as TIR (TVMScript): data-dependent loops over indptr/indices.

TVM 0.27 has no sparse operators, so these loop nests are cococ's own: one generator per
format (`dense`, `csr`, `simd_group`), for `dtype` "float32" or "q15" (the branch is taken
when the generator runs: each kernel is one of the two). Each specialises one kernel to a
layer's sizes (rows, cols, stored count, index dtype): a compiler knows them at build time,
and constant bounds let TVM and the C compiler drop every shape check. All kernels compute
y = W @ x for one input vector (FC, batch 1).

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

from cococ.backends.kernels.layout import nonempty

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


@T.macro
def _zero(acc, width):
    for l in T.vectorized(width):
        acc[l] = T.float32(0)


@T.macro
def _sum_lanes(y, i, acc, width):
    """y[i] = the sum of the f32 accumulator's lanes (once per row)."""
    y[i] = T.float32(0)
    for l in range(width):
        y[i] = y[i] + acc[l]


def dense(rows: int, cols: int, dtype: str = "float32", width: int = 8):
    """Dense W[rows, cols] @ x. f32: a `width`-lane accumulator, cols padded to a multiple of
    `width`. q15: per pair of columns one word of W, one word of x, one SMLAD; the pair loop
    unrolled by the largest of 4, 5, 3, 2 dividing it (as CMSIS-NN's dense q15 kernels unroll):
    the baseline the sparse kernels must beat should be a good one."""
    f32 = dtype == "float32"
    cw = -(-cols // width) * width if f32 else -(-cols // 2)   # x elements (f32) or words (q15)
    u = next(u for u in (4, 5, 3, 2, 1) if cw % u == 0)
    elem = "float32" if f32 else "int32"

    @T.prim_func
    def dense_mv(w: T.Buffer((rows * cw,), elem), x: T.Buffer((cw,), elem), y: T.Buffer((rows,), elem)):
        T.func_attr({"tirx.noalias": True})
        for i in range(rows):
            if f32:
                acc = T.decl_buffer((width,), "float32", scope="local")
                _zero(acc, width)
                for j in range(cw // width):
                    for l in T.vectorized(width):
                        acc[l] = acc[l] + w[i * cw + j * width + l] * x[j * width + l]
                _sum_lanes(y, i, acc, width)
            else:
                y[i] = 0
                for j0 in range(cw // u):
                    for j1 in T.unroll(u):
                        y[i] = T.call_extern("int32", "cococ_smlad", w[i * cw + j0 * u + j1], x[j0 * u + j1], y[i])
    return dense_mv


def csr(rows: int, cols: int, nnz: int, index: str = "int32", dtype: str = "float32"):
    """Plain CSR: per stored weight one index load, one gather of x and one multiply-add (q15:
    halfword weight and input, one MLA into the int32 y)."""
    f32 = dtype == "float32"
    elem, out = ("float32", "float32") if f32 else ("int16", "int32")

    @T.prim_func
    def csr_mv(values: T.Buffer((nonempty(nnz),), elem), indptr: T.Buffer((rows + 1,), index),
               indices: T.Buffer((nonempty(nnz),), index), x: T.Buffer((cols,), elem),
               y: T.Buffer((rows,), out)):
        T.func_attr({"tirx.noalias": True})
        for i in range(rows):
            if f32:
                acc = T.decl_buffer((1,), "float32", scope="local")
                acc[0] = T.float32(0)
                for k in range(T.Cast("int32", indptr[i]), T.Cast("int32", indptr[i + 1])):
                    acc[0] = acc[0] + values[k] * x[T.Cast("int32", indices[k])]
                y[i] = acc[0]
            else:
                y[i] = 0
                for k in range(T.Cast("int32", indptr[i]), T.Cast("int32", indptr[i + 1])):
                    y[i] = y[i] + T.Cast("int32", values[k]) * T.Cast("int32", x[T.Cast("int32", indices[k])])
    return csr_mv


def simd_group(rows: int, cols_pad: int, groups: int, width: int, index: str = "int32", dtype: str = "float32"):
    """Modified CSR: per group one index load. f32: `width`-lane loads of weights and inputs.
    q15 (width 2): one word of A', one word of x (JA' >> 1), one SMLAD."""
    f32 = dtype == "float32"
    vals, xlen, elem = (nonempty(groups) * width, cols_pad, "float32") if f32 else \
        (nonempty(groups), cols_pad // 2, "int32")

    @T.prim_func
    def simd_group_mv(values: T.Buffer((vals,), elem), indptr: T.Buffer((rows + 1,), index),
                      indices: T.Buffer((nonempty(groups),), index), x: T.Buffer((xlen,), elem),
                      y: T.Buffer((rows,), elem)):
        T.func_attr({"tirx.noalias": True})
        for i in range(rows):
            if f32:
                acc = T.decl_buffer((width,), "float32", scope="local")
                _zero(acc, width)
                for g in range(T.Cast("int32", indptr[i]), T.Cast("int32", indptr[i + 1])):
                    for l in T.vectorized(width):
                        acc[l] = acc[l] + values[g * width + l] * x[T.Cast("int32", indices[g]) + l]
                _sum_lanes(y, i, acc, width)
            else:
                y[i] = 0
                for g in range(T.Cast("int32", indptr[i]), T.Cast("int32", indptr[i + 1])):
                    y[i] = T.call_extern("int32", "cococ_smlad", values[g],
                                         x[T.shift_right(T.Cast("int32", indices[g]), 1)], y[i])
    return simd_group_mv
