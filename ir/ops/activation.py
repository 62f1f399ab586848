"""Element-wise activations and softmax: relu, leaky_relu, prelu, sigmoid, tanh, clip, power, softmax.

Every op here keeps the shape of its input, and all but softmax (over channels) and prelu
(a per-channel slope) are plain element-wise maps, so channel pruning flows straight through.
They carry no MACs in `cost`: like the papers' tables, MACs count the multiplies of weighted
layers (conv, dense, batchnorm, scale) only.
"""
from __future__ import annotations

import numpy as np

from cococ.ir.registry import PASSTHROUGH, Attr, ChannelRule, Op, OPAQUE, register


def _f32(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float32)


def channel_shape(rank: int, c: int) -> tuple[int, ...]:
    """Shape broadcasting a [C] vector over axis 1 of a rank-`rank` tensor: (1, C, 1, ...)."""
    return (1, c) + (1,) * (rank - 2)


def norm_axis(layer, axis: int, rank: int) -> int:
    """`axis` made non-negative (negative counts from the end, as numpy); error if out of range."""
    if not -rank <= axis < rank:
        raise layer.error(f"axis {axis} is out of range for a rank-{rank} input")
    return axis % rank


class _Elementwise(Op):
    """Shared shape rule of the element-wise activations: output type = input type."""

    @staticmethod
    def channels(layer, in_types):
        return PASSTHROUGH


@register
class Relu(_Elementwise):
    name = "relu"
    elementwise = epilogue = keeps_scale = activation = True
    doc = "max(x, 0). (Caffe ReLU with negative_slope != 0 imports as leaky_relu.)"

    @staticmethod
    def compute(layer, inputs, params):
        return [np.maximum(inputs[0], 0).astype(inputs[0].dtype, copy=False)]


@register
class LeakyRelu(_Elementwise):
    name = "leaky_relu"
    elementwise = epilogue = activation = True
    doc = "x if x > 0 else alpha * x (alpha defaults to ONNX's and torch's 0.01)."
    attrs = {"alpha": Attr("float", default=0.01)}

    @staticmethod
    def compute(layer, inputs, params):
        x = inputs[0]
        return [np.where(x > 0, x, x * np.float32(layer.attrs["alpha"])).astype(x.dtype, copy=False)]


@register
class Prelu(Op):
    name = "prelu"
    epilogue = activation = True
    caffe_blobs = ("slope",)
    doc = ("x if x > 0 else slope[c] * x; `slope` is [C] (one per channel, axis 1) or [1] "
           "(shared, Caffe channel_shared).")

    @staticmethod
    def verify(layer, in_types):
        if in_types[0].rank < 2:
            raise layer.error(f"prelu input must have a channel axis (rank >= 2), got {in_types[0]}")

    @staticmethod
    def param_shapes(layer, in_types):
        p = layer.params.get("slope")
        if p is not None and p.shape == (1,):
            return {"slope": (1,)}
        return {"slope": (in_types[0].shape[1],)}

    @staticmethod
    def compute(layer, inputs, params):
        x = inputs[0]
        s = _f32(params["slope"])
        if s.size != 1:
            s = s.reshape(channel_shape(x.ndim, s.size))
        return [np.where(x > 0, x, x * s).astype(x.dtype, copy=False)]

    @staticmethod
    def channels(layer, in_types):
        p = layer.params.get("slope")
        if p is not None and p.shape == (1,) and in_types[0].shape[1] != 1:
            return PASSTHROUGH  # a shared slope is not sliced
        return ChannelRule("passthrough", params={"slope": 0})


@register
class Sigmoid(_Elementwise):
    name = "sigmoid"
    elementwise = epilogue = activation = True
    doc = "1 / (1 + exp(-x))."

    @staticmethod
    def compute(layer, inputs, params):
        x = _f32(inputs[0])
        # exp of a non-positive number only: no overflow warnings for large |x|
        e = np.exp(-np.abs(x))
        return [np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(inputs[0].dtype, copy=False)]


@register
class Tanh(_Elementwise):
    name = "tanh"
    elementwise = epilogue = activation = True
    doc = "tanh(x)."

    @staticmethod
    def compute(layer, inputs, params):
        return [np.tanh(inputs[0])]


@register
class Clip(_Elementwise):
    name = "clip"
    elementwise = epilogue = activation = True
    doc = "min(max(x, min), max); an absent bound is unbounded (relu6 = clip{min=0, max=6})."
    attrs = {"min": Attr("float", optional=True), "max": Attr("float", optional=True)}

    @staticmethod
    def verify(layer, in_types):
        lo, hi = layer.attrs.get("min"), layer.attrs.get("max")
        if lo is not None and hi is not None and lo > hi:
            raise layer.error(f"clip min {lo} is greater than max {hi}")

    @staticmethod
    def compute(layer, inputs, params):
        x = inputs[0]
        lo, hi = layer.attrs.get("min"), layer.attrs.get("max")
        if lo is not None:
            x = np.maximum(x, np.float32(lo))
        if hi is not None:
            x = np.minimum(x, np.float32(hi))
        return [x.astype(inputs[0].dtype, copy=False)]


@register
class Power(_Elementwise):
    name = "power"
    elementwise = epilogue = True
    doc = "(shift + scale * x) ** power, as Caffe's Power layer."
    attrs = {"power": Attr("float", default=1.0), "scale": Attr("float", default=1.0),
             "shift": Attr("float", default=0.0)}

    @staticmethod
    def compute(layer, inputs, params):
        a = layer.attrs
        y = np.float32(a["shift"]) + np.float32(a["scale"]) * _f32(inputs[0])
        if a["power"] != 1:
            y = np.power(y, np.float32(a["power"]))
        return [y.astype(inputs[0].dtype, copy=False)]


@register
class Softmax(Op):
    name = "softmax"
    doc = ("exp(x) / sum(exp(x)) along `axis` only (Caffe Softmax, ONNX opset >= 13). Over the "
           "channel axis it couples every channel, so pruning stops here.")
    attrs = {"axis": Attr("int", default=1)}

    @staticmethod
    def verify(layer, in_types):
        norm_axis(layer, layer.attrs["axis"], in_types[0].rank)

    @staticmethod
    def compute(layer, inputs, params):
        x = _f32(inputs[0])
        ax = norm_axis(layer, layer.attrs["axis"], x.ndim)
        e = np.exp(x - x.max(axis=ax, keepdims=True))
        return [(e / e.sum(axis=ax, keepdims=True)).astype(inputs[0].dtype, copy=False)]

    @staticmethod
    def channels(layer, in_types):
        ax = norm_axis(layer, layer.attrs["axis"], in_types[0].rank)
        return OPAQUE if ax == 1 else PASSTHROUGH
