"""quantize: symmetric fixed-point (q15 or int8) scales for weights and activations.

Scalpel ran its Cortex-M4 kernels in q15 (seed 004 §4); this pass decides the scales, the
MCU backend turns them into integer kernels (SMLAD loops: backends/mcu/qkernels.py for q15,
SXTB16 + SMLAD: backends/mcu/i8kernels.py for int8).

- Weights of conv2d/dense: scale = max|w| / qmax, per output channel (`per-channel=true`,
  the default) or per tensor; the weight data becomes the fake-quantized values round(w/s)*s
  (float32), so the reference interpreter runs exactly the weights the device will hold.
  The scale goes to `Param.attrs` ("qformat", "scale"). A pruned (csr / simd_group) weight
  keeps its format and stored entries, so the MCU backend can still run its sparse kernel.
- Activations: calibrated by running the reference interpreter on `samples` inputs (random
  normal, or the arrays given to `run_on`) and taking max|x| of every value; scale =
  max / qmax. They stay float in the IR: the rounding of activations is what the device adds.
- A concat and its inputs share one scale (the largest; back to the layers that set them), so
  the integer concat is a copy.
- `graph.meta["quant"]` = {dtype, per_channel, scales: {value: scale}, calibration: {...}}.

qmax = 32767 (q15) or 127 (int8). Zero point is always 0 (symmetric).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from cococ.ir.core import CococError, Graph, Param
from cococ.ir.formats import compress, matrix_shape
from cococ.ir.interpreter import run as interpret
from cococ.ir.ops.tensor import Concat
from cococ.passes.manager import register_pass

QMAX = {"q15": 32767, "int8": 127}


@register_pass
@dataclass(frozen=True)
class Quantize:
    """Symmetric q15/int8 scales for weights (fake-quantized) and activations (calibrated), on a copy."""
    name: ClassVar[str] = "quantize"
    in_place: ClassVar[bool] = False    # run_on() quantizes a clone
    dtype: str = "q15"
    per_channel: bool = True
    samples: int = 8
    seed: int = 0

    def apply(self, graph: Graph, ctx) -> Graph:
        return self.run_on(graph, samples=None, seed=self.seed)

    def run_on(self, graph: Graph, samples=None, seed: int = 0) -> Graph:
        """Quantize a copy of `graph`, calibrated on `samples` (a list of input lists/dicts, or
        one array for a single-input graph), or on `self.samples` random-normal inputs."""
        if self.dtype not in QMAX:
            raise CococError(f"quantize: unknown dtype '{self.dtype}' (known: {', '.join(QMAX)})")
        qmax = QMAX[self.dtype]
        g = graph.clone()
        feeds, source = _calibration_inputs(g, samples, self.samples, seed)
        peak = self._calibrate(g, feeds)
        for layer in g.layers:
            if layer.opdef.weighted and "weight" in layer.params:
                s_in = peak[layer.inputs[0].name] / qmax or 1.0 / qmax
                self._weights(layer, qmax, s_in, peak[layer.output.name])
        peak = self._calibrate(g, feeds)  # again, with the weights the device will use
        scales = {n: (m / qmax if m > 0 else 1.0 / qmax) for n, m in peak.items()}
        _common_concat_scales(g, scales)
        g.meta["quant"] = {"dtype": self.dtype, "per_channel": self.per_channel, "scales": scales,
                           "calibration": {"samples": len(feeds), "source": source}}
        return g

    @staticmethod
    def _calibrate(g: Graph, feeds) -> dict[str, float]:
        """max |x| of every value over the calibration inputs (reference interpreter)."""
        names = [v.name for v in g.values()]
        peak = {n: 0.0 for n in names}
        for feed in feeds:
            for n, a in interpret(g, feed, taps=names).items():
                peak[n] = max(peak[n], float(np.max(np.abs(a))) if a.size else 0.0)
        return peak

    def _weights(self, layer, qmax: int, s_in: float, y_peak: float) -> None:
        """Weight scales: max|w| / qmax, raised where needed so the int32 accumulator of the
        device keeps 2x headroom over the calibrated output: |y| / (s_in * s_w) <= 2^30.
        (SMLAD wraps modulo 2^32, so only the final sum must fit, not the partial sums.)"""
        p = layer.params["weight"]
        w = p.dense().astype(np.float64)
        flat = w.reshape(w.shape[0], -1)
        if self.per_channel:
            s = np.abs(flat).max(axis=1) / qmax
        else:
            s = np.full(w.shape[0], float(np.abs(flat).max()) / qmax)
        s = np.maximum(s, y_peak / (s_in * 2.0 ** 30))
        s[s == 0] = 1.0 / qmax
        q = np.clip(np.round(flat / s[:, None]), -qmax - 1, qmax)
        wq = (q * s[:, None]).reshape(w.shape).astype(np.float32)
        if p.format == "dense":
            p.data = wq
        else:  # pruned: keep the stored pattern, so the backends still see (and run) the sparse form
            p.arrays = _same_pattern(p, wq).arrays
        p.attrs.update(qformat=self.dtype, scale=[float(x) for x in s] if self.per_channel else float(s[0]))


def _common_concat_scales(g: Graph, scales: dict[str, float]) -> None:
    """One scale for a concat, its inputs and the values they are views or order-preserving
    results of (relu, max pool: back to the layer that requantises, or the graph input): the
    largest of theirs, so that nothing saturates and the integer concat is a copy. (A value read
    by two concats of different scales keeps the later one's; the MCU lowering rescales.)"""
    producer = {id(v): l for l in g.layers for v in l.outputs}
    for layer in g.layers:
        if layer.opdef is not Concat:
            continue
        chain = [layer.output.name]
        for v in layer.inputs:
            while True:
                chain.append(v.name)
                p = producer.get(id(v))
                if p is None or len(p.inputs) != 1 or not (p.opdef.view or p.opdef.alias or p.opdef.keeps_scale):
                    break
                v = p.inputs[0]
        s = max(scales[n] for n in chain)
        scales.update((n, s) for n in chain)


def _same_pattern(p, w: np.ndarray):
    """`w` compressed in `p`'s format with exactly `p`'s stored entries (csr elements or
    simd_group groups) and index width: quantizing must not change what pruning removed."""
    rows, cols = matrix_shape(p.shape)
    width = int(p.attrs["width"]) if p.format == "simd_group" else 1
    r = np.repeat(np.arange(rows), np.diff(p.arrays["indptr"].astype(np.int64)))
    keep = np.zeros((rows, -(-cols // width)), bool)
    keep[r, p.arrays["indices"].astype(np.int64) // width] = True
    index = "i16" if p.arrays["indices"].dtype == np.int16 else "i32"
    return compress(Param.from_array(w), p.format, width=width, keep=keep, index_dtype=index)


def _calibration_inputs(g: Graph, samples, n: int, seed: int):
    ins = g.inputs
    if samples is not None:
        if isinstance(samples, np.ndarray):  # one array: a single input, or a stack of batches of it
            shape = ins[0].type.shape
            b = shape[0]
            samples = [[samples]] if samples.shape == shape else \
                [[samples[i:i + b]] for i in range(0, samples.shape[0] - b + 1, b)]
        return list(samples), "given"
    rng = np.random.default_rng(seed)
    return [[rng.standard_normal(v.type.shape).astype(v.type.np_dtype) for v in ins] for _ in range(max(1, n))], \
        f"random normal, seed {seed}"
