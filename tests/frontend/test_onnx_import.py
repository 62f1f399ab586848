"""ONNX import: each converter against onnxruntime on the same model, plus the error contract.

Models are built with onnx.helper; `agree` imports one, runs the reference interpreter and
compares with onnxruntime running the original ONNX model (batch fixed to 1 when symbolic).
"""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from cococ.frontend.onnx import load_onnx
from cococ.ir.core import CococError
from cococ.ir.interpreter import run

RNG = np.random.default_rng(1)


def W(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def model(nodes, in_shape, out_shape=None, inits=(), opset=17, extra_inputs=()):
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)]
    inputs += [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in extra_inputs]
    out = helper.make_tensor_value_info(nodes[-1].output[0], TensorProto.FLOAT, out_shape)
    g = helper.make_graph(nodes, "t", inputs, [out], [numpy_helper.from_array(a, n) for n, a in inits])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)
    if out_shape is None:  # the checker wants an output shape: take onnx's inferred one (or rank only)
        inferred = onnx.shape_inference.infer_shapes(m).graph.output[0]
        if inferred.type.tensor_type.HasField("shape"):
            m.graph.output[0].CopyFrom(inferred)
        else:
            m.graph.output[0].type.tensor_type.shape.dim.add()
    return m


def agree(m, rel=1e-4):
    g = load_onnx(m)
    feeds = {v.name: RNG.standard_normal(v.type.shape).astype(np.float32) for v in g.inputs}
    want = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    got = run(g, feeds)[g.outputs[0].name]
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= rel * max(1.0, np.abs(want).max())
    return g


def ops(g):
    return [l.op for l in g.layers if l.op != "input"]


@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER", "VALID"])
def test_conv_auto_pad(auto_pad):
    n = helper.make_node("Conv", ["x", "w", "b"], ["y"], name="c", auto_pad=auto_pad, strides=[2, 2])
    g = agree(model([n], [1, 3, 7, 8], inits=[("w", W(4, 3, 3, 2)), ("b", W(4))]))
    assert ops(g) == ["conv2d"] and g.layers[1].name == "c"


def test_conv_groups_dilation_pads():
    n = helper.make_node("Conv", ["x", "w"], ["y"], group=2, dilations=[2, 1], pads=[1, 0, 2, 1])
    agree(model([n], [1, 4, 9, 9], inits=[("w", W(6, 2, 3, 3))]))


def test_zero_pad_folds_into_conv_and_avg_pool():
    p = helper.make_node("Pad", ["x", "pads"], ["p"], mode="constant")
    c = helper.make_node("Conv", ["p", "w"], ["c"], pads=[1, 1, 1, 1])
    a = helper.make_node("AveragePool", ["c"], ["y"], kernel_shape=[2, 2])
    p2 = helper.make_node("Pad", ["c", "pads"], ["p2"])
    a2 = helper.make_node("AveragePool", ["p2"], ["y2"], kernel_shape=[3, 3])
    s = helper.make_node("Sum", ["y", "y"], ["z"])
    pads = np.array([0, 0, 1, 2, 0, 0, 1, 0], dtype=np.int64)
    g = agree(model([p, c, a, s], [1, 3, 6, 6], inits=[("pads", pads), ("w", W(4, 3, 3, 3))]))
    assert ops(g) == ["conv2d", "avg_pool", "eltwise"] and g.layers[1].attrs["pad"] == [2, 3, 2, 1]
    g = agree(model([p, c, p2, a2], [1, 3, 6, 6], inits=[("pads", pads), ("w", W(4, 3, 3, 3))]))
    assert g.layers[2].attrs["count_include_pad"] is True


def test_pad_before_max_pool_is_a_clear_error():
    p = helper.make_node("Pad", ["x", "pads"], ["p"], name="pad")
    m = helper.make_node("MaxPool", ["p"], ["y"], kernel_shape=[2, 2], name="pool")
    with pytest.raises(CococError, match="node 'pool' \\(MaxPool\\): folding the zero Pad 'pad'.*not supported"):
        load_onnx(model([p, m], [1, 3, 6, 6], inits=[("pads", np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64))]))


@pytest.mark.parametrize("alpha,beta,trans_b", [(1.0, 1.0, 1), (0.5, 2.0, 0), (1.0, 0.0, 1)])
def test_gemm(alpha, beta, trans_b):
    b = W(5, 10) if trans_b else W(10, 5)
    n = helper.make_node("Gemm", ["x", "B", "C"], ["y"], alpha=alpha, beta=beta, transB=trans_b)
    g = agree(model([n], [2, 10], inits=[("B", b), ("C", W(1, 5))]))
    assert ops(g) == ["dense"]


def test_matmul_add_becomes_dense_with_bias():
    mm = helper.make_node("MatMul", ["x", "B"], ["m"])
    add = helper.make_node("Add", ["m", "b"], ["y"])
    g = agree(model([mm, add], ["N", 10], inits=[("B", W(10, 5)), ("b", W(5))]))
    assert ops(g) == ["dense"] and "bias" in g.layers[1].params and g.inputs[0].type.shape == (1, 10)


def test_batchnorm_and_channel_constants():
    bn = helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["n"], epsilon=1e-3)
    add = helper.make_node("Add", ["n", "c"], ["a"])
    mul = helper.make_node("Mul", ["half", "a"], ["u"])
    sub = helper.make_node("Sub", ["u", "c"], ["d"])
    div = helper.make_node("Div", ["d", "c"], ["y"])
    inits = [("s", W(3)), ("b", W(3)), ("m", W(3)), ("v", np.abs(W(3)) + 0.1),
             ("c", np.abs(W(3, 1, 1)) + 0.5), ("half", np.array(0.5, np.float32))]
    g = agree(model([bn, add, mul, sub, div], [1, 3, 4, 4], inits=inits))
    assert ops(g) == ["batchnorm", "bias", "scale", "bias", "scale"]


def test_activations_and_opset_dependent_clip():
    nodes = [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("LeakyRelu", ["a"], ["b"], alpha=0.3),
             helper.make_node("PRelu", ["b", "slope"], ["c"]), helper.make_node("Sigmoid", ["c"], ["d"]),
             helper.make_node("Tanh", ["d"], ["e"]), helper.make_node("Clip", ["e", "lo", "hi"], ["y"])]
    inits = [("slope", W(3, 1, 1)), ("lo", np.array(-0.1, np.float32)), ("hi", np.array(0.2, np.float32))]
    g = agree(model(nodes, [1, 3, 4, 4], inits=inits))
    assert g.layers[-1].attrs == {"min": pytest.approx(-0.1), "max": pytest.approx(0.2)}
    old = helper.make_node("Clip", ["x"], ["y"], min=-0.5, max=0.5)
    g = agree(model([old], [1, 3, 4, 4], opset=9))
    assert g.layers[-1].attrs["max"] == 0.5


def test_softmax_before_13_flattens():
    n = helper.make_node("Softmax", ["x"], ["y"], axis=1)
    g = agree(model([n], [2, 3, 4], opset=11))
    assert ops(g) == ["reshape", "softmax", "reshape"]
    g = agree(model([n], [2, 3, 1], opset=11))
    assert ops(g) == ["softmax"] and g.layers[1].attrs["axis"] == 1
    g = agree(model([helper.make_node("Softmax", ["x"], ["y"])], [2, 3, 4], opset=13))
    assert ops(g) == ["softmax"] and g.layers[1].attrs["axis"] == 2


def test_pools_lrn_concat_flatten_reshape():
    nodes = [helper.make_node("MaxPool", ["x"], ["a"], kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1),
             helper.make_node("AveragePool", ["a"], ["b"], kernel_shape=[2, 2], pads=[1, 1, 0, 0],
                              count_include_pad=1),
             helper.make_node("LRN", ["b"], ["c"], size=3, alpha=1e-2),
             helper.make_node("GlobalMaxPool", ["c"], ["d"]), helper.make_node("GlobalAveragePool", ["c"], ["e"]),
             helper.make_node("Concat", ["d", "e"], ["f"], axis=1),
             helper.make_node("Dropout", ["f"], ["g"]),
             helper.make_node("Flatten", ["g"], ["h"], axis=1),
             helper.make_node("Reshape", ["h", "shape"], ["y"])]
    g = agree(model(nodes, [1, 3, 10, 10], inits=[("shape", np.array([0, 3, -1], np.int64))]))
    assert ops(g) == ["max_pool", "avg_pool", "lrn", "global_max_pool", "global_avg_pool", "concat",
                      "dropout", "flatten", "reshape"]


def test_torch_style_flatten_folds_shape_arithmetic():
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
             helper.make_node("Unsqueeze", ["n", "axes"], ["n1"]),
             helper.make_node("Concat", ["n1", "minus1"], ["shape"], axis=0),
             helper.make_node("Reshape", ["x", "shape"], ["y"])]
    inits = [("zero", np.array(0, np.int64)), ("axes", np.array([0], np.int64)), ("minus1", np.array([-1], np.int64))]
    g = agree(model(nodes, ["batch", 2, 3, 3], inits=inits))
    assert ops(g) == ["reshape"] and g.layers[1].attrs["shape"] == [1, -1]


def test_two_activations_become_eltwise():
    nodes = [helper.make_node("Add", ["x", "x2"], ["a"]), helper.make_node("Mul", ["a", "x2"], ["b"]),
             helper.make_node("Max", ["b", "x"], ["c"]), helper.make_node("Sub", ["c", "x"], ["y"])]
    g = agree(model(nodes, [1, 2, 3, 3], extra_inputs=[("x2", [1, 2, 3, 3])]))
    assert [l.attrs.get("mode") for l in g.layers[2:]] == ["sum", "prod", "max", "sum"]


def test_every_unsupported_node_is_listed_in_one_error():
    nodes = [helper.make_node("Elu", ["x"], ["a"], name="elu1"),
             helper.make_node("ConvTranspose", ["x", "w"], ["b"], name="deconv"),
             helper.make_node("Relu", ["a"], ["c"], name="after_elu"),
             helper.make_node("Softplus", ["c"], ["d"], name="splus"),
             helper.make_node("Add", ["d", "b"], ["y"], name="add")]
    m = model(nodes, [1, 3, 4, 4], inits=[("w", W(3, 3, 3, 3))])
    with pytest.raises(CococError) as e:
        load_onnx(m)
    msg = str(e.value)
    assert msg.count("node '") == 3, msg
    for part in ("node 'elu1' (Elu): op type not supported", "node 'deconv' (ConvTranspose)",
                 "node 'splus' (Softplus): op type not supported"):
        assert part in msg


def test_unsupported_configurations_name_their_node():
    n = helper.make_node("Add", ["x", "full"], ["y"], name="addfull")
    with pytest.raises(CococError, match="node 'addfull' \\(Add\\).*not per-channel"):
        load_onnx(model([n], [1, 3, 4, 4], inits=[("full", W(1, 3, 4, 4))]))
    n = helper.make_node("MatMul", ["x", "x"], ["y"], name="mm")
    with pytest.raises(CococError, match="node 'mm'.*not a constant"):
        load_onnx(model([n], [4, 4]))


@pytest.mark.parametrize("data", [b"", b"garbage\x00\x01", b"\x08\x07\x12\x04abcd"])
def test_malformed_bytes_are_cococ_errors(data):
    with pytest.raises(CococError):
        load_onnx(data)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(CococError, match="no such file"):
        load_onnx(tmp_path / "none.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\xff\xfe not onnx")
    with pytest.raises(CococError, match="bad.onnx"):
        load_onnx(bad)


def test_loads_from_path_via_cococ_load(tmp_path):
    from cococ.frontend.load import load
    n = helper.make_node("Relu", ["x"], ["y"])
    p = tmp_path / "m.onnx"
    onnx.save(model([n], [1, 3, 2, 2]), p)
    g = load(p)
    assert ops(g) == ["relu"] and g.source_path == str(p)


def test_symbolic_spatial_dim_is_a_clear_error():
    n = helper.make_node("Relu", ["x"], ["y"])
    with pytest.raises(CococError, match="symbolic or unknown dim at axis 2"):
        load_onnx(model([n], [1, 3, "h", 4]))
