"""Shape inference and the verifier.

`infer_shapes` is the one place that runs the ops' rules (arity, attribute schema, verify,
infer, param shapes) over a graph; it fills attribute defaults and Value types. `verify` runs
the same rules without changing the graph, after checking what no single op can see: SSA,
order, cycles, names and modules. Both raise a CococError naming the layer (and the layer's
line:col when the graph came from text), so a user can go straight to the place.
"""
from __future__ import annotations

from cococ.ir.core import CococError, Graph, Layer, TensorType, Value
from cococ.ir.printer import value_name
from cococ.ir.registry import get_op


def infer_shapes(graph: Graph) -> Graph:
    """Fill attribute defaults and every Value.type; layers must be in topological order.

    A value that already has a type must agree with the inferred one. Returns the graph.
    """
    for layer in graph.layers:
        out_types = check_layer(layer)
        for v, t in zip(layer.outputs, out_types):
            if v.type is not None and v.type != t:
                raise layer.error(f"value {_vn(v)} is typed {v.type} but shape inference gives {t}")
            v.type = t
    return graph


def check_layer(layer: Layer) -> list[TensorType]:
    """Run the op's rules on one layer (fills attr defaults) and return its output types."""
    op = get_op(layer.op, layer=layer.name, loc=layer.loc)
    op.check_attrs(layer)  # first: the number of outputs may depend on attrs (slice points)
    op.check_arity(layer)
    in_types = []
    for v in layer.inputs:
        if v.type is None:
            raise layer.error(f"input {_vn(v)} has no type (is its producer after this layer?)")
        in_types.append(v.type)
    op.verify(layer, in_types)
    out_types = list(op.infer(layer, in_types))
    if len(out_types) != len(layer.outputs):
        raise layer.error(f"{layer.op} infers {len(out_types)} outputs, the layer has {len(layer.outputs)}")
    _check_params(layer, op, in_types)
    return out_types


def _check_params(layer: Layer, op, in_types: list[TensorType]) -> None:
    want = op.param_shapes(layer, in_types)
    for name, shape in want.items():
        if name not in layer.params:
            if name in op.optional_params:
                continue
            raise layer.error(f"{layer.op} requires param '{name}' of shape {list(shape)}")
        p = layer.params[name]
        if p.type.shape != tuple(shape):  # compressed params: their logical (dense) shape
            raise layer.error(f"param '{name}' has shape {list(p.type.shape)}, {layer.op} needs {list(shape)}")
        if p.format == "dense" and p.data is not None and tuple(p.data.shape) != p.type.shape:
            raise layer.error(f"param '{name}' is typed {p.type} but holds an array of shape {list(p.data.shape)}")
    for name in layer.params:
        if name not in want:
            known = ", ".join(want) or "none"
            raise layer.error(f"unknown param '{name}' for {layer.op} (known: {known})")


def verify(graph: Graph) -> None:
    """Check the graph; raises CococError at the first problem. Does not change the graph."""
    _check_names_and_ssa(graph)
    _check_order(graph)
    _check_modules(graph)
    for layer in graph.layers:
        saved = layer.attrs
        layer.attrs = dict(saved)  # check_attrs fills defaults; keep the graph as it was
        try:
            out_types = check_layer(layer)
        finally:
            layer.attrs = saved
        for v, t in zip(layer.outputs, out_types):
            if v.type is None:
                raise layer.error(f"value {_vn(v)} has no type (run infer-shapes)")
            if v.type != t:
                raise layer.error(f"value {_vn(v)} is typed {v.type} but shape inference gives {t}")


def _vn(v: Value) -> str:
    return value_name(v.name)


def _check_names_and_ssa(graph: Graph) -> None:
    layer_names: dict[str, Layer] = {}
    producer: dict[int, Layer] = {}
    value_names: dict[str, Layer] = {}
    for layer in graph.layers:
        if not isinstance(layer.name, str) or not layer.name:
            raise layer.error("a layer needs a non-empty name")
        if layer.name in layer_names:
            raise layer.error(f"layer name '{layer.name}' is used twice{_at(layer_names[layer.name])}")
        layer_names[layer.name] = layer
        if not layer.outputs:
            raise layer.error("a layer needs at least one output")
        for v in layer.outputs:
            if id(v) in producer:
                raise layer.error(f"value {_vn(v)} is defined twice (also by layer '{producer[id(v)].name}')")
            if v.name in value_names:
                raise layer.error(f"value name {_vn(v)} is defined twice "
                                  f"(also by layer '{value_names[v.name].name}'{_at(value_names[v.name])})")
            producer[id(v)] = layer
            value_names[v.name] = layer
    for layer in graph.layers:
        for v in layer.inputs:
            if id(v) not in producer:
                raise layer.error(f"uses value {_vn(v)}, which no layer of the graph defines")
    if not graph.outputs:
        raise CococError(f"graph '{graph.name}' has no outputs (a `return` with at least one value)")
    for v in graph.outputs:
        if id(v) not in producer:
            raise CococError(f"graph output {_vn(v)} is not defined by any layer")


def _at(layer: Layer) -> str:
    return f" at line {layer.loc[0]}:{layer.loc[1]}" if layer.loc else ""


def _check_order(graph: Graph) -> None:
    """Every input is defined by an earlier layer; a later one means an order error or a cycle."""
    pos = {id(v): i for i, l in enumerate(graph.layers) for v in l.outputs}
    for i, layer in enumerate(graph.layers):
        late = [v for v in layer.inputs if pos[id(v)] >= i]
        if not late:
            continue
        cycle = _find_cycle(graph, layer)
        if cycle:
            path = " -> ".join(f"'{l.name}'" for l in cycle)
            raise layer.error(f"the graph has a cycle: {path}")
        raise layer.error(f"uses value {_vn(late[0])} before the layer that defines it "
                          f"('{graph.layers[pos[id(late[0])]].name}'); layers must be in topological order")


def _find_cycle(graph: Graph, start: Layer) -> list[Layer] | None:
    """A path start -> ... -> start following producers of inputs, if there is one."""
    producers = {id(v): l for l in graph.layers for v in l.outputs}
    seen: set[int] = set()
    stack = [(start, [start])]
    while stack:
        node, path = stack.pop()
        for v in node.inputs:
            p = producers[id(v)]
            if p is start:
                return [start] + list(reversed(path[1:])) + [start]  # in data-flow order
            if id(p) not in seen:
                seen.add(id(p))
                stack.append((p, path + [p]))
    return None


def _check_modules(graph: Graph) -> None:
    declared = set(graph.modules)
    closed: set[str] = set()
    current = None
    count: dict[str, int] = {}
    for layer in graph.layers:
        m = layer.module
        if m is not None and m not in declared:
            raise layer.error(f"is in module '{m}', which the graph does not declare")
        if m != current:
            if m is not None and m in closed:
                raise layer.error(f"module '{m}' is not contiguous: this layer is separated from "
                                  "the module's earlier layers")
            if current is not None:
                closed.add(current)
            current = m
        if m is not None:
            count[m] = count.get(m, 0) + 1
    seen: set[str] = set()
    for m in graph.modules:
        if m in seen:
            raise CococError(f"module '{m}' is declared twice")
        seen.add(m)
        if not count.get(m):
            raise CococError(f"module '{m}' has no layers")
