"""Caffe prototxt -> IR: the corpus nets, legacy syntaxes, phases, modules, layer types, errors."""
import numpy as np
import pytest

from cococ.frontend.prototxt import load_prototxt, load_prototxt_text
from cococ.frontend.weights import init_weights
from cococ.ir.core import CococError
from cococ.ir.verify import verify


def nparams(g) -> int:
    return sum(p.type.size for l in g.layers for p in l.params.values())


def test_corpus_net_imports_and_verifies(corpus_net):
    g = load_prototxt(corpus_net)
    verify(g)
    assert g.outputs and g.inputs
    names = [v.name for v in g.values()]
    assert len(names) == len(set(names))  # SSA even with in-place layers
    assert all(l.loc is not None for l in g.layers)


# Known counts (trainable weights); Caffe's BatchNorm also stores mean/var, hence the tolerance.
@pytest.mark.parametrize("rel,millions,tol", [
    ("deep-residual-networks/prototxt/ResNet-50-deploy.prototxt", 25.6, 0.01),
    ("bvlc_caffe/models/bvlc_alexnet/deploy.prototxt", 61.0, 0.01),
    ("soeaver-caffe-model/cls/vgg/deploy_vgg16-tf.prototxt", 138.0, 0.01),
    ("SqueezeNet/SqueezeNet_v1.1/deploy.prototxt", 1.235, 0.01),
    ("MobileNet-Caffe/mobilenet_deploy.prototxt", 4.2, 0.02),
    ("bvlc_caffe/models/bvlc_googlenet/deploy.prototxt", 7.0, 0.01),
])
def test_param_counts(corpus, rel, millions, tol):
    n = nparams(load_prototxt(corpus / rel))
    assert abs(n / 1e6 - millions) <= tol * millions, n


def test_v1_and_v0_match_current_syntax(corpus):
    v2 = load_prototxt(corpus / "bvlc_caffe/models/bvlc_reference_caffenet/deploy.prototxt")
    v1 = load_prototxt(corpus / "bvlc_caffe_v1_legacy/rc/models/bvlc_reference_caffenet/deploy.prototxt")
    assert [(l.op, l.name, l.attrs) for l in v1.layers] == [(l.op, l.name, l.attrs) for l in v2.layers]
    assert nparams(v1) == nparams(v2) == 60965224
    v0 = load_prototxt(corpus / "bvlc_caffe_v0_legacy/rcnn-release/examples/lenet/lenet.prototxt")
    lenet = load_prototxt(corpus / "bvlc_caffe/examples/mnist/lenet.prototxt")
    assert [l.op for l in v0.layers] == [l.op for l in lenet.layers] and nparams(v0) == nparams(lenet) == 431080
    assert v0.layer("conv1").meta["caffe_param"] == [{"lr_mult": 1.0}, {"lr_mult": 2.0}]


def test_phase_filtering_data_layers_and_training_layers(corpus):
    path = corpus / "bvlc_caffe/examples/mnist/lenet_train_test.prototxt"
    test = load_prototxt(path, input_shapes={"data": [100, 1, 28, 28]})
    train = load_prototxt(path, phase="TRAIN", input_shapes={"data": [64, 1, 28, 28]})
    assert [v.type.shape for v in test.inputs] == [(100, 1, 28, 28)]
    assert [v.type.shape for v in train.inputs] == [(64, 1, 28, 28)]
    assert nparams(test) == 431080
    assert [r["type"] for r in test.meta["caffe_training_layers"]] == ["Accuracy", "SoftmaxWithLoss"]
    assert [r["type"] for r in train.meta["caffe_training_layers"]] == ["SoftmaxWithLoss"]
    assert [v.name for v in test.outputs] == ["ip2"]
    guessed = load_prototxt(path)  # no shape in a Data layer: batch from batch_size, 3x224x224 guessed
    assert guessed.inputs[0].type.shape == (100, 3, 224, 224)
    assert guessed.layers[0].meta["caffe_shape_guessed"]
    alex = load_prototxt(corpus / "bvlc_caffe/models/bvlc_alexnet/train_val.prototxt")
    assert alex.inputs[0].type.shape == (50, 3, 227, 227)  # crop_size
    assert nparams(alex) == nparams(load_prototxt(corpus / "bvlc_caffe/models/bvlc_alexnet/deploy.prototxt"))


def test_label_used_by_kept_layer_is_an_error():
    text = """layer { name: "d" type: "Data" top: "data" top: "label" data_param { batch_size: 2 } }
layer { name: "c" type: "Concat" bottom: "data" bottom: "label" top: "x" }"""
    with pytest.raises(CococError, match=r"t.prototxt:2:1: layer 'c': bottom blob 'label' is not available: "
                                         r"it is the label top"):
        load_prototxt_text(text, path="t.prototxt")


NET = """name: "m"
input: "data"
input_shape { dim: 2 dim: 3 dim: 8 dim: 8 }
layer { name: "stem" type: "Convolution" bottom: "data" top: "stem"
        convolution_param { num_output: 4 kernel_size: 3 pad: 1 } }
module {
  name: "block1"
  layer { name: "b1c1" type: "Convolution" bottom: "stem" top: "b1c1"
          convolution_param { num_output: 4 kernel_h: 1 kernel_w: 3 pad_h: 0 pad_w: 1 bias_term: false } }
  layer { name: "b1bn" type: "BatchNorm" bottom: "b1c1" top: "b1c1" }
  layer { name: "b1sc" type: "Scale" bottom: "b1c1" top: "b1c1" scale_param { bias_term: true } }
  layer { name: "b1add" type: "Eltwise" bottom: "stem" bottom: "b1c1" top: "b1" eltwise_param { coeff: 1 coeff: -1 } }
}
layer { name: "r" type: "ReLU" bottom: "b1" top: "b1" relu_param { negative_slope: 0.1 } module: "block2" }
layer { name: "p" type: "PReLU" bottom: "b1" top: "pr" module: "block2" }
layer { name: "sp" type: "Split" bottom: "pr" top: "s1" top: "s2" }
layer { name: "sl" type: "Slice" bottom: "s1" top: "a" top: "b" slice_param { slice_point: 1 } }
layer { name: "cat" type: "Concat" bottom: "b" bottom: "a" bottom: "s2" top: "cat" }
layer { name: "pool" type: "Pooling" bottom: "cat" top: "pool" pooling_param { pool: AVE kernel_size: 3 stride: 2 } }
layer { name: "lrn" type: "LRN" bottom: "pool" top: "lrn" lrn_param { local_size: 3 alpha: 0.0001 beta: 0.75 } }
layer { name: "pw" type: "Power" bottom: "lrn" top: "pw" power_param { power: 2 shift: 1 } }
layer { name: "gp" type: "Pooling" bottom: "pw" top: "gp" pooling_param { pool: MAX global_pooling: true } }
layer { name: "fc" type: "InnerProduct" bottom: "pool" top: "fc" inner_product_param { num_output: 5 } }
layer { name: "sig" type: "Sigmoid" bottom: "fc" top: "sig" }
layer { name: "th" type: "TanH" bottom: "sig" top: "th" }
layer { name: "six" type: "ReLU6" bottom: "th" top: "six" }
layer { name: "clip" type: "Clip" bottom: "six" top: "clip" clip_param { min: -1 max: 1 } }
layer { name: "bias" type: "Bias" bottom: "clip" top: "bias" }
layer { name: "rs" type: "Reshape" bottom: "bias" top: "rs" reshape_param { shape { dim: 0 dim: -1 dim: 1 } } }
layer { name: "fl" type: "Flatten" bottom: "rs" top: "fl" }
layer { name: "drop" type: "Dropout" bottom: "fl" top: "fl" dropout_param { dropout_ratio: 0.3 } }
layer { name: "prob" type: "Softmax" bottom: "fl" top: "prob" }
"""


def test_layer_types_modules_and_in_place():
    g = load_prototxt_text(NET, path="m.prototxt")
    verify(g)
    assert g.modules == ["block1", "block2"]
    assert [l.name for l in g.module_layers("block1")] == ["b1c1", "b1bn", "b1sc", "b1add"]
    assert [l.name for l in g.module_layers("block2")] == ["r", "p"]
    ops = {l.name: l for l in g.layers}
    assert ops["b1c1"].attrs["kernel"] == [1, 3] and ops["b1c1"].attrs["pad"] == [0, 1, 0, 1]
    assert set(ops["b1c1"].params) == {"weight"} and set(ops["b1sc"].params) == {"scale", "bias"}
    assert ops["b1add"].attrs == {"mode": "sum", "coeffs": [1.0, -1.0]}
    assert ops["b1bn"].inputs[0] is ops["b1c1"].outputs[0]  # in place -> fresh SSA values
    assert ops["b1sc"].inputs[0] is ops["b1bn"].outputs[0]
    assert ops["r"].op == "leaky_relu" and ops["r"].attrs["alpha"] == 0.1
    assert "sp" not in ops and ops["sl"].inputs[0] is ops["p"].outputs[0]  # Split only aliases
    assert ops["sl"].op == "slice" and ops["sl"].attrs["points"] == [1]
    assert ops["pool"].op == "avg_pool" and ops["pool"].attrs["ceil_mode"] is True
    assert ops["pool"].outputs[0].type.shape == (2, 8, 4, 4)  # 3 + 1 + 4 channels; ceil((8-3)/2)+1 = 4
    assert ops["gp"].op == "global_max_pool"
    assert ops["fc/flatten"].op == "flatten" and ops["fc"].inputs[0] is ops["fc/flatten"].outputs[0]
    assert ops["six"].attrs == {"min": 0.0, "max": 6.0} and ops["lrn"].attrs["region"] == "across"
    assert ops["rs"].outputs[0].type.shape == (2, 5, 1)
    assert {v.name for v in g.outputs} == {"gp", "prob"}
    assert ops["b1c1"].loc == (8, 3) and ops["b1c1"].module == "block1"
    init_weights(g, "random", seed=1)
    from cococ.ir.interpreter import run
    out = run(g, {"data": np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)})
    np.testing.assert_allclose(out["prob"].sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("text,match", [
    ('layer { name: "x" type: "Warp" }', r"t.prototxt:1:1: layer 'x': unsupported Caffe layer type 'Warp'"),
    ('input: "d" input_dim: 1 input_dim: 3 input_dim: 8 input_dim: 8\n'
     'layer { name: "up" type: "Deconvolution" bottom: "d" top: "u" }',
     r"2:1: layer 'up': Deconvolution .* not supported"),
    ('input: "d" input_dim: 1 input_dim: 3 input_dim: 8 input_dim: 8\n'
     'layer { name: "c" type: "Convolution" bottom: "nope" top: "c" }', r"2:1: layer 'c': bottom blob 'nope'"),
    ('input: "d" input_dim: 1 input_dim: 3 input_dim: 8 input_dim: 8\nlayer { name: "c" type: "Convolution"\n'
     ' bottom: "d" top: "c" convolution_param { num_output: "four" kernel_size: 3 } }',
     r"t.prototxt:3:43: layer 'c': field 'num_output' must be a non-negative integer, got 'four'"),
    ('input: "d" input_dim: 1 input_dim: 3\n', r"1 input\(s\) need 4 input_dim values"),
    ('lyer { }', r"1:1: unknown field 'lyer' in a net"),
    ('input: "d" input_dim: 1 input_dim: 3 input_dim: 8 input_dim: 8\n'
     'layer { name: "a" type: "ReLU" bottom: "d" top: "a" module: "m" }\n'
     'layer { name: "b" type: "ReLU" bottom: "a" top: "b" }\n'
     'layer { name: "c" type: "ReLU" bottom: "b" top: "c" module: "m" }', r"4:1: layer 'c': module 'm' continues"),
    ('input: "d" input_dim: 1 input_dim: 3 input_dim: 8 input_dim: 8\n'
     'layer { name: "c" type: "Convolution" bottom: "d" top: "c" convolution_param { num_output: 2 kernel_size: 9 } }',
     r"layer 'c': kernel 9x9 does not fit"),
])
def test_errors_name_layer_and_line(text, match):
    with pytest.raises(CococError, match=match):
        load_prototxt_text(text, path="t.prototxt")


@pytest.mark.parametrize("rel,shape", [
    ("bvlc_caffe/examples/mnist/lenet.prototxt", (64, 10)),
    ("bvlc_caffe/examples/cifar10/cifar10_quick.prototxt", (1, 10)),
])
def test_reference_interpreter_runs_small_nets(corpus, rel, shape):
    from cococ.ir.interpreter import run
    g = init_weights(load_prototxt(corpus / rel), "random", seed=0)
    x = np.random.default_rng(0).standard_normal(g.inputs[0].type.shape).astype(np.float32)
    (y,) = run(g, [x]).values()
    assert y.shape == shape and np.isfinite(y).all()
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-5)
    assert g.layer("conv1").meta["caffe_param"][0]["lr_mult"] == 1.0
