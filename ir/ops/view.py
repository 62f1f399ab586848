"""Ops that move no data at inference: flatten and reshape (views: the output is the input's
storage, reshaped) and dropout and identity (aliases: the output is the input).

Backends give them no kernel; their channel rules let pruning cross the flatten before a
classifier (flatten) and stop at a reshape (opaque); dropout and identity pass channels through.
"""
from __future__ import annotations

import numpy as np

from cococ.ir.core import TensorType
from cococ.ir.ops.activation import norm_axis
from cococ.ir.registry import OPAQUE, PASSTHROUGH, Attr, ChannelRule, Op, register, rule


@register
class Flatten(Op):
    name = "flatten"
    view = True
    no_rules = {"tvm": "a view: no kernel (a Relax reshape)"}
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
        return ChannelRule("flatten") if norm_axis(layer, Flatten.attr(layer, "axis"), in_types[0].rank) == 1 else OPAQUE


@rule(Flatten, "torch")
def _flatten_torch(layer, xs, p, ctx):
    return [ctx.torch.flatten(xs[0], norm_axis(layer, layer.attrs["axis"], xs[0].dim()))]


@rule(Flatten, "onnx")
def _flatten_onnx(b, layer, x, y):
    """ONNX Flatten is always 2-D, IR flatten at axis k keeps rank k+1: other axes export as a
    Reshape to the inferred static shape (batch included: shapes are static)."""
    if layer.attrs["axis"] == 1 and b.type_of(layer.inputs[0]).rank >= 2:
        b.node("Flatten", x, y, axis=1)
        return
    _reshape_onnx(b, layer, x, y)


@rule(Flatten, "caffe")
def _flatten_caffe(layer, w):
    return "Flatten", [("flatten_param", [("axis", layer.attrs["axis"])])]


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
    no_rules = {"tvm": "a view: no kernel (a Relax reshape)"}
    doc = "Reshape to `shape` (Caffe semantics: 0 = copy the input dim, -1 = infer). Opaque for pruning."
    attrs = {"shape": Attr("ints")}

    @staticmethod
    def infer(layer, in_types):
        return [TensorType(reshape_target(layer, in_types[0].shape), in_types[0].dtype)]

    @staticmethod
    def compute(layer, inputs, params):
        return [inputs[0].reshape(reshape_target(layer, inputs[0].shape))]


@rule(Reshape, "torch")
def _reshape_torch(layer, xs, p, ctx):
    return [xs[0].reshape(reshape_target(layer, tuple(xs[0].shape)))]


@rule(Reshape, "onnx")
def _reshape_onnx(b, layer, x, y):
    shape = np.asarray(b.type_of(layer.outputs[0]).shape, dtype=np.int64)
    b.node("Reshape", [x[0], b.const("shape", shape)], y)


@rule(Reshape, "caffe")
def _reshape_caffe(layer, w):
    return "Reshape", [("reshape_param", [("shape", [("dim", d) for d in layer.attrs["shape"]])])]


@register
class Dropout(Op):
    name = "dropout"
    alias = True
    no_rules = {"tvm": "an alias at inference: no kernel"}
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


@rule(Dropout, "torch")
def _dropout_torch(layer, xs, p, ctx):
    return [ctx.F.dropout(xs[0], layer.attrs["ratio"], ctx.training)]


@rule(Dropout, "onnx")
def _dropout_onnx(b, layer, x, y):
    b.node("Dropout", [x[0], b.const("ratio", np.float32(layer.attrs["ratio"]))], y)


@rule(Dropout, "caffe")
def _dropout_caffe(layer, w):
    return "Dropout", [("dropout_param", [("dropout_ratio", float(layer.attrs["ratio"]))])]


@register
class Identity(Op):
    name = "identity"
    alias = True
    no_rules = {"tvm": "an alias: no kernel"}
    doc = "y = x (Caffe Split outputs and no-op layers import as identity; canonicalize removes it)."

    @staticmethod
    def compute(layer, inputs, params):
        return [inputs[0]]

    @staticmethod
    def channels(layer, in_types):
        return PASSTHROUGH


@rule(Identity, "torch")
def _identity_torch(layer, xs, p, ctx):
    return [xs[0]]


@rule(Identity, "onnx")
def _identity_onnx(b, layer, x, y):
    b.node("Identity", x, y)


@rule(Identity, "caffe")
def _identity_caffe(layer, w):
    """Caffe has no Identity layer: a one-bottom Concat is one (prototxt/translate.py maps it back)."""
    return "Concat", [("concat_param", [("axis", 1)])]
