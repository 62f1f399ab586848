"""Converters for ops that move data: Constant, Concat, Flatten, Reshape, Squeeze/Unsqueeze,
Transpose, and the shape arithmetic exporters emit (Shape, Gather, Cast).

On constants these fold (so `Shape -> Gather -> Unsqueeze -> Concat -> Reshape`, torch's
flatten, ends as one reshape with a constant shape: activation shapes are static here). On
activations Squeeze/Unsqueeze become a reshape, and Transpose only when it moves size-1
dims alone (otherwise it would reorder data, which the IR has no layer for).
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from cococ.frontend.onnx.context import Ctx, as_ints, converter, tensor_to_array


@converter("Constant")
def constant(ctx: Ctx, node):
    attrs = {a.name: a for a in node.attribute}
    if "value" in attrs:
        value = tensor_to_array(attrs["value"].t)
    elif "value_float" in attrs or "value_int" in attrs:
        value = np.asarray(helper.get_attribute_value(attrs.get("value_float") or attrs["value_int"]))
        value = value.astype(np.float32 if "value_float" in attrs else np.int64)
    elif "value_floats" in attrs:
        value = np.asarray(helper.get_attribute_value(attrs["value_floats"]), dtype=np.float32)
    elif "value_ints" in attrs:
        value = np.asarray(helper.get_attribute_value(attrs["value_ints"]), dtype=np.int64)
    else:
        raise ctx.unsupported(f"Constant with {', '.join(attrs) or 'no value'} is not supported")
    ctx.set_const(node.output[0], value)


def _axis(ctx: Ctx, axis: int, rank: int) -> int:
    if not -rank <= axis < rank:
        raise ctx.unsupported(f"axis {axis} is out of range for rank {rank}")
    return axis % rank


@converter("Concat")
def concat(ctx: Ctx, node):
    axis = int(ctx.attrs(node).get("axis", 1))
    names = [n for n in node.input if n]
    if all(ctx.is_const(n) for n in names):
        arrays = [ctx.consts[n] for n in names]
        ctx.set_const(node.output[0], np.concatenate(arrays, axis=_axis(ctx, axis, arrays[0].ndim)))
        return
    xs = [ctx.value(n) for n in names]
    ctx.emit("concat", xs, {"axis": _axis(ctx, axis, xs[0].type.rank)}, out=node.output[0])


@converter("Flatten")
def flatten(ctx: Ctx, node):
    """ONNX Flatten is always 2-D: [prod(:axis), prod(axis:)]; IR flatten matches it at axis 1."""
    x = ctx.value(node.input[0])
    shape = x.type.shape
    axis = int(ctx.attrs(node).get("axis", 1))
    if axis != len(shape):  # axis == rank is allowed: [prod, 1]
        axis = _axis(ctx, axis, len(shape))
    if axis == 1 and len(shape) >= 2:
        ctx.emit("flatten", [x], {"axis": 1}, out=node.output[0])
        return
    n = int(np.prod(shape[:axis], dtype=np.int64))
    ctx.emit("reshape", [x], {"shape": [n, int(np.prod(shape[axis:], dtype=np.int64))]}, out=node.output[0])


@converter("Reshape")
def reshape(ctx: Ctx, node):
    a = ctx.attrs(node)
    shape = as_ints(a["shape"]) if ctx.opset < 5 else as_ints(ctx.const(node.input[1], "Reshape's shape"))
    if ctx.is_const(node.input[0]):
        c = ctx.consts[node.input[0]]
        spec = [c.shape[i] if d == 0 and not a.get("allowzero", 0) else d for i, d in enumerate(shape)]
        ctx.set_const(node.output[0], c.reshape(spec))
        return
    if a.get("allowzero", 0) and 0 in shape:
        raise ctx.unsupported(f"Reshape to {shape} with allowzero=1 makes an empty tensor")
    ctx.emit("reshape", [ctx.value(node.input[0])], {"shape": shape}, out=node.output[0])


def _axes(ctx: Ctx, node, rank: int) -> list[int] | None:
    a = ctx.attrs(node)
    if ctx.opset < 13:
        axes = a.get("axes")
    else:
        c = ctx.optional_const(node, 1, f"{node.op_type}'s axes")
        axes = None if c is None else as_ints(c)
    return None if axes is None else sorted(_axis(ctx, int(v), rank) for v in axes)


@converter("Squeeze")
def squeeze(ctx: Ctx, node):
    x = node.input[0]
    shape = ctx.shape(x)
    axes = _axes(ctx, node, len(shape))
    axes = [i for i, d in enumerate(shape) if d == 1] if axes is None else axes
    if any(shape[i] != 1 for i in axes):
        raise ctx.unsupported(f"Squeeze axes {axes} of shape {list(shape)} are not all 1")
    out = [d for i, d in enumerate(shape) if i not in axes]
    _reshape_to(ctx, node, out)


@converter("Unsqueeze")
def unsqueeze(ctx: Ctx, node):
    shape = list(ctx.shape(node.input[0]))
    raw = ctx.attrs(node).get("axes") if ctx.opset < 13 else as_ints(ctx.const(node.input[1], "Unsqueeze's axes"))
    if raw is None:
        raise ctx.unsupported("Unsqueeze needs axes")
    r = len(shape) + len(raw)  # negative axes count from the end of the output
    for i in sorted(_axis(ctx, int(v), r) for v in raw):
        shape.insert(i, 1)
    _reshape_to(ctx, node, shape)


def _reshape_to(ctx: Ctx, node, shape: list[int]) -> None:
    x = node.input[0]
    if ctx.is_const(x):
        ctx.set_const(node.output[0], ctx.consts[x].reshape(shape))
        return
    if not shape:
        raise ctx.unsupported("a scalar result is not supported (the IR has no layer for it)")
    ctx.emit("reshape", [ctx.value(x)], {"shape": [int(d) for d in shape]}, out=node.output[0])


@converter("Transpose")
def transpose(ctx: Ctx, node):
    x = node.input[0]
    shape = ctx.shape(x)
    perm = ctx.attrs(node).get("perm")
    perm = list(reversed(range(len(shape)))) if perm is None else as_ints(perm)
    if sorted(perm) != list(range(len(shape))):
        raise ctx.unsupported(f"Transpose perm {perm} is not a permutation of rank {len(shape)}")
    if ctx.is_const(x):
        ctx.set_const(node.output[0], np.transpose(ctx.consts[x], perm))
        return
    moved = [p for p in perm if shape[p] != 1]
    if moved != sorted(moved):
        raise ctx.unsupported(f"Transpose {perm} of shape {list(shape)} reorders data, which is not supported (the IR has no transpose)")
    _reshape_to(ctx, node, [shape[p] for p in perm])


@converter("Shape")
def shape_op(ctx: Ctx, node):
    shape = np.asarray(ctx.shape(node.input[0]), dtype=np.int64)
    a = ctx.attrs(node)
    r = len(shape)
    start, end = int(a.get("start", 0)), int(a.get("end", r))
    ctx.set_const(node.output[0], shape[slice(start, end)])


@converter("Gather")
def gather(ctx: Ctx, node):
    data = ctx.const(node.input[0], "Gather's data (only constants fold; the IR has no gather)")
    idx = ctx.const(node.input[1], "Gather's indices")
    axis = _axis(ctx, int(ctx.attrs(node).get("axis", 0)), data.ndim)
    ctx.set_const(node.output[0], np.take(data, np.asarray(idx, dtype=np.int64), axis=axis))


@converter("Cast")
def cast(ctx: Ctx, node):
    to = int(ctx.attrs(node).get("to", onnx.TensorProto.FLOAT))
    try:
        dtype = helper.tensor_dtype_to_np_dtype(to)
    except Exception:
        raise ctx.unsupported(f"Cast to element type {to} is not supported") from None
    x = node.input[0]
    if ctx.is_const(x):
        ctx.set_const(node.output[0], ctx.consts[x].astype(dtype))
        return
    if np.dtype(dtype) != np.float32:
        raise ctx.unsupported(f"Cast of an activation to {np.dtype(dtype)} is not supported (float32 only)")
    ctx.emit("identity", [ctx.value(x)], out=node.output[0])


@converter("Split")
def split(ctx: Ctx, node):
    """Split into n pieces along an axis = the IR's slice (Caffe Slice) at the cumulative points."""
    a = ctx.attrs(node)
    x = ctx.value(node.input[0])
    shape = x.type.shape
    axis = _axis(ctx, int(a.get("axis", 0)), len(shape))
    n = len(node.output)
    sizes = a.get("split") if ctx.opset < 13 else ctx.optional_const(node, 1, "Split's split")
    if sizes is None:
        if shape[axis] % n and "num_outputs" not in a:
            raise ctx.unsupported(f"Split of {shape[axis]} into {n} equal parts is invalid")
        step = -(-shape[axis] // n)
        sizes = [min(step, shape[axis] - i * step) for i in range(n)]
    sizes = as_ints(sizes)
    if len(sizes) != n or sum(sizes) != shape[axis] or min(sizes) < 1:
        raise ctx.unsupported(f"Split sizes {sizes} do not cut dim {shape[axis]} into {n} non-empty parts")
    ctx.emit_multi("slice", [x], {"axis": axis, "points": list(np.cumsum(sizes[:-1]).tolist())},
                   outs=list(node.output))
