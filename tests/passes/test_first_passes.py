"""infer-shapes, canonicalize, dce: numbers before/after on random inputs, and the edge cases."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import cococ.passes as passes
from cococ.ir.core import Graph, Layer, Param, Value
from cococ.ir.interpreter import run as interpret
from cococ.ir.parser import parse_file
from cococ.ir.verify import infer_shapes, verify

ROOT = Path(__file__).resolve().parents[2]


def random_graph(seed: int = 0) -> Graph:
    """conv(no bias)+bn, depthwise conv+bn+scale in a module of their own, dense+bn+bias, dropout, identity."""
    rng = np.random.default_rng(seed)
    f = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    pos = lambda *s: (np.abs(f(*s)) + 0.5).astype(np.float32)  # noqa: E731
    P = Param.from_array
    v = {n: Value(n) for n in "x c bn dw bn2 sc id pool fl d dbn db drop out".split()}
    L = lambda op, name, ins, attrs=None, params=None, module=None: Layer(  # noqa: E731
        op, name, [v[i] for i in ins], [v[name]], attrs or {}, params or {}, module)
    layers = [
        L("input", "x", [], {"shape": [2, 3, 6, 6]}),
        L("conv2d", "c", ["x"], {"out_channels": 4, "kernel": [3, 3], "pad": [1, 1, 1, 1]}, {"weight": P(f(4, 3, 3, 3))}),
        L("batchnorm", "bn", ["c"], {"eps": 1e-3}, {"mean": P(f(4)), "var": P(pos(4)), "scale": P(f(4)), "bias": P(f(4))}),
        L("conv2d", "dw", ["bn"], {"out_channels": 4, "kernel": [3, 3], "groups": 4, "stride": [2, 2]},
          {"weight": P(f(4, 1, 3, 3)), "bias": P(f(4))}, "m"),
        L("batchnorm", "bn2", ["dw"], {}, {"mean": P(f(4)), "var": P(pos(4))}, "m2"),
        L("scale", "sc", ["bn2"], {}, {"scale": P(f(4)), "bias": P(f(4))}, "m2"),
        L("identity", "id", ["sc"]),
        L("max_pool", "pool", ["id"], {"kernel": [2, 2], "stride": [2, 2]}),
        L("flatten", "fl", ["pool"]),
        L("dense", "d", ["fl"], {"out_features": 5}, {"weight": P(f(5, 4))}),
        L("batchnorm", "dbn", ["d"], {}, {"mean": P(f(5)), "var": P(pos(5))}),
        L("bias", "db", ["dbn"], {}, {"bias": P(f(5))}),
        L("dropout", "drop", ["db"]),
        L("softmax", "out", ["drop"]),
    ]
    g = Graph("rand", layers, [v["out"], v["bn"]], ["m", "m2"])
    infer_shapes(g)
    verify(g)
    return g


def graphs():
    return {"bn_net": parse_file(ROOT / "examples" / "ir" / "bn_net.ir"), "random": random_graph()}


def outputs(g: Graph, feeds) -> list[np.ndarray]:
    res = interpret(g, feeds)
    return [res[v.name] for v in g.outputs]


@pytest.mark.parametrize("name", ["bn_net", "random"])
@pytest.mark.parametrize("pipeline", ["infer-shapes", "infer-shapes{reset=true}", "canonicalize", "dce",
                                      "canonicalize{fold_batchnorm=false}", "canonicalize{fold_scale=false}",
                                      "infer-shapes,canonicalize,dce"])
def test_same_numbers_before_and_after(name, pipeline):
    g = graphs()[name]
    rng = np.random.default_rng(1)
    for _ in range(2):
        feeds = [rng.standard_normal(v.type.shape).astype(np.float32) for v in g.inputs]
        before = outputs(g, feeds)
        after_graph = passes.run(g.clone(), pipeline, reproducer=None)
        assert [v.name for v in after_graph.outputs] == [v.name for v in g.outputs]  # names kept
        for a, b in zip(outputs(after_graph, feeds), before):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_canonicalize_random_graph_structure():
    g = passes.run(random_graph(), "canonicalize", reproducer=None)
    ops = {l.name: l.op for l in g.layers}
    # bn reads a graph output (%bn is returned): its conv keeps its own value, bn folds away but
    # the conv produces %bn; module m2 (bn2 + sc) empties and is dropped; the dense gains a bias
    assert list(ops) == ["x", "c", "dw", "pool", "fl", "d", "out"]
    assert g.layer("c").outputs[0].name == "bn" and "bias" in g.layer("c").params
    assert g.modules == ["m"] and g.layer("dw").module == "m"
    assert g.layer("out").inputs[0].name == "d" and "bias" in g.layer("d").params


def test_no_fold_into_quantized_or_weightless_layers():
    g = random_graph()
    g.layer("c").params["weight"].attrs["qformat"] = "q15"
    g.layer("d").params["weight"].data = None
    g = passes.run(g, "canonicalize", verify=False, reproducer=None)
    ops = [l.op for l in g.layers]
    assert ops.count("batchnorm") == 2 and "bias" in ops  # bn after c and d; db after dbn stays
    assert "scale" not in ops  # dw has plain float weights: bn2 and sc fold


def test_infer_shapes_fills_types_and_defaults():
    g = random_graph()
    for l in g.layers[1:]:
        for v in l.outputs:
            v.type = None
    g.layer("c").attrs.pop("stride")
    g = passes.run(g, "infer-shapes", reproducer=None)
    assert str(g.layer("pool").outputs[0].type) == "f32[2,4,1,1]"
    assert g.layer("c").attrs["stride"] == [1, 1]


def test_dce_keeps_inputs_and_used_layers():
    g = random_graph()
    g.outputs = [g.value("bn")]
    g = passes.run(g, "dce", reproducer=None)
    assert [l.name for l in g.layers] == ["x", "c", "bn"] and g.modules == []
