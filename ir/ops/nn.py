"""Layers with weights that make new channels: conv2d, dense; and the graph input."""
from __future__ import annotations

import numpy as np

from cococ.ir.core import TensorType
from cococ.ir.registry import Attr, ChannelRule, Cost, Op, register


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
        g = layer.attrs["groups"]
        if g == 1:
            return ChannelRule("source", out_params={"weight": 0, "bias": 0}, in_params={"weight": 1})
        if g == c == layer.attrs["out_channels"]:  # depthwise: channel c in -> channel c out
            return ChannelRule("passthrough", params={"weight": 0, "bias": 0})
        return ChannelRule("opaque")  # grouped (not depthwise): groups must stay aligned


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
