"""Building a graph in code: each call adds a layer and returns its output value(s).

    b = GraphBuilder("net")
    x = b.input("x", (1, 3, 32, 32))
    y = b("conv2d", "conv1", x, {"out_channels": 8, "kernel": [3, 3]}, {"weight": w})
    g = b.graph(y)

What the frontends do for their formats, for library users and tests: params may be numpy
arrays (wrapped as dense Params) or Params.
"""
from __future__ import annotations

from cococ.ir.core import Graph, Layer, Param, TensorType, Value


class GraphBuilder:
    def __init__(self, name: str = "main"):
        self.name = name
        self.layers: list[Layer] = []

    def input(self, name: str, shape, dtype: str = "f32") -> Value:
        v = Value(name, TensorType(tuple(shape), dtype))
        self.layers.append(Layer("input", name, [], [v], {"shape": list(shape), "dtype": dtype}))
        return v

    def __call__(self, op: str, name: str, inputs, attrs=None, params=None, n_out: int = 1, module=None):
        outs = [Value(name if n_out == 1 else f"{name}_{i}") for i in range(n_out)]
        self.layers.append(Layer(op, name, inputs if isinstance(inputs, list) else [inputs], outs, attrs,
                                 {k: v if isinstance(v, Param) else Param.from_array(v)
                                  for k, v in (params or {}).items()}, module))
        return outs[0] if n_out == 1 else outs

    def graph(self, *outputs: Value) -> Graph:
        modules = list(dict.fromkeys(l.module for l in self.layers if l.module))
        return Graph(self.name, self.layers, list(outputs), modules)
