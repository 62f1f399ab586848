"""The block store and tuning-block pre-training (Wootz §6.1–§6.2)."""
from pathlib import Path

import numpy as np
import pytest
import torch

import cococ
from cococ.passes.teacher_student import block_key, finetune_graph
from cococ.passes.tuning_blocks import BlockPlan, TuningBlock, group_blocks
from cococ.runtime.blocks import BlockStore, pretrain, pretrain_group, teacher_hash
from cococ.runtime.data import load_data
from cococ.runtime.torch.module import copy_back, to_torch

RESNET = Path(__file__).resolve().parents[2] / "examples" / "resnet" / "resnet.prototxt"


@pytest.fixture(scope="module")
def data():
    return load_data("digits", cococ.load(RESNET).inputs[0].type.shape)


@pytest.fixture(scope="module")
def teacher(data):
    """The example ResNet, random weights, BN statistics measured on digits (a consistent teacher)."""
    torch.set_num_threads(1)
    g = cococ.load(RESNET, init="random", seed=0)
    m = to_torch(g, bn_momentum=1.0)
    m.train()
    with torch.no_grad():
        m(torch.from_numpy(data.x_train[:256]))
    return copy_back(m, g)


def test_store_roundtrip_and_keys(tmp_path):
    store = BlockStore(tmp_path, "abc123")
    assert store.get("res2a@0.5") is None and store.keys() == []
    arrays = {"res2a_branch2a/weight": np.arange(12, dtype=np.float32).reshape(3, 4)}
    store.put("res2a@0.5", arrays, {"steps": 3})
    again = BlockStore(tmp_path, "abc123")         # a fresh reader sees the file
    np.testing.assert_array_equal(again.get("res2a@0.5")["res2a_branch2a/weight"], arrays["res2a_branch2a/weight"])
    assert again.keys() == ["res2a@0.5"] and "res2a@0.5" in again
    assert again.meta("res2a@0.5")["steps"] == "3"
    other = BlockStore(tmp_path, "def456")          # another teacher: nothing to reuse
    assert other.get("res2a@0.5") is None and other.keys() == [] and "res2a@0.5" not in other
    assert other.path("res2a@0.5") != again.path("res2a@0.5")


def test_teacher_hash_changes_with_weights(teacher):
    h = teacher_hash(teacher)
    assert h == teacher_hash(teacher.clone())
    g = teacher.clone()
    p = g.layer("res3a_branch2a").params["weight"]
    p.data = p.dense() * 1.01
    p._hash = None
    assert teacher_hash(g) != h
    assert BlockStore("x", teacher_hash(g)).path("res3a@0.5") != BlockStore("x", h).path("res3a@0.5")


def test_pretraining_reduces_block_mse(teacher, data):
    blocks = [TuningBlock(0, (0.5,)), TuningBlock(2, (0.7, 0.3))]
    g, report = pretrain_group(teacher, blocks, data, {"base_lr": 0.02}, steps=15)
    for key, r in report.items():
        assert r["mse_after"] < 0.8 * r["mse_before"], (key, r)
    # the teacher did not move
    np.testing.assert_array_equal(g.layer("res2a_branch2a").params["weight"].dense(),
                                  teacher.layer("res2a_branch2a").params["weight"].dense())


def test_pretrain_fills_store_resumes_and_feeds_finetune(teacher, data, tmp_path):
    blocks = [TuningBlock(1, (0.3,)), TuningBlock(4, (0.5, 0.5)), TuningBlock(3, (0.0,)), TuningBlock(0, (0.7,))]
    plan = BlockPlan(blocks, [[3, 0, None, 2, 1, 1]], None, group_blocks(blocks))
    store = BlockStore(tmp_path, teacher_hash(teacher))
    rows = pretrain(teacher, plan, data, {"base_lr": 0.02}, store, steps=3, progress=False)
    status = {r["key"]: r["status"] for r in rows}
    assert status == {"res2b@0.3": "trained", "res4a@0.5+res4b@0.5": "trained", "res3b@0": "teacher",
                      "res2a@0.7": "trained"}
    assert store.keys() == sorted(["res2b@0.3", "res4a@0.5+res4b@0.5", "res2a@0.7"])
    again = pretrain(teacher, plan, data, None, BlockStore(tmp_path, teacher_hash(teacher)), steps=3, progress=False)
    assert {r["key"]: r["status"] for r in again} == {"res2b@0.3": "stored", "res4a@0.5+res4b@0.5": "stored",
                                                      "res3b@0": "teacher", "res2a@0.7": "stored"}
    rates = [0.7, 0.3, 0.0, 0.0, 0.5, 0.5]
    g = finetune_graph(teacher, rates, plan.composite[0], plan.blocks, store)
    assert sorted(g.meta["blocks_used"]) == store.keys()
    w = store.get(block_key(teacher, blocks[1]))["res4a_branch2a/weight"]
    np.testing.assert_array_equal(g.layer("res4a_branch2a").params["weight"].dense(), w)
    # a changed teacher finds nothing in the same directory
    changed = teacher.clone()
    p = changed.layer("conv1").params["weight"]
    p.data = p.dense() + 0.01
    p._hash = None
    assert BlockStore(tmp_path, teacher_hash(changed)).keys() == []
    with pytest.raises(cococ.ir.core.CococError, match="teacher"):
        pretrain(changed, plan, data, None, store, steps=1, progress=False)


def test_cli_blocks_prints_plan_and_pretrains(tmp_path, capsys):
    from cococ.cli import main
    torch.set_num_threads(1)
    assert main(["blocks", str(RESNET), "--init", "random", "--sample", "4", "--blocks", "modules"]) == 0
    out = capsys.readouterr().out
    assert "tuning blocks for 4 networks over 6 modules" in out and "res2a@0.3" in out
    assert "pre-training groups" in out and "composite vectors" in out
    store = tmp_path / "store"
    argv = ["blocks", str(RESNET), "--init", "random", "--sample", "2", "--blocks", "modules", "--pretrain", "--pretrain-steps", "1",
            "--store", str(store), "--batch-size", "8"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "blocks trained" in out and len(list(store.glob("*.safetensors"))) > 0
    assert main(argv) == 0
    assert "0 blocks trained" in capsys.readouterr().out
    assert main(["blocks", str(RESNET), "--init", "random", "--sample", "4", "--rates", "x"]) == 1


def test_shared_teacher_and_parallel_groups_give_the_same_blocks(teacher, data, tmp_path):
    """One teacher forward per batch for all groups (the default), and the groups split over two
    processes, pre-train the very blocks one run per group does: bit for bit (fixed seeds, one
    thread; each student's loss and update involve its own weights only)."""
    from cococ.runtime.explore.blockstore import pretrain_groups, split_groups
    from cococ.runtime.explore.records import RunDB
    blocks = [TuningBlock(0, (0.5,)), TuningBlock(0, (0.7, 0.3)), TuningBlock(2, (0.5,)), TuningBlock(4, (0.3,))]
    plan = BlockPlan(blocks, [], None, group_blocks(blocks))
    assert len(plan.groups) == 2                                   # res2a@0.5 and res2a+res2b overlap
    stores = {}
    for name, shared in (("per-group", False), ("shared", True)):
        stores[name] = BlockStore(tmp_path / name, teacher_hash(teacher))
        rows = pretrain(teacher, plan, data, {"base_lr": 0.02}, stores[name], steps=4, progress=False,
                        shared_teacher=shared)
        assert sorted(r["group"] for r in rows) == sorted(gi for gi, g in enumerate(plan.groups) for _ in g)
    stores["2 processes"] = BlockStore(tmp_path / "par", teacher_hash(teacher))
    assert [len(s) for s in split_groups([(0, blocks[:1]), (1, blocks[1:])], 2)] == [1, 1]
    db = RunDB(tmp_path / "run.sqlite")
    spent = pretrain_groups(teacher, plan, data, {"base_lr": 0.02}, stores["2 processes"], db, steps=4,
                            progress=False, workers=2)
    assert spent > 0 and len(db.blocks()) == 4 and {b["group"] for b in db.blocks().values()} == {0, 1}
    want = stores["per-group"]
    assert want.keys() == stores["shared"].keys() == stores["2 processes"].keys() and len(want.keys()) == 4
    for key in want.keys():
        for other in ("shared", "2 processes"):
            got = stores[other].get(key)
            for name, arr in want.get(key).items():
                np.testing.assert_array_equal(got[name], arr, err_msg=f"{other}: {key} {name}")
    # the blocks moved away from the teacher's pruned weights: the comparison is not vacuous
    before = finetune_graph(teacher, [0.5, 0, 0, 0, 0, 0]).layer("res2a_branch2a").params["weight"].dense()
    assert not np.array_equal(want.get("res2a@0.5")["res2a_branch2a/weight"], before)
