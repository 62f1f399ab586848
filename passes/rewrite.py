"""Small graph edits the rewriting passes share, each keeping module membership sane.

A module is a contiguous run of layers, so removing a layer never splits one; it can only
empty one, and the verifier rejects an empty module, so every removal drops modules left empty.
"""
from __future__ import annotations

from cococ.ir.core import Graph, Layer, Value


def drop_empty_modules(graph: Graph) -> None:
    used = {l.module for l in graph.layers}
    graph.modules = [m for m in graph.modules if m in used]


def erase_layers(graph: Graph, dead: list[Layer]) -> None:
    """Remove `dead` (their outputs must be unused) and any module they leave empty."""
    ids = {id(l) for l in dead}
    graph.layers = [l for l in graph.layers if id(l) not in ids]
    drop_empty_modules(graph)


def replace_value(graph: Graph, old: Value, new: Value, producer: Layer | None, sole_reader: bool) -> Value:
    """`old` now equals `new` (made by `producer`): readers of `old` read `new`. Returns the survivor.

    When `old` is a graph output and `new` is read only by the layer being removed
    (`sole_reader`), `producer` makes `old` instead, so the graph's output names (what the
    interpreter and runtimes return results by) stay the same.
    """
    outputs = {id(v) for v in graph.outputs}
    if (id(old) in outputs and id(new) not in outputs and sole_reader
            and producer is not None and producer.op != "input"):
        producer.outputs = [old if v is new else v for v in producer.outputs]
        old.producer = producer
        return old
    graph.replace_all_uses(old, new)
    return new


def bypass(graph: Graph, layer: Layer) -> None:
    """Remove a one-in one-out layer whose output equals its input (dropout, identity)."""
    x, y = layer.inputs[0], layer.outputs[0]
    prod = next((l for l in graph.layers if any(v is x for v in l.outputs)), None)
    sole = sum(v is x for l in graph.layers for v in l.inputs) == 1
    replace_value(graph, y, x, prod, sole)
    erase_layers(graph, [layer])
