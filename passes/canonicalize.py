"""canonicalize: the inference-time clean-ups every later pass and backend can then assume.

- dropout and identity are y = x at inference: their readers read x instead.
- batchnorm, scale and bias right after a conv2d/dense fold into its weight and bias:
  y = s * (W x + b) + t  ==  (s W) x + (s b + t), per output channel (axis 0 of W, axis 1 of y).
  That is exact math (rounding aside: float64 then back to the weight's dtype), so the
  reference interpreter gives the same outputs within float32 rounding. It is done only when
  the conv's output has that one reader and is not a graph output (else the unscaled value is
  still observable), and only for float weights with no quantization attrs (a quantized one
  would need re-quantizing). A compressed weight (csr, simd_group: `--prune auto` runs before
  this pass, its retraining wants the batchnorm) folds too: its stored values are scaled per
  row, the structure kept, so an int8 build runs no batchnorm in float after a pruned conv.
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
    return w is not None and _float(w, compressed=True) and (b is None or _float(b))


def _float(q: Param, compressed: bool = False) -> bool:
    """A float param without quantization attrs: dense with data, or (weights) csr / simd_group."""
    if q.format == "dense":
        return q.data is not None and not q.attrs and np.issubdtype(q.data.dtype, np.floating)
    return (compressed and q.format in ("csr", "simd_group") and set(q.attrs) <= {"width"}
            and np.issubdtype(q.arrays["values"].dtype, np.floating))


def fold_affine(conv: Layer, s: np.ndarray, t: np.ndarray) -> None:
    """conv's weight and bias become those of s * conv(x) + t (s, t per output channel)."""
    p = conv.params["weight"]
    dtype = p.type.np_dtype
    if p.format == "dense":
        w = p.data
        new_w = Param.from_array((w.astype(np.float64) * s.reshape((-1,) + (1,) * (w.ndim - 1))).astype(w.dtype))
    else:   # csr / simd_group: the values of row r (output channel r) are indptr[r]..indptr[r+1] (x width)
        width = int(p.attrs.get("width", 1))
        per_row = np.diff(p.arrays["indptr"].astype(np.int64)) * width
        vals = p.arrays["values"]
        scaled = (vals.astype(np.float64) * np.repeat(s, per_row)).astype(vals.dtype)
        new_w = Param(p.type, None, format=p.format, arrays={**p.arrays, "values": scaled}, attrs=dict(p.attrs))
    old_b = conv.params.get("bias")
    b = np.zeros(p.shape[0]) if old_b is None else old_b.data.astype(np.float64)
    new_b = b * s + t
    conv.params["weight"] = new_w
    if old_b is not None or np.any(new_b != 0):
        conv.params["bias"] = Param.from_array(new_b.astype(dtype if old_b is None else old_b.data.dtype))
