"""Compressed Param formats: plain CSR and Scalpel's SIMD-group CSR (seed 004 §3.3, fig. 8).

Both formats store a weight as its 2-D matrix view W[rows, cols]: rows = shape[0] (output
channels / features), cols = prod(shape[1:]) (the reduction axis; a conv's OIHW weight is
its im2col matrix [O, I*kh*kw]). `decompress` gives back the logical shape.

csr          values[nnz]   the kept weights, row after row
             indptr[rows+1] index into `values` of each row's first element (last = nnz)
             indices[nnz]  the column of each kept weight

simd_group   (attrs: width)  Scalpel's modified CSR. The columns are cut into aligned groups
             of `width` (the SIMD width of the target: 2 q15 lanes on a Cortex-M4); the row
             tail is padded with zeros up to a multiple of `width`.
             values[G*width]  A': the kept groups' weights, group after group, in row order
             indptr[rows+1]   IA': index of each row's first *group* (multiply by width for
                              the offset into `values`; last = G). Scalpel counts elements;
                              counting groups keeps the array narrower and saves a shift-free
                              compare in the kernel loop.
             indices[G]       JA': one column per group, its first column (a multiple of width)

A kernel reading a simd_group weight reads x[j .. j+width-1] for every group: the input
vector must be padded to `cols_padded(param)` when cols is not a multiple of width.

Index arrays are i16 when every index fits (Scalpel's Cortex-M4 layout: a 100x100 layer
needs no 32-bit index), else i32; `index_dtype="i32"` forces the wide form. `sparsity`
counts the weights that are not stored: the stored-but-zero weights inside a kept group are
what SIMD-group pruning pays for its regular layout.
"""
from __future__ import annotations

import numpy as np

from cococ.ir.core import CococError, Param

FORMATS = ("dense", "csr", "simd_group")
_ARRAYS = {"csr": ("values", "indptr", "indices"), "simd_group": ("values", "indptr", "indices")}


def matrix_shape(shape: tuple[int, ...]) -> tuple[int, int]:
    """(rows, cols) of the 2-D view: rows on axis 0, everything else flattened (im2col)."""
    if len(shape) < 2:
        raise CococError(f"a compressed weight needs rank >= 2, got shape {list(shape)}")
    return int(shape[0]), int(np.prod(shape[1:], dtype=np.int64))


def cols_padded(param: Param) -> int:
    """Length the input vector of a kernel reading `param` must have (tail groups padded)."""
    _, cols = matrix_shape(param.shape)
    w = int(param.attrs.get("width", 1)) if param.format == "simd_group" else 1
    return -(-cols // w) * w


def _index_dtype(limit: int, index_dtype: str) -> np.dtype:
    if index_dtype == "auto":
        return np.dtype(np.int16 if limit < 2 ** 15 else np.int32)
    if index_dtype not in ("i16", "i32"):
        raise CococError(f"index_dtype must be auto, i16 or i32, got {index_dtype!r}")
    if index_dtype == "i16" and limit >= 2 ** 15:
        raise CococError(f"indices up to {limit} do not fit in i16")
    return np.dtype(np.int16 if index_dtype == "i16" else np.int32)


def group_view(w2: np.ndarray, width: int) -> np.ndarray:
    """W[rows, cols] -> [rows, ngroups, width], the row tail padded with zeros."""
    rows, cols = w2.shape
    pad = -(-cols // width) * width - cols
    if pad:
        w2 = np.concatenate([w2, np.zeros((rows, pad), w2.dtype)], axis=1)
    return w2.reshape(rows, -1, width)


def compress(param: Param | np.ndarray, format: str, *, width: int = 1, keep: np.ndarray | None = None,
             index_dtype: str = "auto") -> Param:
    """A new Param holding `param`'s weights in `format`.

    Without `keep`, zero elements (csr) or all-zero groups (simd_group) are dropped; `keep`
    (bool, [rows, cols] for csr, [rows, ngroups] for simd_group) chooses explicitly, so a
    pruning pass can drop what it decided without first writing zeros. Quantization attrs
    (scale, zero point) are carried over.
    """
    p = param if isinstance(param, Param) else Param.from_array(np.asarray(param))
    w = p.dense()
    rows, cols = matrix_shape(w.shape)
    w2 = np.ascontiguousarray(w).reshape(rows, cols)
    attrs = {k: v for k, v in p.attrs.items() if k != "width"}
    if format == "dense":
        return Param(p.type, w.copy(), attrs=attrs)
    if format == "csr":
        mask = (w2 != 0) if keep is None else np.asarray(keep, bool).reshape(rows, cols)
        r, c = np.nonzero(mask)
        nnz = len(c)
        it = _index_dtype(max(nnz, cols), index_dtype)
        indptr = np.zeros(rows + 1, np.int64)
        np.cumsum(np.bincount(r, minlength=rows), out=indptr[1:])
        arrays = {"values": w2[r, c].astype(w.dtype), "indptr": indptr.astype(it), "indices": c.astype(it)}
        return Param(p.type, None, format="csr", arrays=arrays, attrs=attrs)
    if format == "simd_group":
        if width < 1:
            raise CococError(f"simd_group width must be >= 1, got {width}")
        g = group_view(w2, width)
        mask = (g != 0).any(-1) if keep is None else np.asarray(keep, bool).reshape(g.shape[:2])
        r, gi = np.nonzero(mask)
        ngroups = len(gi)
        it = _index_dtype(max(ngroups, g.shape[1] * width), index_dtype)
        indptr = np.zeros(rows + 1, np.int64)
        np.cumsum(np.bincount(r, minlength=rows), out=indptr[1:])
        arrays = {"values": g[r, gi].reshape(-1).astype(w.dtype), "indptr": indptr.astype(it),
                  "indices": (gi * width).astype(it)}
        return Param(p.type, None, format="simd_group", arrays=arrays, attrs={**attrs, "width": int(width)})
    raise CococError(f"unknown param format '{format}' (known: {', '.join(FORMATS)})")


def check(param: Param) -> None:
    """Raise CococError if a compressed param's arrays are inconsistent (used by decompress)."""
    if param.format not in _ARRAYS:
        raise CococError(f"unknown param format '{param.format}' (known: {', '.join(FORMATS)})")
    missing = [a for a in _ARRAYS[param.format] if a not in param.arrays]
    if missing:
        raise CococError(f"{param.format} param lacks array(s) {', '.join(missing)}")
    rows, cols = matrix_shape(param.shape)
    vals, indptr, indices = (param.arrays[a] for a in _ARRAYS[param.format])
    width = int(param.attrs.get("width", 0)) if param.format == "simd_group" else 1
    if width < 1:
        raise CococError("simd_group param needs attr width >= 1")
    if indptr.shape != (rows + 1,):
        raise CococError(f"{param.format}: indptr has {indptr.size} entries, expected rows+1 = {rows + 1}")
    n = int(indptr[-1]) if rows >= 0 else 0
    if indptr[0] != 0 or np.any(np.diff(indptr.astype(np.int64)) < 0) or indices.size != n \
            or vals.size != n * width:
        raise CococError(f"{param.format}: indptr/indices/values sizes disagree "
                         f"(indptr[-1]={n}, indices={indices.size}, values={vals.size}, width={width})")
    if n and (indices.min() < 0 or indices.max() + width > -(-cols // width) * width
              or (width > 1 and np.any(indices % width))):
        raise CococError(f"{param.format}: column indices out of range or not aligned to width {width}")


def decompress(param: Param) -> np.ndarray:
    """The dense array in the param's logical shape."""
    if param.format == "dense":
        return param.dense()
    check(param)
    rows, cols = matrix_shape(param.shape)
    vals, indptr, indices = (param.arrays[a] for a in _ARRAYS[param.format])
    width = int(param.attrs.get("width", 1)) if param.format == "simd_group" else 1
    row_of = np.repeat(np.arange(rows), np.diff(indptr.astype(np.int64)))
    out = np.zeros((rows, -(-cols // width) * width), dtype=param.type.np_dtype)
    cols_all = (indices.astype(np.int64)[:, None] + np.arange(width)[None, :]).reshape(-1)
    out[np.repeat(row_of, width), cols_all] = vals.reshape(-1)
    return out[:, :cols].reshape(param.shape)


def stored_count(param: Param) -> int:
    """Weights stored (the padded tail of a group excluded)."""
    rows, cols = matrix_shape(param.shape)
    if param.format == "dense":
        return int(np.count_nonzero(param.dense()))
    if param.format == "csr":
        return int(param.arrays["values"].size)
    width = int(param.attrs["width"])
    cols_all = param.arrays["indices"].astype(np.int64)[:, None] + np.arange(width)[None, :]
    return int((cols_all < cols).sum())


def sparsity(param: Param) -> float:
    """Fraction of the logical weights not stored (for dense: the fraction of zeros)."""
    size = param.type.size
    return 1.0 - stored_count(param) / size if size else 0.0


__all__ = ["FORMATS", "compress", "decompress", "sparsity", "check", "matrix_shape", "cols_padded",
           "group_view", "stored_count"]
