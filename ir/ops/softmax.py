"""softmax: exp(x) / sum(exp(x)) along one axis.

Not an element-wise map like the activations (activation.py): every output depends on the whole
slice along `axis`, so over the channel axis it couples every channel and pruning stops there.
Like the activations it carries no MACs in `cost`.
"""
from __future__ import annotations

import numpy as np

from cococ.ir.ops.activation import norm_axis
from cococ.ir.registry import OPAQUE, PASSTHROUGH, Attr, Op, register, rule


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
        x = np.asarray(inputs[0], dtype=np.float32)
        ax = norm_axis(layer, layer.attrs["axis"], x.ndim)
        e = np.exp(x - x.max(axis=ax, keepdims=True))
        return [(e / e.sum(axis=ax, keepdims=True)).astype(inputs[0].dtype, copy=False)]

    @staticmethod
    def channels(layer, in_types):
        ax = norm_axis(layer, Softmax.attr(layer, "axis"), in_types[0].rank)
        return OPAQUE if ax == 1 else PASSTHROUGH


@rule(Softmax, "tvm")
def _softmax_tvm(layer, xs, ps, ctx):
    """max, exp(x - max) (`ex`, recomputed where read once inlined), sum, divide. The stage and
    axis names are those of the arm-m4 C, which keeps `mx` and `sm` as its two scalars."""
    te = ctx.te
    x = xs[0]
    ax = norm_axis(layer, layer.attrs["axis"], len(x.shape))
    red_shape = [d for j, d in enumerate(x.shape) if j != ax]
    k1, k2 = te.reduce_axis((0, int(x.shape[ax])), "k1"), te.reduce_axis((0, int(x.shape[ax])), "k2")
    at = lambda i, k: list(i[:ax]) + [k] + list(i[ax:])  # noqa: E731  (full index: reduced one + axis)
    rest = lambda i: i[:ax] + i[ax + 1:]  # noqa: E731  (reduced index: full one - axis)
    mx = te.compute(red_shape, lambda *i: te.max(x(*at(i, k1)), axis=k1), name="mx")
    ex = te.compute(x.shape, lambda *i: te.exp(x(*i) - mx(*rest(i))), name="ex")
    sm = te.compute(red_shape, lambda *i: te.sum(ex(*at(i, k2)), axis=k2), name="sm")
    return [te.compute(x.shape, lambda *i: ex(*i) / sm(*rest(i)), name="softmax")]


@rule(Softmax, "torch")
def _softmax_torch(layer, xs, p, ctx):
    return [ctx.torch.softmax(xs[0], norm_axis(layer, layer.attrs["axis"], xs[0].dim()))]


@rule(Softmax, "onnx")
def _softmax_onnx(b, layer, x, y):
    b.node("Softmax", x, y, axis=int(layer.attrs["axis"]))


@rule(Softmax, "caffe")
def _softmax_caffe(layer, w):
    return "Softmax", [("softmax_param", [("axis", layer.attrs["axis"])])]
