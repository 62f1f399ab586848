"""Accuracy of a fixed-point (q15 / int8) arm-m4 build on a data set, against float32.

`cococ build --quantize ... --quant-data digits` calibrates the quantize pass on training
images and then asks what the fixed point costs: top-1 accuracy of the float32 graph (reference
interpreter) and of the built ELF itself on the emulated Cortex-M4, on the test split. The
device numbers come from the device code, not from a simulation of it, so every rounding the
kernels do is in them. The emulator runs here without its per-block counting hook (only the
outputs are wanted; unicorn then runs at native-ish speed, ~0.1 s per LeNet-5 inference
instead of seconds).
"""
from __future__ import annotations

import numpy as np

from cococ.ir.core import CococError


def calibration_samples(graph, spec: str, n: int = 64, seed: int = 0) -> list[list[np.ndarray]]:
    """`n` training images of data set `spec` as single-input feeds for the quantize pass."""
    from cococ.runtime.data import load_data
    if len(graph.inputs) != 1:
        raise CococError("--quant-data needs a single-input network")
    shape = graph.inputs[0].type.shape
    ds = load_data(spec, shape)
    idx = np.random.default_rng(seed).permutation(len(ds.x_train))[:n]
    b = shape[0]
    xs = ds.x_train[idx]
    return [[xs[i:i + b]] for i in range(0, len(xs) - b + 1, b)]


def device_outputs(elf, x: np.ndarray) -> np.ndarray:
    """model_output of one run of `elf` on the emulated M4 (no instruction counting)."""
    from unicorn import UcError

    from cococ.runtime.mcu.emulator import STUB, Emulator, _enable_fpu
    emu = elf if isinstance(elf, Emulator) else Emulator(elf)
    uc, A = emu._setup()
    in_addr, _ = emu.symbols["model_input"]
    out_addr, out_size = emu.symbols["model_output"]
    uc.mem_write(in_addr, np.ascontiguousarray(x, np.float32).tobytes())
    uc.reg_write(A.UC_ARM_REG_SP, emu.symbols["_estack"][0])
    uc.reg_write(A.UC_ARM_REG_R0, in_addr)
    uc.reg_write(A.UC_ARM_REG_R1, out_addr)
    uc.reg_write(A.UC_ARM_REG_LR, STUB | 1)
    _enable_fpu(uc, A)
    try:
        uc.emu_start(emu.symbols["model_run"][0] | 1, STUB, count=emu.max_instructions)
    except UcError as e:
        raise CococError(f"emulated Cortex-M4 faulted: {e}") from None
    return np.frombuffer(bytes(uc.mem_read(out_addr, out_size)), dtype=np.float32).copy()


def accuracy(float_graph, art, spec: str, limit: int | None = None) -> dict:
    """Top-1 accuracy of `float_graph` (reference interpreter) and of the built artifact `art`
    (its ELF on the emulator) on the test split of `spec`; also how often the two agree and
    the device's max |error| against the reference interpreter on the quantized graph."""
    from cococ.runtime.interpreter import run as interpret
    from cococ.runtime.mcu.emulator import Emulator
    shape = float_graph.inputs[0].type.shape
    if shape[0] != 1 or len(float_graph.outputs) != 1:
        raise CococError("--quant-data: the accuracy report needs batch 1 and one output")
    from cococ.runtime.data import load_data
    ds = load_data(spec, shape)
    xs, ys = ds.test_arrays()
    xs, ys = xs[:limit], ys[:limit]
    emu = Emulator(art.elf)
    qgraph = art.load_graph()
    out = float_graph.outputs[0].name
    f32 = np.stack([interpret(float_graph, [x[None]])[out].reshape(-1) for x in xs])
    ref = np.stack([interpret(qgraph, [x[None]])[out].reshape(-1) for x in xs])
    dev = np.stack([device_outputs(emu, x) for x in xs])
    err = np.abs(dev - ref).max(axis=1) / np.maximum(np.abs(ref).max(axis=1), 1e-30)
    return {"data": spec, "n": int(len(ys)), "f32": float(np.mean(f32.argmax(1) == ys)),
            "device": float(np.mean(dev.argmax(1) == ys)),
            "agreement": float(np.mean(dev.argmax(1) == f32.argmax(1))),
            "max_rel_err": float(err.max())}
