"""Issue 16: the ResNet-20 teacher on Fashion-MNIST (examples/resnet20) and the §7 protocol at
that scale (benchmarks/wootz_fashion.py). The full run is the benchmark itself
(docs/performance.md); here its --quick mode runs every part at tiny scale."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import cococ
from cococ.ir.verify import infer_shapes
from cococ.runtime.data import load_data
from cococ.runtime.explore.evaluate import graph_cost

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "wootz_fashion.py"
EXAMPLE = ROOT / "examples" / "resnet20"
sys.path.insert(0, str(ROOT / "benchmarks"))

from wootz_fashion import subset, within  # noqa: E402
from wootz_fashion_t3 import ALPHAS, at_budget  # noqa: E402


def test_resnet20_has_nine_modules_and_resnet20_size():
    g = cococ.load(EXAMPLE / "resnet20.prototxt", init="random")
    assert g.modules == [f"res{s}{m}" for s in (2, 3, 4) for m in "abc"]
    params, macs = graph_cost(g)
    assert (params, macs) == (273754, 31329280)   # ResNet-20's ~270k (+ two 1x1 projections)


def test_shipped_teacher_is_trained():
    """The shipped weights load and classify Fashion-MNIST (first 500 test images; ~2 s)."""
    g = cococ.load(EXAMPLE / "resnet20.prototxt", weights=EXAMPLE / "resnet20.safetensors")
    infer_shapes(g)
    from wootz_fashion import accuracy
    test = subset(load_data("fashion-mnist", g.inputs[0].type.shape), 500, "test")
    assert accuracy(g, test) > 0.85


def test_within_one_point_needs_the_curve_to_stay():
    curve = [[0, 0.1], [10, 0.80], [20, 0.70], [30, 0.795], [40, 0.80], [50, 0.81]]
    assert within(curve) == 30          # 20's dip counts: the curve has not stayed yet
    assert within([[0, 0.5]]) == 0
    assert within([[0, 0.1], [10, 0.9], [20, 0.9], [30, 0.9]]) == 10


@pytest.mark.slow
def test_quick_runs_every_part(tmp_path):
    """66 s at load 4-5 on the shared 2-core machine (262-277 s at load 7-11): pre-training,
    curves, two Table 2s, a Table 3 (with its replays) and its cost measurement at tiny scale,
    through 2 worker processes, then a rerun that reuses every part."""
    r = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--no-write", "--workers", "2",
                        "--work", str(tmp_path)], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "### (b) Table 2, rates {0.5, 0.7, 0.9}" in r.stdout and "### (c) Table 3, subspace of 4" in r.stdout
    state = json.loads((tmp_path / "results.json").read_text())
    parts = {k.split(" {")[0]: v["result"] for k, v in state.items()}
    assert set(parts) == {"pretrain", "curves", "table2 set 0", "table2 set 1", "table3", "cost"}
    assert parts["cost"]["blocks"] > 0 and parts["cost"]["default_cpu"] > 0 and parts["cost"]["pretrain_cpu"] > 0
    for recs in parts["curves"]:
        for rec in recs:
            assert [it for it, _ in rec["default"]["curve"]] == [0, 3, 6]
    assert len(parts["table2 set 0"]) == 3 and all(0 <= n["block"]["init"] <= 1 for n in parts["table2 set 0"])
    t3 = parts["table3"]
    assert [row["alpha"] for row in t3["rows"]] == list(ALPHAS)
    assert set(t3["sweep"]) == {"2", str(t3["steps"])} and t3["sweep"][str(t3["steps"])] == t3["rows"]
    assert len(t3["early stop"]) == len(ALPHAS) and len(t3["records"]["comp"]) == 4
    assert "### (d) Table 3 at shorter fine-tuning budgets" in r.stdout and "### (g) Figures 6 and 7" in r.stdout
    again = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--no-write", "--workers", "2",
                            "--work", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and again.stdout.count("reused from") == 6   # nothing recomputed


def test_at_budget_reads_the_curve_and_scales_seconds():
    """A k-iteration fine-tuning's record from a longer run's curve (fixed lr: the same trajectory)."""
    rec = {"idx": 0, "accuracy": 0.9, "metrics": {"Accuracy": 0.9, "ModelSize": 10}, "seconds": 40.0,
           "curve": [[0, 0.1], [25, 0.6], [50, 0.8], [100, 0.9]]}
    got = at_budget([rec], 50, 100)[0]
    assert (got["accuracy"], got["metrics"]["Accuracy"], got["seconds"]) == (0.8, 0.8, 20.0)
    assert got["curve"] == [[0, 0.1], [25, 0.6], [50, 0.8]] and got["metrics"]["ModelSize"] == 10
    assert at_budget([rec], 100, 100)[0]["accuracy"] == 0.9
    assert at_budget([rec], 30, 100) == []          # no test at 30: no record (not a guess)


def test_rows_of_a_cut_off_run_say_what_the_records_bound():
    """--table3-partial: a search whose records end before its answer gives "> m" configs and a
    bounded speedup, not a guess (synthetic records, no training)."""
    from wootz_fashion_render import table3_rows
    from wootz_fashion_t3 import rows_for

    from cococ.frontend.objective import parse_objective
    statics = {i: {"ModelSize": 10 * (i + 1), "MACs": 100} for i in range(4)}
    rec = lambda i, acc: {"idx": i, "params": 10 * (i + 1), "accuracy": acc, "seconds": 10.0,  # noqa: E731
                          "metrics": {**statics[i], "Accuracy": acc}, "curve": [[0, 0.1], [4, acc]]}
    base = [rec(0, 0.5), rec(1, 0.6)]                      # cut off after 2 of 4
    comp = [rec(0, 0.7), rec(1, 0.95), rec(2, 0.9), rec(3, 0.9)]
    at = lambda alpha: parse_objective(f"min ModelSize constraint Accuracy >= {0.9 - alpha!r}")  # noqa: E731
    rows = rows_for(at, statics, base, comp, 5.0, 40, (0.0, 0.35))
    r0, r35 = rows
    assert (r0["configs comp"], r0["covered comp"], r0["size comp"]) == (2, True, 0.5)
    assert (r0["configs base"], r0["covered base"], r0["time base"]) == (2, False, 20.0)
    assert (r35["configs base"], r35["covered base"], r35["configs comp"]) == (2, True, 1)
    text = table3_rows(rows)
    assert "| +0% | 0.9 | > 2 | 2 |" in text and "≥ 0.80×" in text      # 20 s / (20 s + 5 s pre-training)
    assert "| +35% | 0.55 | 2 | 1 |" in text and "1.33×" in text          # 20 s / (10 s + 5 s)
