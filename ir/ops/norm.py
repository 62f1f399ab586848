"""Per-channel affine layers and normalization: batchnorm, scale, bias, lrn.

batchnorm, scale and bias act per channel (axis 1) with [C] params, so pruning a channel
slices their params (passthrough). Their cost counts one MAC per output element for
batchnorm and scale (the multiply that canonicalize later folds into the conv) and none
for bias (adds only).
"""
from __future__ import annotations

import numpy as np

from cococ.ir.ops.activation import channel_shape
from cococ.ir.registry import Attr, ChannelRule, Cost, Op, register, rule


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

    @staticmethod
    def fold(params: dict, attrs: dict) -> tuple[np.ndarray, np.ndarray]:
        """(mul, add) per channel with batchnorm(x) = x * mul + add, in float64 (callers round to
        their dtype): (x - mean) / sqrt(var + eps) * scale + bias, folded once at compile time."""
        p = {k: np.asarray(v, dtype=np.float64).reshape(-1) for k, v in params.items()}
        mul = 1.0 / np.sqrt(p["var"] + float(attrs.get("eps", BatchNorm.attrs["eps"].default)))
        if "scale" in p:
            mul = mul * p["scale"]
        return mul, -p["mean"] * mul + (p["bias"] if "bias" in p else 0.0)


def _affine_tvm(te, x, mul, add, name: str):
    """x * mul[c] + add[c] over axis 1 (either may be None): batchnorm, scale, bias, mask."""
    def f(*idx):
        v = x(*idx)
        if mul is not None:
            v = v * mul[idx[1]]
        if add is not None:
            v = v + add[idx[1]]
        return v
    return te.compute(x.shape, f, name=name)


@rule(BatchNorm, "tvm-params")
def _batchnorm_tvm_params(layer, ctx):
    mul, add = BatchNorm.fold({k: p.dense() for k, p in layer.params.items()}, layer.attrs)
    return {"mul": mul.astype(np.float32), "add": add.astype(np.float32)}


@rule(BatchNorm, "tvm")
def _batchnorm_tvm(layer, xs, ps, ctx):
    return [_affine_tvm(ctx.te, xs[0], ps["mul"], ps["add"], "batchnorm")]


@rule(BatchNorm, "torch")
def _batchnorm_torch(layer, xs, p, ctx):
    """Inference batchnorm in eval mode; in training, batch statistics and a moving average (as
    Caffe's BatchNorm with use_global_stats=false), unless the layer is frozen."""
    train = ctx.training and not ctx.frozen
    return [ctx.F.batch_norm(xs[0], p["mean"], p["var"], p.get("scale"), p.get("bias"), train,
                             ctx.bn_momentum, layer.attrs["eps"])]


@rule(BatchNorm, "onnx")
def _batchnorm_onnx(b, layer, x, y):
    c = layer.params["mean"].shape[0]
    scale = b.param("scale") if "scale" in layer.params else b.const("scale", np.ones(c, np.float32))
    bias = b.param("bias") if "bias" in layer.params else b.const("bias", np.zeros(c, np.float32))
    b.node("BatchNormalization", [x[0], scale, bias, b.param("mean"), b.param("var")], y,
           epsilon=float(layer.attrs["eps"]))


@rule(BatchNorm, "caffe")
def _batchnorm_caffe(layer, w):
    p = [("eps", float(layer.attrs["eps"]))]
    if "caffe_use_global_stats" in layer.meta:
        p.append(("use_global_stats", bool(layer.meta["caffe_use_global_stats"])))
    return "BatchNorm", [("batch_norm_param", p)]


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

    @staticmethod
    def fold(params: dict, attrs: dict) -> tuple[np.ndarray, np.ndarray]:
        """(mul, add) per channel in float64: x * scale + (bias or 0)."""
        mul = np.asarray(params["scale"], dtype=np.float64).reshape(-1)
        return mul, (np.asarray(params["bias"], dtype=np.float64).reshape(-1) if "bias" in params
                     else np.zeros_like(mul))


@rule(Scale, "tvm")
def _scale_tvm(layer, xs, ps, ctx):
    return [_affine_tvm(ctx.te, xs[0], ps["scale"], ps.get("bias"), "scale")]


@rule(Scale, "torch")
def _scale_torch(layer, xs, p, ctx):
    x = xs[0]
    y = x * p["scale"].reshape(channel_shape(x.dim(), -1))
    return [y + p["bias"].reshape(channel_shape(x.dim(), -1)) if "bias" in p else y]


@rule(Scale, "onnx")
def _scale_onnx(b, layer, x, y):
    if "bias" not in layer.params:
        b.node("Mul", [x[0], b.param("scale", b.chan_shape())], y)
        return
    t = b.node("Mul", [x[0], b.param("scale", b.chan_shape())], suffix="mul")
    b.node("Add", [t, b.param("bias", b.chan_shape())], y)


@rule(Scale, "caffe")
def _scale_caffe(layer, w):
    return "Scale", [("scale_param", [("bias_term", "bias" in layer.params)])]


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

    @staticmethod
    def fold(params: dict, attrs: dict) -> tuple[np.ndarray, np.ndarray]:
        """(mul, add) per channel in float64: x * 1 + bias."""
        add = np.asarray(params["bias"], dtype=np.float64).reshape(-1)
        return np.ones_like(add), add


@rule(Bias, "tvm")
def _bias_tvm(layer, xs, ps, ctx):
    return [_affine_tvm(ctx.te, xs[0], None, ps["bias"], "bias")]


@rule(Bias, "torch")
def _bias_torch(layer, xs, p, ctx):
    return [xs[0] + p["bias"].reshape(channel_shape(xs[0].dim(), -1))]


@rule(Bias, "onnx")
def _bias_onnx(b, layer, x, y):
    b.node("Add", [x[0], b.param("bias", b.chan_shape())], y)


@rule(Bias, "caffe")
def _bias_caffe(layer, w):
    return "Bias", []


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


@rule(Lrn, "tvm")
def _lrn_tvm(layer, xs, ps, ctx):
    te = ctx.te
    x = xs[0]
    a = layer.attrs
    size = a["size"]
    pre, post = (size - 1) // 2, size - 1 - (size - 1) // 2
    sq = te.compute(x.shape, lambda *i: x(*i) * x(*i), name="lrn_sq")
    if a["region"] == "across":
        p = ctx.pad(sq, [0, pre, 0, 0], [0, post, 0, 0], 0.0, "lrn_pad")
        r = te.reduce_axis((0, size), "r")
        s = te.compute(x.shape, lambda i, j, y, z: te.sum(p(i, j + r, y, z), axis=r), name="lrn_sum")
        cnt = size
    else:
        p = ctx.pad(sq, [0, 0, pre, pre], [0, 0, post, post], 0.0, "lrn_pad")
        ry, rx = te.reduce_axis((0, size), "ry"), te.reduce_axis((0, size), "rx")
        s = te.compute(x.shape, lambda i, j, y, z: te.sum(p(i, j, y + ry, z + rx), axis=[ry, rx]), name="lrn_sum")
        cnt = size * size
    k_, al, be = (ctx.tirx.const(v, x.dtype) for v in (a["k"], a["alpha"] / cnt, -a["beta"]))
    return [te.compute(x.shape, lambda *i: x(*i) * te.power(k_ + al * s(*i), be), name="lrn")]


@rule(Lrn, "torch")
def _lrn_torch(layer, xs, p, ctx):
    """Sum of squares over the IR's window (c - (size-1)//2 .. c + size//2), as a padded average pool."""
    a, F = layer.attrs, ctx.F
    x = xs[0]
    n = a["size"]
    pre, post = (n - 1) // 2, n - 1 - (n - 1) // 2
    sq = x * x
    if a["region"] == "across":
        s = F.avg_pool3d(F.pad(sq, (0, 0, 0, 0, pre, post)).unsqueeze(1), (n, 1, 1), 1).squeeze(1)
    else:
        s = F.avg_pool2d(F.pad(sq, (pre, post, pre, post)), n, 1)
    return [x * ctx.torch.pow(a["k"] + a["alpha"] * s, -a["beta"])]


@rule(Lrn, "onnx")
def _lrn_onnx(b, layer, x, y):
    a = layer.attrs
    n = int(a["size"])
    if a["region"] == "across":
        b.node("LRN", x, y, size=n, alpha=float(a["alpha"]), beta=float(a["beta"]), bias=float(a["k"]))
        return
    # within: y = x * (k + alpha * mean_{n x n window, zero padded}(x^2)) ^ -beta
    pre = (n - 1) // 2
    sq = b.node("Mul", [x[0], x[0]], suffix="square")
    avg = b.node("AveragePool", [sq], suffix="window", kernel_shape=[n, n], strides=[1, 1],
                 pads=[pre, pre, n - 1 - pre, n - 1 - pre], count_include_pad=1)
    t = b.node("Mul", [avg, b.const("alpha", np.float32(a["alpha"]))], suffix="alpha")
    t = b.node("Add", [t, b.const("k", np.float32(a["k"]))], suffix="k")
    t = b.node("Pow", [t, b.const("neg_beta", np.float32(-a["beta"]))], suffix="pow")
    b.node("Mul", [x[0], t], y)


@rule(Lrn, "caffe")
def _lrn_caffe(layer, w):
    a = layer.attrs
    region = w.Enum("ACROSS_CHANNELS" if a["region"] == "across" else "WITHIN_CHANNEL")
    return "LRN", [("lrn_param", [("local_size", a["size"]), ("alpha", float(a["alpha"])),
                                  ("beta", float(a["beta"])), ("k", float(a["k"])), ("norm_region", region)])]
