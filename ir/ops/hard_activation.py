"""The piecewise-linear activations of MobileNetV3: hardsigmoid and hardswish.

    hardsigmoid(x) = max(0, min(1, alpha * x + beta))      (torch: alpha 1/6; ONNX's default: 0.2)
    hardswish(x)   = x * hardsigmoid(x) with alpha 1/6, beta 1/2 = x * relu6(x + 3) / 6

Both are element-wise and keep their input's shape, so channel pruning flows through them and
they carry no MACs. Neither is order-preserving with an unchanged scale (hardswish is not even
monotonic), so a q15/int8 build on the M4 runs them with their own integer kernels, which
requantise (backends/mcu/i8ops.py: `affine`, `hardswish`). Caffe has no such layers.
"""
from __future__ import annotations

import numpy as np

from cococ.ir.registry import PASSTHROUGH, Attr, Op, register, rule

NO_CAFFE = "Caffe has no {} layer (BVLC Caffe's layer catalogue predates MobileNetV3)"


def hardsigmoid(x: np.ndarray, alpha: float, beta: float) -> np.ndarray:
    """max(0, min(1, alpha * x + beta)) in float32."""
    return np.clip(np.float32(alpha) * x + np.float32(beta), np.float32(0), np.float32(1))


@register
class Hardsigmoid(Op):
    name = "hardsigmoid"
    elementwise = epilogue = activation = True
    onnx_import = ("HardSigmoid",)
    no_rules = {"caffe": NO_CAFFE.format("HardSigmoid")}
    doc = ("max(0, min(1, alpha * x + beta)); the defaults are torch's (alpha 1/6, beta 0.5, "
           "MobileNetV3's h-sigmoid), an ONNX HardSigmoid imports with its own (alpha 0.2).")
    attrs = {"alpha": Attr("float", default=1 / 6), "beta": Attr("float", default=0.5)}

    @staticmethod
    def channels(layer, in_types):
        return PASSTHROUGH

    @staticmethod
    def compute(layer, inputs, params):
        x = inputs[0]
        return [hardsigmoid(x, layer.attrs["alpha"], layer.attrs["beta"]).astype(x.dtype, copy=False)]


@rule(Hardsigmoid, "tvm")
def _hardsigmoid_tvm(layer, xs, ps, ctx):
    x, te = xs[0], ctx.te
    c = lambda v: ctx.tirx.const(v, x.dtype)  # noqa: E731
    a, b = layer.attrs["alpha"], layer.attrs["beta"]
    return [te.compute(x.shape, lambda *i: te.max(c(0), te.min(c(1), c(a) * x(*i) + c(b))), name="hardsigmoid")]


@rule(Hardsigmoid, "torch")
def _hardsigmoid_torch(layer, xs, p, ctx):
    """F.hardsigmoid fixes alpha at 1/6: the general form, which autograd differentiates as well."""
    return [ctx.torch.clamp(xs[0] * layer.attrs["alpha"] + layer.attrs["beta"], 0.0, 1.0)]


@rule(Hardsigmoid, "onnx")
def _hardsigmoid_onnx(b, layer, x, y):
    b.node("HardSigmoid", x, y, alpha=float(layer.attrs["alpha"]), beta=float(layer.attrs["beta"]))


@rule(Hardsigmoid, "onnx-import")
def _hardsigmoid_onnx_import(attrs, ctx):
    """An absent alpha or beta is ONNX's default (0.2, 0.5), not the op's (torch writes alpha 1/6)."""
    return {"alpha": float(attrs.get("alpha", 0.2)), "beta": float(attrs.get("beta", 0.5))}


@register
class Hardswish(Op):
    name = "hardswish"
    elementwise = epilogue = activation = True
    onnx_import = ("HardSwish",)
    no_rules = {"caffe": NO_CAFFE.format("HardSwish")}
    doc = "x * max(0, min(1, x / 6 + 1/2)) (MobileNetV3's h-swish; ONNX HardSwish, torch hardswish)."

    @staticmethod
    def channels(layer, in_types):
        return PASSTHROUGH

    @staticmethod
    def compute(layer, inputs, params):
        x = inputs[0]
        return [(x * hardsigmoid(x, 1 / 6, 0.5)).astype(x.dtype, copy=False)]


@rule(Hardswish, "tvm")
def _hardswish_tvm(layer, xs, ps, ctx):
    x, te = xs[0], ctx.te
    c = lambda v: ctx.tirx.const(v, x.dtype)  # noqa: E731
    return [te.compute(x.shape, lambda *i: x(*i) * te.max(c(0), te.min(c(1), c(1 / 6) * x(*i) + c(0.5))),
                       name="hardswish")]


@rule(Hardswish, "torch")
def _hardswish_torch(layer, xs, p, ctx):
    return [ctx.F.hardswish(xs[0])]


@rule(Hardswish, "onnx")
def _hardswish_onnx(b, layer, x, y):
    b.node("HardSwish", x, y)
