"""Pooling: max_pool, avg_pool (windows with Caffe's ceil mode), global_avg_pool, global_max_pool.

Caffe always rounds the output size up; ONNX and torch round down unless ceil_mode is set, so
`ceil_mode` is an attribute and the Caffe frontend sets it. All pools act on each channel
alone (passthrough for pruning) and carry no MACs.
"""
from __future__ import annotations

import numpy as np

from cococ.ir.core import TensorType
from cococ.ir.registry import PASSTHROUGH, Attr, Op, register, rule


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
    return _window_count(np.arange(out) * stride - lo, k, size, hi, include_pad, np.minimum, np.maximum)


def _window_count(start, k: int, size: int, hi: int, include_pad: bool, minimum, maximum):
    """Elements a window starting at `start` averages (numpy arrays or TE expressions, with the
    matching min/max): the one definition of the divisor, for the reference and the TVM rule."""
    if include_pad:  # window clipped to the padded extent [-lo, size + hi), as Caffe AVE and torch
        return minimum(start + k, size + hi) - start
    return minimum(start + k, size) - maximum(start, 0)


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
    def reach(cls, layer, h: int, w: int) -> tuple[int, int, int, int]:
        """(oh, ow, bottom, right): the output size and the bottom/right padding the windows
        actually reach (ceil mode may reach past the given pad; pad only that far)."""
        a = layer.attrs
        (kh, kw), (sh, sw), (t, l, _, _) = a["kernel"], a["stride"], a["pad"]
        oh, ow = cls.out_hw(layer, h, w)
        return oh, ow, max(0, (oh - 1) * sh + kh - h - t), max(0, (ow - 1) * sw + kw - w - l)

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
        oh, ow, hi_h, hi_w = cls.reach(layer, h, w)
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


def _torch_pool_pad(layer, x, fill: float, F):
    """Pad x so that an unpadded floor-mode torch sweep gives exactly the IR's windows; return
    (x, oh, ow). Explicit, not torch's `padding=`: the IR allows asymmetric pads and Caffe's ceil
    mode, and padding to exactly the windows `out_hw` keeps gives the interpreter's windows (and
    average divisors) in every case."""
    a = layer.attrs
    (kh, kw), (sh, sw), (t, l, _, _) = a["kernel"], a["stride"], a["pad"]
    h, w = x.shape[2:]
    oh, ow = _WindowPool.out_hw(layer, h, w)
    hi_h = max(0, (oh - 1) * sh + kh - h - t)
    hi_w = max(0, (ow - 1) * sw + kw - w - l)
    if t or l or hi_h or hi_w:
        x = F.pad(x, (l, hi_w, t, hi_h), value=fill)
    return x, oh, ow


def _window_tvm(layer, x, fill, ctx):
    """(read of one window element, reduce axes, output shape) of a window pool over x padded
    with `fill` as far as the windows reach."""
    a = layer.attrs
    n, c, h, w = (int(d) for d in x.shape)
    (kh, kw), (sh, sw), (t, l, _, _) = a["kernel"], a["stride"], a["pad"]
    oh, ow, hi_h, hi_w = _WindowPool.reach(layer, h, w)
    xp = ctx.pad(x, [0, 0, t, l], [0, 0, hi_h, hi_w], fill, "pool_pad")
    ry, rx = ctx.te.reduce_axis((0, kh), "ry"), ctx.te.reduce_axis((0, kw), "rx")
    return (lambda nn, cc, y, z: xp(nn, cc, y * sh + ry, z * sw + rx)), [ry, rx], (n, c, oh, ow)


@rule(MaxPool, "tvm")
def _max_pool_tvm(layer, xs, ps, ctx):
    """Padding is the type's lowest value: it never wins (every window sees the input). The
    reduction is `acc`, the accumulator's name in the arm-m4 C (a scalar there, see mcu/kernels)."""
    x = xs[0]
    win, red, shape = _window_tvm(layer, x, ctx.tirx.min_value(x.dtype), ctx)
    return [ctx.te.compute(shape, lambda n, c, y, z: ctx.te.max(win(n, c, y, z), axis=red), name="acc")]


@rule(MaxPool, "torch")
def _max_pool_torch(layer, xs, p, ctx):
    x, oh, ow = _torch_pool_pad(layer, xs[0], float("-inf"), ctx.F)
    return [ctx.F.max_pool2d(x, layer.attrs["kernel"], layer.attrs["stride"])[:, :, :oh, :ow]]


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


@rule(AvgPool, "tvm")
def _avg_pool_tvm(layer, xs, ps, ctx):
    te = ctx.te
    x = xs[0]
    a = layer.attrs
    win, red, shape = _window_tvm(layer, x, 0.0, ctx)
    s = te.compute(shape, lambda n, c, y, z: te.sum(win(n, c, y, z), axis=red), name="avg_sum")
    (kh, kw), (sh, sw), (t, l, b, r) = a["kernel"], a["stride"], a["pad"]
    h, w, inc = int(x.shape[2]), int(x.shape[3]), a["count_include_pad"]

    def f(n, c, y, z):
        d = (_window_count(y * sh - t, kh, h, b, inc, te.min, te.max)
             * _window_count(z * sw - l, kw, w, r, inc, te.min, te.max))
        return s[n, c, y, z] / d.astype(x.dtype)
    return [te.compute(shape, f, name="avg_pool")]


@rule(AvgPool, "torch")
def _avg_pool_torch(layer, xs, p, ctx):
    a = layer.attrs
    h, w = xs[0].shape[2:]
    x, oh, ow = _torch_pool_pad(layer, xs[0], 0.0, ctx.F)
    (kh, kw), (sh, sw), (t, l, b, r) = a["kernel"], a["stride"], a["pad"]
    s = ctx.F.avg_pool2d(x, (kh, kw), (sh, sw))[:, :, :oh, :ow] * (kh * kw)
    dh = _divisor(h, oh, kh, sh, t, b, a["count_include_pad"])
    dw = _divisor(w, ow, kw, sw, l, r, a["count_include_pad"])
    return [s / ctx.torch.as_tensor(np.outer(dh, dw), dtype=s.dtype, device=s.device)]


@rule((MaxPool, AvgPool), "onnx")
def _window_pool_onnx(b, layer, x, y):
    a = layer.attrs
    kw = dict(kernel_shape=a["kernel"], strides=a["stride"], pads=a["pad"], ceil_mode=int(a["ceil_mode"]))
    if layer.op == AvgPool.name:
        kw["count_include_pad"] = int(a["count_include_pad"])
    b.node("MaxPool" if layer.op == MaxPool.name else "AveragePool", x, y, **kw)


@rule((MaxPool, AvgPool), "caffe")
def _window_pool_caffe(layer, w):
    a = layer.attrs
    if layer.op == AvgPool.name and not a.get("count_include_pad", True):
        raise layer.error("Caffe's AVE pooling counts the padding; count_include_pad=false cannot be written")
    p = [("pool", w.Enum("MAX" if layer.op == MaxPool.name else "AVE"))]
    p += w.hw("kernel_size", "kernel_h", "kernel_w", a["kernel"]) + w.hw("stride", "stride_h", "stride_w", a["stride"])
    p += w.hw("pad", "pad_h", "pad_w", w.sym_pad(layer))
    if not a.get("ceil_mode", False):
        p.append(("round_mode", w.Enum("FLOOR")))      # Caffe's default is CEIL
    return "Pooling", [("pooling_param", p)]


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


@rule(GlobalAvgPool, "tvm")
def _global_avg_pool_tvm(layer, xs, ps, ctx):
    te = ctx.te
    x = xs[0]
    n, c, h, w = (int(d) for d in x.shape)
    ry, rx = te.reduce_axis((0, h), "ry"), te.reduce_axis((0, w), "rx")
    s = te.compute((n, c, 1, 1), lambda i, j, y, z: te.sum(x[i, j, ry, rx], axis=[ry, rx]), name="gap_sum")
    inv = ctx.tirx.const(1.0 / (h * w), x.dtype)
    return [te.compute(s.shape, lambda *i: s(*i) * inv, name="global_avg_pool")]


@rule(GlobalAvgPool, "torch")
def _global_avg_pool_torch(layer, xs, p, ctx):
    return [xs[0].mean(dim=(2, 3), keepdim=True)]


@register
class GlobalMaxPool(_GlobalPool):
    name = "global_max_pool"
    keeps_scale = True
    doc = "Max over H and W: [N, C, H, W] -> [N, C, 1, 1]."

    @staticmethod
    def compute(layer, inputs, params):
        return [inputs[0].max(axis=(2, 3), keepdims=True)]


@rule(GlobalMaxPool, "tvm")
def _global_max_pool_tvm(layer, xs, ps, ctx):
    te = ctx.te
    x = xs[0]
    n, c, h, w = (int(d) for d in x.shape)
    ry, rx = te.reduce_axis((0, h), "ry"), te.reduce_axis((0, w), "rx")
    return [te.compute((n, c, 1, 1), lambda i, j, y, z: te.max(x[i, j, ry, rx], axis=[ry, rx]), name="acc")]


@rule(GlobalMaxPool, "torch")
def _global_max_pool_torch(layer, xs, p, ctx):
    return [xs[0].amax(dim=(2, 3), keepdim=True)]


@rule((GlobalAvgPool, GlobalMaxPool), "onnx")
def _global_pool_onnx(b, layer, x, y):
    b.node("GlobalAveragePool" if layer.op == GlobalAvgPool.name else "GlobalMaxPool", x, y)


@rule((GlobalAvgPool, GlobalMaxPool), "caffe")
def _global_pool_caffe(layer, w):
    return "Pooling", [("pooling_param", [("pool", w.Enum("MAX" if layer.op == GlobalMaxPool.name else "AVE")),
                                          ("global_pooling", True)])]
