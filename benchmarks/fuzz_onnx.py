"""ONNX for the fuzz campaign: the seed models and the structured mutator.

    python benchmarks/fuzz_onnx.py [-n 10000] [--seed 0] [--timeout 10]
(the same as `benchmarks/fuzz_frontends.py --format onnx`, which runs every format)

Seeds are real models (the onnx wheel's backend test cases and a small cococ-style net, shared
with tests/frontend/test_fuzz_onnx.py). Half the cases are byte mutations (reaching protobuf
decoding and the checker), half structured ones from here: a node attribute, op type or input
name, an initializer dim or a graph input dim (giant ones included) rewritten, or the opset
changed, which reach the converters behind the checker.
"""
from __future__ import annotations

import random
import sys
from pathlib import Path

import onnx

ROOT = Path(__file__).resolve().parents[1]
OPS = ["Conv", "Gemm", "MatMul", "Relu", "Pad", "MaxPool", "AveragePool", "Softmax", "Reshape", "Flatten",
       "Add", "Mul", "Concat", "Clip", "BatchNormalization", "Transpose", "Split", "Squeeze", "Foo"]


def onnx_seeds() -> list[bytes]:
    sys.path.insert(0, str(ROOT / "tests" / "frontend"))
    from test_fuzz_onnx import SEEDS
    return list(SEEDS)


def structured(data: bytes, rng: random.Random) -> bytes:
    m = onnx.ModelProto.FromString(data)
    g = m.graph
    kind = rng.choice(["attr", "op", "input", "dim", "input_dim", "opset"])
    if kind == "attr" and g.node:
        n = rng.choice(g.node)
        if n.attribute:
            a = rng.choice(n.attribute)
            if a.ints:
                a.ints[rng.randrange(len(a.ints))] = rng.choice([-3, -1, 0, 1, 2, 7, 1 << 40])
            elif a.type == onnx.AttributeProto.INT:
                a.i = rng.choice([-2, 0, 1, 3, 1 << 40])
            elif a.type == onnx.AttributeProto.FLOAT:
                a.f = rng.choice([0.0, -1.0, 1e30, float("nan")])
    elif kind == "op" and g.node:
        rng.choice(g.node).op_type = rng.choice(OPS)
    elif kind == "input" and g.node:
        n = rng.choice(g.node)
        names = [i.name for i in g.input] + [t.name for t in g.initializer] + [o for k in g.node for o in k.output]
        if n.input and names:
            n.input[rng.randrange(len(n.input))] = rng.choice(names + [""])
    elif kind == "dim" and g.initializer:
        t = rng.choice(g.initializer)
        if t.dims:
            t.dims[rng.randrange(len(t.dims))] = rng.choice([0, 1, 2, 3, 1 << 33])
    elif kind == "input_dim" and g.input:
        dims = rng.choice(g.input).type.tensor_type.shape.dim
        if dims:
            dims[rng.randrange(len(dims))].dim_value = rng.choice([0, 1, 100000, 1 << 31, 1 << 40])
    else:
        for o in m.opset_import:
            o.version = rng.choice([1, 6, 9, 11, 13, 17, 21, 99])
    return m.SerializeToString()


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    from benchmarks.fuzz_frontends import main
    sys.exit(main(["--format", "onnx"] + sys.argv[1:]))
