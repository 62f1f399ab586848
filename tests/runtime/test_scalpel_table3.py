"""benchmarks/scalpel_table3.py --data mnist (issue 15 item 3): the quick path runs every piece of
the MNIST table (--prune auto, magnitude and node pruning, q15 and int8 M4 builds of dense and --prune auto) on
LeNet-300-100, decides on the validation split, saves its JSON and renders it again from that
file. The full run is the benchmark itself (docs/performance.md)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "scalpel_table3.py"


@pytest.mark.slow
def test_quick_mnist_table_decides_on_validation_and_renders(tmp_path):
    """50 s to 4 minutes on the shared 2-core machine (load 7 to 13): MNIST load, 4 M4 builds and emulations."""
    out = tmp_path / "r.json"
    r = subprocess.run([sys.executable, str(SCRIPT), "--data", "mnist", "--quick", "--models", "lenet300",
                        "--no-x86", "--no-write", "--out", str(out)], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    data = json.loads(out.read_text())
    (res,) = data["results"]
    assert res["key"] == "lenet300" and "5000 validation, 10000 test" in res["split"]
    assert res["test_before"] > 0.97 and res["val_before"] > 0.97
    auto, mag, node = res["scalpel"][0], res["traditional"], res["node"]
    for m in (auto, mag, node):   # the floor holds on the split that took the decisions
        assert m["val_after"] >= res["val_before"] - data["args"]["max_drop"] / 100 - 1e-9
        assert 0 < m["size"] <= 1.0 + 1e-9
    for m in (res["built_dense"], auto["m4"]):
        assert m["q15"]["cycles"] > 0 and m["int8"]["cycles"] > 0, m
    assert mag["m4"]["q15"] == {"error": "not built (--quick)"}
    assert set(node["channels"]) == {"ip1", "ip2"}
    assert "| LeNet-300-100 | `--prune auto` (simd_group w=2) | 0 |" in r.stdout
    assert "Scalpel Table 4" in r.stdout and "x86 minimum / median: LeNet-300-100: not timed" in r.stdout

    again = subprocess.run([sys.executable, str(SCRIPT), "--data", "mnist", "--render", "--from", str(out),
                            "--no-write"], capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.split("Whole run")[0] == r.stdout.split("Whole run")[0]

    # one model's methods run in two processes (--methods) merge into the same table
    parts = []
    for i, keep in enumerate((("scalpel",), ("traditional", "node"))):
        part = json.loads(json.dumps(data))
        p = part["results"][0]
        p["scalpel"] = p["scalpel"] if "scalpel" in keep else []
        for k in ("traditional", "node"):
            if k not in keep:
                p.pop(k)
        parts.append(tmp_path / f"part{i}.json")
        parts[-1].write_text(json.dumps(part))
    merged = subprocess.run([sys.executable, str(SCRIPT), "--data", "mnist", "--render", "--from", *map(str, parts),
                             "--no-write"], capture_output=True, text=True, timeout=300)
    assert merged.returncode == 0, merged.stderr[-3000:]
    assert merged.stdout.split("Whole run")[0] == r.stdout.split("Whole run")[0]


def test_render_needs_the_files_to_merge():
    r = subprocess.run([sys.executable, str(SCRIPT), "--data", "mnist", "--render", "--no-write"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "--data mnist --render needs --from FILE" in r.stderr


@pytest.mark.parametrize("flags, section", [
    ([], "scalpel-table3"),
    (["--data", "mnist", "--from", str(ROOT / "docs" / "benchmarks" / "scalpel-table3-mnist.json")],
     "scalpel-table3-mnist")])
def test_docs_sections_are_what_the_renderers_make_of_the_saved_json(flags, section):
    """benchmarks/scalpel_tables_render.py renders both Table 3 sections: from the JSON each run
    saved beside docs/performance.md it gives back the published section word for word (a few
    seconds: no training, no build)."""
    r = subprocess.run([sys.executable, str(SCRIPT), "--render", "--no-write", *flags], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    docs = (ROOT / "docs" / "performance.md").read_text()
    published = docs.split(f"<!-- section: {section} -->\n")[1].split("\n\n_Machine:")[0]
    assert r.stdout.strip() == published
