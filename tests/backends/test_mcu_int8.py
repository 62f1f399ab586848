"""arm-m4 fixed point: int8 (SXTB16 + SMLAD) and the q15 kernels' cheaper requantisation.

The dense nets are checked bit for bit against a numpy model of the integer arithmetic the
kernels promise (quantize, int32 accumulate, requantise, saturate, dequantize), with odd sizes
so that the tails (odd output channel, reduction not a multiple of 4) run; the conv net and
LeNet-5 against the reference interpreter within the documented int8 bound (docs/mcu.md)."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cococ.backends.build import build
from cococ.backends.mcu.qkernels import integer_layer
from cococ.ir.core import CococError
from cococ.ir.interpreter import run as reference
from tests.backends.test_mcu import _input, conv_net, dense_net

ROOT = Path(__file__).resolve().parents[2]
needs_gcc = pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="arm-none-eabi-gcc not installed")
INT8_TOL = 0.15  # |y - ref| <= INT8_TOL * max|ref| (cococ run --check, docs/mcu.md)
QMAX = {"q15": 32767, "int8": 127}


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
    """The integer outputs the device computes for dense_net (dense+relu, dense), in numpy."""
    qmax = QMAX[dtype]
    scales = g.meta["quant"]["scales"]
    h, y = g.layers[1], g.layers[3]
    s_x = np.float32(scales["x"])
    v = x.astype(np.float32) * np.float32(1.0 / s_x)
    xq = np.clip(np.sign(v) * np.floor(np.abs(v) + 0.5), -qmax - 1, qmax).astype(np.int64)  # C roundf
    for layer, s_in, s_out, lo in ((h, scales["x"], scales["r"], 0), (y, scales["r"], scales["y"], -qmax - 1)):
        params = {k: p.dense() for k, p in layer.params.items()}
        w, bq, m, sh, fast = integer_layer(layer, params, s_in, s_out, qmax)
        acc = (xq @ w.T + bq).astype(np.int64)
        m, sh = m.astype(np.int64), sh.astype(np.int64)
        v = ((acc * m >> 32) + (1 << (sh - 1))) >> sh if fast else (acc * m + (1 << (sh - 1))) >> sh
        xq = np.clip(v, lo, qmax)
    return xq


@needs_gcc
@pytest.mark.parametrize("dtype,per_channel", [("int8", True), ("int8", False), ("q15", True)])
def test_dense_kernels_are_bit_exact(tmp_path, dtype, per_channel):
    from cococ.passes.quantize import Quantize
    g = dense_net(seed=4, k=37, hidden=33)  # odd k (int8: 37 = 9 words + 1), odd channel counts
    x = _input(g, seed=2)
    g = Quantize(dtype=dtype, per_channel=per_channel).run_on(g)
    art = build(g, "arm-m4", out_dir=tmp_path, quantize=dtype)
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
    g = conv_net(seed=3)  # padded conv + relu + maxpool, strided conv, global avg pool (float), dense, softmax
    x = _input(g, seed=7)
    art = build(g, "arm-m4", out_dir=tmp_path, quantize="int8")
    ops = {s["op"]: s["outputs"][-1]["dtype"] for s in art.report["steps"]}  # (a conv also writes its column)
    assert ops["conv2d+relu"] == "int8" and ops["max_pool"] == "int8" and ops["global_avg_pool"] == "float32"
    assert _uses_sxtb16_smlad(art.elf)
    ref = reference(art.load_graph(), [x])["prob"]
    y = art.run(x)["prob"]
    assert np.max(np.abs(y - ref)) <= INT8_TOL * np.max(np.abs(ref))
    assert np.argmax(y) == np.argmax(ref)


def test_fast_requantisation_is_the_64_bit_rounding():
    """floor((acc*M + 2^(s-1)) / 2^s) == ((acc*M >> 32) + 2^(s-33)) >> (s-32) for s >= 33."""
    rng = np.random.default_rng(0)
    acc = rng.integers(-2 ** 31, 2 ** 31, 20000, dtype=np.int64)
    m = rng.integers(2 ** 30, 2 ** 31, 20000, dtype=np.int64)
    s = rng.integers(33, 63, 20000, dtype=np.int64)
    exact = [(int(a) * int(b) + (1 << (int(c) - 1))) >> int(c) for a, b, c in zip(acc, m, s)]
    fast = [(((int(a) * int(b)) >> 32) + (1 << (int(c) - 33))) >> (int(c) - 32) for a, b, c in zip(acc, m, s)]
    assert exact == fast


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
    assert a["n"] == 24 and a["agreement"] >= 23 / 24 and a["max_rel_err"] <= INT8_TOL
    assert abs(a["device"] - a["f32"]) <= 1 / 24


def test_bad_combinations_say_what_is_wrong():
    g = dense_net()
    with pytest.raises(CococError, match="--quantize int8 is for arm-m4"):
        build(g, "x86", quantize="int8")
    with pytest.raises(CococError, match=r"unknown quantization 'int4' \(known: q15, int8\)"):
        build(g, "arm-m4", quantize="int4", compile=False)
    from cococ.backends.mcu.lower import lower
    from cococ.passes.quantize import Quantize
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
