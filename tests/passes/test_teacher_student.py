"""Teacher-student graphs (Wootz §6.1) and pruned networks on the small ResNet example:
they verify, and the torch runtime computes what the reference interpreter computes."""
from pathlib import Path

import numpy as np
import pytest
import torch

import cococ
from cococ.frontend.subspace import sample_subspace
from cococ.ir.verify import verify
from cococ.passes.teacher_student import (block_io, block_key, finetune_graph, pretrain_graph, pruned_network,
                                          student_params)
from cococ.ir.interpreter import run
from cococ.passes.tuning_blocks import TuningBlock, identify_tuning_blocks
from cococ.runtime.torch.module import to_torch

RESNET = Path(__file__).resolve().parents[2] / "examples" / "resnet" / "resnet.prototxt"


@pytest.fixture(scope="module")
def full():
    torch.set_num_threads(1)
    g = cococ.load(RESNET, init="random", seed=0)
    # non-trivial BN statistics, so a mix-up of params would show in the outputs
    rng = np.random.default_rng(1)
    for layer in g.layers:
        if layer.op == "batchnorm":
            c = layer.params["mean"].shape[0]
            layer.params["mean"].data = rng.normal(0, 0.1, c).astype(np.float32)
            layer.params["var"].data = rng.uniform(0.5, 1.5, c).astype(np.float32)
            layer.params["mean"]._hash = layer.params["var"]._hash = None
    return g


def _x(full, seed=0):
    shape = full.inputs[0].type.shape   # the example's input, batch 1
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _torch_outputs(g, x):
    with torch.no_grad():
        out = to_torch(g)(torch.from_numpy(x))
    out = out if isinstance(out, tuple) else (out,)
    return {v.name: o.numpy() for v, o in zip(g.outputs, out)}


def test_pretrain_graph_verifies_and_runs_equal(full):
    blocks = [TuningBlock(0, (0.5,)), TuningBlock(2, (0.7, 0.3)), TuningBlock(5, (0.3,))]
    g = pretrain_graph(full, blocks)
    verify(g)
    pairs = g.meta["teacher_student"]
    assert [p["block"] for p in pairs] == [block_key(full, b) for b in blocks]
    x = _x(full)
    ref = run(g, {g.inputs[0].name: x}, taps=[p["teacher"] for p in pairs])
    got = _torch_outputs(g, x)
    for name, arr in got.items():
        np.testing.assert_allclose(arr, ref[name], atol=1e-4, rtol=1e-4)
    for p in pairs:
        assert ref[p["student"]].shape == ref[p["teacher"]].shape
    # the teacher is the full model, unchanged and frozen
    np.testing.assert_allclose(ref[full.outputs[0].name], run(full, [x])[full.outputs[0].name], atol=1e-6)
    assert all(l.meta.get("frozen") for l in g.layers if "block" not in l.meta)
    assert not any(l.meta.get("frozen") for l in g.layers if "block" in l.meta)


def test_student_is_pruned_and_params_map_to_full_names(full):
    b = TuningBlock(1, (0.5,))
    g = pretrain_graph(full, [b])
    params = student_params(g, block_key(full, b))
    assert params and all(k.split("/")[0] in {l.name for l in full.layers} for k in params)
    w = params["res2b_branch2a/weight"]
    assert w.shape[0] == full.layer("res2b_branch2a").params["weight"].shape[0] // 2
    # the block's entry and exit keep the teacher's shapes
    t_in, t_out = block_io(full, ["res2b"])
    assert t_out.type.shape == t_in.type.shape


def test_overlapping_blocks_are_refused(full):
    with pytest.raises(cococ.ir.core.CococError, match="overlap"):
        pretrain_graph(full, [TuningBlock(0, (0.5, 0.5)), TuningBlock(1, (0.3,))])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_pruned_networks_verify_and_torch_equals_interpreter(full, seed):
    rng = np.random.default_rng(seed)
    rates = [float(r) for r in rng.choice([0.0, 0.3, 0.5, 0.7], size=len(full.modules))]
    g = pruned_network(full, rates)
    verify(g)
    x = _x(full, seed)
    ref = run(g, [x])
    got = _torch_outputs(g, x)
    for name, arr in got.items():
        np.testing.assert_allclose(arr, ref[name], atol=1e-4, rtol=1e-4)
    from cococ.passes.prune_filters import keep_count, prunable_convs
    for module, rate in zip(full.modules, rates):   # each inner conv keeps what its rate predicts
        for conv in prunable_convs(full, module):
            c = conv.params["weight"].shape[0]
            assert g.layer(conv.name).params["weight"].shape[0] == keep_count(c, rate), (conv.name, rate)
    n_full = sum(int(np.prod(p.shape)) for l in full.layers for p in l.params.values())
    n = sum(int(np.prod(p.shape)) for l in g.layers for p in l.params.values())
    assert (n < n_full) == any(r > 0 for r in rates)


def test_finetune_graph_uses_stored_blocks(full):
    cfgs = sample_subspace(6, len(full.modules), [0.3, 0.5, 0.7], seed=3)
    plan = identify_tuning_blocks(cfgs)
    bi = plan.composite[0][0]
    block = plan.blocks[bi]
    key = block_key(full, block)
    pg = pretrain_graph(full, [block])
    stored = {k: v + 1.0 for k, v in student_params(pg, key).items()}   # "trained" weights
    g = finetune_graph(full, cfgs[0], plan.composite[0], plan.blocks, {key: stored})
    verify(g)
    assert g.meta["blocks_used"] == [key]
    for name, arr in stored.items():
        lname, pname = name.rsplit("/", 1)
        np.testing.assert_array_equal(g.layer(lname).params[pname].dense(), arr)
    default = finetune_graph(full, cfgs[0])
    assert default.meta["blocks_used"] == []
    assert not np.array_equal(default.layer(name.rsplit("/", 1)[0]).params[name.rsplit("/", 1)[1]].dense(), arr)
