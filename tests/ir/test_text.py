"""The textual IR: golden files, exact round trip, weights (inline, side-car), dot export."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from cococ.ir.core import CococError, Graph, Layer, Param, TensorType, Value
from cococ.ir.dot import to_dot
from cococ.ir.parser import parse_file, parse_ir
from cococ.ir.printer import print_graph, save_ir
from cococ.ir.verify import infer_shapes, verify

GOLDEN = Path(__file__).parent / "golden"
CANONICAL = sorted(p for p in GOLDEN.glob("*.ir") if not p.name.endswith(".in.ir"))


def mode(path: Path) -> str:
    return "inline" if "inline" in path.stem else "hash"


@pytest.mark.parametrize("path", CANONICAL, ids=lambda p: p.name)
def test_golden_prints_back_identically(path):
    text = path.read_text()
    g = parse_ir(text, str(path))
    assert print_graph(g, mode(path)) == text
    g2 = parse_ir(print_graph(g, "inline"))  # parse -> print -> parse: the same graph
    assert print_graph(g2, "inline") == print_graph(g, "inline")


@pytest.mark.parametrize("path", sorted(GOLDEN.glob("*.in.ir")), ids=lambda p: p.name)
def test_golden_normalises(path):
    expected = path.with_name(path.name.replace(".in.ir", ".out.ir")).read_text()
    assert print_graph(parse_ir(path.read_text())) == expected


def test_layers_record_their_location():
    g = parse_ir((GOLDEN / "lenet.ir").read_text())
    assert g.layer("data").loc == (2, 3)
    assert g.layer("conv1").loc == (3, 3)


def test_modules_and_multi_output():
    g = parse_ir((GOLDEN / "residual.ir").read_text())
    assert g.modules == ["res2a"]
    assert [l.name for l in g.module_layers("res2a")][0] == "res2a_branch2a"
    assert g.layer("pool").module is None
    s = parse_ir((GOLDEN / "slice.ir").read_text())
    assert [v.name for v in s.layer("slice").outputs] == ["s0", "s1", "s2"]
    assert [v.name for v in s.outputs] == ["y", "s0"]


def test_quoted_names_and_values():
    g = parse_ir((GOLDEN / "quoted_inline.ir").read_text())
    assert g.name == "odd name/v1"
    assert g.layer('in "q"').outputs[0].name == "data/in"
    assert g.layer("relu\\1").outputs[0].name == "relu\tout"
    assert g.modules == ["inception_3a/é"]
    assert g.layer("clip").attrs["min"] == -float("inf")
    eps = g.meta["eps"]
    assert eps[0] == 1e-05 and eps[1] == float("inf") and np.isnan(eps[2])
    w = g.layer("conv1/1x1_s1").params["weight"]
    assert w.attrs == {"qformat": "q15", "scale": 0.0078125} and w.data.dtype == np.float32
    fc = g.layer("fc").params["weight"]
    assert fc.format == "simd_group" and fc.attrs == {"width": 2}
    assert fc.arrays["indptr"].dtype == np.int32 and list(fc.arrays["indices"]) == [0, 4, 8]


def test_hash_only_params_keep_their_hash():
    g = parse_ir((GOLDEN / "lenet.ir").read_text())
    p = g.layer("conv1").params["weight"]
    assert p.data is None and p.hash == "3fa2b1c0" and not p.has_data
    q = parse_ir((GOLDEN / "quoted_inline.ir").read_text())
    stub = parse_ir(print_graph(q)).layer("fc").params["weight"]
    assert not stub.arrays and stub.array_stubs["values"][0] == TensorType((3,), "f32")


def small_graph(seed=0) -> Graph:
    rng = np.random.default_rng(seed)
    x, c, y = Value("x"), Value("conv/out"), Value("y")
    w = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
    w.flat[:4] = [np.float32(1e-45), np.float32(-0.0), np.float32(3.4e38), np.float32(0.1)]
    g = Graph("small", [
        Layer("input", "x", [], [x], {"shape": [1, 2, 5, 5]}),
        Layer("conv2d", "conv", [x], [c], {"out_channels": 3, "kernel": [3, 3]},
              {"weight": Param.from_array(w), "bias": Param.from_array(np.arange(3, dtype=np.float32))}, "m"),
        Layer("relu", "relu", [c], [y], module="m"),
    ], [y], ["m"])
    infer_shapes(g)
    return g


def test_inline_weights_are_exact():
    g = small_graph()
    g2 = parse_ir(print_graph(g, "inline"))
    for l, l2 in zip(g.layers, g2.layers):
        for k, p in l.params.items():
            assert p.data.tobytes() == l2.params[k].data.tobytes()
            assert l2.params[k].hash == p.hash


def test_save_ir_with_sidecar(tmp_path):
    g = small_graph()
    save_ir(g, tmp_path / "net.ir")
    assert (tmp_path / "net.npz").exists()
    assert not re.search(r"#[0-9a-f]{8} = \[", (tmp_path / "net.ir").read_text())  # no inline values
    g2 = parse_file(tmp_path / "net.ir")
    assert np.array_equal(g2.layer("conv").params["weight"].data, g.layer("conv").params["weight"].data)
    assert print_graph(g2, "inline") == print_graph(g, "inline")
    save_ir(g, tmp_path / "inl.ir", weights="inline")
    assert not (tmp_path / "inl.npz").exists()
    assert print_graph(parse_file(tmp_path / "inl.ir"), "inline") == print_graph(g, "inline")


def test_sidecar_with_compressed_params(tmp_path):
    g = parse_ir((GOLDEN / "quoted_inline.ir").read_text())
    save_ir(g, tmp_path / "q.ir")
    g2 = parse_file(tmp_path / "q.ir")
    assert print_graph(g2, "inline") == (GOLDEN / "quoted_inline.ir").read_text()


def test_sidecar_hash_mismatch_names_the_param(tmp_path):
    g = small_graph()
    save_ir(g, tmp_path / "net.ir")
    arrays = dict(np.load(tmp_path / "net.npz"))
    arrays["conv/bias"] = arrays["conv/bias"] + 1
    np.savez(tmp_path / "net.npz", **arrays)
    with pytest.raises(CococError, match=r"layer 'conv'.*param 'bias'.*hash"):
        parse_file(tmp_path / "net.ir")


def test_inline_hash_mismatch_is_an_error():
    text = print_graph(small_graph(), "inline").replace("= [0.0, 1.0, 2.0]", "= [0.0, 1.0, 2.5]")
    with pytest.raises(CococError, match=r"bias.*hash"):
        parse_ir(text)


def test_attrs_print_in_schema_order_then_sorted():
    g = small_graph()
    conv = g.layer("conv")
    conv.attrs = {"groups": 1, "kernel": [3, 3], "out_channels": 3}
    line = print_graph(g).splitlines()[3]
    assert "{out_channels = 3, kernel = [3, 3], groups = 1}" in line


def test_float_attrs_round_trip_exactly():
    for f in [1e-05, 0.1, 1 / 3, 1e300, 5e-324, -0.0, float("inf"), -float("inf"), 123456789.0]:
        g = small_graph()
        g.meta = {"f": f, "fs": [f, 2.5]}
        g2 = parse_ir(print_graph(g))
        assert repr(g2.meta["f"]) == repr(f) and isinstance(g2.meta["f"], float)


def test_parse_error_is_one_line_with_location():
    with pytest.raises(CococError) as e:
        parse_ir("graph @g {\n  %x: f32[1] = input \"x\" {shape = [1]\n  return %x\n}\n", "a.ir")
    msg = str(e.value)
    assert msg.startswith("a.ir:3:3: unexpected 'return'") and "expected" in msg and "\n" not in msg


def test_untyped_values_print_as_question_mark():
    g = Graph("u", [Layer("input", "x", [], [Value("x")], {"shape": [2]})])
    g.outputs = [g.layers[0].outputs[0]]
    text = print_graph(g)
    assert "%x: ? = input" in text
    g2 = parse_ir(text, verify=False)
    assert g2.value("x").type is None
    with pytest.raises(CococError, match="no type"):
        verify(g2)


def test_dot_export_has_clusters():
    dot = to_dot(parse_ir((GOLDEN / "residual.ir").read_text()))
    assert dot.startswith('digraph "resblock" {') and dot.rstrip().endswith("}")
    assert "subgraph cluster_" in dot and 'label="res2a"' in dot
    assert dot.count("->") == 10  # 9 value edges + 1 to the output
    q = to_dot(parse_ir((GOLDEN / "quoted_inline.ir").read_text()))
    assert 'label="in \\"q\\"\\ninput"' in q and "relu\\\\1" in q
