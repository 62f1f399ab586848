"""The arrays of a compressed Param as cococ's kernels read them.

TVM buffers cannot be empty, so an empty matrix's arrays get one element (`nonempty`); the
kernels never read it. q15 (arm-m4): the dense weight's rows are padded to an even length and
read as int32 words (two Q15 values per SMLAD), a simd_group's A' likewise (width 2 only), x
is padded to an even length and read as words by the dense and simd_group kernels.
"""
from __future__ import annotations

import numpy as np

from cococ.ir.core import CococError, Param
from cococ.ir.formats import matrix_shape

TVM_DTYPE = {np.dtype(np.int16): "int16", np.dtype(np.int32): "int32"}


def nonempty(v: int) -> int:
    """A buffer length TVM accepts: at least one element."""
    return max(1, int(v))


def filled(a: np.ndarray) -> np.ndarray:
    """`a`, or one zero of its dtype when it is empty (C and TVM have no empty arrays)."""
    return a if a.size else np.zeros(1, a.dtype)


def sparse_arrays(param: Param) -> list[np.ndarray]:
    """values, indptr, indices of a csr / simd_group param, none of them empty."""
    return [np.ascontiguousarray(filled(param.arrays[k])) for k in ("values", "indptr", "indices")]


def q15_args(param: Param) -> list[tuple[str, np.ndarray]]:
    """(name, array) in the q15 kernel's argument order, laid out as it reads them."""
    rows, cols = matrix_shape(param.shape)
    if param.type.dtype != "i16":
        raise CococError(f"the q15 kernels need an i16 (Q15) weight; the param is {param.type.dtype}")
    if param.format == "dense":
        w = np.zeros((rows, -(-cols // 2) * 2), np.int16)
        w[:, :cols] = param.dense().reshape(rows, cols)
        return [("w", w.reshape(-1).view(np.int32))]
    a = param.arrays
    vals = a["values"]
    if param.format == "simd_group":
        if int(param.attrs["width"]) != 2:
            raise CococError("the q15 simd_group kernel is for width 2 (SMLAD); got "
                             f"width {param.attrs['width']}")
        vals = vals.view(np.int32)
    elif param.format != "csr":
        raise CococError(f"no q15 kernel for param format '{param.format}'")
    return [("values", filled(vals)), ("indptr", a["indptr"]), ("indices", filled(a["indices"]))]


def x_q15(param: Param, x: np.ndarray) -> np.ndarray:
    """The input vector as the MV kernel reads it: int16, padded to an even length, as int32
    words for the SMLAD kernels."""
    return x_q15_mm(param, np.asarray(x).reshape(-1, 1))


def x_q15_mm(param: Param, x: np.ndarray) -> np.ndarray:
    """The im2col buffer the q15 MM kernel reads: X[cols, n] int16 -> XT[n, k2] (k2 even,
    zero-padded), flat; int32 words for dense/simd_group, int16 for csr."""
    _, cols = matrix_shape(param.shape)
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[0] != cols:
        raise CococError(f"X must be [{cols}, n], got {list(x.shape)}")
    xt = np.zeros((x.shape[1], -(-cols // 2) * 2), np.int16)
    xt[:, :cols] = x.T
    xt = xt.reshape(-1)
    return xt if param.format == "csr" else xt.view(np.int32)
