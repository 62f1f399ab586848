"""`cococ convert net.onnx -o net.prototxt`: the Caffe net computes what the ONNX model computes.

Caffe's BatchNorm has no affine part, so an ONNX BatchNormalization with gamma/beta is written as
BatchNorm + Scale (bias_term), and the side-car weights hold both (it used to be written as a bare
BatchNorm whose weights file still had scale/bias: `cococ build` refused the pair, and a Caffe net
without them would compute something else)."""
from __future__ import annotations

import io

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import cococ

torch = pytest.importorskip("torch")


def conv_bn_relu_onnx(path) -> None:
    """conv + BatchNorm2d (non-trivial gamma, beta, running stats) + relu, exported at opset 13
    with the BatchNormalization node kept (no constant folding into the conv)."""
    torch.manual_seed(0)
    bn = torch.nn.BatchNorm2d(4)
    with torch.no_grad():
        bn.weight.copy_(torch.randn(4) * 2)
        bn.bias.copy_(torch.randn(4))
        bn.running_mean.copy_(torch.randn(4))
        bn.running_var.copy_(torch.rand(4) + 0.5)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), bn, torch.nn.ReLU()).eval()
    buf = io.BytesIO()
    torch.onnx.export(model, (torch.randn(1, 3, 8, 8),), buf, opset_version=13, dynamo=False,
                      do_constant_folding=False, input_names=["x"], output_names=["y"],
                      training=torch.onnx.TrainingMode.PRESERVE)
    m = onnx.load_from_string(buf.getvalue())
    assert "BatchNormalization" in [n.op_type for n in m.graph.node]
    onnx.save(m, str(path))


def test_convert_onnx_batchnorm_to_prototxt_keeps_scale_and_shift(cli, tmp_path):
    torch.set_num_threads(1)
    conv_bn_relu_onnx(tmp_path / "m.onnx")
    rc, _, err = cli("convert", "m.onnx", "-o", "m.prototxt")
    assert rc == 0, err
    text = (tmp_path / "m.prototxt").read_text()
    assert 'type: "BatchNorm"' in text and 'type: "Scale"' in text and "bias_term: true" in text
    x = np.random.default_rng(0).standard_normal((1, 3, 8, 8)).astype(np.float32)
    ref = ort.InferenceSession(str(tmp_path / "m.onnx")).run(None, {"x": x})[0]
    from_onnx = cococ.load(tmp_path / "m.onnx")
    from_caffe = cococ.load(tmp_path / "m.prototxt", weights=tmp_path / "m.safetensors")
    assert [l.op for l in from_caffe.layers] == ["input", "conv2d", "batchnorm", "scale", "relu"]
    for g in (from_onnx, from_caffe):
        (y,) = cococ.build(g, "x86").run(x).values()
        np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)
