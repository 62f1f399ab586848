"""Scalpel (issue 6): the iterative simd-group loop, node pruning with mask layers, prune-for-target
(runtime/compress/).

A small MLP (8x8 digits -> 48 -> 24 -> 10, dropout after the first layer) trained for a few
hundred iterations stands in for LeNet-300-100: the same layer kinds, seconds to train.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from cococ.frontend.solver import Solver
from cococ.ir.core import Graph, Layer, Param, TensorType, Value
from cococ.ir.formats import decompress
from cococ.ir.interpreter import run
from cococ.ir.verify import infer_shapes, verify
from cococ.runtime.train import train

torch.set_num_threads(1)


def mlp(seed=0, hidden=(48, 24), size=8) -> Graph:
    rng = np.random.default_rng(seed)
    P = lambda *s: Param.from_array((rng.standard_normal(s) * np.sqrt(2 / s[-1])).astype(np.float32))  # noqa: E731
    x = Value("data", TensorType((1, 1, size, size)))
    layers = [Layer("input", "data", [], [x], {"shape": [1, 1, size, size]}),
              Layer("flatten", "flat", [x], [Value("flat")], {})]
    last, n = layers[-1].outputs[0], size * size
    for i, h in enumerate(hidden + (10,), 1):
        layers.append(Layer("dense", f"ip{i}", [last], [Value(f"ip{i}")], dict(out_features=h),
                            dict(weight=P(h, n), bias=Param.from_array(np.zeros(h, np.float32)))))
        last, n = layers[-1].outputs[0], h
        if i <= len(hidden):
            layers.append(Layer("relu", f"relu{i}", [last], [Value(f"relu{i}")], {}))
            last = layers[-1].outputs[0]
            if i == 1:
                layers.append(Layer("dropout", "drop1", [last], [Value("drop1")], {"ratio": 0.2}))
                last = layers[-1].outputs[0]
    layers.append(Layer("softmax", "prob", [last], [Value("prob")], {}))
    g = Graph("mlp", layers, [layers[-1].outputs[0]])
    infer_shapes(g)
    return g


SOLVER = Solver(base_lr=0.05, max_iter=200, momentum=0.9, weight_decay=5e-4, random_seed=1)


@pytest.fixture(scope="module")
def trained(digits):
    g = mlp()
    train(g, SOLVER, digits, max_iter=200, progress=False)
    return g


def _x(digits, n=8):
    return digits.test_arrays()[0][:n]


def interp(g, x):
    """The reference interpreter, one image at a time (the graph's batch is 1)."""
    return np.concatenate([run(g, {"data": x[i:i + 1]})["prob"] for i in range(len(x))])


def test_simd_loop_prunes_within_tolerance_and_matches_masked_reference(trained, digits):
    from cococ.runtime.compress.scalpel import simd_prune
    g, rep = simd_prune(trained.clone(), SOLVER, digits, target="arm-m4", max_drop=2.0,
                        steps=(0.5, 0.7, 0.85), retrain_iter=40)
    verify(g)
    assert rep.width == 2
    sg = [l for l in rep.layers if l.format == "simd_group"]
    assert sg, rep.table()
    assert rep.accuracy_after >= rep.accuracy_before - 0.02
    assert rep.layers[0].dense_time >= rep.layers[-1].dense_time  # ip1 is the slowest
    for l in sg:  # only layers past the measured break-even are stored sparse, and they gain
        assert l.sparsity >= rep.breakeven and l.sparse_time < l.dense_time
    assert rep.speedup > 1.0
    # the interpreter on the compressed graph == the same graph with the masked dense weights
    ref = g.clone()
    for l in ref.layers:
        for k, p in l.params.items():
            if p.format != "dense":
                l.params[k] = Param.from_array(decompress(p))
    x = _x(digits)
    out = interp(g, x)
    np.testing.assert_allclose(out, interp(ref, x), rtol=1e-6, atol=1e-7)
    # pruned groups are zero in the decompressed weight: whole width-2 groups
    w = g.layer(sg[0].layer).params["weight"].dense().reshape(-1, 2)
    assert ((w == 0).all(1) | (w != 0).any(1)).all() and (w == 0).all(1).mean() >= 0.45
    assert g.layer("drop1").attrs["ratio"] == 0.2  # the retraining ratio is not left behind
    assert "scalpel" in g.meta


def test_layers_under_breakeven_stay_dense_with_a_warning(trained, digits):
    from cococ.runtime.compress.scalpel import simd_prune
    g, rep = simd_prune(trained.clone(), SOLVER, digits, max_drop=50.0, steps=(0.2,), retrain_iter=2)
    assert all(l.format == "dense" for l in rep.layers)
    assert rep.warnings and all("break-even" in w for w in rep.warnings)
    for l in g.layers:  # reverted to the weights before the layer's turn
        for k, p in l.params.items():
            np.testing.assert_array_equal(p.dense(), trained.layer(l.name).params[k].dense())


def test_dropout_adjustment_is_sqrt_of_kept_connections():
    from cococ.runtime.compress.scalpel import adjust_dropout
    g = mlp()
    adjust_dropout(g, g.layer("ip1"), 0.25)
    assert g.layer("drop1").attrs["ratio"] == pytest.approx(0.2 * 0.5)
    adjust_dropout(g, g.layer("ip1"), 0.64)  # always from the original ratio
    assert g.layer("drop1").attrs["ratio"] == pytest.approx(0.2 * 0.8)


def test_mask_op_torch_lowering_equals_interpreter():
    from cococ.runtime.compress.node_prune import insert_masks
    from cococ.runtime.torch.module import to_torch
    g = mlp()
    masks = insert_masks(g)
    assert [m.meta["masks"] for m in masks] == ["ip1", "ip2"]  # not the output layer
    infer_shapes(g)
    rng = np.random.default_rng(0)
    for m in masks:
        n = m.params["alpha"].shape[0]
        m.params["alpha"] = Param.from_array((rng.random(n) > 0.3).astype(np.float32))
        m.params["beta"] = Param.from_array(rng.random(n).astype(np.float32))
    verify(g)
    x = rng.random((4, 1, 8, 8)).astype(np.float32)
    ref = interp(g, x)
    got = to_torch(g)(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
    # removing the α = 0 channels and folding β gives the same function, smaller
    from cococ.runtime.compress.node_prune import remove_masked
    kept = remove_masked(g)
    infer_shapes(g)
    verify(g)
    assert not any(l.op == "mask" for l in g.layers)
    assert g.layer("ip1").attrs["out_features"] == kept["ip1"][1] < 48
    assert g.layer("ip2").params["weight"].shape == (kept["ip2"][1], kept["ip1"][1])
    np.testing.assert_allclose(interp(g, x), ref, rtol=1e-5, atol=1e-6)


def test_hysteresis_equation_6():
    """α' = 1 when β >= t + ε, 0 when β < t, else α unchanged: each branch turns an α over."""
    from cococ.runtime.compress.node_prune import hysteresis
    alpha = np.array([0, 1, 0, 1, 0, 1, 0, 1], np.float32)
    beta = np.array([0.56, 0.52, 0.52, 0.49, 0.55, 0.5, 0.9, 0.3])
    #                 on    kept  kept  off   on(=t+ε) kept(=t) on  off
    assert hysteresis(alpha, beta, 0.5, 0.05).tolist() == [1, 1, 0, 0, 1, 1, 1, 0]


def test_node_prune_removes_nodes(trained, digits):
    from cococ.runtime.compress.node_prune import node_prune
    # λ = 0.04 removes 30 of 48 and 9 of 24 nodes at 0.95 -> 0.939 (masked) -> 0.942 (retrained)
    g, rep = node_prune(trained.clone(), SOLVER, digits, max_drop=3.0, lambdas=(0.04,), mask_iter=40,
                        retrain_iter=20)
    assert rep.accuracy_masked >= rep.accuracy_before - 0.03 and rep.accuracy_after >= rep.accuracy_before - 0.03
    verify(g)
    assert not any(l.op == "mask" for l in g.layers)
    assert rep.macs_after < rep.macs_before
    assert g.layer("ip1").attrs["out_features"] == rep.channels["ip1"][1] < 48


@pytest.mark.parametrize("target,methods", [("arm-m4", ["simd-group"]), ("cuda", ["node"]),
                                            ("x86", ["node", "simd-group"])])
def test_prune_for_target_picks_method_by_parallelism(monkeypatch, target, methods):
    import cococ.runtime.compress.prune_for_target as pft
    calls = []

    class R:
        def to_dict(self):
            return {}

        def table(self):
            return ""

    monkeypatch.setattr(pft, "node_prune", lambda g, *a, ops, **k: (calls.append(("node", ops)), (g, R()))[1])
    monkeypatch.setattr(pft, "simd_prune", lambda g, *a, layers, **k: (calls.append(("simd-group", layers)), (g, R()))[1])
    g, rep = pft.prune_for_target(mlp(), target, "digits", SOLVER, 0.5)
    assert [c[0] for c in calls] == methods == rep["methods"]
    if target == "x86":
        assert calls[0][1] == ("conv2d",) and calls[1][1] == ["ip1", "ip2", "ip3"]


def test_prune_for_target_pass_runs_in_a_pipeline(trained, digits, monkeypatch):
    import cococ
    g = cococ.passes.run(trained.clone(), "prune-for-target{target=arm-m4, max_accuracy_drop=2.0, retrain_iter=10}")
    assert g.meta["prune_for_target"]["methods"] == ["simd-group"]
    assert "simd_group" in g.meta["prune_for_target"]


def test_auto_lambdas_scale_with_the_solver():
    from cococ.runtime.compress.node_prune import auto_lambdas
    lam = auto_lambdas(SOLVER, 100)
    assert lam == tuple(sorted(lam))
    assert lam[-1] * SOLVER.base_lr * 100 / (1 - SOLVER.momentum) == pytest.approx(0.5)


def test_build_command_has_the_prune_options():
    import argparse
    from cococ.commands import build
    p = argparse.ArgumentParser()
    build.add_arguments(p)
    a = p.parse_args(["net.prototxt", "--target=arm-m4", "--prune", "auto", "--data", "digits",
                      "--max-accuracy-drop", "0.5"])
    assert (a.prune, a.data, a.max_accuracy_drop, a.solver) == ("auto", "digits", 0.5, None)


def test_build_prune_auto_runs_the_pass_and_prints_its_report(monkeypatch, capsys):
    """`--prune auto` goes through the pass pipeline (prune-for-target, verified after) and the
    build command prints the report the pass left in graph.meta."""
    import argparse

    import cococ.runtime.compress.prune_for_target as pft
    from cococ.commands import build
    from cococ.ir.target import get_target
    seen = {}

    def fake(graph, target, data, solver, max_drop, *, log=None, **kw):
        seen.update(target=target, data=data, solver=solver, max_drop=max_drop)
        log("scalpel: ip1 50.0% pruned")
        report = {"target": target, "parallelism": "low", "methods": ["simd-group"],
                  "table": "layer  MACs\nip1    3,072", "simd_group": {"warnings": ["ip3: kept dense"]}}
        graph.meta["prune_for_target"] = report
        return graph, report

    monkeypatch.setattr(pft, "prune_for_target", fake)
    args = argparse.Namespace(max_accuracy_drop=0.7, data="digits", solver=None)
    g = build._prune_for_target(mlp(), get_target("arm-m4"), args)
    assert g.meta["prune_for_target"]["methods"] == ["simd-group"]
    assert seen == {"target": "arm-m4", "data": "digits", "solver": None, "max_drop": 0.7}
    out, err = capsys.readouterr()
    assert out == "prune-for-target arm-m4 (low parallelism): simd-group\n  layer  MACs\n  ip1    3,072\n"
    assert err == "scalpel: ip1 50.0% pruned\nwarning: ip3: kept dense\n"


def _stub_retrain(monkeypatch, fail):
    """Replace the retraining with a stub: accuracy 1.0 unless `fail(step_sparsity, call_of_that_step)`.
    Records (sparsity, iterations) of every call."""
    import cococ.runtime.compress.scalpel as sc
    calls, seen = [], {}

    def retrain(graph, solver, ds, masks, iters, seed):
        sp = round(float(1 - masks["ip1"].mean()), 3)
        seen[sp] = seen.get(sp, 0) + 1
        calls.append((sp, iters))
        return 0.0 if fail(sp, seen[sp]) else 1.0

    monkeypatch.setattr(sc, "retrain", retrain)
    return calls


def _one_layer_loop(policy, monkeypatch, fail, steps=(0.5, 0.7, 0.9)):
    from cococ.runtime.compress.scalpel import prune_layer
    calls = _stub_retrain(monkeypatch, fail)
    g = mlp()
    w0 = g.layer("ip1").params["weight"].dense()
    before = {l.name: {k: p.dense().copy() for k, p in l.params.items()} for l in g.layers}

    def mask_for(s):
        m = np.ones(w0.size, np.float32)
        m[:int(round(s * w0.size))] = 0
        return m.reshape(w0.shape), {"s": s}

    record = []
    g, _, last, m, info = prune_layer(g, "ip1", steps, mask_for, {}, SOLVER, None, 0.5, 10, 0, policy,
                                      record.append, lambda s: None)
    return g, last, m, info, calls, record, before


def test_failed_step_is_retried_longer_and_then_accepted(monkeypatch):
    from cococ.runtime.compress.scalpel import StepPolicy
    # 0.7 fails its first retraining only: the retry (2x iterations, same step) holds
    g, last, m, info, calls, record, _ = _one_layer_loop(StepPolicy(), monkeypatch, lambda sp, n: sp == 0.7 and n == 1)
    assert calls == [(0.5, 10), (0.7, 10), (0.7, 20), (0.9, 10)]
    assert last == 0.9 and info == {"s": 0.9} and float(1 - m.mean()) == pytest.approx(0.9, abs=1e-3)
    assert [r["accepted"] for r in record] == [True, False, True, True]
    assert [r["retry"] for r in record] == [0, 0, 1, 0]


def test_failed_step_backs_off_half_way_resumes_and_restores_the_accepted_state(monkeypatch):
    from cococ.runtime.compress.scalpel import StepPolicy
    # 0.7 always fails: after its retry, half-way (0.6) holds, 0.7 is tried again and fails,
    # half-way again (0.65) holds, 0.7 fails a third time with no back-off left: the layer ends
    g, last, m, info, calls, record, _ = _one_layer_loop(StepPolicy(), monkeypatch, lambda sp, n: sp >= 0.7)
    assert calls == [(0.5, 10), (0.7, 10), (0.7, 20), (0.6, 10), (0.7, 10), (0.7, 20), (0.65, 10),
                     (0.7, 10), (0.7, 20)]
    assert last == pytest.approx(0.65) and float(1 - m.mean()) == pytest.approx(0.65, abs=1e-3)
    # the graph holds the accepted (0.65) weights, not the failed 0.7 trial's
    w = g.layer("ip1").params["weight"].dense()
    assert (w == 0).mean() == pytest.approx(0.65, abs=1e-3)
    # a back-off that holds resumes the schedule: 0.7 fails once (both retrainings), then holds
    g, last, m, info, calls, record, _ = _one_layer_loop(StepPolicy(), monkeypatch,
                                                         lambda sp, n: sp == 0.7 and n <= 2)
    assert calls == [(0.5, 10), (0.7, 10), (0.7, 20), (0.6, 10), (0.7, 10), (0.9, 10)] and last == 0.9
    # a layer whose every step fails keeps its weights untouched
    g, last, m, info, calls, record, before = _one_layer_loop(StepPolicy(), monkeypatch, lambda sp, n: True)
    assert m is None and last == 0.0
    assert calls == [(0.5, 10), (0.5, 20), (0.25, 10), (0.25, 20), (0.125, 10), (0.125, 20)]
    for l in g.layers:
        for k, p in l.params.items():
            np.testing.assert_array_equal(p.dense(), before[l.name][k])
    assert g.layer("drop1").attrs["ratio"] == 0.2


def test_policy_without_retries_is_the_first_failure_ends_the_layer_loop(monkeypatch):
    from cococ.runtime.compress.scalpel import StepPolicy
    g, last, m, info, calls, record, _ = _one_layer_loop(StepPolicy(0, 2, 0), monkeypatch, lambda sp, n: sp == 0.7)
    assert calls == [(0.5, 10), (0.7, 10)] and last == 0.5
