"""Measured search metrics build each candidate as the objective says: Cycles[arm-m4, int8] is the
int8 build (a network that fits the part only in int8 failed every candidate when built in float)."""
from pathlib import Path

import cococ
from cococ.backends.build import build
from cococ.frontend.objective import parse_objective
from cococ.ir.verify import infer_shapes
from cococ.runtime.explore import evaluate

ROOT = Path(__file__).resolve().parents[2]


def test_cycles_int8_metric_builds_quantized(monkeypatch):
    seen = []

    class Art:
        def bench(self, n=1):
            return {"cycles": 123}

    monkeypatch.setattr(evaluate, "build",
                        lambda g, target, quantize=None: seen.append((target, quantize, g)) or Art())
    g = cococ.load(ROOT / "examples/lenet/lenet.prototxt", weights=ROOT / "examples/lenet/lenet.safetensors")
    infer_shapes(g)
    for text, want in [("min Cycles[arm-m4, int8]", ("arm-m4", "int8")), ("min Cycles[arm-m4]", ("arm-m4", None))]:
        m = parse_objective(text).metric
        assert evaluate.measure(g, m) == 123.0 and seen[-1][:2] == want


def test_cycles_int8_metric_is_the_int8_builds_estimate():
    g = cococ.load(ROOT / "examples/lenet/lenet.prototxt", weights=ROOT / "examples/lenet/lenet.safetensors")
    infer_shapes(g)
    got = evaluate.measure(g, parse_objective("min Cycles[arm-m4, int8]").metric)
    assert got == float(build(g, "arm-m4", quantize="int8").bench()["cycles"])


def test_measured_candidates_get_the_builds_default_passes(monkeypatch):
    """BatchNorm and Scale fold as in `cococ build --target=arm-m4` (its default pipeline): left in,
    they ran as float steps and the float tensors around them overflowed SRAM (IC: 208 KiB)."""
    seen = []

    class Art:
        def bench(self, n=1):
            return {"cycles": 1}

    monkeypatch.setattr(evaluate, "build", lambda g, target, quantize=None: seen.append(g) or Art())
    g = cococ.load(ROOT / "examples/ic_resnet8/ic_resnet8.prototxt", init="random", seed=0)
    infer_shapes(g)
    kinds = lambda graph: {l.op for l in graph.layers}  # noqa: E731
    assert "batchnorm" in kinds(g)
    evaluate.measure(g, parse_objective("min Cycles[arm-m4, int8]").metric)
    assert not kinds(seen[-1]) & {"batchnorm", "scale"} and "batchnorm" in kinds(g)   # g itself kept
