"""What `cococ prune` hands back is usable as it is: the chosen network as prototxt + safetensors
(the same graph and outputs as pruned.ir), buildable with `cococ build --target arm-m4`, and the
report with both figures; `cococ convert -o x.prototxt` writes the same pair."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import cococ
from cococ.cli import main
from cococ.ir.interpreter import run

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "cli"))
sys.path.insert(0, str(ROOT / "tests" / "frontend"))
from test_prototxt_writer import signature  # noqa: E402
from test_prune_cli import argv, net  # noqa: E402,F401  (net: the module-scoped trained-net fixture)


@pytest.fixture(scope="module")
def pruned(net, tmp_path_factory):  # noqa: F811
    out = tmp_path_factory.mktemp("prune") / "run"
    a = argv(net, out, "--baseline")
    a[a.index("min ModelSize constraint Accuracy >= 0.99")] = "min ModelSize constraint Accuracy >= 0.1"
    assert main(a) == 0
    return out


def test_prune_writes_prototxt_equal_to_ir(pruned):
    ir = cococ.load(pruned / "pruned.ir")
    pt = cococ.load(pruned / "pruned.prototxt", weights=pruned / "pruned.safetensors")
    assert signature(pt)[0] == signature(ir)[0] and signature(pt)[2] == signature(ir)[2]
    x = np.random.default_rng(0).standard_normal(ir.inputs[0].type.shape).astype(np.float32)
    a, b = run(ir, [x]), run(pt, [x])
    np.testing.assert_array_equal(next(iter(a.values())), next(iter(b.values())))


def test_prune_report_has_both_figures(pruned):
    for f in ("report.md", "report.html", "finetune_curves.png", "accuracy_vs_size.png"):
        assert (pruned / f).exists(), f
    assert (pruned / "finetune_curves.png").read_bytes()[:4] == b"\x89PNG"
    assert "finetune_curves.png" in (pruned / "report.html").read_text()


def test_build_prune_output_for_arm_m4(pruned, tmp_path):
    out = tmp_path / "m4"
    assert main(["build", str(pruned / "pruned.prototxt"), "--weights", str(pruned / "pruned.safetensors"),
                 "--target", "arm-m4", "-o", str(out)]) == 0
    from cococ.backends.artifact import load_artifact
    art = load_artifact(out)
    g = cococ.load(pruned / "pruned.prototxt", weights=pruned / "pruned.safetensors")
    x = np.random.default_rng(1).random(g.inputs[0].type.shape).astype(np.float32)
    got = next(iter(art.run([x]).values()))
    want = next(iter(run(g, [x]).values()))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_convert_to_prototxt_roundtrip(tmp_path):
    src = ROOT / "examples" / "lenet" / "lenet.prototxt"
    out = tmp_path / "lenet_copy.prototxt"
    assert main(["convert", str(src), "--weights", str(src.with_suffix(".safetensors")), "-o", str(out)]) == 0
    assert out.with_suffix(".safetensors").exists()
    g = cococ.load(src, weights=src.with_suffix(".safetensors"))
    h = cococ.load(out, weights=out.with_suffix(".safetensors"))
    assert signature(h)[0] == signature(g)[0]
    x = np.load(ROOT / "examples" / "lenet" / "digit.npy").astype(np.float32).reshape(g.inputs[0].type.shape)
    np.testing.assert_array_equal(next(iter(run(g, [x]).values())), next(iter(run(h, [x]).values())))
