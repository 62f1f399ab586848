"""The kernel library's sparse kernels as backends/mcu Kernels (C through TVM's codegen).

Layer steps (what the executor runs, sparse.py): the format's loop with the layer's epilogue
(backends/kernels/layer.py); here the q15 epilogue is the dense q15 path's requantisation
(the qkernels.requant macro: per-row multiplier and shift, the fast SMULL form when every shift
allows it, saturation, ReLU as the lower clamp), so a sparse step's output equals the dense
step's. Bare kernels (benchmarks, tests; emulate.py runs them alone): the library's q15
matrix-vector and matrix-matrix loops (mv.py, mm.py) with int32 accumulators out, and `c_file`,
their C with the SIMD header inlined.
"""
from __future__ import annotations

from cococ.backends.kernels import layer, mm, mv
from cococ.backends.kernels.layer import Epilogue, Fused
from cococ.backends.kernels.layout import TVM_DTYPE, q15_args
from cococ.backends.mcu.codegen import Kernel, generate_c
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
