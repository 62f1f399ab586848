"""Property: every valid graph prints, parses back to an equal graph, and prints identically.

Graphs are generated layer by layer from the ops that exist (conv2d, dense, pools, concat,
eltwise, slice, ...), with names drawn from all of Unicode (quotes, slashes, control
characters), random attributes, params hash-only / with data / compressed, and modules.
"""
from __future__ import annotations

import math

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cococ.ir.core import NP_TO_DTYPE, Graph, Layer, Param, TensorType, Value, digest
from cococ.ir.parser import parse_ir
from cococ.ir.printer import print_graph
from cococ.ir.registry import all_ops
from cococ.ir.verify import infer_shapes, verify

NAMES = st.one_of(st.from_regex(r"[a-z_][a-z0-9_]{0,6}", fullmatch=True),
                  st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=8))
FLOATS = st.floats(allow_nan=True, allow_infinity=True)
SIMPLE = st.one_of(st.integers(-10**12, 10**12), FLOATS, st.booleans(), NAMES)
META = st.dictionaries(NAMES, st.one_of(SIMPLE, st.lists(SIMPLE, max_size=3),
                                        st.dictionaries(NAMES, SIMPLE, max_size=2)), max_size=3)


class Builder:
    def __init__(self, draw):
        self.draw, self.g, self.names = draw, Graph(draw(NAMES)), set()
        self.seed = draw(st.integers(0, 2**32 - 1))
        self.rng = np.random.default_rng(self.seed)

    def unique(self) -> str:
        n = self.draw(NAMES)
        while n in self.names:
            n += "'"
        self.names.add(n)
        return n

    def add(self, op, inputs, attrs=None, params=None, n_out=1) -> list[Value]:
        outs = [Value(self.unique()) for _ in range(n_out)]
        layer = Layer(op, self.unique(), inputs, outs, attrs or {}, params or {})
        self.g.layers.append(layer)
        infer_shapes(Graph("t", [layer]))  # types now, so the next step can pick by shape
        return outs

    def param(self, shape) -> Param:
        kind = self.draw(st.sampled_from(["hash", "data", "quant", "simd"]))
        t = TensorType(shape)
        if kind == "hash":
            return Param(t, None, hash=self.draw(st.from_regex(r"[0-9a-f]{8}", fullmatch=True)))
        if kind == "simd":
            nnz = int(self.rng.integers(0, 5))
            return Param(t, format="simd_group", attrs={"width": 2}, arrays={
                "values": self.rng.standard_normal(2 * nnz).astype(np.float32),
                "indptr": np.sort(self.rng.integers(0, nnz + 1, shape[0] + 1)).astype(np.int32),
                "indices": self.rng.integers(0, 100, nnz).astype(np.int32)})
        data = (self.rng.standard_normal(shape) * 10.0 ** self.rng.integers(-40, 38)).astype(np.float32)
        attrs = {"scale": self.draw(FLOATS), "qformat": "q15"} if kind == "quant" else {}
        return Param.from_array(data, attrs=attrs)

    def pick(self, pred=lambda v: True):
        vs = [v for v in self.g.values() if pred(v)]
        return self.draw(st.sampled_from(vs)) if vs else None


def rank(r):
    return lambda v: v.type.rank == r


def step(b: Builder, ops) -> None:
    op = b.draw(st.sampled_from(ops))
    d = b.draw
    if op == "conv2d":
        x = b.pick(rank(4))
        n, c, h, w = x.type.shape
        k = [d(st.integers(1, min(3, h))), d(st.integers(1, min(3, w)))]
        g = d(st.sampled_from([i for i in (1, 2, c) if c % i == 0]))
        o = g * d(st.integers(1, 3))
        attrs = {"out_channels": o, "kernel": k}
        if d(st.booleans()):
            attrs.update(stride=[d(st.integers(1, 2)), d(st.integers(1, 2))], groups=g,
                         pad=[d(st.integers(0, 1)) for _ in range(4)])
        elif g != 1:
            attrs["groups"] = g
        params = {"weight": b.param((o, c // g, *k))}
        if d(st.booleans()):
            params["bias"] = b.param((o,))
        b.add(op, [x], attrs, params)
    elif op in ("max_pool", "avg_pool"):
        x = b.pick(rank(4))
        k = min(2, x.type.shape[2], x.type.shape[3])
        attrs = {"kernel": [k, k], "ceil_mode": d(st.booleans())} if d(st.booleans()) else {"kernel": [k, k]}
        b.add(op, [x], attrs)
    elif op == "batchnorm":
        x = b.pick(rank(4))
        c = x.type.shape[1]
        b.add(op, [x], {"eps": d(st.floats(1e-9, 1.0))}, {"mean": b.param((c,)), "var": b.param((c,))})
    elif op in ("relu", "sigmoid", "tanh", "identity"):
        b.add(op, [b.pick()])
    elif op in ("leaky_relu", "power"):
        attrs = {"alpha": d(FLOATS)} if op == "leaky_relu" else {"power": d(FLOATS), "shift": d(FLOATS)}
        b.add(op, [b.pick()], attrs)
    elif op == "eltwise":
        x = b.pick()
        same = [v for v in b.g.values() if v.type == x.type]
        ins = [x] + [d(st.sampled_from(same)) for _ in range(d(st.integers(1, 2)))]
        b.add(op, ins, {"mode": d(st.sampled_from(["sum", "prod", "max"]))})
    elif op == "concat":
        x = b.pick(rank(4))
        ok = [v for v in b.g.values() if v.type.rank == 4 and v.type.shape[0] == x.type.shape[0]
              and v.type.shape[2:] == x.type.shape[2:]]
        b.add(op, [x] + [d(st.sampled_from(ok)) for _ in range(d(st.integers(0, 2)))], {"axis": 1})
    elif op == "slice":
        x = b.pick(lambda v: v.type.rank >= 2 and v.type.shape[1] >= 2)
        if x is None:
            return
        pts = sorted(d(st.sets(st.integers(1, x.type.shape[1] - 1), min_size=1, max_size=2)))
        b.add(op, [x], {"axis": 1, "points": pts}, n_out=len(pts) + 1)
    elif op == "flatten":
        b.add(op, [b.pick(rank(4))])
    elif op in ("dense", "softmax"):
        x = b.pick(rank(2)) or b.add("flatten", [b.pick(rank(4))])[0]
        if op == "softmax":
            b.add(op, [x], {"axis": 1})
        else:
            o = d(st.integers(1, 5))
            b.add(op, [x], {"out_features": o}, {"weight": b.param((o, x.type.shape[1]))})


@st.composite
def graphs(draw) -> Graph:
    ops = [o for o in ["conv2d", "max_pool", "avg_pool", "batchnorm", "relu", "sigmoid", "tanh", "identity",
                       "leaky_relu", "power", "eltwise", "concat", "slice", "flatten", "dense", "softmax"]
           if o in all_ops()]
    b = Builder(draw)
    for _ in range(draw(st.integers(1, 2))):
        shape = [draw(st.integers(1, 2)), draw(st.integers(1, 4)), draw(st.integers(1, 5)), draw(st.integers(1, 5))]
        b.add("input", [], {"shape": shape} if draw(st.booleans()) else {"shape": shape, "dtype": "f32"})
    for _ in range(draw(st.integers(0, 8))):
        step(b, ops)
    g = b.g
    # modules: contiguous runs of non-input layers
    i = len(b.g.inputs)
    while i < len(g.layers):
        j = draw(st.integers(i + 1, len(g.layers)))
        if draw(st.booleans()):
            m = draw(NAMES)
            if m not in g.modules:
                g.modules.append(m)
                for l in g.layers[i:j]:
                    l.module = m
        i = j
    vals = list(g.values())
    g.outputs = draw(st.lists(st.sampled_from(vals), min_size=1, max_size=3))
    g.meta = draw(META)
    infer_shapes(g)
    verify(g)
    return g


def norm(x):
    """A comparable form of an attribute value (nan == nan, -0.0 != 0.0, int != float)."""
    if isinstance(x, float):
        return ("f", repr(x)) if not math.isnan(x) else ("f", "nan")
    if isinstance(x, bool):
        return ("b", x)
    if isinstance(x, list):
        return [norm(v) for v in x]
    if isinstance(x, dict):
        return {k: norm(v) for k, v in x.items()}
    return x


def same_array(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def array_specs(p: Param) -> dict:
    """(type, hash) of each array of a compressed param, with or without the data."""
    if p.arrays:
        return {n: (TensorType(a.shape, NP_TO_DTYPE[a.dtype]), digest([a])) for n, a in p.arrays.items()}
    return dict(p.array_stubs)


def assert_graphs_equal(a: Graph, b: Graph, with_data: bool) -> None:
    assert a.name == b.name and a.modules == b.modules and norm(a.meta) == norm(b.meta)
    assert [v.name for v in a.outputs] == [v.name for v in b.outputs]
    assert len(a.layers) == len(b.layers)
    for la, lb in zip(a.layers, b.layers):
        assert (la.op, la.name, la.module) == (lb.op, lb.name, lb.module)
        assert [v.name for v in la.inputs] == [v.name for v in lb.inputs]
        assert [(v.name, v.type) for v in la.outputs] == [(v.name, v.type) for v in lb.outputs]
        assert norm(la.attrs) == norm(lb.attrs)
        assert list(la.params) == list(lb.params)
        for k, pa in la.params.items():
            pb = lb.params[k]
            assert (pa.type, pa.format) == (pb.type, pb.format)
            assert pa.hash == pb.hash if pa.format == "dense" else array_specs(pa) == array_specs(pb)
            assert norm(pa.attrs) == norm(pb.attrs)
            if with_data:
                assert (pa.data is None) == (pb.data is None)
                assert pa.data is None or same_array(pa.data, pb.data)
                assert list(pa.arrays) == list(pb.arrays)
                assert all(same_array(pa.arrays[n], pb.arrays[n]) for n in pa.arrays)
    for v in b.values():  # producers point into the parsed graph
        assert v.producer is not None and v.producer in b.layers


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(graphs(), st.sampled_from(["hash", "inline"]))
def test_round_trip(g, weights):
    text = print_graph(g, weights)
    g2 = parse_ir(text)
    assert print_graph(g2, weights) == text
    assert_graphs_equal(g, g2, with_data=weights == "inline")
    g3 = parse_ir(print_graph(g2, weights))
    assert_graphs_equal(g2, g3, with_data=weights == "inline")
