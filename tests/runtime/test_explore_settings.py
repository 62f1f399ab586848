"""A run's recorded settings (runtime/explore/settings.py) cover everything an evaluation depends
on: a change of any one is named by `--resume`'s refusal, old and new value."""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest

from cococ.frontend.objective import parse_objective
from cococ.frontend.solver import Solver, load_solver_text
from cococ.ir.core import CococError
from cococ.runtime.data import Dataset
from cococ.runtime.explore.records import RunDB
from cococ.runtime.explore.settings import NOT_EVALUATED, check_resume, differences, run_settings

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_explore import modular_net  # noqa: E402

OBJ = parse_objective("min ModelSize constraint Accuracy >= 0.5")
CONFIGS = [(0.0, 0.0), (0.5, 0.5)]


def dataset(n_train=20) -> Dataset:
    rng = np.random.default_rng(0)
    return Dataset("toy", rng.random((n_train, 1, 8, 8), np.float32), np.arange(n_train) % 10,
                   rng.random((10, 1, 8, 8), np.float32), np.arange(10), 10)


def settings(full=None, configs=CONFIGS, objective=OBJ, solver=None, pre=None, ds=None, **kw):
    kw = {"steps": 8, "pretrain_steps": 8, "method": "sequitur", "seed": None, **kw}
    return run_settings(full or modular_net(), configs, objective, solver or Solver(0.02, 40, momentum=0.9),
                        pre, ds or dataset(), **kw)


def test_every_solver_field_counts():
    """A change of any Solver field but where it is written and what it logs is a difference."""
    base = Solver(0.02, 40)
    ref = settings(solver=base)
    other = {int: 7, float: 0.123, str: "x", bool: True}
    for f in dataclasses.fields(Solver):
        if f.name in NOT_EVALUATED:
            continue
        v = getattr(base, f.name)
        new = {"stepvalue": [5], "test_iter": [3], "test_nets": ["t.prototxt"], "test_stages": [["s"]],
               "batch_sizes": {"data": 8}, "extra": {"clip_gradients": 1.0}, "net": "n.prototxt",
               "net_param": load_solver_text('base_lr: 1 max_iter: 1 net_param { name: "n" }').net_param,
               }.get(f.name, other.get(type(v), 0.5) if v is not None else 3)
        diff = differences(ref, settings(solver=dataclasses.replace(base, **{f.name: new})))
        assert any(d.startswith(f"solver.{f.name if f.name != 'extra' else 'clip_gradients'}:") for d in diff), f.name
        assert any(d.startswith("pretrain solver.") for d in diff), f.name   # the default pre-training solver


def test_each_dependency_is_named():
    ref = settings()
    full = modular_net()
    full.layers[1].attrs["pad"] = [0, 0, 0, 0]
    weights = modular_net(seed=1)
    cases = {"network": settings(full=full), "teacher weights": settings(full=weights),
             "subspace": settings(configs=[(0.0, 0.0), (0.25, 0.5)]),
             "data": settings(ds=dataset(30)), "steps": settings(steps=4), "pretrain steps": settings(pretrain_steps=4),
             "tuning blocks": settings(method="modules"), "seed": settings(seed=1),
             "pretrain solver.base_lr": settings(pre=Solver(0.01, 40, momentum=0.9))}
    for name, new in cases.items():
        diff = differences(ref, new)
        assert [d.split(":")[0] for d in diff] == [name], (name, diff)
    assert differences(ref, settings()) == []


def test_data_split_counts():
    """Same arrays, another split between train and test: another data set."""
    a, b = dataset(), dataset()
    b.x_train, b.x_test = np.concatenate([a.x_train, a.x_test[:1]]), a.x_test[1:]
    b.y_train, b.y_test = np.concatenate([a.y_train, a.y_test[:1]]), a.y_test[1:]
    assert [d.split(":")[0] for d in differences(settings(ds=a), settings(ds=b))] == ["data"]


def test_metric_definitions_compared_where_both_measured():
    """A resume may add or drop a metric (another objective); one measured with another meaning is refused."""
    ref = settings()
    assert differences(ref, settings(objective=parse_objective("min MACs constraint Accuracy >= 0.9"))) == []
    changed = dict(ref, **{"metric Accuracy": "something else"})
    assert [d.split(":")[0] for d in differences(ref, changed)] == ["metric Accuracy"]


def test_check_resume_message_and_old_runs(tmp_path):
    db = RunDB(tmp_path / "run.sqlite")
    check_resume(tmp_path, db, settings(), "toy")
    with pytest.raises(CococError, match=r"solver\.momentum: 0\.9 -> 0\.5.*pretrain solver\.momentum: 0\.9 -> 0\.5"):
        check_resume(tmp_path, db, settings(solver=Solver(0.02, 40, momentum=0.5)), "toy")
    with pytest.raises(CococError, match=r"data name: 'toy' -> 'other.npz'"):
        check_resume(tmp_path, db, settings(ds=dataset(30)), "other.npz")
    check_resume(tmp_path, db, settings(), "toy")                       # the same: accepted
    old = RunDB(tmp_path / "old.sqlite")
    old.set_meta("fingerprint", "0123456789abcdef")                     # a run of an older cococ
    with pytest.raises(CococError, match="did not record its settings"):
        check_resume(tmp_path, old, settings(), "toy")
