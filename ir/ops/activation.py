"""Element-wise activations: relu, leaky_relu, prelu, sigmoid, tanh, clip, power (softmax: softmax.py).

Every op here keeps the shape of its input, and all but prelu (a per-channel slope) are plain
element-wise maps, so channel pruning flows straight through.
They carry no MACs in `cost`: like the papers' tables, MACs count the multiplies of weighted
layers (conv, dense, batchnorm, scale) only.
"""
from __future__ import annotations

import math

import numpy as np

from cococ.ir.registry import PASSTHROUGH, Attr, ChannelRule, Op, register, rule


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
    onnx_import = ("Relu",)
    doc = "max(x, 0). (Caffe ReLU with negative_slope != 0 imports as leaky_relu.)"

    @staticmethod
    def compute(layer, inputs, params):
        return [np.maximum(inputs[0], 0).astype(inputs[0].dtype, copy=False)]


def _map_tvm(name: str, ctx, x, fn):
    """The element-wise TE compute y[i] = fn(x[i], i) (any rank: a flat buffer on arm-m4)."""
    return ctx.te.compute(x.shape, lambda *i: fn(x(*i), i), name=name)


@rule(Relu, "tvm")
def _relu_tvm(layer, xs, ps, ctx):
    x = xs[0]
    return [_map_tvm("relu", ctx, x, lambda v, i: ctx.te.max(v, ctx.tirx.const(0, x.dtype)))]


@rule(Relu, "torch")
def _relu_torch(layer, xs, p, ctx):
    return [ctx.F.relu(xs[0])]


@rule(Relu, "onnx")
def _relu_onnx(b, layer, x, y):
    b.node("Relu", x, y)


@rule(Relu, "caffe")
def _relu_caffe(layer, w):
    return "ReLU", []


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


@rule(LeakyRelu, "tvm")
def _leaky_relu_tvm(layer, xs, ps, ctx):
    x, c = xs[0], ctx.tirx.const
    return [_map_tvm("leaky_relu", ctx, x, lambda v, i: ctx.tirx.Select(
        v > c(0, x.dtype), v, v * c(layer.attrs["alpha"], x.dtype)))]


@rule(LeakyRelu, "torch")
def _leaky_relu_torch(layer, xs, p, ctx):
    return [ctx.F.leaky_relu(xs[0], layer.attrs["alpha"])]


@rule(LeakyRelu, "onnx")
def _leaky_relu_onnx(b, layer, x, y):
    b.node("LeakyRelu", x, y, alpha=float(layer.attrs["alpha"]))


@rule(LeakyRelu, "caffe")
def _leaky_relu_caffe(layer, w):
    return "ReLU", [("relu_param", [("negative_slope", float(layer.attrs["alpha"]))])]


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


@rule(Prelu, "tvm")
def _prelu_tvm(layer, xs, ps, ctx):
    x, s = xs[0], ps["slope"]
    shared = int(s.shape[0]) == 1
    return [_map_tvm("prelu", ctx, x, lambda v, i: ctx.tirx.Select(
        v > ctx.tirx.const(0, x.dtype), v, v * (s[0] if shared else s[i[1]])))]


@rule(Prelu, "torch")
def _prelu_torch(layer, xs, p, ctx):
    x, s = xs[0], p["slope"]
    s = s.reshape(()) if s.numel() == 1 else s.reshape(channel_shape(x.dim(), -1))
    return [ctx.torch.where(x > 0, x, x * s)]


@rule(Prelu, "onnx")
def _prelu_onnx(b, layer, x, y):
    shared = layer.params["slope"].shape == (1,)
    b.node("PRelu", [x[0], b.param("slope", (1,) if shared else b.chan_shape())], y)


@rule(Prelu, "caffe")
def _prelu_caffe(layer, w):
    shared = tuple(layer.params["slope"].shape) == (1,) and layer.inputs[0].type.shape[1] != 1
    return "PReLU", [("prelu_param", [("channel_shared", True)])] if shared else []


@register
class Sigmoid(_Elementwise):
    name = "sigmoid"
    elementwise = epilogue = activation = True
    doc = "1 / (1 + exp(-x))."
    onnx_import = ("Sigmoid",)

    @staticmethod
    def compute(layer, inputs, params):
        x = _f32(inputs[0])
        # exp of a non-positive number only: no overflow warnings for large |x|
        e = np.exp(-np.abs(x))
        return [np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(inputs[0].dtype, copy=False)]


@rule(Sigmoid, "tvm")
def _sigmoid_tvm(layer, xs, ps, ctx):
    """1 / (1 + exp(-x)) with the exp as a polynomial (`exp_poly`): TVM's sigmoid/exp become
    LLVM's exp intrinsic, which x86 has no vector instruction for, so LLVM called libm's expf
    once per lane (EfficientNet-B0's SiLUs were half its time on x86; x * sigmoid(x) over
    96x112x112: 3.5 -> 0.56 ms at one thread, max relative error 1.7e-7 both ways)."""
    x = xs[0]
    if x.dtype != "float32":
        return [_map_tvm("sigmoid", ctx, x, lambda v, i: ctx.te.sigmoid(v))]
    one = ctx.tirx.const(1.0, "float32")
    return [_map_tvm("sigmoid", ctx, x, lambda v, i: one / (one + exp_poly(ctx.tirx, -v)))]


def exp_poly(tirx, v):
    """exp(v) for float32 as plain arithmetic that vectorizes: Cephes' expf as an expression, so
    that it fuses into the caller's loop. v = n ln2 + f with n = round(v log2e), exp(f) by a
    degree-7 polynomial, times 2^n built in the exponent bits; v is clamped to +-88.376 so that
    2^n fits them (beyond: 0 and inf, as float32's exp). ln2 is subtracted in two parts
    (Cody-Waite; topi.fast_exp uses one: 4e-6 relative error at |v| = 88), so the error stays at
    float32 rounding (< 1e-6 relative, tests/backends/test_sigmoid_x86.py)."""
    c = lambda a: tirx.const(a, "float32")  # noqa: E731
    x = tirx.max(tirx.min(v, c(88.3762626647950)), c(-88.3762626647949))
    n = tirx.floor(x * c(1.44269504088896341) + c(0.5))
    f = x - n * c(0.693359375) - n * c(-2.12194440e-4)
    y = c(1.9875691500e-4)
    for p in (1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1):
        y = y * f + c(p)
    y = y * f * f + f + c(1.0)
    two_n = tirx.reinterpret("float32", tirx.shift_left((n + c(127.0)).astype("int32"), tirx.const(23, "int32")))
    return two_n * y


@rule(Sigmoid, "torch")
def _sigmoid_torch(layer, xs, p, ctx):
    return [ctx.torch.sigmoid(xs[0])]


@rule(Sigmoid, "onnx")
def _sigmoid_onnx(b, layer, x, y):
    b.node("Sigmoid", x, y)


@rule(Sigmoid, "caffe")
def _sigmoid_caffe(layer, w):
    return "Sigmoid", []


@register
class Tanh(_Elementwise):
    name = "tanh"
    elementwise = epilogue = activation = True
    doc = "tanh(x)."
    onnx_import = ("Tanh",)

    @staticmethod
    def compute(layer, inputs, params):
        return [np.tanh(inputs[0])]


@rule(Tanh, "tvm")
def _tanh_tvm(layer, xs, ps, ctx):
    return [_map_tvm("tanh", ctx, xs[0], lambda v, i: ctx.te.tanh(v))]


@rule(Tanh, "torch")
def _tanh_torch(layer, xs, p, ctx):
    return [ctx.torch.tanh(xs[0])]


@rule(Tanh, "onnx")
def _tanh_onnx(b, layer, x, y):
    b.node("Tanh", x, y)


@rule(Tanh, "caffe")
def _tanh_caffe(layer, w):
    return "TanH", []


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


@rule(Clip, "tvm")
def _clip_tvm(layer, xs, ps, ctx):
    x, te = xs[0], ctx.te
    lo, hi = layer.attrs.get("min"), layer.attrs.get("max")

    def f(v, i):
        v = te.max(v, ctx.tirx.const(lo, x.dtype)) if lo is not None else v
        return te.min(v, ctx.tirx.const(hi, x.dtype)) if hi is not None else v
    return [_map_tvm("clip", ctx, x, f)]


@rule(Clip, "torch")
def _clip_torch(layer, xs, p, ctx):
    return [ctx.torch.clamp(xs[0], layer.attrs.get("min"), layer.attrs.get("max"))]


@rule(Clip, "onnx")
def _clip_onnx(b, layer, x, y):
    bound = {k: b.const(k, np.float32(layer.attrs[k])) if layer.attrs.get(k) is not None else ""
             for k in ("min", "max")}
    ins = [x[0], bound["min"], bound["max"]]
    while ins[-1] == "":
        ins.pop()
    b.node("Clip", ins, y)


@rule(Clip, "caffe")
def _clip_caffe(layer, w):
    """An absent bound writes ±inf (Caffe's Clip has both)."""
    lo, hi = layer.attrs.get("min"), layer.attrs.get("max")
    return "Clip", [("clip_param", [("min", -math.inf if lo is None else float(lo)),
                                    ("max", math.inf if hi is None else float(hi))])]


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


@rule(Power, "tvm")
def _power_tvm(layer, xs, ps, ctx):
    x, a = xs[0], layer.attrs
    c = lambda v: ctx.tirx.const(v, x.dtype)  # noqa: E731

    def f(v, i):
        y = c(a["shift"]) + c(a["scale"]) * v
        return y if a["power"] == 1 else ctx.te.power(y, c(a["power"]))
    return [_map_tvm("power", ctx, x, f)]


@rule(Power, "torch")
def _power_torch(layer, xs, p, ctx):
    a = layer.attrs
    y = a["shift"] + a["scale"] * xs[0]
    return [y if a["power"] == 1 else ctx.torch.pow(y, a["power"])]


@rule(Power, "onnx")
def _power_onnx(b, layer, x, y):
    """Mul, Add, Pow by constants, leaving out the steps that do nothing."""
    a = layer.attrs
    steps = [(op, k, a[k]) for op, k, skip in (("Mul", "scale", 1), ("Add", "shift", 0), ("Pow", "power", 1))
             if a[k] != skip]
    if not steps:
        b.node("Identity", x, y)
        return
    t = x[0]
    for i, (op, k, v) in enumerate(steps):
        last = i == len(steps) - 1
        t = b.node(op, [t, b.const(k, np.float32(v))], y if last else None, suffix=None if last else k)


@rule(Power, "caffe")
def _power_caffe(layer, w):
    return "Power", [("power_param", [(k, float(layer.attrs[k])) for k in ("power", "scale", "shift")])]
