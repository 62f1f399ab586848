"""canonicalize folds batchnorm + scale into a conv whose weight is compressed (csr, simd_group):
`cococ build --quantize int8 --prune auto` prunes before the default pipeline's canonicalize
(retraining wants the batchnorm), and a batchnorm left after a pruned conv ran in float, with
float activations around it (the IC ResNet-8 then needed 160 KiB of SRAM; issue 15 item 5)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import cococ
from cococ.ir.formats import compress, decompress
from cococ.ir.interpreter import run
from cococ.passes import run as run_passes
from cococ.passes.pipeline import parse_pipeline

NET = Path(__file__).resolve().parents[2] / "examples" / "ic_resnet8" / "ic_resnet8.prototxt"


@pytest.mark.parametrize("fmt,width", [("simd_group", 4), ("csr", 1)])
def test_batchnorm_folds_into_a_compressed_conv(fmt, width):
    g = cococ.load(NET, init="random", seed=1)
    rng = np.random.default_rng(0)
    for name in ("stack0_conv1", "stack2_conv2"):
        p = g.layer(name).params["weight"]
        w = p.dense()
        rows = w.shape[0]
        cols = w.size // rows
        keep = rng.random((rows, -(-cols // width)) if fmt == "simd_group" else (rows, cols)) < 0.3
        g.layer(name).params["weight"] = compress(p, fmt, width=width, keep=keep)
    x = rng.standard_normal((1, 3, 32, 32)).astype(np.float32)
    before = run(g, [x])[g.outputs[0].name]
    stored = {n: decompress(g.layer(n).params["weight"]) != 0 for n in ("stack0_conv1", "stack2_conv2")}
    g = run_passes(g, parse_pipeline("canonicalize"))
    assert not [l.name for l in g.layers if l.op in ("batchnorm", "scale")]
    for n, nz in stored.items():
        p = g.layer(n).params["weight"]
        assert p.format == fmt and ((decompress(p) != 0) <= nz).all()   # the structure is kept
    np.testing.assert_allclose(run(g, [x])[g.outputs[0].name], before, rtol=1e-4, atol=1e-6)
