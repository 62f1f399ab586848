"""The reference interpreter: runs a graph layer by layer with each op's numpy `compute`.

It is the golden model every later test compares against (passes, torch, TVM, the MCU
emulator), so it trusts nothing it can check cheaply: input shapes, attrs, params (present,
shaped as the op wants, with data) and that every op's output matches its shape inference.
It does not need `infer_shapes` to have run: types come from the arrays it computes.
Values are freed after their last reader, so peak memory is the live set, not the whole net.
"""
from __future__ import annotations

import copy
from typing import Iterable, Mapping, Sequence

import numpy as np

from cococ.ir.core import CococError, Graph, Layer, TensorType, Value, dtype_name
from cococ.ir.memory import activation_bytes, check_memory


def run(graph: Graph, inputs: Mapping[str, np.ndarray] | Sequence[np.ndarray],
        taps: Iterable[str | Value] = ()) -> dict[str, np.ndarray]:
    """Run `graph` on `inputs` and return its outputs, and the `taps`, by value name.

    `inputs` maps input value names to arrays, or lists arrays in `graph.inputs` order;
    `taps` names extra values (or gives Value objects) to return besides the outputs.
    """
    feeds = _bind_inputs(graph, inputs)
    check_memory(activation_bytes(graph), f"{graph.name}: running the interpreter")
    by_name = {v.name: v for v in graph.values()}
    tap_values = [_resolve(by_name, t) for t in taps]
    wanted = list(graph.outputs) + tap_values
    keep = {id(v) for v in wanted}
    last_use: dict[int, int] = {}
    for i, layer in enumerate(graph.layers):
        for v in layer.inputs:
            last_use[id(v)] = i

    env: dict[int, np.ndarray] = {}
    for i, layer in enumerate(graph.layers):
        if layer.op == "input":
            outs = [feeds[id(layer.outputs[0])]]
        else:
            xs = []
            for v in layer.inputs:
                if id(v) not in env:
                    raise layer.error(f"reads %{v.name}, which no earlier layer computes")
                xs.append(env[id(v)])
            outs = run_layer(layer, xs)
        for v, y in zip(layer.outputs, outs):
            if id(v) in keep or id(v) in last_use:  # an unread, unwanted output is dropped at once
                env[id(v)] = y
        for v in layer.inputs:
            if last_use[id(v)] == i and id(v) not in keep:
                env.pop(id(v), None)

    result = {}
    for v in wanted:
        if id(v) not in env:
            raise CococError(f"value %{v.name} is not computed by any layer of the graph")
        result[v.name] = env[id(v)]
    return result


def run_layer(layer: Layer, xs: list[np.ndarray]) -> list[np.ndarray]:
    """Check one layer against its actual inputs and run its op's `compute`."""
    op = layer.opdef
    op.check_arity(layer)
    layer = copy.copy(layer)  # fill attr defaults on a shallow copy: running must not edit the graph
    layer.attrs = dict(layer.attrs)
    op.check_attrs(layer)
    in_types = [TensorType(x.shape, dtype_name(x.dtype)) for x in xs]
    op.verify(layer, in_types)
    params = _dense_params(layer, op, in_types)
    out_types = op.infer(layer, in_types)
    outs = op.compute(layer, xs, params)
    if len(outs) != len(layer.outputs):
        raise layer.error(f"internal: {layer.op} computed {len(outs)} outputs, expected {len(layer.outputs)}")
    for y, t in zip(outs, out_types):
        if tuple(y.shape) != t.shape:
            raise layer.error(f"internal: {layer.op} computed shape {tuple(y.shape)}, shape inference says {t.shape}")
    return outs


def _dense_params(layer: Layer, op, in_types: list[TensorType]) -> dict[str, np.ndarray]:
    want = op.param_shapes(layer, in_types)
    for k in layer.params:
        if k not in want:
            raise layer.error(f"unexpected param '{k}' for {layer.op} (takes: {', '.join(want) or 'none'})")
    out = {}
    for k, shape in want.items():
        p = layer.params.get(k)
        if p is None:
            if k in op.optional_params:
                continue
            raise layer.error(f"{layer.op} needs param '{k}' {list(shape)}, which the layer lacks")
        if p.shape != tuple(shape):
            raise layer.error(f"param '{k}' has shape {list(p.shape)}, {layer.op} needs {list(shape)}")
        if not p.has_data:
            raise layer.error(f"param '{k}' ({p.type}, #{p.hash}) has no data; load weights "
                              "(a side-car .npz, --weights FILE, or --init random)")
        try:
            out[k] = p.dense()
        except CococError as e:
            raise layer.error(f"param '{k}': {e.message}") from None
    return out


def _bind_inputs(graph: Graph, inputs) -> dict[int, np.ndarray]:
    """Match the given arrays to the graph's input values; check and cast them."""
    layers = [l for l in graph.layers if l.op == "input"]
    if isinstance(inputs, Mapping):
        names = [l.outputs[0].name for l in layers]
        unknown = [k for k in inputs if k.lstrip("%") not in names]
        if unknown:
            raise CococError(f"no graph input named {', '.join('%' + k.lstrip('%') for k in unknown)} "
                             f"(inputs: {', '.join('%' + n for n in names)})")
        given = {k.lstrip("%"): a for k, a in inputs.items()}
        missing = [n for n in names if n not in given]
        if missing:
            raise CococError(f"graph input {', '.join('%' + n for n in missing)} not given")
        arrays = [given[n] for n in names]
    else:
        arrays = list(inputs)
        if len(arrays) != len(layers):
            raise CococError(f"the graph has {len(layers)} inputs, got {len(arrays)} arrays")
    feeds = {}
    for l, a in zip(layers, arrays):
        v = l.outputs[0]
        shape = tuple(v.type.shape) if v.type is not None else tuple(l.attrs.get("shape", ()))
        dtype = v.type.np_dtype if v.type is not None else TensorType((), l.attrs.get("dtype", "f32")).np_dtype
        a = np.asarray(a)
        if a.shape != shape:
            raise CococError(f"input %{v.name}: expected shape {list(shape)}, got {list(a.shape)}")
        feeds[id(v)] = np.ascontiguousarray(a, dtype=dtype)
    return feeds


def _resolve(by_name: dict[str, Value], tap) -> Value:
    if isinstance(tap, Value):
        return tap
    name = str(tap).lstrip("%")
    if name not in by_name:
        raise CococError(f"cannot tap %{name}: the graph has no such value")
    return by_name[name]
