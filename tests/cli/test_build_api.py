"""`cococ.build(graph, target)` builds what `cococ build` builds for the same inputs: the target's
default pipeline (canonicalize on arm-m4) runs first unless `pipeline=` says otherwise. The API used
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
