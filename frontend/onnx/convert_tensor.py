"""Converters for ops that move data: Constant, Concat, Flatten, Reshape, Squeeze/Unsqueeze,
Transpose, and the shape arithmetic exporters emit (Shape, Gather, Cast).

On constants these fold (so `Shape -> Gather -> Unsqueeze -> Concat -> Reshape`, torch's
flatten, ends as one reshape with a constant shape: activation shapes are static here). On
activations Squeeze/Unsqueeze become a reshape, and so does a Transpose that moves size-1 dims
alone; any other Transpose (channel shuffle, NCHW <-> NHWC) is the IR's transpose. Slice on an
activation is the IR's slice when it cuts one axis with step 1 (ShuffleNet v2's channel split).
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
    if moved != sorted(moved):  # reorders data
        ctx.emit("transpose", [ctx.value(x)], {"perm": perm}, out=node.output[0])
        return
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


def _slice_spec(ctx: Ctx, node, shape) -> list[tuple[int, int, int, int]]:
    """(axis, start, end, step) per sliced axis, with ONNX's clamping of starts and ends applied."""
    a = ctx.attrs(node)
    if ctx.opset < 10:
        starts, ends = as_ints(a["starts"]), as_ints(a["ends"])
        axes = as_ints(a["axes"]) if "axes" in a else list(range(len(starts)))
        steps = [1] * len(starts)
    else:
        starts = as_ints(ctx.const(node.input[1], "Slice's starts"))
        ends = as_ints(ctx.const(node.input[2], "Slice's ends"))
        c = ctx.optional_const(node, 3, "Slice's axes")
        axes = list(range(len(starts))) if c is None else as_ints(c)
        c = ctx.optional_const(node, 4, "Slice's steps")
        steps = [1] * len(starts) if c is None else as_ints(c)
    if not len(starts) == len(ends) == len(axes) == len(steps):
        raise ctx.unsupported(f"Slice starts {starts}, ends {ends}, axes {axes}, steps {steps} differ in length")
    spec = []
    for s, e, ax, st in zip(starts, ends, axes, steps):
        ax = _axis(ctx, ax, len(shape))
        d = shape[ax]
        if st == 0:
            raise ctx.unsupported("Slice step 0 is invalid")
        s, e = s + d if s < 0 else s, e + d if e < 0 else e
        if st > 0:
            s, e = min(max(s, 0), d), min(max(e, 0), d)
        else:  # the end may be -1: "before the first element"
            s, e = min(max(s, 0), d - 1), min(max(e, -1), d - 1)
        spec.append((ax, s, e, st))
    return spec


@converter("Slice")
def slice_op(ctx: Ctx, node):
    """On a constant: folded. On an activation: one IR slice per axis actually cut (step 1 only),
    keeping the piece [start, end) of its outputs (the others are not read)."""
    x = node.input[0]
    shape = ctx.shape(x)
    spec = _slice_spec(ctx, node, shape)
    if ctx.is_const(x):
        index = [slice(None)] * len(shape)
        for ax, s, e, st in spec:
            index[ax] = slice(s, None if e < 0 else e, st)
        ctx.set_const(node.output[0], ctx.consts[x][tuple(index)])
        return
    v = ctx.value(x)
    for ax, s, e, st in spec:
        if st != 1 or e <= s:
            raise ctx.unsupported(f"Slice [{s}:{e}:{st}] on axis {ax} of an activation {list(shape)} is not "
                                  "supported (step 1 and a non-empty range only)")
    cuts = [(ax, s, e) for ax, s, e, st in spec if (s, e) != (0, shape[ax])]
    if not cuts:
        ctx.emit("identity", [v], out=node.output[0])
        return
    for k, (ax, s, e) in enumerate(cuts):
        points = [p for p in (s, e) if 0 < p < v.type.shape[ax]]
        pick = 1 if s > 0 else 0
        last = k == len(cuts) - 1
        out = node.output[0] if last else None
        same = _same_cut(ctx, v, ax, points)
        if same is not None:
            v = same.outputs[pick]
            if out is not None:
                _name_piece(ctx, v, out)
            continue
        outs: list[str | None] = [None] * (len(points) + 1)
        outs[pick] = out
        v = ctx.emit_multi("slice", [v], {"axis": ax, "points": points}, outs=outs,
                           suffix=None if last else f"axis{ax}")[pick]


def _same_cut(ctx: Ctx, v, axis: int, points: list[int]):
    """An IR slice already made of `v` at the same points: torch's x[:, :c] and x[:, c:] (two
    Slice nodes, as the TorchScript exporter writes ShuffleNet v2's channel split) are one slice."""
    return next((l for l in ctx.graph.layers if l.op == "slice" and l.inputs[0] is v
                 and l.attrs.get("axis") == axis and l.attrs.get("points") == points), None)


def _name_piece(ctx: Ctx, piece, out: str) -> None:
    """Bind ONNX output `out` to a slice piece; a piece no node's output named yet takes its name."""
    if not any(val is piece for val in ctx.values.values()):
        ctx.value_names.discard(piece.name)
        piece.name = out
        ctx.value_names.add(out)
    ctx.bind(out, piece)
