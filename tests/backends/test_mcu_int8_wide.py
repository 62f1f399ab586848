"""arm-m4 int8: int16 activations where int8 rounding costs the most (backends/mcu/i8wide.py).

An average pool whose one reader is a dense hands it its int16 window sums (scale s_x / window),
and with float input a conv reading the graph input takes it quantized to int16 (scale
s_8 * 127 / 32767). Both are checked bit for bit against numpy models of the integer arithmetic
(test_mcu_int8.py's definitions: quantise, int32 accumulate, requantise or dequantise) and against
the float network; tiny IC/KWS models through onnxruntime: test_mcu_int8_ops.py."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from cococ.backends.build import build
from cococ.backends.mcu.i8wide import INPUT16, SUM, wide_layers
from cococ.ir.core import Graph, Layer, Param, Value
from cococ.ir.interpreter import run as reference
from cococ.ir.verify import infer_shapes
from cococ.passes.quantize import Quantize
from tests.backends.test_mcu import _input
from tests.backends.test_mcu_int8 import (dequantised_by_definition, one_layer, quantised_input,
                                          requantised_by_definition)

needs_gcc = pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="arm-none-eabi-gcc not installed")
POOLS = {"global": ("global_avg_pool", {}, (4, 4)), "2x2": ("avg_pool", {"kernel": [2, 2], "stride": [2, 2]}, (2, 2))}


def pool_dense(pool: str, shape=(1, 5, 4, 4), seed: int = 3) -> Graph:
    """x `shape` -> average pool -> flatten -> dense (7 classes)."""
    rng = np.random.default_rng(seed)
    op, attrs, _ = POOLS[pool]
    x, p, f, y = Value("x"), Value("p"), Value("f"), Value("y")
    k = 5 * (1 if pool == "global" else 4)
    layers = [Layer("input", "x", [], [x], {"shape": list(shape)}), Layer(op, "pool", [x], [p], attrs),
              Layer("flatten", "flat", [p], [f], {}),
              Layer("dense", "d", [f], [y], {"out_features": 7},
                    {"weight": Param.from_array((rng.standard_normal((7, k)) * 0.5).astype(np.float32)),
                     "bias": Param.from_array((rng.standard_normal(7) * 0.1).astype(np.float32))})]
    return infer_shapes(Graph("pool_dense", layers, [y]))


def window_sums(xq: np.ndarray, pool: str) -> np.ndarray:
    """The int16 sums the pool step writes: per channel, the window's int8 values added (flattened)."""
    _, c, h, w = xq.shape
    kh, kw = POOLS[pool][2]
    return xq.reshape(1, c, h // kh, kh, w // kw, kw).sum(axis=(3, 5)).reshape(1, -1)


@needs_gcc
@pytest.mark.parametrize("pool", list(POOLS))
def test_pool_hands_the_dense_its_window_sums(tmp_path, pool):
    """The pool step writes int16 window sums (no int8 mean) and the dense reads them at scale
    s_x / window: its float output (float I/O) is acc * s_sum * s_w, its int8 output (io=int8)
    the requantisation of the same accumulator, bit for bit; closer to the float network than
    the int8 mean would be allowed (within 1% of the range)."""
    g = Quantize(dtype="int8", per_channel=True).run_on(pool_dense(pool))
    x = np.abs(_input(g, seed=4))   # as after a ReLU: the sums reach past int8
    art = build(g, "arm-m4", out_dir=tmp_path / "f", quantize="int8")
    steps = [(s["op"], s["outputs"][-1]["dtype"]) for s in art.report["steps"]]
    assert steps == [("quantize", "int8"), (POOLS[pool][0], "int16"), ("dense", "float32")]
    assert "int16 window sums" in (tmp_path / "f" / "kernels.c").read_text() and art.report["warnings"] == []
    qg = art.load_graph()
    s = qg.meta["quant"]["scales"]
    win = int(np.prod(POOLS[pool][2]))
    sums = window_sums(quantised_input(x, s["x"], 127), pool)
    assert np.abs(sums).max() > 127                                   # beyond int8: the sums, not means
    want = dequantised_by_definition(qg.layer("d"), sums, s["x"] / win, relu=False)
    got = art.run(x)["y"]
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-6 * np.abs(want).max())
    ref = reference(pool_dense(pool), {"x": x})["y"]
    assert np.abs(got - ref).max() <= 0.01 * np.abs(ref).max()
    i8 = build(g, "arm-m4", out_dir=tmp_path / "i8", quantize="int8", target_options={"io": "int8"})
    assert [st["outputs"][-1]["dtype"] for st in i8.report["steps"]] == ["int16", "int8"]
    want8 = requantised_by_definition(qg.layer("d"), sums, s["x"] / win, s["y"], 127, relu=False)
    np.testing.assert_array_equal(np.rint(i8.run(x)["y"] / s["y"]).astype(np.int64), want8)


def test_pool_sums_only_for_a_dense_reader():
    """A pool read by something else than a dense (or by two layers, or a graph output) keeps its
    int8 mean; so does one whose window could overflow int16 (more than 256 values)."""
    g = Quantize(dtype="int8", per_channel=True).run_on(pool_dense("global"))
    users = g.users_map()
    scales = g.meta["quant"]["scales"]
    assert wide_layers(g, users, scales, False) == {id(g.layer("pool")): SUM}
    g2 = Quantize(dtype="int8", per_channel=True).run_on(pool_dense("global"))
    g2 = infer_shapes(Graph("out", g2.layers, [g2.outputs[0], g2.layer("pool").output]))
    assert wide_layers(g2, g2.users_map(), scales, False) == {}
    big = Quantize(dtype="int8", per_channel=True).run_on(pool_dense("global", (1, 5, 17, 16)))  # 272 values
    assert wide_layers(big, big.users_map(), big.meta["quant"]["scales"], False) == {}


@needs_gcc
@pytest.mark.parametrize("relu", [True, False])
def test_first_conv_reads_the_float_input_at_int16(tmp_path, relu):
    """Float I/O: the input is quantized to int16 at s_8 * 127 / 32767 and the first conv (3x3,
    stride 2, padded, int8 weights) accumulates int16 x int8: its int8 output equals the
    definition with that input bit for bit; io=int8 keeps the int8 input (the conv reads int8)."""
    g = Quantize(dtype="int8", per_channel=True).run_on(one_layer("conv2d", relu))
    x = _input(g, seed=9)
    art = build(g, "arm-m4", out_dir=tmp_path / "f", quantize="int8")
    steps = [(s["op"], s["outputs"][-1]["dtype"]) for s in art.report["steps"]]
    assert steps[:2] == [("quantize", "int16"), ("conv2d+relu" if relu else "conv2d", "int8")]
    assert "int8 conv2d, int16 input," in (tmp_path / "f" / "kernels.c").read_text()
    qg = art.load_graph()
    out, s = qg.outputs[0].name, qg.meta["quant"]["scales"]
    s16 = s["x"] * 127 / 32767
    xq = quantised_input(x, s16, 32767)
    assert np.abs(xq).max() > 127 * 16
    want = requantised_by_definition(qg.layer("c"), xq, s16, s[out], 127, relu)
    got = np.rint(art.run(x)[out] / s[out]).astype(np.int64)
    np.testing.assert_array_equal(got, want)
    assert np.abs(want).max() > 127 // 8
    i8 = build(g, "arm-m4", out_dir=tmp_path / "i8", quantize="int8", target_options={"io": "int8"})
    assert i8.report["io"]["inputs"][0]["dtype"] == "int8" and i8.report["steps"][0]["op"] == "conv2d" + "+relu" * relu
    assert "int16 input" not in (tmp_path / "i8" / "kernels.c").read_text()


def test_int16_input_only_where_the_sums_fit():
    """A conv reading the graph input takes int16 only with float input and when k * 2^15 * 2^7
    plus its bias stays inside int32 (k <= 511): a 3x3 conv over 64 input channels (k 576) keeps int8."""
    g = Quantize(dtype="int8", per_channel=True).run_on(one_layer("conv2d", True))
    scales = g.meta["quant"]["scales"]
    assert wide_layers(g, g.users_map(), scales, True) == {id(g.layer("c")): INPUT16}
    assert wide_layers(g, g.users_map(), scales, False) == {}
    x, y = Value("x"), Value("y")
    wide = infer_shapes(Graph("wide", [
        Layer("input", "x", [], [x], {"shape": [1, 64, 9, 9]}),
        Layer("conv2d", "c", [x], [y], {"out_channels": 5, "kernel": [3, 3], "pad": [1, 1, 1, 1]},
              {"weight": Param.from_array(np.full((5, 64, 3, 3), 0.01, np.float32))})], [y]))
    wide = Quantize(dtype="int8", per_channel=True).run_on(wide)
    assert wide_layers(wide, wide.users_map(), wide.meta["quant"]["scales"], True) == {}
