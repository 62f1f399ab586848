"""Writes bn_net.ir and its side-car bn_net.npz: a small conv+batchnorm+scale+relu+pool+dense
+dropout+softmax net with fixed random weights, the example for `cococ opt` and canonicalize.

    python examples/ir/make_bn_net.py   # regenerates both files next to this script
"""
from pathlib import Path

import numpy as np

from cococ.ir.core import Graph, Layer, Param, Value
from cococ.ir.printer import save_ir
from cococ.ir.verify import infer_shapes, verify


def bn_net(seed: int = 0) -> Graph:
    rng = np.random.default_rng(seed)
    f = lambda *shape: rng.standard_normal(shape).astype(np.float32)  # noqa: E731
    p = Param.from_array
    v = {n: Value(n) for n in ("data", "conv1", "bn1", "scale1", "relu1", "pool1", "flat", "fc1", "drop1", "prob")}
    layers = [
        Layer("input", "data", [], [v["data"]], {"shape": [1, 3, 8, 8]}),
        Layer("conv2d", "conv1", [v["data"]], [v["conv1"]], {"out_channels": 4, "kernel": [3, 3], "pad": [1, 1, 1, 1]},
              {"weight": p(f(4, 3, 3, 3) * 0.3), "bias": p(f(4) * 0.1)}),
        Layer("batchnorm", "bn1", [v["conv1"]], [v["bn1"]], {"eps": 1e-5},
              {"mean": p(f(4) * 0.5), "var": p(np.abs(f(4)) + 0.5)}),
        Layer("scale", "scale1", [v["bn1"]], [v["scale1"]], {},
              {"scale": p(np.abs(f(4)) + 0.5), "bias": p(f(4) * 0.1)}),
        Layer("relu", "relu1", [v["scale1"]], [v["relu1"]]),
        Layer("max_pool", "pool1", [v["relu1"]], [v["pool1"]], {"kernel": [2, 2], "stride": [2, 2]}),
        Layer("flatten", "flat", [v["pool1"]], [v["flat"]]),
        Layer("dense", "fc1", [v["flat"]], [v["fc1"]], {"out_features": 10},
              {"weight": p(f(10, 64) * 0.1), "bias": p(f(10) * 0.1)}),
        Layer("dropout", "drop1", [v["fc1"]], [v["drop1"]], {"ratio": 0.5}),
        Layer("softmax", "prob", [v["drop1"]], [v["prob"]], {"axis": 1}),
    ]
    for layer in layers[1:6]:
        layer.module = "block1"
    g = Graph("bn_net", layers, [v["prob"]], ["block1"])
    infer_shapes(g)
    verify(g)
    return g


if __name__ == "__main__":
    save_ir(bn_net(), Path(__file__).with_name("bn_net.ir"), weights="npz")
