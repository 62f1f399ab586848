"""`--target-opt io=int8` (backends/mcu/io.py): the model takes int8 input and returns int8
output (TFLite Micro style), both in the arena; its int8 output within about one output step of
the float-io build's, whose last dense and softmax end in float32 (i8wide.float_tail)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from cococ.backends.artifact import load_artifact
from cococ.backends.build import build
from cococ.backends.mcu.emit import generated_input_int8
from cococ.backends.mcu.io import dequantize, quantize_input
from cococ.ir.core import CococError
from cococ.cli import main
from cococ.ir.target import get_target
from tests.backends.test_mcu import conv_net

HAVE_GCC = shutil.which("arm-none-eabi-gcc") is not None
needs_gcc = pytest.mark.skipif(not HAVE_GCC, reason="arm-none-eabi-gcc not installed")
INT8_IO = {"io": "int8"}
LENET = Path(__file__).resolve().parents[2] / "examples" / "lenet" / "lenet.prototxt"


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    g = conv_net()
    d = tmp_path_factory.mktemp("io")
    flt = build(g, "arm-m4", out_dir=d / "float", quantize="int8", compile=HAVE_GCC)
    i8 = build(g, "arm-m4", out_dir=d / "int8", quantize="int8", compile=HAVE_GCC, target_options=INT8_IO)
    return g, flt, i8


def test_report_records_scales(builds):
    g, flt, i8 = builds
    io = i8.report["io"]
    assert io == json.loads((i8.dir / "artifact.json").read_text())["io"]
    (x,), (y,) = io["inputs"], io["outputs"]
    assert (x["name"], x["shape"], x["dtype"], x["zero_point"]) == ("x", [1, 3, 12, 12], "int8", 0)
    assert (y["name"], y["shape"], y["dtype"], y["zero_point"]) == ("prob", [1, 10], "int8", 0)
    # the float-io build's input quantize step's scale; the output value's calibrated scale
    assert x["scale"] > 0 and y["scale"] > 0 and "io" not in flt.report
    ops = [s["op"] for s in i8.report["steps"]]
    assert "quantize" not in ops and "dequantize" not in ops
    assert [s["op"] for s in flt.report["steps"]][1:] == ops   # float io: no dequantize step at the end
    names = [t["name"] for t in i8.report["arena_tensors"]]  # the I/O tensors are planned in the arena
    assert "x_q" in names and all(s["outputs"][0]["home"] == "arena" for s in i8.report["steps"])
    h = (i8.dir / "model.h").read_text()
    assert "int model_run(void);" in h and "extern int8_t model_input[MODEL_IN_SIZE];" in h


@needs_gcc
def test_int8_io_equals_float_io(builds):
    g, flt, i8 = builds
    rng = np.random.default_rng(0)
    io = i8.report["io"]
    for _ in range(3):
        x = rng.standard_normal((1, 3, 12, 12)).astype(np.float32)
        want = flt.run(x)["prob"]
        s_out = io["outputs"][0]["scale"]
        q = i8.emulator().run(quantize_input(x, io["inputs"][0]["scale"])).outputs  # raw int8 out
        assert q.dtype == np.int8
        # the float-io build's logits and probabilities are not rounded to int8: the int8 softmax's own
        # rounding (half a step) and that of its int8 input (its logits) apart, about a step at most
        assert np.abs(q.astype(np.float64) - want.reshape(-1) / s_out).max() <= 1.5
        assert np.abs(q.astype(np.float64) - want.reshape(-1) / s_out).max() > 1e-3   # not on the int8 grid
        np.testing.assert_array_equal(i8.run(x)["prob"].reshape(-1), dequantize(q, s_out))  # the runner dequantizes
        xq = quantize_input(x, io["inputs"][0]["scale"])
        np.testing.assert_array_equal(i8.run(xq)["prob"], i8.run(x)["prob"])  # an int8 input is taken as it is
    loaded = load_artifact(i8.dir)  # `cococ run DIR` loads it from the folder
    np.testing.assert_array_equal(loaded.run(x)["prob"], i8.run(x)["prob"])


@needs_gcc
def test_harness_has_no_float_buffer(builds):
    g, flt, i8 = builds
    emu = i8.emulator()
    arena, (xa, xn), (ya, yn) = emu.symbols["arena"], emu.symbols["model_input"], emu.symbols["model_output"]
    assert (xn, yn) == (3 * 12 * 12, 10)  # int8
    assert arena[0] <= xa < xa + xn <= arena[0] + arena[1] and arena[0] <= ya < ya + yn <= arena[0] + arena[1]
    m = i8.report["memory"]
    assert m["harness"]["sram"] == 4096  # the stack alone: no I/O buffers outside the arena
    assert i8.report["sram"] < flt.report["sram"]


@needs_gcc
@pytest.mark.skipif(shutil.which("qemu-system-arm") is None, reason="qemu-system-arm not installed")
def test_qemu_agrees(builds):
    from cococ.runtime.mcu.qemu import run_qemu
    g, flt, i8 = builds
    np.testing.assert_array_equal(run_qemu(i8.elf, io_dtype=np.int8),
                                  i8.emulator().outputs(generated_input_int8(3 * 12 * 12)))


def test_bad_combination_is_one_line():
    g = conv_net()
    for q in (None, "q15"):
        with pytest.raises(CococError) as e:
            build(g, "arm-m4", quantize=q, compile=False, target_options=INT8_IO)
        assert "\n" not in str(e.value) and "--target-opt io=int8 goes with --quantize int8" in str(e.value)
    with pytest.raises(CococError, match="bad io 'int16'"):
        get_target("arm-m4", {"io": "int16"})


def test_bad_combination_on_the_cli(tmp_path, capsys):
    for q in ([], ["--quantize", "q15"]):
        rc = main(["build", "--target=arm-m4", str(LENET), "--init", "random", "--target-opt", "io=int8",
                   "-o", str(tmp_path / "out"), *q])
        err = capsys.readouterr().err
        assert rc == 1 and len(err.strip().splitlines()) == 1 and "io=int8 goes with --quantize int8" in err
