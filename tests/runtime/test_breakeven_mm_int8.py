"""The int8 conv break-even table on arm-m4 (issue 15 item 4; docs/pruning.md "A real CNN in int8" point 1).

An int8 conv layer is judged by the executor's int8 conv kernels (backends/kernels/data/
sparse-breakeven-mm-int8-m4.json, benchmarks/sparse_breakeven_mm_int8.py: dense int8 conv vs csr
and simd_group w2 / w4, im2col included), not by q15's matrix-matrix table (46%): the int8 dense
conv costs ~1.5 cycles/MAC and its sparse kernels need far more sparsity. The pruning cost model,
the no-gcc estimate and Scalpel read it; a kernel that never breaks even is not pruned for speed.
"""
from __future__ import annotations

import numpy as np
import pytest

import cococ.backends.kernels.choice as choice
from cococ.backends.kernels.choice import (COLUMN_INT8, INT8_WIDTHS, KernelModel, by_channels, crossing, estimate,
                                           int8_width, kernel_model, load_table, table)
from cococ.ir.builder import GraphBuilder
from cococ.ir.core import CococError
from cococ.ir.formats import compress
from cococ.ir.verify import infer_shapes

MM8 = load_table("sparse-breakeven-mm-int8-m4")
MM15 = load_table("sparse-breakeven-mm-m4")


def conv_weight(sparsity: float, width: int, o: int = 16, c: int = 16, seed: int = 0):
    """A [o, c, 3, 3] weight as simd_group of `width`, round(sparsity * groups) groups removed."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((o, c * 9)).astype(np.float32)
    groups = o * (c * 9 // width)
    keep = np.ones(groups, bool)
    keep[rng.permutation(groups)[:int(round(sparsity * groups))]] = False
    keep = keep.reshape(o, -1)
    w[~np.repeat(keep, width, axis=1)] = 0
    return compress(w.reshape(o, c, 3, 3), "simd_group", width=width)


def test_the_int8_conv_table_ships_and_is_consistent():
    assert MM8["shapes"][f"{MM8['shape'][0]}x{int(MM8['shape'][2] ** 0.5)}"]["rows"] == MM8["rows"]
    for d in [MM8] + list(MM8["shapes"].values()):
        rows = d["rows"]
        assert rows[0][0] == 0 and rows[-1][0] >= 97 and len(d["shape"]) == 3
        for r in rows:  # [sparsity%, dense, csr, w2, w4, csr/dense, w2/dense, w4/dense], one dense step
            assert r[1] == rows[0][1] and r[5:] == pytest.approx([v / r[1] for v in r[2:5]])
        sp = [r[0] / 100 for r in rows]
        for (fmt, w), col in COLUMN_INT8.items():
            key = "csr" if fmt == "csr" else f"simd_group w{w}"
            assert d["breakeven"][key] == crossing(sp, [r[col] for r in rows])
    # the table's default shape (16 channels) breaks even far above q15's matrix-matrix table
    assert min(v for v in MM8["breakeven"].values()) > MM15["breakeven"]["simd_group"] + 0.3


def test_int8_conv_layers_read_the_int8_conv_table_and_q15_its_own():
    for fmt, w in (("csr", None), ("simd_group", 2), ("simd_group", 4)):
        assert table("arm-m4", fmt, "mm", "int8", w)[2] == "sparse-breakeven-mm-int8-m4.json"
        assert table("arm-m4", fmt, "mm", "q15", w)[2] == "sparse-breakeven-mm-m4.json"
    assert table("arm-m4", "simd_group", "mv", "int8", 4)[2] == "sparse-breakeven-int8-m4.json"  # FC unchanged
    for w in INT8_WIDTHS:
        m = kernel_model("arm-m4", "conv2d", "int8", w)
        assert "mm-int8" in m.source and f"width {w}" in m.source
        assert m.breakeven == MM8["breakeven"][f"simd_group w{w}"]
        assert m.ratio == [r[COLUMN_INT8[("simd_group", w)]] for r in MM8["rows"]]
    default = kernel_model("arm-m4", "conv2d", "int8")
    assert default == kernel_model("arm-m4", "conv2d", "int8", int8_width("arm-m4", "mm"))
    q15 = kernel_model("arm-m4", "conv2d", "q15")   # q15 keeps its tables
    assert q15 == kernel_model("arm-m4", "conv2d") and q15.breakeven == MM15["breakeven"]["simd_group"]
    assert q15.source.endswith("sparse-breakeven-mm-m4.json")
    assert kernel_model("arm-m4", "conv2d", "q15", 2, 64) == q15   # q15 has one conv table


def test_an_int8_conv_reads_the_shape_nearest_its_channels():
    shapes = {s["shape"][0]: s for s in MM8["shapes"].values()}
    assert set(shapes) == {16, 32, 64}
    for ch, want in ((8, 16), (16, 16), (20, 16), (24, 32), (32, 32), (48, 64), (64, 64), (512, 64)):
        assert by_channels(MM8, ch) is shapes[want], ch
        m = kernel_model("arm-m4", "conv2d", "int8", 4, ch)
        assert m.breakeven == shapes[want]["breakeven"]["simd_group w4"]
        assert m.dense_per_mac == pytest.approx(shapes[want]["rows"][0][1] / np.prod(shapes[want]["shape"]))
    # more output channels share each position's im2col: the break-even falls (measured: 86% -> 65% -> 53%)
    be = [kernel_model("arm-m4", "conv2d", "int8", 4, ch).breakeven for ch in (16, 32, 64)]
    assert be[0] > be[1] > be[2]
    fc = load_table("sparse-breakeven-int8-m4")   # one shape: every layer reads it
    assert by_channels(fc, 64) is fc


@pytest.mark.parametrize("width", INT8_WIDTHS)
def test_an_int8_conv_at_60_percent_is_estimated_no_faster_than_dense(width):
    sp, ratio, _ = table("arm-m4", "simd_group", "mm", "int8", width, 16)
    assert np.interp(0.6, sp, ratio) >= 1.0, "the measured table says int8 simd_group conv pays at 60%"
    p = conv_weight(0.6, width)
    e = estimate("conv1", p, "arm-m4", "mm", "int8")
    assert e.kernel == "dense" and e.ratio >= 1.0 and "kept dense" in e.reason
    assert "sparse-breakeven-mm-int8-m4.json" in e.basis
    m = kernel_model("arm-m4", "conv2d", "int8", width, 16)
    assert m.sparse_time(1000.0, 0.6) >= 1000.0 and not m.pays_by(0.6)
    assert m.pays_by(0.9) and kernel_model("arm-m4", "conv2d", "int8", width, 64).pays_by(0.8)
    # the same conv pruned for q15 is past q15's matrix-matrix break-even (46%): that table said sparse
    q = estimate("conv1", conv_weight(0.6, 2), "arm-m4", "mm", "q15")
    assert q.kernel == "simd_group" and q.ratio < 1.0


def test_a_missing_int8_conv_table_is_an_error_not_the_q15_table(monkeypatch):
    monkeypatch.setitem(choice.TABLES_MM_INT8, "arm-m4", "sparse-breakeven-mm-int8-gone.json")
    with pytest.raises(CococError, match=r"mm-int8-gone.json is missing.*sparse_breakeven_mm_int8\.py"):
        estimate("conv1", conv_weight(0.9, 4), "arm-m4", "mm", "int8")
    with pytest.raises(CococError, match="is missing"):
        kernel_model("arm-m4", "conv2d", "int8", 4)
    with pytest.raises(CococError, match="is missing"):
        int8_width("arm-m4", "mm")


def _conv_digits_net(seed=0):
    """digits 1x8x8 -> conv 8ch 3x3 -> relu -> flatten -> dense 10 -> softmax."""
    rng = np.random.default_rng(seed)
    b = GraphBuilder("cd")
    y = b.input("data", (1, 1, 8, 8))
    y = b("conv2d", "conv1", y, {"out_channels": 8, "kernel": [3, 3], "stride": [1, 1], "pad": [1] * 4,
                                 "dilation": [1, 1], "groups": 1},
          {"weight": (rng.standard_normal((8, 1, 3, 3)) * 0.3).astype(np.float32),
           "bias": np.zeros(8, np.float32)})
    y = b("relu", "relu1", y)
    y = b("flatten", "flat", y)
    y = b("dense", "fc", y, {"out_features": 10},
          {"weight": (rng.standard_normal((10, 512)) * 0.05).astype(np.float32), "bias": np.zeros(10, np.float32)})
    y = b("softmax", "prob", y)
    g = b.graph(y)
    infer_shapes(g)
    return g


def test_scalpel_does_not_prune_a_conv_whose_kernel_never_pays(monkeypatch):
    """A conv whose simd_group kernel is slower than dense at every measured sparsity (as the
    int8 table says for some kernels) gets no pruning step at all and a warning naming it; the
    FC layer is pruned as before."""
    import cococ.runtime.compress.scalpel as sc
    real = sc.kernel_model

    def model(target, op="dense", quant=None, width=None, channels=None):
        if op == "conv2d":
            return KernelModel(target, 1.6, [0.0, 0.97], [2.2, 1.05], None, "stub int8 conv table")
        return real(target, op, quant, width, channels)

    tried = []

    def retrain(graph, solver, ds, masks, iters, seed):
        tried.append(list(masks)[-1])
        return 1.0

    monkeypatch.setattr(sc, "kernel_model", model)
    monkeypatch.setattr(sc, "retrain", retrain)
    g, rep = sc.simd_prune(_conv_digits_net(), None, "digits", target="arm-m4", dtype="int8", steps=(0.8, 0.9),
                           policy=sc.StepPolicy(0, 1, 0))
    assert "conv1" not in tried and "fc" in tried
    lr = {l.layer: l for l in rep.layers}
    assert lr["conv1"].format == "dense" and lr["conv1"].note.startswith("not pruned: ")
    assert lr["conv1"].sparse_time == lr["conv1"].dense_time
    assert g.layer("conv1").params["weight"].format == "dense"
    warn = [w for w in rep.warnings if w.startswith("conv1:")]
    assert len(warn) == 1 and "slower than dense on arm-m4 at every measured sparsity up to 97%" in warn[0]
    assert lr["fc"].format == "simd_group"


def test_cannot_pay_follows_the_shipped_table():
    from cococ.runtime.compress.scalpel import cannot_pay
    for w in INT8_WIDTHS:
        m = kernel_model("arm-m4", "conv2d", "int8", w)
        assert bool(cannot_pay(m, w, "arm-m4")) == (MM8["breakeven"][f"simd_group w{w}"] is None)
    assert cannot_pay(kernel_model("arm-m4", "conv2d", "q15"), 2, "arm-m4") == ""


def test_the_benchmark_measures_the_executor_steps_on_a_small_conv():
    """benchmarks/sparse_breakeven_mm_int8.py on a 4-channel 4x4 conv (one emulated image per
    sparsity, ~5 s at load 10): the columns the table and the cost model read."""
    import shutil
    import sys
    from pathlib import Path
    if shutil.which("arm-none-eabi-gcc") is None:
        pytest.skip("arm-none-eabi-gcc not installed (apt: gcc-arm-none-eabi)")
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from benchmarks.sparse_breakeven_mm_int8 import bench_conv
    rows, be = bench_conv(4, 4, (0, 97), say=lambda s: None)
    assert [r[0] for r in rows] == [0, 97] and rows[0][1] == rows[1][1] > 0
    assert all(v > 1 for v in rows[0][5:]) and rows[1][7] < rows[0][7]
    assert set(be) == {"csr", "simd_group w2", "simd_group w4"}
