"""IR -> prototxt (frontend/prototxt/writer.py) -> load_prototxt gives the same graph back:
layer and value names, ops, attrs, shapes, params, modules; with the weights written beside it,
the same interpreter outputs. Corpus nets (../shared/corpus) are skipped when absent."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import cococ
from cococ.frontend.prototxt import load_prototxt_text
from cococ.frontend.prototxt.writer import save_prototxt, to_prototxt
from cococ.ir.builder import GraphBuilder
from cococ.ir.core import CococError
from cococ.ir.interpreter import run
from cococ.ir.verify import infer_shapes

ROOT = Path(__file__).resolve().parents[2]
CORPUS_NETS = ["bvlc_caffe/examples/cifar10/cifar10_quick.prototxt", "SqueezeNet/SqueezeNet_v1.1/deploy.prototxt",
               "MobileNet-Caffe/mobilenet_v2_deploy.prototxt", "bvlc_caffe/models/bvlc_googlenet/deploy.prototxt",
               "deep-residual-networks/prototxt/ResNet-50-deploy.prototxt",
               "soeaver-caffe-model/cls/inception/deploy_inception-v3.prototxt"]


def signature(g):
    """Everything the round trip must keep, as plain data (attrs with defaults filled)."""
    infer_shapes(g)
    layers = [(l.op, l.name, l.module, [v.name for v in l.inputs],
               [(v.name, tuple(v.type.shape), v.type.dtype) for v in l.outputs],
               sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in l.attrs.items()),
               sorted((k, tuple(p.shape)) for k, p in l.params.items())) for l in g.layers]
    return layers, [v.name for v in g.outputs], list(g.modules), g.name


def roundtrip(g):
    return load_prototxt_text(to_prototxt(g))


def same_outputs(g, h, seed=0):
    rng = np.random.default_rng(seed)
    feeds = {v.name: rng.standard_normal(v.type.shape).astype(np.float32) for v in g.inputs}
    a, b = run(g, feeds), run(h, feeds)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


@pytest.mark.parametrize("net", ["lenet/lenet.prototxt", "resnet/resnet.prototxt", "lenet300/lenet300.prototxt"])
def test_example_roundtrip_graph_and_outputs(net, tmp_path):
    src = ROOT / "examples" / net
    g = cococ.load(src, weights=src.with_suffix(".safetensors"))
    assert signature(roundtrip(g)) == signature(g)
    paths = save_prototxt(g, tmp_path / "net.prototxt")
    assert paths["weights"] == tmp_path / "net.safetensors"
    h = cococ.load(paths["prototxt"], weights=paths["weights"])
    assert signature(h) == signature(g)
    same_outputs(g, h)


def test_resnet_modules_are_module_blocks():
    g = cococ.load(ROOT / "examples" / "resnet" / "resnet.prototxt")
    text = to_prototxt(g)
    assert text.count("module {") == len(g.modules) == 6
    assert 'input: "data"' in text and "input_shape {" in text


@pytest.mark.parametrize("net", CORPUS_NETS)
def test_corpus_roundtrip(corpus, net):
    g = cococ.load(corpus / net)
    assert signature(roundtrip(g)) == signature(g)


@pytest.mark.parametrize("net", CORPUS_NETS[:2])
def test_corpus_roundtrip_outputs(corpus, net):
    g = cococ.load(corpus / net, init="random", seed=3)
    h = roundtrip(g)
    for l in h.layers:
        for k, p in l.params.items():
            l.params[k] = g.layer(l.name).params[k]
    same_outputs(g, h)


def test_writes_every_supported_op_kind():
    """Ops the examples lack: asymmetric kernels, groups, dilation, leaky relu, clip, power, lrn,
    floor pooling, eltwise coeffs, concat, reshape, slice, identity, prelu, sigmoid, tanh, bias."""
    rng = np.random.default_rng(0)
    w = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    b = GraphBuilder("many")
    x = b.input("x", [1, 4, 9, 9])
    c = b("conv2d", "c", x, {"out_channels": 4, "kernel": [3, 1], "stride": [2, 1], "pad": [1, 0, 1, 0],
                             "groups": 2, "dilation": [2, 1]}, {"weight": w(4, 2, 3, 1), "bias": w(4)})
    p1 = b("max_pool", "p", c, {"kernel": [2, 2], "stride": [2, 2], "ceil_mode": False})
    r = b("leaky_relu", "lr", p1, {"alpha": 0.1})
    k = b("clip", "cl", r, {"min": 0.0, "max": 6.0})
    pw = b("power", "pw", k, {"power": 2.0, "scale": 0.5, "shift": 1.0})
    n = b("lrn", "n", pw, {"size": 3, "alpha": 1e-4, "beta": 0.75, "k": 2.0, "region": "within"})
    pr = b("prelu", "pr", n, params={"slope": w(4)})
    sg = b("sigmoid", "sg", pr)
    th = b("tanh", "th", pr)
    e = b("eltwise", "e", [sg, th], {"mode": "sum", "coeffs": [1.0, -1.0]})
    bi = b("bias", "bi", e, params={"bias": w(4)})
    cat = b("concat", "cat", [bi, e], {"axis": 1})
    s1, s2 = b("slice", "sl", cat, {"axis": 1, "points": [3]}, n_out=2)
    i = b("identity", "id", s1)
    rs = b("reshape", "rs", i, {"shape": [1, -1]})
    g = b.graph(s2, rs)          # Caffe's outputs come in layer order
    text = to_prototxt(g)
    for kw in ("kernel_h: 3", "group: 2", "dilation: 2", "negative_slope: 0.1", "round_mode: FLOOR",
               "norm_region: WITHIN_CHANNEL", "coeff: -1.0", "slice_point: 3", 'type: "Concat"'):
        assert kw in text, kw
    h = roundtrip(g)
    assert signature(h) == signature(g)
    for l in h.layers:
        for name, prm in l.params.items():
            l.params[name] = g.layer(l.name).params[name]
    same_outputs(g, h)


def test_refuses_what_caffe_cannot_say():
    b = GraphBuilder("asym")
    x = b.input("x", [1, 1, 6, 6])
    y = b("conv2d", "c", x, {"out_channels": 2, "kernel": [3, 3], "pad": [0, 0, 1, 1]},
          {"weight": np.zeros((2, 1, 3, 3), np.float32)})
    with pytest.raises(CococError, match="symmetric"):
        to_prototxt(b.graph(y))
    b = GraphBuilder("avg")
    x = b.input("x", [1, 1, 6, 6])
    y = b("avg_pool", "p", x, {"kernel": [2, 2], "stride": [2, 2], "pad": [1, 1, 1, 1], "count_include_pad": False})
    with pytest.raises(CococError, match="count_include_pad"):
        to_prototxt(b.graph(y))
    b = GraphBuilder("out")
    x = b.input("x", [1, 1, 6, 6])
    y = b("relu", "r", x)
    z = b("sigmoid", "s", y)
    with pytest.raises(CococError, match="also read"):
        to_prototxt(b.graph(y, z))


# ---- every op Caffe can express, ONNX -> prototxt -> IR -------------------------------------------

_rng = np.random.default_rng(1)
_w = lambda *s: _rng.standard_normal(s).astype(np.float32)          # noqa: E731
_pos = lambda *s: (_rng.random(s) + 0.5).astype(np.float32)          # noqa: E731
X_SHAPE = [1, 4, 7, 7]
# case -> (op, attrs away from their defaults, params); the layer under test is "L" on input x
OP_CASES = {
    "avg_pool": ("avg_pool", {"kernel": [3, 3], "stride": [2, 2], "pad": [1, 1, 1, 1]}, {}),
    "avg_pool_ceil": ("avg_pool", {"kernel": [2, 2], "stride": [2, 2], "ceil_mode": True}, {}),
    "max_pool": ("max_pool", {"kernel": [3, 2], "stride": [2, 1], "pad": [1, 0, 1, 0]}, {}),
    "max_pool_ceil": ("max_pool", {"kernel": [2, 2], "stride": [2, 2], "ceil_mode": True}, {}),
    "batchnorm": ("batchnorm", {"eps": 1e-3}, {"mean": _w(4), "var": _pos(4)}),
    "batchnorm_affine": ("batchnorm", {"eps": 1e-3}, {"mean": _w(4), "var": _pos(4), "scale": _w(4), "bias": _w(4)}),
    "batchnorm_scale": ("batchnorm", {}, {"mean": _w(4), "var": _pos(4), "scale": _w(4)}),
    "batchnorm_bias": ("batchnorm", {}, {"mean": _w(4), "var": _pos(4), "bias": _w(4)}),
    "bias": ("bias", {}, {"bias": _w(4)}),
    "scale": ("scale", {}, {"scale": _w(4)}),
    "scale_bias": ("scale", {}, {"scale": _w(4), "bias": _w(4)}),
    "clip": ("clip", {"min": -0.5, "max": 0.7}, {}),
    "clip_min": ("clip", {"min": -0.5}, {}),
    "conv2d": ("conv2d", {"out_channels": 6, "kernel": [3, 2], "stride": [2, 1], "pad": [1, 0, 1, 0], "groups": 2,
                          "dilation": [1, 2]}, {"weight": _w(6, 2, 3, 2), "bias": _w(6)}),
    "conv2d_nobias": ("conv2d", {"out_channels": 3, "kernel": [1, 1]}, {"weight": _w(3, 4, 1, 1)}),
    "dense": ("dense", {"out_features": 5}, {"weight": _w(5, 196), "bias": _w(5)}),
    "dense_nobias": ("dense", {"out_features": 5}, {"weight": _w(5, 196)}),
    "dropout": ("dropout", {"ratio": 0.3}, {}),
    "eltwise_sum": ("eltwise", {"mode": "sum", "coeffs": [0.5, -2.0]}, {}),
    "eltwise_prod": ("eltwise", {"mode": "prod"}, {}),
    "eltwise_max": ("eltwise", {"mode": "max"}, {}),
    "concat": ("concat", {"axis": 1}, {}),
    "flatten": ("flatten", {"axis": 2}, {}),
    "global_avg_pool": ("global_avg_pool", {}, {}),
    "global_max_pool": ("global_max_pool", {}, {}),
    "identity": ("identity", {}, {}),
    "leaky_relu": ("leaky_relu", {"alpha": 0.2}, {}),
    "lrn": ("lrn", {"size": 3, "alpha": 0.01, "beta": 0.6, "k": 2.0}, {}),
    "lrn_within": ("lrn", {"size": 3, "alpha": 0.01, "beta": 0.6, "k": 1.0, "region": "within"}, {}),
    "power": ("power", {"power": 2.0, "scale": 0.5, "shift": 1.5}, {}),
    "prelu": ("prelu", {}, {"slope": _w(4)}),
    "prelu_shared": ("prelu", {}, {"slope": _w(1)}),
    "relu": ("relu", {}, {}),
    "reshape": ("reshape", {"shape": [0, 2, -1]}, {}),
    "sigmoid": ("sigmoid", {}, {}),
    "slice": ("slice", {"axis": 1, "points": [1, 3]}, {}),
    "softmax": ("softmax", {"axis": 2}, {}),
    "tanh": ("tanh", {}, {}),
}


def op_graph(case: str):
    op, attrs, params = OP_CASES[case]
    b = GraphBuilder(case)
    x = b.input("x", X_SHAPE)
    if op in ("eltwise", "concat"):
        x = [x, b("sigmoid", "s", x)]
    elif op == "dense":
        x = b("flatten", "f", x)
    y = b(op, "L", x, attrs, params, n_out=len(attrs.get("points", [])) + 1)
    return b.graph(*(y if isinstance(y, list) else [y]))


def test_op_cases_cover_every_caffe_writable_op():
    from cococ.ir.registry import all_ops, rule_of
    writable = {op for op in all_ops() if rule_of(op, "caffe") is not None}
    assert writable <= {op for op, _, _ in OP_CASES.values()}


@pytest.mark.parametrize("case", list(OP_CASES))
def test_op_roundtrip_onnx_prototxt_ir(case, tmp_path):
    """IR -> ONNX -> (cococ's ONNX import) -> prototxt + weights -> IR: outputs as onnxruntime's;
    and IR -> prototxt -> IR directly: outputs as the interpreter's (no attr or param is lost)."""
    import onnx
    import onnxruntime as ort

    from cococ.backends.onnx_export import to_onnx
    g = op_graph(case)
    onnx.save(to_onnx(g), str(tmp_path / "m.onnx"))
    x = np.random.default_rng(2).standard_normal(X_SHAPE).astype(np.float32)
    ref = ort.InferenceSession(str(tmp_path / "m.onnx")).run(None, {"x": x})
    paths = save_prototxt(cococ.load(tmp_path / "m.onnx"), tmp_path / "m.prototxt")
    h = cococ.load(paths["prototxt"], weights=paths.get("weights"))
    got = run(h, {"x": x})
    assert len(h.outputs) == len(ref)
    for v, r in zip(h.outputs, ref):
        np.testing.assert_allclose(got[v.name], r, rtol=1e-5, atol=1e-5)
    paths = save_prototxt(g, tmp_path / "d.prototxt")
    h = cococ.load(paths["prototxt"], weights=paths.get("weights"))
    if not (g.layer("L").op == "batchnorm" and len(g.layer("L").params) > 2):
        assert signature(h) == signature(g)
    got, want = run(h, {"x": x}), run(g, {"x": x})
    for v, u in zip(h.outputs, g.outputs):
        np.testing.assert_allclose(got[v.name], want[u.name], rtol=1e-6, atol=1e-6)


def test_affine_batchnorm_is_batchnorm_plus_scale():
    g = op_graph("batchnorm_affine")
    text = to_prototxt(g)
    assert text.count('type: "BatchNorm"') == 1 and text.count('type: "Scale"') == 1 and "bias_term: true" in text
    h = roundtrip(g)
    assert [(l.op, l.name, sorted(l.params)) for l in h.layers[1:]] == [
        ("batchnorm", "L", ["mean", "var"]), ("scale", "L/scale", ["bias", "scale"])]
    assert [v.name for v in h.outputs] == ["L"]          # the output keeps its name
    assert sorted(g.layer("L").params) == ["bias", "mean", "scale", "var"]   # the graph written is untouched


def test_clip_infinite_bound_reads_as_no_bound():
    """The writer spells a missing bound ±inf; read back it is absent again (an infinite max used to
    reach the q15 M4 build, whose integer clamp raised OverflowError)."""
    g = load_prototxt_text('input: "x" input_shape { dim: 1 dim: 2 dim: 3 dim: 3 }\n'
                           'layer { name: "c" type: "Clip" bottom: "x" top: "c" clip_param { min: 0 max: inf } }\n'
                           'layer { name: "d" type: "Clip" bottom: "c" top: "d" clip_param { min: -inf max: 6 } }\n')
    assert [l.attrs for l in g.layers[1:]] == [{"min": 0.0}, {"max": 6.0}]
