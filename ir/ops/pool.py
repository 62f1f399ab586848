"""Pooling: max_pool, avg_pool (windows with Caffe's ceil mode), global_avg_pool, global_max_pool.

Caffe always rounds the output size up; ONNX and torch round down unless ceil_mode is set, so
`ceil_mode` is an attribute and the Caffe frontend sets it. All pools act on each channel
alone (passthrough for pruning) and carry no MACs.
"""
from __future__ import annotations

import numpy as np

from cococ.ir.core import TensorType
from cococ.ir.registry import PASSTHROUGH, Attr, Op, register


def pool_out_size(size: int, k: int, stride: int, lo: int, hi: int, ceil_mode: bool) -> int:
    """Output length of a pooling window sweep, as Caffe (ceil) and ONNX/torch (floor) compute it.

    In ceil mode a last window that would start at or after `size + lo` (inside the bottom/right
    padding only) is dropped: Caffe does this when pad > 0, torch always. With pad = 0 such a
    window only exists when stride > kernel, where Caffe pools an empty window; we drop it too.
    """
    span = size + lo + hi - k
    if not ceil_mode:
        return span // stride + 1
    out = -(-span // stride) + 1
    if (out - 1) * stride >= size + lo:
        out -= 1
    return out


def _divisor(size: int, out: int, k: int, stride: int, lo: int, hi: int, include_pad: bool) -> np.ndarray:
    """Per-position element count of the average-pool windows along one axis."""
    start = np.arange(out) * stride - lo
    if include_pad:  # window clipped to the padded extent [-lo, size + hi), as Caffe AVE and torch
        return np.minimum(start + k, size + hi) - start
    return np.minimum(start + k, size) - np.maximum(start, 0)


class _WindowPool(Op):
    """Shared attrs, checks and window sweep of max_pool and avg_pool."""

    attrs = {
        "kernel": Attr("ints", length=2),
        "stride": Attr("ints", default=[1, 1], length=2),
        "pad": Attr("ints", default=[0, 0, 0, 0], length=4),
        "ceil_mode": Attr("bool", default=False),
    }

    @staticmethod
    def verify(layer, in_types):
        a = layer.attrs
        if in_types[0].rank != 4:
            raise layer.error(f"{layer.op} input must be NCHW (rank 4), got {in_types[0]}")
        (kh, kw), t, l, b, r = a["kernel"], *a["pad"]
        if min(a["kernel"] + a["stride"]) < 1 or min(a["pad"]) < 0:
            raise layer.error(f"bad kernel/stride/pad {a['kernel']}/{a['stride']}/{a['pad']}")
        if max(t, b) >= kh or max(l, r) >= kw:  # Caffe's check: every window must see the input
            raise layer.error(f"pad {a['pad']} must be smaller than the kernel {a['kernel']}")

    @staticmethod
    def out_hw(layer, h: int, w: int) -> tuple[int, int]:
        a = layer.attrs
        t, l, b, r = a["pad"]
        oh = pool_out_size(h, a["kernel"][0], a["stride"][0], t, b, a["ceil_mode"])
        ow = pool_out_size(w, a["kernel"][1], a["stride"][1], l, r, a["ceil_mode"])
        if oh < 1 or ow < 1:
            raise layer.error(f"kernel {a['kernel']} does not fit input {h}x{w} (output would be {oh}x{ow})")
        return oh, ow

    @classmethod
    def infer(cls, layer, in_types):
        n, c, h, w = in_types[0].shape
        return [TensorType((n, c, *cls.out_hw(layer, h, w)), in_types[0].dtype)]

    @classmethod
    def sweep(cls, layer, x: np.ndarray, fill: float, reduce) -> np.ndarray:
        """Pad x with `fill` and fold every kernel offset's strided view with `reduce`."""
        a = layer.attrs
        n, c, h, w = x.shape
        (kh, kw), (sh, sw), (t, l, _, _) = a["kernel"], a["stride"], a["pad"]
        oh, ow = cls.out_hw(layer, h, w)
        # pad only as far as the windows reach (ceil mode may reach past the given pad)
        hi_h = max(0, (oh - 1) * sh + kh - h - t)
        hi_w = max(0, (ow - 1) * sw + kw - w - l)
        xp = np.pad(x, ((0, 0), (0, 0), (t, hi_h), (l, hi_w)), constant_values=fill)
        acc = None
        for i in range(kh):
            for j in range(kw):
                v = xp[:, :, i: i + sh * (oh - 1) + 1: sh, j: j + sw * (ow - 1) + 1: sw]
                acc = v.copy() if acc is None else reduce(acc, v, out=acc)
        return acc

    @staticmethod
    def channels(layer, in_types):
        return PASSTHROUGH


@register
class MaxPool(_WindowPool):
    name = "max_pool"
    keeps_scale = True
    doc = ("Max over kernel windows; pad = [top, left, bottom, right] never wins (padding is "
           "-inf, as Caffe, torch and ONNX). Output size: see pool_out_size (Caffe's ceil mode).")

    @classmethod
    def compute(cls, layer, inputs, params):
        return [cls.sweep(layer, inputs[0], -np.inf, np.maximum)]


@register
class AvgPool(_WindowPool):
    name = "avg_pool"
    doc = ("Mean over kernel windows; padding adds zeros. count_include_pad=true (Caffe AVE, torch's "
           "default) divides by the window clipped to the padded extent [-pad_lo, size + pad_hi), so "
           "a ceil-mode window hanging past the padding counts only what lies inside it; "
           "count_include_pad=false (ONNX's default) divides by the input elements in the window.")
    attrs = {**_WindowPool.attrs, "count_include_pad": Attr("bool", default=True)}

    @classmethod
    def compute(cls, layer, inputs, params):
        x = inputs[0]
        a = layer.attrs
        s = cls.sweep(layer, np.asarray(x, dtype=np.float32), 0.0, np.add)
        _, _, h, w = x.shape
        t, l, b, r = a["pad"]
        inc = a["count_include_pad"]
        dh = _divisor(h, s.shape[2], a["kernel"][0], a["stride"][0], t, b, inc)
        dw = _divisor(w, s.shape[3], a["kernel"][1], a["stride"][1], l, r, inc)
        return [(s / np.outer(dh, dw).astype(np.float32)).astype(x.dtype, copy=False)]


class _GlobalPool(Op):
    @staticmethod
    def verify(layer, in_types):
        if in_types[0].rank != 4:
            raise layer.error(f"{layer.op} input must be NCHW (rank 4), got {in_types[0]}")

    @staticmethod
    def infer(layer, in_types):
        n, c = in_types[0].shape[:2]
        return [TensorType((n, c, 1, 1), in_types[0].dtype)]

    @staticmethod
    def channels(layer, in_types):
        return PASSTHROUGH


@register
class GlobalAvgPool(_GlobalPool):
    name = "global_avg_pool"
    doc = "Mean over H and W: [N, C, H, W] -> [N, C, 1, 1]."

    @staticmethod
    def compute(layer, inputs, params):
        x = inputs[0]
        return [x.mean(axis=(2, 3), keepdims=True, dtype=np.float32).astype(x.dtype, copy=False)]


@register
class GlobalMaxPool(_GlobalPool):
    name = "global_max_pool"
    keeps_scale = True
    doc = "Max over H and W: [N, C, H, W] -> [N, C, 1, 1]."

    @staticmethod
    def compute(layer, inputs, params):
        return [inputs[0].max(axis=(2, 3), keepdims=True)]
