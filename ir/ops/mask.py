"""Scalpel's mask layer (seed 004 §3.4): per-channel gates that find the nodes node pruning removes.

`mask{threshold=T, epsilon=ε}` with params alpha[C] (0/1) and beta[C] (in [0, 1]) computes
y = x · α · β per channel on axis 1 (a conv's feature map is one node). node_prune trains β
(L1 penalty λ·Σβ, clipped to [0, 1]) and sets α by equation 6 (hysteresis); the layer only lives
during node pruning: channels with α = 0 are removed, β is folded into the producer, the masks
are dropped. Caffe has no such layer: a graph with masks cannot be written as prototxt.
"""
from __future__ import annotations

import numpy as np

from cococ.ir.registry import Attr, ChannelRule, Cost, Op, register, rule


def _chan(v: np.ndarray, ndim: int) -> np.ndarray:
    return v.reshape((1, -1) + (1,) * (ndim - 2))


@register
class Mask(Op):
    name = "mask"
    epilogue = True
    no_rules = {"caffe": "Caffe has no node-pruning gate (masks live only while node pruning trains)"}
    doc = "Node-pruning gate: x * alpha[c] * beta[c] on axis 1 (alpha in {0,1}, beta in [0,1]; Scalpel §3.4)."
    attrs = {"threshold": Attr("float", default=0.5), "epsilon": Attr("float", default=0.05)}

    @staticmethod
    def verify(layer, in_types):
        if in_types[0].rank < 2:
            raise layer.error(f"mask needs a channel axis (rank >= 2), got {in_types[0]}")

    @staticmethod
    def param_shapes(layer, in_types):
        c = in_types[0].shape[1]
        return {"alpha": (c,), "beta": (c,)}

    @staticmethod
    def compute(layer, inputs, params):
        x = inputs[0]
        g = (params["alpha"] * params["beta"]).astype(x.dtype)
        return [(x * _chan(g, x.ndim)).astype(x.dtype, copy=False)]

    @staticmethod
    def cost(layer, in_types, out_types):
        return Cost(params=sum(p.type.size for p in layer.params.values()), macs=out_types[0].size)

    @staticmethod
    def channels(layer, in_types):
        return ChannelRule("passthrough", params={"alpha": 0, "beta": 0})


@rule(Mask, "tvm-params")
def _mask_tvm_params(layer, ctx):
    """The gate folds to one per-channel multiplier, alpha * beta."""
    return {"gate": (layer.params["alpha"].dense() * layer.params["beta"].dense()).astype(np.float32)}


@rule(Mask, "tvm")
def _mask_tvm(layer, xs, ps, ctx):
    x, g = xs[0], ps["gate"]
    return [ctx.te.compute(x.shape, lambda *i: x(*i) * g[i[1]], name="mask")]


@rule(Mask, "torch")
def _mask_torch(layer, xs, p, ctx):
    """x · α[c] · β[c]; node_prune trains β and sets α."""
    x = xs[0]
    return [x * _chan(p["alpha"] * p["beta"], x.dim())]


@rule(Mask, "onnx")
def _mask_onnx(b, layer, x, y):
    """A transient gate, exported as a Mul by the constant α·β."""
    g = (layer.params["alpha"].dense() * layer.params["beta"].dense()).astype(np.float32).reshape(b.chan_shape())
    b.node("Mul", [x[0], b.const("gate", g)], y)
