"""Sparse kernels for a Param: pick the TIR kernel by the param's format, build, and call it.

x86 (f32): `mv_x86(param)` builds the kernel through TVM's LLVM backend and returns a
function x -> y (numpy in, numpy out; the arrays of the param are handed to TVM once).
arm-m4 (q15): `kernel_q15(param, name)` gives the backends/mcu `Kernel` (TVM C codegen, a
plain C signature) and `q15_args(param)` the arrays in the memory layout it expects: Q15
pairs as int32 words for the SMLAD kernels, the dense weight's rows padded to an even
length. `c_file(kernels)` is a C file with the SIMD header inlined, ready for
arm-none-eabi-gcc (or the host compiler, which takes the header's portable fallback).
"""
from __future__ import annotations

import numpy as np

from cococ.backends.sparse import tir
from cococ.ir.core import CococError, Param
from cococ.ir.formats import cols_padded, matrix_shape

TVM_DTYPE = {np.dtype(np.int16): "int16", np.dtype(np.int32): "int32"}


def x86_target(width: int) -> dict:
    """TVM LLVM target dict; `width` f32 lanes need AVX2 (8) or AVX-512 (16)."""
    mattr = {16: ["+avx512f", "+avx2", "+fma"], 8: ["+avx2", "+fma"]}.get(width, ["+sse4.2"])
    return {"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mattr": mattr}


def _prim_x86(param: Param, width: int):
    rows, cols = matrix_shape(param.shape)
    if param.format == "dense":
        return tir.dense_mv_f32(rows, cols, width)
    a = param.arrays
    index = TVM_DTYPE[a["indices"].dtype]
    if param.format == "csr":
        return tir.csr_mv_f32(rows, cols, a["values"].size, index)
    if param.format == "simd_group":
        w = int(param.attrs["width"])
        return tir.simd_group_mv_f32(rows, cols_padded(param), a["indices"].size, w, index)
    raise CococError(f"no sparse kernel for param format '{param.format}'")


def mv_x86(param: Param, width: int = 8):
    """y = W @ x for one f32 vector, W in the param's own format, compiled by TVM (LLVM)."""
    import tvm

    if param.type.dtype != "f32":
        raise CococError(f"the x86 sparse kernels are f32; the param is {param.type.dtype}")
    rows, cols = matrix_shape(param.shape)
    lanes = int(param.attrs.get("width", width))
    with tvm.transform.PassContext(opt_level=3, config={"tirx.disable_assert": True}):
        lib = tvm.build(tvm.IRModule({"main": _prim_x86(param, width)}), target=tvm.target.Target(x86_target(lanes)))
    f = lib["main"]
    dev = tvm.cpu()
    if param.format == "dense":
        cw = -(-cols // width) * width
        w = np.zeros((rows, cw), np.float32)
        w[:, :cols] = param.dense().reshape(rows, cols)
        consts = [w.reshape(-1)]
        xlen = cw
    else:
        consts = [param.arrays[k] if param.arrays[k].size else np.zeros(1, param.arrays[k].dtype)
                  for k in ("values", "indptr", "indices")]
        xlen = cols_padded(param)
    consts = [tvm.runtime.tensor(np.ascontiguousarray(c), dev) for c in consts]
    xbuf = np.zeros(xlen, np.float32)
    y = tvm.runtime.tensor(np.zeros(rows, np.float32), dev)

    def run(x: np.ndarray) -> np.ndarray:
        xbuf[:cols] = np.asarray(x, np.float32).reshape(-1)
        f(*consts, tvm.runtime.tensor(xbuf, dev), y)
        return y.numpy()

    run.prepared = (f, consts, y)  # for benchmarks that time the bare call
    return run


# ---- arm-m4 q15 -------------------------------------------------------------------------------

def q15_args(param: Param) -> list[tuple[str, np.ndarray]]:
    """(name, array) in the kernel's argument order, laid out as the q15 kernel reads them."""
    rows, cols = matrix_shape(param.shape)
    if param.type.dtype != "i16":
        raise CococError(f"the q15 kernels need an i16 (Q15) weight; the param is {param.type.dtype}")
    if param.format == "dense":
        c2 = -(-cols // 2) * 2
        w = np.zeros((rows, c2), np.int16)
        w[:, :cols] = param.dense().reshape(rows, cols)
        return [("w", w.reshape(-1).view(np.int32))]
    a = param.arrays
    vals = a["values"]
    if param.format == "simd_group":
        if int(param.attrs["width"]) != 2:
            raise CococError("the q15 simd_group kernel is for width 2 (SMLAD); got "
                             f"width {param.attrs['width']}")
        vals = vals.view(np.int32) if vals.size else np.zeros(1, np.int32)
    elif param.format != "csr":
        raise CococError(f"no q15 kernel for param format '{param.format}'")
    fix = lambda v: v if v.size else np.zeros(1, v.dtype)  # noqa: E731
    return [("values", fix(vals)), ("indptr", a["indptr"]), ("indices", fix(a["indices"]))]


def x_q15(param: Param, x: np.ndarray) -> np.ndarray:
    """The input vector as the kernel reads it: int16, padded to an even length, as int32 words
    for the SMLAD kernels."""
    rows, cols = matrix_shape(param.shape)
    n = cols if param.format == "csr" else -(-cols // 2) * 2
    xb = np.zeros(n, np.int16)
    xb[:cols] = np.asarray(x).reshape(-1)
    return xb if param.format == "csr" else xb.view(np.int32)


def kernel_q15(param: Param, name: str):
    """The backends/mcu Kernel (TVM C codegen of cococ's TIR) for this Q15 param."""
    from cococ.backends.mcu.codegen import Kernel
    rows, cols = matrix_shape(param.shape)
    args = q15_args(param)
    if param.format == "dense":
        prim = tir.dense_mv_q15(rows, cols)
    else:
        index = TVM_DTYPE[param.arrays["indices"].dtype]
        n = param.arrays["indices"].size
        prim = tir.csr_mv_q15(rows, cols, n, index) if param.format == "csr" \
            else tir.simd_group_mv_q15(rows, cols_padded(param), n, index)
    xdt = "int16" if param.format == "csr" else "int32"
    sig = [(k, TVM_DTYPE[a.dtype], False) for k, a in args] + [("x", xdt, False), ("y", "int32", True)]
    return Kernel(name, prim, sig, origin="tvm-tir",
                  meta={"doc": f"{param.format} q15 matrix-vector {rows}x{cols}"})


def c_file(kernels) -> str:
    """One C translation unit: the SIMD header, then every kernel's TVM-generated function."""
    from cococ.backends.mcu.codegen import generate_c
    generate_c(kernels)
    head = tir.SIMD_HEADER.replace("#include <stdint.h>\n", "")
    return "#include <stdint.h>\n" + head + "\n" + "\n".join(k.source for k in kernels)
