"""cococ's x86 conv/pool schedules (backends/tvm/schedule_x86.py): each tile variant against the
reference interpreter (|y - ref| <= 1e-4 (1 + |ref|)), in one multi-output build (about 15 s).

The cases are shaped to take each path: the row-vector tile (short reductions, with a fused
residual add; on widths of whole vectors + a tail), stride-2 stems whose padded input is split
into even/odd columns (even and odd padded widths) or read lane by lane (no padding), depthwise
convs over a padded copy or (wide rows: stride 2, or stride 1 not whole vectors) as LLVM-vectorized
rows, the epilogues unrolled on the tile, strided pools (their
interior windows split from the border ones), both orders of the parallel loop (input- or
weight-heavy convs), 1x1 convs on the one-row view of their positions, and reductions over whole
planes (global pools) (schedule_x86.py and schedule_x86_window.py).
"""
from __future__ import annotations

import numpy as np
import pytest

from cococ.backends.kernels.compute import LowerCtx
from cococ.backends.tvm import schedule_x86
from cococ.backends.tvm.lower import flat_positions, fusion_groups, group_inputs, lower_graph
from cococ.backends.tvm.schedule_x86 import WIDE_K, row_tail, width_vector
from cococ.backends.tvm.schedule_x86_window import dw_plain_rows, dw_tiling
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
    # widths without a divisor that fills the lanes: whole vectors + a scalar tail (row_tail):
    # stride 2 unpadded (37 = 2 x 16 + 5) with relu fused, stride 1 over the padded copy (35)
    y = n.conv("tail_s2", n.input("tail_s2_in", (1, 3, 75, 75)), 3, 16, 3, stride=2)
    n.add("relu", "tail_s2_out", [y], out=True)
    n.conv("tail_s1", n.input("tail_s1_in", (1, 8, 35, 35)), 8, 32, 3, pad=1, out=True)
    # 3x3 row tile, stride 1, over the padded copy
    n.conv("rows3x3", n.input("rows3x3_in", (1, 8, 14, 14)), 8, 16, 3, pad=1, out=True)
    # channel-vector tile (k >= WIDE_K): input bigger than the weights (rows outer) and the reverse
    n.conv("wide_rows_outer", n.input("wide_in", (1, 256, 14, 14)), 256, 16, 1, out=True)
    n.conv("wide_blocks_outer", n.input("wide_small_in", (1, 256, 3, 3)), 256, 64, 3, pad=1, out=True)
    # depthwise over a padded copy (stride 1) and with border tests (stride 2)
    n.conv("dw_s1", n.input("dw_s1_in", (1, 16, 28, 28)), 16, 16, 3, pad=1, groups=16, out=True)
    n.conv("dw_s2", n.input("dw_s2_in", (1, 16, 28, 28)), 16, 16, 3, stride=2, pad=1, groups=16, out=True)
    # stride-2 depthwise with rows >= STRIDED_DW_WIDTH (LLVM-vectorized rows, border windows split
    # off): even input (border on the left only) with relu fused, odd input (both sides)
    y = n.conv("dw_s2_wide", n.input("dw_s2_wide_in", (1, 8, 100, 100)), 8, 8, 3, stride=2, pad=1, groups=8)
    n.add("relu", "dw_s2_wide_out", [y], out=True)
    n.conv("dw_s2_odd", n.input("dw_s2_odd_in", (1, 8, 101, 101)), 8, 8, 3, stride=2, pad=1, groups=8, out=True)
    n.conv("dw5_s2", n.input("dw5_s2_in", (1, 4, 100, 100)), 4, 4, 5, stride=2, pad=2, groups=4, out=True)
    # stride-1 depthwise on rows >= STRIDED_DW_WIDTH that are not whole vectors (56, 50): LLVM-vectorized
    # rows without a padded copy, relu fused; 3x3 and 5x5 windows
    y = n.conv("dw_s1_wide", n.input("dw_s1_wide_in", (1, 4, 56, 56)), 4, 4, 3, pad=1, groups=4)
    n.add("relu", "dw_s1_wide_out", [y], out=True)
    n.conv("dw5_s1_wide", n.input("dw5_s1_wide_in", (1, 4, 50, 50)), 4, 4, 5, pad=2, groups=4, out=True)
    # channel-vector tile (k >= WIDE_K) with its epilogue unrolled on the tile: relu fused
    y = n.conv("wide_relu", n.input("wide_relu_in", (1, 320, 7, 7)), 320, 32, 1)
    n.add("relu", "wide_relu_out", [y], out=True)
    # ... and with no epilogue at all (no bias): the tile's copy to NCHW keeps its loop
    n.add("conv2d", "wide_copy", [n.input("wide_copy_in", (1, 320, 7, 7))],
          {"out_channels": 32, "kernel": [1, 1], "stride": [1, 1], "pad": [0] * 4, "groups": 1},
          {"weight": rand(32, 320, 1, 1) * 0.2}, out=True)
    # strided pools: ceil mode (border tests) and padded
    n.add("max_pool", "pool_ceil", [n.input("pool_ceil_in", (1, 8, 20, 20))],
          {"kernel": [3, 3], "stride": [2, 2], "ceil_mode": True}, out=True)
    n.add("avg_pool", "pool_pad", [n.input("pool_pad_in", (1, 8, 19, 19))],
          {"kernel": [3, 3], "stride": [2, 2], "pad": [1, 1, 1, 1]}, out=True)
    # strided pools whose interior rows/columns are split from the border ones (`_strided_window`):
    # padded on both sides (ResNet's 3x3/2 stem pool), ceil mode on the right (SqueezeNet's)
    n.add("max_pool", "pool_pad40", [n.input("pool_pad40_in", (1, 4, 40, 40))],
          {"kernel": [3, 3], "stride": [2, 2], "pad": [1, 1, 1, 1]}, out=True)
    n.add("max_pool", "pool_ceil56", [n.input("pool_ceil56_in", (1, 4, 56, 56))],
          {"kernel": [3, 3], "stride": [2, 2], "ceil_mode": True}, out=True)
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


@pytest.mark.parametrize("name", ["rows_out", "stem_even", "stem_odd", "stem_nopad", "tail_s2_out", "tail_s1",
                                  "rows3x3", "wide_rows_outer",
                                  "wide_blocks_outer", "dw_s1", "dw_s2", "dw_s2_wide_out", "dw_s2_odd", "dw5_s2",
                                  "dw_s1_wide_out", "dw5_s1_wide", "wide_relu_out", "wide_copy",
                                  "pool_ceil", "pool_pad", "pool_pad40",
                                  "pool_ceil56", "flat56_out",
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


def test_depthwise_tiling_choice():
    """Depthwise tiles: a 28-wide stride-1 row is one 28-lane vector (LLVM: 16 + 12), not two of
    14 (each split 8 + 4 + 2); at stride 2 it stays 14 (its lanes are read one by one); wide rows
    that are not whole vectors take LLVM-vectorized rows instead of the tile (schedule_x86_window)."""
    assert dw_tiling(28, 28, 16, 1) == (7, 28)
    assert dw_tiling(28, 28, 16, 1, kh=5) == (4, 28)  # a 5x5 window: fewer rows
    assert dw_tiling(14, 28, 16, 2) == (2, 14)
    assert dw_tiling(14, 14, 16, 1) == (7, 14)
    assert dw_tiling(112, 112, 16, 1) == (4, 16)
    assert dw_plain_rows(1, 56, 16) and dw_plain_rows(2, 56, 16) and dw_plain_rows(2, 112, 16)
    assert not dw_plain_rows(1, 112, 16) and not dw_plain_rows(1, 28, 16) and not dw_plain_rows(2, 28, 16)


def test_tile_epilogues_are_unrolled():
    """The fused epilogue of the row-vector and channel-vector tiles is unrolled over the tile, so
    that LLVM keeps the accumulators in registers (no store and reload of the tile), the
    channel-vector one vectorized along the channels, except a plain copy to NCHW; the wide
    stride-1 depthwise conv has no padded copy."""
    graph, _ = cases()
    mod = lower_graph(graph, LowerCtx(oc_block=16))
    rows = schedule_x86.schedule_func(mod["conv2d_flat56_conv"], 16).script()
    assert rows.count("T.unroll(T.int64(16))") == 3  # the channels of the zeroing, the tile and the epilogue
    wide = schedule_x86.schedule_func(mod["conv2d_wide_relu"], 16).script()
    assert "ax0_0 in T.unroll(T.int64(2))" in wide and "ax1 in T.unroll(T.int64(7))" in wide  # 2 blocks x 7 columns
    assert "ax0_1 in T.vectorized(T.int64(16))" in wide
    copy = schedule_x86.schedule_func(mod["conv2d_wide_copy"], 16).script()
    assert "for ax0, ax1 in T.grid(T.int64(32), T.int64(7))" in copy  # a plain copy: LLVM's loop
    dw = schedule_x86.schedule_func(mod["conv2d_dw_s1_wide"], 16).script()
    assert "pad = T.sblock_alloc_buffer" not in dw and "in range(T.int64(1), T.int64(55))" in dw


def test_row_tail_choice():
    assert row_tail(113, 27, 2, 16) == 1       # SqueezeNet's stem: 7 vectors + 1 column
    assert row_tail(37, 27, 2, 16) == 5
    assert row_tail(56, 64, 1, 16) == 0        # a divisor fills the lanes: the row-vector tile
    assert row_tail(113, WIDE_K, 2, 16) == 0   # long reduction: channel-vector tile
    assert row_tail(7, 64, 1, 16) == 0         # narrower than a vector


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


def test_strided_pool_interior_has_no_border_test():
    """A strided pool's windows that lie inside the input are their own loops, without the border
    test, so that LLVM vectorizes them (schedule_x86_window._strided_window): the padded 40x40 pool's
    interior is rows 1-19 x columns 1-19, the border rows/columns keep the test; fewer than 16
    columns inside are cut to a multiple of 8. The wide stride-2 depthwise conv splits the same way."""
    graph, _ = cases()
    mod = lower_graph(graph, LowerCtx(oc_block=16))
    text = schedule_x86.schedule_func(mod["max_pool_pool_pad40"], 16).script()
    assert "in range(T.int64(1), T.int64(20))" in text     # interior rows
    assert text.count("in range(T.int64(1), T.int64(20))") == 2  # interior rows and columns
    ceil = schedule_x86.schedule_func(mod["max_pool_pool_ceil56"], 16).script()
    assert "in range(T.int64(27))" in ceil and "in range(T.int64(27))" in ceil  # rows and columns 0-26
    small = schedule_x86.schedule_func(mod["max_pool_pool_ceil"], 16).script()  # 9 inside: one vector of 8
    assert "in range(T.int64(9))" in small and "in range(T.int64(8))" in small
    dw = schedule_x86.schedule_func(mod["conv2d_dw_s2_odd"], 16).script()  # 51 wide: columns 1-49 inside
    assert "in range(T.int64(1), T.int64(50))" in dw and "T.vectorized" not in dw
