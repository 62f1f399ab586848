"""Pruned FC and conv layers built with their sparse kernels: arm-m4 (f32 and q15, emulated) and x86.

A LeNet-300-100-sized MLP (784-300-100-10, random He weights) is pruned with the passes
(`simd-group`, `prune-weights`), built, run, and compared with the reference interpreter on
the same graph; report.json / the manifest must name the kernel each layer got, the sparse
image must be smaller and (at high sparsity) faster than the dense build of the same weights,
and a layer whose sparse form is slower must stay dense with a warning naming it. Conv layers
(a small two-conv net, with and without padding, odd im2col length 27) run im2col + the sparse
matrix-matrix kernel; in q15 their output must equal the dense q15 build's bit for bit.
"""
from __future__ import annotations

import shutil
import warnings

import numpy as np
import pytest

from cococ import passes
from cococ.backends.build import build
from cococ.backends.kernels.choice import estimate, kernel_sparsity
from cococ.ir.builder import GraphBuilder
from cococ.ir.core import CococError
from cococ.ir.formats import compress
from cococ.ir.interpreter import run as reference
from cococ.ir.verify import infer_shapes

needs_gcc = pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None,
                               reason="arm-none-eabi-gcc not installed (apt: gcc-arm-none-eabi)")
F32_TOL = 1e-4        # as tests/backends/test_mcu.py and test_tvm_x86.py
# q15 against the fake-quantized graph, of max|ref|: 6.2e-5 to 7.7e-5 (sparse, conv) and 1.8e-4 (the
# LeNet-300-100 MLP with fc1 dense) are reached; the bound is ~3x the largest (docs/mcu.md's 0.01
# is what `cococ run --check` allows)
Q15_TOL = 6e-4


def mlp(sizes=(784, 300, 100, 10), batch: int = 1, seed: int = 0):
    """input -> (dense + relu) ... -> dense: the LeNet-300-100 shape by default."""
    rng = np.random.default_rng(seed)
    b = GraphBuilder("mlp")
    y = b.input("x", (batch, sizes[0]))
    for i, (k, o) in enumerate(zip(sizes, sizes[1:])):
        w = (rng.standard_normal((o, k)) * np.sqrt(2.0 / k)).astype(np.float32)
        y = b("dense", f"fc{i + 1}", y, {"out_features": o},
              {"weight": w, "bias": (rng.standard_normal(o) * 0.1).astype(np.float32)})
        if i < len(sizes) - 2:
            y = b("relu", f"relu{i + 1}", y)
    g = b.graph(y)
    infer_shapes(g)
    return g


def densified(g):
    """The same weights stored dense (quantization attrs kept): the baseline build."""
    g = g.clone()
    for layer in g.layers:
        for k, p in list(layer.params.items()):
            if p.format != "dense":
                layer.params[k] = compress(p, "dense")
    return g


def _inputs(g, seed=1):
    v = g.inputs[0]
    return {v.name: np.random.default_rng(seed).standard_normal(v.type.shape).astype(np.float32)}


def _kernels(report) -> dict[str, str]:
    return {s["layers"][0]: s["kernel"] for s in report["steps"] if s["op"].startswith("dense")}


def _build(g, target, **kw):
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        art = build(g, target, **kw)
    return art, [str(x.message) for x in w]


def _check(art, g, quant: str | None):
    x = _inputs(g)
    y = art.run(x)
    ref = reference(art.load_graph(), x)
    for name, r in ref.items():
        if quant:
            err = float(np.max(np.abs(y[name] - r)) / np.max(np.abs(r)))
            print(f"{quant} {name}: max|y - ref| / max|ref| = {err:.2g} (bound {Q15_TOL})")
            assert err <= Q15_TOL, (name, err)
        else:
            np.testing.assert_allclose(y[name], r, rtol=F32_TOL, atol=F32_TOL)


@needs_gcc
def test_m4_f32_simd_group_is_built_sparse_smaller_and_faster():
    g = passes.run(mlp(), "simd-group{sparsity=0.9}")
    art, warned = _build(g, "arm-m4")
    _check(art, g, None)
    rep = art.report
    assert _kernels(rep) == {"fc1": "simd_group", "fc2": "simd_group", "fc3": "simd_group"}
    assert not warned and not rep["warnings"]
    sparse_cycles = art.profile()["cycles"]

    dense, _ = _build(densified(g), "arm-m4", target_options={"flash": "2M"})
    _check(dense, g, None)
    assert set(_kernels(dense.report).values()) == {"dense"}
    assert rep["flash"] < dense.report["flash"]
    assert rep["weight_bytes"] < dense.report["weight_bytes"]
    dense_cycles = dense.profile()["cycles"]
    assert sparse_cycles < dense_cycles
    for c in rep["sparse"]:  # the choice was measured on the emulator and agrees with the run
        assert c["kernel"] == "simd_group" and c["basis"].startswith("emulated") and c["ratio"] < 1


@needs_gcc
def test_m4_q15_csr_matches_reference():
    g = passes.run(mlp(), "prune-weights{sparsity=0.95}")
    art, warned = _build(g, "arm-m4", quantize="q15")
    _check(art, g, "q15")
    assert _kernels(art.report) == {"fc1": "csr", "fc2": "csr", "fc3": "csr"}
    assert "csr (MLA) q15" in (art.dir / "kernels.c").read_text()
    # quantizing kept the pruned pattern: the built graph still holds csr weights
    assert {l.params["weight"].format for l in art.load_graph().layers if l.op == "dense"} == {"csr"}


@needs_gcc
def test_m4_q15_low_sparsity_keeps_dense_and_warns():
    g = passes.run(mlp(), "simd-group{sparsity=0.3,layers=[fc1]}")
    art, warned = _build(g, "arm-m4", quantize="q15", target_options={"flash": "1M"})  # fc1 stays dense
    _check(art, g, "q15")
    assert _kernels(art.report)["fc1"] == "dense"
    msg = [w for w in warned if w.startswith("layer fc1: simd_group at 30% sparsity is slower than dense on arm-m4")]
    assert len(msg) == 1 and "kept dense" in msg[0] and "break-even " in msg[0]  # the measured table's
    assert art.report["warnings"] == msg


@needs_gcc
def test_m4_odd_width_batch_and_tail_group():
    """63 inputs: the simd_group tail group is padded (guarded read in f32); batch 2: dense."""
    g = passes.run(mlp((63, 32, 10)), "simd-group{sparsity=0.8}")
    for quant in (None, "q15"):
        art, _ = _build(g, "arm-m4", quantize=quant)
        _check(art, g, quant)
        assert set(_kernels(art.report).values()) == {"simd_group"}
    g2 = passes.run(mlp((63, 32, 10), batch=2), "simd-group{sparsity=0.8}")
    art, warned = _build(g2, "arm-m4")
    _check(art, g2, None)
    assert set(_kernels(art.report).values()) == {"dense"}
    assert any("batch 2" in w and "kept dense" in w for w in warned)


# How the x86 backend chooses (target option `sparse`): the kernel tests force the sparse kernels
# ("always"), the keep-dense tests read the measured table ("table"), so that no test depends on
# the host's timing.
ALWAYS, TABLE = {"sparse": "always"}, {"sparse": "table"}


def test_x86_sparse_kernels_match_reference():
    for pipe, fmt in (("simd-group{sparsity=0.9,target=x86,dtype=f32}", "simd_group"), ("prune-weights{sparsity=0.95}", "csr")):
        g = passes.run(mlp(), pipe)
        art, warned = _build(g, "x86", target_options=ALWAYS)
        _check(art, g, None)
        assert [c["kernel"] for c in art.manifest["sparse"]] == [fmt] * 3, art.manifest["sparse"]
        assert not warned


def test_x86_csr_under_breakeven_keeps_dense():
    g = passes.run(mlp(), "prune-weights{sparsity=0.3,layers=[fc2]}")
    art, warned = _build(g, "x86", target_options=TABLE)
    _check(art, g, None)
    (c,) = art.manifest["sparse"]
    assert c["layer"] == "fc2" and c["kernel"] == "dense"
    assert warned == [c["reason"]] and c["reason"].startswith("layer fc2: csr at 30% sparsity is slower than dense")


def test_estimate_follows_the_measured_table():
    w = np.random.default_rng(0).standard_normal((100, 100)).astype(np.float32)
    keep_lo = np.random.default_rng(1).random((100, 50)) > 0.2
    keep_hi = np.random.default_rng(1).random((100, 50)) > 0.9
    lo = estimate("a", compress(w, "simd_group", width=2, keep=keep_lo), "arm-m4")
    hi = estimate("b", compress(w, "simd_group", width=2, keep=keep_hi), "arm-m4")
    assert lo.kernel == "dense" and lo.ratio > 1 and lo.breakeven and lo.sparsity < lo.breakeven
    assert hi.kernel == "simd_group" and hi.ratio < 1 and hi.sparsity > hi.breakeven
    assert kernel_sparsity(compress(w, "simd_group", width=2, keep=keep_hi)) == pytest.approx(1 - keep_hi.mean())


# ---- conv: im2col + sparse matrix-matrix ----------------------------------------------------------

def cnn(pad: int = 1, seed: int = 0):
    """3x12x12 -> conv 3x3 (16, pad, +bias) -> relu -> conv 3x3 stride 2 (20, no bias): 27 and 144
    im2col columns, 144 and 25 output positions (25: a tail block of one position)."""
    rng = np.random.default_rng(seed)
    b = GraphBuilder("cnn")
    y = b.input("x", (1, 3, 12, 12))
    y = b("conv2d", "conv1", y, {"out_channels": 16, "kernel": [3, 3], "pad": [pad] * 4},
          {"weight": (rng.standard_normal((16, 3, 3, 3)) * 0.3).astype(np.float32),
           "bias": (rng.standard_normal(16) * 0.1).astype(np.float32)})
    y = b("relu", "relu1", y)
    y = b("conv2d", "conv2", y, {"out_channels": 20, "kernel": [3, 3], "stride": [2, 2]},
          {"weight": (rng.standard_normal((20, 16, 3, 3)) * 0.1).astype(np.float32)})
    g = b.graph(y)
    infer_shapes(g)
    return g


def _conv_kernels(report) -> dict[str, str]:
    return {s["layers"][0]: s["kernel"] for s in report["steps"] if s["op"].startswith("conv2d")}


@needs_gcc
@pytest.mark.parametrize("pad", [0, 1])
def test_m4_sparse_conv_matches_reference_and_dense_q15(pad):
    g = passes.run(cnn(pad), "simd-group{sparsity=0.8}")
    for quant in (None, "q15"):
        art, warned = _build(g, "arm-m4", quantize=quant)
        _check(art, g, quant)
        assert _conv_kernels(art.report) == {"conv1": "simd_group", "conv2": "simd_group"}, art.report["sparse"]
        assert not warned
        assert all(c["basis"].startswith("emulated") and c["ratio"] < 1 for c in art.report["sparse"])
    # q15: integer sums are exact, so the sparse conv equals the dense q15 conv bit for bit
    dense, _ = _build(densified(art.load_graph()), "arm-m4", quantize="q15")
    assert set(_conv_kernels(dense.report).values()) == {"dense"}
    x = _inputs(g)
    for name, y in art.run(x).items():
        np.testing.assert_array_equal(y, dense.run(x)[name])


@needs_gcc
def test_m4_csr_conv_q15_and_f32():
    g = passes.run(cnn(1), "prune-weights{sparsity=0.9}")
    for quant in (None, "q15"):
        art, _ = _build(g, "arm-m4", quantize=quant)
        _check(art, g, quant)
        assert _conv_kernels(art.report) == {"conv1": "csr", "conv2": "csr"}
    assert "csr (MLA) q15 conv2d" in (art.dir / "kernels.c").read_text()


@needs_gcc
def test_m4_sparse_conv_dilation_and_batch():
    """Batch 2, dilation 2, asymmetric padding: the im2col index arithmetic of every case."""
    rng = np.random.default_rng(3)
    b = GraphBuilder("dil")
    y = b.input("x", (2, 4, 9, 9))
    y = b("conv2d", "conv1", y, {"out_channels": 6, "kernel": [3, 3], "dilation": [2, 2], "pad": [2, 1, 0, 2]},
          {"weight": (rng.standard_normal((6, 4, 3, 3)) * 0.3).astype(np.float32),
           "bias": (rng.standard_normal(6) * 0.1).astype(np.float32)})
    g = b.graph(y)
    infer_shapes(g)
    g = passes.run(g, "simd-group{sparsity=0.85}")
    for quant in (None, "q15"):
        art, _ = _build(g, "arm-m4", quantize=quant)
        _check(art, g, quant)
        assert _conv_kernels(art.report) == {"conv1": "simd_group"}, art.report["sparse"]


@needs_gcc
def test_m4_low_sparsity_conv_keeps_dense_and_warns():
    g = passes.run(cnn(1), "simd-group{sparsity=0.2,layers=[conv2]}")
    art, warned = _build(g, "arm-m4", quantize="q15")
    _check(art, g, "q15")
    assert _conv_kernels(art.report)["conv2"] == "dense"
    msg = [w for w in warned if w.startswith("layer conv2: simd_group at 20% sparsity is slower than dense on arm-m4")]
    assert len(msg) == 1 and "kept dense" in msg[0] and "emulated" in msg[0]


def test_x86_sparse_conv_matches_reference():
    for pad in (0, 1):
        for pipe, fmt in (("simd-group{sparsity=0.9,target=x86,dtype=f32}", "simd_group"),
                          ("simd-group{sparsity=0.9}", "simd_group"), ("prune-weights{sparsity=0.95}", "csr")):
            g = passes.run(cnn(pad), pipe)
            art, warned = _build(g, "x86", target_options=ALWAYS)
            _check(art, g, None)
            assert [c["kernel"] for c in art.manifest["sparse"]] == [fmt] * 2, art.manifest["sparse"]
            assert not warned


def test_x86_low_sparsity_conv_keeps_dense():
    g = passes.run(cnn(1), "prune-weights{sparsity=0.3,layers=[conv1]}")
    art, warned = _build(g, "x86", target_options=TABLE)
    _check(art, g, None)
    (c,) = art.manifest["sparse"]
    assert c["layer"] == "conv1" and c["kernel"] == "dense"
    assert warned == [c["reason"]] and c["reason"].startswith("layer conv1: csr at 30% sparsity is slower than dense")


def test_x86_measured_choice_is_consistent():
    """The default: both forms of each compressed layer are timed at build time; whatever wins,
    the manifest says what was measured, the choice follows the ratio, a kept-dense layer warns,
    and the outputs equal the reference."""
    g = passes.run(cnn(1), "simd-group{sparsity=0.9,layers=[conv1],target=x86,dtype=f32}")
    g = passes.run(g, "prune-weights{sparsity=0.3,layers=[conv2]}")
    art, warned = _build(g, "x86")
    _check(art, g, None)
    cs = {c["layer"]: c for c in art.manifest["sparse"]}
    assert set(cs) == {"conv1", "conv2"}
    for c in cs.values():
        assert c["basis"].startswith("measured: ")
        assert (c["kernel"] != "dense") == (c["ratio"] < 1)
        assert bool(c["reason"]) == (c["kernel"] == "dense")
    assert warned == [c["reason"] for c in cs.values() if c["reason"]]


def test_breakeven_tables_ship_with_the_package_and_a_missing_one_is_an_error():
    from cococ.backends.kernels.choice import TABLES, TABLES_MM, load_table
    for name in list(TABLES.values()) + list(TABLES_MM.values()):
        assert load_table(name[:-5])["rows"]
    with pytest.raises(CococError, match="break-even table .* is missing"):
        load_table("sparse-breakeven-nowhere")


def test_x86_unknown_sparse_option_is_an_error():
    g = passes.run(mlp((16, 8)), "prune-weights{sparsity=0.9}")
    with pytest.raises(CococError, match="sparse='sometimes'"):
        build(g, "x86", target_options={"sparse": "sometimes"})
