"""CNNs exported by the current torch import, build for x86 and match onnxruntime (issue 17 item 4).

The architectures are torchvision's, with random weights (and random BatchNorm statistics, so
that no BatchNorm is an identity), exported by both of torch's exporters: the TorchScript one
(`dynamo=False`, opset 17) and `dynamo=True` (opset 18, through onnxscript). Inputs are small
(64x64; Inception v3 needs 75x75) to keep the builds short: the check is the graph, not the size.

Only SqueezeNet 1.1 runs in the fast tier (both exporters: 17 s of CPU time, imports included);
the rest are `slow` (CI runs them): each is an export (1-35 s, dynamo the slower) and an x86
build (10-40 s). The whole file: 4.3 minutes of CPU time (14.5 minutes of wall time on 2
cores shared at a load average of 10); DenseNet-121 is the longest (70-90 s each under that load).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

import cococ
from cococ.frontend.onnx.loader import load_onnx

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the benchmarks/ scripts
from benchmarks.torchvision_nets import export, models, random_model  # noqa: E402

tv = models()

# name: (constructor, input size)
MODELS = {
    "squeezenet1_1": (tv.squeezenet1_1, 64),
    "resnet18": (tv.resnet18, 64),
    "resnet50": (tv.resnet50, 64),
    "mobilenet_v2": (tv.mobilenet_v2, 64),
    "mobilenet_v3_small": (tv.mobilenet_v3_small, 64),
    "shufflenet_v2_x1_0": (tv.shufflenet_v2_x1_0, 64),
    "densenet121": (tv.densenet121, 64),
    "efficientnet_b0": (tv.efficientnet_b0, 64),
    "regnet_y_400mf": (tv.regnet_y_400mf, 64),
    "googlenet": (lambda: tv.googlenet(aux_logits=False, init_weights=False), 64),
    "inception_v3": (lambda: tv.inception_v3(aux_logits=False, init_weights=False), 75),
}
FAST = {"squeezenet1_1"}
EXPORTERS = ("torchscript", "dynamo")


def _cases():
    for name in MODELS:
        for exporter in EXPORTERS:
            marks = [] if name in FAST else [pytest.mark.slow]
            yield pytest.param(name, exporter, marks=marks, id=f"{name}-{exporter}")


def _model(name: str) -> tuple[torch.nn.Module, torch.Tensor]:
    make, size = MODELS[name]
    return random_model(make), torch.randn(1, 3, size, size)


@pytest.mark.parametrize("name, exporter", list(_cases()))
def test_torch_cnn_imports_builds_and_matches_onnxruntime(name, exporter):
    model, x = _model(name)
    proto = export(model, x, exporter)
    feeds = {proto.graph.input[0].name: x.numpy()}
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    want = sess.run(None, feeds)
    graph = load_onnx(proto)
    art = cococ.build(graph, "x86")
    got = art.run({graph.inputs[0].name: x.numpy()})
    assert len(got) == len(want)
    for (k, g), w in zip(got.items(), want):
        assert g.shape == w.shape, k
        err = float(np.abs(g - w).max())
        assert err <= 1e-4 * (1 + float(np.abs(w).max())), f"{name} ({exporter}) output {k}: max abs diff {err:.3g}"
