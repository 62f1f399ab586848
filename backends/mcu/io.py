"""`--target-opt io=int8`: the model takes its int8 input and returns its int8 output, as
TFLite Micro models do, instead of floats that model_run quantizes and dequantizes.

An int8 build's program starts with a quantize step (float input -> int8) and ends with a
dequantize step (int8 -> float output). Under io=int8 both steps go: the quantize step's int8
output becomes the model's input, the dequantize step's int8 input its output, and both live
in the arena (`model_input`/`model_output` in model.c are int8 views of it, TFLM's
`interpreter->input(0)->data`), so the board harness holds no float buffer and the arena
planner accounts the input and output with the other tensors: the input is live from before
the first step to its last reader, the output from its writer to the end of the run. Their
scale and zero point (0: the quantize pass is symmetric) go into report.json and the artifact
manifest under `io`, so a caller can quantize its sensor data: q = clamp(rint(x / scale)).
"""
from __future__ import annotations

import numpy as np

from cococ.backends.mcu.lower import Program, Step, Tensor
from cococ.backends.mcu.plan import Interval
from cococ.ir.core import CococError, Graph

FLAG = "--target-opt io=int8"


def _what(s: Step) -> str:
    return "+".join(s.layers) if s.layers else s.op


def int8_io(prog: Program, graph: Graph) -> dict:
    """Drop the input quantize and output dequantize steps; returns the `io` record."""
    if prog.quant != "int8":
        raise CococError(f"{FLAG} goes with --quantize int8 (this build: "
                         f"{'--quantize ' + prog.quant if prog.quant else 'float'})")
    if len(prog.inputs) != 1 or len(prog.outputs) != 1:
        raise CococError(f"{FLAG} takes a model with one input and one output "
                         f"(this one has {len(prog.inputs)} and {len(prog.outputs)})")
    x, y = prog.inputs[0], prog.outputs[0]
    readers = [s for s in prog.steps if any(t.storage is x for t in s.inputs)]
    bad = [s for s in readers if s.op != "quantize"]
    if bad or not readers:
        raise CococError(f"{FLAG}: input {graph.inputs[0].name} is read by a float32 step "
                         f"({_what(bad[0]) if bad else 'none'}): it needs an int8 first layer")
    (quant,) = readers  # the lowering converts a tensor once
    writer = next(s for s in prog.steps if any(t.storage is y.storage for t in s.outputs))
    if writer.op != "dequantize":
        raise CococError(f"{FLAG}: output {graph.outputs[0].name} is computed in float32 "
                         f"({_what(writer)}): it needs an int8 last layer")
    qx, qy = quant.outputs[0], writer.inputs[0]
    if qy.storage is qx.storage:
        raise CococError(f"{FLAG}: the output is the input; nothing to run")
    prog.steps = [s for s in prog.steps if s is not quant and s is not writer]
    used = {id(s.kernel) for s in prog.steps}
    prog.kernels = {k: v for k, v in prog.kernels.items() if id(v) in used}
    prog.inputs, prog.outputs = [qx], [qy]
    return {"dtype": "int8",
            "inputs": [_spec(graph.inputs[0].name, graph.inputs[0].type.shape, qx.scale)],
            "outputs": [_spec(graph.outputs[0].name, graph.outputs[0].type.shape, qy.scale)]}


def _spec(name: str, shape, scale: float) -> dict:
    return {"name": name, "shape": list(shape), "dtype": "int8", "scale": float(scale), "zero_point": 0}


def io_offsets(prog: Program, intervals: list[Interval], alias: dict[int, Tensor]) -> None:
    """Stretch the I/O tensors' lifetimes over the whole run: the caller writes the input before
    model_run and reads the output after it."""
    last = len(prog.steps) - 1
    for t, grow in ((prog.inputs[0], "start"), (prog.outputs[0], "end")):
        root = t.storage
        while id(root) in alias:
            root = alias[id(root)]
        iv = next(iv for iv in intervals if iv.name == root.name)
        if grow == "start":
            iv.start = 0
        else:
            iv.end = last


def quantize_input(x: np.ndarray, scale: float) -> np.ndarray:
    """What the float-io build's quantize step computes on the device (i8ops.quantize): x times
    the float32 1/scale, rounded to nearest even, saturated."""
    q = np.rint(np.asarray(x, np.float32) * np.float32(1.0 / scale))
    return np.clip(q, -128, 127).astype(np.int8)


def dequantize(q: np.ndarray, scale: float) -> np.ndarray:
    """What the float-io build's dequantize step computes: int8 times the float32 scale."""
    return np.asarray(q).astype(np.float32) * np.float32(scale)


__all__ = ["int8_io", "io_offsets", "quantize_input", "dequantize", "FLAG"]
