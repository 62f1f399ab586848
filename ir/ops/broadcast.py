"""broadcast_eltwise: a sum or product of two activations where the second is broadcast to the first.

The case CNNs need is squeeze-and-excite (MobileNet v3, EfficientNet, RegNetY): x[N,C,H,W] times
s[N,C,1,1], a per-sample, per-channel gate computed from x itself, so it cannot be a `scale`
(whose factors are params). `eltwise` keeps Caffe's rule (inputs of one shape, any count);
this op takes exactly two, of one rank, where each dim of the second is 1 or the first's.
It is neither element-wise nor a fusable epilogue in the backends' sense (its inputs differ in
shape), so every backend gives it a kernel of its own; the M4 runs it in float.
"""
from __future__ import annotations

from cococ.ir.registry import OPAQUE, Attr, ChannelRule, Op, register, rule


def _b_index(b_shape, idx):
    """Index into the broadcast operand: 0 on its size-1 dims."""
    return tuple(0 if int(d) == 1 else i for d, i in zip(b_shape, idx))


@register
class BroadcastEltwise(Op):
    name = "broadcast_eltwise"
    no_rules = {"caffe": "Caffe's Eltwise does not broadcast (and its Scale layer with two bottoms takes a "
                         "[N, C] second input, a form cococ's prototxt reader does not produce)"}
    doc = ("a + b (mode=sum) or a * b (mode=prod), b broadcast to a's shape: one rank, each dim of b 1 or "
           "a's (squeeze-excite's x[N,C,H,W] * s[N,C,1,1]).")
    attrs = {"mode": Attr("str", default="prod", choices=("sum", "prod"))}
    num_inputs = 2

    @staticmethod
    def verify(layer, in_types):
        a, b = in_types
        if a.rank != b.rank or any(db not in (1, da) for da, db in zip(a.shape, b.shape)):
            raise layer.error(f"broadcast_eltwise: {b} does not broadcast to {a} (one rank, each dim 1 or equal)")

    @staticmethod
    def compute(layer, inputs, params):
        a, b = inputs
        y = a * b if layer.attrs["mode"] == "prod" else a + b
        return [y.astype(a.dtype, copy=False)]

    @staticmethod
    def channels(layer, in_types):
        a, b = in_types
        return ChannelRule("tie") if a.rank > 1 and b.shape[1] == a.shape[1] else OPAQUE


@rule(BroadcastEltwise, "tvm")
def _broadcast_eltwise_tvm(layer, xs, ps, ctx):
    a, b = xs
    prod = layer.attrs["mode"] == "prod"

    def f(*i):
        u, v = a(*i), b(*_b_index(b.shape, i))
        return u * v if prod else u + v
    return [ctx.te.compute(a.shape, f, name="broadcast_eltwise")]


@rule(BroadcastEltwise, "torch")
def _broadcast_eltwise_torch(layer, xs, p, ctx):
    return [xs[0] * xs[1] if layer.attrs["mode"] == "prod" else xs[0] + xs[1]]


@rule(BroadcastEltwise, "onnx")
def _broadcast_eltwise_onnx(b, layer, x, y):
    b.node("Mul" if layer.attrs["mode"] == "prod" else "Add", x, y)
