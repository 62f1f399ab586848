"""benchmarks/resnet8_codesign.py (issue 15 item 5): the shipped IC ResNet-8 files are what the
script makes from mlperf_tiny_models.ResNet8 (prototxt, ONNX with the trained weights), and its
--quick run goes through every method (dense, --prune auto, cococ prune, the combination), builds
each for arm-m4 int8 and renders the table. The full run is the benchmark (docs/performance.md)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "resnet8_codesign.py"
sys.path.insert(0, str(ROOT / "benchmarks"))

import resnet8_codesign as rc  # noqa: E402
import resnet8_model as rm  # noqa: E402


def test_shipped_prototxt_is_the_mlperf_ic_network(tmp_path):
    """About 5 s: the torch export, read back by cococ, renamed, Scale and modules added."""
    import cococ
    out = tmp_path / "ic.prototxt"
    rm.write_prototxt(out)
    assert out.read_text() == rm.NET.read_text()
    g = cococ.load(out, init="random")
    assert sorted(g.modules) == ["stack0", "stack1", "stack2"]
    convs = [l for l in g.layers if l.op == "conv2d"]
    assert [l.params["weight"].shape[0] for l in convs] == [16, 16, 16, 32, 32, 32, 64, 64, 64]
    assert [l.op for l in g.layers].count("scale") == [l.op for l in g.layers].count("batchnorm") == 7


def test_torch_keys_cover_the_module():
    import cococ
    from mlperf_tiny_models import ResNet8
    g = cococ.load(rm.NET, init="random")
    keys = {rm.torch_key(f"{l.name}/{p}") for l in g.layers for p in l.params}
    want = {k for k in ResNet8().state_dict() if not k.endswith("num_batches_tracked")}
    assert keys == want


@pytest.mark.skipif(not rm.ONNX.exists(), reason="the trained ONNX is written by --export-onnx")
def test_shipped_onnx_matches_the_trained_prototxt():
    """A few seconds: the ONNX (BatchNorm folded by torch) and the prototxt + safetensors give
    the same class probabilities on test images."""
    import cococ
    import onnxruntime as ort
    from cococ.ir.interpreter import run
    from cococ.runtime.data import load_data
    g = cococ.load(rm.NET, weights=rm.WEIGHTS)
    xs, _ = load_data("fashion-mnist", g.inputs[0].type.shape).test_arrays()
    sess = ort.InferenceSession(str(rm.ONNX), providers=["CPUExecutionProvider"])
    for x in xs[:4]:
        ref = run(g, [x[None]])[g.outputs[0].name]
        got = sess.run(None, {"input": x[None]})[0]
        np.testing.assert_allclose(got, ref, atol=1e-4)


@pytest.mark.slow
def test_quick_run_builds_every_method_and_renders(tmp_path):
    """1.5 minutes at load 6 to 8 on the shared 2-core machine, 7.5 at load 12 to 17: a
    4-filter net on a 912-image slice of Fashion-MNIST, three pruning processes (one of them
    `cococ prune`), four int8 arm-m4 builds with emulation."""
    work = tmp_path / "w"
    r = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--no-write", "--work", str(work)],
                       capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    rows = {m: json.loads((work / f"{m}.row.json").read_text()) for m in rc.METHODS}
    for m, row in rows.items():
        assert row["m4"]["cycles"] > 0 and row["m4"]["flash"] > 0 and row["m4"]["sram"] > 0, (m, row)
        assert row["m4"]["device_images"] == 3
    assert rows["filters"]["filters"]["answer"] is not None
    assert rows["combined"]["auto"] and rows["auto"]["auto"]["retrainings"] > 0
    assert "| dense int8 |" in r.stdout and "smoke run, not a result" in r.stdout
    again = subprocess.run([sys.executable, str(SCRIPT), "--render", "--no-write", "--work", str(work)],
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and again.stdout.strip() == r.stdout.strip()
