"""Layers that combine, split or move data: eltwise, concat, slice, flatten, reshape, dropout, identity.

Their channel rules are what lets pruning cross a residual add (tie), an inception concat
(concat), a split (split) and the flatten before a classifier (flatten); reshape is opaque.
None of them carries params or MACs (eltwise coefficients are attributes).
"""
from __future__ import annotations

import numpy as np

from cococ.ir.core import TensorType
from cococ.ir.ops.activation import norm_axis
from cococ.ir.registry import OPAQUE, PASSTHROUGH, Attr, ChannelRule, Op, register


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
        return ChannelRule("concat") if norm_axis(layer, layer.attrs["axis"], in_types[0].rank) == 1 else OPAQUE


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
        return ChannelRule("split") if norm_axis(layer, layer.attrs["axis"], in_types[0].rank) == 1 else OPAQUE


@register
class Flatten(Op):
    name = "flatten"
    view = True
    doc = ("Caffe Flatten (end_axis = -1): dims from `axis` on become one, shape[:axis] + [prod(shape[axis:])]. "
           "For axis=1 that is also ONNX Flatten; the ONNX frontend uses reshape for other axes.")
    attrs = {"axis": Attr("int", default=1)}

    @staticmethod
    def verify(layer, in_types):
        norm_axis(layer, layer.attrs["axis"], in_types[0].rank)

    @staticmethod
    def infer(layer, in_types):
        x = in_types[0]
        ax = norm_axis(layer, layer.attrs["axis"], x.rank)
        return [TensorType(x.shape[:ax] + (int(np.prod(x.shape[ax:], dtype=np.int64)),), x.dtype)]

    @staticmethod
    def compute(layer, inputs, params):
        x = inputs[0]
        ax = norm_axis(layer, layer.attrs["axis"], x.ndim)
        return [x.reshape(x.shape[:ax] + (-1,))]

    @staticmethod
    def channels(layer, in_types):
        return ChannelRule("flatten") if norm_axis(layer, layer.attrs["axis"], in_types[0].rank) == 1 else OPAQUE


def reshape_target(layer, shape: tuple[int, ...]) -> tuple[int, ...]:
    """Resolve a reshape spec as Caffe (and ONNX with allowzero=0): 0 copies the input dim at that
    index, one -1 is inferred from the element count."""
    spec = layer.attrs["shape"]
    out = []
    for i, d in enumerate(spec):
        if d == 0:
            if i >= len(shape):
                raise layer.error(f"reshape {spec}: 0 at index {i} has no input dim to copy ({shape})")
            out.append(shape[i])
        elif d == -1 or d > 0:
            out.append(d)
        else:
            raise layer.error(f"reshape {spec}: dims must be positive, 0 (copy) or -1 (infer)")
    total = int(np.prod(shape, dtype=np.int64))
    if out.count(-1) > 1:
        raise layer.error(f"reshape {spec}: at most one -1")
    known = int(np.prod([d for d in out if d != -1], dtype=np.int64))
    if -1 in out:
        if known == 0 or total % known:
            raise layer.error(f"reshape {spec}: cannot infer -1 for {total} elements ({shape})")
        out[out.index(-1)] = total // known
    elif known != total:
        raise layer.error(f"reshape {spec} of {shape}: {known} elements, expected {total}")
    return tuple(out)


@register
class Reshape(Op):
    name = "reshape"
    view = True
    doc = "Reshape to `shape` (Caffe semantics: 0 = copy the input dim, -1 = infer). Opaque for pruning."
    attrs = {"shape": Attr("ints")}

    @staticmethod
    def infer(layer, in_types):
        return [TensorType(reshape_target(layer, in_types[0].shape), in_types[0].dtype)]

    @staticmethod
    def compute(layer, inputs, params):
        return [inputs[0].reshape(reshape_target(layer, inputs[0].shape))]


@register
class Dropout(Op):
    name = "dropout"
    alias = True
    doc = "Identity at inference (`ratio` matters to training only; canonicalize drops the layer)."
    attrs = {"ratio": Attr("float", default=0.5)}

    @staticmethod
    def verify(layer, in_types):
        if not 0 <= layer.attrs["ratio"] < 1:
            raise layer.error(f"dropout ratio must be in [0, 1), got {layer.attrs['ratio']}")

    @staticmethod
    def compute(layer, inputs, params):
        return [inputs[0]]

    @staticmethod
    def channels(layer, in_types):
        return PASSTHROUGH


@register
class Identity(Op):
    name = "identity"
    alias = True
    doc = "y = x (Caffe Split outputs and no-op layers import as identity; canonicalize removes it)."

    @staticmethod
    def compute(layer, inputs, params):
        return [inputs[0]]

    @staticmethod
    def channels(layer, in_types):
        return PASSTHROUGH
