"""The ONNX ops real CNNs exported by torch need: Transpose (channel shuffle, NCHW <-> NHWC), Split
and Slice on channels (ShuffleNet v2), Resize/Upsample, ReduceMean over H, W, HardSwish and
HardSigmoid, SiLU (Sigmoid then Mul) and squeeze-excite's broadcasting Mul.

Each model is built with onnx.helper, imported, and run three ways against onnxruntime on the
original model (relative 1e-4): the reference interpreter, the torch rules (`to_torch`) and,
once per op, the x86 build. Unsupported configurations are one-line errors naming the node.
"""
from __future__ import annotations

import shutil
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from cococ.backends.build import build
from cococ.frontend.onnx import load_onnx
from cococ.ir.core import CococError
from cococ.ir.interpreter import run
from cococ.runtime.torch.module import to_torch

RNG = np.random.default_rng(7)
I64_MAX = np.iinfo(np.int64).max
needs_gcc = pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="arm-none-eabi-gcc not installed")


def W(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def i64(*v):
    return np.asarray(v, dtype=np.int64)


def model(nodes, in_shape, inits=(), opset=17, outputs=None):
    inp = helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)
    outs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in (outputs or [nodes[-1].output[0]])]
    g = helper.make_graph(nodes, "t", [inp], outs, [numpy_helper.from_array(a, n) for n, a in inits])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)
    inferred = {o.name: o for o in onnx.shape_inference.infer_shapes(m).graph.output}
    for o in m.graph.output:
        if inferred[o.name].type.tensor_type.HasField("shape"):
            o.CopyFrom(inferred[o.name])
        else:  # the checker wants a shape: symbolic dims of the input's rank
            for i in range(len(in_shape)):
                o.type.tensor_type.shape.dim.add().dim_param = f"{o.name}_{i}"
    return m


def agree(m, x86=False, rel=1e-4):
    """Import `m`; interpreter, torch rules (and the x86 build) against onnxruntime on every output."""
    g = load_onnx(m)
    x = RNG.standard_normal(g.inputs[0].type.shape).astype(np.float32)
    want = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    names = [v.name for v in g.outputs]
    ref = run(g, {"x": x})
    got = {"interpreter": [ref[n] for n in names]}
    t = to_torch(g)(torch.from_numpy(x))
    got["torch"] = [v.detach().numpy() for v in (t if isinstance(t, (tuple, list)) else [t])]
    if x86:
        out = build(g, "x86").run({"x": x})
        got["x86"] = [out[n] for n in names]
    for how, ys in got.items():
        for y, w in zip(ys, want):
            assert y.shape == w.shape, how
            err = np.abs(y - w).max()
            assert err <= rel * max(1.0, np.abs(w).max()), f"{how}: max |err| {err}"
    return g


def ops(g):
    return [l.op for l in g.layers if l.op != "input"]


def error(m) -> str:
    with pytest.raises(CococError) as e:
        load_onnx(m)
    return str(e.value)


# ---- Transpose -----------------------------------------------------------------------------------

def test_channel_shuffle_and_nhwc_transpose():
    """ShuffleNet's shuffle (5-D transpose between reshapes) and NCHW -> NHWC at the output."""
    nodes = [helper.make_node("Reshape", ["x", "s5"], ["r"]),
             helper.make_node("Transpose", ["r"], ["t"], perm=[0, 2, 1, 3, 4]),
             helper.make_node("Reshape", ["t", "s4"], ["sh"]),
             helper.make_node("Relu", ["sh"], ["a"]),
             helper.make_node("Transpose", ["a"], ["y"], perm=[0, 2, 3, 1], name="nhwc")]
    g = agree(model(nodes, [2, 6, 3, 5], inits=[("s5", i64(2, 2, 3, 3, 5)), ("s4", i64(2, 6, 3, 5))]), x86=True)
    assert ops(g) == ["reshape", "transpose", "reshape", "relu", "transpose"]
    assert g.layers[-1].attrs["perm"] == [0, 2, 3, 1] and g.layers[-1].name == "nhwc"


def test_transpose_of_size1_dims_stays_a_reshape_and_default_perm_reverses():
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=[0, 2, 1, 3]),
             helper.make_node("Transpose", ["t"], ["y"])]
    g = agree(model(nodes, [2, 1, 4, 3]))
    assert ops(g) == ["reshape", "transpose"] and g.layers[-1].attrs["perm"] == [3, 2, 1, 0]


@needs_gcc
@pytest.mark.parametrize("quant", [None, "q15"])
def test_new_ops_on_the_m4(quant, tmp_path):
    """An M4 build runs each new op through its TVM rule: a 5-D channel shuffle, a squeeze-excite
    gate and a bilinear resize (about 15 s each). In q15 the transpose runs on the integers (it
    keeps its input's scale), the others as the fixed-point lowering decides (float32 without
    an integer kernel)."""
    nodes = [helper.make_node("Reshape", ["x", "s5"], ["r"]),
             helper.make_node("Transpose", ["r"], ["t"], perm=[0, 2, 1, 3, 4]),
             helper.make_node("Reshape", ["t", "s4"], ["sh"]),
             helper.make_node("GlobalAveragePool", ["sh"], ["p"]), helper.make_node("Sigmoid", ["p"], ["s"]),
             helper.make_node("Mul", ["sh", "s"], ["se"]),
             helper.make_node("Resize", ["se", "", "", "sz"], ["y"], mode="linear")]
    g = load_onnx(model(nodes, [1, 4, 3, 3], inits=[("s5", i64(1, 2, 2, 3, 3)), ("s4", i64(1, 4, 3, 3)),
                                                     ("sz", i64(1, 4, 5, 7))]))
    assert ops(g) == ["reshape", "transpose", "reshape", "global_avg_pool", "sigmoid", "broadcast_eltwise", "resize"]
    x = W(1, 4, 3, 3)
    ref = run(g, [x])["y"]
    if quant is None:
        art = build(g, "arm-m4", out_dir=tmp_path, sample_input=x)
        np.testing.assert_allclose(art.run(x)["y"], ref, rtol=1e-6, atol=1e-6)
        return
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        art = build(g, "arm-m4", out_dir=tmp_path, quantize=quant, sample_input=x, calibration=x)
    assert not [w for w in warned if "transpose layers run in float32" in str(w.message)]
    assert np.abs(art.run(x)["y"] - ref).max() <= 0.01 * np.abs(ref).max()


# ---- Split and Slice ----------------------------------------------------------------------------

@pytest.mark.parametrize("opset", [13, 18])
def test_channel_split(opset):
    """ShuffleNet v2's x.chunk(2, dim=1): sizes as an input (13) or num_outputs (18)."""
    if opset == 13:
        split = helper.make_node("Split", ["x", "sizes"], ["a", "b"], axis=1)
        inits = [("sizes", i64(3, 3))]
    else:
        split = helper.make_node("Split", ["x"], ["a", "b"], axis=1, num_outputs=2)
        inits = []
    nodes = [split, helper.make_node("Relu", ["b"], ["rb"]), helper.make_node("Concat", ["a", "rb"], ["y"], axis=1)]
    g = agree(model(nodes, [1, 6, 4, 4], inits=inits, opset=opset))
    assert ops(g) == ["slice", "relu", "concat"]


def test_slice_on_channels_of_an_activation():
    """The TorchScript exporter's x[:, :c] and x[:, c:] (ends INT64_MAX; the two are one IR slice),
    negative starts, a two-axis cut and an opset-9 Slice (attributes)."""
    conv = helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1])
    nodes = [conv,
             helper.make_node("Slice", ["c", "z", "h", "one"], ["lo"]),
             helper.make_node("Slice", ["c", "h", "big", "one"], ["hi"]),
             helper.make_node("Slice", ["c", "neg", "e2", "ax13", "ones"], ["mid"]),
             helper.make_node("Relu", ["hi"], ["rhi"]),
             helper.make_node("Concat", ["lo", "rhi"], ["y"], axis=1)]
    m = model(nodes, [1, 3, 5, 5], opset=13, outputs=["y", "mid"],
              inits=[("w", W(8, 3, 3, 3)), ("z", i64(0)), ("h", i64(4)), ("one", i64(1)), ("big", i64(I64_MAX)),
                     ("neg", i64(-6, 1)), ("e2", i64(I64_MAX, 4)), ("ax13", i64(1, 3)), ("ones", i64(1, 1))])
    g = agree(m, x86=True)
    assert ops(g) == ["conv2d", "slice", "slice", "slice", "relu", "concat"]  # lo and hi: one slice
    assert [l.attrs["points"] for l in g.layers if l.op == "slice"] == [[4], [2], [1, 4]]
    assert [v.name for v in g.layers[2].outputs] == ["lo", "hi"]
    old = [helper.make_node("Slice", ["x"], ["y"], starts=[2], ends=[5], axes=[1])]
    assert ops(agree(model(old, [1, 6, 2, 2], opset=9))) == ["slice"]


def test_slice_of_constants_folds_and_steps_are_refused_on_activations():
    nodes = [helper.make_node("Slice", ["k", "s", "e", "a", "st"], ["ks"]),
             helper.make_node("Reshape", ["x", "ks"], ["y"])]
    g = agree(model(nodes, [1, 4, 2, 3], opset=13, inits=[("k", i64(2, 0, 4, 7, 3)), ("s", i64(-1)),
                                                           ("e", i64(-I64_MAX)), ("a", i64(0)), ("st", i64(-2))]))
    assert ops(g) == ["reshape"] and g.layers[-1].attrs["shape"] == [3, 4, 2]  # k[::-2]
    n = helper.make_node("Slice", ["x", "s", "e", "a", "st"], ["y"], name="every_other")
    msg = error(model([n], [1, 4, 2, 2], opset=13, inits=[("s", i64(0)), ("e", i64(4)), ("a", i64(1)), ("st", i64(2))]))
    assert "node 'every_other' (Slice)" in msg and "step 1" in msg


# ---- Resize and Upsample ------------------------------------------------------------------------

RESIZES = [  # (mode, coordinate_transformation_mode, nearest_mode, scales or None, sizes or None)
    ("nearest", "asymmetric", "floor", [1, 1, 2, 2], None),                 # torch nn.Upsample(scale_factor=2)
    ("nearest", "half_pixel", "round_prefer_floor", None, [1, 3, 7, 3]),     # ONNX's defaults, odd sizes
    ("nearest", "align_corners", "round_prefer_ceil", None, [1, 3, 9, 10]),
    ("nearest", "tf_half_pixel_for_nn", "ceil", [1, 1, 1.5, 0.5], None),
    ("linear", "half_pixel", "round_prefer_floor", [1, 1, 2, 2], None),      # torch bilinear, align_corners=False
    ("linear", "pytorch_half_pixel", "round_prefer_floor", None, [1, 3, 1, 11]),
    ("linear", "align_corners", "round_prefer_floor", None, [1, 3, 9, 5]),   # torch bilinear, align_corners=True
    ("linear", "asymmetric", "round_prefer_floor", [1, 1, 0.6, 1.7], None),
]


@pytest.mark.parametrize("mode,coord,nearest,scales,sizes", RESIZES)
def test_resize(mode, coord, nearest, scales, sizes):
    ins, inits = ["x", ""], []
    if scales is not None:
        ins.append("scales")
        inits.append(("scales", np.asarray(scales, np.float32)))
    else:
        ins += ["", "sizes"]
        inits.append(("sizes", np.asarray(sizes, np.int64)))
    n = helper.make_node("Resize", ins, ["y"], mode=mode, coordinate_transformation_mode=coord, nearest_mode=nearest)
    g = agree(model([n], [1, 3, 5, 4], inits=inits, opset=13))
    assert ops(g) == ["resize"] and g.layers[1].attrs["coord"] == coord


def test_resize_builds_for_x86_and_upsample_and_opset_18_axes_import():
    up = helper.make_node("Upsample", ["x", "s"], ["u"], mode="nearest")
    g = agree(model([up], [1, 2, 3, 4], inits=[("s", np.asarray([1, 1, 2, 3], np.float32))], opset=9), x86=True)
    assert g.layers[1].attrs["coord"] == "asymmetric" and g.layers[1].attrs["nearest"] == "floor"
    lin = helper.make_node("Resize", ["x", "", "", "sz"], ["y"], mode="linear", axes=[2, 3])
    g = agree(model([lin], [1, 2, 3, 4], inits=[("sz", i64(6, 7))], opset=18), x86=True)
    assert g.layers[1].attrs["size"] == [6, 7] and g.layers[1].attrs["mode"] == "linear"
    old = helper.make_node("Upsample", ["x"], ["y"], mode="linear", scales=[1.0, 1.0, 2.0, 2.0])
    agree(model([old], [1, 2, 3, 4], opset=8))


def test_unsupported_resizes_name_their_node():
    cubic = helper.make_node("Resize", ["x", "", "s"], ["y"], mode="cubic", name="rc")
    assert "node 'rc' (Resize): Resize mode 'cubic' is not supported" in error(
        model([cubic], [1, 2, 3, 4], inits=[("s", np.asarray([1, 1, 2, 2], np.float32))], opset=13))
    chan = helper.make_node("Resize", ["x", "", "s"], ["y"], name="rn")
    assert "resizes N or C" in error(model([chan], [1, 2, 3, 4], inits=[("s", np.asarray([1, 2, 2, 2], np.float32))],
                                           opset=13))


# ---- ReduceMean, HardSwish, SiLU, squeeze-excite -----------------------------------------------

@pytest.mark.parametrize("opset,keepdims", [(13, 1), (13, 0), (18, 1), (18, 0)])
def test_reduce_mean_over_hw(opset, keepdims):
    """torch's x.mean([2, 3]) (keepdim either way): axes an attribute before opset 18, an input from it."""
    if opset < 18:
        n = helper.make_node("ReduceMean", ["x"], ["y"], axes=[2, -1], keepdims=keepdims)
        inits = []
    else:
        n = helper.make_node("ReduceMean", ["x", "axes"], ["y"], keepdims=keepdims)
        inits = [("axes", i64(-2, 3))]
    g = agree(model([n], [2, 3, 4, 5], inits=inits, opset=opset), x86=opset == 18 and not keepdims)
    assert ops(g) == ["global_avg_pool"] + ([] if keepdims else ["reshape"])


def test_reduce_over_channels_is_refused():
    n = helper.make_node("ReduceMean", ["x"], ["y"], axes=[1], name="rm")
    assert "node 'rm' (ReduceMean): ReduceMean over axes [1]" in error(model([n], [1, 3, 4, 4], opset=13))


def test_hardswish_hardsigmoid_import():
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("HardSwish", ["c"], ["h"]),
             helper.make_node("HardSigmoid", ["h"], ["y"], alpha=1 / 6)]
    g = agree(model(nodes, [1, 3, 6, 6], inits=[("w", W(4, 3, 3, 3))], opset=14), x86=True)
    assert ops(g) == ["conv2d", "hardswish", "hardsigmoid"] and g.layers[-1].attrs["beta"] == 0.5


def test_silu_and_squeeze_excite():
    """EfficientNet's block tail: SiLU = x * sigmoid(x), then squeeze-excite's gate s[N,C,1,1]
    (global pool, 1x1 convs, sigmoid) multiplying x, written s * x as torchvision does."""
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Sigmoid", ["c"], ["sc"]), helper.make_node("Mul", ["c", "sc"], ["silu"]),
             helper.make_node("GlobalAveragePool", ["silu"], ["p"]),
             helper.make_node("Conv", ["p", "w1", "b1"], ["f1"]), helper.make_node("Relu", ["f1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2", "b2"], ["f2"]), helper.make_node("HardSigmoid", ["f2"], ["s"]),
             helper.make_node("Mul", ["s", "silu"], ["se"]),
             helper.make_node("ReduceMean", ["se"], ["m"], axes=[2, 3], keepdims=0),
             helper.make_node("Add", ["se", "bc"], ["y"])]
    m = model(nodes, [2, 3, 5, 5], outputs=["y", "m"], opset=13,
              inits=[("w", W(8, 3, 3, 3)), ("w1", W(2, 8, 1, 1)), ("b1", W(2)), ("w2", W(8, 2, 1, 1)), ("b2", W(8))])
    m.graph.node[-1].input[1] = "p"  # + the pooled [N,C,1,1] again: a broadcasting Add of two activations
    g = agree(m, x86=True)
    assert ops(g).count("broadcast_eltwise") == 2 and ops(g)[2] == "eltwise"
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=[0, 1, 3, 2]),
             helper.make_node("Mul", ["x", "t"], ["y"], name="outer")]  # [1,3,4,1] * [1,3,1,4]: an outer product
    assert "node 'outer' (Mul): Mul of activations of shapes [1, 3, 4, 1] and [1, 3, 1, 4] is not supported" in error(
        model(nodes, [1, 3, 4, 1], opset=13))


# ---- torch exports ------------------------------------------------------------------------------

class Block(torch.nn.Module):
    """A ShuffleNet v2 unit (chunk, shuffle) with a squeeze-excite gate, SiLU and an upsampling tail."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(4, 4, 3, padding=1)
        self.fc1, self.fc2 = torch.nn.Conv2d(8, 2, 1), torch.nn.Conv2d(2, 8, 1)

    def forward(self, x):
        a, b = x.chunk(2, dim=1)
        y = torch.cat([a, torch.nn.functional.silu(self.conv(b))], dim=1)
        n, c, h, w = y.shape
        y = y.view(n, 2, c // 2, h, w).transpose(1, 2).contiguous().view(n, c, h, w)
        s = torch.sigmoid(self.fc2(torch.relu(self.fc1(y.mean([2, 3], keepdim=True)))))
        y = s * y
        return torch.nn.functional.interpolate(y, scale_factor=2, mode="bilinear"), y.mean([2, 3])


@pytest.mark.parametrize("dynamo", [False, True])
def test_torch_export_of_a_shuffle_se_block(dynamo, tmp_path):
    """Both exporters (dynamo=True: about 15 s, most of it torch.export)."""
    torch.manual_seed(0)
    m = Block().eval()
    torch.onnx.export(m, (torch.rand(2, 8, 5, 6),), tmp_path / "b.onnx", opset_version=18 if dynamo else 17,
                      dynamo=dynamo, input_names=["x"], output_names=["up", "pooled"])
    g = agree(onnx.load(tmp_path / "b.onnx"))
    assert {"transpose", "broadcast_eltwise", "resize", "global_avg_pool", "slice"} <= set(ops(g))
