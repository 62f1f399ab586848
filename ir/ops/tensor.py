"""Layers that combine or split data: eltwise, concat, slice (the ops that move no data are in view.py).

Their channel rules are what lets pruning cross a residual add (tie), an inception concat
(concat) and a split (split). None of them carries params or MACs (eltwise coefficients are
attributes).
"""
from __future__ import annotations

import numpy as np

from cococ.ir.core import TensorType
from cococ.ir.ops.activation import norm_axis
from cococ.ir.registry import OPAQUE, Attr, ChannelRule, Op, register, rule


@register
class Eltwise(Op):
    name = "eltwise"
    elementwise = epilogue = True
    doc = ("Element-wise over 2+ inputs of one shape (Caffe Eltwise; no broadcasting): mode=sum "
           "(sum of coeffs[i] * x_i when coeffs are given), prod, max.")
    attrs = {"mode": Attr("str", default="sum", choices=("sum", "prod", "max")),
             "coeffs": Attr("floats", optional=True)}
    num_inputs = (2, None)

    @staticmethod
    def verify(layer, in_types):
        shapes = {t.shape for t in in_types}
        if len(shapes) != 1:
            raise layer.error("eltwise inputs must have one shape, got " + ", ".join(map(str, in_types)))
        co = layer.attrs.get("coeffs")
        if co is not None:
            if layer.attrs["mode"] != "sum":
                raise layer.error(f"eltwise coeffs only apply to mode=sum, not {layer.attrs['mode']}")
            if len(co) != len(in_types):
                raise layer.error(f"eltwise has {len(in_types)} inputs but {len(co)} coeffs")

    @staticmethod
    def compute(layer, inputs, params):
        mode, co = layer.attrs["mode"], layer.attrs.get("coeffs")
        if mode == "sum" and co is not None:
            y = sum(np.float32(c) * x for c, x in zip(co, inputs))
        else:
            fold = {"sum": np.add, "prod": np.multiply, "max": np.maximum}[mode]
            y = inputs[0].copy()
            for x in inputs[1:]:
                fold(y, x, out=y)
        return [y.astype(inputs[0].dtype, copy=False)]

    @staticmethod
    def channels(layer, in_types):
        return ChannelRule("tie")


@rule(Eltwise, "tvm")
def _eltwise_tvm(layer, xs, ps, ctx):
    te, mode, co = ctx.te, layer.attrs["mode"], layer.attrs.get("coeffs")

    def f(*i):
        vs = [x(*i) for x in xs]
        if mode == "sum" and co is not None:
            vs = [v * ctx.tirx.const(c, xs[0].dtype) for v, c in zip(vs, co)]
        acc = vs[0]
        for v in vs[1:]:
            acc = acc + v if mode == "sum" else acc * v if mode == "prod" else te.max(acc, v)
        return acc
    return [te.compute(xs[0].shape, f, name="eltwise")]


@rule(Eltwise, "torch")
def _eltwise_torch(layer, xs, p, ctx):
    mode, co = layer.attrs["mode"], layer.attrs.get("coeffs")
    if mode == "sum" and co is not None:
        y = co[0] * xs[0]
        for c, x in zip(co[1:], xs[1:]):
            y = y + c * x
        return [y]
    fold = {"sum": ctx.torch.add, "prod": ctx.torch.mul, "max": ctx.torch.maximum}[mode]
    y = xs[0]
    for x in xs[1:]:
        y = fold(y, x)
    return [y]


@rule(Eltwise, "onnx")
def _eltwise_onnx(b, layer, x, y):
    """Sum (after a Mul per coefficient other than 1), a chain of Muls, or Max."""
    mode, co = layer.attrs["mode"], layer.attrs.get("coeffs")
    if mode == "sum" and co is not None and any(c != 1 for c in co):
        x = [xi if c == 1 else b.node("Mul", [xi, b.const(f"coeff{i}", np.float32(c))], suffix=f"coeff{i}")
             for i, (xi, c) in enumerate(zip(x, co))]
    if mode == "prod":
        t = x[0]
        for i, xi in enumerate(x[1:], 1):
            t = b.node("Mul", [t, xi], y if i == len(x) - 1 else None, suffix=None if i == len(x) - 1 else f"mul{i}")
        return
    b.node("Sum" if mode == "sum" else "Max", x, y)


@rule(Eltwise, "caffe")
def _eltwise_caffe(layer, w):
    p = [("operation", w.Enum(layer.attrs["mode"].upper()))]
    p += [("coeff", float(c)) for c in layer.attrs.get("coeffs") or []]
    return "Eltwise", [("eltwise_param", p)]


@register
class Concat(Op):
    name = "concat"
    doc = "Joins 1+ inputs along `axis` (other dims equal). On axis 1 channels concatenate, in input order."
    attrs = {"axis": Attr("int", default=1)}
    num_inputs = (1, None)

    @staticmethod
    def verify(layer, in_types):
        r = in_types[0].rank
        ax = norm_axis(layer, layer.attrs["axis"], r)
        for t in in_types:
            if t.rank != r or any(d != e for i, (d, e) in enumerate(zip(t.shape, in_types[0].shape)) if i != ax):
                raise layer.error(f"concat on axis {ax}: inputs differ off that axis: "
                                  + ", ".join(map(str, in_types)))

    @staticmethod
    def infer(layer, in_types):
        ax = norm_axis(layer, layer.attrs["axis"], in_types[0].rank)
        shape = list(in_types[0].shape)
        shape[ax] = sum(t.shape[ax] for t in in_types)
        return [TensorType(tuple(shape), in_types[0].dtype)]

    @staticmethod
    def compute(layer, inputs, params):
        return [np.concatenate(inputs, axis=norm_axis(layer, layer.attrs["axis"], inputs[0].ndim))]

    @staticmethod
    def channels(layer, in_types):
        return ChannelRule("concat") if norm_axis(layer, Concat.attr(layer, "axis"), in_types[0].rank) == 1 else OPAQUE


@rule(Concat, "tvm")
def _concat_tvm(layer, xs, ps, ctx):
    return [ctx.topi.concatenate(xs, norm_axis(layer, layer.attrs["axis"], len(xs[0].shape)))]


@rule(Concat, "torch")
def _concat_torch(layer, xs, p, ctx):
    return [ctx.torch.cat(xs, norm_axis(layer, layer.attrs["axis"], xs[0].dim()))]


@rule(Concat, "onnx")
def _concat_onnx(b, layer, x, y):
    b.node("Concat", x, y, axis=int(layer.attrs["axis"]))


@rule(Concat, "caffe")
def _concat_caffe(layer, w):
    return "Concat", [("concat_param", [("axis", layer.attrs["axis"])])]


def _slice_outputs(layer) -> int:
    return len(layer.attrs.get("points") or []) + 1


@register
class Slice(Op):
    name = "slice"
    doc = ("Caffe Slice: cuts the input along `axis` at the increasing `points`, giving len(points)+1 "
           "outputs (output i spans [points[i-1], points[i])). On axis 1 each output is a channel range.")
    attrs = {"axis": Attr("int", default=1), "points": Attr("ints")}
    num_outputs = staticmethod(_slice_outputs)

    @staticmethod
    def verify(layer, in_types):
        x = in_types[0]
        ax = norm_axis(layer, layer.attrs["axis"], x.rank)
        pts = [0, *layer.attrs["points"], x.shape[ax]]
        if any(b <= a for a, b in zip(pts, pts[1:])):
            raise layer.error(f"slice points {layer.attrs['points']} must increase strictly inside "
                              f"(0, {x.shape[ax]}) on axis {ax}")

    @staticmethod
    def infer(layer, in_types):
        x = in_types[0]
        ax = norm_axis(layer, layer.attrs["axis"], x.rank)
        pts = [0, *layer.attrs["points"], x.shape[ax]]
        return [TensorType(x.shape[:ax] + (b - a,) + x.shape[ax + 1:], x.dtype) for a, b in zip(pts, pts[1:])]

    @staticmethod
    def compute(layer, inputs, params):
        ax = norm_axis(layer, layer.attrs["axis"], inputs[0].ndim)
        return [np.ascontiguousarray(p) for p in np.split(inputs[0], layer.attrs["points"], axis=ax)]

    @staticmethod
    def channels(layer, in_types):
        return ChannelRule("split") if norm_axis(layer, Slice.attr(layer, "axis"), in_types[0].rank) == 1 else OPAQUE


@rule(Slice, "tvm")
def _slice_tvm(layer, xs, ps, ctx):
    x = xs[0]
    ax = norm_axis(layer, layer.attrs["axis"], len(x.shape))
    pts = [0, *layer.attrs["points"], int(x.shape[ax])]

    def piece(k, lo, hi):
        shape = list(x.shape)
        shape[ax] = hi - lo
        return ctx.te.compute(shape, lambda *i: x(*(i[:ax] + (i[ax] + lo,) + i[ax + 1:])), name=f"slice{k}")
    return [piece(k, lo, hi) for k, (lo, hi) in enumerate(zip(pts, pts[1:]))]


@rule(Slice, "torch")
def _slice_torch(layer, xs, p, ctx):
    x = xs[0]
    ax = norm_axis(layer, layer.attrs["axis"], x.dim())
    pts = [0, *layer.attrs["points"], x.shape[ax]]
    return list(ctx.torch.split(x, [b - a for a, b in zip(pts, pts[1:])], dim=ax))


@rule(Slice, "onnx")
def _slice_onnx(b, layer, x, y):
    ax = int(layer.attrs["axis"])
    pts = [0, *layer.attrs["points"], b.type_of(layer.inputs[0]).shape[ax]]
    sizes = np.asarray([q - p for p, q in zip(pts, pts[1:])], dtype=np.int64)
    b.node("Split", [x[0], b.const("split", sizes)], y, axis=ax)


@rule(Slice, "caffe")
def _slice_caffe(layer, w):
    return "Slice", [("slice_param", [("axis", layer.attrs["axis"])]
                      + [("slice_point", p) for p in layer.attrs["points"]])]
