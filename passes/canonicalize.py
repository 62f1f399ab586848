"""canonicalize: the inference-time clean-ups every later pass and backend can then assume.

- dropout and identity are y = x at inference: their readers read x instead.
- batchnorm, scale and bias right after a conv2d/dense fold into its weight and bias:
  y = s * (W x + b) + t  ==  (s W) x + (s b + t), per output channel (axis 0 of W, axis 1 of y).
  That is exact math (rounding aside: float64 then back to the weight's dtype), so the
  reference interpreter gives the same outputs within float32 rounding. It is done only when
  the conv's output has that one reader and is not a graph output (else the unscaled value is
  still observable), and only for dense float weights with data and no quantization attrs
  (a quantized or compressed weight would need re-quantizing or re-compressing).
Readers of the folded layer's output read the conv's output; a graph output keeps its name
(the conv produces it instead).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from cococ.ir.core import Graph, Layer, Param
from cococ.ir.ops.norm import BatchNorm, Bias, Scale
from cococ.passes.manager import register_pass
from cococ.passes.rewrite import bypass, erase_layers, replace_value


@register_pass
@dataclass(frozen=True)
class Canonicalize:
    """Drop dropout/identity; fold batchnorm, scale and bias into the conv2d/dense before them."""
    name: ClassVar[str] = "canonicalize"
    in_place: ClassVar[bool] = True
    drop_dropout: bool = True     # remove dropout layers (inference only)
    drop_identity: bool = True    # remove identity layers
    fold_batchnorm: bool = True   # fold batchnorm into the preceding conv2d/dense
    fold_scale: bool = True       # fold scale and bias layers into the preceding conv2d/dense

    def apply(self, graph: Graph, ctx=None) -> Graph:
        drop = {op for op, on in (("dropout", self.drop_dropout), ("identity", self.drop_identity)) if on}
        for layer in [l for l in graph.layers if l.op in drop]:
            bypass(graph, layer)

        fold = (({BatchNorm.name} if self.fold_batchnorm else set())
                | ({Scale.name, Bias.name} if self.fold_scale else set()))
        if not fold:
            return graph
        producer = {id(v): l for l in graph.layers for v in l.outputs}
        readers: dict[int, int] = {}
        for l in graph.layers:
            for v in l.inputs:
                readers[id(v)] = readers.get(id(v), 0) + 1
        outputs = {id(v) for v in graph.outputs}
        folded = []
        for layer in graph.layers:  # in order, so conv -> batchnorm -> scale folds both
            if layer.op not in fold or len(layer.inputs) != 1:
                continue
            x = layer.inputs[0]
            conv = producer.get(id(x))
            if (conv is None or not conv.opdef.weighted or len(conv.outputs) != 1
                    or readers.get(id(x)) != 1 or id(x) in outputs):
                continue
            affine = channel_affine(layer)
            if affine is None or not _foldable(conv):
                continue
            fold_affine(conv, *affine)
            y = layer.outputs[0]
            kept = replace_value(graph, y, x, conv, sole_reader=True)
            producer[id(kept)] = conv
            readers[id(kept)] = readers.get(id(y), 0)
            folded.append(layer)
        if folded:
            erase_layers(graph, folded)
        return graph


def channel_affine(layer: Layer) -> tuple[np.ndarray, np.ndarray] | None:
    """(s, t) with layer(x) = s[c] * x + t[c] per channel, in float64 (the op's `fold`: batchnorm,
    scale, bias); None if params lack data."""
    p, fold = layer.params, getattr(layer.opdef, "fold", None)
    if fold is None or not all(q.format == "dense" and q.data is not None for q in p.values()):
        return None
    return fold({k: q.data for k, q in p.items()}, layer.attrs)


def _foldable(conv: Layer) -> bool:
    w = conv.params.get("weight")
    b = conv.params.get("bias")
    return all(q is None or (q.format == "dense" and q.data is not None and not q.attrs
                             and np.issubdtype(q.data.dtype, np.floating)) for q in (w, b)) and w is not None


def fold_affine(conv: Layer, s: np.ndarray, t: np.ndarray) -> None:
    """conv's weight and bias become those of s * conv(x) + t (s, t per output channel)."""
    w = conv.params["weight"].data
    shape = (-1,) + (1,) * (w.ndim - 1)
    new_w = (w.astype(np.float64) * s.reshape(shape)).astype(w.dtype)
    old_b = conv.params.get("bias")
    b = np.zeros(w.shape[0]) if old_b is None else old_b.data.astype(np.float64)
    new_b = b * s + t
    conv.params["weight"] = Param.from_array(new_w)
    if old_b is not None or np.any(new_b != 0):
        conv.params["bias"] = Param.from_array(new_b.astype(w.dtype if old_b is None else old_b.data.dtype))
