"""Layers with weights that make new channels: conv2d, dense; and the graph input."""
from __future__ import annotations

import numpy as np

from cococ.ir.core import TensorType
from cococ.ir.registry import Attr, ChannelRule, Cost, Op, register, rule


@register
class Input(Op):
    name = "input"
    doc = "A graph input of a fixed shape (NCHW for images)."
    attrs = {"shape": Attr("ints"), "dtype": Attr("str", default="f32")}
    num_inputs = 0

    @staticmethod
    def infer(layer, in_types):
        if any(d <= 0 for d in layer.attrs["shape"]):
            raise layer.error(f"input shape must be positive, got {layer.attrs['shape']}")
        return [TensorType(tuple(layer.attrs["shape"]), layer.attrs["dtype"])]

    @staticmethod
    def compute(layer, inputs, params):
        raise layer.error("input layers are fed, not computed")

    @staticmethod
    def channels(layer, in_types):
        return ChannelRule("opaque")


def conv_out_size(size: int, k: int, stride: int, pad_lo: int, pad_hi: int, dilation: int) -> int:
    return (size + pad_lo + pad_hi - (dilation * (k - 1) + 1)) // stride + 1


@register
class Conv2d(Op):
    name = "conv2d"
    weighted = True
    caffe_blobs = ("weight", "bias")
    doc = "2-D convolution, NCHW, weight OIHW (I = in_channels / groups); pad = [top, left, bottom, right]."
    attrs = {
        "out_channels": Attr("int"),
        "kernel": Attr("ints", length=2),
        "stride": Attr("ints", default=[1, 1], length=2),
        "pad": Attr("ints", default=[0, 0, 0, 0], length=4),
        "dilation": Attr("ints", default=[1, 1], length=2),
        "groups": Attr("int", default=1),
    }
    optional_params = frozenset({"bias"})

    @staticmethod
    def verify(layer, in_types):
        (x,) = in_types
        a = layer.attrs
        if x.rank != 4:
            raise layer.error(f"conv2d input must be NCHW (rank 4), got {x}")
        g = a["groups"]
        if g < 1 or x.shape[1] % g or a["out_channels"] % g:
            raise layer.error(f"groups={g} must divide in_channels={x.shape[1]} and out_channels={a['out_channels']}")
        if min(a["kernel"] + a["stride"] + a["dilation"]) < 1 or min(a["pad"]) < 0:
            raise layer.error(f"bad kernel/stride/dilation/pad {a['kernel']}/{a['stride']}/{a['dilation']}/{a['pad']}")

    @staticmethod
    def param_shapes(layer, in_types):
        a = layer.attrs
        c = in_types[0].shape[1]
        return {"weight": (a["out_channels"], c // a["groups"], *a["kernel"]), "bias": (a["out_channels"],)}

    @staticmethod
    def infer(layer, in_types):
        (x,) = in_types
        a = layer.attrs
        n, _, h, w = x.shape
        kh, kw = a["kernel"]
        t, l, b, r = a["pad"]
        oh = conv_out_size(h, kh, a["stride"][0], t, b, a["dilation"][0])
        ow = conv_out_size(w, kw, a["stride"][1], l, r, a["dilation"][1])
        if oh < 1 or ow < 1:
            raise layer.error(f"kernel {kh}x{kw} does not fit input {h}x{w} (output would be {oh}x{ow})")
        return [TensorType((n, a["out_channels"], oh, ow), x.dtype)]

    @staticmethod
    def compute(layer, inputs, params):
        (x,) = inputs
        a = layer.attrs
        w = params["weight"]
        g = a["groups"]
        t, l, b, r = a["pad"]
        sh, sw = a["stride"]
        dh, dw = a["dilation"]
        kh, kw = a["kernel"]
        xp = np.pad(x, ((0, 0), (0, 0), (t, b), (l, r)))
        n, c, h, wd = xp.shape
        oh = (h - (dh * (kh - 1) + 1)) // sh + 1
        ow = (wd - (dw * (kw - 1) + 1)) // sw + 1
        # im2col: cols[n, c, kh, kw, oh, ow]
        cols = np.empty((n, c, kh, kw, oh, ow), dtype=x.dtype)
        for i in range(kh):
            for j in range(kw):
                cols[:, :, i, j] = xp[:, :, i * dh: i * dh + sh * (oh - 1) + 1: sh, j * dw: j * dw + sw * (ow - 1) + 1: sw]
        cg, og = c // g, a["out_channels"] // g
        out = np.empty((n, a["out_channels"], oh, ow), dtype=np.result_type(x, w))
        for gi in range(g):
            cg_cols = cols[:, gi * cg:(gi + 1) * cg].reshape(n, cg * kh * kw, oh * ow)
            wg = w[gi * og:(gi + 1) * og].reshape(og, cg * kh * kw)
            out[:, gi * og:(gi + 1) * og] = np.einsum("ok,nkp->nop", wg, cg_cols, optimize=True).reshape(n, og, oh, ow)
        if "bias" in params:
            out += params["bias"].reshape(1, -1, 1, 1)
        return [out.astype(x.dtype, copy=False)]

    @staticmethod
    def cost(layer, in_types, out_types):
        a = layer.attrs
        c = in_types[0].shape[1]
        n, o, oh, ow = out_types[0].shape
        macs = n * o * oh * ow * (c // a["groups"]) * a["kernel"][0] * a["kernel"][1]
        return Cost(params=sum(p.type.size for p in layer.params.values()), macs=macs)

    @staticmethod
    def channels(layer, in_types):
        c = in_types[0].shape[1]
        g = Conv2d.attr(layer, "groups")
        if g == 1:
            return ChannelRule("source", out_params={"weight": 0, "bias": 0}, in_params={"weight": 1})
        if g == c == layer.attrs["out_channels"]:  # depthwise: channel c in -> channel c out
            return ChannelRule("passthrough", params={"weight": 0, "bias": 0})
        return ChannelRule("opaque")  # grouped (not depthwise): groups must stay aligned


@rule(Conv2d, "tvm-params")
def _conv2d_tvm_params(layer, ctx):
    """The weight packed [O/ob, I/g, kh, kw, ob] (one vector per output block) unless the conv is
    depthwise-like (an output vector would span groups)."""
    ps = {k: np.ascontiguousarray(p.dense()) for k, p in layer.params.items()}
    g, o = layer.attrs["groups"], layer.attrs["out_channels"]
    if ctx.oc_block > 1 and (g == 1 or (o // g) % ctx.oc_block == 0):
        ps["weight"] = ctx.pack_oc(ps["weight"])
    return ps


@rule(Conv2d, "tvm")
def _conv2d_tvm(layer, xs, ps, ctx):
    """Direct (`conv_direct`) or on packed weights (`conv_packed`): the x86 schedule finds the
    reduction by these names. Bias is the `conv_out` stage the schedules fuse."""
    te = ctx.te
    x, w, bias = xs[0], ps["weight"], ps.get("bias")
    a = layer.attrs
    n, c, h, wd = (int(d) for d in x.shape)
    o, g = a["out_channels"], a["groups"]
    (kh, kw), (sh, sw), (dh, dw), (t, l, b, r) = a["kernel"], a["stride"], a["dilation"], a["pad"]
    oh, ow = conv_out_size(h, kh, sh, t, b, dh), conv_out_size(wd, kw, sw, l, r, dw)
    xp = ctx.pad(x, [0, 0, t, l], [0, 0, b, r], 0.0, "pad")
    icg, og = c // g, o // g
    rc, ry, rx = te.reduce_axis((0, icg), "rc"), te.reduce_axis((0, kh), "ry"), te.reduce_axis((0, kw), "rx")
    if len(w.shape) == 5:  # packed [OB, icg, kh, kw, ob]
        ob = int(w.shape[-1])

        def packed(nn, cb, y, xx, ci):
            ic = rc if g == 1 else (cb * ob) // og * icg + rc
            return te.sum(xp(nn, ic, y * sh + ry * dh, xx * sw + rx * dw) * w[cb, rc, ry, rx, ci], axis=[rc, ry, rx])

        conv = te.compute((n, int(w.shape[0]), oh, ow, ob), packed, name="conv_packed")
        at = lambda nn, co, y, xx: conv[nn, co // ob, y, xx, co % ob]  # noqa: E731
    else:
        def direct(nn, co, y, xx):
            ic = rc if g == 1 else co // og * icg + rc
            return te.sum(xp(nn, ic, y * sh + ry * dh, xx * sw + rx * dw) * w[co, rc, ry, rx], axis=[rc, ry, rx])

        conv = te.compute((n, o, oh, ow), direct, name="conv_direct")
        if bias is None:
            return [conv]
        at = lambda nn, co, y, xx: conv[nn, co, y, xx]  # noqa: E731

    def out(nn, co, y, xx):
        v = at(nn, co, y, xx)
        return v + bias[co] if bias is not None else v
    return [te.compute((n, o, oh, ow), out, name="conv_out")]


@rule(Conv2d, "torch")
def _conv2d_torch(layer, xs, p, ctx):
    a = layer.attrs
    t, l, b, r = a["pad"]
    x = xs[0]
    if (t, l) != (b, r):  # torch pads symmetrically: pad explicitly first
        x, t, l = ctx.F.pad(x, (l, r, t, b)), 0, 0
    return [ctx.F.conv2d(x, p["weight"], p.get("bias"), a["stride"], (t, l), a["dilation"], a["groups"])]


@rule(Conv2d, "onnx")
def _conv2d_onnx(b, layer, x, y):
    a = layer.attrs
    ins = [x[0], b.param("weight")] + ([b.param("bias")] if "bias" in layer.params else [])
    b.node("Conv", ins, y, kernel_shape=a["kernel"], strides=a["stride"], pads=a["pad"],
           dilations=a["dilation"], group=a["groups"])


@rule(Conv2d, "caffe")
def _conv2d_caffe(layer, w):
    a = layer.attrs
    p = [("num_output", a["out_channels"]), ("bias_term", "bias" in layer.params)]
    p += w.hw("pad", "pad_h", "pad_w", w.sym_pad(layer)) + w.hw("kernel_size", "kernel_h", "kernel_w", a["kernel"])
    p += w.hw("stride", "stride_h", "stride_w", a["stride"])
    if a["groups"] != 1:
        p.append(("group", a["groups"]))
    if list(a["dilation"]) != [1, 1]:
        p += [("dilation", d) for d in (a["dilation"][:1] if a["dilation"][0] == a["dilation"][1] else a["dilation"])]
    return "Convolution", [("convolution_param", p)]


@register
class Dense(Op):
    name = "dense"
    weighted = True
    caffe_blobs = ("weight", "bias")
    doc = "Fully connected (Caffe InnerProduct, ONNX Gemm with transB): y = x W^T + b, W is [out, in]."
    attrs = {"out_features": Attr("int")}
    optional_params = frozenset({"bias"})

    @staticmethod
    def verify(layer, in_types):
        if in_types[0].rank != 2:
            raise layer.error(f"dense input must be rank 2 [N, features] (flatten first), got {in_types[0]}")

    @staticmethod
    def param_shapes(layer, in_types):
        o = layer.attrs["out_features"]
        return {"weight": (o, in_types[0].shape[1]), "bias": (o,)}

    @staticmethod
    def infer(layer, in_types):
        return [TensorType((in_types[0].shape[0], layer.attrs["out_features"]), in_types[0].dtype)]

    @staticmethod
    def compute(layer, inputs, params):
        y = inputs[0] @ params["weight"].T
        if "bias" in params:
            y = y + params["bias"]
        return [y.astype(inputs[0].dtype, copy=False)]

    @staticmethod
    def cost(layer, in_types, out_types):
        n, k = in_types[0].shape
        return Cost(params=sum(p.type.size for p in layer.params.values()), macs=n * k * layer.attrs["out_features"])

    @staticmethod
    def channels(layer, in_types):
        return ChannelRule("source", out_params={"weight": 0, "bias": 0}, in_params={"weight": 1})


@rule(Dense, "tvm-params")
def _dense_tvm_params(layer, ctx):
    """The weight packed [O/ob, K, ob] when the target computes `ctx.oc_block` outputs per vector."""
    ps = {k: np.ascontiguousarray(p.dense()) for k, p in layer.params.items()}
    if ctx.oc_block > 1:
        ps["weight"] = ctx.pack_oc(ps["weight"])
    return ps


@rule(Dense, "tvm")
def _dense_tvm(layer, xs, ps, ctx):
    """`dense_packed` / `dense_direct` (names the x86 schedule looks for), then `dense_out` (+ bias)."""
    te = ctx.te
    x, w, bias = xs[0], ps["weight"], ps.get("bias")
    n, k = (int(d) for d in x.shape)
    o = layer.attrs["out_features"]
    rk = te.reduce_axis((0, k), "rk")
    if len(w.shape) == 3:
        ob = int(w.shape[-1])
        acc = te.compute((n, int(w.shape[0]), ob),
                         lambda i, cb, ci: te.sum(x[i, rk] * w[cb, rk, ci], axis=rk), name="dense_packed")
        get = lambda i, j: acc[i, j // ob, j % ob]  # noqa: E731
    else:
        acc = te.compute((n, o), lambda i, j: te.sum(x[i, rk] * w[j, rk], axis=rk), name="dense_direct")
        get = lambda i, j: acc[i, j]  # noqa: E731
    return [te.compute((n, o), lambda i, j: get(i, j) + bias[j] if bias is not None else get(i, j),
                       name="dense_out")]


@rule(Dense, "torch")
def _dense_torch(layer, xs, p, ctx):
    return [ctx.F.linear(xs[0], p["weight"], p.get("bias"))]


@rule(Dense, "onnx")
def _dense_onnx(b, layer, x, y):
    ins = [x[0], b.param("weight")] + ([b.param("bias")] if "bias" in layer.params else [])
    b.node("Gemm", ins, y, transB=1)


@rule(Dense, "caffe")
def _dense_caffe(layer, w):
    return "InnerProduct", [("inner_product_param", [("num_output", layer.attrs["out_features"]),
                                                      ("bias_term", "bias" in layer.params)])]
