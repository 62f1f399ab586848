"""`--executor ray` on a two-node Ray cluster started on this machine (loopback only): the same
blocks, answer and accuracies as the local executor; a worker killed mid-search changes nothing;
a driver killed with -9 resumes without losing or repeating an evaluation; `cococ prune
--executor ray --address HOST:PORT` from a fresh process gives the `--executor local` answer.

The threshold is put midway between two candidates' accuracies of a local, exhaustive run, so no
candidate sits at it: an exact-threshold tie cannot make the answer flaky. Marked `slow` (CI
runs them: ~1.5 min together on a shared 2-core machine, most of it starting Ray).
"""
from __future__ import annotations

import json
import os
import pickle
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from cococ.frontend.objective import parse_objective
from cococ.runtime.explore import explore, replay
from tests.runtime.test_explore import CONFIGS, solver, teacher

pytest.importorskip("ray", reason="ray is the optional [ray] extra (make setup installs it)")
pytestmark = pytest.mark.slow
torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[2]
NEVER = "min ModelSize constraint Accuracy >= 1.01"      # no candidate meets it: every one runs


def run(tmp, full, objective, **kw):
    kw.setdefault("steps", 8)
    kw.setdefault("pretrain_steps", 8)
    return explore(full, CONFIGS, parse_objective(objective), solver(), "digits", tmp, progress=False, **kw)


@pytest.fixture(scope="module")
def cluster():
    """`ray start --head` + `ray start --address` on 127.0.0.1, one CPU each; stopped (its own
    processes only) at the end."""
    import ray

    from cococ.runtime.explore.ray_cluster import LocalCluster, use_loopback
    use_loopback()
    cl = LocalCluster(nodes=2, cpus=1).start()
    try:
        ray.init(address=cl.address, log_to_driver=False)
        assert cl.wait_nodes() == 2
        assert {n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"]} == {"127.0.0.1"}
        yield cl
    finally:
        ray.shutdown()
        cl.stop()


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    """The teacher, an exhaustive local run (every candidate of both modes) and a threshold
    midway between two accuracies, met first by a candidate after the first in the order."""
    full, _ = teacher()
    tmp = tmp_path_factory.mktemp("local")
    ref = run(tmp / "ref", full, NEVER, baseline=True)
    accs = {(s.mode, e["idx"]): e["accuracy"] for s in (ref.comp, ref.base) for e in s.evaluated}
    levels = sorted(set(accs.values()))
    for lo, hi in zip(levels, levels[1:]):
        t = (lo + hi) / 2
        ans = {s.mode: replay(parse_objective(f"min ModelSize constraint Accuracy >= {t!r}"), ref.statics,
                              s.evaluated)["answer"] for s in (ref.comp, ref.base)}
        if all(ans.values()) and ref.base.order.index(ans["base"]["idx"]) >= 1:
            return full, ref, accs, t, {m: a["idx"] for m, a in ans.items()}, tmp / "ref"
    pytest.fail(f"no threshold separates the candidates (the runs are seeded, so this is a change "
                f"in training, not noise): {accs}")


def rows(run_dir):
    con = sqlite3.connect(Path(run_dir) / "run.sqlite", timeout=30)
    try:
        return con.execute("SELECT mode, idx, accuracy, worker FROM evaluations").fetchall()
    finally:
        con.close()


def same_accuracies(run_dir, accs):
    got = rows(run_dir)
    assert len(got) == len({(m, i) for m, i, *_ in got})                   # nothing twice
    for m, i, a, _ in got:
        assert a == pytest.approx(accs[(m, i)], abs=1e-6), (m, i)
    return got


def test_two_node_cluster_same_blocks_answer_accuracies(cluster, local, tmp_path):
    full, ref, accs, t, want, ref_dir = local
    r = run(tmp_path / "ray", full, f"min ModelSize constraint Accuracy >= {t!r}", baseline=True,
            executor="ray", address=cluster.address, workers=2)
    assert {"comp": r.comp.answer["idx"], "base": r.base.answer["idx"]} == want
    got = same_accuracies(tmp_path / "ray", accs)
    assert len({w for *_, w in got}) == 2                                   # both nodes evaluated
    # pre-training groups ran as Ray tasks: the same blocks, recorded in the run database
    from cococ.runtime.blocks import BlockStore, teacher_hash
    a = BlockStore(ref_dir / "blocks", teacher_hash(full))
    b = BlockStore(tmp_path / "ray" / "blocks", teacher_hash(full))
    assert a.keys() == b.keys() and a.keys()
    for k in a.keys():
        x, y = a.get(k), b.get(k)
        assert x.keys() == y.keys() and all(np.allclose(x[n], y[n], atol=1e-6) for n in x)
    con = sqlite3.connect(tmp_path / "ray" / "run.sqlite")
    assert sorted(k for k, in con.execute("SELECT key FROM blocks")) == a.keys()
    con.close()


def test_worker_killed_mid_search_changes_nothing(cluster, local, tmp_path):
    """A watcher thread kills -9 the first Ray worker it sees evaluating a candidate (its
    process title is `ray::_evaluate` while it runs one); Ray retries the task on a new worker."""
    full, ref, accs, t, want, _ = local
    killed, done = [], threading.Event()

    def watch():
        while not done.is_set() and not killed:
            busy = [p for p in cluster.processes() if _title(p) == "ray::_evaluate"]
            if busy:
                os.kill(busy[0].pid, signal.SIGKILL)
                killed.append(busy[0].pid)
            else:
                done.wait(0.01)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        r = run(tmp_path / "kill", full, f"min ModelSize constraint Accuracy >= {t!r}", comp=False,
                baseline=True, executor="ray", address=cluster.address, workers=2, exhaustive=True)
    finally:
        done.set()
        watcher.join()
    assert killed                                                           # a task was running and died
    assert replay(parse_objective(f"min ModelSize constraint Accuracy >= {t!r}"), r.statics,
                  r.base.evaluated)["answer"]["idx"] == want["base"]
    got = same_accuracies(tmp_path / "kill", accs)
    assert sorted(i for m, i, *_ in got) == sorted(range(len(CONFIGS)))     # none lost, none twice


def _title(p) -> str:
    try:
        return " ".join(p.cmdline()).strip()
    except Exception:
        return ""


DRIVER = textwrap.dedent("""
    import pickle, sys
    from cococ.runtime.explore.ray_cluster import use_loopback
    use_loopback()
    sys.path.insert(0, {root!r})
    from tests.runtime.test_explore_ray import run
    full = pickle.load(open({graph!r}, "rb"))
    run({out!r}, full, {obj!r}, baseline=True, executor={executor!r}, address={address!r}, workers={workers})
""")


@pytest.mark.parametrize("executor", ["local", "ray"])
def test_resume_after_kill_9_loses_and_repeats_nothing(executor, request, local, tmp_path):
    full, ref, accs, t, want, _ = local
    address = request.getfixturevalue("cluster").address if executor == "ray" else None
    graph = tmp_path / "full.pkl"
    graph.write_bytes(pickle.dumps(full))
    out = tmp_path / "run"
    obj = f"min ModelSize constraint Accuracy >= {t!r}"
    script = DRIVER.format(root=str(Path(__file__).parents[2]), graph=str(graph), out=str(out), obj=obj,
                           executor=executor, address=address, workers=2 if executor == "ray" else 1)
    log = tmp_path / "driver.log"
    with open(log, "w") as f:
        proc = subprocess.Popen([sys.executable, "-c", script], cwd=Path(__file__).parents[2], stdout=f, stderr=f)
    try:                                    # kill -9 once the comp search has recorded an evaluation
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None:
            try:
                if (out / "run.sqlite").exists() and len(rows(out)) >= 1:
                    break
            except sqlite3.OperationalError:        # the driver is still creating the tables
                pass
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    before = rows(out)
    assert proc.returncode == -signal.SIGKILL and 1 <= len(before), log.read_text()[-3000:]
    again = []
    r = run(out, full, obj, baseline=True, executor=executor, address=address, workers=2 if address else 1,
            resume=True, on_result=lambda rec: again.append(rec["idx"]))
    after = same_accuracies(out, accs)
    assert {(m, i) for m, i, *_ in before} <= {(m, i) for m, i, *_ in after}   # nothing finished lost
    assert len(after) == len(before) + len(again)                            # nor redone
    assert {"comp": r.comp.answer["idx"], "base": r.base.answer["idx"]} == want


def test_prune_cli_ray_same_answer_as_local(cluster, local, tmp_path):
    """`cococ prune --executor ray --address HOST:PORT` in a fresh process, without the loopback
    environment the fixtures set (a user's shell has none of it), and without --workers (default:
    the cluster's CPUs); then `--executor local`: same answers, accuracies and chosen network."""
    from safetensors.numpy import load_file

    from cococ.cli import main
    from cococ.ir.printer import save_ir
    from cococ.runtime.explore.ray_cluster import LOOPBACK_ENV
    full, ref, accs, t, want, _ = local
    save_ir(full, tmp_path / "net.ir")
    s = solver()
    (tmp_path / "solver.prototxt").write_text(f"base_lr: {s.base_lr}\nmomentum: {s.momentum}\nmax_iter: 40\n"
                                              f'lr_policy: "fixed"\nrandom_seed: {s.random_seed}\n')
    (tmp_path / "sub.json").write_text(json.dumps([list(c) for c in CONFIGS]))

    def argv(out, *extra):
        return ["prune", str(tmp_path / "net.ir"), "--subspace", str(tmp_path / "sub.json"), "--objective",
                f"min ModelSize constraint Accuracy >= {t!r}", "--solver", str(tmp_path / "solver.prototxt"),
                "--steps", "8", "--pretrain-steps", "8", "--data", "digits", "--baseline", "--no-progress",
                "-o", str(tmp_path / out), *extra]

    env = {k: v for k, v in os.environ.items() if k not in LOOPBACK_ENV}
    p = subprocess.run([sys.executable, "-m", "cococ", *argv("ray", "--executor", "ray", "--address",
                                                              cluster.address)],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert "2 candidates at a time" in p.stdout                             # --workers: the cluster's CPUs
    assert main(argv("local", "--executor", "local", "--workers", "1")) == 0
    rep = {m: json.loads((tmp_path / m / "report.json").read_text())["table3"] for m in ("ray", "local")}
    for k in ("answer comp", "answer base"):
        assert rep["ray"][k] == rep["local"][k] and rep["local"][k] is not None, k
    assert tuple(rep["local"]["answer comp"]) == CONFIGS[want["comp"]]      # the in-memory search's answer
    same_accuracies(tmp_path / "local", accs)                               # the CLI ran the same search
    got = same_accuracies(tmp_path / "ray", accs)
    assert {w.split(":")[0] for *_, w in got} == {"ray"}
    a, b = (load_file(str(tmp_path / m / "pruned.safetensors")) for m in ("ray", "local"))
    assert a.keys() == b.keys() and all(np.allclose(a[k], b[k], atol=1e-6) for k in a)
