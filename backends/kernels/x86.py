"""Build one of the library's f32 kernels with TVM's LLVM backend and call it from numpy.

`mv_x86(param)` returns x -> y = W @ x, `mm_x86(param, n)` X[cols, n] -> Y[rows, n]; the
param's arrays go to TVM once. `.prepared` holds the TVM function and its device tensors for
benchmarks that time the bare call. The x86 backend (backends/tvm/sparse.py) emits the same
kernels into a Relax module instead; tests and benchmarks/sparse_breakeven*.py use these.
"""
from __future__ import annotations

import numpy as np
import tvm

from cococ.backends.kernels import mm, mv
from cococ.backends.kernels.layout import TVM_DTYPE, sparse_arrays
from cococ.ir.core import CococError, Param
from cococ.ir.formats import cols_padded, matrix_shape


def x86_target(width: int) -> dict:
    """TVM LLVM target dict; `width` f32 lanes need AVX2 (8) or AVX-512 (16)."""
    mattr = {16: ["+avx512f", "+avx2", "+fma"], 8: ["+avx2", "+fma"]}.get(width, ["+sse4.2"])
    return {"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mattr": mattr}


def prim_mv_x86(param: Param, width: int = 8):
    """The f32 matrix-vector kernel of the param's format, specialised to its sizes (`width`:
    the dense kernel's lanes; a simd_group reads its own group width)."""
    rows, cols = matrix_shape(param.shape)
    if param.format == "dense":
        return mv.dense(rows, cols, "float32", width)
    n, index = param.arrays["indices"].size, TVM_DTYPE[param.arrays["indices"].dtype]
    if param.format == "csr":
        return mv.csr(rows, cols, n, index)
    if param.format == "simd_group":
        return mv.simd_group(rows, cols_padded(param), n, int(param.attrs["width"]), index)
    raise CococError(f"no sparse kernel for param format '{param.format}'")


def plan_mm_x86(param: Param, n: int, lanes: int):
    """(prim_func, rows_pad, cols_pad, n_pad) of the f32 matrix-matrix kernel of this param."""
    rows, cols = matrix_shape(param.shape)
    if param.format == "dense":
        vecs, rblock = 2, 4
        rows_pad, n_pad = -(-rows // rblock) * rblock, -(-n // (vecs * lanes)) * vecs * lanes
        return mm.dense_mm_f32(rows_pad, cols, n_pad, lanes, vecs, rblock), rows_pad, cols, n_pad
    vecs = 4
    n_pad = -(-n // (vecs * lanes)) * vecs * lanes
    if param.format not in ("csr", "simd_group"):
        raise CococError(f"no sparse kernel for param format '{param.format}'")
    g, index = param.arrays["indices"].size, TVM_DTYPE[param.arrays["indices"].dtype]
    width, cp = (1, cols) if param.format == "csr" else (int(param.attrs["width"]), cols_padded(param))
    return mm.sparse_mm_f32(rows, cp, n_pad, g, width, lanes, vecs, index), rows, cp, n_pad


def _compile(param: Param, prim, width: int):
    if param.type.dtype != "f32":
        raise CococError(f"the x86 sparse kernels are f32; the param is {param.type.dtype}")
    with tvm.transform.PassContext(opt_level=3, config={"tirx.disable_assert": True}):
        lib = tvm.build(tvm.IRModule({"main": prim}), target=tvm.target.Target(x86_target(width)))
    return lib["main"]


def _weights(param: Param, rows_pad: int, cols_pad: int) -> list:
    """The kernel's weight arguments on the CPU: the dense matrix zero-padded to [rows_pad,
    cols_pad], or the format's arrays."""
    if param.format == "dense":
        rows, cols = matrix_shape(param.shape)
        w = np.zeros((rows_pad, cols_pad), np.float32)
        w[:rows, :cols] = param.dense().reshape(rows, cols)
        arrays = [w.reshape(-1)]
    else:
        arrays = sparse_arrays(param)
    return [tvm.runtime.tensor(a, tvm.cpu()) for a in arrays]


def mv_x86(param: Param, width: int = 8):
    """y = W @ x for one f32 vector, W in the param's own format, compiled by TVM (LLVM)."""
    rows, cols = matrix_shape(param.shape)
    f = _compile(param, prim_mv_x86(param, width), int(param.attrs.get("width", width)))
    xlen = -(-cols // width) * width if param.format == "dense" else cols_padded(param)
    consts = _weights(param, rows, xlen)
    xbuf = np.zeros(xlen, np.float32)
    y = tvm.runtime.tensor(np.zeros(rows, np.float32), tvm.cpu())

    def run(x: np.ndarray) -> np.ndarray:
        xbuf[:cols] = np.asarray(x, np.float32).reshape(-1)
        f(*consts, tvm.runtime.tensor(xbuf, tvm.cpu()), y)
        return y.numpy()

    run.prepared = (f, consts, y)
    return run


def mm_x86(param: Param, n: int, width: int = 8):
    """Y = W @ X for f32 X[cols, n], W in the param's format; `width` = f32 lanes of a vector."""
    rows, cols = matrix_shape(param.shape)
    prim, rows_pad, cols_pad, n_pad = plan_mm_x86(param, n, width)
    f = _compile(param, prim, width)
    consts = _weights(param, rows_pad, cols)
    xbuf = np.zeros((cols_pad, n_pad), np.float32)
    xt = tvm.runtime.tensor(xbuf.reshape(-1), tvm.cpu())
    y = tvm.runtime.tensor(np.zeros(rows_pad * n_pad, np.float32), tvm.cpu())

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
