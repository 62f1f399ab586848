import numpy as np

from cococ.ir.builder import GraphBuilder
from cococ.ir.interpreter import run
from cococ.ir.verify import verify


def test_builder_makes_a_verified_runnable_graph_with_modules():
    b = GraphBuilder("net")
    x = b.input("x", (1, 2, 4, 4))
    w = np.ones((3, 2, 1, 1), np.float32)
    y = b("conv2d", "c", x, {"out_channels": 3, "kernel": [1, 1]}, {"weight": w}, module="m")
    z = b("relu", "r", y, module="m")
    g = b.graph(z)
    assert g.modules == ["m"]
    from cococ.ir.verify import infer_shapes
    infer_shapes(g)
    verify(g)
    out = run(g, {"x": np.ones((1, 2, 4, 4), np.float32)})["r"]
    assert out.shape == (1, 3, 4, 4) and np.all(out == 2)


def test_subgraph_extracts_a_block_without_touching_the_graph():
    from cococ.ir.verify import infer_shapes
    b = GraphBuilder("net")
    x = b.input("x", (1, 2, 4, 4))
    w = np.ones((2, 2, 1, 1), np.float32)
    y = b("conv2d", "c", x, {"out_channels": 2, "kernel": [1, 1]}, {"weight": w}, module="m")
    z = b("relu", "r", y, module="m")
    o = b("sigmoid", "s", z)
    g = b.graph(o)
    infer_shapes(g)
    sub = g.subgraph([y], [z])
    verify(sub)
    assert [l.op for l in sub.layers] == ["input", "relu"] and sub.modules == ["m"]
    assert y.producer is g.layer("c") and len(g.layers) == 4     # the original is unchanged
    assert run(sub, {"c": -np.ones((1, 2, 4, 4), np.float32)})["r"].max() == 0
