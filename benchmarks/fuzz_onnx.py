"""ONNX frontend fuzz campaign: N mutated ONNX models must each import or give a CococError.

    python benchmarks/fuzz_onnx.py [-n 10000] [--seed 0] [--timeout 10]

Two mutation kinds over real seed models (the onnx wheel's backend test cases and a small
cococ-style net): byte mutations (flip/set/insert/delete/truncate, reaching protobuf decoding
and the checker) and structured ones (a node attribute, op type, input name or initializer
dim rewritten, reaching the converters behind the checker). Any other exception, or a case
that runs past --timeout seconds, is a finding: printed with its reproducer saved under
--out, and the exit status is 1. (benchmarks/fuzz_frontends.py, when it exists, covers prototxt.)
"""
from __future__ import annotations

import argparse
import os
import random
import signal
import sys
import time
import traceback

import onnx

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "frontend"))
from test_fuzz_onnx import SEEDS, mutate  # noqa: E402  (one seed set and byte mutator for test and script)

from cococ.frontend.onnx import load_onnx  # noqa: E402
from cococ.ir.core import CococError  # noqa: E402

OPS = ["Conv", "Gemm", "MatMul", "Relu", "Pad", "MaxPool", "AveragePool", "Softmax", "Reshape", "Flatten",
       "Add", "Mul", "Concat", "Clip", "BatchNormalization", "Transpose", "Split", "Squeeze", "Foo"]


def structured(data: bytes, rng: random.Random) -> bytes:
    m = onnx.ModelProto.FromString(data)
    g = m.graph
    kind = rng.choice(["attr", "op", "input", "dim", "opset"])
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
    else:
        for o in m.opset_import:
            o.version = rng.choice([1, 6, 9, 11, 13, 17, 21, 99])
    return m.SerializeToString()


class Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise Timeout()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=int, default=10)
    ap.add_argument("--out", default="fuzz-onnx-findings")
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    signal.signal(signal.SIGALRM, _alarm)
    counts = {"imported": 0, "clean_error": 0, "finding": 0}
    t0 = time.time()
    for i in range(args.n):
        seed = rng.choice(SEEDS)
        if rng.random() < 0.5:
            muts = [(rng.choice(["flip", "set", "insert", "delete", "truncate"]), rng.random(),
                     rng.randrange(256), rng.randint(1, 8)) for _ in range(rng.randint(1, 4))]
            data = mutate(seed, muts)
        else:
            data = structured(seed, rng)
        signal.alarm(args.timeout)
        try:
            load_onnx(data)
            counts["imported"] += 1
        except CococError:
            counts["clean_error"] += 1
        except BaseException as e:  # noqa: BLE001 -- a finding, whatever it is
            if isinstance(e, KeyboardInterrupt):
                raise
            counts["finding"] += 1
            os.makedirs(args.out, exist_ok=True)
            path = os.path.join(args.out, f"case{i}.onnx")
            with open(path, "wb") as f:
                f.write(data)
            print(f"FINDING {path}: {type(e).__name__}: {e}")
            traceback.print_exc(limit=3)
        finally:
            signal.alarm(0)
    print(f"{args.n} cases in {time.time() - t0:.1f}s: {counts}")
    return 1 if counts["finding"] else 0


if __name__ == "__main__":
    sys.exit(main())
