"""Removing output channels of a layer, propagated to every consumer through channel coupling.

This is the one place that knows how a channel removal travels through a graph (filter
pruning and Scalpel's node pruning both call it): it follows each op's ChannelRule from the
pruned layer's output — slicing the params of passthrough layers (BN, scale, PReLU,
depthwise conv), mapping indices through concat offsets, slice ranges and flatten's
channel→feature expansion — until it reaches the input side of layers that make new
channels (conv, dense), whose input params are sliced. Where a removal would have to change
a tied set (eltwise), an opaque op, or a graph output, it is refused with the reason: the
caller then keeps that layer whole.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cococ.ir.core import CococError, Graph, Layer, TensorType, Value
from cococ.ir.verify import infer_shapes


class NotPrunable(CococError):
    pass


@dataclass
class ChannelEdit:
    """The param slices and attr updates one removal needs; applied all at once."""
    slices: list[tuple[Layer, str, int, np.ndarray]] = field(default_factory=list)
    attrs: list[tuple[Layer, str, object]] = field(default_factory=list)
    touched: list[Layer] = field(default_factory=list)   # layers whose inputs lose channels


def plan_channel_removal(graph: Graph, layer: Layer, keep: np.ndarray, *,
                         users: dict[int, list[Layer]] | None = None) -> ChannelEdit:
    """Plan keeping only output channels `keep` (sorted indices) of a conv2d/dense layer."""
    users = users if users is not None else graph.users_map()
    keep = np.asarray(sorted(int(i) for i in keep), dtype=np.int64)
    out = layer.output
    rule = layer.opdef.channels(layer, [v.type for v in layer.inputs])
    if rule.kind != "source":
        raise NotPrunable(f"{layer.op} '{layer.name}' does not make its own channels", layer=layer.name)
    if len(keep) == 0:
        raise NotPrunable("cannot remove every channel", layer=layer.name)
    edit = ChannelEdit()
    for p, ax in rule.out_params.items():
        if p in layer.params:
            edit.slices.append((layer, p, ax, keep))
    edit.attrs.append((layer, "out_channels" if layer.op == "conv2d" else "out_features", len(keep)))
    _walk(graph, out, keep, out.type.shape[1], users, edit, origin=layer)
    return edit


def _walk(graph, value: Value, keep, n_channels: int, users, edit: ChannelEdit, origin: Layer) -> None:
    if any(v is value for v in graph.outputs):
        raise NotPrunable(f"its channels reach the graph output '%{value.name}'", layer=origin.name)
    for user in users.get(id(value), []):
        in_types = [v.type for v in user.inputs]
        rule = user.opdef.channels(user, in_types)
        if rule.kind == "source":
            for p, ax in rule.in_params.items():
                if p in user.params:
                    edit.slices.append((user, p, ax, keep))
            edit.touched.append(user)
        elif rule.kind == "passthrough":
            for p, ax in rule.params.items():
                prm = user.params.get(p)
                if prm is not None and prm.shape[ax] == n_channels and n_channels > 1:
                    edit.slices.append((user, p, ax, keep))
            if user.op == "conv2d":   # depthwise: channels and groups shrink together
                edit.attrs += [(user, "out_channels", len(keep)), (user, "groups", len(keep))]
            _walk(graph, user.output, keep, n_channels, users, edit, origin)
        elif rule.kind == "concat":
            parts, offset = [], 0
            for v in user.inputs:
                c = v.type.shape[1]
                parts.append(offset + (keep if v is value else np.arange(c)))
                offset += c
            _walk(graph, user.output, np.concatenate(parts), offset, users, edit, origin)
        elif rule.kind == "split":
            points = [0, *user.attrs["points"], n_channels]
            new_points, kept = [], 0
            for k, o in enumerate(user.outputs):
                lo, hi = points[k], points[k + 1]
                part = keep[(keep >= lo) & (keep < hi)] - lo
                if len(part) == 0:
                    raise NotPrunable(f"slice '{user.name}' would lose a whole output", layer=origin.name)
                kept += len(part)
                if k < len(user.outputs) - 1:
                    new_points.append(kept)
                if len(part) < hi - lo:
                    _walk(graph, o, part, hi - lo, users, edit, origin)
            edit.attrs.append((user, "points", new_points))
        elif rule.kind == "flatten":
            hw = int(np.prod(value.type.shape[2:], dtype=np.int64))
            feats = (keep[:, None] * hw + np.arange(hw)[None, :]).ravel()
            _walk(graph, user.output, feats, n_channels * hw, users, edit, origin)
        else:
            raise NotPrunable(f"its channels reach {user.op} '{user.name}' ({rule.kind}), which ties them",
                              layer=origin.name)


def apply_channel_edit(graph: Graph, edit: ChannelEdit) -> None:
    """Apply a planned removal, then re-infer every value type."""
    for layer, pname, ax, idx in edit.slices:
        p = layer.params[pname]
        if p.format != "dense":
            raise CococError(f"param '{pname}' is compressed ({p.format}); prune channels before compressing",
                             layer=layer.name)
        if p.data is not None:
            p.data = np.ascontiguousarray(np.take(p.data, idx, axis=ax))
        shape = list(p.type.shape)
        shape[ax] = len(idx)
        p.type = TensorType(tuple(shape), p.type.dtype)
        p._hash = None
    for layer, name, value in edit.attrs:
        layer.attrs[name] = value
    reinfer(graph)


def reinfer(graph: Graph) -> None:
    for layer in graph.layers:
        if layer.op != "input":
            for v in layer.outputs:
                v.type = None
    infer_shapes(graph)


def remove_channels(graph: Graph, layer: Layer, keep) -> None:
    apply_channel_edit(graph, plan_channel_removal(graph, layer, keep))
