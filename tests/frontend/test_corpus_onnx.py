"""Issue 3's end-to-end check: every corpus net, random weights, prototxt -> IR -> ONNX ->
onnxruntime gives the reference interpreter's outputs (max abs diff <= 1e-4 of the output scale).

Batch 1 (deploy files declare 10); the big nets (VGG-16, AlexNet, ResNet-101, Inception) run in
the `slow` tier: the numpy interpreter takes tens of seconds on them.
"""
import numpy as np
import pytest

from cococ.backends.onnx_export import to_onnx
from cococ.frontend.prototxt import load_prototxt
from cococ.frontend.weights import init_weights
from cococ.ir.interpreter import run

FAST = [
    "bvlc_caffe/examples/mnist/lenet.prototxt",
    "bvlc_caffe/examples/cifar10/cifar10_quick.prototxt",
    "bvlc_caffe_v1_legacy/rc/examples/mnist/lenet_train_test.prototxt",
    "SqueezeNet/SqueezeNet_v1.1/deploy.prototxt",
    "MobileNet-Caffe/mobilenet_deploy.prototxt",
    "MobileNet-Caffe/mobilenet_v2_deploy.prototxt",
    "bvlc_caffe/models/bvlc_googlenet/deploy.prototxt",
    "deep-residual-networks/prototxt/ResNet-50-deploy.prototxt",
]
SLOW = [
    "bvlc_caffe/models/bvlc_alexnet/deploy.prototxt",
    "bvlc_caffe/models/bvlc_reference_caffenet/deploy.prototxt",
    "bvlc_caffe_v1_legacy/rc/models/bvlc_reference_caffenet/deploy.prototxt",
    "soeaver-caffe-model/cls/vgg/deploy_vgg16-tf.prototxt",
    "deep-residual-networks/prototxt/ResNet-101-deploy.prototxt",
    "soeaver-caffe-model/cls/inception/deploy_inception-v3.prototxt",
    "InceptionBN-21K-for-Caffe/deploy.prototxt",
]


def _batch1(path):
    g = load_prototxt(path)
    shapes = {v.name: [1, *v.type.shape[1:]] for v in g.inputs}
    if "lenet_train_test" in str(path):
        shapes = {v.name: [1, 1, 28, 28] for v in g.inputs}
    return load_prototxt(path, input_shapes=shapes)


def _check(path):
    g = _batch1(path)
    init_weights(g, "random", seed=0)
    rng = np.random.default_rng(0)
    feeds = {v.name: rng.standard_normal(v.type.shape).astype(np.float32) for v in g.inputs}
    ref = run(g, feeds)
    import onnxruntime as ort
    sess = ort.InferenceSession(to_onnx(g).SerializeToString(), providers=["CPUExecutionProvider"])
    outs = sess.run(None, feeds)
    assert len(outs) == len(ref)
    for (name, want), got in zip(ref.items(), outs):
        scale = max(1.0, float(np.abs(want).max()))
        err = float(np.abs(got - want).max())
        assert err <= 1e-4 * scale, f"{path} output {name}: max abs diff {err:.3g} (scale {scale:.3g})"


@pytest.mark.parametrize("rel", FAST)
def test_corpus_net_matches_onnxruntime(corpus, rel):
    _check(corpus / rel)


@pytest.mark.slow
@pytest.mark.parametrize("rel", SLOW)
def test_big_corpus_net_matches_onnxruntime(corpus, rel):
    _check(corpus / rel)
