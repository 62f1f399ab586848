"""Accuracy of a fixed-point (q15 / int8) arm-m4 build on a data set, against float32.

`cococ build --quantize ... --quant-data digits` calibrates the quantize pass on training
images and then asks what the fixed point costs: top-1 accuracy of the float32 graph (reference
interpreter) and of the built ELF itself on the emulated Cortex-M4, on the test split. The
device numbers come from the device code, not from a simulation of it, so every rounding the
kernels do is in them (`Emulator.outputs`: without the per-block counting hook). It is an
evaluation driver over a build, a data set and the emulator, so it lives in runtime/, above
the backend whose artifact it measures.
"""
from __future__ import annotations

import numpy as np

from cococ.ir.core import CococError
from cococ.ir.interpreter import run as interpret
from cococ.runtime.data import load_data


def calibration_samples(graph, spec: str, n: int = 64, seed: int = 0) -> list[list[np.ndarray]]:
    """`n` training images of data set `spec` as single-input feeds for the quantize pass."""
    if len(graph.inputs) != 1:
        raise CococError("--quant-data needs a single-input network")
    shape = graph.inputs[0].type.shape
    ds = load_data(spec, shape)
    idx = np.random.default_rng(seed).permutation(len(ds.x_train))[:n]
    b = shape[0]
    xs = ds.x_train[idx]
    return [[xs[i:i + b]] for i in range(0, len(xs) - b + 1, b)]


def accuracy(float_graph, art, spec: str, limit: int | None = None) -> dict:
    """Top-1 accuracy of `float_graph` (reference interpreter) and of the built artifact `art`
    (its ELF on the emulator) on the test split of `spec`; also how often the two agree and
    the device's max |error| against the reference interpreter on the quantized graph."""
    shape = float_graph.inputs[0].type.shape
    if shape[0] != 1 or len(float_graph.outputs) != 1:
        raise CococError("--quant-data: the accuracy report needs batch 1 and one output")
    ds = load_data(spec, shape)
    xs, ys = ds.test_arrays()
    xs, ys = xs[:limit], ys[:limit]
    art.emulator()   # the ELF checked against its recorded sha256 first
    qgraph = art.load_graph()
    out = float_graph.outputs[0].name
    f32 = np.stack([interpret(float_graph, [x[None]])[out].reshape(-1) for x in xs])
    ref = np.stack([interpret(qgraph, [x[None]])[out].reshape(-1) for x in xs])
    dev = np.stack([art.device_outputs(x.reshape(-1)) for x in xs])  # io=int8: quantized as recorded
    err = np.abs(dev - ref).max(axis=1) / np.maximum(np.abs(ref).max(axis=1), 1e-30)
    return {"data": spec, "n": int(len(ys)), "f32": float(np.mean(f32.argmax(1) == ys)),
            "device": float(np.mean(dev.argmax(1) == ys)),
            "agreement": float(np.mean(dev.argmax(1) == f32.argmax(1))),
            "max_rel_err": float(err.max())}
