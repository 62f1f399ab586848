"""transpose: the one IR op that reorders a tensor's elements without computing on them.

CNNs exported from torch use it in two places: ShuffleNet's channel shuffle (reshape to
[N, g, C/g, H, W], transpose [0, 2, 1, 3, 4], reshape back) and NCHW <-> NHWC at a graph's
edges. Unlike reshape (a view: the output is the input's storage) a transpose moves data, so
every backend gives it a kernel (TVM: one injective loop nest, on x86, cuda and the M4 alike).
Any rank and any permutation are accepted; a permutation that keeps axis 1 in place keeps the
channels where pruning looks for them (passthrough), any other stops pruning (opaque). It
changes no value, so a q15/int8 M4 build runs it on the integers, keeping the input's scale.
"""
from __future__ import annotations

import numpy as np

from cococ.ir.core import TensorType
from cococ.ir.registry import OPAQUE, PASSTHROUGH, Attr, Op, register, rule


@register
class Transpose(Op):
    name = "transpose"
    keeps_scale = True  # moves values unchanged: a q15/int8 build transposes the integers
    no_rules = {"caffe": "BVLC Caffe has no layer that permutes axes (Permute exists only in the SSD fork, "
                         "which cococ's prototxt reader does not take)"}
    doc = ("Output axis i is input axis perm[i] (numpy.transpose, ONNX Transpose, torch permute); "
           "moves data, any rank.")
    attrs = {"perm": Attr("ints")}

    @staticmethod
    def verify(layer, in_types):
        perm = layer.attrs["perm"]
        if sorted(perm) != list(range(in_types[0].rank)):
            raise layer.error(f"transpose perm {perm} is not a permutation of the axes of {in_types[0]}")

    @staticmethod
    def infer(layer, in_types):
        x = in_types[0]
        return [TensorType(tuple(x.shape[p] for p in layer.attrs["perm"]), x.dtype)]

    @staticmethod
    def compute(layer, inputs, params):
        return [np.ascontiguousarray(np.transpose(inputs[0], layer.attrs["perm"]))]

    @staticmethod
    def channels(layer, in_types):
        perm = Transpose.attr(layer, "perm")
        return PASSTHROUGH if len(perm) > 1 and perm[:2] == [0, 1] else OPAQUE


@rule(Transpose, "tvm")
def _transpose_tvm(layer, xs, ps, ctx):
    return [ctx.topi.transpose(xs[0], [int(p) for p in layer.attrs["perm"]])]


@rule(Transpose, "torch")
def _transpose_torch(layer, xs, p, ctx):
    return [xs[0].permute(*layer.attrs["perm"])]


@rule(Transpose, "onnx")
def _transpose_onnx(b, layer, x, y):
    b.node("Transpose", x, y, perm=[int(p) for p in layer.attrs["perm"]])
