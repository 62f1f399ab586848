"""arm-m4 fixed point: int8 (SXTB16 + SMLAD) and the q15 kernels' cheaper requantisation.

One conv or dense layer and the dense nets are checked bit for bit against a numpy model of the
integer arithmetic written here from docs/mcu.md's definitions (quantize, int32 accumulate,
requantise, saturate; not cococ's own integer_layer), with odd sizes so that the tails (odd
output channel, reduction not a multiple of 4) run; the conv net and LeNet-5 against both the
fake-quantized and the float network, within a few times the error reached (printed). An int8
build with float outputs ends in float32 (i8wide.float_tail: a last dense dequantises its int32
sums), so the int8 requantisation of a last layer is checked on `--target-opt io=int8` builds, and
the float tail against its own definition, acc * s_x * s_w."""
from __future__ import annotations

import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cococ.backends.build import build
from cococ.ir.core import CococError, Graph, Layer, Param, Value
from cococ.ir.interpreter import run as reference
from cococ.ir.verify import infer_shapes
from cococ.passes.quantize import Quantize
from tests.backends.test_mcu import _input, conv_net, dense_net

ROOT = Path(__file__).resolve().parents[2]
needs_gcc = pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="arm-none-eabi-gcc not installed")
INT8_TOL = 0.15  # |y - ref| <= INT8_TOL * max|ref| (cococ run --check, docs/mcu.md)
QMAX = {"q15": 32767, "int8": 127}


def int8_out(dtype: str) -> dict:
    """build() options whose last layer requantises to `dtype`: int8 with int8 I/O (a float-output
    int8 build dequantises its last dense's sums instead); q15 always."""
    return {"target_options": {"io": "int8"}} if dtype == "int8" else {}


def _instructions(elf) -> set[str]:
    """Every distinct instruction of the ELF's .text, as 'mnemonic operands'."""
    from capstone import CS_ARCH_ARM, CS_MODE_MCLASS, CS_MODE_THUMB, Cs
    from elftools.elf.elffile import ELFFile
    with open(elf, "rb") as f:
        text = ELFFile(f).get_section_by_name(".text")
        code, addr = text.data(), text["sh_addr"]
    cs = Cs(CS_ARCH_ARM, CS_MODE_THUMB | CS_MODE_MCLASS)
    cs.skipdata = True  # literal pools sit between functions
    return {f"{i.mnemonic} {i.op_str}" for i in cs.disasm(code, addr)}


def _uses_sxtb16_smlad(elf) -> bool:
    ins = _instructions(elf)
    return (any(i.startswith("smlad ") for i in ins) and any(i.startswith("sxtb16 ") for i in ins)
            and any(i.startswith("sxtb16 ") and i.endswith("ror #8") for i in ins))


def _integer_model(g, x: np.ndarray, dtype: str) -> np.ndarray:
    """The integer outputs the device computes for dense_net (dense+relu, dense), by definition."""
    qmax, scales = QMAX[dtype], g.meta["quant"]["scales"]
    h = requantised_by_definition(g.layer("h"), quantised_input(x, scales["x"], qmax), scales["x"], scales["r"],
                                  qmax, relu=True)
    return requantised_by_definition(g.layer("y"), h, scales["r"], scales["y"], qmax, relu=False)


@needs_gcc
@pytest.mark.parametrize("dtype,per_channel", [("int8", True), ("int8", False), ("q15", True)])
def test_dense_kernels_are_bit_exact(tmp_path, dtype, per_channel):
    g = dense_net(seed=4, k=37, hidden=33)  # odd k (int8: 37 = 9 words + 1), odd channel counts
    x = _input(g, seed=2)
    g = Quantize(dtype=dtype, per_channel=per_channel).run_on(g)
    art = build(g, "arm-m4", out_dir=tmp_path, quantize=dtype, **int8_out(dtype))
    qg = art.load_graph()
    y, s_y = art.run(x)["y"], qg.meta["quant"]["scales"]["y"]
    # the dequantize kernel's float constant is printed to ~7 digits: compare the integers
    np.testing.assert_array_equal(np.rint(y / s_y).astype(np.int64), _integer_model(qg, x, dtype))
    np.testing.assert_allclose(y, _integer_model(qg, x, dtype) * s_y, rtol=1e-6)
    if dtype == "int8":
        assert _uses_sxtb16_smlad(art.elf)
        assert "int8_t w_h_weight_i8" in (tmp_path / "weights.c").read_text()


@needs_gcc
def test_int8_conv_net_within_bound(tmp_path):
    g = conv_net(seed=3)  # padded conv + relu + maxpool, strided conv, global avg pool, dense, softmax: all int8
    x = _input(g, seed=7)
    art = build(g, "arm-m4", out_dir=tmp_path, quantize="int8")
    ops = {s["op"]: s["outputs"][-1]["dtype"] for s in art.report["steps"]}  # (a conv also writes its column)
    assert ops["conv2d+relu"] == "int8" and ops["max_pool"] == "int8"
    assert ops["global_avg_pool"] == "int16"   # its window sums, for the dense (i8wide.py)
    assert _uses_sxtb16_smlad(art.elf)
    y = art.run(x)["prob"]
    # against the fake-quantized graph and against the float network: 0.0031 and 0.0059 of max|ref|
    # are reached, the bounds are ~4x that (INT8_TOL is what `run --check` allows)
    for ref, bound, what in ((reference(art.load_graph(), [x])["prob"], 0.012, "fake-quantized"),
                             (reference(g, [x])["prob"], 0.04, "float")):
        err = float(np.max(np.abs(y - ref)) / np.max(np.abs(ref)))
        print(f"int8 conv net vs the {what} graph: max|y - ref| / max|ref| = {err:.2g} (bound {bound})")
        assert err <= bound, (what, err)
        assert np.argmax(y) == np.argmax(ref)


def one_layer(op: str, relu: bool, seed: int = 6) -> Graph:
    """One conv2d (pad 1, stride 2, odd channel counts, reduction 27) or dense (k 37) layer,
    with a ReLU after it or not: the built kernel's output is that layer's, requantised."""
    rng = np.random.default_rng(seed)
    P = lambda *s: Param.from_array((rng.standard_normal(s) * 0.3).astype(np.float32))  # noqa: E731
    x, y, r = Value("x"), Value("y"), Value("r")
    if op == "conv2d":
        layers = [Layer("input", "x", [], [x], {"shape": [1, 3, 9, 9]}),
                  Layer("conv2d", "c", [x], [y], {"out_channels": 5, "kernel": [3, 3], "pad": [1, 1, 1, 1],
                                                  "stride": [2, 2]}, {"weight": P(5, 3, 3, 3), "bias": P(5)})]
    else:
        layers = [Layer("input", "x", [], [x], {"shape": [1, 37]}),
                  Layer("dense", "c", [x], [y], {"out_features": 11}, {"weight": P(11, 37), "bias": P(11)})]
    if relu:
        layers.append(Layer("relu", "relu", [y], [r]))
    return infer_shapes(Graph("one", layers, [r if relu else y]))


def quantised_input(x: np.ndarray, s_x: float, qmax: int) -> np.ndarray:
    """x_q = roundf(x * f32(1/s_x)) (half away from zero, as C's roundf), saturated."""
    v = x.astype(np.float32) * np.float32(1.0 / s_x)
    return np.clip(np.sign(v) * np.floor(np.abs(v) + np.float32(0.5)), -qmax - 1, qmax).astype(np.int64)


def requantised_by_definition(layer, xq, s_x: float, s_y: float, qmax: int, relu: bool) -> np.ndarray:
    """The integer output of one conv/dense layer from the definitions in docs/mcu.md, written here
    without cococ's code: w_q = round(w / s_w) (the weights are already fake-quantized, so w / s_w
    is an integer up to float error) saturated to [-qmax-1, qmax]; b_q = round(b / (s_x s_w)); the
    int32 accumulator acc = b_q + sum x_q w_q exactly; the multiplier s_x s_w / s_y held as M / 2^n
    with M in [2^30, 2^31) (31 significant bits); y_q = floor(acc M / 2^n + 1/2) (round half up, in
    Python's exact integers) saturated to [0 if ReLU else -qmax-1, qmax]."""
    w = layer.params["weight"].dense().astype(np.float64)
    o = w.shape[0]
    s_w = np.broadcast_to(np.asarray(layer.params["weight"].attrs["scale"], np.float64).reshape(-1), (o,))
    b = layer.params["bias"].dense().astype(np.float64)
    wq = np.clip(np.rint(w / s_w.reshape((o,) + (1,) * (w.ndim - 1))), -qmax - 1, qmax).astype(np.int64)
    bq = np.rint(b / (s_x * s_w)).astype(np.int64)
    if layer.op == "conv2d":
        (_, c, h, wd), (kh, kw), (sh, sw) = xq.shape, layer.attrs["kernel"], layer.attrs["stride"]
        t, left, bottom, right = layer.attrs["pad"]
        xp = np.zeros((c, h + t + bottom, wd + left + right), np.int64)
        xp[:, t:t + h, left:left + wd] = xq[0]
        oh, ow = (xp.shape[1] - kh) // sh + 1, (xp.shape[2] - kw) // sw + 1
        acc = np.array([[[(xp[:, i * sh:i * sh + kh, j * sw:j * sw + kw] * wq[k]).sum() for j in range(ow)]
                         for i in range(oh)] for k in range(o)]) + bq[:, None, None]
        acc = acc[None]
    else:
        acc = xq @ wq.T + bq
    y = np.empty(acc.shape, np.int64)
    for k, s in enumerate(s_w):
        real = s_x * s / s_y
        n = 31 - math.frexp(real)[1]                  # real = f 2^e, f in [1/2, 1): M = f 2^31
        m = round(real * 2.0 ** n)
        if m == 2 ** 31:
            m, n = m // 2, n - 1
        assert 2 ** 30 <= m < 2 ** 31
        y[:, k] = np.vectorize(lambda a: (int(a) * m + (1 << (n - 1))) >> n, otypes=[np.int64])(acc[:, k])
    return np.clip(y, 0 if relu else -qmax - 1, qmax)


@needs_gcc
@pytest.mark.parametrize("dtype", ["int8", "q15"])
@pytest.mark.parametrize("op,relu", [("conv2d", True), ("conv2d", False), ("dense", False)])
def test_one_layer_is_the_requantisation_by_definition(tmp_path, dtype, op, relu):
    """The emulated kernel's integers equal the numpy requantisation above, bit for bit."""
    g = Quantize(dtype=dtype, per_channel=True).run_on(one_layer(op, relu))
    x = _input(g, seed=9)
    art = build(g, "arm-m4", out_dir=tmp_path, quantize=dtype, **int8_out(dtype))
    qg = art.load_graph()
    out, scales = qg.outputs[0].name, qg.meta["quant"]["scales"]
    got = np.rint(art.run(x)[out] / scales[out]).astype(np.int64)
    want = requantised_by_definition(qg.layer("c"), quantised_input(x, scales["x"], QMAX[dtype]), scales["x"],
                                     scales[out], QMAX[dtype], relu)
    assert got.shape == want.shape
    np.testing.assert_array_equal(got, want)
    assert np.abs(want).max() > QMAX[dtype] // 8      # the outputs use the range (not all 0 or ±1)


def dequantised_by_definition(layer, xq, s_x: float, relu: bool) -> np.ndarray:
    """The float output of a last dense layer in an int8 build with float outputs: the int32
    accumulator acc = b_q + sum x_q w_q (as `requantised_by_definition`) times s_x * s_w[o]."""
    w = layer.params["weight"].dense().astype(np.float64)
    s_w = np.broadcast_to(np.asarray(layer.params["weight"].attrs["scale"], np.float64).reshape(-1), (w.shape[0],))
    wq = np.clip(np.rint(w / s_w[:, None]), -128, 127).astype(np.int64)
    bq = np.rint(layer.params["bias"].dense().astype(np.float64) / (s_x * s_w)).astype(np.int64)
    y = (xq @ wq.T + bq) * (s_x * s_w)
    return np.maximum(y, 0) if relu else y


@needs_gcc
@pytest.mark.parametrize("relu,softmax", [(False, False), (True, False), (False, True)])
def test_last_dense_of_a_float_output_build_is_dequantised(tmp_path, relu, softmax):
    """int8 with float outputs: the last dense (k 37, 11 channels) writes acc * s_x * s_w[o] in float32
    (no int8 rounding; a ReLU as max(0, .)), and a softmax after it runs in float32 on those: the
    steps end there (no dequantize step), report.json has no warning, and io=int8 keeps the int8 end."""
    g = one_layer("dense", relu)
    if softmax:
        p = Value("p")
        g = infer_shapes(Graph("one", g.layers + [Layer("softmax", "sm", [g.outputs[0]], [p], {"axis": 1})], [p]))
    g = Quantize(dtype="int8", per_channel=True).run_on(g)
    x = _input(g, seed=9)
    art = build(g, "arm-m4", out_dir=tmp_path / "f", quantize="int8")
    qg, out = art.load_graph(), g.outputs[0].name
    s = qg.meta["quant"]["scales"]
    want = dequantised_by_definition(qg.layer("c"), quantised_input(x, s["x"], 127), s["x"], relu)
    if softmax:
        want = np.exp(want - want.max()) / np.exp(want - want.max()).sum()
    got = art.run(x)[out]
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-6 * np.abs(want).max())
    assert np.abs(got / s[out] - np.rint(got / s[out])).max() > 0.05     # not on the int8 output's grid
    steps = [(st["op"], st["outputs"][-1]["dtype"]) for st in art.report["steps"]]
    assert steps[-1] == (("softmax", "float32") if softmax else ("dense+relu" if relu else "dense", "float32"))
    assert "dequantize" not in [op for op, _ in steps] and art.report["warnings"] == []
    # int8 weights start on an 8-byte flash word (their wait-state stalls do not depend on the layout)
    assert "const int8_t w_c_weight_i8[440] __attribute__((aligned(8)))" in (tmp_path / "f" / "weights.c").read_text()
    i8 = build(g, "arm-m4", out_dir=tmp_path / "i8", quantize="int8", target_options={"io": "int8"})
    assert [st["outputs"][-1]["dtype"] for st in i8.report["steps"]][-1] == "int8"
    x = x * 0.5   # inside the calibrated range: the int8 logits saturate where the float ones go on
    assert np.abs(i8.run(x)[out] - art.run(x)[out]).max() <= s[out] * (1.0 if softmax else 0.51)


FAST = "(int32_t)((((int64_t)acc_ptr[0]) * ((int64_t)m[cse_v1])) >> (int64_t)32)"   # SMULL high word


@needs_gcc
@pytest.mark.parametrize("dtype", ["int8", "q15"])
@pytest.mark.parametrize("fast", [True, False], ids=["smull-high-word", "64-bit"])
def test_both_requantisations_are_the_definition(tmp_path, dtype, fast):
    """The high-word requantisation (every multiplier s_x s_w / s_y < 1/4, the calibrated case) and
    the exact 64-bit one (an output scale small enough for a multiplier of 0.2617 in one channel)
    both equal the definition bit for bit on the emulated M4."""
    g = one_layer("dense", False)
    x = _input(g, seed=9)
    if not fast:   # no bias and four inputs of ±1 step: acc * 0.2617 stays inside the range, mostly
        g.layer("c").params["bias"] = Param.from_array(np.zeros(11, np.float32))
    g = Quantize(dtype=dtype, per_channel=True).run_on(g)
    scales = g.meta["quant"]["scales"]
    if not fast:
        scales["y"] = scales["x"] * max(g.layer("c").params["weight"].attrs["scale"]) / 0.2617
        rng = np.random.default_rng(9)
        x = np.zeros_like(x)
        x[0, rng.choice(37, 4, replace=False)] = rng.choice([-1.0, 1.0], 4) * scales["x"]
    art = build(g, "arm-m4", out_dir=tmp_path, quantize=dtype, **int8_out(dtype))
    assert (FAST in (tmp_path / "kernels.c").read_text()) == fast
    qg = art.load_graph()
    s = qg.meta["quant"]["scales"]
    want = requantised_by_definition(qg.layer("c"), quantised_input(x, s["x"], QMAX[dtype]), s["x"], s["y"],
                                     QMAX[dtype], relu=False)
    np.testing.assert_array_equal(np.rint(art.run(x)["y"] / s["y"]).astype(np.int64), want)
    assert (np.abs(want) < QMAX[dtype]).mean() > 0.5 and np.abs(want).max() > 8    # not all saturated, not all 0


@needs_gcc
def test_int8_lenet_on_the_shipped_digit(tmp_path):
    """`cococ build --quantize int8` then `cococ run --check` on examples/lenet's digit."""
    out = tmp_path / "lenet-int8"
    cli = [sys.executable, "-m", "cococ"]
    r = subprocess.run(cli + ["build", "--target=arm-m4", "examples/lenet/lenet.prototxt", "--weights",
                              "examples/lenet/lenet.safetensors", "--quantize", "int8", "-o", str(out)],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "int8" in r.stdout
    r = subprocess.run(cli + ["run", str(out), "--input", "examples/lenet/digit.npy", "--check"],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "top-1 agreement 100%" in r.stdout and "(bound" in r.stdout
    import json
    rep = json.loads((out / "report.json").read_text())
    assert rep["weight_bytes"] < 1.1 * rep["params"]  # int8 weights: ~1 byte per parameter (q15: 2)
    import cococ
    g = cococ.load(str(ROOT / "examples/lenet/lenet.prototxt"), weights=str(ROOT / "examples/lenet/lenet.safetensors"))
    x = np.load(ROOT / "examples/lenet/digit.npy")
    f32 = reference(g, [x])[g.outputs[0].name]
    from cococ.backends.artifact import load_artifact
    art = load_artifact(out)
    assert np.argmax(art.run(x)["prob"]) == np.argmax(f32)
    from cococ.runtime.mcu.qeval import accuracy  # what --quant-data reports, on 24 test digits
    a = accuracy(g, art, "digits", limit=24)
    # against the float network: all 24 agree and 0.0027 of max|f32| is reached (0.0153 in earlier builds)
    print(f"int8 LeNet vs float on 24 digits: agreement {a['agreement']:.0%}, max rel err {a['max_rel_err']:.3g}")
    assert a["n"] == 24 and a["agreement"] == 1.0 and a["max_rel_err"] <= 0.06
    assert a["device"] == a["f32"]


def test_bad_combinations_say_what_is_wrong():
    g = dense_net()
    with pytest.raises(CococError, match="--quantize int8 is for arm-m4"):
        build(g, "x86", quantize="int8")
    with pytest.raises(CococError, match=r"unknown quantization 'int4' \(known: q15, int8\)"):
        build(g, "arm-m4", quantize="int4", compile=False)
    from cococ.backends.mcu.lower import lower
    q15 = Quantize(dtype="q15").run_on(g)
    with pytest.raises(CococError, match=r"int8 build needs a graph quantized for it"):
        lower(q15, "int8")


def test_quant_data_needs_quantize(tmp_path):
    r = subprocess.run([sys.executable, "-m", "cococ", "build", "--target=arm-m4", "examples/lenet/lenet.prototxt",
                        "--quant-data", "digits", "-o", str(tmp_path / "x")], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode != 0 and "--quant-data goes with --quantize" in r.stderr


@needs_gcc
@pytest.mark.skipif(shutil.which("qemu-system-arm") is None, reason="qemu-system-arm not installed")
def test_int8_qemu_prints_the_emulator_outputs(tmp_path):
    """QEMU's core runs the inline-asm SXTB16 ROR 8 as unicorn does: same bits."""
    from cococ.runtime.mcu.qemu import run_qemu
    g = conv_net(seed=3)
    x = _input(g, seed=7)
    art = build(g, "arm-m4", out_dir=tmp_path, quantize="int8", sample_input=x)
    np.testing.assert_array_equal(run_qemu(art.elf).reshape(-1), art.run(x)["prob"].reshape(-1))


def _kernel_shapes():
    """benchmarks/m4_kernels_int8.py: one int8 kernel in an image, checked bit for bit in numpy."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import m4_kernels_int8
    return m4_kernels_int8


@needs_gcc
@pytest.mark.parametrize("x,o,kernel,stride,pad,relu", [
    ((1, 6, 3, 5), 7, (1, 1), (1, 1), (0, 0, 0, 0), False),   # 1x1: two channels per im2col step, odd positions
    ((1, 4, 1, 1), 9, (3, 3), (1, 1), (1, 1, 1, 1), False),   # one output position: both columns are it
    ((1, 5, 6, 7), 4, (2, 3), (1, 2), (0, 1, 1, 0), True),    # asymmetric pad: interior and border pairs
    ((2, 37), 7, (), (1, 1), (0, 0, 0, 0), False),            # dense, batch 2, 4 + 2 + 1 rows, k % 4 = 1
    ((1, 232, 2, 2), 3, (3, 3), (1, 1), (1, 1, 1, 1), True),  # k 2088: offsets past LDR's imm12, the TIR step
    ((1, 1500), 5, (), (1, 1), (0, 0, 0, 0), True),           # dense k 1500: the same
])
def test_int8_kernel_shapes_are_bit_exact(x, o, kernel, stride, pad, relu):
    """The two-position conv kernel's tails (odd position count, a single position, padding
    on only some pairs, channel-unrolled 1x1 im2col), the dense kernel's row tails, and both
    without their asm step (rows too long for its immediates), on the emulated M4, equal
    numpy's int32 accumulation + requantisation + saturation bit for bit (run_shape raises
    otherwise); ~3 s each."""
    M = _kernel_shapes()
    r = M.run_shape(M.Shape("test", "shape", x, o, kernel, stride, pad, relu))
    assert r["cycles"] > 0 and r["macs"] > 0


@needs_gcc
@pytest.mark.parametrize("x,stride,relu", [
    ((1, 3, 3, 3), (1, 1), False),    # output width 3: a pair and a single (TVM's CSE had reused the pair's first)
    ((1, 2, 5, 13), (1, 1), True),    # three asm quads and a single
    ((1, 2, 9, 11), (2, 2), False),   # stride 2: an asm quad, a pair
    ((1, 2, 4, 17), (2, 2), True),    # stride 2: two quads, a single
])
def test_int8_depthwise_shapes_are_bit_exact(x, stride, relu):
    """The 3x3 depthwise kernel's quads (COCOC_DW3X3X4_S1/_S2) and its pair and single tails, on the
    emulated M4, equal numpy bit for bit with random int8 data and full-range weights; ~3 s each."""
    M = _kernel_shapes()
    r = M.run_shape(M.Shape("test", "dw", x, x[1], (3, 3), stride, (1, 1, 1, 1), relu, depthwise=True))
    assert r["cycles"] > 0 and r["macs"] > 0
