"""arm-m4 fixed point end to end: the integer kernels around the convs (backends/mcu/i8ops.py, i8depthwise.py).

Depthwise conv is checked bit for bit against a numpy model of its integer arithmetic written
here from docs/mcu.md's definitions (odd widths, stride 2, asymmetric padding, an even kernel
width, ReLU6 fused); add, pools, clip, hardswish, hardsigmoid and concat against the reference
interpreter on the quantized graph within a few output steps; tiny ResNet-8- and DS-CNN-like
torch modules (BatchNorm, exported by torch.onnx) against onnxruntime, with no float step in the
build (report.json's warnings empty)."""
from __future__ import annotations

import io
import json
import math
import shutil
import warnings

import numpy as np
import pytest

from cococ.backends.build import build
from cococ.backends.mcu.lower import lower
from cococ.passes.pipeline import default_pipeline
from cococ.ir.core import Graph, Layer, Param, Value
from cococ.ir.interpreter import run as reference
from cococ.ir.target import get_target
from cococ.ir.verify import infer_shapes
from cococ.passes import run as run_passes
from cococ.passes.quantize import Quantize

needs_gcc = pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="arm-none-eabi-gcc not installed")
QMAX = {"q15": 32767, "int8": 127}


def _graph(shape, layers, out: str, seed: int = 0) -> Graph:
    """Input `x` of `shape`, then `layers` as (op, name, inputs, attrs, param shapes)."""
    rng = np.random.default_rng(seed)
    vals = {"x": Value("x")}
    ls = [Layer("input", "x", [], [vals["x"]], {"shape": list(shape)})]
    for op, name, ins, attrs, pshapes in layers:
        vals[name] = Value(name)
        ps = {k: Param.from_array((rng.standard_normal(s) * 0.4).astype(np.float32)) for k, s in pshapes.items()}
        ls.append(Layer(op, name, [vals[i] for i in ins], [vals[name]], attrs, ps))
    return infer_shapes(Graph("t", ls, [vals[out]]))


def _x(g: Graph, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(g.inputs[0].type.shape).astype(np.float32)


def depthwise_by_definition(layer, xq, s_x, s_y, qmax, lo, hi):
    """The integer output of a depthwise conv from docs/mcu.md's definitions: w_q = round(w / s_w)
    per channel, b_q = round(b / (s_x s_w)), acc = b_q + sum x_q w_q over the zero-padded window,
    y = floor(acc M / 2^n + 1/2) with M in [2^30, 2^31), clamped to [lo, hi]."""
    w = layer.params["weight"].dense().astype(np.float64)
    c, _, kh, kw = w.shape
    s_w = np.broadcast_to(np.asarray(layer.params["weight"].attrs["scale"], np.float64).reshape(-1), (c,))
    wq = np.clip(np.rint(w[:, 0] / s_w[:, None, None]), -qmax - 1, qmax).astype(np.int64)
    bq = np.rint(layer.params["bias"].dense() / (s_x * s_w)).astype(np.int64)
    t, left, b, r = layer.attrs["pad"]
    sh, sw = layer.attrs["stride"]
    _, _, h, wd = xq.shape
    xp = np.zeros((c, h + t + b, wd + left + r), np.int64)
    xp[:, t:t + h, left:left + wd] = xq[0]
    oh, ow = (xp.shape[1] - kh) // sh + 1, (xp.shape[2] - kw) // sw + 1
    y = np.empty((1, c, oh, ow), np.int64)
    for k in range(c):
        real = s_x * s_w[k] / s_y
        n = 31 - math.frexp(real)[1]
        m = round(real * 2.0 ** n)
        if m == 2 ** 31:
            m, n = m // 2, n - 1
        for i in range(oh):
            for j in range(ow):
                acc = int((xp[k, i * sh:i * sh + kh, j * sw:j * sw + kw] * wq[k]).sum() + bq[k])
                y[0, k, i, j] = (acc * m + (1 << (n - 1))) >> n
    return np.clip(y, lo, hi)


def _quantised_input(x, s_x, qmax):
    """x_q = round(x / s_x) to nearest, ties to even (VCVTR), saturated (the input step)."""
    return np.clip(np.rint(x.astype(np.float32) * np.float32(1.0 / s_x)), -qmax - 1, qmax).astype(np.int64)


DEPTHWISE = [  # (input shape, kernel, stride, pad, then: "relu", "relu6" or None)
    ((1, 4, 7, 7), [3, 3], [1, 1], [1, 1, 1, 1], "relu"),     # odd output width: a single last output
    ((1, 3, 9, 10), [3, 3], [2, 2], [1, 1, 1, 1], None),     # stride 2
    ((1, 2, 8, 9), [3, 4], [1, 1], [0, 1, 2, 2], "relu6"),   # even kernel width, asymmetric padding
    ((1, 3, 6, 11), [5, 5], [1, 1], [2, 2, 2, 2], None),
    ((1, 2, 7, 8), [3, 3], [3, 3], [1, 1, 1, 1], None),      # stride 3: one output at a time
    ((1, 3, 3, 3), [3, 3], [1, 1], [1, 1, 1, 1], "relu"),    # width 3: a pair and a single (TVM's CSE had
                                                             # stored the pair's first output as the third)
    ((1, 2, 6, 10), [3, 3], [2, 2], [1, 1, 1, 1], "relu6"),  # stride 2: a quad and a single
]


@needs_gcc
@pytest.mark.parametrize("dtype", ["int8", "q15"])
@pytest.mark.parametrize("case", range(len(DEPTHWISE)))
def test_depthwise_is_the_requantisation_by_definition(tmp_path, dtype, case):
    shape, k, s, pad, act = DEPTHWISE[case]
    if dtype == "q15" and case not in (0, 1, 5):
        pytest.skip("q15 runs the same kernel: three cases suffice")
    c = shape[1]
    layers = [("conv2d", "d", ["x"], {"out_channels": c, "kernel": k, "stride": s, "pad": pad, "groups": c},
               {"weight": (c, 1, *k), "bias": (c,)})]
    if act == "relu":
        layers.append(("relu", "a", ["d"], {}, {}))
    elif act == "relu6":
        layers.append(("clip", "a", ["d"], {"min": 0.0, "max": 6.0}, {}))
    g = Quantize(dtype=dtype).run_on(_graph(shape, layers, "a" if act else "d", seed=case))
    x = _x(g, seed=case)
    art = build(g, "arm-m4", out_dir=tmp_path, quantize=dtype, sample_input=x)
    assert [s["op"] for s in art.report["steps"]] == ["quantize", "conv2d" + (f"+{layers[-1][0]}" if act else ""),
                                                     "dequantize"]
    assert not art.report["warnings"]
    qg = art.load_graph()
    out, scales = qg.outputs[0].name, qg.meta["quant"]["scales"]
    got = np.rint(art.run(x)[out] / scales[out]).astype(np.int64)
    qmax = QMAX[dtype]
    lo = 0 if act else -qmax - 1
    hi = min(qmax, int(math.floor(6.0 / scales[out] + 0.5))) if act == "relu6" else qmax
    xq = _quantised_input(x, scales["x"], qmax) if dtype == "int8" else \
        np.clip(np.rint(x / scales["x"]), -qmax - 1, qmax).astype(np.int64)
    want = depthwise_by_definition(qg.layer("d"), xq, scales["x"], scales[out], qmax, lo, hi)
    np.testing.assert_array_equal(got, want)
    assert np.abs(want).max() > qmax // 8


def _within(art, x, steps: float, gain: float):
    """Outputs of the built model vs the reference interpreter on the quantized graph, in output
    steps: at most `steps` of the op's own rounding plus the input's rounding (half an input step)
    times the op's `gain` (its largest slope), both in output steps."""
    qg = art.load_graph()
    out, scales = qg.outputs[0].name, qg.meta["quant"]["scales"]
    ref = reference(qg, [x])[out]
    err = float(np.max(np.abs(art.run(x)[out] - ref)) / scales[out])
    bound = steps + 0.5 * gain * scales["x"] / scales[out]
    assert err <= bound, (err, bound)
    return err, bound


ELEMENTWISE = {  # name: (input shape, layers, output, the op's own rounding in output steps, gain)
    "add+relu": ((1, 3, 5, 6), [("conv2d", "c", ["x"], {"out_channels": 3, "kernel": [1, 1]},
                                 {"weight": (3, 3, 1, 1), "bias": (3,)}),
                                ("eltwise", "a", ["c", "x"], {"mode": "sum"}, {}), ("relu", "r", ["a"], {}, {})],
                 "r", 1.5, 3.0),
    "avg_pool": ((1, 3, 9, 8), [("avg_pool", "p", ["x"], {"kernel": [3, 2], "stride": [2, 2], "pad": [1, 0, 1, 0]},
                                 {})], "p", 0.6, 1.0),
    "global_avg_pool": ((1, 5, 7, 6), [("global_avg_pool", "p", ["x"], {}, {})], "p", 0.6, 1.0),
    "clip": ((1, 40), [("clip", "p", ["x"], {"min": -0.5, "max": 1.0}, {})], "p", 0.6, 1.0),
    "hardswish": ((1, 64), [("hardswish", "p", ["x"], {}, {})], "p", 1.0, 1.5),
    "hardsigmoid": ((1, 64), [("hardsigmoid", "p", ["x"], {}, {})], "p", 0.6, 0.2),
    "softmax": ((2, 11), [("softmax", "p", ["x"], {"axis": 1}, {})], "p", 0.6, 1.5),
    "softmax axis 1 of 4-d": ((1, 5, 2, 3), [("softmax", "p", ["x"], {"axis": 1}, {})], "p", 0.6, 1.5),
    "concat": ((1, 2, 4, 4), [("relu", "r", ["x"], {}, {}), ("concat", "p", ["x", "r"], {"axis": 1}, {})],
               "p", 0.6, 1.0),
}


@needs_gcc
@pytest.mark.parametrize("name", ELEMENTWISE)
def test_elementwise_ops_run_on_integers_within_a_few_steps(tmp_path, name):
    shape, layers, out, steps, gain = ELEMENTWISE[name]
    g = _graph(shape, layers, out, seed=3)
    x = _x(g, seed=4)
    art = build(g, "arm-m4", out_dir=tmp_path, quantize="int8", sample_input=x, calibration=x)
    assert not art.report["warnings"]
    dtypes = {o["dtype"] for s in art.report["steps"][1:-1] for o in s["outputs"]} - {"int16"}  # (scratch planes)
    assert dtypes == {"int8"}, art.report["steps"]
    err, bound = _within(art, x, steps, gain)
    print(f"{name}: max error {err:.2f} output steps (bound {bound:.2f})")


@needs_gcc
def test_concat_inputs_share_its_scale_or_are_rescaled(tmp_path):
    """The quantize pass gives a concat's inputs its scale (back through relu to the input): the
    concat is a copy; an input at another scale (here set by hand) gets a rescale step first."""
    g = _graph((1, 2, 4, 4), [("avg_pool", "c", ["x"], {"kernel": [2, 2], "pad": [0, 0, 1, 1]}, {}),
                              ("relu", "r", ["x"], {}, {}), ("concat", "p", ["c", "r"], {"axis": 1}, {})], "p")
    x = _x(g, seed=2)
    q = Quantize(dtype="int8").run_on(g, samples=x)
    s = q.meta["quant"]["scales"]
    assert s["c"] == s["r"] == s["x"] == s["p"]
    assert [st.op for st in lower(q, "int8").steps] == ["quantize", "avg_pool", "relu", "concat", "dequantize"]
    s["c"] *= 1.4  # coarser: nothing saturates
    assert [st.op for st in lower(q, "int8").steps] == ["quantize", "avg_pool", "relu", "rescale", "concat",
                                                        "dequantize"]
    art = build(q, "arm-m4", out_dir=tmp_path, quantize="int8", sample_input=x)
    _within(art, x, 1.6, 1.0)


def test_float_fallbacks_are_warnings_naming_layer_and_why():
    g = _graph((1, 3, 6, 6), [("conv2d", "c", ["x"], {"out_channels": 3, "kernel": [3, 3], "dilation": [2, 2],
                                                       "groups": 3}, {"weight": (3, 1, 3, 3), "bias": (3,)}),
                              ("avg_pool", "p", ["c"], {"kernel": [2, 2], "pad": [1, 1, 1, 1],
                                                        "count_include_pad": False}, {}),
                              ("flatten", "f", ["p"], {}, {}), ("softmax", "s", ["f"], {}, {})], "s")
    prog = lower(Quantize(dtype="q15").run_on(g), "q15")
    assert prog.warnings == [
        "q15 build: conv2d layers run in float32 (depthwise conv with horizontal dilation), with "
        "quantize/dequantize around them: c",
        "q15 build: avg_pool layers run in float32 (avg_pool with padding and count_include_pad=false "
        "(a divisor per window)), with quantize/dequantize around them: p",
        "q15 build: softmax layers run in float32 (no q15 kernel for softmax (int8 only: a 256-entry exp "
        "table)), with quantize/dequantize around them: s"]


@needs_gcc
def test_int8_input_step_calls_no_libm(tmp_path):
    g = _graph((1, 3, 4, 4), [("relu", "r", ["x"], {}, {})], "r")
    art = build(g, "arm-m4", out_dir=tmp_path, quantize="int8")
    text = (tmp_path / "kernels.c").read_text()
    assert "VCVTR + SSAT, no libm" in text and "nearbyint" not in text and "roundf" not in text
    from elftools.elf.elffile import ELFFile
    with open(art.elf, "rb") as f:
        names = {s.name for s in ELFFile(f).get_section_by_name(".symtab").iter_symbols()}
    assert not names & {"nearbyintf", "roundf", "rintf"}


def _onnx_bytes(model, x) -> bytes:
    """torch.onnx.export at opset 13, BatchNorm kept as its own node (TrainingMode.PRESERVE)."""
    import torch
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.from_numpy(x),), f, opset_version=13, dynamo=False, do_constant_folding=False,
                          training=torch.onnx.TrainingMode.PRESERVE, input_names=["x"], output_names=["y"])
    return f.getvalue()


@needs_gcc
def test_cli_arm_m4_folds_batchnorm_unless_a_pipeline_is_given(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    import onnx
    from cococ.cli import main
    from cococ.frontend.onnx import load_onnx
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3), torch.nn.BatchNorm2d(3), torch.nn.ReLU()).eval()
    data = _onnx_bytes(m, np.zeros((1, 2, 6, 6), np.float32))
    assert "batchnorm" in {l.op for l in load_onnx(onnx.load_from_string(data)).layers}
    (tmp_path / "m.onnx").write_bytes(data)
    for pipeline, steps in (([], ["quantize", "conv2d+relu", "dequantize"]),
                            (["-p", "dce"], ["quantize", "conv2d", "dequantize", "batchnorm", "quantize", "relu",
                                             "dequantize"])):
        out = tmp_path / f"out{len(pipeline)}"
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            assert main(["build", "--target=arm-m4", str(tmp_path / "m.onnx"), "--quantize", "int8", "-o", str(out),
                         *pipeline]) == 0
        assert [str(x.message) for x in w if "float32" in str(x.message)] == \
            (["int8 build: batchnorm layers run in float32 (no int8 kernel for batchnorm), with quantize/dequantize "
              "around them: /1/BatchNormalization"] if pipeline else [])
        report = json.loads((out / "report.json").read_text())
        assert [s["op"] for s in report["steps"]] == steps
        assert bool(report["warnings"]) == bool(pipeline)  # the explicit pipeline's batchnorm runs in float
    capsys.readouterr()


# -- torch modules: tiny versions of MLPerf Tiny's IC ResNet-8 and KWS DS-CNN ---------------------

def _tiny_models():
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.c1 = nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.BatchNorm2d(cout), nn.ReLU())
            self.c2 = nn.Sequential(nn.Conv2d(cout, cout, 3, 1, 1), nn.BatchNorm2d(cout))
            self.skip = nn.Conv2d(cin, cout, 1, stride) if stride != 1 or cin != cout else nn.Identity()

        def forward(self, x):
            return torch.relu(self.c2(self.c1(x)) + self.skip(x))

    resnet = nn.Sequential(nn.Conv2d(3, 4, 3, 1, 1), nn.BatchNorm2d(4), nn.ReLU(), Block(4, 4, 1), Block(4, 8, 2),
                           nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5), nn.Softmax(1))

    def ds(c):
        return [nn.Conv2d(c, c, 3, 1, 1, groups=c), nn.BatchNorm2d(c), nn.ReLU(),
                nn.Conv2d(c, c, 1), nn.BatchNorm2d(c), nn.ReLU()]
    dscnn = nn.Sequential(nn.Conv2d(1, 8, (10, 4), 2, (5, 1)), nn.BatchNorm2d(8), nn.ReLU(), *ds(8), *ds(8),
                          nn.AvgPool2d((7, 3)), nn.Flatten(), nn.Linear(8, 4), nn.Softmax(1))
    torch.manual_seed(0)
    for m in (resnet, dscnn):
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):  # not the identity: random statistics
                mod.running_mean.uniform_(-0.2, 0.2)
                mod.running_var.uniform_(0.5, 1.5)
                mod.weight.data.uniform_(0.5, 1.5)
        m.eval()
    return {"resnet": (resnet, (1, 3, 12, 12)), "dscnn": (dscnn, (1, 1, 13, 6))}


@needs_gcc
@pytest.mark.parametrize("name", [pytest.param("resnet", marks=pytest.mark.slow), "dscnn"])  # resnet: ~23 s
def test_tiny_ic_and_kws_models_are_integer_end_to_end(tmp_path, name):
    ort = pytest.importorskip("onnxruntime")
    from cococ.frontend.onnx import load_onnx
    import onnx
    model, shape = _tiny_models()[name]
    x = np.random.default_rng(5).standard_normal(shape).astype(np.float32)
    data = _onnx_bytes(model, x)
    g = load_onnx(onnx.load_from_string(data))
    assert "batchnorm" in {l.op for l in g.layers}
    g = run_passes(g, default_pipeline(get_target("arm-m4")))
    assert "batchnorm" not in {l.op for l in g.layers}
    xs = np.random.default_rng(6).standard_normal((16,) + shape[1:]).astype(np.float32)
    art = build(g, "arm-m4", out_dir=tmp_path, quantize="int8", calibration=xs, sample_input=x)
    assert art.report["warnings"] == []
    ops = [s["op"] for s in art.report["steps"]]
    # float outputs: the last dense dequantises its sums and the softmax runs in float (i8wide.float_tail)
    assert ops[0] == "quantize" and ops[-2:] == ["dense", "softmax"] and "quantize" not in ops[1:]
    assert "dequantize" not in ops and art.report["steps"][-2]["outputs"][-1]["dtype"] == "float32"
    # i8wide.py: the float input quantized to int16 for the first conv, the pool's int16 window sums for the dense
    dtypes = [s["outputs"][-1]["dtype"] for s in art.report["steps"]]
    assert dtypes[0] == "int16" and ops[-3].endswith("avg_pool") and dtypes[-3] == "int16"
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    errs, agree = [], 0
    for i in range(4):
        xi = xs[i:i + 1]
        want = sess.run(None, {"x": xi})[0]
        got = art.run(xi)["y"]
        errs.append(float(np.max(np.abs(got - want)) / np.max(np.abs(want))))
        agree += int(np.argmax(got) == np.argmax(want))
    print(f"{name}: max |y - onnxruntime| / max|y| = {max(errs):.3f}, top-1 agreement {agree}/4")
    assert max(errs) <= 0.15 and agree >= 3
