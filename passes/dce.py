"""dce: dead-layer elimination. A layer none of whose outputs reaches a graph output goes.

Input layers stay even when unused: they are the graph's interface, and callers feed them
by name; dropping one would change what a caller must pass.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from cococ.ir.core import Graph
from cococ.passes.manager import register_pass
from cococ.passes.rewrite import erase_layers


@register_pass
@dataclass(frozen=True)
class Dce:
    """Remove layers whose outputs reach no graph output (input layers stay)."""
    name: ClassVar[str] = "dce"
    in_place: ClassVar[bool] = True

    def apply(self, graph: Graph, ctx=None) -> Graph:
        live = {id(v) for v in graph.outputs}
        dead = []
        for layer in reversed(graph.layers):  # topological order: readers come after producers
            if layer.op != "input" and not any(id(v) in live for v in layer.outputs):
                dead.append(layer)
                continue
            live.update(id(v) for v in layer.inputs)
        if dead:
            erase_layers(graph, dead)
        return graph
