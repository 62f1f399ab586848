"""int8 sparse FC and conv kernels on the emulated Cortex-M4: csr and simd_group of width 2 and 4.

A pruned int8 FC or conv layer runs the sparse kernel of its format when it is faster (measured on the
emulator, or read from the int8 break-even table without arm-none-eabi-gcc); its output must
equal the dense int8 kernel's on the same quantized weights bit for bit (integer sums are
exact, and both end in the same requantisation).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from cococ import passes
from cococ.backends.build import build
from cococ.backends.kernels.choice import INT8_WIDTHS, dense_reason, estimate, int8_width, table
from cococ.ir.builder import GraphBuilder
from cococ.ir.verify import infer_shapes

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_sparse_build import densified, mlp, needs_gcc  # noqa: E402


INT8_IO = {"io": "int8"}


def _fc_kernels(report) -> dict[str, str]:
    return {s["layers"][0]: s["kernel"] for s in report["steps"] if s["op"].startswith("dense")}


@pytest.mark.slow  # ~40 s at load 9 on 2 cores: three emulated comparison images and two builds
@needs_gcc
def test_m4_int8_sparse_fc_equals_dense_int8_bit_for_bit():
    g = passes.run(mlp((192, 128, 96, 10)), "prune-weights{sparsity=0.92,layers=[fc1]}")
    g = passes.run(g, "simd-group{sparsity=0.9,width=4,layers=[fc2]}")
    g = passes.run(g, "simd-group{sparsity=0.95,width=2,layers=[fc3]}")
    # int8 I/O: fc3 is the last layer, and a dense last layer of a float-output int8 build ends in
    # float32 (i8wide.float_tail) where the sparse one requantises: compare the int8 outputs
    art = build(g, "arm-m4", quantize="int8", target_options=INT8_IO)
    kernels = _fc_kernels(art.report)
    assert kernels == {"fc1": "csr", "fc2": "simd_group", "fc3": "simd_group"}, (kernels, art.report["sparse"])
    src = (art.dir / "kernels.c").read_text()
    assert "csr (MLA) int8" in src and "simd_group w4 (SXTB16 + SMLAD) int8" in src
    assert "simd_group w2 (SXTB16 + SMLAD) int8" in src
    for c in art.report["sparse"]:  # measured on the emulator, the int8 table quoted for context
        assert c["basis"].startswith("emulated") and c["ratio"] < 1 and c["breakeven"] is not None
    dense = build(densified(g), "arm-m4", quantize="int8", target_options=INT8_IO)
    assert set(_fc_kernels(dense.report).values()) == {"dense"}
    assert art.report["weight_bytes"] < dense.report["weight_bytes"]
    v = g.inputs[0]
    for seed in (1, 2):
        x = {v.name: np.random.default_rng(seed).standard_normal(v.type.shape).astype(np.float32)}
        y, yd = art.run(x), dense.run(x)
        for name in yd:
            assert np.array_equal(y[name], yd[name]), name


def _conv_net(c=8, o=16, pad=1):
    rng = np.random.default_rng(0)
    b = GraphBuilder("c")
    y = b.input("x", (1, c, 9, 9))
    y = b("conv2d", "conv1", y, {"out_channels": o, "kernel": [3, 3], "stride": [1, 1], "pad": [pad] * 4,
                                 "dilation": [1, 1], "groups": 1},
          {"weight": (rng.standard_normal((o, c, 3, 3)) * 0.2).astype(np.float32),
           "bias": (rng.standard_normal(o) * 0.1).astype(np.float32)})
    y = b("relu", "relu1", y)
    g = b.graph(y)
    infer_shapes(g)
    return g


SLOW = pytest.mark.slow  # 7-10 s each at load 9 on 2 cores (two builds, one comparison image)


@needs_gcc
@pytest.mark.parametrize("prune", ["prune-weights{sparsity=0.97}",
                                   pytest.param("simd-group{sparsity=0.95,width=4}", marks=SLOW),  # padded
                                   pytest.param("simd-group{sparsity=0.97,width=2}", marks=SLOW)])
def test_m4_int8_sparse_conv_equals_dense_int8_bit_for_bit(prune):
    g = passes.run(_conv_net(pad=1 if "width=4" in prune else 0), prune)
    art = build(g, "arm-m4", quantize="int8")
    steps = {s["layers"][0]: s["kernel"] for s in art.report["steps"] if s["layers"]}
    dense = build(densified(g), "arm-m4", quantize="int8")
    v = g.inputs[0]
    x = {v.name: np.random.default_rng(1).standard_normal(v.type.shape).astype(np.float32)}
    y, yd = art.run(x), dense.run(x)
    for name in yd:
        assert np.array_equal(y[name], yd[name]), name
    assert steps["conv1"] != "dense"


def test_int8_odd_width_stays_dense_with_a_reason():
    g = passes.run(mlp((64, 16, 10)), "simd-group{sparsity=0.9,width=8,layers=[fc1]}")
    assert "groups of 2 or 4" in dense_reason(g.layer("fc1"), "arm-m4", "int8")
    g = passes.run(mlp((64, 16, 10)), "simd-group{sparsity=0.9,width=4,layers=[fc1]}")
    assert dense_reason(g.layer("fc1"), "arm-m4", "int8") == ""
    assert "(width 2)" in dense_reason(g.layer("fc1"), "arm-m4", "q15")  # q15 unchanged
    g = passes.run(_conv_net(), "prune-weights{sparsity=0.9}")
    assert dense_reason(g.layer("conv1"), "arm-m4", "int8") == ""


def test_int8_table_chooses_the_width_and_the_estimate_reads_it():
    for w in INT8_WIDTHS:
        sp, ratio, src = table("arm-m4", "simd_group", "mv", "int8", w)
        assert src == "sparse-breakeven-int8-m4.json" and ratio[0] > 1 > ratio[-1]
    assert int8_width("arm-m4") == 4  # SXTB16 on words of four pays more than on halfword pairs
    g = passes.run(mlp((64, 16, 10)), "simd-group{sparsity=0.3,width=4,layers=[fc1]}")
    p = g.layer("fc1").params["weight"]
    low = estimate("fc1", p, "arm-m4", "mv", "int8")
    assert low.kernel == "dense" and "int8-m4" in low.basis and "kept dense" in low.reason
    g = passes.run(mlp((64, 16, 10)), "simd-group{sparsity=0.95,width=4,layers=[fc1]}")
    high = estimate("fc1", g.layer("fc1").params["weight"], "arm-m4", "mv", "int8")
    assert high.kernel == "simd_group" and high.ratio < 1
    # the q15 table is still what a q15 build reads
    assert table("arm-m4", "simd_group", "mv", "q15", 2)[2] == "sparse-breakeven-m4.json"


@needs_gcc
def test_m4_int8_low_sparsity_keeps_dense_and_names_the_better_width():
    g = passes.run(mlp((64, 32, 10)), "simd-group{sparsity=0.3,width=2,layers=[fc1]}")
    art = build(g, "arm-m4", quantize="int8")
    assert _fc_kernels(art.report)["fc1"] == "dense"
    msg = [w for w in art.report["warnings"] if w.startswith("layer fc1: simd_group at 30% sparsity is slower")]
    assert len(msg) == 1 and "int8 simd_group width 4 breaks even earlier" in msg[0] and "kept dense" in msg[0]


@pytest.mark.slow  # ~15 s at load 9 (the lowering generates every kernel's C through TVM)
def test_int8_without_the_emulator_the_int8_table_decides(monkeypatch):
    """Without arm-none-eabi-gcc an int8 build's FC layers read the int8 table (not the q15 one)."""
    from cococ.backends.mcu import sparse
    from cococ.backends.mcu.lower import lower
    monkeypatch.setattr(sparse, "m4_available", lambda: False)
    g = passes.run(mlp((64, 32, 10)), "simd-group{sparsity=0.95,width=4,layers=[fc1]}")
    g = passes.run(g, "simd-group{sparsity=0.3,width=4,layers=[fc2]}")
    prog = lower(passes.run(g, "quantize{dtype=int8}"), "int8")
    got = {c["layer"]: (c["kernel"], c["basis"]) for c in prog.choices}
    assert got == {"fc1": ("simd_group", "estimated (sparse-breakeven-int8-m4.json)"),
                   "fc2": ("dense", "estimated (sparse-breakeven-int8-m4.json)")}
