"""Compressed Param formats: round trips, sizes, index widths, and the printer/parser."""
import numpy as np
import pytest

from cococ.ir.core import CococError, Graph, Layer, Param, TensorType, Value
from cococ.ir.formats import check, compress, cols_padded, decompress, sparsity
from cococ.ir.parser import parse_file, parse_ir
from cococ.ir.printer import print_graph, save_ir


def _sparse(shape, density, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(shape).astype(dtype)
    w[rng.random(shape) > density] = 0
    return w


@pytest.mark.parametrize("shape", [(7, 13), (4, 3, 3, 3), (1, 1)])
def test_csr_roundtrip(shape):
    w = _sparse(shape, 0.3)
    p = compress(Param.from_array(w), "csr")
    assert p.format == "csr" and p.shape == shape
    np.testing.assert_array_equal(decompress(p), w)
    np.testing.assert_array_equal(p.dense(), w)
    assert sparsity(p) == pytest.approx(1 - np.count_nonzero(w) / w.size)
    assert p.arrays["indices"].dtype == np.int16


@pytest.mark.parametrize("width", [1, 2, 4, 8])
@pytest.mark.parametrize("shape", [(5, 16), (6, 13), (3, 2, 3, 3)])
def test_simd_group_roundtrip(shape, width):
    w = _sparse(shape, 0.4, seed=width)
    p = compress(w, "simd_group", width=width)
    assert p.attrs["width"] == width
    np.testing.assert_array_equal(decompress(p), w)
    assert np.all(p.arrays["indices"] % width == 0)
    assert p.arrays["values"].size == p.arrays["indices"].size * width
    cols = int(np.prod(shape[1:]))
    assert cols_padded(p) == -(-cols // width) * width


def test_simd_group_figure8():
    """Scalpel fig. 8: rows of groups of 2; IA' counts groups, JA' the first column of each."""
    w = np.array([[1, 2, 0, 0, 3, 0],
                  [0, 0, 0, 0, 0, 0],
                  [0, 0, 4, 5, 0, 6]], np.float32)
    p = compress(w, "simd_group", width=2)
    np.testing.assert_array_equal(p.arrays["values"], [1, 2, 3, 0, 4, 5, 0, 6])
    np.testing.assert_array_equal(p.arrays["indptr"], [0, 2, 2, 4])
    np.testing.assert_array_equal(p.arrays["indices"], [0, 4, 2, 4])
    # the zero inside a kept group is stored: 8 slots of 18 -> sparsity 10/18
    assert sparsity(p) == pytest.approx(10 / 18)


def test_explicit_keep_and_index_dtype():
    w = np.ones((4, 8), np.float32)
    keep = np.zeros((4, 2), bool)
    keep[1, 1] = True
    p = compress(w, "simd_group", width=4, keep=keep, index_dtype="i32")
    assert p.arrays["indptr"].dtype == np.int32
    d = decompress(p)
    assert d.sum() == 4 and d[1, 4:].sum() == 4
    big = compress(np.eye(3, 40000, dtype=np.float32), "csr")
    assert big.arrays["indices"].dtype == np.int32


def test_check_rejects_bad_arrays():
    p = compress(_sparse((4, 8), 0.5), "simd_group", width=2)
    p.arrays["indices"] = p.arrays["indices"] + 1
    with pytest.raises(CococError, match="aligned"):
        check(p)
    with pytest.raises(CococError, match="unknown param format"):
        compress(np.ones((2, 2), np.float32), "coo")


def test_quantized_q15_keeps_dtype():
    w = (_sparse((8, 10), 0.5) * 1000).astype(np.int16)
    p = compress(Param.from_array(w, attrs={"scale": 0.001}), "simd_group", width=2)
    assert p.arrays["values"].dtype == np.int16 and p.attrs["scale"] == 0.001
    np.testing.assert_array_equal(p.dense(), w)
    assert p.nbytes < w.nbytes + 100


def _graph(param):
    x = Value("x", TensorType((1, 16)))
    y = Value("y", TensorType((1, 6)))
    return Graph("g", [Layer("input", "x", [], [x], {"shape": [1, 16], "dtype": "f32"}),
                       Layer("dense", "fc", [x], [y], {"out_features": 6}, {"weight": param})], [y])


@pytest.mark.parametrize("fmt,width", [("simd_group", 2), ("csr", 1)])
def test_printer_parser_roundtrip(fmt, width, tmp_path):
    w = _sparse((6, 16), 0.4)
    g = _graph(compress(w, fmt, width=width))
    text = print_graph(g)
    assert fmt in text
    g2 = parse_ir(text)
    p2 = g2.layer("fc").params["weight"]
    assert p2.format == fmt and p2.attrs.get("width", 1) == width
    assert print_graph(g2) == text
    # with weights: inline and the .npz side-car
    g3 = parse_ir(print_graph(g, weights="inline"))
    np.testing.assert_array_equal(g3.layer("fc").params["weight"].dense(), w)
    save_ir(g, tmp_path / "m.ir")
    g4 = parse_file(tmp_path / "m.ir")
    np.testing.assert_array_equal(g4.layer("fc").params["weight"].dense(), w)
