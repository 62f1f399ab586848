"""Module identification and filter pruning on real corpus nets and on hand-built graphs."""
import numpy as np
import pytest

import cococ
from cococ.ir.interpreter import run
from cococ.ir.verify import verify
from cococ.passes.identify_modules import find_modules
from cococ.passes.prune_filters import keep_count, prunable_convs

@pytest.fixture
def load(corpus):
    """cococ.load of a corpus net, named by its path in the corpus."""
    return lambda rel, **kw: cococ.load(corpus / rel, **kw)


def test_resnet50_has_16_residual_blocks(load):
    g = load("deep-residual-networks/prototxt/ResNet-50-deploy.prototxt")
    g = cococ.passes.run(g, "identify-modules")
    assert len(g.modules) == 16
    assert g.modules[0] == "res2a" and g.modules[-1] == "res5c"
    verify(g)


def test_googlenet_has_9_inception_modules(load):
    g = load("bvlc_caffe/models/bvlc_googlenet/deploy.prototxt")
    g = cococ.passes.run(g, "identify-modules")
    assert len(g.modules) == 9
    assert all(m.startswith("inception_") for m in g.modules)


@pytest.mark.parametrize("rel", ["bvlc_caffe/examples/mnist/lenet.prototxt",
                                 "bvlc_caffe/models/bvlc_alexnet/deploy.prototxt",
                                 "soeaver-caffe-model/cls/vgg/deploy_vgg16-tf.prototxt"])
def test_chains_have_no_modules(load, rel):
    assert find_modules(load(rel)) == []


def test_resnet50_bottleneck_rule_first_two_pruned_last_kept(load):
    g = cococ.passes.run(load("deep-residual-networks/prototxt/ResNet-50-deploy.prototxt"), "identify-modules")
    names = sorted(l.name for l in prunable_convs(g, "res2a"))
    assert names == ["res2a_branch2a", "res2a_branch2b"]


def test_googlenet_inception_inner_convs_pruned_branch_last_kept(load):
    g = cococ.passes.run(load("bvlc_caffe/models/bvlc_googlenet/deploy.prototxt"), "identify-modules")
    names = sorted(l.name for l in prunable_convs(g, "inception_3a/output"))
    assert names == ["inception_3a/3x3_reduce", "inception_3a/5x5_reduce"]


def _bottleneck_params(cin, mid, cout, r, proj):
    k = keep_count(mid, r)
    # conv(1x1) + bn(mean,var) + scale(scale,bias) per conv, weights with bias_term false
    p = cin * k + 4 * k + k * k * 9 + 4 * k + k * cout + 4 * cout
    if proj:
        p += cin * cout + 4 * cout
    return p


@pytest.mark.parametrize("seed", [0, 1])
def test_resnet50_random_config_param_count_is_predicted(load, seed):
    g = cococ.passes.run(load("deep-residual-networks/prototxt/ResNet-50-deploy.prototxt", init="random", seed=seed),
                         "identify-modules")
    rng = np.random.default_rng(seed)
    rates = [float(r) for r in rng.choice([0.0, 0.3, 0.5, 0.7], size=16)]
    full = sum(p.type.size for l in g.layers for p in l.params.values())
    pruned = cococ.passes.run(g.clone(), "prune-filters{rates=[%s]}" % ",".join(map(str, rates)))
    verify(pruned)
    got = sum(p.type.size for l in pruned.layers for p in l.params.values())
    # predicted: full count minus, per block, what the two inner convs (and their BN/scale) lose
    stages = [(64, 256, 3), (128, 512, 4), (256, 1024, 6), (512, 2048, 3)]
    want, i, cin = full, 0, 64
    for mid, cout, n in stages:
        for b in range(n):
            want -= _bottleneck_params(cin, mid, cout, 0.0, b == 0) - _bottleneck_params(cin, mid, cout, rates[i], b == 0)
            cin, i = cout, i + 1
    assert got == want


def _residual_graph():
    from cococ.ir.core import Graph, Layer, Param, Value
    rng = np.random.default_rng(0)
    x = Value("x")
    vals = {}

    def L(op, name, ins, attrs=None, params=None, module=None, n_out=1):
        outs = [Value(name if n_out == 1 else f"{name}_{i}") for i in range(n_out)]
        layer = Layer(op, name, ins, outs, attrs or {}, {k: Param.from_array(v.astype(np.float32)) for k, v in (params or {}).items()}, module)
        vals[name] = outs
        return layer

    layers = [L("input", "x", [], {"shape": [1, 8, 6, 6]})]
    layers[0].outputs[0].name = "x"
    x = layers[0].outputs[0]
    c = lambda o, i, k: rng.standard_normal((o, i, k, k))  # noqa: E731
    layers += [
        L("conv2d", "a", [x], {"out_channels": 12, "kernel": [3, 3], "pad": [1, 1, 1, 1]}, {"weight": c(12, 8, 3), "bias": rng.standard_normal(12)}, "m"),
        L("batchnorm", "a_bn", [vals["a"][0]], {"eps": 1e-5}, {"mean": rng.standard_normal(12), "var": rng.random(12) + 0.5}, "m"),
        L("relu", "a_relu", [vals["a_bn"][0]], {}, {}, "m"),
        L("conv2d", "dw", [vals["a_relu"][0]], {"out_channels": 12, "kernel": [3, 3], "pad": [1, 1, 1, 1], "groups": 12}, {"weight": c(12, 1, 3)}, "m"),
        L("slice", "sl", [vals["dw"][0]], {"axis": 1, "points": [5]}, {}, "m", n_out=2),
        L("conv2d", "b1", [vals["sl"][0]], {"out_channels": 4, "kernel": [1, 1]}, {"weight": c(4, 5, 1)}, "m"),
        L("conv2d", "b2", [vals["sl"][1]], {"out_channels": 4, "kernel": [1, 1]}, {"weight": c(4, 7, 1)}, "m"),
        L("concat", "cat", [vals["b1"][0], vals["b2"][0]], {"axis": 1}, {}, "m"),
        L("conv2d", "proj", [vals["cat"][0]], {"out_channels": 8, "kernel": [1, 1]}, {"weight": c(8, 8, 1)}, "m"),
        L("eltwise", "add", [vals["proj"][0], x], {"mode": "sum"}, {}, "m"),
        L("flatten", "flat", [vals["add"][0]], {"axis": 1}),
        L("dense", "fc", [vals["flat"][0]], {"out_features": 3}, {"weight": rng.standard_normal((3, 288))}),
    ]
    g = Graph("res", layers, [vals["fc"][0]], ["m"])
    from cococ.ir.verify import infer_shapes
    infer_shapes(g)
    return g


def test_pruning_through_depthwise_slice_and_concat_matches_masked_reference():
    """Removing filters of `a` equals zeroing them: the removal travels through BN, ReLU, a
    depthwise conv and a channel slice into two convs, exactly."""
    from cococ.ir.channels import remove_channels
    g = _residual_graph()
    assert [l.name for l in prunable_convs(g, "m")] == ["a", "b1", "b2"]
    x = np.random.default_rng(1).standard_normal((1, 8, 6, 6)).astype(np.float32)
    keep = np.array([0, 2, 3, 6, 8, 11])
    drop = np.setdiff1d(np.arange(12), keep)
    masked = g.clone()
    masked.layer("a").params["weight"].data[drop] = 0
    masked.layer("a").params["bias"].data[drop] = 0
    masked.layer("a_bn").params["mean"].data[drop] = 0   # dropped channels stay exactly 0 after BN and ReLU
    pruned = g.clone()
    remove_channels(pruned, pruned.layer("a"), keep)
    verify(pruned)
    assert pruned.layer("a").attrs["out_channels"] == 6 and pruned.layer("dw").attrs["groups"] == 6
    assert pruned.layer("sl").attrs["points"] == [3]          # channels 0, 2, 3 were below the old point 5
    assert pruned.layer("b1").params["weight"].shape == (4, 3, 1, 1)
    assert pruned.layer("b2").params["weight"].shape == (4, 3, 1, 1)
    np.testing.assert_allclose(run(pruned, {"x": x})["fc"], run(masked, {"x": x})["fc"], rtol=1e-5, atol=1e-5)


def test_prune_filters_pass_on_the_module():
    pruned = cococ.passes.run(_residual_graph(), "prune-filters{rates=[0.5],criterion=l1}")
    verify(pruned)
    assert pruned.layer("a").attrs["out_channels"] == 6
    # b1/b2 feed the concat that feeds `proj` inside the module: pruned too; proj (feeds the add) kept
    assert pruned.layer("b1").attrs["out_channels"] == 2 and pruned.layer("proj").attrs["out_channels"] == 8
    assert run(pruned, {"x": np.zeros((1, 8, 6, 6), np.float32)})["fc"].shape == (1, 3)


def test_round_to_keeps_multiples():
    assert keep_count(64, 0.3, 4) % 4 == 0 and keep_count(64, 0.3, 4) >= 64 - 19
    assert keep_count(10, 0.99, 1) == 1


@pytest.mark.slow
def test_pruned_resnet50_torch_equals_interpreter(load):
    import torch
    from cococ.runtime.torch.module import to_torch
    g = cococ.passes.run(load("deep-residual-networks/prototxt/ResNet-50-deploy.prototxt", init="random", seed=3),
                         "identify-modules")
    rates = [float(r) for r in np.random.default_rng(3).choice([0.3, 0.5, 0.7], size=16)]
    pruned = cococ.passes.run(g, "prune-filters{rates=[%s]}" % ",".join(map(str, rates)))
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    want = run(pruned, {"data": x})["prob"]
    with torch.no_grad():
        got = to_torch(pruned)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
