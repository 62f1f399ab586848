"""`--tune`: MetaSchedule really runs, its records are correct and a rebuild reuses them.

One conv + bias + relu kernel, a handful of trials (about half a minute on two shared cores).
Correctness is |y - ref| <= 1e-4 (1 + |ref|) against the reference interpreter, both for the
tuned build (best of MetaSchedule's and cococ's schedule) and for a build that is forced onto
MetaSchedule's own schedule (the folder's records with cococ's baseline record removed).
"""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from cococ.ir.core import Graph, Layer, Param, TensorType, Value
from cococ.ir.interpreter import run

TRIALS = 4


def conv_graph() -> Graph:
    rng = np.random.default_rng(0)
    x = Value("x", TensorType((1, 8, 12, 12)))
    c, r = Value("c"), Value("r")
    layers = [
        Layer("input", "x", [], [x], {"shape": [1, 8, 12, 12]}),
        Layer("conv2d", "conv", [x], [c], {"out_channels": 32, "kernel": [3, 3], "pad": [1, 1, 1, 1]},
              {"weight": Param.from_array(rng.standard_normal((32, 8, 3, 3)).astype(np.float32)),
               "bias": Param.from_array(rng.standard_normal(32).astype(np.float32))}),
        Layer("relu", "relu", [c], [r]),
    ]
    return Graph("conv", layers, [r])


def check(art, graph, x):
    y = art.run(x)["r"]
    ref = run(graph, {"x": x})["r"]
    np.testing.assert_array_less(np.abs(y - ref), 1e-4 * (1 + np.abs(ref)))


def records(folder) -> list[str]:
    return (folder / "database_tuning_record.json").read_text().splitlines()


def test_tune_records_reuse_and_correctness(tmp_path, capfd):
    from cococ.backends.tvm import build_tvm
    graph = conv_graph()
    x = np.random.default_rng(1).standard_normal((1, 8, 12, 12)).astype(np.float32)
    tdir = tmp_path / "tuning"

    art = build_tvm(graph, "x86", tune=TRIALS, tuning_dir=tdir)
    assert art.manifest["tuned_now"] == art.manifest["kernels"] == 1
    out, err = capfd.readouterr()  # MetaSchedule's logs go to the tuning folder, not the terminal
    assert "[INFO]" not in out + err and len((out + err).splitlines()) < 5, out + err
    assert any("Trial #" in f.read_text() or "Total trials" in f.read_text() for f in (tdir / "logs").iterdir())
    first = records(tdir)
    ms_records = [r for r in first if "meta_schedule." in r]
    assert ms_records, "MetaSchedule measured no candidate"
    assert len(first) > len(ms_records), "cococ's own schedule was not recorded as the baseline"
    check(art, graph, x)

    again = build_tvm(graph, "x86", tune=TRIALS, tuning_dir=tdir)  # the rebuild tunes nothing
    assert again.manifest["tuned_now"] == 0
    assert records(tdir) == first
    check(again, graph, x)

    only_ms = tmp_path / "only-metaschedule"  # MetaSchedule's best, whether or not it won
    shutil.copytree(tdir, only_ms)
    (only_ms / "database_tuning_record.json").write_text("\n".join(ms_records) + "\n")
    forced = build_tvm(graph, "x86", tuning_dir=only_ms)
    assert forced.manifest["tuned_kernels"] == 1
    check(forced, graph, x)
    assert json.loads(first[0])  # records are MetaSchedule's JSON lines


def test_broken_serialization_is_a_user_error(monkeypatch):
    """A tvm-ffi whose ToJSONGraph segfaults (0.1.15.post2 with TVM 0.27) fails --tune with the fix,
    not a crash: the check serializes in a child process."""
    import subprocess
    import tvm_ffi
    from cococ.backends.tvm import tune
    from cococ.ir.core import CococError
    tune.check_serialization.cache_clear()
    monkeypatch.setattr(tvm_ffi, "__version__", "0.1.15.post2")
    monkeypatch.setattr(tune.subprocess, "run",
                        lambda *a, **k: subprocess.CompletedProcess(a, -11, b"", b"Segfault"))
    with pytest.raises(CococError, match="apache-tvm-ffi==0.1.14.post1"):
        tune.check_serialization()
    tune.check_serialization.cache_clear()


def test_tuning_target_counts_the_usable_cores():
    """MetaSchedule is told the cores this process may run on, as the runtime pool is sized, not
    os.cpu_count(): under an affinity of one core the llvm target gets num-cores=1 (a child
    process, so this one's affinity stays; a few seconds, mostly importing TVM)."""
    import subprocess
    import sys
    code = ("import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})\n"
            "import tvm\n"
            "from cococ.backends.tvm.tune import tuning_target\n"
            "print(int(tuning_target(tvm.target.Target('llvm')).attrs['num-cores']))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split()[-1] == "1"


@pytest.mark.parametrize("winograd, tasks", [("f2", 0), ("off", 1)])
def test_scheduled_kernels_are_not_tuned(winograd, tasks):
    """A kernel the lowering already scheduled (Winograd's, `tirx.is_scheduled`) is no tuning task:
    its records would never be used. The same 3x3 conv as a direct conv is one (about 2 s)."""
    from cococ.backends.kernels.compute import LowerCtx
    from cococ.backends.tvm.build import tvm_target
    from cococ.backends.tvm.lower import lower_graph
    from cococ.backends.tvm.tune import tuning_tasks
    from cococ.ir.target import get_target
    from cococ.ir.verify import infer_shapes
    graph = conv_graph()
    infer_shapes(graph)
    mod = lower_graph(graph, LowerCtx(oc_block=16, winograd=winograd))
    assert len(tuning_tasks(mod, tvm_target(get_target("x86")))) == tasks
