"""Converters for element-wise ops: activations with attributes or params, Clip, Softmax, Dropout,
Identity and arithmetic. (Relu, Sigmoid and Tanh import 1:1: their op classes declare
`onnx_import`, and `context.converters()` finds them in the op registry.)

Arithmetic maps by what its operands are: two activations of one shape become `eltwise`
(sum/prod/max; Sub is a sum with coeffs [1, -1]); an activation with a per-channel or
scalar constant becomes `bias` or `scale` (a constant right after a bias-less dense is
folded into its bias, the MatMul+Add pattern of exported Linear layers); two constants are
folded. Add and Mul of two activations where one broadcasts to the other (squeeze-excite's
x * s[N,C,1,1]) become `broadcast_eltwise`. Anything else (full-tensor constants, other
broadcasting between activations) is unsupported, because the IR's layers are per-channel by design.
"""
from __future__ import annotations

import numpy as np

from cococ.frontend.onnx.context import MAX_FOLD_ELEMENTS, Ctx, channel_vector, converter
from cococ.ir.core import Param
from cococ.ir.ops.activation import Clip, LeakyRelu, Prelu

_FOLD = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide}


@converter("LeakyRelu")
def leaky_relu(ctx: Ctx, node):
    alpha = float(ctx.attrs(node).get("alpha", 0.01))
    ctx.emit(LeakyRelu.name, [ctx.value(node.input[0])], {"alpha": alpha}, out=node.output[0])


@converter("PRelu")
def prelu(ctx: Ctx, node):
    x = ctx.value(node.input[0])
    s = np.asarray(ctx.const(node.input[1], "the PRelu slope"), dtype=np.float32)
    if s.size == 1:
        slope = s.reshape(1)
    elif ctx.opset < 7 and s.ndim == 1:  # opset 6: a 1-D slope is per channel
        slope = channel_vector(ctx, s, x.type.shape, "PRelu slope", align_axis=1)
    else:
        slope = channel_vector(ctx, s, x.type.shape, "PRelu slope")
    ctx.emit(Prelu.name, [x], params={"slope": slope}, out=node.output[0])


@converter("Clip")
def clip(ctx: Ctx, node):
    if ctx.opset < 11:
        a = ctx.attrs(node)
        lo, hi = a.get("min"), a.get("max")
    else:
        lo, hi = (ctx.optional_const(node, i, f"Clip {k}") for i, k in ((1, "min"), (2, "max")))
    attrs = {}
    for k, v in (("min", lo), ("max", hi)):
        if v is not None and np.asarray(v).size:
            v = float(np.asarray(v).reshape(-1)[0])
            if np.isfinite(v) and abs(v) < 3.4e38:  # FLT_MAX is how exporters spell "unbounded"
                attrs[k] = v
    ctx.emit(Clip.name, [ctx.value(node.input[0])], attrs, out=node.output[0])


@converter("Softmax")
def softmax(ctx: Ctx, node):
    """opset >= 13: one axis. Before, the input is flattened to 2-D at `axis` (default 1), which is
    one-axis softmax when at most one dim from `axis` on is not 1; otherwise flatten, softmax, reshape."""
    x = ctx.value(node.input[0])
    shape = x.type.shape
    r = len(shape)
    axis = int(ctx.attrs(node).get("axis", -1 if ctx.opset >= 13 else 1))
    if not -r <= axis < r:
        raise ctx.unsupported(f"Softmax axis {axis} is out of range for rank {r}")
    axis %= r
    if ctx.opset >= 13:
        ctx.emit("softmax", [x], {"axis": axis}, out=node.output[0])
        return
    big = [i for i in range(axis, r) if shape[i] != 1]
    if len(big) <= 1:
        ctx.emit("softmax", [x], {"axis": big[0] if big else axis}, out=node.output[0])
        return
    n = int(np.prod(shape[:axis], dtype=np.int64))
    flat = ctx.emit("reshape", [x], {"shape": [n, -1]}, suffix="flatten")
    y = ctx.emit("softmax", [flat], {"axis": 1}, suffix="softmax")
    ctx.emit("reshape", [y], {"shape": list(shape)}, out=node.output[0])


@converter("Dropout")
def dropout(ctx: Ctx, node):
    if any(o for o in node.output[1:]) and ctx.uses.get(node.output[1], 0):
        raise ctx.unsupported("Dropout's mask output is not supported (inference only)")
    if ctx.opset < 12:
        ratio = float(ctx.attrs(node).get("ratio", 0.5))
    else:
        r = ctx.optional_const(node, 1, "Dropout ratio")
        ratio = 0.5 if r is None else float(np.asarray(r).reshape(-1)[0])
        t = ctx.optional_const(node, 2, "Dropout training_mode")
        if t is not None and bool(np.asarray(t).reshape(-1)[0]):
            raise ctx.unsupported("Dropout in training mode is not supported (inference only)")
    ctx.emit("dropout", [ctx.value(node.input[0])], {"ratio": ratio}, out=node.output[0])


@converter("Identity")
def identity(ctx: Ctx, node):
    if ctx.is_const(node.input[0]):
        ctx.set_const(node.output[0], ctx.consts[node.input[0]])
        return
    ctx.emit("identity", [ctx.value(node.input[0])], out=node.output[0])


@converter("Add", "Sub", "Mul", "Div")
def arithmetic(ctx: Ctx, node):
    op = node.op_type
    a_name, b_name = node.input[0], node.input[1]
    if ctx.is_const(a_name) and ctx.is_const(b_name):
        ca, cb = ctx.consts[a_name], ctx.consts[b_name]
        if np.prod(np.broadcast_shapes(ca.shape, cb.shape), dtype=np.int64) > MAX_FOLD_ELEMENTS:
            raise ctx.unsupported("constant folding would build too large an array")
        ctx.set_const(node.output[0], _FOLD[op](ca, cb).astype(np.result_type(ca, cb)))
        return
    attrs = ctx.attrs(node)
    legacy = ctx.opset < 7
    if legacy and not attrs.get("broadcast", 0) and ctx.shape(a_name) != ctx.shape(b_name):
        raise ctx.unsupported(f"{op} of shapes {list(ctx.shape(a_name))} and {list(ctx.shape(b_name))} "
                              "without broadcast=1 are invalid")
    align = int(attrs["axis"]) if legacy and attrs.get("broadcast", 0) and "axis" in attrs else None
    if not ctx.is_const(a_name) and not ctx.is_const(b_name):
        xa, xb = ctx.value(a_name), ctx.value(b_name)
        if xa.type.shape != xb.type.shape:
            _broadcast(ctx, node, xa, xb)
            return
        if op == "Div":
            raise ctx.unsupported("Div of two activations is not supported")
        mode, coeffs = {"Add": ("sum", None), "Sub": ("sum", [1.0, -1.0]), "Mul": ("prod", None)}[op]
        attrs = {"mode": mode} if coeffs is None else {"mode": mode, "coeffs": coeffs}
        ctx.emit("eltwise", [xa, xb], attrs, out=node.output[0])
        return
    const_first = ctx.is_const(a_name)
    x = ctx.value(b_name if const_first else a_name)
    c = ctx.consts[a_name if const_first else b_name]
    if np.broadcast_shapes(np.shape(c), x.type.shape) != x.type.shape:
        raise ctx.unsupported(f"{op}: constant of shape {list(np.shape(c))} would broadcast the activation "
                              f"{list(x.type.shape)} to a larger shape, which is not supported")
    vec = channel_vector(ctx, c, x.type.shape, op, align_axis=align)
    if op in ("Add", "Sub"):
        if op == "Sub" and const_first:  # c - x = scale(-1) + c
            ctx.emit("scale", [x], params={"scale": -np.ones_like(vec), "bias": vec}, out=node.output[0])
            return
        bias = vec if op == "Add" else -vec
        p = x.producer
        if (p is not None and p.op == "dense" and "bias" not in p.params and ctx.only_use(x.name)
                and x.name in ctx.values and ctx.values[x.name] is x):
            p.params["bias"] = Param.from_array(bias.astype(np.float32))
            ctx.bind(node.output[0], x)
            return
        ctx.emit("bias", [x], params={"bias": bias}, out=node.output[0])
        return
    if op == "Div":
        if const_first:
            raise ctx.unsupported("Div of a constant by an activation is not supported")
        vec = (1.0 / vec.astype(np.float64)).astype(np.float32)
    ctx.emit("scale", [x], params={"scale": vec}, out=node.output[0])


def _broadcast(ctx: Ctx, node, xa, xb) -> None:
    """Add or Mul of two activations of different shapes (squeeze-excite's x * s[N,C,1,1], either
    operand order): broadcast_eltwise with the smaller one second, at the larger one's rank."""
    sa, sb = xa.type.shape, xb.type.shape
    try:
        out = np.broadcast_shapes(sa, sb)
    except ValueError:
        out = None
    if node.op_type not in ("Add", "Mul") or out not in (sa, sb):
        raise ctx.unsupported(f"{node.op_type} of activations of shapes {list(sa)} and {list(sb)} is not supported: "
                              "only Add and Mul where one operand broadcasts to the other's shape")
    big, small = (xa, xb) if out == sa else (xb, xa)
    r = big.type.rank
    if small.type.rank < r:
        small = ctx.emit("reshape", [small], {"shape": [1] * (r - small.type.rank) + list(small.type.shape)},
                         suffix="unsqueeze")
    ctx.emit("broadcast_eltwise", [big, small], {"mode": "sum" if node.op_type == "Add" else "prod"},
             out=node.output[0])


@converter("Max", "Sum", "Mean")
def variadic(ctx: Ctx, node):
    xs = [ctx.value(n) for n in node.input]
    if len(xs) == 1:
        ctx.emit("identity", xs, out=node.output[0])
        return
    shapes = {x.type.shape for x in xs}
    if len(shapes) != 1:
        raise ctx.unsupported(f"{node.op_type} of shapes {[list(s) for s in shapes]} is not supported: the IR's "
                              "eltwise does not broadcast")
    attrs = {"mode": "max" if node.op_type == "Max" else "sum"}
    if node.op_type == "Mean":
        attrs["coeffs"] = [1.0 / len(xs)] * len(xs)
    ctx.emit("eltwise", xs, attrs, out=node.output[0])


@converter("Pow")
def pow_(ctx: Ctx, node):
    x = ctx.value(node.input[0])
    e = np.asarray(ctx.const(node.input[1], "Pow's exponent"))
    if e.size != 1:
        raise ctx.unsupported(f"Pow with a non-scalar exponent of shape {list(e.shape)} is not supported")
    ctx.emit("power", [x], {"power": float(e.reshape(-1)[0])}, out=node.output[0])
