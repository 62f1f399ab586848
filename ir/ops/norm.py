"""Per-channel affine layers and normalization: batchnorm, scale, bias, lrn.

batchnorm, scale and bias act per channel (axis 1) with [C] params, so pruning a channel
slices their params (passthrough). Their cost counts one MAC per output element for
batchnorm and scale (the multiply that canonicalize later folds into the conv) and none
for bias (adds only).
"""
from __future__ import annotations

import numpy as np

from cococ.ir.ops.activation import channel_shape
from cococ.ir.registry import Attr, ChannelRule, Cost, Op, register


def _need_channels(layer, in_types) -> None:
    if in_types[0].rank < 2:
        raise layer.error(f"{layer.op} input must have a channel axis (rank >= 2), got {in_types[0]}")


def _per_channel(p: np.ndarray, rank: int) -> np.ndarray:
    return np.asarray(p, dtype=np.float32).reshape(channel_shape(rank, p.size))


def _params_count(layer) -> int:
    return sum(p.type.size for p in layer.params.values())


@register
class BatchNorm(Op):
    name = "batchnorm"
    epilogue = True
    caffe_blobs = ("mean", "var")
    doc = ("Inference batch normalization over axis 1: (x - mean) / sqrt(var + eps) * scale + bias; "
           "scale and bias are optional (Caffe's BatchNorm has none; its moving-average factor is "
           "divided out on import).")
    attrs = {"eps": Attr("float", default=1e-5)}
    optional_params = frozenset({"scale", "bias"})
    verify = staticmethod(_need_channels)

    @staticmethod
    def param_shapes(layer, in_types):
        c = in_types[0].shape[1]
        return {"mean": (c,), "var": (c,), "scale": (c,), "bias": (c,)}

    @staticmethod
    def compute(layer, inputs, params):
        x = inputs[0]
        r = x.ndim
        inv = 1.0 / np.sqrt(_per_channel(params["var"], r) + np.float32(layer.attrs["eps"]))
        if "scale" in params:
            inv = inv * _per_channel(params["scale"], r)
        y = (x - _per_channel(params["mean"], r)) * inv
        if "bias" in params:
            y = y + _per_channel(params["bias"], r)
        return [y.astype(x.dtype, copy=False)]

    @staticmethod
    def cost(layer, in_types, out_types):
        return Cost(params=_params_count(layer), macs=out_types[0].size)

    @staticmethod
    def channels(layer, in_types):
        return ChannelRule("passthrough", params={"mean": 0, "var": 0, "scale": 0, "bias": 0})


@register
class Scale(Op):
    name = "scale"
    epilogue = True
    caffe_blobs = ("scale", "bias")
    doc = "Per-channel affine on axis 1: x * scale[c] (+ bias[c]); Caffe Scale with axis=1, num_axes=1."
    optional_params = frozenset({"bias"})
    verify = staticmethod(_need_channels)

    @staticmethod
    def param_shapes(layer, in_types):
        c = in_types[0].shape[1]
        return {"scale": (c,), "bias": (c,)}

    @staticmethod
    def compute(layer, inputs, params):
        x = inputs[0]
        y = x * _per_channel(params["scale"], x.ndim)
        if "bias" in params:
            y = y + _per_channel(params["bias"], x.ndim)
        return [y.astype(x.dtype, copy=False)]

    @staticmethod
    def cost(layer, in_types, out_types):
        return Cost(params=_params_count(layer), macs=out_types[0].size)

    @staticmethod
    def channels(layer, in_types):
        return ChannelRule("passthrough", params={"scale": 0, "bias": 0})


@register
class Bias(Op):
    name = "bias"
    epilogue = True
    caffe_blobs = ("bias",)
    doc = "Per-channel add on axis 1: x + bias[c] (Caffe Bias with axis=1)."
    verify = staticmethod(_need_channels)

    @staticmethod
    def param_shapes(layer, in_types):
        return {"bias": (in_types[0].shape[1],)}

    @staticmethod
    def compute(layer, inputs, params):
        x = inputs[0]
        return [(x + _per_channel(params["bias"], x.ndim)).astype(x.dtype, copy=False)]

    @staticmethod
    def channels(layer, in_types):
        return ChannelRule("passthrough", params={"bias": 0})


def _window_sum(x: np.ndarray, axis: int, size: int) -> np.ndarray:
    """Sum over a window of `size` along `axis`, zero-padded (size-1)//2 before and the rest after.

    That is Caffe's and ONNX's LRN window: channel c sees c - (size-1)//2 .. c + size//2.
    """
    pre = (size - 1) // 2
    pad = [(0, 0)] * x.ndim
    pad[axis] = (pre + 1, size - 1 - pre)  # one extra zero in front for the cumulative-sum trick
    cs = np.cumsum(np.pad(x, pad), axis=axis, dtype=np.float64)
    n = x.shape[axis]
    hi = np.take(cs, np.arange(size, size + n), axis=axis)
    lo = np.take(cs, np.arange(0, n), axis=axis)
    return (hi - lo).astype(np.float32)


@register
class Lrn(Op):
    name = "lrn"
    doc = ("Local response normalization, as Caffe and ONNX: y = x / (k + alpha/n * sum(x^2))^beta. "
           "region=across sums over `size` neighbouring channels (n = size; c - (size-1)//2 .. "
           "c + size//2, zero beyond the ends); region=within sums over a size x size spatial window "
           "(n = size^2, zero-padded; Caffe WITHIN_CHANNEL, whose k is 1). Channel rule: passthrough "
           "(a pruned channel only drops out of its neighbours' sums).")
    attrs = {"size": Attr("int"), "alpha": Attr("float", default=1e-4),
             "beta": Attr("float", default=0.75), "k": Attr("float", default=1.0),
             "region": Attr("str", default="across", choices=("across", "within"))}

    @staticmethod
    def verify(layer, in_types):
        if in_types[0].rank != 4:
            raise layer.error(f"lrn input must be NCHW (rank 4), got {in_types[0]}")
        if layer.attrs["size"] < 1:
            raise layer.error(f"lrn size must be positive, got {layer.attrs['size']}")

    @staticmethod
    def compute(layer, inputs, params):
        a = layer.attrs
        x = np.asarray(inputs[0], dtype=np.float32)
        sq = x * x
        n = a["size"]
        if a["region"] == "across":
            s = _window_sum(sq, 1, n) / np.float32(n)
        else:
            s = _window_sum(_window_sum(sq, 2, n), 3, n) / np.float32(n * n)
        y = x * np.power(np.float32(a["k"]) + np.float32(a["alpha"]) * s, np.float32(-a["beta"]))
        return [y.astype(inputs[0].dtype, copy=False)]

    @staticmethod
    def channels(layer, in_types):
        return ChannelRule("passthrough")
