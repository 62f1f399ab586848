"""Fusion of EfficientNet's SiLU and squeeze-excite into the convs' kernels (backends/tvm/lower.py):
which groups form, and the x86 build of each form against the reference interpreter."""
from __future__ import annotations

import pytest

from cococ.backends.tvm.lower import fusion_groups
from cococ.ir.interpreter import run
from cococ.ir.verify import infer_shapes
from tests.backends.test_tvm_x86 import G, close, conv, rand

LANES = 16


def silu(g, name, x):
    s = g("sigmoid", f"{name}_sig", x)
    return g("eltwise", f"{name}_silu", [x, s], {"mode": "prod"})


def se_block(g, name, c, h, feeds):
    """x -> 1x1 conv + SiLU -> SE (avg pool, 1x1 conv + SiLU, 1x1 conv + sigmoid, x * s) -> 1x1 conv."""
    x = g.input(name, (1, c, h, h))
    feeds[name] = rand(1, c, h, h)
    y = silu(g, f"{name}_e", g("conv2d", f"{name}_expand", x, *conv(c, 2 * c, 1)))
    p = g("global_avg_pool", f"{name}_gap", y)
    r = silu(g, f"{name}_r", g("conv2d", f"{name}_reduce", p, *conv(2 * c, 8, 1)))
    s = g("sigmoid", f"{name}_gate", g("conv2d", f"{name}_excite", r, *conv(8, 2 * c, 1)))
    z = g("broadcast_eltwise", f"{name}_scale", [y, s], {"mode": "prod"})
    return g("conv2d", f"{name}_project", z, *conv(2 * c, c, 1), out=True)


def ops(graph, lanes=LANES):
    infer_shapes(graph)
    return [[l.op for l in gr] for gr in fusion_groups(graph, lanes)]


@pytest.mark.parametrize("h", [28, 14])
def test_silu_and_se_fuse_on_row_tiles(h):
    """On maps whose 1x1 convs take the row-vector tile (28x28: a flat row of positions; 14x14: a
    row per vector) the SiLU joins its conv and the SE product the next conv; the gate, reading
    the conv's output twice, is one kernel with it. About 4 s each."""
    from cococ.backends.tvm import build_tvm
    g, feeds = G(), {}
    se_block(g, "b", 24, h, feeds)
    graph = g.graph()
    assert ops(graph) == [
        ["conv2d", "sigmoid", "eltwise"], ["global_avg_pool"], ["conv2d", "sigmoid", "eltwise"],
        ["conv2d", "sigmoid"], ["broadcast_eltwise", "conv2d"]]
    got, ref = build_tvm(graph, "x86").run(feeds), run(graph, feeds)
    for k in ref:
        assert close(got[k], ref[k]), k


def test_channel_vector_tile_keeps_the_se_product_apart():
    """A 1x1 conv on 7x7 takes the channel-vector tile, which broadcasts its input element by
    element: the SE product before it stays a kernel of its own there (fused: 1.2-1.8x slower);
    its SiLU still joins (the tile's epilogue is vectors along the packed channels). Elsewhere
    than x86 (lanes 0) nothing reads through a prologue. About 4 s."""
    from cococ.backends.tvm import build_tvm
    g, feeds = G(), {}
    se_block(g, "b", 24, 7, feeds)
    graph = g.graph()
    want = [["conv2d", "sigmoid", "eltwise"], ["global_avg_pool"], ["conv2d", "sigmoid", "eltwise"],
            ["conv2d", "sigmoid"], ["broadcast_eltwise"], ["conv2d"]]
    assert ops(graph) == want
    assert ops(graph, 0) == want
    got, ref = build_tvm(graph, "x86").run(feeds), run(graph, feeds)
    for k in ref:
        assert close(got[k], ref[k]), k


def test_gate_needs_both_readers_inside():
    """x * sigmoid(x) where x is also a graph output, or sigmoid(x) is read elsewhere too, is no
    gate: the conv's output (or the sigmoid's) must exist on its own."""
    g = G()
    x = g.input("x", (1, 8, 16, 16))
    y = g("conv2d", "c1", x, *conv(8, 16, 1), out=True)
    silu(g, "a", y)
    z = g("conv2d", "c2", x, *conv(8, 16, 1))
    s = g("sigmoid", "s2", z, out=True)
    g("eltwise", "m2", [z, s], {"mode": "prod"}, out=True)
    assert ops(g.graph()) == [["conv2d"], ["sigmoid", "eltwise"], ["conv2d"],
                                                     ["sigmoid"], ["eltwise"]]


@pytest.mark.parametrize("h, fused", [(14, True), (7, False)])
def test_depthwise_silu_by_row_width(h, fused):
    """A depthwise conv's SiLU joins it where its rows fill at least half the lanes; on 7-wide
    rows (LLVM splits each 7-lane vector) it stays a kernel of its own."""
    g = G()
    x = g.input("x", (1, 32, h, h))
    y = g("conv2d", "dw", x, *conv(32, 32, 5, groups=32, pad=[2, 2, 2, 2]))
    s = g("sigmoid", "s", y)
    g("eltwise", "m", [y, s], {"mode": "prod"}, out=True)
    want = [["conv2d", "sigmoid", "eltwise"]] if fused else [["conv2d"], ["sigmoid", "eltwise"]]
    assert ops(g.graph()) == want
