"""`cococ.build(graph, target)` builds what `cococ build` builds for the same inputs: the target's
default pipeline (canonicalize) runs first unless `pipeline=` says otherwise. The API used
to skip it, so a BatchNorm net's batchnorm and scale ran as float32 steps between quantize and
dequantize on the M4 (examples/ir/bn_net.ir, q15: 104,913 estimated cycles against the CLI's 76,705)."""
from __future__ import annotations

from pathlib import Path

import cococ
from cococ.ir.printer import print_graph

ROOT = Path(__file__).resolve().parents[2]
BN_NET = ROOT / "examples" / "ir" / "bn_net.ir"


def sources(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(Path(d).glob("*.[ch]"))}


def test_api_builds_what_the_cli_builds(cli, tmp_path):
    rc, _, err = cli("build", "--target=arm-m4", BN_NET, "--quantize", "q15", "-o", "cli")
    assert rc == 0, err
    g = cococ.load(BN_NET)
    before = print_graph(g, "hash")
    art = cococ.build(g, "arm-m4", quantize="q15", out_dir=tmp_path / "api")
    assert print_graph(g, "hash") == before                      # the caller's graph is left as it is
    assert [l.op for l in art.graph.layers if l.op in ("batchnorm", "scale", "dropout")] == []
    assert sources(tmp_path / "api") == sources(tmp_path / "cli") != {}


def test_api_pipeline_empty_runs_no_pass(tmp_path):
    art = cococ.build(cococ.load(BN_NET), "arm-m4", pipeline="", out_dir=tmp_path / "raw")
    assert [l.op for l in art.graph.layers if l.op in ("batchnorm", "scale")] == ["batchnorm", "scale"]
    art = cococ.build(cococ.load(BN_NET), "arm-m4", pipeline="canonicalize{fold_scale=false}", out_dir=tmp_path / "p")
    assert [l.op for l in art.graph.layers if l.op in ("batchnorm", "scale")] == ["scale"]


def test_x86_default_pipeline_folds_batchnorm_and_computes_the_same(tmp_path):
    """x86 runs canonicalize by default too (onnxruntime folds BatchNorm at load time as well): the
    conv's epilogue is one add, not batchnorm + scale + bias as three per-channel steps."""
    import numpy as np

    from cococ.ir.builder import GraphBuilder
    from cococ.ir.interpreter import run
    rng = np.random.default_rng(0)
    w = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    b = GraphBuilder("conv_bn")
    x = b.input("x", [1, 3, 8, 8])
    y = b("conv2d", "c", x, {"out_channels": 4, "kernel": [3, 3], "pad": [1, 1, 1, 1]},
          {"weight": w(4, 3, 3, 3), "bias": w(4)})
    y = b("batchnorm", "bn", y, {"eps": 1e-5}, {"mean": w(4), "var": np.abs(w(4)) + 0.5, "scale": w(4), "bias": w(4)})
    g = b.graph(b("relu", "r", y))
    art = cococ.build(g, "x86", out_dir=tmp_path / "x86")
    assert [l.op for l in art.graph.layers if l.op != "input"] == ["conv2d", "relu"]
    xin = w(1, 3, 8, 8)
    np.testing.assert_allclose(art.run({"x": xin})["r"], run(g, {"x": xin})["r"], rtol=1e-5, atol=1e-5)
