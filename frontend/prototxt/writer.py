"""Layer IR Graph -> Caffe NetParameter text (a deploy prototxt), the inverse of translate.py.

Why a writer at all: `cococ prune` hands back the chosen network, and Wootz users take it back
to Caffe; `cococ build net.prototxt --weights net.safetensors` must also accept it. So every IR
layer becomes one `layer { }` with its Caffe type and `*_param`, named after the IR layer, its
bottoms/tops the IR value names (SSA: nothing is in place), so that load_prototxt gives the same
graph back: the same layer and value names (the weights' `layer/param` keys still match), ops,
attrs and shapes. Modules are written as Wootz `module { name: ... layer {...} }` blocks.

What Caffe cannot say is refused with a CococError naming the layer, never written approximately:
asymmetric padding, avg_pool without count_include_pad, non-f32 tensors, a graph output that
another layer also reads, ops with no Caffe layer (e.g. mask). Two spellings are not the obvious
one: `identity` is a one-bottom Concat (Caffe has no Identity; translate.py maps it back), and a
clip without a bound writes ±inf. One IR layer is two Caffe layers: a batchnorm with scale/bias
(ONNX's BatchNormalization) is Caffe's BatchNorm (mean, var: it has no affine part) followed by a
`Scale` layer `<layer>/scale` with bias_term (its scale is ones when the batchnorm had only a
bias), so that graph comes back as batchnorm + scale, computing the same.
"""
from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from safetensors.numpy import save_file

from cococ.ir.core import CococError, Graph, Layer, Param, Value
from cococ.ir.ops.norm import BatchNorm, Scale
from cococ.ir.registry import all_ops, rule_of
from cococ.ir.verify import infer_shapes


class Enum(str):
    """An enum value: written bare (`pool: MAX`), unlike a string (`name: "x"`)."""


Fields = list[tuple[str, object]]      # (name, value); a value that is a list of pairs is a message


# ---- text ---------------------------------------------------------------------------------------

def _scalar(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, Enum):
        return str(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, float):
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    return str(int(v))


def _emit(fields: Fields, indent: int, out: list[str]) -> None:
    pad = "  " * indent
    for k, v in fields:
        if isinstance(v, list):
            out.append(f"{pad}{k} {{")
            _emit(v, indent + 1, out)
            out.append(f"{pad}}}")
        else:
            out.append(f"{pad}{k}: {_scalar(v)}")


# ---- what the op files' Caffe rules use (the `w` they are called with) ----------------------------

def sym_pad(layer: Layer) -> tuple[int, int]:
    """(pad_h, pad_w) of a layer's [top, left, bottom, right] pad; Caffe cannot say asymmetric pads."""
    t, l, b, r = layer.attrs["pad"]
    if (t, l) != (b, r):
        raise layer.error(f"Caffe pads symmetrically; pad {[t, l, b, r]} (top, left, bottom, right) cannot be written")
    return t, l


def hw(base: str, h: str, w: str, vals) -> Fields:
    """One field `base` when both values agree, else the `h` and `w` fields."""
    a, b = vals
    return [(base, a)] if a == b else [(h, a), (w, b)]


# Each op's Caffe rule sits beside the op in ir/ops (`@rule(Op, "caffe")`): `fn(layer, w)` returns
# (Caffe type, the layer's *_param fields); `w` gives it these helpers, so ir/ imports no frontend.
HELPERS = SimpleNamespace(Enum=Enum, hw=hw, sym_pad=sym_pad)


# ---- the net ------------------------------------------------------------------------------------

def _param_specs(layer: Layer) -> Fields:
    """The layer's `param { lr_mult decay_mult }` as loaded (training hints, kept for retraining)."""
    out: Fields = []
    for spec in layer.meta.get("caffe_param", []):
        fields = [(k, Enum(v) if isinstance(v, str) and v.isupper() else v) for k, v in spec.items()
                  if not isinstance(v, (dict, list))]
        out.append(("param", fields))
    return out


def _layer_fields(layer: Layer) -> Fields:
    if layer.op == "input":
        return [("name", layer.name), ("type", "Input"), ("top", layer.outputs[0].name),
                ("input_param", [("shape", [("dim", d) for d in layer.attrs["shape"]])])]
    fn = rule_of(layer.op, "caffe")
    if fn is None:
        writable = sorted(op for op in all_ops() if rule_of(op, "caffe") is not None)
        raise layer.error(f"op '{layer.op}' has no Caffe layer; cannot write it as prototxt "
                          f"(writable: {', '.join(writable)}, input)")
    type_, params = fn(layer, HELPERS)
    return ([("name", layer.name), ("type", type_)] + [("bottom", v.name) for v in layer.inputs]
            + [("top", v.name) for v in layer.outputs] + _param_specs(layer) + params)


def _check(graph: Graph) -> None:
    infer_shapes(graph)                 # fills attr defaults, which the writers read
    for layer in graph.layers:
        for v in layer.outputs:
            if v.type is not None and v.type.dtype != "f32":
                raise layer.error(f"value '%{v.name}' is {v.type.dtype}; a Caffe net is float32 only")
    used = {id(v) for l in graph.layers for v in l.inputs}
    for v in graph.outputs:
        if id(v) in used:
            raise CococError(f"graph output '%{v.name}' is also read by a layer; a Caffe net's outputs are the "
                             "blobs no layer reads, so this graph cannot be written as prototxt")


def split_affine_batchnorm(graph: Graph) -> Graph:
    """The graph as Caffe layers: each batchnorm with scale/bias becomes batchnorm (mean, var) +
    scale `<layer>/scale` (on a copy; the graph itself when there is none). Its output value
    keeps its name (it is now the scale's); the batchnorm's own output is `<value>/bn`."""
    def affine(l: Layer) -> bool:
        return l.op == BatchNorm.name and bool(l.params.keys() & BatchNorm.optional_params)

    if not any(map(affine, graph.layers)):
        return graph
    g = graph.clone()
    for bn in [l for l in g.layers if affine(l)]:
        out = bn.outputs[0]
        mid = Value(g.unique_name(f"{out.name}/bn"), out.type)
        ones = Param.from_array(np.ones(bn.params["mean"].shape, np.float32))
        params = {"scale": bn.params.pop("scale", ones)}
        if "bias" in bn.params:
            params["bias"] = bn.params.pop("bias")
        scale = Layer(Scale.name, g.unique_name(f"{bn.name}/scale"), [mid], [out], params=params,
                      module=bn.module, loc=bn.loc)
        bn.outputs = [mid]
        mid.producer = bn
        g.insert_after(bn, scale)
    return g


def to_prototxt(graph: Graph) -> str:
    """The graph as Caffe NetParameter text (deploy net; weights go in a separate file)."""
    graph = split_affine_batchnorm(graph)
    _check(graph)
    lines = [f"# written by cococ from graph '{graph.name}'", f"name: {_scalar(graph.name)}"]
    net_inputs = [l for l in graph.layers if l.op == "input" and l.name == l.outputs[0].name and l.module is None]
    for l in net_inputs:               # Caffe's deploy form: net-level input / input_shape
        lines.append(f"input: {_scalar(l.name)}")
        _emit([("input_shape", [("dim", d) for d in l.attrs["shape"]])], 0, lines)
    i, layers = 0, graph.layers
    while i < len(layers):
        m = layers[i].module
        if m is None:
            if layers[i] not in net_inputs:
                _emit([("layer", _layer_fields(layers[i]))], 0, lines)
            i += 1
            continue
        j = i
        while j < len(layers) and layers[j].module == m:
            j += 1
        _emit([("module", [("name", m)] + [("layer", _layer_fields(l)) for l in layers[i:j]])], 0, lines)
        i = j
    return "\n".join(lines) + "\n"


def save_prototxt(graph: Graph, path, weights: bool | None = None) -> dict[str, Path]:
    """Write `path` (.prototxt) and, when the graph holds weights (or weights=True), the side-car
    `path.with_suffix(".safetensors")` (keys `layer/param`: `cococ build path --weights ...` reads it)."""
    path = Path(path)
    graph = split_affine_batchnorm(graph)     # the weights' keys are the written layers'
    text = to_prototxt(graph)
    path.write_text(text, encoding="utf-8")
    out = {"prototxt": path}
    params = [(l, k, p) for l in graph.layers for k, p in l.params.items()]
    if weights is None:
        weights = bool(params) and all(p.has_data for _, _, p in params)
    if weights and params:
        arrays = {f"{l.name}/{k}": np.ascontiguousarray(p.dense(), dtype=np.float32) for l, k, p in params}
        out["weights"] = path.with_suffix(".safetensors")
        save_file(arrays, str(out["weights"]), metadata={"format": "cococ-weights", "net": path.name})
    return out
