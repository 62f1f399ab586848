"""The reference interpreter on small graphs built directly (no parser), checked against torch."""
from __future__ import annotations

import weakref

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cococ.ir.builder import GraphBuilder
from cococ.ir.core import CococError, Param, TensorType
from cococ.ir.interpreter import run
from cococ.ir.ops.activation import Relu

RNG = np.random.default_rng(1)


def rand(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def G():
    return GraphBuilder("t")


def small_cnn():
    g = G()
    x = g.input("x", (2, 3, 12, 12))
    p = dict(w1=rand(8, 3, 3, 3), b1=rand(8), m=rand(8), v=np.abs(rand(8)) + 0.5, s=rand(8), b=rand(8),
             w2=rand(8, 8, 3, 3), fw=rand(10, 8 * 3 * 3), fb=rand(10))
    c1 = g("conv2d", "conv1", x, dict(out_channels=8, kernel=[3, 3], pad=[1] * 4), {"weight": p["w1"], "bias": p["b1"]})
    bn = g("batchnorm", "bn1", c1, {}, dict(mean=p["m"], var=p["v"], scale=p["s"], bias=p["b"]))
    r1 = g("relu", "relu1", bn)
    c2 = g("conv2d", "conv2", r1, dict(out_channels=8, kernel=[3, 3], pad=[1] * 4), {"weight": p["w2"]})
    add = g("eltwise", "add", [c2, r1])        # residual: r1 is read twice
    pool = g("max_pool", "pool", add, dict(kernel=[3, 3], stride=[4, 4], ceil_mode=True))
    fl = g("flatten", "flat", pool)
    fc = g("dense", "fc", fl, {"out_features": 10}, {"weight": p["fw"], "bias": p["fb"]})
    sm = g("softmax", "prob", fc)
    return g.graph(sm), p


def torch_small_cnn(x, p):
    t = {k: torch.from_numpy(v) for k, v in p.items()}
    c1 = F.conv2d(torch.from_numpy(x), t["w1"], t["b1"], padding=1)
    r1 = F.relu(F.batch_norm(c1, t["m"], t["v"], t["s"], t["b"], eps=1e-5))
    add = F.conv2d(r1, t["w2"], padding=1) + r1
    pool = F.max_pool2d(add, 3, 4, ceil_mode=True)
    return F.softmax(F.linear(pool.flatten(1), t["fw"], t["fb"]), 1).numpy()


def test_small_cnn_against_torch():
    graph, p = small_cnn()
    x = rand(2, 3, 12, 12)
    out = run(graph, {"x": x})
    assert list(out) == ["prob"]
    np.testing.assert_allclose(out["prob"], torch_small_cnn(x, p), rtol=1e-4, atol=1e-6)
    # list form, taps by name and by Value, and the graph is not edited by running it
    before = {l.name: dict(l.attrs) for l in graph.layers}
    out2 = run(graph, [x], taps=["relu1", graph.value("pool")])
    assert list(out2) == ["prob", "relu1", "pool"] and out2["pool"].shape == (2, 8, 3, 3)
    np.testing.assert_array_equal(out2["prob"], out["prob"])
    assert {l.name: l.attrs for l in graph.layers} == before


def test_multiple_inputs_and_outputs():
    g = G()
    a, b = g.input("a", (1, 6, 2, 2)), g.input("b", (1, 2, 2, 2))
    cat = g("concat", "cat", [a, b])
    parts = g("slice", "split", cat, {"points": [3, 7]}, n_out=3)
    out = run(g.graph(parts[2], parts[0]), {"b": np.ones((1, 2, 2, 2)), "a": np.zeros((1, 6, 2, 2))})
    assert list(out) == ["split_2", "split_0"]
    assert out["split_2"].shape == (1, 1, 2, 2) and out["split_2"].min() == 1
    assert out["split_0"].dtype == np.float32   # float64 feeds are cast to the input's dtype


def test_input_errors():
    graph, _ = small_cnn()
    with pytest.raises(CococError, match=r"input %x: expected shape \[2, 3, 12, 12\], got \[1, 3, 12, 12\]"):
        run(graph, {"x": rand(1, 3, 12, 12)})
    with pytest.raises(CococError, match="no graph input named %y"):
        run(graph, {"x": rand(2, 3, 12, 12), "y": rand(1)})
    with pytest.raises(CococError, match="graph input %x not given"):
        run(graph, {})
    with pytest.raises(CococError, match="1 inputs, got 2 arrays"):
        run(graph, [rand(2, 3, 12, 12)] * 2)
    with pytest.raises(CococError, match="cannot tap %nope"):
        run(graph, [rand(2, 3, 12, 12)], taps=["nope"])


def test_param_errors_name_the_layer():
    graph, _ = small_cnn()
    conv2 = graph.layer("conv2")
    conv2.params["weight"] = Param(TensorType((8, 8, 3, 3)), None, hash="abcd1234")
    with pytest.raises(CococError, match="layer 'conv2': param 'weight' .* has no data"):
        run(graph, [rand(2, 3, 12, 12)])
    del conv2.params["weight"]
    with pytest.raises(CococError, match="layer 'conv2': conv2d needs param 'weight'"):
        run(graph, [rand(2, 3, 12, 12)])
    conv2.params["weight"] = Param.from_array(rand(8, 8, 3, 1))
    with pytest.raises(CococError, match=r"layer 'conv2': param 'weight' has shape \[8, 8, 3, 1\]"):
        run(graph, [rand(2, 3, 12, 12)])


def test_values_are_freed_after_last_use(monkeypatch):
    """Only the live set stays in memory: at the k-th relu of a chain, earlier results are gone."""
    g = G()
    v = g.input("x", (1, 4, 8, 8))
    for i in range(6):
        v = g("relu", f"r{i}", v)
    graph = g.graph(v)
    made, alive_counts = [], []
    real = Relu.compute

    def spy(layer, inputs, params):
        alive_counts.append(sum(r() is not None for r in made))
        ys = real(layer, inputs, params)
        made.append(weakref.ref(ys[0]))
        return ys

    monkeypatch.setattr(Relu, "compute", staticmethod(spy))
    run(graph, [rand(1, 4, 8, 8)])
    assert alive_counts == [0, 1, 1, 1, 1, 1]


def test_unknown_op_and_bad_attr_name_the_layer():
    g = G()
    x = g.input("x", (1, 2))
    y = g("gelu", "act", x)
    with pytest.raises(CococError, match="layer 'act'.*unknown op 'gelu'"):
        run(g.graph(y), [rand(1, 2)])
    g = G()
    x = g.input("x", (1, 2))
    y = g("relu", "act", x, {"alpha": 1.0})
    with pytest.raises(CococError, match="layer 'act': unknown attribute 'alpha'"):
        run(g.graph(y), [rand(1, 2)])
