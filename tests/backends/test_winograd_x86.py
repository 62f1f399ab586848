"""Winograd F(2,3) / F(4,3) on x86 (backends/tvm/winograd_x86.py): transforms, whole kernels against
the reference interpreter (|y - ref| <= 1e-4 (1 + |ref|)) and torch's float64 conv, odd sizes,
padding, the fused epilogue, and which convs take it (the choice rule)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cococ.backends.kernels.compute import LowerCtx
from cococ.backends.tvm import winograd_x86 as W
from cococ.ir.core import CococError
from cococ.ir.interpreter import run
from cococ.ir.target import get_target
from cococ.ir.verify import infer_shapes

from tests.backends.test_tvm_x86 import G, close, conv, rand

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("m", [2, 4])
def test_transform_matrices_compute_a_3x3_correlation(m):
    a, b, g = W.matrices(m)
    rng = np.random.default_rng(0)
    d, k = rng.standard_normal((m + 2, m + 2)), rng.standard_normal((3, 3))
    y = a.T @ ((g @ k @ g.T) * (b.T @ d @ b)) @ a
    ref = np.array([[np.sum(d[i:i + 3, j:j + 3] * k) for j in range(m)] for i in range(m)])
    assert np.abs(y - ref).max() < 1e-12


def test_weight_transform_is_packed_by_lanes():
    """U = G g G^T, packed [alpha, alpha, K/lanes, C, lanes], the channel tail zero."""
    w = rand(19, 5, 3, 3)
    u = W.transform_weights(w, 4, 16)
    assert u.shape == (6, 6, 2, 5, 16) and u.dtype == np.float32
    _, _, g = W.matrices(4)
    ref = np.einsum("ar,kcrs,bs->abkc", g, w.astype(np.float64), g)
    assert np.allclose(u[:, :, 0, :, :], ref[:, :, :16].transpose(0, 1, 3, 2), atol=1e-5)
    assert np.allclose(u[:, :, 1, :, :3], ref[:, :, 16:].transpose(0, 1, 3, 2), atol=1e-5)
    assert not u[:, :, 1, :, 3:].any()


def _block(g, feeds, name, c, o, h, w, pad, epilogue, n=1):
    """conv 3x3 (+ batchnorm + residual add + relu) on an n x c x h x w input."""
    x = g.input(name, (n, c, h, w))
    feeds[name] = rand(n, c, h, w)
    attrs, params = conv(c, o, 3, pad=list(pad), bias=epilogue != "none")
    y = g("conv2d", f"{name}_conv", x, attrs, params, out=epilogue == "none")
    if epilogue == "none":
        return
    y = g("batchnorm", f"{name}_bn", y, {"eps": 1e-5},
          {"mean": rand(o), "var": rand(o, pos=True), "scale": rand(o), "bias": rand(o)})
    if epilogue == "bn_add_relu":
        oh, ow = h + pad[0] + pad[2] - 2, w + pad[1] + pad[3] - 2
        r = g.input(f"{name}_res", (n, o, oh, ow))
        feeds[f"{name}_res"] = rand(n, o, oh, ow)
        y = g("eltwise", f"{name}_add", [y, r], {"mode": "sum"})
    g("relu", f"{name}_relu", y, out=True)


CASES = [  # c, o, h, w, pad [t, l, b, r], epilogue
    (16, 32, 8, 8, (1, 1, 1, 1), "bn_add_relu"),   # whole tiles, two channel blocks
    (5, 19, 11, 13, (1, 1, 1, 1), "bn_relu"),      # odd sizes: partial tiles, a channel tail (scalar output)
    (8, 16, 9, 7, (0, 0, 0, 0), "none"),           # no padding, no bias, no epilogue
    (32, 16, 6, 10, (1, 0, 2, 1), "bn_add_relu"),  # asymmetric padding
    (8, 16, 7, 5, (1, 1, 1, 1), "bn_relu", 2),     # batch 2: tiles of both images in one GEMM
]


@pytest.mark.parametrize("mode", ["f2", "f4"])
def test_winograd_matches_the_interpreter(mode):
    """All cases in one graph (one build); each output against the reference interpreter. F(4,3)
    takes a few seconds more to compile (its unrolled transforms)."""
    from cococ.backends.tvm import build_tvm
    g, feeds = G(), {}
    for i, case in enumerate(CASES):
        _block(g, feeds, f"b{i}", *case)
    graph = g.graph()
    art = build_tvm(graph, get_target("x86", {"winograd": mode}))
    assert art.manifest["winograd"] == [{"layer": f"b{i}_conv", "kernel": f"F({mode[1]},3)"} for i in range(len(CASES))]
    got, ref = art.run(feeds), run(graph, feeds)
    assert set(got) == set(ref)
    for k in ref:
        assert close(got[k], ref[k]), (k, float(np.abs(got[k] - ref[k]).max()))


def test_epilogue_is_fused_into_the_winograd_kernel():
    """conv + batchnorm + add + relu is one PrimFunc with the four Winograd stages and no other."""
    from cococ.backends.tvm.lower import lower_graph
    g, feeds = G(), {}
    _block(g, feeds, "b", 16, 16, 8, 8, (1, 1, 1, 1), "bn_add_relu")
    graph = g.graph()
    infer_shapes(graph)
    mod = lower_graph(graph, LowerCtx(oc_block=16, winograd="f2"))
    funcs = [f for f in mod.functions.values() if hasattr(f, "body") and "wino" in str(f)]
    assert len(funcs) == 1 and len([f for f in mod.functions.values() if "PrimFunc" in type(f).__name__]) == 1
    text = str(funcs[0])
    for stage in ("wino_pad", "wino_in", "wino_gemm"):
        assert stage in text
    assert funcs[0].attrs["tirx.is_scheduled"]


def test_against_torch_float64_at_resnet_scale():
    """A 128-channel 14x14 conv + bias + relu (He weights, as a trained net's), both variants,
    against torch's float64 conv: F(4,3)'s larger rounding error stays under the tests' 1e-4."""
    import sys
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from winograd_x86 import group_of, reference
    group, w, b = group_of(128, 14, seed=1)
    timers, feeds = W.group_timers(group, LowerCtx(oc_block=16), (2, 4))
    ref = reference(feeds[0].numpy(), w, b)
    for m, (vm, _) in timers.items():
        y = vm["main"](*feeds).numpy()
        assert np.max(np.abs(y - ref) / (1 + np.abs(ref))) < 1e-4, m


def _conv_group(c=64, o=64, h=56, w=56, k=3, stride=1, groups=1, dilation=1):
    g = G()
    x = g.input("x", (1, c, h, w))
    attrs, params = conv(c, o, k, pad=[k // 2] * 4, stride=[stride] * 2, groups=groups, dilation=[dilation] * 2)
    g("conv2d", "c", x, attrs, params, out=True)
    graph = g.graph()
    infer_shapes(graph)
    return [graph.layers[1]]


def test_choice_rule():
    """Only 3x3 / stride 1 / dilation 1 / groups 1 convs; `table` reads the measured table, `off`
    never, f2/f4 force; an unknown shape under `table` keeps the direct conv."""
    ctx = lambda mode: LowerCtx(oc_block=16, winograd=mode)  # noqa: E731
    assert W.choose(_conv_group(), ctx("table")) == W.TABLE[(64, 64, 56, 56)]
    assert W.choose(_conv_group(), ctx("off")) == 0
    assert W.choose(_conv_group(), ctx("f2")) == 2 and W.choose(_conv_group(), ctx("f4")) == 4
    assert W.choose(_conv_group(c=48, o=48, h=20, w=20), ctx("table")) == 0  # not measured: direct
    for kw in ({"stride": 2}, {"k": 1}, {"k": 5}, {"groups": 4}, {"dilation": 2}):
        assert W.choose(_conv_group(**kw), ctx("f4")) == 0, kw
    assert W.choose(_conv_group(), LowerCtx(oc_block=1, winograd="f4")) == 0  # cuda / arm-m4: never
    with pytest.raises(CococError, match="winograd"):
        W.choose(_conv_group(), ctx("f8"))
    with pytest.raises(CococError, match="winograd"):
        get_target("x86", {"winograd": "yes"})


def test_table_is_the_published_measurement():
    """winograd_x86.TABLE is what benchmarks/winograd_x86.py chose (docs/benchmarks/winograd-x86.json)."""
    data = json.loads((ROOT / "docs" / "benchmarks" / "winograd-x86.json").read_text())
    published = {tuple(s["shape"]): s["chosen"] for s in data["shapes"]}
    assert published == W.TABLE
    for s in data["shapes"]:  # a chosen variant passed the error bound
        if s["chosen"]:
            assert s["error"][f"F({s['chosen']},3)"] <= 1e-4


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["f2", "f4"])
def test_torchvision_resnet18_with_winograd_matches_onnxruntime(mode):
    """torchvision's ResNet-18 (random weights, 64x64 input: its 3x3 stride-1 convs on 16x16 down to
    2x2 maps, partial tiles included), every such conv forced onto Winograd, against onnxruntime
    with the torch CNN suite's bound (tests/frontend/test_torch_cnns.py). 25 s (F(2,3)) and 50 s (F(4,3))
    at a load of 10."""
    import sys
    import onnxruntime as ort
    import torch
    sys.path.insert(0, str(ROOT))
    from benchmarks.torchvision_nets import export, models, random_model
    from cococ.backends.tvm import build_tvm
    from cococ.frontend.onnx.loader import load_onnx
    model, x = random_model(models().resnet18), torch.randn(1, 3, 64, 64)
    proto = export(model, x, "torchscript")
    want = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {proto.graph.input[0].name: x.numpy()})[0]
    graph = load_onnx(proto)
    got = next(iter(build_tvm(graph, get_target("x86", {"winograd": mode})).run({graph.inputs[0].name: x.numpy()}).values()))
    err = float(np.abs(got - want).max())
    assert err <= 1e-4 * (1 + float(np.abs(want).max())), err


def test_tune_leaves_the_winograd_kernel_alone(tmp_path):
    """`--tune` with a Winograd kernel in the module: cococ's hand schedule is not re-applied to the
    already scheduled kernel (it failed in s_tir's fuse), the build matches the interpreter.
    About 8 s (25 s at a load of 10)."""
    from cococ.backends.tvm import build_tvm
    g, feeds = G(), {}
    _block(g, feeds, "b", 8, 16, 8, 8, (1, 1, 1, 1), "bn_relu")
    graph = g.graph()
    art = build_tvm(graph, get_target("x86", {"winograd": "f2"}), tune=2, tuning_dir=tmp_path)
    got, ref = art.run(feeds), run(graph, feeds)
    for k in ref:
        assert close(got[k], ref[k]), k


@pytest.mark.parametrize("times, want", [
    ({0: 1.0, 2: 0.50, 4: 0.49}, 2),  # a near tie: F(2,3) (less error, smaller transformed weights)
    ({0: 1.0, 2: 0.80, 4: 0.50}, 4),
    ({0: 1.0, 2: 0.95, 4: 0.92}, 0),  # under 10% faster: the direct conv
    (RuntimeError("no"), 0),          # a failed measurement keeps the direct conv
])
def test_measure_mode_rule(monkeypatch, times, want):
    def fake(group, ctx):
        if isinstance(times, Exception):
            raise times
        return times
    monkeypatch.setattr(W, "measure_group", fake)
    assert W.choose(_conv_group(), LowerCtx(oc_block=16, winograd="measure")) == want
