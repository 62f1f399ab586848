"""`cococ prune` end to end on a tiny network: outputs, kill -9 and --resume, malicious subspace,
`--executor ray` errors (the ray runs themselves: tests/runtime/test_explore_ray.py)."""
from __future__ import annotations

import json
import os
import pickle
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cococ.cli import main

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "runtime"))
from test_explore import teacher  # noqa: E402

SOLVER = 'base_lr: 0.02\nmomentum: 0.9\nmax_iter: 8\nlr_policy: "fixed"\nrandom_seed: 3\n'


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    from cococ.ir.printer import save_ir
    d = tmp_path_factory.mktemp("net")
    g, _ = teacher()
    save_ir(g, d / "net.ir")
    (d / "solver.prototxt").write_text(SOLVER)
    (d / "sub.json").write_text(json.dumps([[0.0, 0.0], [0.75, 0.75], [0.5, 0.0], [0.0, 0.5], [0.5, 0.5]]))
    return d


def argv(d, out, *extra):
    return ["prune", str(d / "net.ir"), "--subspace", str(d / "sub.json"), "--objective",
            "min ModelSize constraint Accuracy >= 0.99", "--solver", str(d / "solver.prototxt"),
            "--data", "digits", "--workers", "1", "--no-progress", "-o", str(out), *extra]


def rows(out):
    con = sqlite3.connect(out / "run.sqlite")
    try:
        return sorted(con.execute("SELECT mode, idx, accuracy FROM evaluations").fetchall())
    finally:
        con.close()


def test_prune_writes_network_and_report(net, tmp_path):
    out = tmp_path / "run"
    obj = "min ModelSize constraint Accuracy >= 0.1"
    a = argv(net, out, "--baseline")
    a[a.index("min ModelSize constraint Accuracy >= 0.99")] = obj
    assert main(a) == 0
    for f in ("pruned.ir", "pruned.npz", "pruned.onnx", "pruned.safetensors", "report.json", "report.md",
              "accuracy_vs_size.png"):
        assert (out / f).exists(), f
    rep = json.loads((out / "report.json").read_text())
    assert rep["table3"]["#configs comp"] == 1 and rep["table3"]["answer comp"] == [0.75, 0.75]
    import cococ
    g = cococ.load(out / "pruned.ir")
    assert sum(p.type.size for l in g.layers for p in l.params.values()) < rep["full_size"]
    assert main(a) == 1          # the folder holds a run: refuses without --resume


def test_kill9_then_resume(net, tmp_path):
    ref = tmp_path / "ref"
    main(argv(net, ref, "--baseline"))
    out = tmp_path / "killed"
    p = subprocess.Popen([sys.executable, "-m", "cococ", *argv(net, out, "--baseline")], cwd=ROOT,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.time()
    while time.time() - t0 < 120:
        if (out / "run.sqlite").exists():
            try:
                if len(rows(out)) >= 3:
                    break
            except sqlite3.OperationalError:
                pass
        time.sleep(0.2)
    p.send_signal(signal.SIGKILL)
    p.wait()
    before = rows(out)
    assert 3 <= len(before) < len(rows(ref))
    main(argv(net, out, "--baseline", "--resume"))
    after = rows(out)
    assert [r[:2] for r in after] == [r[:2] for r in rows(ref)]          # none lost, none twice
    assert all(r in after for r in before)                               # finished ones not redone
    assert json.loads((out / "report.json").read_text())["table3"]["answer comp"] == \
        json.loads((ref / "report.json").read_text())["table3"]["answer comp"]


def test_malicious_pickle_subspace_is_refused(net, tmp_path, capsys):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    bad = tmp_path / "sub.pkl"
    bad.write_bytes(pickle.dumps([[0.5, 0.5], Evil()]))
    a = argv(net, tmp_path / "run")
    a[a.index("--subspace") + 1] = str(bad)
    assert main(a) == 1
    assert "refusing" in capsys.readouterr().err
    assert not marker.exists() and not (tmp_path / "run").exists()


def test_ray_without_cluster_is_a_clean_error(net, tmp_path, capsys):
    """Nothing listens at the address: refused at once with one line (`ray.init` alone would
    retry for minutes), before anything is trained."""
    pytest.importorskip("ray", reason="ray is the optional [ray] extra (make setup installs it)")
    from cococ.runtime.explore.ray_cluster import free_port
    assert main(argv(net, tmp_path / "run", "--executor", "ray", "--address", f"127.0.0.1:{free_port()}")) == 1
    err = capsys.readouterr().err
    assert "no Ray cluster at 127.0.0.1:" in err and "Traceback" not in err
    assert not (tmp_path / "run" / "run.sqlite").exists()
    assert main(argv(net, tmp_path / "run", "--executor", "ray", "--address", "head-without-port")) == 1
    assert "expected auto or HOST:PORT" in capsys.readouterr().err


def test_ray_not_installed_is_a_clean_error(net, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)          # `import ray` raises ImportError
    assert main(argv(net, tmp_path / "run", "--executor", "ray")) == 1
    err = capsys.readouterr().err
    assert "--executor ray needs the 'ray' package" in err and "Traceback" not in err


def test_early_stop_is_shown_and_can_be_turned_off(net, tmp_path, capsys):
    """The search stops hopeless candidates by default and says so; --no-early-stop trains all;
    the stop records reach report.json."""
    solver = net / "solver_tests.prototxt"
    solver.write_text(SOLVER.replace("max_iter: 8", "max_iter: 8\ntest_interval: 2"))
    for flag, on in ((), True), (("--no-early-stop",), False):
        out = tmp_path / ("on" if on else "off")
        a = argv(net, out, "--baseline", "--early-stop-margin", "0", *flag)
        a[a.index(str(net / "solver.prototxt"))] = str(solver)
        assert main(a) == 2                            # 0.99 is out of reach in 8 iterations
        text = capsys.readouterr().out
        assert f"early stop {'on' if on else 'off'}: comp:" in text and "fine-tuning iterations run" in text
        rep = json.loads((out / "report.json").read_text())
        stops = [e["stop"] for m in ("base", "comp") for e in rep["evaluations"][m]]
        assert all(s == "full" for s in stops) != on, stops      # on: some stopped; off: none
        assert rep["table3"]["stopped early base"] is not None
    with pytest.raises(SystemExit):
        main(argv(net, tmp_path / "bad", "--early-stop-margin", "x"))
    assert main(argv(net, tmp_path / "neg", "--early-stop-margin", "-0.1")) == 1
    assert "--early-stop-margin -0.1: must be at least 0" in capsys.readouterr().err
