"""Binary .caffemodel reading and weight matching, with a tiny wire-format writer as the source."""
import struct

import numpy as np
import pytest

from cococ.frontend.caffemodel import read_caffemodel
from cococ.frontend.prototxt import load_prototxt_text
from cococ.frontend.weights import init_weights, load_weights
from cococ.ir.core import CococError


# ---- a minimal protobuf writer (only what NetParameter / LayerParameter / BlobProto need) -----
def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _len(num: int, payload: bytes) -> bytes:
    return _varint(num << 3 | 2) + _varint(len(payload)) + payload


def blob(a, legacy=False, packed=True, double=False) -> bytes:
    a = np.asarray(a)
    if legacy:
        dims = (1,) * (4 - a.ndim) + a.shape
        out = b"".join(_varint(i << 3) + _varint(d) for i, d in enumerate(dims, 1))
    else:
        out = _len(7, _len(1, b"".join(_varint(d) for d in a.shape)))
    if double:
        return out + _len(8, a.astype("<f8").tobytes())
    if packed:
        return out + _len(5, a.astype("<f4").tobytes())
    return out + b"".join(_varint(5 << 3 | 5) + struct.pack("<f", x) for x in a.ravel())


def layer(name, type_, blobs, v1=False) -> bytes:
    if v1:  # V1LayerParameter: name 4, type 5 (enum), blobs 6; NetParameter.layers = 2
        body = _len(4, name.encode()) + _varint(5 << 3) + _varint(4) + b"".join(_len(6, b) for b in blobs)
        return _len(2, body)
    body = _len(1, name.encode()) + _len(2, type_.encode()) + b"".join(_len(7, b) for b in blobs)
    return _len(100, body)


NET = """input: "data" input_shape { dim: 2 dim: 3 dim: 6 dim: 6 }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" convolution_param { num_output: 4 kernel_size: 3 } }
layer { name: "bn" type: "BatchNorm" bottom: "conv" top: "conv" }
layer { name: "sc" type: "Scale" bottom: "conv" top: "conv" scale_param { bias_term: true } }
layer { name: "pr" type: "PReLU" bottom: "conv" top: "conv" }
layer { name: "fc" type: "InnerProduct" bottom: "conv" top: "fc" inner_product_param { num_output: 5 } }
"""


def test_roundtrip_matches_by_name(tmp_path):
    g = load_prototxt_text(NET)
    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    mean, var = rng.standard_normal(4).astype(np.float32), rng.uniform(1, 2, 4).astype(np.float32)
    fcw = rng.standard_normal((5, 64)).astype(np.float32)
    data = (layer("data", "Input", [])
            + layer("conv", "Convolution", [blob(w), blob(b, packed=False)])
            + layer("bn", "BatchNorm", [blob(mean * 4), blob(var * 4), blob([4.0])])
            + layer("sc", "Scale", [blob(np.ones(4)), blob(np.zeros(4), double=True)])
            + layer("pr", "PReLU", [blob(np.full(4, 0.1))])
            + layer("fc", "InnerProduct", [blob(fcw, legacy=True), blob(np.zeros(5), legacy=True)])
            + layer("loss", "SoftmaxWithLoss", [blob([1.0])]))
    path = tmp_path / "m.caffemodel"
    path.write_bytes(data)
    src = read_caffemodel(path)
    assert [(l.name, len(l.blobs)) for l in src] == [("data", 0), ("conv", 2), ("bn", 3), ("sc", 2), ("pr", 1),
                                                     ("fc", 2), ("loss", 1)]
    report = load_weights(g, path)
    assert report.ignored == ["loss"] and report.missing == []
    np.testing.assert_array_equal(g.layer("conv").params["weight"].data, w)
    np.testing.assert_array_equal(g.layer("conv").params["bias"].data, b)
    np.testing.assert_allclose(g.layer("bn").params["mean"].data, mean, rtol=1e-6)  # divided by the factor
    np.testing.assert_allclose(g.layer("bn").params["var"].data, var, rtol=1e-6)
    np.testing.assert_array_equal(g.layer("fc").params["weight"].data, fcw)  # legacy (1,1,5,64) blob
    # the same weights through .npz and .safetensors keys layer/param
    arrays = {f"{l.name}/{p}": prm.data for l in g.layers for p, prm in l.params.items()}
    np.savez(tmp_path / "w.npz", **arrays)
    g2 = load_prototxt_text(NET)
    assert load_weights(g2, tmp_path / "w.npz").missing == []
    np.testing.assert_array_equal(g2.layer("fc").params["weight"].data, fcw)
    from safetensors.numpy import save_file
    save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(tmp_path / "w.safetensors"))
    g3 = load_prototxt_text(NET)
    load_weights(g3, tmp_path / "w.safetensors")
    np.testing.assert_array_equal(g3.layer("bn").params["var"].data, g.layer("bn").params["var"].data)


def test_v1_layers_are_read(tmp_path):
    path = tmp_path / "v1.caffemodel"
    path.write_bytes(layer("conv", None, [blob(np.ones((4, 3, 3, 3))), blob(np.ones(4))], v1=True))
    (l,) = read_caffemodel(path)
    assert l.name == "conv" and l.type == "4" and l.blobs[0].shape == (4, 3, 3, 3)


@pytest.mark.parametrize("blobs,match", [
    ([blob(np.ones((4, 3, 3, 3)))] * 3, r"layer 'conv': the caffemodel has 3 blob\(s\) .* expects 2 \(weight, bias\)"),
    ([blob(np.ones((4, 3, 5, 5))), blob(np.ones(4))],
     r"layer 'conv': param 'weight' has shape \[4, 3, 3, 3\] .* \[4, 3, 5, 5\]"),
])
def test_mismatch_errors_name_layer_and_param(tmp_path, blobs, match):
    path = tmp_path / "bad.caffemodel"
    path.write_bytes(layer("conv", "Convolution", blobs))
    with pytest.raises(CococError, match=match):
        load_weights(load_prototxt_text(NET), path)


def test_corrupt_and_npz_errors(tmp_path):
    path = tmp_path / "c.caffemodel"
    path.write_bytes(layer("conv", "Convolution", [blob(np.ones((4, 3, 3, 3)))])[:-7])
    with pytest.raises(CococError, match="corrupt caffemodel|values"):
        load_weights(load_prototxt_text(NET), path)
    np.savez(tmp_path / "w.npz", **{"nope/weight": np.ones(3)})
    with pytest.raises(CococError, match="'nope/weight' names no layer"):
        load_weights(load_prototxt_text(NET), tmp_path / "w.npz")
    np.savez(tmp_path / "w2.npz", **{"conv/gain": np.ones(3)})
    with pytest.raises(CococError, match="layer has no param 'gain'"):
        load_weights(load_prototxt_text(NET), tmp_path / "w2.npz")


def test_init_random_is_he_and_deterministic():
    a = init_weights(load_prototxt_text(NET), "random", seed=3)
    b = init_weights(load_prototxt_text(NET), "random", seed=3)
    w = a.layer("fc").params["weight"].data
    np.testing.assert_array_equal(w, b.layer("fc").params["weight"].data)
    assert abs(w.std() - np.sqrt(2 / 64)) < 0.03
    assert not a.layer("conv").params["bias"].data.any() and (a.layer("sc").params["scale"].data == 1).all()
    assert (a.layer("bn").params["var"].data > 0).all()
