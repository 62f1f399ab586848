"""hardsigmoid and hardswish (ir/ops/hard_activation.py) through every way in and out of cococ.

numpy semantics against torch; the TVM x86 build and the M4 float build (emulated) against the
reference interpreter; ONNX export run by onnxruntime and imported back; ONNX import of a torch
export and of the ONNX package's own node cases; no Caffe layer (the writer names the layer);
and a q15/int8 M4 build runs them on integers (backends/mcu/i8ops.py), with no float step.
"""
from __future__ import annotations

import io
import shutil
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx.backend.test.case.node import collect_testcases

from cococ.backends.build import build
from cococ.backends.mcu.lower import lower
from cococ.backends.onnx_export import to_onnx
from cococ.frontend.onnx import load_onnx
from cococ.frontend.prototxt.writer import to_prototxt
from cococ.ir.builder import GraphBuilder
from cococ.ir.core import CococError
from cococ.ir.interpreter import run
from cococ.ir.verify import infer_shapes
from cococ.passes import run as run_passes
from cococ.runtime.torch.module import to_torch

needs_gcc = pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="arm-none-eabi-gcc not installed")
RNG = np.random.default_rng(0)
# both ops' corners (-3, 0, 3) and both sides of them, in one (1, 4, 3, 3) tensor
X = np.concatenate([np.array([-5, -3, -1.5, 0, 1.5, 3, 5], np.float32),
                    RNG.uniform(-6, 6, 29).astype(np.float32)]).reshape(1, 4, 3, 3)


def net(conv: bool = False):
    """input (1, 4, 3, 3) [-> conv2d 3x3] -> hardswish -> hardsigmoid (ONNX's alpha) -> hardsigmoid (default)."""
    b = GraphBuilder("hard")
    x = b.input("x", X.shape)
    if conv:
        x = b("conv2d", "conv", x, {"out_channels": 4, "kernel": [3, 3], "pad": [1, 1, 1, 1]},
              {"weight": np.random.default_rng(1).standard_normal((4, 4, 3, 3)).astype(np.float32) * 0.5})
    y = b("hardswish", "hs", x)
    y = b("hardsigmoid", "hsig", y, {"alpha": 0.2, "beta": 0.5})
    return infer_shapes(b.graph(b("hardsigmoid", "hsig6", y)))


def close(got, want, tol=1e-5):
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


def test_compute_matches_torch():
    g = net()
    ref = run(g, [X], taps=["hs", "hsig"])
    t = torch.from_numpy(X)
    hs = torch.nn.functional.hardswish(t)
    close(ref["hs"], hs.numpy())
    close(ref["hsig"], torch.clamp(0.2 * hs + 0.5, 0, 1).numpy())
    close(ref["hsig6"], torch.nn.functional.hardsigmoid(torch.from_numpy(ref["hsig"])).numpy())
    close(to_torch(g)(t).detach().numpy(), ref["hsig6"])  # the torch rules


def test_x86_build_matches_interpreter():
    g = net(conv=True)  # hardswish fuses into the conv's kernel as its epilogue (`Op.epilogue`)
    close(build(g, "x86").run({"x": X})["hsig6"], run(g, [X])["hsig6"])


@needs_gcc
def test_m4_float_build_matches_interpreter(tmp_path):
    g = net()
    art = build(g, "arm-m4", out_dir=tmp_path, sample_input=X)
    close(art.run(X)["hsig6"], run(g, [X])["hsig6"], tol=1e-6)
    assert [s["op"] for s in art.report["steps"]] == ["hardswish", "hardsigmoid", "hardsigmoid"]
    assert not art.report["warnings"]


@pytest.mark.parametrize("quant", ["q15", "int8"])
def test_fixed_point_m4_build_runs_them_on_integers(quant):
    """hardswish and hardsigmoid have integer kernels (backends/mcu/i8ops.py): no float step, no warning."""
    g = run_passes(net(conv=True), f"quantize{{dtype={quant}}}")
    prog = lower(g, quant)
    dtype = {"q15": "int16", "int8": "int8"}[quant]
    assert [(s.op, s.args[0].dtype) for s in prog.steps][-4:] == [
        ("hardswish", dtype), ("hardsigmoid", dtype), ("hardsigmoid", dtype), ("dequantize", dtype)]
    assert prog.warnings == []


@needs_gcc
def test_q15_build_matches(tmp_path):
    g = net(conv=True)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        art = build(g, "arm-m4", out_dir=tmp_path, quantize="q15", sample_input=X, calibration=X)
    assert art.report["warnings"] == [] and not [x for x in w if "float32" in str(x.message)]
    ref = run(art.load_graph(), [X])["hsig6"]
    assert np.max(np.abs(art.run(X)["hsig6"] - ref)) <= 0.01 * np.max(np.abs(ref))


def test_onnx_export_runs_in_onnxruntime_and_imports_back():
    g = net()
    m = to_onnx(g)
    onnx.checker.check_model(m, full_check=True)
    assert [n.op_type for n in m.graph.node] == ["HardSwish", "HardSigmoid", "HardSigmoid"]
    got = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": X})[0]
    close(got, run(g, [X])["hsig6"])
    back = load_onnx(m)
    assert [(l.op, l.attrs) for l in back.layers[1:]] == [
        ("hardswish", {}), ("hardsigmoid", {"alpha": pytest.approx(0.2), "beta": 0.5}),
        ("hardsigmoid", {"alpha": pytest.approx(1 / 6), "beta": 0.5})]


def test_onnx_import_of_a_torch_export():
    m = torch.nn.Sequential(torch.nn.Conv2d(4, 4, 3, padding=1), torch.nn.Hardswish(), torch.nn.Hardsigmoid()).eval()
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter (no onnxscript needed)
        torch.onnx.export(m, (torch.from_numpy(X),), f, opset_version=17, dynamo=False,
                          input_names=["x"], output_names=["y"])
    model = onnx.load_from_string(f.getvalue())
    g = load_onnx(model)
    assert [l.op for l in g.layers[1:]] == ["conv2d", "hardswish", "hardsigmoid"]
    want = ort.InferenceSession(f.getvalue(), providers=["CPUExecutionProvider"]).run(None, {"x": X})[0]
    close(run(g, [X])["y"], want)
    with torch.no_grad():
        close(run(g, [X])["y"], m(torch.from_numpy(X)).numpy())


def node_cases(*op_types: str) -> list:
    with warnings.catch_warnings():  # collecting imports every generator; some warn as they compute
        warnings.simplefilter("ignore")
        return [c for t in op_types for c in collect_testcases(t) if "expanded" not in c.name]


@pytest.mark.parametrize("case", node_cases("HardSigmoid", "HardSwish"), ids=lambda c: c.name)
def test_onnx_node_cases(case):
    """The ONNX package's own node tests of HardSigmoid and HardSwish (from its generators: the
    wheel ships no node test data), imported and run by the reference interpreter. (Their
    `_expanded` forms spell the op out in Mul/Add/Max/Min of full-tensor constants, which the
    per-channel IR does not import.)"""
    g = load_onnx(case.model)
    for ins, outs in case.data_sets:
        close(run(g, list(ins))[g.outputs[0].name], outs[0])


def test_caffe_writer_names_the_layer():
    with pytest.raises(CococError, match=r"hs.*op 'hardswish' has no Caffe layer"):
        to_prototxt(net())
