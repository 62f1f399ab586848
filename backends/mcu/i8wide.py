"""More than int8 where an int8 build's rounding costs the most accuracy: its two ends.

- float tail (`float_tail`): with float outputs (not io=int8) the last dense dequantises its
  int32 sums and a softmax after it runs in float32 (no int8 logits or probabilities).

Past that, two places decide most of an int8 classifier's disagreements with float (the MLPerf
Tiny IC ResNet-8: top-1 agreement with onnxruntime 94% with both rounded to int8; a simulation
of the device put them first): the average pool that is the classifier's whole input, and the input.

- pool sum (`pool_sum`): an average pool (or global average pool) whose one reader is a dense
  layer (directly or through flatten/reshape views) hands it the window's sum as int16, at scale
  s_x / (kh * kw), instead of the mean rounded to int8 (64 values for IC, 1/64 of a step finer):
  the division is folded into the dense's requantisation (its input scale). The sum of at most
  256 int8 values fits int16; the dense widens its input to q15 columns anyway, so it reads
  the int16 sums at the same cost (its x argument is int16, i8kernels.dense_int8 `x_dtype`).
- int16 input (`input16`): in a build with float input (not io=int8) the first conv, when it
  reads the graph input directly, takes it quantized to int16 (same saturation point: scale s_8 *
  127 / 32767) instead of int8; the conv's im2col widens int8 to q15 columns anyway, so it
  copies the int16 values at the same cost (i8kernels.conv2d_int8 `x_dtype`).

Both stay within the int32 accumulator: |x_q| <= 2^15, |w_q| <= 2^7, so k terms plus the bias
must stay below 2^31 (`fits`: checked per layer with its bias, else it stays int8).
"""
from __future__ import annotations

import numpy as np
from tvm.script import tirx as T

from cococ.backends.mcu import i8ops as I
from cococ.backends.mcu.codegen import Kernel
from cococ.backends.mcu.fixed import pool_fits
from cococ.backends.mcu.lower import Step, Tensor
from cococ.backends.mcu.qkernels import weight_scales
from cococ.ir.ops.activation import Relu
from cococ.ir.ops.nn import Conv2d, Dense
from cococ.ir.ops.pool import AvgPool, GlobalAvgPool
from cococ.ir.ops.softmax import Softmax

I16 = 32767
SUM, INPUT16 = "pool sum", "int16 input"


def window(layer) -> tuple[int, int]:
    """An average pool's window (a global pool's: the whole input plane)."""
    return tuple(layer.attrs["kernel"]) if layer.opdef is AvgPool else tuple(layer.inputs[0].type.shape[2:])


def fits(layer, s_in: float, xmax: int) -> bool:
    """Whether conv/dense `layer` on inputs |x_q| <= xmax at scale s_in keeps its int32 sums:
    k * xmax * 128 + max |bias_q| < 2^31 (weights int8, bias at s_in * s_w)."""
    p = layer.params["weight"]
    if p.format != "dense":
        return False   # the sparse kernels read int8 inputs
    o = p.shape[0]
    k = int(np.prod(p.shape[1:]))
    bias = np.abs(layer.params["bias"].dense()).astype(np.float64) if "bias" in layer.params else np.zeros(o)
    bq = bias / (s_in * weight_scales(p, o, 127))
    return k * xmax * 128 + float(bq.max(initial=0.0)) < 2 ** 31


def wide_layers(graph, users, scales: dict[str, float], float_in: bool) -> dict[int, str]:
    """id(layer) -> SUM (an average pool whose window sum feeds a dense) or INPUT16 (a conv reading
    the float graph input, when `float_in`), where the dense/conv's int32 sums stay in range."""
    inputs = {id(v) for v in graph.inputs}
    outputs = {id(v) for v in graph.outputs}
    wide: dict[int, str] = {}
    for layer in graph.layers:
        op = layer.opdef
        if op in (AvgPool, GlobalAvgPool) and pool_fits(layer) is None:
            kh, kw = window(layer)
            reader, v = None, layer.output
            while id(v) not in outputs and len(users.get(id(v), [])) == 1:
                reader = users[id(v)][0]
                if not (reader.opdef.view or reader.opdef.alias):
                    break
                v = reader.output
            if (reader is not None and reader.opdef is Dense and id(v) not in outputs and kh * kw <= 256
                    and fits(reader, scales[layer.inputs[0].name] / (kh * kw), 128 * kh * kw)):
                wide[id(layer)] = SUM
        elif (float_in and op is Conv2d and layer.attrs.get("groups", 1) == 1 and id(layer.inputs[0]) in inputs
              and fits(layer, scales[layer.inputs[0].name] * 127 / I16, I16 + 1)):
            wide[id(layer)] = INPUT16
    return wide


def float_tail(graph, users) -> set[int]:
    """An int8 build with float outputs (not io=int8): the layers (ids) that end it in float32: a
    dense (dense weights) making a graph output, directly or through a ReLU, dequantises its int32
    sums (`lower_int8`); a softmax that is its one reader and a graph output runs in float32 on them
    (libm's expf, ~200 cycles a class). No int8 rounding of the logits and probabilities."""
    producer = {id(v): l for l in graph.layers for v in l.outputs}
    outputs = {id(v) for v in graph.outputs}
    tail: set[int] = set()
    for v in graph.outputs:
        last = producer.get(id(v))
        soft = last if last is not None and last.opdef is Softmax else None
        if last is not None and last.opdef in (Softmax, Relu):   # read through: the dense's one reader
            mid, last = last, producer.get(id(last.inputs[0]))
            readers = [id(u) for u in users.get(id(last.output), [])] if last is not None else []
            if last is None or id(last.output) in outputs or readers != [id(mid)]:
                continue
        elif users.get(id(v)):
            continue
        if last is None or last.opdef is not Dense or last.params["weight"].format != "dense":
            continue
        tail |= {id(last)} | ({id(soft)} if soft is not None else set())
    return tail


def input16(lw, t: Tensor, vname: str) -> Tensor:
    """The float graph input `t` quantized to int16 at s_8 * 127 / 32767 (one quantize step,
    VCVTR + SSAT #16: i8ops.quantize), once however many convs read it."""
    if (id(t), "int16") in lw.converted:
        return lw.converted[id(t), "int16"]
    s = lw.scale_of(vname) * 127 / I16
    out = Tensor(f"{t.name}_q", "int16", t.shape, scale=s)
    k = lw.kernel(("quantize", "int16", t.size, s), lambda n: I.quantize(n, t.size, s, "int16"))
    lw.prog.steps.append(Step(k, [t, out], [], "quantize"))
    lw.converted[id(t), "int16"] = out
    return out


def pool_sum(name, x_shape, y_shape, kernel, stride, pad) -> Kernel:
    """int8 average pool -> int16 window sums (zeros in the padding), not divided: the dense
    after it takes them at scale s_x / (kh * kw)."""
    n, c, h, w = x_shape
    _, _, oh, ow = y_shape
    (kh, kw), (sy, sx), (t, l) = kernel, stride, pad[:2]
    padded = any(pad)
    xs, ys = tuple(x_shape), tuple(y_shape)

    @T.prim_func(s_tir=True)
    def f(x: T.Buffer(xs, "int8"), y: T.Buffer(ys, "int16")):
        T.func_attr({"tirx.noalias": True})
        acc = T.sblock_alloc_buffer((1,), "int32")
        for nn, ch, i, j in T.grid(n, c, oh, ow):
            I.window_sum(acc, x, nn, ch, i, j, kh, kw, sy, sx, t, l, h, w, padded)
            y[nn, ch, i, j] = T.Cast("int16", acc[0])
    return Kernel(name, f, [("x", "int8", False), ("y", "int16", True)], origin="tvm-tir",
                  meta={"doc": f"int8 avg_pool {list(x_shape)}->{list(y_shape)} k{kh}x{kw} -> int16 window sums "
                               "(the dense after it divides)"})


def lower_pool_sum(lw, layer, x: Tensor, mean: Tensor) -> tuple[Kernel, list, Tensor]:
    """(kernel, args, output) of a SUM pool: instead of the int8 `mean`, int16 sums at s_x / (kh * kw)."""
    kernel = window(layer)
    stride, pad = ((layer.attrs["stride"], layer.attrs["pad"]) if layer.opdef is AvgPool
                   else ((1, 1), (0, 0, 0, 0)))
    out = Tensor(mean.name, "int16", mean.shape, scale=x.scale / (kernel[0] * kernel[1]))
    key = ("pool_sum", x.shape, out.shape, kernel, tuple(stride), tuple(pad))
    k = lw.kernel(key, lambda n: pool_sum(n, x.shape, out.shape, kernel, stride, pad))
    return k, [x, out], out


__all__ = ["float_tail", "wide_layers", "input16", "pool_sum", "lower_pool_sum", "fits", "window", "SUM", "INPUT16"]
