"""cococ's x86 conv/pool schedules (backends/tvm/schedule_x86.py): each tile variant against the
reference interpreter (|y - ref| <= 1e-4 (1 + |ref|)), in one multi-output build (about 15 s).

The cases are shaped to take each path: the row-vector tile (short reductions, with a fused
residual add), stride-2 stems whose padded input is split into even/odd columns (even and odd
padded widths) or read lane by lane (no padding), depthwise convs over a padded copy, strided
pools, both orders of the parallel loop (input- or weight-heavy convs), 1x1 convs on the
one-row view of their positions, and reductions over whole planes (global pools).
"""
from __future__ import annotations

import numpy as np
import pytest

from cococ.backends.kernels.compute import LowerCtx
from cococ.backends.tvm import schedule_x86
from cococ.backends.tvm.lower import flat_positions, fusion_groups, group_inputs, lower_graph
from cococ.backends.tvm.schedule_x86 import WIDE_K, width_vector
from cococ.ir.core import Graph, Layer, Param, TensorType, Value
from cococ.ir.interpreter import run
from cococ.ir.verify import infer_shapes

RNG = np.random.default_rng(7)


def rand(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


class Net:
    def __init__(self):
        self.layers, self.outs, self.feeds = [], [], {}

    def input(self, name, shape):
        v = Value(name, TensorType(shape))
        self.layers.append(Layer("input", name, [], [v], {"shape": list(shape)}))
        self.feeds[name] = rand(*shape)
        return v

    def add(self, op, name, inputs, attrs=None, params=None, out=False):
        v = Value(name)
        self.layers.append(Layer(op, name, inputs, [v], attrs or {},
                                 {k: Param.from_array(a) for k, a in (params or {}).items()}))
        if out:
            self.outs.append(v)
        return v

    def conv(self, name, x, c, o, k, stride=1, pad=0, groups=1, out=False):
        attrs = {"out_channels": o, "kernel": [k, k], "stride": [stride] * 2, "pad": [pad] * 4, "groups": groups}
        return self.add("conv2d", name, [x], attrs, {"weight": rand(o, c // groups, k, k) * 0.2, "bias": rand(o)}, out)


def cases() -> Graph:
    n = Net()
    # row-vector tile (k = 32 < WIDE_K, width 28) with the residual add and relu fused
    x = n.input("rows_in", (1, 32, 28, 28))
    y = n.conv("rows_conv", x, 32, 48, 1)
    n.add("relu", "rows_out", [n.add("eltwise", "rows_add", [y, n.input("rows_res", (1, 48, 28, 28))])], out=True)
    # stride-2 stems: padded width even (38) and odd (49), and no padding (lane-by-lane reads)
    n.conv("stem_even", n.input("stem_even_in", (1, 3, 32, 32)), 3, 16, 7, stride=2, pad=3, out=True)
    n.conv("stem_odd", n.input("stem_odd_in", (1, 3, 47, 47)), 3, 16, 3, stride=2, pad=1, out=True)
    n.conv("stem_nopad", n.input("stem_nopad_in", (1, 3, 49, 49)), 3, 16, 3, stride=2, out=True)
    # 3x3 row tile, stride 1, over the padded copy
    n.conv("rows3x3", n.input("rows3x3_in", (1, 8, 14, 14)), 8, 16, 3, pad=1, out=True)
    # channel-vector tile (k >= WIDE_K): input bigger than the weights (rows outer) and the reverse
    n.conv("wide_rows_outer", n.input("wide_in", (1, 256, 14, 14)), 256, 16, 1, out=True)
    n.conv("wide_blocks_outer", n.input("wide_small_in", (1, 256, 3, 3)), 256, 64, 3, pad=1, out=True)
    # depthwise over a padded copy (stride 1) and with border tests (stride 2)
    n.conv("dw_s1", n.input("dw_s1_in", (1, 16, 28, 28)), 16, 16, 3, pad=1, groups=16, out=True)
    n.conv("dw_s2", n.input("dw_s2_in", (1, 16, 28, 28)), 16, 16, 3, stride=2, pad=1, groups=16, out=True)
    # strided pools: ceil mode (border tests) and padded
    n.add("max_pool", "pool_ceil", [n.input("pool_ceil_in", (1, 8, 20, 20))],
          {"kernel": [3, 3], "stride": [2, 2], "ceil_mode": True}, out=True)
    n.add("avg_pool", "pool_pad", [n.input("pool_pad_in", (1, 8, 19, 19))],
          {"kernel": [3, 3], "stride": [2, 2], "pad": [1, 1, 1, 1]}, out=True)
    # 1x1 convs viewed as one row of positions (lower.flat_positions): 56 wide with batchnorm and relu
    # fused, 28 wide with a residual add (rows_out above); 14 wide keeps its rows (196 % 16 != 0)
    y = n.conv("flat56_conv", n.input("flat56_in", (1, 24, 56, 56)), 24, 40, 1)
    y = n.add("batchnorm", "flat56_bn", [y], {"eps": 1e-5},
              {"mean": rand(40), "var": np.abs(rand(40)) + 0.5, "scale": rand(40), "bias": rand(40)})
    n.add("relu", "flat56_out", [y], out=True)
    n.conv("rows14", n.input("rows14_in", (1, 48, 14, 14)), 48, 32, 1, out=True)
    # reductions over whole planes: partial sums in 14, 7 and 12 lanes, a 7x7 average-pool window
    n.add("global_avg_pool", "gap14", [n.input("gap14_in", (1, 24, 14, 14))], out=True)
    n.add("global_avg_pool", "gap7", [n.input("gap7_in", (1, 40, 7, 7))], out=True)
    n.add("global_max_pool", "gmp6", [n.input("gmp6_in", (1, 8, 6, 6))], out=True)
    n.add("global_avg_pool", "gap3", [n.input("gap3_in", (1, 8, 3, 3))], out=True)  # one 9-lane vector: scalar
    n.add("avg_pool", "pool_plane", [n.input("pool_plane_in", (1, 16, 7, 7))], {"kernel": [7, 7], "stride": [1, 1]},
          out=True)
    g = Graph("schedules", n.layers, n.outs)
    infer_shapes(g)
    return g, n.feeds


@pytest.fixture(scope="module")
def built():
    from cococ.backends.tvm import build_tvm
    graph, feeds = cases()
    return graph, build_tvm(graph, "x86").run(feeds), run(graph, feeds)


@pytest.mark.parametrize("name", ["rows_out", "stem_even", "stem_odd", "stem_nopad", "rows3x3", "wide_rows_outer",
                                  "wide_blocks_outer", "dw_s1", "dw_s2", "pool_ceil", "pool_pad", "flat56_out",
                                  "rows14", "gap14", "gap7", "gmp6", "gap3", "pool_plane"])
def test_schedule_matches_interpreter(built, name):
    _, got, ref = built
    assert got[name].shape == ref[name].shape
    assert np.all(np.abs(got[name] - ref[name]) <= 1e-4 * (1 + np.abs(ref[name]))), \
        float(np.abs(got[name] - ref[name]).max())


def test_width_vector_choice():
    assert width_vector(56, 64, 1, 16) == 14          # ResNet-50's 64->256 1x1 at 56x56
    assert width_vector(112, 27, 2, 16) == 16         # MobileNet's stem, stride 2
    assert width_vector(56, WIDE_K, 1, 16) == 0       # long reduction: channel-vector tile
    assert width_vector(7, 64, 1, 16) == 0            # 7 of 16 lanes: channel-vector tile
    assert width_vector(28, 64, 3, 16) == 0           # stride 3: channel-vector tile
    assert width_vector(28, 64, 1, 8) == 7            # AVX2: 7 of 8 lanes


def test_stem_pad_is_split_into_column_phases():
    """The stride-2 stem's padded copy is stored [n, c, y, 2, w/2] (schedule_x86._phase_split)."""
    graph, _ = cases()
    mod = lower_graph(graph, LowerCtx(oc_block=16))
    text = schedule_x86.schedule_func(mod["conv2d_stem_even"], 16).script()
    assert "pad = T.sblock_alloc_buffer((T.int64(1), T.int64(3), T.int64(38), T.int64(2), T.int64(19)))" in text


def test_flat_positions_choice():
    """1x1 convs with few input channels on 28/56-wide maps run on the [N, C, 1, H*W] view; the
    others (14-wide: 196 positions are not whole vectors; long reductions; no packing) keep rows."""
    graph, _ = cases()
    groups = {g[0].name: (g, group_inputs(g)) for g in fusion_groups(graph)}
    assert flat_positions(*groups["rows_conv"], 16) == (28, 28)
    assert flat_positions(*groups["flat56_conv"], 16) == (56, 56)
    assert flat_positions(*groups["rows14"], 16) is None
    assert flat_positions(*groups["wide_rows_outer"], 16) is None
    assert flat_positions(*groups["flat56_conv"], 1) is None      # cuda / arm-m4: unpacked
    assert flat_positions(*groups["flat56_conv"], 8) is None      # AVX2: a 56-wide row is 7 whole vectors
    assert flat_positions(*groups["rows_conv"], 8) == (28, 28)    # ... a 28-wide one is not


def test_flat_conv_and_plane_reduction_kernels():
    """The flattened conv's kernel reads the [1, C, 1, H*W] view in full vectors; the global pool
    keeps a vector of partial sums per channel (rfactor)."""
    graph, _ = cases()
    mod = lower_graph(graph, LowerCtx(oc_block=16))
    conv = schedule_x86.schedule_func(mod["conv2d_flat56_conv"], 16).script()
    assert "T.Buffer((T.int64(1), T.int64(24), T.int64(1), T.int64(3136))" in conv
    assert "T.vectorized(T.int64(16))" in conv
    gap = schedule_x86.schedule_func(mod["global_avg_pool_gap14"], 16).script()
    assert "gap_sum_rf" in gap and "T.vectorized(T.int64(14))" in gap
