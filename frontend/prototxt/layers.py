"""One converter per Caffe layer type, in the CONVERTERS table (data layers in DATA_TYPES).

A converter reads its layer's `*_param` message with the typed accessors (so a bad value is
an error at its line) and emits IR layers through `LayerCtx.emit`; it returns one Value per
Caffe top. Defaults are caffe.proto's (e.g. LRN alpha = 1, InnerProduct bias_term = true).
The main IR layer keeps the Caffe layer name (weights are matched by it); helper layers a
converter adds (the flatten before an InnerProduct) are named `<layer>/<what>`.
"""
from __future__ import annotations

import math
from typing import Callable

from cococ.frontend.prototxt.textformat import INT64, UINT32, Message
from cococ.ir.core import CococError, Value
from cococ.ir.ops.activation import Clip, LeakyRelu, Prelu, Relu, Sigmoid, Tanh

CONVERTERS: dict[str, Callable[["LayerCtx"], list[Value]]] = {}  # data layers: data_layers.DATA_TYPES
TRAINING_TYPES = {"SoftmaxWithLoss", "Accuracy", "EuclideanLoss", "SigmoidCrossEntropyLoss", "HingeLoss",
                  "InfogainLoss", "MultinomialLogisticLoss", "ContrastiveLoss"}


def is_training_type(t: str) -> bool:
    return t in TRAINING_TYPES or t.endswith("Loss")


def converter(*types: str):
    def deco(fn):
        for t in types:
            CONVERTERS[t] = fn
        return fn
    return deco


class LayerCtx:
    """What a converter sees of one Caffe layer, and how it adds IR layers."""

    def __init__(self, builder, lp: Message, name: str, type_: str, loc, inputs: list[Value], tops: list[str],
                 module: str | None):
        self.b, self.lp, self.name, self.type, self.loc = builder, lp, name, type_, loc
        self.inputs, self.tops, self.module = inputs, tops, module

    def param(self, field: str) -> Message:
        """The layer's `<field> { ... }` message, or an empty one (all defaults)."""
        return self.lp.get_msg(field) or Message([], self.loc, self.lp.path)

    def error(self, msg: str) -> CococError:
        return CococError(msg, layer=self.name, loc=self.loc, path=self.lp.path)

    def need_inputs(self, lo: int, hi: int | None = None) -> None:
        n, hi = len(self.inputs), lo if hi is None else hi
        if n < lo or n > hi:
            want = str(lo) if lo == hi else f"{lo} to {hi}"
            raise self.error(f"{self.type} takes {want} bottom(s), got {n}")

    def emit(self, op: str, attrs: dict | None = None, *, inputs: list[Value] | None = None, params=(),
             param_shapes=None, helper: str | None = None, n_out: int | None = None) -> list[Value]:
        """Add one IR layer. The main layer (helper=None) names its outputs after the Caffe tops
        (a top that is already a blob, i.e. in place, gets a value named after the layer)."""
        inputs = self.inputs if inputs is None else inputs
        if helper is not None:
            name = f"{self.name}/{helper}"
            outs = [self.b.new_value(name)]
        else:
            name = self.name
            n = len(self.tops) if n_out is None else n_out
            if n == 0:
                raise self.error(f"{self.type} layer has no top")
            tops = self.tops[:n] + [f"{self.name}_out{i}" for i in range(len(self.tops), n)]
            outs = [self.b.new_value(self.name if (t in self.b.blobs and len(tops) == 1) else
                                     (f"{self.name}_{t}" if t in self.b.blobs else t)) for t in tops]
        layer = self.b.emit(op, name, inputs, outs, dict(attrs or {}), params, param_shapes, self.loc, self.module)
        if helper is None:
            layer.meta["caffe_type"] = self.type
            layer.meta["caffe_name"] = self.name
            specs = [m.to_dict() for m in self.lp.get_msgs("param")]
            if specs:
                layer.meta["caffe_param"] = specs
        return outs


def hw(p: Message, ctx: LayerCtx, base: str, h: str, w: str, default: list[int] | None) -> list[int]:
    """A 2-D size given as `base` (once, or repeated per axis) or as `h` and `w` fields."""
    vals = p.get_ints(base, UINT32)
    if p.has(h) or p.has(w):
        if vals:
            raise ctx.error(f"give either {base} or {h}/{w}, not both")
        if not (p.has(h) and p.has(w)):
            raise ctx.error(f"{h} and {w} must be given together")
        return [p.get_int(h, rng=UINT32), p.get_int(w, rng=UINT32)]
    if not vals:
        if default is None:
            raise ctx.error(f"{ctx.type} needs {base} (or {h} and {w})")
        vals = list(default)
    if len(vals) > 2:
        raise ctx.error(f"only 2-D is supported: {base} has {len(vals)} values")
    return vals * 2 if len(vals) == 1 else vals


def _axis(ctx: LayerCtx, p: Message, field: str = "axis", default: int = 1) -> int:
    return p.get_int(field, default)


# ---- weighted layers --------------------------------------------------------------------------

@converter("Convolution")
def convolution(ctx: LayerCtx) -> list[Value]:
    ctx.need_inputs(1)
    p = ctx.param("convolution_param")
    if p.get_int("axis", 1) != 1:
        raise ctx.error("Convolution with axis != 1 is not supported")
    n = p.get_int("num_output", rng=UINT32)
    if not n:
        raise ctx.error("Convolution needs num_output >= 1")
    ph, pw = hw(p, ctx, "pad", "pad_h", "pad_w", [0])
    attrs = {"out_channels": n, "kernel": hw(p, ctx, "kernel_size", "kernel_h", "kernel_w", None),
             "stride": hw(p, ctx, "stride", "stride_h", "stride_w", [1]), "pad": [ph, pw, ph, pw],
             "dilation": hw(p, ctx, "dilation", "dilation_h", "dilation_w", [1]),
             "groups": p.get_int("group", 1, UINT32)}
    params = ("weight", "bias") if p.get_bool("bias_term", True) else ("weight",)
    return ctx.emit("conv2d", attrs, params=params)


@converter("Deconvolution")
def deconvolution(ctx: LayerCtx) -> list[Value]:
    raise ctx.error("Deconvolution (transposed convolution) is not supported by the IR")


@converter("InnerProduct")
def inner_product(ctx: LayerCtx) -> list[Value]:
    ctx.need_inputs(1)
    p = ctx.param("inner_product_param")
    n = p.get_int("num_output", rng=UINT32)
    if not n:
        raise ctx.error("InnerProduct needs num_output >= 1")
    x = ctx.inputs[0]
    rank = x.type.rank
    axis = p.get_int("axis", 1)
    if not -rank <= axis < rank or axis % rank != 1:
        raise ctx.error(f"InnerProduct with axis {axis} on a rank-{rank} input is not supported (axis must be 1)")
    inputs = ctx.inputs
    if rank > 2:
        inputs = ctx.emit("flatten", {"axis": 1}, helper="flatten")
    params = ("weight", "bias") if p.get_bool("bias_term", True) else ("weight",)
    outs = ctx.emit("dense", {"out_features": n}, inputs=inputs, params=params)
    if p.get_bool("transpose", False):
        ctx.b.graph.layers[-1].meta["caffe_transpose"] = True  # caffemodel stores weight as [in, out]
    return outs


@converter("BatchNorm")
def batch_norm(ctx: LayerCtx) -> list[Value]:
    ctx.need_inputs(1)
    p = ctx.param("batch_norm_param")
    outs = ctx.emit("batchnorm", {"eps": p.get_float("eps", 1e-5)}, params=("mean", "var"))
    if p.has("use_global_stats"):
        ctx.b.graph.layers[-1].meta["caffe_use_global_stats"] = p.get_bool("use_global_stats")
    return outs


def _per_channel_axes(ctx: LayerCtx, p: Message) -> None:
    if len(ctx.inputs) == 2:
        raise ctx.error(f"{ctx.type} with a second bottom (learned-from-blob factor) is not supported")
    ctx.need_inputs(1)
    if p.get_int("axis", 1) != 1 or p.get_int("num_axes", 1) != 1:
        raise ctx.error(f"{ctx.type} is supported per channel only (axis: 1, num_axes: 1)")


@converter("Scale")
def scale(ctx: LayerCtx) -> list[Value]:
    p = ctx.param("scale_param")
    _per_channel_axes(ctx, p)
    return ctx.emit("scale", params=("scale", "bias") if p.get_bool("bias_term", False) else ("scale",))


@converter("Bias")
def bias(ctx: LayerCtx) -> list[Value]:
    _per_channel_axes(ctx, ctx.param("bias_param"))
    return ctx.emit("bias", params=("bias",))


@converter("PReLU")
def prelu(ctx: LayerCtx) -> list[Value]:
    ctx.need_inputs(1)
    shared = ctx.param("prelu_param").get_bool("channel_shared", False)
    return ctx.emit(Prelu.name, params=("slope",), param_shapes={"slope": (1,)} if shared else None)


# ---- element-wise -----------------------------------------------------------------------------

@converter("ReLU")
def relu(ctx: LayerCtx) -> list[Value]:
    ctx.need_inputs(1)
    slope = ctx.param("relu_param").get_float("negative_slope", 0.0)
    return ctx.emit(LeakyRelu.name, {"alpha": slope}) if slope else ctx.emit(Relu.name)


def _simple(op: str):
    def conv(ctx: LayerCtx) -> list[Value]:
        ctx.need_inputs(1)
        return ctx.emit(op)
    conv.__doc__ = f"Caffe layer -> {op} (no parameters)."
    return conv


CONVERTERS["Sigmoid"] = _simple(Sigmoid.name)
CONVERTERS["TanH"] = _simple(Tanh.name)


@converter("ReLU6")
def relu6(ctx: LayerCtx) -> list[Value]:
    ctx.need_inputs(1)
    return ctx.emit(Clip.name, {"min": 0.0, "max": 6.0})


@converter("Clip")
def clip(ctx: LayerCtx) -> list[Value]:
    ctx.need_inputs(1)
    p = ctx.param("clip_param")
    lo, hi = p.get_float("min"), p.get_float("max")
    if lo is None or hi is None:
        raise ctx.error("Clip needs clip_param { min max }")
    # min -inf / max inf (how the writer spells a missing bound) is no bound, as in the IR: an
    # infinite bound would overflow the fixed-point backends' integer clamp
    attrs = {k: v for k, v, none in (("min", lo, -math.inf), ("max", hi, math.inf)) if v != none}
    return ctx.emit(Clip.name, attrs)


@converter("Power")
def power(ctx: LayerCtx) -> list[Value]:
    ctx.need_inputs(1)
    p = ctx.param("power_param")
    return ctx.emit("power", {"power": p.get_float("power", 1.0), "scale": p.get_float("scale", 1.0),
                              "shift": p.get_float("shift", 0.0)})


@converter("Dropout")
def dropout(ctx: LayerCtx) -> list[Value]:
    ctx.need_inputs(1)
    return ctx.emit("dropout", {"ratio": ctx.param("dropout_param").get_float("dropout_ratio", 0.5)})


@converter("Softmax")
def softmax(ctx: LayerCtx) -> list[Value]:
    ctx.need_inputs(1)
    return ctx.emit("softmax", {"axis": _axis(ctx, ctx.param("softmax_param"))})


@converter("LRN")
def lrn(ctx: LayerCtx) -> list[Value]:
    ctx.need_inputs(1)
    p = ctx.param("lrn_param")
    region = p.get_enum("norm_region", ("ACROSS_CHANNELS", "WITHIN_CHANNEL"), "ACROSS_CHANNELS",
                        numbers={0: "ACROSS_CHANNELS", 1: "WITHIN_CHANNEL"})
    return ctx.emit("lrn", {"size": p.get_int("local_size", 5, UINT32), "alpha": p.get_float("alpha", 1.0),
                            "beta": p.get_float("beta", 0.75), "k": p.get_float("k", 1.0),
                            "region": "across" if region == "ACROSS_CHANNELS" else "within"})


# ---- pooling ----------------------------------------------------------------------------------

@converter("Pooling")
def pooling(ctx: LayerCtx) -> list[Value]:
    ctx.need_inputs(1)
    p = ctx.param("pooling_param")
    method = p.get_enum("pool", ("MAX", "AVE", "STOCHASTIC"), "MAX", numbers={0: "MAX", 1: "AVE", 2: "STOCHASTIC"})
    if method == "STOCHASTIC":
        raise ctx.error("STOCHASTIC pooling is not supported")
    if p.get_bool("global_pooling", False):
        return ctx.emit("global_max_pool" if method == "MAX" else "global_avg_pool")
    ph, pw = hw(p, ctx, "pad", "pad_h", "pad_w", [0])
    rounding = p.get_enum("round_mode", ("CEIL", "FLOOR"), "CEIL", numbers={0: "CEIL", 1: "FLOOR"})
    attrs = {"kernel": hw(p, ctx, "kernel_size", "kernel_h", "kernel_w", None),
             "stride": hw(p, ctx, "stride", "stride_h", "stride_w", [1]), "pad": [ph, pw, ph, pw],
             "ceil_mode": rounding == "CEIL"}
    if method == "AVE":
        attrs["count_include_pad"] = True  # Caffe divides by the window clipped to the padded input
    return ctx.emit("max_pool" if method == "MAX" else "avg_pool", attrs)


# ---- tensor plumbing --------------------------------------------------------------------------

@converter("Eltwise")
def eltwise(ctx: LayerCtx) -> list[Value]:
    ctx.need_inputs(2, 1 << 16)
    p = ctx.param("eltwise_param")
    mode = p.get_enum("operation", ("PROD", "SUM", "MAX"), "SUM", numbers={0: "PROD", 1: "SUM", 2: "MAX"})
    attrs = {"mode": mode.lower()}
    coeffs = p.get_floats("coeff")
    if coeffs:
        if mode != "SUM":
            raise ctx.error("Eltwise coeff is only allowed with operation SUM")
        if len(coeffs) != len(ctx.inputs):
            raise ctx.error(f"Eltwise has {len(ctx.inputs)} bottoms but {len(coeffs)} coeff values")
        attrs["coeffs"] = coeffs
    return ctx.emit("eltwise", attrs)


@converter("Concat")
def concat(ctx: LayerCtx) -> list[Value]:
    ctx.need_inputs(1, 1 << 16)
    p = ctx.param("concat_param")
    if p.has("axis") and p.has("concat_dim"):
        raise ctx.error("give either concat_param axis or concat_dim, not both")
    axis = p.get_int("concat_dim", rng=UINT32) if p.has("concat_dim") else p.get_int("axis", 1)
    if len(ctx.inputs) == 1:
        return ctx.emit("identity")
    return ctx.emit("concat", {"axis": axis})


@converter("Flatten")
def flatten(ctx: LayerCtx) -> list[Value]:
    ctx.need_inputs(1)
    p = ctx.param("flatten_param")
    shape = ctx.inputs[0].type.shape
    r = len(shape)
    axis, end = p.get_int("axis", 1), p.get_int("end_axis", -1)
    if not (-r <= axis < r and -r <= end < r) or end % r < axis % r:
        raise ctx.error(f"Flatten axis {axis}..{end} is out of range for a rank-{r} input")
    a, e = axis % r, end % r
    if e == r - 1:
        return ctx.emit("flatten", {"axis": a})
    merged = 1
    for d in shape[a:e + 1]:
        merged *= d
    return ctx.emit("reshape", {"shape": list(shape[:a]) + [merged] + list(shape[e + 1:])})


@converter("Reshape")
def reshape(ctx: LayerCtx) -> list[Value]:
    ctx.need_inputs(1)
    p = ctx.param("reshape_param")
    sp = p.get_msg("shape")
    dims = sp.get_ints("dim", INT64) if sp is not None else []
    shape = list(ctx.inputs[0].type.shape)
    r = len(shape)
    axis, num = p.get_int("axis", 0), p.get_int("num_axes", -1)
    start = axis if axis >= 0 else r + axis + 1
    end = r if num == -1 else start + num
    if not 0 <= start <= r or num < -1 or end > r:
        raise ctx.error(f"Reshape axis {axis} / num_axes {num} out of range for a rank-{r} input")
    if (start, end) != (0, r):  # spell the kept dims out so the op sees a whole shape
        dims = shape[:start] + [shape[start + i] if d == 0 and start + i < r else d
                                for i, d in enumerate(dims)] + shape[end:]
    if not dims:
        raise ctx.error("Reshape needs reshape_param { shape { dim ... } }")
    return ctx.emit("reshape", {"shape": dims})


@converter("Split")
def split(ctx: LayerCtx) -> list[Value]:
    """Split only fans a blob out; in SSA every reader can read the one value."""
    ctx.need_inputs(1)
    return [ctx.inputs[0]] * len(ctx.tops)


@converter("Silence")
def silence(ctx: LayerCtx) -> list[Value]:
    return []


@converter("Slice")
def slice_(ctx: LayerCtx) -> list[Value]:
    ctx.need_inputs(1)
    p = ctx.param("slice_param")
    if p.has("axis") and p.has("slice_dim"):
        raise ctx.error("give either slice_param axis or slice_dim, not both")
    axis = p.get_int("slice_dim", rng=UINT32) if p.has("slice_dim") else p.get_int("axis", 1)
    shape = ctx.inputs[0].type.shape
    if not -len(shape) <= axis < len(shape):
        raise ctx.error(f"Slice axis {axis} is out of range for {ctx.inputs[0].type}")
    points = p.get_ints("slice_point", UINT32)
    n = len(ctx.tops)
    if not points:
        dim = shape[axis]
        if n < 1 or dim % n:
            raise ctx.error(f"Slice without slice_point splits evenly: {dim} is not divisible by {n} tops")
        points = [dim // n * i for i in range(1, n)]
    if len(points) + 1 != n:
        raise ctx.error(f"Slice has {len(points)} slice_point(s), so it needs {len(points) + 1} tops, got {n}")
    if n == 1:
        return ctx.emit("identity")
    return ctx.emit("slice", {"axis": axis, "points": points})
