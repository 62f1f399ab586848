"""Each parallel loop of an x86 kernel is one fork and join of TVM's thread pool (about 3.4 us at 2
threads here, more than a small pool's work): a pool and its division share one loop
(schedule_x86_window._join_consumer), small global pools none (PARALLEL_PLANES). Their numerics
are checked with the other schedules' cases in test_schedule_x86.py."""
from __future__ import annotations

import pytest

from cococ.backends.kernels.compute import LowerCtx
from cococ.backends.tvm import schedule_x86
from cococ.backends.tvm.lower import lower_graph
from cococ.ir.verify import infer_shapes
from tests.backends.test_tvm_x86 import G


@pytest.mark.parametrize("op, shape, attrs, loops", [
    ("global_avg_pool", (1, 1024, 16, 16), {}, 1),                     # partial sums in 16 lanes
    ("global_avg_pool", (1, 24, 14, 14), {}, 0),                       # small: on one thread
    ("global_avg_pool", (1, 8, 3, 3), {}, 0),                          # scalar sums, small
    ("avg_pool", (1, 8, 16, 16), {"kernel": [2, 2], "stride": [2, 2]}, 1),  # DenseNet's transitions
])
def test_pool_and_division_share_their_loop(op, shape, attrs, loops):
    """The division joins the pool's loop (alone, it would be a parallel loop of its own: one more);
    global pools reading fewer than PARALLEL_PLANES elements run on one thread."""
    g = G()
    g(op, "p", g.input("x", shape), attrs, out=True)
    graph = g.graph()
    infer_shapes(graph)
    mod = lower_graph(graph, LowerCtx(oc_block=16))
    text = schedule_x86.schedule_func(mod[f"{op}_p"], 16).script()
    assert text.count("T.parallel(") == loops, text
