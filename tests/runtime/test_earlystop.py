"""Early stop of the search's fine-tuning (runtime/explore/earlystop.py): the rule, its records,
that a stopped candidate could not have won, and that both searches use one rule."""
from __future__ import annotations

import itertools
import sys
from pathlib import Path

import pytest
import torch

import cococ.runtime.explore as explore_mod
from cococ.frontend.objective import parse_objective
from cococ.frontend.solver import Solver
from cococ.ir.core import CococError
from cococ.runtime.explore import explore, replay
from cococ.runtime.explore.earlystop import EarlyStop, StopRule

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_explore import teacher  # noqa: E402

torch.set_num_threads(1)

OBJ = "min ModelSize constraint Accuracy >= 0.9"
CONFIGS = list(itertools.product([0.0, 0.25, 0.5, 0.75], repeat=2))
STEPS = 40


def rec(curve, final=None, stop="full"):
    acc = final if final is not None else curve[-1][1]
    return {"curve": curve, "accuracy": acc, "stop": stop, "metrics": {"Accuracy": acc, "ModelSize": 1},
            "iterations": curve[-1][0], "seconds": 1.0}


def test_rule_needs_complete_candidates_and_uses_their_best_recovery():
    stop = EarlyStop(parse_objective(OBJ), steps=40, margin=0.0, min_complete=2)
    full = [rec([[0, 0.3], [20, 0.6], [40, 0.8]]), rec([[0, 0.5], [20, 0.85], [40, 0.9]])]
    one = stop.rule(full[:1])
    assert one.target == 0.9 and one.recovery == {} and not one.hopeless(0, 0.0)   # 1 < min_complete
    r = stop.rule(full + [rec([[0, 0.1]], stop="hopeless ...")])          # stopped ones do not count
    assert r.recovery == pytest.approx({0: 0.5, 20: 0.2})
    assert r.hopeless(0, 0.39) and not r.hopeless(0, 0.41)                # 0.39 + 0.5 < 0.9 <= 0.41 + 0.5
    assert r.hopeless(20, 0.69) and not r.hopeless(20, 0.71)
    assert not r.hopeless(10, 0.0)                                        # no candidate tested there
    assert "0.3900 + best recovery 0.5000" in r.reason(0, 0.39)
    margin = EarlyStop(parse_objective(OBJ), steps=40, margin=0.05, min_complete=2).rule(full)
    assert not margin.hopeless(0, 0.39) and margin.hopeless(0, 0.34)
    assert EarlyStop(parse_objective(OBJ), steps=40, enabled=False).rule(full) == StopRule()


def test_rule_targets():
    full = [rec([[0, 0.3], [40, 0.8]]), rec([[0, 0.5], [40, 0.92]])]
    assert EarlyStop(parse_objective("min ModelSize"), 40).rule(full).target is None     # nothing to miss
    best = EarlyStop(parse_objective("max Accuracy constraint ModelSize < 5"), 40, min_complete=2).rule(full)
    assert best.target == 0.92                              # beat the best so far, or it cannot win
    assert EarlyStop(parse_objective("max Accuracy constraint Accuracy >= 0.95"), 40).rule(full).target == 0.95


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same searches (both modes) without and with early stop, and the rule each was given."""
    full, _ = teacher()
    tmp = tmp_path_factory.mktemp("es")
    solver = Solver(base_lr=0.02, max_iter=STEPS, momentum=0.9, random_seed=3, test_interval=10)
    seen = []
    real = explore_mod.search

    def spy(*a, **kw):
        seen.append((a[0].mode, kw["stopper"]))
        return real(*a, **kw)

    out = {}
    for name, on in (("off", False), ("on", True)):
        explore_mod.search = spy
        try:
            out[name] = explore(full, CONFIGS, parse_objective(OBJ), solver, "digits", tmp / name, steps=STEPS,
                                pretrain_steps=20, baseline=True, progress=False, early_stop=on)
        finally:
            explore_mod.search = real
    return out, seen, full, solver, tmp


def test_stopped_candidates_could_not_have_won(runs):
    (res, _, _, _, _) = runs
    off, on = res["off"], res["on"]
    stopped = 0
    for mode in ("comp", "base"):
        a, b = getattr(off, mode), getattr(on, mode)
        assert not a.stopped and a.iterations == STEPS * len(a.evaluated)
        assert b.answer["idx"] == a.answer["idx"]                       # the same answer
        full_acc = {e["idx"]: e["accuracy"] for e in a.evaluated}
        for e in b.stopped:
            stopped += 1
            assert e["stop"].startswith("hopeless at iteration") and e["iterations"] < STEPS
            assert e["accuracy"] < 0.9 and e["stop_target"] == 0.9
            assert full_acc[e["idx"]] < 0.9, (mode, e["idx"])            # trained fully, it failed too
            assert e["curve"][-1][0] == e["iterations"]
        assert all(e["iterations"] == STEPS for e in b.evaluated if e["stop"] == "full")
        assert b.iterations < a.iterations or not b.stopped
        assert b.saved_seconds >= 0 and "fine-tuning iterations run" in b.early_stop_summary()
    assert stopped >= 2                                                 # the rule did stop candidates
    assert on.comp.stopped and on.base.stopped                          # in both searches


def test_both_searches_get_one_rule(runs):
    (_, seen, _, _, _) = runs
    on = [s for s in seen[2:]]
    assert [m for m, _ in on] == ["comp", "base"]
    assert on[0][1] is on[1][1] and on[0][1].enabled                     # the same object, the same rule
    assert not seen[0][1].enabled and not seen[1][1].enabled


def test_stopped_records_bound_replay_and_resume(runs):
    (res, _, full, solver, tmp) = runs
    on = res["on"]
    lower = "min ModelSize constraint Accuracy >= 0.88"     # met first after the stopped ones
    assert any(e["stop"] != "full" for e in on.base.evaluated)
    with pytest.raises(CococError, match="stopped early"):
        replay(parse_objective(lower), on.statics, on.base.evaluated)   # 0.88 they might have met
    replay(parse_objective(OBJ), on.statics, on.base.evaluated)          # its own threshold replays
    with pytest.raises(CococError, match="early stop on"):
        explore(full, CONFIGS, parse_objective(OBJ), solver, "digits", tmp / "on", steps=STEPS, pretrain_steps=20,
                baseline=True, progress=False, early_stop=False, resume=True)


def test_replay_with_the_rule_is_the_search_with_it(runs):
    """Benchmarks replay both searches from exhaustive records with the rule (earlystop.simulate):
    the same candidates stop, and the answer is the same, as in the search that ran with it."""
    (res, _, _, _, _) = runs
    off, on = res["off"], res["on"]
    obj = parse_objective(OBJ)
    for mode in ("comp", "base"):
        rep = replay(obj, off.statics, getattr(off, mode).evaluated, stopper=EarlyStop(obj, STEPS))
        ran = getattr(on, mode)
        assert rep["answer"]["idx"] == ran.answer["idx"]
        assert rep["stopped"] == len(ran.stopped) and rep["configs"] == len(ran.evaluated)
        assert rep["saved_seconds"] > 0
        plain = replay(obj, off.statics, getattr(off, mode).evaluated)
        assert plain["stopped"] == 0 and plain["eval_seconds"] > rep["eval_seconds"]


@pytest.mark.slow
def test_two_workers_get_the_rule_as_it_grows(runs):
    """With worker processes the rule's state reaches them after every result (executors.Inbox):
    candidates still stop, only ones that could not have won, and the answer stays. Slow: two
    worker processes start (torch's import) and a search runs, ~10 s of CPU, 30-130 s at load 8-9."""
    (res, _, full, solver, tmp) = runs
    off = res["off"]
    two = explore(full, CONFIGS, parse_objective(OBJ), solver, "digits", tmp / "two", steps=STEPS,
                  pretrain_steps=20, comp=False, baseline=True, progress=False, early_stop=True, workers=2)
    assert two.base.answer["idx"] == off.base.answer["idx"]
    full_acc = {e["idx"]: e["accuracy"] for e in off.base.evaluated}
    assert two.base.stopped and all(full_acc[e["idx"]] < 0.9 for e in two.base.stopped)
    assert len({e["worker"] for e in two.base.evaluated}) == 2


def test_a_run_folder_from_before_the_stop_columns_opens(tmp_path):
    """run.sqlite made before `iterations`/`stop`/`stop_target` existed gains them on open; its
    rows read as trained to the end."""
    import sqlite3

    from cococ.runtime.explore.records import RunDB
    con = sqlite3.connect(tmp_path / "run.sqlite")
    con.execute("CREATE TABLE evaluations (mode TEXT NOT NULL, idx INTEGER NOT NULL, config TEXT NOT NULL, "
                "params INTEGER, macs INTEGER, metrics TEXT NOT NULL, accuracy REAL, curve TEXT NOT NULL, "
                "seconds REAL NOT NULL, worker TEXT NOT NULL, finished_at REAL NOT NULL, UNIQUE(mode, idx))")
    con.execute("INSERT INTO evaluations VALUES ('base', 0, '[0.5]', 1, 2, '{}', 0.5, '[]', 1.0, 'w', 0.0)")
    con.commit()
    con.close()
    db = RunDB(tmp_path / "run.sqlite")
    old = db.evaluations("base")[0]
    assert old["stop"] == "full" and old["iterations"] is None
    db.add_evaluation("base", {"idx": 1, "config": (0.3,), "metrics": {}, "seconds": 0.5, "iterations": 3,
                               "stop": "hopeless at iteration 3: ...", "stop_target": 0.9})
    new = db.done("base")[1]
    assert (new["iterations"], new["stop_target"]) == (3, 0.9) and new["stop"].startswith("hopeless")
    db.close()


@pytest.mark.parametrize("text, floor, threshold", [
    ("min ModelSize constraint Accuracy >= 0.9", 0.9, 0.9),
    ("min ModelSize constraint Accuracy > 0.9 and MACs <= 2M", 0.9, 0.9),
    ("min ModelSize", None, None),
    ("min ModelSize constraint MACs <= 2M", None, None),
    ("max Accuracy constraint MACs <= 2M", None, None),
    # where the two differ: the report shows the first Accuracy constraint, whatever its direction;
    # the early stop's target (and replay) takes the largest lower bound
    ("min ModelSize constraint Accuracy <= 0.99", None, 0.99),
    ("min ModelSize constraint Accuracy < 0.99", None, 0.99),
    ("min ModelSize constraint Accuracy >= 0.8 and Accuracy >= 0.9", 0.9, 0.8),
    ("min ModelSize constraint Accuracy <= 0.99 and Accuracy >= 0.9", 0.9, 0.99),
])
def test_accuracy_floor_and_report_threshold(text, floor, threshold):
    """earlystop.accuracy_floor and the prune report's "threshold acc" (report._threshold) share
    accuracy_constraints; they agree on one `Accuracy >=`/`>` bound and differ past it."""
    from cococ.runtime.explore.earlystop import accuracy_floor
    from cococ.runtime.explore.report import _threshold
    obj = parse_objective(text)
    assert (accuracy_floor(obj), _threshold(obj)) == (floor, threshold)
