"""ONNX files of real models import (issue 17 item 4, issue 14 item 5): weights of any size (the
folding guard is on growth only), initializers an old exporter left out of the graph inputs,
and the Pad of opset >= 11 whose pads are computed by constant subgraphs, folded with onnx's
reference implementation and then into the next conv. Each matches onnxruntime.
"""
from __future__ import annotations

import io
import subprocess
import sys
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from cococ.frontend.onnx import context
from cococ.frontend.onnx.loader import load_onnx
from cococ.ir.core import CococError
from cococ.ir.interpreter import run
from cococ.ir.memory import limited_memory


def _model(nodes, inputs, outputs, inits, opset=13, ir_version=8):
    graph = helper.make_graph(nodes, "g", inputs, outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=ir_version)


def _info(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def _matches_onnxruntime(model, feeds, rel=1e-4):
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
    graph = load_onnx(model)
    got = run(graph, {v.name: feeds[v.name] for v in graph.inputs})
    for w, g in zip(want, got.values()):
        assert g.shape == w.shape
        err = float(np.abs(g - w).max())
        assert err <= rel * (1 + float(np.abs(w).max())), err
    return graph


def _gemm(rows, cols, trans_b=1):
    """x[1, cols] @ W^T, W of [rows, cols] stored transposed (transB=1, as torch exports Linear);
    W is made without a random generator: 37.7 M normal samples take seconds."""
    w = np.subtract.outer(np.arange(rows, dtype=np.float32) % 7, np.arange(cols, dtype=np.float32) % 5)
    node = helper.make_node("Gemm", ["x", "w"], ["y"], transB=trans_b)
    init = numpy_helper.from_array(w if trans_b else np.ascontiguousarray(w.T), "w")
    return _model([node], [_info("x", [1, cols])], [_info("y", [1, rows])], [init]), w


def test_alexnet_fc6_sized_weight_imports():
    """AlexNet's fc6 (4096 x 9216 = 37.7 M elements) was refused by the folding guard."""
    model, w = _gemm(4096, 9216)
    graph = load_onnx(model)
    dense = graph.layers[-1]
    assert dense.op == "dense" and dense.params["weight"].shape == (4096, 9216)
    x = np.random.default_rng(1).standard_normal((1, 9216), dtype=np.float32)
    got = run(graph, {"x": x})["y"]
    np.testing.assert_allclose(got, x @ w.T, rtol=1e-4, atol=1e-2)


@pytest.mark.parametrize("trans_b", [0, 1])
def test_weights_over_the_fold_limit_import(monkeypatch, trans_b):
    monkeypatch.setattr(context, "MAX_FOLD_ELEMENTS", 100)
    x = np.ones((1, 30), np.float32)
    _matches_onnxruntime(_gemm(20, 30, trans_b)[0], {"x": x})  # 600 elements > 100


def test_folding_that_grows_is_refused_before_allocating():
    shape = numpy_helper.from_array(np.array([100000, 100000, 100], np.int64), "s")
    nodes = [helper.make_node("ConstantOfShape", ["s"], ["c"]), helper.make_node("Add", ["x", "c"], ["y"])]
    model = _model(nodes, [_info("x", [1])], [_info("y", [100000, 100000, 100])], [shape])
    with pytest.raises(CococError, match=r"'c' of 1000000000000 elements from inputs of 3"):
        load_onnx(model)


def test_folding_a_weight_of_any_size_is_not_growth(monkeypatch):
    """A Transpose of a weight folds (same size as its input), whatever the limit."""
    monkeypatch.setattr(context, "MAX_FOLD_ELEMENTS", 10)
    w = np.arange(6 * 4, dtype=np.float32).reshape(6, 4)
    nodes = [helper.make_node("Transpose", ["w"], ["wt"], perm=[1, 0]),
             helper.make_node("MatMul", ["x", "wt"], ["y"])]
    model = _model(nodes, [_info("x", [1, 4])], [_info("y", [1, 6])], [numpy_helper.from_array(w, "w")])
    _matches_onnxruntime(model, {"x": np.ones((1, 4), np.float32)})


def test_memory_guard_still_protects():
    """--max-memory (COCOC_MAX_MEMORY) refuses the weights of a file, and a fold under the growth
    limit but over the memory limit, before allocating them."""
    with limited_memory("64K"):
        with pytest.raises(CococError, match=r"its weights would need 78.1 KiB; the limit is 64.0 KiB"):
            load_onnx(_gemm(100, 200)[0])
        shape = numpy_helper.from_array(np.array([200, 200], np.int64), "s")
        nodes = [helper.make_node("ConstantOfShape", ["s"], ["c"]), helper.make_node("Add", ["x", "c"], ["y"])]
        model = _model(nodes, [_info("x", [1, 200])], [_info("y", [200, 200])], [shape])
        with pytest.raises(CococError, match=r"constant folding of 'c' would need 156.2 KiB"):
            load_onnx(model)


def _conv_ir3(listed: bool):
    rng = np.random.default_rng(2)
    w = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3), dtype=np.float32), "W")
    b = numpy_helper.from_array(rng.standard_normal(4, dtype=np.float32), "B")
    ins = [_info("x", [1, 3, 8, 8])] + ([_info("W", [4, 3, 3, 3]), _info("B", [4])] if listed else [])
    node = helper.make_node("Conv", ["x", "W", "B"], ["y"], kernel_shape=[3, 3])
    return _model([node], ins, [_info("y", [1, 4, 6, 6])], [w, b], opset=9, ir_version=3)


def test_ir3_initializers_not_in_the_graph_inputs_import_with_a_warning():
    model = _conv_ir3(listed=False)
    with pytest.raises(onnx.checker.ValidationError, match="not in graph input"):
        onnx.checker.check_model(model)  # what used to refuse it
    x = np.random.default_rng(3).standard_normal((1, 3, 8, 8), dtype=np.float32)
    with pytest.warns(UserWarning, match=r"IR version 3 lists every initializer as a graph input, but 'W', "
                                         r"'B' are not; imported as weights, as onnxruntime does"):
        graph = _matches_onnxruntime(model, {"x": x})  # onnxruntime runs it too
    assert [v.name for v in graph.inputs] == ["x"]
    assert len(model.graph.input) == 1  # the caller's model is left as it was


def test_ir3_initializers_listed_as_graph_inputs_import_silently():
    x = np.ones((1, 3, 8, 8), np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        graph = _matches_onnxruntime(_conv_ir3(listed=True), {"x": x})
    assert [v.name for v in graph.inputs] == ["x"]


def test_cli_prints_the_ir3_warning_in_one_line(tmp_path):
    onnx.save(_conv_ir3(listed=False), tmp_path / "old.onnx")
    r = subprocess.run([sys.executable, "-m", "cococ", "show", "old.onnx"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stderr.splitlines() == [
        "cococ show: warning: old.onnx: ONNX IR version 3 lists every initializer as a graph input, but "
        "'W', 'B' are not; imported as weights, as onnxruntime does"]


class KWS(torch.nn.Module):
    """The DS-CNN's first two blocks: TF's 'same' padding written as torch ZeroPad2d (asymmetric
    for the 10x4 stride-2 conv), a depthwise conv after a symmetric pad, average pool, linear."""

    def __init__(self):
        super().__init__()
        nn = torch.nn
        self.pad0, self.conv0, self.bn0 = nn.ZeroPad2d((1, 2, 4, 5)), nn.Conv2d(1, 8, (10, 4), stride=2), nn.BatchNorm2d(8)
        self.pad1, self.dw, self.pw = nn.ZeroPad2d(1), nn.Conv2d(8, 8, 3, groups=8), nn.Conv2d(8, 8, 1)
        self.pool, self.fc = nn.AvgPool2d((25, 5)), nn.Linear(8, 12)

    def forward(self, x):
        x = torch.relu(self.bn0(self.conv0(self.pad0(x))))
        x = torch.relu(self.pw(torch.relu(self.dw(self.pad1(x)))))
        return self.fc(torch.flatten(self.pool(x), 1))


def test_kws_zero_pad_opset13_folds_into_the_convs():
    torch.manual_seed(0)
    x = torch.randn(1, 1, 49, 10)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notices
        torch.onnx.export(KWS().eval(), (x,), buf, dynamo=False, opset_version=13)
    model = onnx.load_from_string(buf.getvalue())
    ops = {n.op_type for n in model.graph.node}
    assert {"Pad", "ConstantOfShape", "Slice", "Concat", "Cast"} <= ops  # the pads are a constant subgraph
    graph = _matches_onnxruntime(model, {model.graph.input[0].name: x.numpy()})
    convs = [layer for layer in graph.layers if layer.op == "conv2d"]
    assert [c.attrs["pad"] for c in convs] == [[4, 1, 5, 2], [1, 1, 1, 1], [0, 0, 0, 0]]  # [top, left, bottom, right]
    assert [layer.op for layer in graph.layers] == ["input", "conv2d", "relu", "conv2d", "relu", "conv2d", "relu",
                                                    "avg_pool", "flatten", "dense"]


def test_an_op_without_converter_folds_over_constants():
    """Range has no converter: over constants onnx.reference evaluates it."""
    inits = [numpy_helper.from_array(np.array(v, np.float32), n) for n, v in (("a", 0.0), ("l", 4.0), ("d", 1.0))]
    nodes = [helper.make_node("Range", ["a", "l", "d"], ["r"]), helper.make_node("Add", ["x", "r"], ["y"])]
    model = _model(nodes, [_info("x", [1, 4])], [_info("y", [1, 4])], inits)
    _matches_onnxruntime(model, {"x": np.ones((1, 4), np.float32)})


def test_an_op_without_converter_over_an_activation_is_still_named():
    nodes = [helper.make_node("Range", ["x", "x", "x"], ["y"])]
    model = _model(nodes, [_info("x", [])], [_info("y", [1])], [])
    with pytest.raises(CococError, match=r"\(Range\): op type not supported"):
        load_onnx(model)
