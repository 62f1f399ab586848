"""The trainer: Caffe's update rules and lr policies, determinism, snapshots and resume."""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from safetensors import safe_open

from cococ.ir.core import CococError, Graph, Layer, Param, TensorType, Value
from cococ.runtime.data import Dataset
from cococ.runtime.torch.module import to_torch
from cococ.runtime.torch.optim import CaffeOptimizer, caffe_mults, lr_at, policy_lr
from cococ.runtime.train import batch_indices, logits_value, save_weights, train

torch.set_num_threads(1)


def tiny_net(seed=0, dropout=True) -> Graph:
    """8x8 input -> conv 4 -> relu -> pool -> dense 16 -> (dropout) -> dense 3 -> softmax."""
    rng = np.random.default_rng(seed)
    vals = {}

    def v(name):
        vals[name] = Value(name)
        return vals[name]

    P = lambda *s: Param.from_array((rng.standard_normal(s) * 0.3).astype(np.float32))  # noqa: E731
    layers = [Layer("input", "data", [], [Value("data", TensorType((1, 1, 8, 8)))], {"shape": [1, 1, 8, 8]})]
    x = layers[0].outputs[0]
    layers.append(Layer("conv2d", "conv1", [x], [v("conv1")], dict(out_channels=4, kernel=[3, 3]),
                        dict(weight=P(4, 1, 3, 3), bias=P(4))))
    layers.append(Layer("relu", "relu1", [vals["conv1"]], [v("relu1")]))
    layers.append(Layer("max_pool", "pool1", [vals["relu1"]], [v("pool1")], dict(kernel=[2, 2], stride=[2, 2])))
    layers.append(Layer("flatten", "flat", [vals["pool1"]], [v("flat")]))
    layers.append(Layer("dense", "ip1", [vals["flat"]], [v("ip1")], dict(out_features=16), dict(weight=P(16, 36), bias=P(16))))
    last = vals["ip1"]
    if dropout:
        layers.append(Layer("dropout", "drop", [last], [v("drop")], dict(ratio=0.3)))
        last = vals["drop"]
    layers.append(Layer("dense", "ip2", [last], [v("ip2")], dict(out_features=3), dict(weight=P(3, 16), bias=P(3))))
    layers.append(Layer("softmax", "prob", [vals["ip2"]], [v("prob")]))
    return Graph("tiny", layers, [vals["prob"]])


def tiny_data() -> Dataset:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 120)
    x = rng.standard_normal((120, 1, 8, 8)).astype(np.float32) * 0.3
    x[np.arange(120), 0, y * 2, y * 2] += 2.0  # a learnable bright pixel per class
    return Dataset("tiny", x[:90], y[:90], x[90:], y[90:], 3)


def solver(**kw):
    base = dict(base_lr=0.05, lr_policy="step", gamma=0.5, stepsize=5, power=0.0, momentum=0.9,
                weight_decay=5e-4, max_iter=16, test_interval=8, test_iter=1, snapshot=0, snapshot_prefix=None,
                type="SGD", random_seed=3)
    base.update(kw)
    return SimpleNamespace(**base)


def test_logits_are_the_input_of_the_final_softmax():
    assert logits_value(tiny_net()) == "ip2"


def test_same_seed_same_losses_and_training_learns():
    runs = [train(tiny_net(), solver(), tiny_data(), batch_size=16, progress=False) for _ in range(2)]
    assert runs[0].losses == runs[1].losses
    other = train(tiny_net(), solver(random_seed=4), tiny_data(), batch_size=16, progress=False)
    assert other.losses != runs[0].losses
    assert [r["iter"] for r in runs[0].test_log] == [0, 8, 16]
    assert runs[0].test_log[-1]["accuracy"] > runs[0].test_log[0]["accuracy"]


def test_resume_gives_the_same_weights_as_one_run(tmp_path):
    s = solver(snapshot=6, snapshot_prefix=str(tmp_path / "snap"))
    whole = train(tiny_net(), s, tiny_data(), batch_size=16, progress=False)
    assert [p.split("/")[-1] for p in whole.snapshots] == [
        f"snap_iter_{i}.solverstate.safetensors" for i in (6, 12, 16)]
    s2 = solver(snapshot=0)
    resumed = train(tiny_net(seed=9), s2, tiny_data(), batch_size=16, progress=False,
                    resume=tmp_path / "snap_iter_6.safetensors")
    assert resumed.losses == whole.losses[6:]
    for l in whole.graph.layers:
        for k, p in l.params.items():
            np.testing.assert_array_equal(p.data, resumed.graph.layer(l.name).params[k].data)


def test_snapshot_format(tmp_path):
    s = solver(snapshot=8, snapshot_prefix=str(tmp_path / "s"), type="Adam", base_lr=0.01)
    train(tiny_net(), s, tiny_data(), batch_size=16, progress=False)
    with safe_open(str(tmp_path / "s_iter_8.safetensors"), "numpy") as f:
        assert f.metadata()["format"] == "cococ-weights" and f.metadata()["iter"] == "8"
        assert set(f.keys()) == {"conv1/weight", "conv1/bias", "ip1/weight", "ip1/bias", "ip2/weight", "ip2/bias"}
    with safe_open(str(tmp_path / "s_iter_8.solverstate.safetensors"), "numpy") as f:
        m = f.metadata()
        assert (m["iter"], m["type"], m["seed"], m["weights"]) == ("8", "Adam", "3", "s_iter_8.safetensors")
        assert "history/conv1/weight" in f.keys() and "history2/ip2/bias" in f.keys() and "rng/torch" in f.keys()
    with pytest.raises(CococError, match="Adam.*SGD"):
        train(tiny_net(), solver(), tiny_data(), resume=tmp_path / "s_iter_8.safetensors", progress=False)
    with pytest.raises(CococError, match="no such solver state"):
        train(tiny_net(), solver(), tiny_data(), resume=tmp_path / "nope.safetensors", progress=False)


def test_logs_and_plot(tmp_path):
    r = train(tiny_net(), solver(max_iter=4, test_interval=2), tiny_data(), batch_size=8, progress=False,
              log_prefix=tmp_path / "log", plot=True)
    lines = (tmp_path / "log.csv").read_text().splitlines()
    assert lines[0] == "iter,lr,loss,accuracy,test_loss,test_accuracy" and len(lines) == 1 + 5
    assert (tmp_path / "log.png").stat().st_size > 1000 and '"test"' in (tmp_path / "log.json").read_text()
    assert len(r.train_log) == 4


@pytest.mark.parametrize("policy,kw,its,want", [
    ("fixed", {}, [0, 100], [0.1, 0.1]),
    ("step", dict(gamma=0.1, stepsize=10), [0, 9, 10, 25], [0.1, 0.1, 0.01, 0.001]),
    ("exp", dict(gamma=0.9), [0, 2], [0.1, 0.081]),
    ("inv", dict(gamma=1e-4, power=0.75), [0, 1000], [0.1, 0.1 * 1.1 ** -0.75]),
    ("multistep", dict(gamma=0.5, stepvalue=[3, 7]), [0, 2, 3, 6, 7, 50], [0.1, 0.1, 0.05, 0.05, 0.025, 0.025]),
    ("poly", dict(power=2.0, max_iter=100), [0, 50, 100], [0.1, 0.025, 0.0]),
    ("sigmoid", dict(gamma=-0.5, stepsize=10), [10], [0.05]),
])
def test_lr_policies_match_hand_values(policy, kw, its, want):
    kw = dict(kw)
    s = SimpleNamespace(base_lr=0.1, lr_policy=policy, **kw)
    for it, w in zip(its, want):
        assert math.isclose(policy_lr(s, it), w, rel_tol=1e-9, abs_tol=1e-15)
        assert math.isclose(lr_at(s, it), w, rel_tol=1e-9, abs_tol=1e-15)
    from cococ.frontend.solver import Solver  # the parsed solver's own lr_at agrees
    parsed = Solver(base_lr=0.1, max_iter=kw.pop("max_iter", 1000), lr_policy=policy, **kw)
    for it, w in zip(its, want):
        assert math.isclose(lr_at(parsed, it), w, rel_tol=1e-9, abs_tol=1e-15)


def _one_param_opt(type_, **kw):
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    s = SimpleNamespace(type=type_, momentum=0.9, weight_decay=0.1, **kw)
    return p, CaffeOptimizer({"l/w": p}, s, {"l/w": (2.0, 0.5)})


def test_caffe_sgd_update_by_hand():
    """v = m v + lr*lr_mult (g + wd*decay_mult*w); w -= v, with a changing lr."""
    p, opt = _one_param_opt("SGD")
    w, v = np.array([1.0, -2.0]), np.zeros(2)
    for it, (lr, g) in enumerate([(0.1, [0.5, 1.0]), (0.05, [-1.0, 0.25])]):
        p.grad = torch.tensor(g)
        opt.step(it, lr)
        v = 0.9 * v + lr * 2.0 * (np.array(g) + 0.1 * 0.5 * w)
        w = w - v
        np.testing.assert_allclose(p.detach().numpy(), w, rtol=1e-6)


@pytest.mark.parametrize("type_,ref", [
    ("SGD", lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.05)),
    ("Nesterov", lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.05, nesterov=True)),
    ("Adam", lambda ps: torch.optim.Adam(ps, lr=0.1, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05)),
])
def test_update_rules_equal_torch_at_constant_lr(type_, ref):
    """With a constant lr (lr_mult 1), Caffe's rules equal torch's (Adam up to where eps sits)."""
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0, 0.3]))
    q = torch.nn.Parameter(p.detach().clone())
    s = SimpleNamespace(type=type_, momentum=0.9, momentum2=0.999, delta=1e-8, weight_decay=0.05)
    mine, theirs = CaffeOptimizer({"l/w": p}, s), ref([q])
    for it in range(5):
        g = torch.tensor([0.3, -1.0, 2.0]) * (it + 1)
        p.grad, q.grad = g.clone(), g.clone()
        mine.step(it, 0.1)
        theirs.step()
    np.testing.assert_allclose(p.detach().numpy(), q.detach().numpy(), rtol=1e-5)


def test_lr_and_decay_mult_from_caffe_param_meta():
    g = tiny_net(dropout=False)
    g.layer("conv1").meta["caffe_param"] = [{"lr_mult": 1.0}, {"lr_mult": 2.0, "decay_mult": 0.0}]
    g.layer("ip2").meta["caffe_param"] = [{"lr_mult": 0.0, "decay_mult": 0.0}, {"lr_mult": 0.0, "decay_mult": 0.0}]
    m = to_torch(g)
    mults = caffe_mults(g, m)
    assert mults["conv1/weight"] == (1.0, 1.0) and mults["conv1/bias"] == (2.0, 0.0)
    before = g.layer("ip2").params["weight"].data.copy()
    train(g, solver(max_iter=3), tiny_data(), batch_size=8, progress=False)
    np.testing.assert_array_equal(g.layer("ip2").params["weight"].data, before)  # lr_mult 0: fixed


def test_unknown_solver_type_and_batches():
    with pytest.raises(CococError, match="AdaDelta"):
        CaffeOptimizer({}, SimpleNamespace(type="AdaDelta"))
    a = batch_indices(10, 4, 2, seed=0)   # crosses into epoch 1
    assert len(a) == 4 and np.array_equal(a, batch_indices(10, 4, 2, seed=0))
    epoch0 = np.concatenate([batch_indices(10, 5, i, 0) for i in range(2)])
    assert sorted(epoch0) == list(range(10))


def test_divergence_is_a_clear_error():
    with pytest.raises(CococError, match="diverged"):
        train(tiny_net(dropout=False), solver(base_lr=1e6, lr_policy="fixed", max_iter=20), tiny_data(),
              batch_size=8, progress=False)


def test_save_weights_from_graph_and_module(tmp_path):
    g = tiny_net()
    save_weights(g, tmp_path / "g.safetensors")
    save_weights(to_torch(g), tmp_path / "m.safetensors")
    with safe_open(str(tmp_path / "g.safetensors"), "numpy") as a, safe_open(str(tmp_path / "m.safetensors"), "numpy") as b:
        assert set(a.keys()) == set(b.keys())
        for k in a.keys():
            np.testing.assert_array_equal(a.get_tensor(k), b.get_tensor(k))


def test_iter_size_accumulates_batches():
    """iter_size=2 with batch 8 takes the same first step as batch 16 (same images, mean loss)."""
    a = train(tiny_net(dropout=False), solver(max_iter=1, iter_size=2), tiny_data(), batch_size=8, progress=False)
    b = train(tiny_net(dropout=False), solver(max_iter=1), tiny_data(), batch_size=16, progress=False)
    for l in a.graph.layers:
        for k, p in l.params.items():
            np.testing.assert_allclose(p.data, b.graph.layer(l.name).params[k].data, rtol=1e-5, atol=1e-6)
