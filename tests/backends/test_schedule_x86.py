"""cococ's x86 conv/pool schedules (backends/tvm/schedule_x86.py): each tile variant against the
reference interpreter (|y - ref| <= 1e-4 (1 + |ref|)), in one multi-output build (about 10 s).

The cases are shaped to take each path: the row-vector tile (short reductions, with a fused
residual add), stride-2 stems whose padded input is split into even/odd columns (even and odd
padded widths) or read lane by lane (no padding), depthwise convs over a padded copy, strided
pools, and both orders of the parallel loop (input- or weight-heavy convs).
"""
from __future__ import annotations

import numpy as np
import pytest

from cococ.backends.kernels.compute import LowerCtx
from cococ.backends.tvm import schedule_x86
from cococ.backends.tvm.lower import lower_graph
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
    g = Graph("schedules", n.layers, n.outs)
    infer_shapes(g)
    return g, n.feeds


@pytest.fixture(scope="module")
def built():
    from cococ.backends.tvm import build_tvm
    graph, feeds = cases()
    return graph, build_tvm(graph, "x86").run(feeds), run(graph, feeds)


@pytest.mark.parametrize("name", ["rows_out", "stem_even", "stem_odd", "stem_nopad", "rows3x3", "wide_rows_outer",
                                  "wide_blocks_outer", "dw_s1", "dw_s2", "pool_ceil", "pool_pad"])
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
