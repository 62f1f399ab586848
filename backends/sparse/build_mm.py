"""Sparse matrix-matrix (conv via im2col) kernels for a Param: pick, build, lay the arrays out.

x86 (f32): `mm_x86(param, n, width)` builds tir_mm's kernel through TVM's LLVM backend and
returns a function X[cols, n] -> Y[rows, n] (numpy in and out; it pads X into the kernel's
[cols_pad, n_pad] buffer). `.prepared = (f, consts, x, y)` holds the TVM function and its
padded device tensors, for benchmarks that time the bare call.

arm-m4 (q15), for a conv layer (what backends/mcu's executor calls; see tir_mm.py for why):

    kernel_q15_mm(param, name, n, ldy=None) -> backends.mcu.codegen.Kernel, C signature
      dense:      void name(const int32_t* w,      const int32_t* x, int32_t* y)
      csr:        void name(const int16_t* values, const IDX* indptr, const IDX* indices,
                            const int16_t* x, int32_t* y)
      simd_group: void name(const int32_t* values, const IDX* indptr, const IDX* indices,
                            const int32_t* x, int32_t* y)
      (all pointers `restrict`, inputs `const`; IDX = int16_t or int32_t, the param's index dtype)

    weights  `q15_args(param)` (build.py, the same arrays as the MV kernels): dense W as int32
             words [rows, k2/2] (rows zero-padded to even length k2), csr values int16[nnz] +
             indptr + indices, simd_group A' as int32 words [G] (pairs) + IA' + JA'.
    x        the im2col buffer, int16 XT[n, k2]: output position p's reduction vector
             (C*kh*kw inputs in the OIHW weight's I,kh,kw order) at x + p*k2, k2 = cols rounded
             up to even, the pad element 0; 4-byte aligned. Dense/simd_group read it as int32.
             `x_q15_mm(param, X)` makes it from X[cols, n].
    y        int32 accumulators (before requantisation), weight row r and position p at
             y[r*ldy + p]; ldy = n by default (Y[rows, n] = NCHW of the output for p =
             oh*out_w + ow). With ldy = N > n the caller runs the conv in chunks of n
             positions and passes y + first position of the chunk.

`mm_q15_c(param, name, n, ldy)` is the C translation unit (SIMD header + kernel) for
arm-none-eabi-gcc or a host compiler; m4.run_mm_on_m4 runs it on the emulated Cortex-M4.
"""
from __future__ import annotations

import numpy as np

from cococ.backends.sparse import tir_mm
from cococ.backends.sparse.build import TVM_DTYPE, c_file, q15_args, x86_target
from cococ.ir.core import CococError, Param
from cococ.ir.formats import cols_padded, matrix_shape


def _x86_plan(param: Param, n: int, lanes: int):
    """(prim_func, rows_pad, cols_pad, n_pad) for the x86 kernel of this param."""
    rows, cols = matrix_shape(param.shape)
    if param.format == "dense":
        vecs, rblock = 2, 4
        tile = vecs * lanes
        rows_pad, n_pad = -(-rows // rblock) * rblock, -(-n // tile) * tile
        return tir_mm.dense_mm_f32(rows_pad, cols, n_pad, lanes, vecs, rblock), rows_pad, cols, n_pad
    vecs = 4
    n_pad = -(-n // (vecs * lanes)) * vecs * lanes
    a = param.arrays
    index = TVM_DTYPE[a["indices"].dtype]
    if param.format == "csr":
        return tir_mm.csr_mm_f32(rows, cols, n_pad, a["values"].size, lanes, vecs, index), rows, cols, n_pad
    if param.format == "simd_group":
        cp = cols_padded(param)
        prim = tir_mm.simd_group_mm_f32(rows, cp, n_pad, a["indices"].size, int(param.attrs["width"]),
                                        lanes, vecs, index)
        return prim, rows, cp, n_pad
    raise CococError(f"no sparse kernel for param format '{param.format}'")


def mm_x86(param: Param, n: int, width: int = 8):
    """Y = W @ X for f32 X[cols, n], W in the param's format; `width` = f32 lanes of a vector."""
    import tvm

    if param.type.dtype != "f32":
        raise CococError(f"the x86 sparse kernels are f32; the param is {param.type.dtype}")
    rows, cols = matrix_shape(param.shape)
    prim, rows_pad, cols_pad, n_pad = _x86_plan(param, n, width)
    with tvm.transform.PassContext(opt_level=3, config={"tirx.disable_assert": True}):
        lib = tvm.build(tvm.IRModule({"main": prim}), target=tvm.target.Target(x86_target(width)))
    f = lib["main"]
    dev = tvm.cpu()
    if param.format == "dense":
        w = np.zeros((rows_pad, cols), np.float32)
        w[:rows] = param.dense().reshape(rows, cols)
        consts = [w.reshape(-1)]
    else:
        consts = [param.arrays[k] if param.arrays[k].size else np.zeros(1, param.arrays[k].dtype)
                  for k in ("values", "indptr", "indices")]
    consts = [tvm.runtime.tensor(np.ascontiguousarray(c), dev) for c in consts]
    xbuf = np.zeros((cols_pad, n_pad), np.float32)
    xt = tvm.runtime.tensor(xbuf.reshape(-1), dev)
    y = tvm.runtime.tensor(np.zeros(rows_pad * n_pad, np.float32), dev)

    def run(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float32)
        if x.shape != (cols, n):
            raise CococError(f"X must be [{cols}, {n}], got {list(x.shape)}")
        xbuf[:cols, :n] = x
        xt.copyfrom(xbuf.reshape(-1))
        f(*consts, xt, y)
        return y.numpy().reshape(rows_pad, n_pad)[:rows, :n]

    run.prepared = (f, consts, xt, y)
    run.layout = {"rows_pad": rows_pad, "cols_pad": cols_pad, "n_pad": n_pad}
    return run


# ---- arm-m4 q15 -------------------------------------------------------------------------------

def x_q15_mm(param: Param, x: np.ndarray) -> np.ndarray:
    """The im2col buffer the q15 MM kernel reads: X[cols, n] int16 -> XT[n, k2] (k2 even,
    zero-padded), flat; int32 words for dense/simd_group, int16 for csr."""
    _, cols = matrix_shape(param.shape)
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[0] != cols:
        raise CococError(f"X must be [{cols}, n], got {list(x.shape)}")
    k2 = -(-cols // 2) * 2
    xt = np.zeros((x.shape[1], k2), np.int16)
    xt[:, :cols] = x.T
    xt = xt.reshape(-1)
    return xt if param.format == "csr" else xt.view(np.int32)


def kernel_q15_mm(param: Param, name: str, n: int, ldy: int | None = None):
    """The backends/mcu Kernel of this Q15 param's MM over `n` positions (signature above)."""
    from cococ.backends.mcu.codegen import Kernel
    rows, cols = matrix_shape(param.shape)
    ldy = n if ldy is None else int(ldy)
    if ldy < n:
        raise CococError(f"ldy ({ldy}) must be at least n ({n})")
    args = q15_args(param)  # validates dtype, format and (simd_group) width 2
    if param.format == "dense":
        prim = tir_mm.dense_mm_q15(rows, cols, n, ldy)
    else:
        index = TVM_DTYPE[param.arrays["indices"].dtype]
        g = param.arrays["indices"].size
        prim = tir_mm.csr_mm_q15(rows, cols, n, g, ldy, index) if param.format == "csr" \
            else tir_mm.simd_group_mm_q15(rows, cols_padded(param), n, g, ldy, index)
    xdt = "int16" if param.format == "csr" else "int32"
    sig = [(k, TVM_DTYPE[a.dtype], False) for k, a in args] + [("x", xdt, False), ("y", "int32", True)]
    return Kernel(name, prim, sig, origin="tvm-tir",
                  meta={"doc": f"{param.format} q15 matrix-matrix {rows}x{cols} @ {cols}x{n} (ldy {ldy})"})


def mm_q15_c(param: Param, name: str, n: int, ldy: int | None = None) -> str:
    """C source (SIMD header inlined) of the q15 MM kernel."""
    return c_file([kernel_q15_mm(param, name, n, ldy)])
