"""simd-group and prune-weights: structure of what they leave, and numbers before/after."""
import numpy as np
import pytest

from cococ.ir.core import CococError, Graph, Layer, Param, TensorType, Value
from cococ.ir.formats import decompress, group_view, sparsity
from cococ.ir.interpreter import run
from cococ.ir.verify import infer_shapes
from cococ.passes.prune_weights import PruneWeights
from cococ.passes.simd_group import SimdGroup, group_rms, target_width


def _net(seed=0):
    rng = np.random.default_rng(seed)
    vals = {n: Value(n) for n in ("x", "c", "r", "f", "y")}
    P = lambda *s: Param.from_array(rng.standard_normal(s).astype(np.float32))  # noqa: E731
    g = Graph("net", [
        Layer("input", "x", [], [vals["x"]], {"shape": [1, 3, 8, 8], "dtype": "f32"}),
        Layer("conv2d", "conv", [vals["x"]], [vals["c"]], {"out_channels": 6, "kernel": [3, 3]},
              {"weight": P(6, 3, 3, 3), "bias": P(6)}),
        Layer("relu", "relu", [vals["c"]], [vals["r"]]),
        Layer("flatten", "flat", [vals["r"]], [vals["f"]], {"axis": 1}),
        Layer("dense", "fc", [vals["f"]], [vals["y"]], {"out_features": 10}, {"weight": P(10, 216), "bias": P(10)}),
    ], [vals["y"]])
    infer_shapes(g)
    return g


def _masked_reference(g_before, g_after, x):
    """The graph before, with each weight replaced by the pruned one's dense form."""
    ref = g_before.clone()
    for l in ref.layers:
        if "weight" in l.params:
            l.params["weight"] = Param.from_array(g_after.layer(l.name).params["weight"].dense())
    return run(ref, [x])["y"]


def test_target_width():
    assert target_width("arm-m4", "q15") == 2
    assert target_width("arm-m4", "int8") == 4
    assert target_width("x86", "f32") in (4, 8, 16)
    with pytest.raises(CococError, match="dtype"):
        target_width("arm-m4", "bf16")


@pytest.mark.parametrize("rate", [0.0, 0.5, 0.9])
def test_simd_group_sparsity_structure_and_numbers(rate):
    g0 = _net()
    g = SimdGroup(sparsity=rate).apply(g0.clone())
    assert g.meta["simd_group"]["width"] == 2
    for name in ("conv", "fc"):
        p = g.layer(name).params["weight"]
        assert p.format == "simd_group" and p.attrs["width"] == 2
        assert sparsity(p) == pytest.approx(rate, abs=0.02)
        # the dropped groups are exactly the lowest-RMS ones
        w0 = g0.layer(name).params["weight"].dense().reshape(p.shape[0], -1)
        kept = (group_view(p.dense().reshape(p.shape[0], -1), 2) != 0).any(-1)
        rms = group_rms(w0, 2)
        if rate:
            assert rms[kept].min() >= rms[~kept].max()
        mask = np.repeat(kept, 2, axis=1)[:, :w0.shape[1]]
        d = p.dense().reshape(w0.shape)
        np.testing.assert_array_equal(d[mask], w0[mask])
        assert not d[~mask].any()
    x = np.random.default_rng(1).standard_normal((1, 3, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(run(g, [x])["y"], _masked_reference(g0, g, x), rtol=1e-5, atol=1e-5)
    if rate == 0:
        np.testing.assert_allclose(run(g, [x])["y"], run(g0, [x])["y"], rtol=1e-5, atol=1e-5)


def test_simd_group_threshold_width_and_layers():
    g0 = _net()
    g = SimdGroup(width=4, threshold=0.8, layers=["fc"]).apply(g0.clone())
    assert g.layer("conv").params["weight"].format == "dense"
    p = g.layer("fc").params["weight"]
    assert p.attrs["width"] == 4
    rms = group_rms(g0.layer("fc").params["weight"].dense(), 4)
    assert p.arrays["indices"].size == int((rms >= 0.8).sum())
    with pytest.raises(CococError, match="nope"):
        SimdGroup(layers=["nope"]).apply(g0.clone())
    with pytest.raises(CococError, match="outside"):
        SimdGroup(sparsity=1.0).apply(g0.clone())


def test_conv_tail_group_is_padded():
    g0 = _net()  # conv reduction = 3*3*3 = 27, not a multiple of 2 or 4
    g = SimdGroup(width=4, sparsity=0.3, layers=["conv"]).apply(g0.clone())
    p = g.layer("conv").params["weight"]
    assert p.arrays["indices"].max() == 24  # the tail group [24, 28) exists, padded
    np.testing.assert_array_equal(decompress(p).shape, (6, 3, 3, 3))


@pytest.mark.parametrize("rate", [0.3, 0.8])
def test_prune_weights_csr(rate):
    g0 = _net()
    g = PruneWeights(sparsity=rate).apply(g0.clone())
    for name in ("conv", "fc"):
        p = g.layer(name).params["weight"]
        assert p.format == "csr"
        assert sparsity(p) == pytest.approx(rate, abs=0.01)
        w0 = g0.layer(name).params["weight"].dense()
        d = p.dense()
        assert np.abs(w0[d == 0]).max() <= np.abs(w0[d != 0]).min()
    x = np.random.default_rng(2).standard_normal((1, 3, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(run(g, [x])["y"], _masked_reference(g0, g, x), rtol=1e-5, atol=1e-5)
