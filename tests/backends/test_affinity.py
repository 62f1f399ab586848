"""cococ leaves the host process's CPU affinity alone (issue 17).

TVM binds the thread that makes its CPU pool to one core, and threads started later inherit it:
after a cococ build+run, an onnxruntime session made in the same process had its two threads on
one core (27.5 ms -> 95.9 ms). The check runs in a fresh process (`python THIS_FILE`), so the
affinity "before" is the process's own and not what earlier tests in a pytest worker left.
About 8 s of CPU, one small x86 build (26 s wall at load 12 on 2 cores).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="needs Linux CPU affinity")

RUNS = 100


def small_net():
    """Three 3x3 convs + ReLU on 32x56x56: milliseconds in onnxruntime, enough to use 2 threads."""
    from cococ.ir.core import Graph, Layer, Param, TensorType, Value
    rng = np.random.default_rng(0)
    x = Value("x", TensorType((1, 32, 56, 56)))
    layers, v = [Layer("input", "x", [], [x], {"shape": [1, 32, 56, 56]})], x
    for i in range(3):
        c, r = Value(f"c{i}"), Value(f"r{i}")
        w = (rng.standard_normal((32, 32, 3, 3)) * 0.1).astype(np.float32)
        layers.append(Layer("conv2d", f"c{i}", [v], [c], {"out_channels": 32, "kernel": [3, 3], "pad": [1, 1, 1, 1]},
                            {"weight": Param.from_array(w)}))
        layers.append(Layer("relu", f"r{i}", [c], [r], {}))
        v = r
    return Graph("affinity", layers, [v])


def ort_session(graph, threads: int):
    import onnxruntime as ort
    from cococ.backends.onnx_export import to_onnx
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    return ort.InferenceSession(to_onnx(graph).SerializeToString(), so, providers=["CPUExecutionProvider"])


def median_ms(sess, x: np.ndarray) -> float:
    feed = {sess.get_inputs()[0].name: x}
    for _ in range(3):
        sess.run(None, feed)
    times = []
    for _ in range(RUNS):
        t0 = time.perf_counter()
        sess.run(None, feed)
        times.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(times))


def paired_ratio(first, second, x: np.ndarray) -> float:
    """Median over RUNS pairs of (time of `second` / time of `first`), the two run back to back,
    in alternating order: load that comes and goes on a shared machine hits both runs of a pair
    alike (measured at load 12 on 2 cores: 0.91-1.04 between two identical sessions, where
    minimums over runs differed by up to 1.66x)."""
    feeds = [{s.get_inputs()[0].name: x} for s in (first, second)]
    for _ in range(3):
        first.run(None, feeds[0])
        second.run(None, feeds[1])
    ratios = []
    for i in range(RUNS):
        t = [0.0, 0.0]
        for k in ((0, 1) if i % 2 == 0 else (1, 0)):
            t0 = time.perf_counter()
            (first, second)[k].run(None, feeds[k])
            t[k] = time.perf_counter() - t0
        ratios.append(t[1] / t[0])
    return float(np.median(ratios))


def threads_cpus() -> dict[str, str]:
    """Every thread of this process (onnxruntime's and TVM's pools included) -> its allowed CPUs."""
    out = {}
    for task in Path("/proc/self/task").iterdir():
        for line in (task / "status").read_text().splitlines():
            if line.startswith("Cpus_allowed_list:"):
                out[task.name] = line.split(":", 1)[1].strip()
    return out


def run_child() -> dict:
    env = {k: v for k, v in os.environ.items() if k != "TVM_BIND_THREADS"}  # TVM's default: bind
    r = subprocess.run([sys.executable, __file__], capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def child() -> dict:
    """Build and run an x86 artifact between two onnxruntime timings; report affinities."""
    import tvm
    import cococ
    graph = small_net()
    x = np.random.default_rng(1).standard_normal((1, 32, 56, 56)).astype(np.float32)
    cores = len(os.sched_getaffinity(0))
    before = sorted(os.sched_getaffinity(0))
    made_before = ort_session(graph, 2)  # its worker thread has the process's own affinity
    ort_before = median_ms(made_before, x)
    art = cococ.build(graph, "x86")
    art.run(x)
    art.bench(3, x)
    in_thread = {}

    def other_thread():  # TVM's pool is per thread: a run from another thread makes a second one
        in_thread["before"] = sorted(os.sched_getaffinity(0))
        art.run(x)
        in_thread["after"] = sorted(os.sched_getaffinity(0))
    t = threading.Thread(target=other_thread)
    t.start()
    t.join()
    after = sorted(os.sched_getaffinity(0))
    # made after cococ ran, its worker thread inherits this thread's affinity then
    made_after = ort_session(graph, 2)
    made_after.run(None, {made_after.get_inputs()[0].name: x})   # its pool threads exist now
    return {"cores": cores, "before": before, "after": after, "thread": in_thread,
            "threads_cpus": threads_cpus(),
            "tvm_threads": tvm.get_global_func("runtime.NumThreads")(),
            "ort_before_ms": ort_before, "ort_after_ms": median_ms(made_before, x),
            "made_after_vs_before": [paired_ratio(made_before, made_after, x) for _ in range(3)]}


@pytest.fixture(scope="module")
def report():
    return run_child()


def test_build_and_run_keep_the_affinity(report):
    assert report["after"] == report["before"]
    assert report["thread"]["after"] == report["thread"]["before"] == report["before"]
    # the mechanism itself: no thread of the process, onnxruntime's made after cococ ran included,
    # is confined to fewer cores than the process has
    assert len(set(report["threads_cpus"].values())) == 1, report["threads_cpus"]


def test_tvm_uses_every_core(report):
    """TVM's own default is half the cores (hyper-threading): one thread on a 2-core machine."""
    assert report["tvm_threads"] == report["cores"]


def test_onnxruntime_after_cococ_is_as_fast(report):
    if report["cores"] < 2:
        pytest.skip("one core: nothing to lose")
    # After cococ ran, a session made then is timed against one made before, in pairs (before vs
    # after in time would compare different loads of a shared machine). Made while the thread was
    # pinned to one core, its 2 threads took 1.6-3.5x as long (quiet machine; ~1x at load 12).
    # Three measurements, the best counts: pinning slows every one of them, while a busy spell of
    # the other test worker on the second core (1.84 once in CI, affinity intact) hits one.
    # A busy spell can outlast one child (1.86-1.95 in all three, the whole suite beside it at
    # 2 workers; 0.5-1.0 alone): up to two more children, 10 s apart, before judging.
    best = [min(report["made_after_vs_before"])]
    while best[-1] >= 1.5 and len(best) < 3:
        time.sleep(10)
        best.append(min(run_child()["made_after_vs_before"]))
    assert min(best) < 1.5, (best, report)


@pytest.mark.slow
def test_benchmark_quick_times_each_engine_in_its_own_process(corpus, tmp_path):
    """benchmarks/x86_vs_onnxruntime.py --quick (SqueezeNet, 2 rounds): about 75 s on a loaded
    2-core machine, most of it the build. Both engines ran in every round, agree on the logits, and
    no process (driver or engine) saw its affinity change."""
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "x86_vs_onnxruntime.py"
    out = tmp_path / "quick.json"
    r = subprocess.run([sys.executable, str(script), "--quick", "--json", str(out), "--work", str(tmp_path / "work")],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["args"]["no_write"] and list(data["nets"]) == ["squeezenet"]
    net = data["nets"]["squeezenet"]
    assert len(net["rounds"]["ort"]) == len(net["rounds"]["cococ"]) == 2
    assert net["cococ"]["max_abs_diff"] <= 1e-4 * (1 + net["max_abs_logit"])
    assert 0 < net["cococ"]["ratio"] < float("inf") and net["ort"]["cpu_ms_per_run"] > 0
    assert data["machine"]["start"]["affinity"] == data["machine"]["end"]["affinity"]
    assert net["process_affinities"] == [str(data["machine"]["start"]["affinity"])]
    assert "| squeezenet |" in r.stdout


if __name__ == "__main__":
    print(json.dumps(child()))
