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
    """66 s at load 4-5 on the shared 2-core machine (about 2.5 minutes at load 9): pre-training,
    curves, two Table 2s and a Table 3 at tiny scale, through 2 worker processes, then a rerun
    that reuses every part."""
    r = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--no-write", "--workers", "2",
                        "--work", str(tmp_path)], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "### (b) Table 2, rates {0.5, 0.7, 0.9}" in r.stdout and "### (c) Table 3, subspace of 4" in r.stdout
    state = json.loads((tmp_path / "results.json").read_text())
    parts = {k.split(" {")[0]: v["result"] for k, v in state.items()}
    assert set(parts) == {"pretrain", "curves", "table2 set 0", "table2 set 1", "table3"}
    for recs in parts["curves"]:
        for rec in recs:
            assert [it for it, _ in rec["default"]["curve"]] == [0, 3, 6]
    assert len(parts["table2 set 0"]) == 3 and all(0 <= n["block"]["init"] <= 1 for n in parts["table2 set 0"])
    assert [row["alpha"] for row in parts["table3"]["rows"]] == [-0.01, 0.0, 0.01, 0.02]
    again = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--no-write", "--workers", "2",
                            "--work", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and again.stdout.count("reused from") == 5   # nothing recomputed
