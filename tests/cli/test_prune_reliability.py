"""`cococ prune` when things go wrong (issue 18): `--resume` with other settings is refused and
names what differs, a failed start leaves nothing behind, bad counts and paths are one-line
errors, the baseline's answer is written when only it meets the objective, and workers die with
a `kill -9`ed driver."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

import cococ
from cococ.cli import main
from cococ.ir.printer import save_ir
from cococ.runtime.data import load_data

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "cli"))
from test_prune_cli import SOLVER, argv, net, rows  # noqa: E402,F401  (net: the trained-net fixture)

EASY = "min ModelSize constraint Accuracy >= 0.1"      # met by the first (smallest) candidate


def easy(d, out, *extra):
    a = argv(d, out, *extra)
    a[a.index("min ModelSize constraint Accuracy >= 0.99")] = EASY
    return a


def with_flag(a, flag, value):
    a = list(a)
    if flag in a:
        a[a.index(flag) + 1] = value
    else:
        a += [flag, value]
    return a


def error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1, err
    return err


@pytest.fixture(scope="module")
def base_run(net, tmp_path_factory):  # noqa: F811
    """One finished run (baseline only, one evaluation) to resume with other settings."""
    out = tmp_path_factory.mktemp("resume") / "run"
    assert main(easy(net, out, "--baseline", "--no-comp")) == 0
    return out


def solver_file(d: Path, name: str, text: str) -> str:
    p = d / name
    p.write_text(text)
    return str(p)


def test_resume_with_other_settings_names_the_field(net, base_run, tmp_path, capsys):  # noqa: F811
    a = easy(net, base_run, "--baseline", "--no-comp", "--resume")
    g = cococ.load(net / "net.ir")
    for l in g.layers:                      # the same network, other teacher weights
        for p in l.params.values():
            p.data = p.dense() * 1.01
    save_ir(g, tmp_path / "other.ir")
    ds = load_data("digits", (1, 1, 8, 8))
    half = len(ds.y_train) // 2            # the same test split, half the training set
    np.savez(tmp_path / "half.npz", x_train=ds.x_train[:half], y_train=ds.y_train[:half],
             x_test=ds.x_test, y_test=ds.y_test)
    cases = {   # changed argument -> what the error must name
        ("--solver", solver_file(tmp_path, "m.prototxt", SOLVER.replace("momentum: 0.9", "momentum: 0.5"))):
            ["solver.momentum: 0.9 -> 0.5", "pretrain solver.momentum: 0.9 -> 0.5"],
        ("--solver", solver_file(tmp_path, "wd.prototxt", SOLVER + "weight_decay: 0.0005\n")):
            ["solver.weight_decay: 0.0 -> 0.0005"],
        ("--solver", solver_file(tmp_path, "lr.prototxt", SOLVER.replace('"fixed"', '"step"') +
                                 "gamma: 0.5\nstepsize: 4\n")):
            ["solver.lr_policy: 'fixed' -> 'step'", "solver.gamma: null -> 0.5", "solver.stepsize: null -> 4"],
        ("--pretrain-solver", solver_file(tmp_path, "p.prototxt", SOLVER.replace("base_lr: 0.02", "base_lr: 0.01"))):
            ["pretrain solver.base_lr: 0.02 -> 0.01"],
        ("--data", str(tmp_path / "half.npz")): ["data: 'sha256:", "data name: 'digits' -> "],
        ("--steps", "4"): ["steps: 8 -> 4"],
        ("net", str(tmp_path / "other.ir")): ["teacher weights: "],
    }
    for (flag, value), want in cases.items():
        b = [a[0], value, *a[2:]] if flag == "net" else with_flag(a, flag, value)
        assert main(b) == 1, (flag, value)
        err = error_line(capsys)
        assert "--resume with other settings" in err
        for w in want:
            assert w in err, (w, err)
    assert main(with_flag(a, "--objective", "min ModelSize constraint Accuracy >= 0.2")) == 0   # a threshold may change
    assert len(rows(base_run)) == 1                  # nothing was redone nor added by the refused ones


def test_failed_start_leaves_no_run_behind(net, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "run"
    sampled = [x for x in easy(net, out) if x not in ("--subspace", str(net / "sub.json"))] + ["--sample", "3"]
    bad = [with_flag(easy(net, out), "--data", str(tmp_path / "missing.npz")),
           with_flag(sampled, "--rates", "0.3,1.5"),
           with_flag(sampled, "--rates", "0.3,x"),
           with_flag(easy(net, out), "--objective", "min Cycles[nowhere] constraint Accuracy >= 0.1"),
           with_flag(easy(net, out), "--objective", "min Latency[arm-m4]"),
           with_flag(sampled, "--sample", "0"),
           with_flag(sampled, "--sample", "-2"),
           with_flag(easy(net, out), "--steps", "0"),
           with_flag(easy(net, out), "--pretrain-steps", "-1"),
           with_flag(easy(net, out), "--subspace", str(tmp_path))]
    for a in bad:
        assert main(a) == 1, a
        err = error_line(capsys)
        assert not out.exists(), (a, err)
    for flag, value, want in (("--sample", "0", "--sample 0: must be at least 1"),
                              ("--subspace", str(tmp_path), "is a directory"),
                              ("--rates", "0.3,1.5", "--rates '0.3,1.5': expected pruning rates in [0, 1)"),
                              ("--objective", "min Cycles[nowhere]", "unknown target 'nowhere'")):
        main(with_flag(sampled if flag != "--subspace" else easy(net, out), flag, value))
        assert want in error_line(capsys)


def test_failure_after_start_removes_the_new_run(net, tmp_path, monkeypatch):  # noqa: F811
    """A fresh run failing before anything finished (here: the metrics of a candidate) takes its
    run folder away again, so the same command is not refused as 'already holds a run'."""
    import cococ.runtime.explore as explore_mod

    def broken(*_):
        raise RuntimeError("metrics failed")

    monkeypatch.setattr(explore_mod, "static_metrics", broken)
    out = tmp_path / "run"
    with pytest.raises(RuntimeError):
        main(easy(net, out))
    assert not out.exists()
    kept = tmp_path / "kept"                # a folder the user made stays, without run state
    kept.mkdir()
    (kept / "notes.txt").write_text("mine")
    with pytest.raises(RuntimeError):
        main(easy(net, kept))
    assert sorted(p.name for p in kept.iterdir()) == ["notes.txt"]


def test_baseline_answer_written_when_only_baseline_meets(net, tmp_path, monkeypatch, capsys):  # noqa: F811
    """Every block-trained candidate below the threshold, the default ones above: the baseline's
    answer is the run's answer, written as pruned.* and labelled so in the report."""
    import cococ.runtime.explore.executors as ex
    real = ex.evaluate_candidate

    def comp_fails(task, *a, **kw):
        rec = real(task, *a, **kw)
        if task.mode == "comp":
            rec["accuracy"] = rec["metrics"]["Accuracy"] = 0.0
        return rec

    monkeypatch.setattr(ex, "evaluate_candidate", comp_fails)
    out = tmp_path / "run"
    assert main(easy(net, out, "--baseline")) == 0
    assert "pruned.* hold the baseline's answer" in capsys.readouterr().out
    for f in ("pruned.ir", "pruned.onnx", "pruned.safetensors", "pruned.prototxt"):
        assert (out / f).exists(), f
    rep = json.loads((out / "report.json").read_text())
    assert rep["table3"]["answer comp"] is None and rep["table3"]["answer base"] == [0.75, 0.75]
    assert rep["pruned"]["mode"] == "base" and rep["pruned"]["config"] == [0.75, 0.75]
    assert "the baseline's answer" in (out / "report.md").read_text()


def test_kill9_of_driver_ends_its_workers(net, tmp_path):  # noqa: F811
    """`kill -9` of `cococ prune --workers 2`: its worker processes end within seconds instead of
    training on at full CPU and writing into the run folder."""
    (tmp_path / "long.prototxt").write_text(SOLVER.replace("max_iter: 8", "max_iter: 5000"))
    a = with_flag(argv(net, tmp_path / "run", "--baseline", "--no-comp"), "--workers", "2")
    a = with_flag(a, "--solver", str(tmp_path / "long.prototxt"))
    p = subprocess.Popen([sys.executable, "-m", "cococ", *a], cwd=ROOT,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    driver = psutil.Process(p.pid)
    workers: list[psutil.Process] = []
    t0 = time.time()
    try:
        while time.time() - t0 < 120 and len(workers) < 2:
            workers = [c for c in driver.children() if "spawn_main" in " ".join(c.cmdline())]
            time.sleep(0.2)
        assert len(workers) == 2, "the driver started no 2 workers"
        time.sleep(2)                          # let them get to work
        assert all(w.is_running() for w in workers)
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    # a worker still importing torch when the driver died has no PDEATHSIG yet: it exits as soon as
    # its imports end (die_with_parent sees the new parent), which on a loaded machine takes a while
    gone, alive = psutil.wait_procs(workers, timeout=60)
    alive = [w for w in alive if w.status() != psutil.STATUS_ZOMBIE]
    for w in alive:
        w.kill()
    assert not alive, f"workers still running after the driver was killed: {[w.pid for w in alive]}"
