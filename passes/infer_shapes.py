"""infer-shapes: fill attribute defaults and the type of every value from the ops' shape rules."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from cococ.ir.core import Graph
from cococ.ir.verify import infer_shapes
from cococ.passes.manager import register_pass


@register_pass
@dataclass(frozen=True)
class InferShapes:
    """Fill attribute defaults and every value's type (cococ.ir.verify.infer_shapes)."""
    name: ClassVar[str] = "infer-shapes"
    in_place: ClassVar[bool] = True
    reset: bool = False  # forget existing value types first (after an edit changed shapes)

    def apply(self, graph: Graph, ctx=None) -> Graph:
        if self.reset:
            for layer in graph.layers:
                if layer.op != "input":
                    for v in layer.outputs:
                        v.type = None
        return infer_shapes(graph)
