"""IR -> ONNX -> onnxruntime agrees with the reference interpreter, for every IR op.

Each case is a small graph around one op (with the attribute variants that change its
lowering: ceil-mode pools, eltwise coeffs, within-channel LRN, flatten at axis 2, ...);
the exported model must pass onnx.checker and match within 1e-4 of the output scale.
A final check makes sure no registered op is left without a case here.
"""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from onnx import numpy_helper

from cococ.backends.onnx_export import to_onnx
from cococ.frontend.onnx import load_onnx
from cococ.ir.core import CococError, Graph, Layer, Param, TensorType, Value
from cococ.ir.interpreter import run
from cococ.ir.registry import all_ops

RNG = np.random.default_rng(0)


def _p(*shape, positive=False):
    a = RNG.standard_normal(shape).astype(np.float32)
    return Param.from_array(np.abs(a) + 0.5 if positive else a)


def chain(shape, *specs, extra_inputs=0, module=None):
    """A graph: input(s) of `shape`, then layers (op, attrs, params, n_inputs) each fed by the previous."""
    x = Value("x", TensorType(shape))
    layers = [Layer("input", "x", [], [x], {"shape": list(shape)})]
    xs = [x]
    for i in range(extra_inputs):
        v = Value(f"x{i + 1}", TensorType(shape))
        layers.append(Layer("input", f"x{i + 1}", [], [v], {"shape": list(shape)}))
        xs.append(v)
    cur = [x]
    for i, (op, attrs, params, fan_in) in enumerate(specs):
        ins = xs if fan_in == "all" else cur
        n_out = len(attrs.get("points", [])) + 1 if op == "slice" else 1
        outs = [Value(f"v{i}_{k}") for k in range(n_out)]
        layers.append(Layer(op, f"{op}_{i}", ins, outs, attrs, params, module=module))
        cur = outs[:1]
    g = Graph("t", layers, outs, [module] if module else [])
    return g


def L(op, attrs=None, params=None, fan_in=1):
    return (op, attrs or {}, params or {}, fan_in)


CASES = {
    "conv2d": chain((1, 3, 9, 8), L("conv2d", {"out_channels": 4, "kernel": [3, 2], "stride": [2, 1],
                                                "pad": [1, 0, 2, 1], "dilation": [1, 2]},
                                     {"weight": _p(4, 3, 3, 2), "bias": _p(4)})),
    "conv2d_dw": chain((1, 4, 6, 6), L("conv2d", {"out_channels": 4, "kernel": [3, 3], "groups": 4, "pad": [1, 1, 1, 1]},
                                       {"weight": _p(4, 1, 3, 3)})),
    "dense": chain((2, 10), L("dense", {"out_features": 5}, {"weight": _p(5, 10), "bias": _p(5)})),
    "batchnorm": chain((2, 3, 4, 4), L("batchnorm", {"eps": 1e-3}, {"mean": _p(3), "var": _p(3, positive=True),
                                                                    "scale": _p(3), "bias": _p(3)})),
    "batchnorm_plain": chain((2, 3, 4, 4), L("batchnorm", {}, {"mean": _p(3), "var": _p(3, positive=True)})),
    "scale": chain((2, 3, 4, 4), L("scale", {}, {"scale": _p(3), "bias": _p(3)})),
    "scale_nobias": chain((2, 3), L("scale", {}, {"scale": _p(3)})),
    "bias": chain((2, 3, 4, 4), L("bias", {}, {"bias": _p(3)})),
    "relu": chain((2, 3, 4, 4), L("relu")),
    "leaky_relu": chain((2, 3, 4, 4), L("leaky_relu", {"alpha": 0.2})),
    "prelu": chain((2, 3, 4, 4), L("prelu", {}, {"slope": _p(3)})),
    "prelu_shared": chain((2, 3, 4, 4), L("prelu", {}, {"slope": _p(1)})),
    "sigmoid": chain((2, 3, 4, 4), L("sigmoid")),
    "tanh": chain((2, 3, 4, 4), L("tanh")),
    "clip": chain((2, 3, 4, 4), L("clip", {"min": 0.0, "max": 0.5})),
    "clip_min": chain((2, 3, 4, 4), L("clip", {"min": -0.2})),
    "max_pool": chain((1, 2, 7, 7), L("max_pool", {"kernel": [3, 3], "stride": [2, 2], "pad": [1, 1, 1, 1]})),
    "max_pool_ceil": chain((1, 2, 8, 8), L("max_pool", {"kernel": [3, 3], "stride": [2, 2], "ceil_mode": True})),
    "avg_pool": chain((1, 2, 7, 7), L("avg_pool", {"kernel": [3, 3], "stride": [2, 2], "pad": [1, 1, 1, 1],
                                                   "count_include_pad": False})),
    "avg_pool_incl": chain((1, 2, 7, 7), L("avg_pool", {"kernel": [3, 3], "stride": [2, 2], "pad": [1, 1, 1, 1]})),
    "avg_pool_ceil": chain((1, 2, 8, 8), L("avg_pool", {"kernel": [3, 3], "stride": [2, 2], "ceil_mode": True})),
    "avg_pool_ceil_pad": chain((1, 2, 8, 8), L("avg_pool", {"kernel": [3, 3], "stride": [2, 2], "pad": [1, 1, 1, 1],
                                                            "ceil_mode": True})),
    "global_avg_pool": chain((2, 3, 4, 5), L("global_avg_pool")),
    "global_max_pool": chain((2, 3, 4, 5), L("global_max_pool")),
    "eltwise_sum": chain((2, 3, 4, 4), L("eltwise", {"mode": "sum"}, fan_in="all"), extra_inputs=2),
    "eltwise_coeffs": chain((2, 3, 4, 4), L("eltwise", {"mode": "sum", "coeffs": [1.0, -0.5]}, fan_in="all"),
                            extra_inputs=1),
    "eltwise_prod": chain((2, 3, 4, 4), L("eltwise", {"mode": "prod"}, fan_in="all"), extra_inputs=2),
    "eltwise_max": chain((2, 3, 4, 4), L("eltwise", {"mode": "max"}, fan_in="all"), extra_inputs=1),
    "concat": chain((2, 3, 4, 4), L("concat", {"axis": 1}, fan_in="all"), extra_inputs=1),
    "flatten": chain((2, 3, 4, 4), L("flatten", {"axis": 1})),
    "flatten_axis2": chain((2, 3, 4, 4), L("flatten", {"axis": 2})),
    "reshape": chain((2, 3, 4, 4), L("reshape", {"shape": [0, -1, 8]})),
    "softmax": chain((2, 5, 3, 3), L("softmax", {"axis": 1})),
    "softmax_last": chain((2, 10), L("softmax", {"axis": -1})),
    "dropout": chain((2, 3, 4, 4), L("dropout", {"ratio": 0.3})),
    "lrn": chain((1, 7, 5, 5), L("lrn", {"size": 5, "alpha": 1e-2, "beta": 0.75, "k": 2.0})),
    "lrn_within": chain((1, 3, 6, 6), L("lrn", {"size": 3, "alpha": 1e-1, "beta": 0.75, "region": "within"})),
    "identity": chain((2, 3, 4, 4), L("identity")),
    "slice": chain((2, 6, 4, 4), L("slice", {"axis": 1, "points": [2, 5]})),
    "power": chain((2, 3, 4, 4), L("relu"), L("power", {"power": 2.0, "scale": 0.5, "shift": 1.0})),
    "power_noop": chain((2, 3, 4, 4), L("power", {})),
    # --- CNN ops of ONNX imports (issue 17) ---
    "transpose": chain((2, 2, 3, 4, 5), L("transpose", {"perm": [0, 2, 1, 3, 4]})),
    "broadcast_eltwise": chain((2, 3, 4, 4), L("broadcast_eltwise", {"mode": "sum"}, fan_in="all"), extra_inputs=1),
    "resize": chain((1, 2, 5, 4), L("resize", {"size": [10, 3], "mode": "linear"})),
    "resize_scales": chain((1, 2, 5, 4), L("resize", {"size": [10, 8], "coord": "asymmetric", "nearest": "floor",
                                                       "scales": [2.0, 2.0]})),
    # --- Scalpel node pruning's mask op (issue 6) ---
    "mask": chain((2, 3, 4, 4), L("mask", {}, {"alpha": Param.from_array(np.array([1, 0, 1], np.float32)),
                                               "beta": _p(3, positive=True)})),
}
# an op not listed above is exported once with its defaults (one input, no params), so a new op that
# needs nothing more has a case without a line here; one that needs attributes or params fails, naming them
CASES.update({op: chain((2, 3, 4, 4), L(op)) for op in all_ops()
              if op != "input" and op not in {l.op for g in CASES.values() for l in g.layers}})


def _ort(model: onnx.ModelProto, feeds: dict) -> list[np.ndarray]:
    s = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return s.run(None, feeds)


def close(got, want, rel=1e-4):
    scale = max(1.0, float(np.abs(want).max()))
    assert got.shape == want.shape
    assert float(np.abs(got - want).max()) <= rel * scale


@pytest.mark.parametrize("name", sorted(CASES))
def test_export_matches_interpreter(name):
    g = CASES[name]
    feeds = {v.name: RNG.standard_normal(v.type.shape).astype(np.float32) for v in g.inputs}
    want = run(g, feeds)
    m = to_onnx(g)
    onnx.checker.check_model(m, full_check=True)
    got = _ort(m, feeds)
    for v, y in zip(g.outputs, got):
        close(y, want[v.name])


def test_names_and_modules_survive_a_round_trip():
    g = chain((1, 3, 6, 6), L("conv2d", {"out_channels": 4, "kernel": [3, 3], "pad": [1, 1, 1, 1]},
                              {"weight": _p(4, 3, 3, 3), "bias": _p(4)}), L("relu"), module="res2a")
    m = to_onnx(g)
    assert [n.name for n in m.graph.node] == ["conv2d_0", "relu_1"]
    g2 = load_onnx(m)
    assert [l.name for l in g2.layers] == [l.name for l in g.layers]
    assert g2.modules == ["res2a"] and all(l.module == "res2a" for l in g2.layers if l.op != "input")
    g3 = load_onnx(to_onnx(g2))
    assert [(l.op, l.name) for l in g3.layers] == [(l.op, l.name) for l in g.layers]
    x = RNG.standard_normal((1, 3, 6, 6)).astype(np.float32)
    close(run(g3, [x])[g3.outputs[0].name], run(g, [x])[g.outputs[0].name])


def test_every_case_round_trips_through_import():
    """import(export(g)) computes what g computes, for every case the importer can express."""
    for name, g in CASES.items():
        feeds = {v.name: RNG.standard_normal(v.type.shape).astype(np.float32) for v in g.inputs}
        g2 = load_onnx(to_onnx(g))
        want, got = run(g, feeds), run(g2, feeds)
        for v, v2 in zip(g.outputs, g2.outputs):
            close(got[v2.name], want[v.name])


def test_export_does_not_modify_the_graph():
    g = CASES["max_pool"]
    before = dict(g.layers[1].attrs)
    to_onnx(g)
    assert g.layers[1].attrs == before


def test_unknown_op_is_a_clear_error(monkeypatch):
    from cococ.ir import registry
    monkeypatch.delitem(registry.RULES, ("tanh", "onnx"))
    with pytest.raises(CococError, match="no ONNX lowering for IR op tanh"):
        to_onnx(CASES["tanh"])


def test_compressed_params_are_exported_dense():
    from cococ.ir.formats import compress
    w = _p(4, 3, 3, 3).data.copy()
    w[np.abs(w) < 0.7] = 0
    g = chain((1, 3, 6, 6), L("conv2d", {"out_channels": 4, "kernel": [3, 3]}, {"weight": Param.from_array(w)}))
    conv = g.layers[1]
    conv.params["weight"] = compress(conv.params["weight"], "simd_group", width=2)
    assert conv.params["weight"].format != "dense"
    m = to_onnx(g)
    init = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    assert any(np.array_equal(a, w) for a in init.values())
    x = RNG.standard_normal((1, 3, 6, 6)).astype(np.float32)
    close(_ort(m, {"x": x})[0], run(g, [x])[g.outputs[0].name])
