"""resize: nearest and bilinear resampling of H and W (ONNX Resize and Upsample, torch interpolate).

Both modes are separable: each output row (column) reads at most two input rows (columns) with
fixed weights, so the op is defined by one table per axis, (i0, i1, lambda) per output index,
computed once in float32 exactly as ONNX specifies (and onnxruntime computes): the output
coordinate maps back to the input by `coord` (half_pixel, align_corners, asymmetric, ...),
then nearest rounds it by `nearest` and clamps, while linear clamps it to [0, in-1] and blends
its two neighbours. Every backend reads the same tables (the TVM rule as constants, in float32
so that the M4's weights take them as they are). The coordinate scale is out/in unless `scales`
says otherwise (an ONNX model that gives scales maps coordinates by them, not by the sizes).
"""
from __future__ import annotations

import numpy as np

from cococ.ir.core import TensorType
from cococ.ir.registry import PASSTHROUGH, Attr, Op, register, rule

COORDS = ("half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric", "tf_half_pixel_for_nn")
ROUNDINGS = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")


def axis_table(n_in: int, n_out: int, scale: float, mode: str, coord: str, nearest: str) -> np.ndarray:
    """[n_out, 3] float32: the two input indices and the second one's weight for each output index."""
    f = np.float32
    x, s = np.arange(n_out, dtype=f), f(scale)
    if coord == "align_corners":
        src = x * f(n_in - 1) / f(n_out - 1) if n_out > 1 else np.zeros_like(x)
    elif coord == "asymmetric":
        src = x / s
    elif coord == "tf_half_pixel_for_nn":
        src = (x + f(0.5)) / s
    elif coord == "pytorch_half_pixel" and n_out == 1:
        src = np.zeros_like(x)
    else:  # half_pixel, pytorch_half_pixel
        src = (x + f(0.5)) / s - f(0.5)
    if mode == "nearest":
        rnd = {"round_prefer_floor": lambda v: np.ceil(v - f(0.5)), "round_prefer_ceil": lambda v: np.floor(v + f(0.5)),
               "floor": np.floor, "ceil": np.ceil}[nearest]
        i0 = np.clip(rnd(src), 0, n_in - 1)
        return np.stack([i0, i0, np.zeros_like(i0)], axis=1).astype(f)
    src = np.clip(src, f(0), f(n_in - 1))
    i0 = np.floor(src)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return np.stack([i0, i1, src - i0], axis=1).astype(f)


def tables(layer, in_shape) -> dict[str, np.ndarray]:
    """The H and W tables of `layer` for an input of shape `in_shape` (NCHW)."""
    a = layer.attrs
    out = {}
    for k, (axis, n_out) in zip(("h", "w"), enumerate(a["size"], 2)):
        n_in = int(in_shape[axis])
        scale = a["scales"][axis - 2] if a.get("scales") else np.float32(n_out) / np.float32(n_in)
        out[k] = axis_table(n_in, int(n_out), scale, a["mode"], a["coord"], a["nearest"])
    return out


def resample(x, t: dict[str, np.ndarray], linear: bool, take, blend):
    """The resize of x by its tables, given how to gather along an axis (take(x, idx, axis)) and how
    to blend two gathers by a weight vector on an axis (blend(a, b, w, axis)): numpy and torch alike."""
    h, w = t["h"], t["w"]
    i = lambda col: col.astype(np.int64)  # noqa: E731
    if not linear:
        return take(take(x, i(h[:, 0]), 2), i(w[:, 0]), 3)
    rows = [take(x, i(h[:, k]), 2) for k in (0, 1)]
    cols = [blend(take(r, i(w[:, 0]), 3), take(r, i(w[:, 1]), 3), w[:, 2], 3) for r in rows]
    return blend(cols[0], cols[1], h[:, 2], 2)


def _np_blend(a, b, lam, axis):
    lam = lam.reshape((-1,) + (1,) * (a.ndim - axis - 1))
    return a + (b - a) * lam


@register
class Resize(Op):
    name = "resize"
    no_rules = {"caffe": "BVLC Caffe has no resize layer (its upsampling is a Deconvolution with fixed "
                         "bilinear weights, which cococ's IR does not have)"}
    doc = ("Resamples H, W of NCHW to `size`: mode nearest (rounding `nearest`) or linear (bilinear), "
           "output coordinates mapped back by `coord` as in ONNX Resize; `scales` (h, w) override out/in "
           "in that mapping.")
    attrs = {"size": Attr("ints", length=2), "mode": Attr("str", default="nearest", choices=("nearest", "linear")),
             "coord": Attr("str", default="half_pixel", choices=COORDS),
             "nearest": Attr("str", default="round_prefer_floor", choices=ROUNDINGS),
             "scales": Attr("floats", optional=True, length=2)}

    @staticmethod
    def verify(layer, in_types):
        x = in_types[0]
        if x.rank != 4:
            raise layer.error(f"resize takes an NCHW tensor, got {x}")
        if min(layer.attrs["size"]) < 1 or (layer.attrs.get("scales") and min(layer.attrs["scales"]) <= 0):
            raise layer.error(f"resize size {layer.attrs['size']} / scales {layer.attrs.get('scales')} "
                              "must be positive")

    @staticmethod
    def infer(layer, in_types):
        x = in_types[0]
        return [TensorType(x.shape[:2] + tuple(int(d) for d in layer.attrs["size"]), x.dtype)]

    @staticmethod
    def compute(layer, inputs, params):
        x = inputs[0]
        y = resample(x, tables(layer, x.shape), layer.attrs["mode"] == "linear",
                     lambda a, idx, ax: np.take(a, idx, axis=ax), _np_blend)
        return [np.ascontiguousarray(y, dtype=x.dtype)]

    @staticmethod
    def channels(layer, in_types):
        return PASSTHROUGH


@rule(Resize, "tvm-params")
def _resize_tvm_params(layer, ctx):
    return tables(layer, layer.inputs[0].type.shape)


@rule(Resize, "tvm")
def _resize_tvm(layer, xs, ps, ctx):
    x, te, h, w = xs[0], ctx.te, ps["h"], ps["w"]
    n, c = x.shape[:2]
    ix = lambda t, i, k: t[i, k].astype("int32")  # noqa: E731
    if layer.attrs["mode"] == "nearest":
        return [te.compute((n, c, h.shape[0], w.shape[0]), lambda b, ch, i, j: x[b, ch, ix(h, i, 0), ix(w, j, 0)],
                           name="resize")]

    def f(b, ch, i, j):
        def row(k):
            a, bb = x[b, ch, ix(h, i, k), ix(w, j, 0)], x[b, ch, ix(h, i, k), ix(w, j, 1)]
            return a + (bb - a) * w[j, 2]
        r0, r1 = row(0), row(1)
        return r0 + (r1 - r0) * h[i, 2]
    return [te.compute((n, c, h.shape[0], w.shape[0]), f, name="resize")]


@rule(Resize, "torch")
def _resize_torch(layer, xs, p, ctx):
    """The same tables as index and weight tensors (F.interpolate covers only some coordinate modes)."""
    x, torch = xs[0], ctx.torch

    def take(a, idx, ax):
        return torch.index_select(a, ax, torch.as_tensor(idx, device=a.device))

    def blend(a, b, lam, ax):
        lam = torch.as_tensor(lam.reshape((-1,) + (1,) * (a.dim() - ax - 1)), device=a.device, dtype=a.dtype)
        return a + (b - a) * lam
    return [resample(x, tables(layer, tuple(x.shape)), layer.attrs["mode"] == "linear", take, blend)]


@rule(Resize, "onnx")
def _resize_onnx(b, layer, x, y):
    a = layer.attrs
    n, c = b.type_of(layer.inputs[0]).shape[:2]
    if a.get("scales"):
        ins = [x[0], "", b.const("scales", np.asarray([1, 1, *a["scales"]], dtype=np.float32))]
    else:
        ins = [x[0], "", "", b.const("sizes", np.asarray([n, c, *a["size"]], dtype=np.int64))]
    b.node("Resize", ins, y, mode=a["mode"], coordinate_transformation_mode=a["coord"], nearest_mode=a["nearest"])
