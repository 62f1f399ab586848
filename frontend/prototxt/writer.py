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
clip without a bound writes ±inf.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

from cococ.ir.core import CococError, Graph, Layer


class Enum(str):
    """An enum value: written bare (`pool: MAX`), unlike a string (`name: "x"`)."""


Fields = list[tuple[str, object]]      # (name, value); a value that is a list of pairs is a message
WRITERS: dict[str, Callable[[Layer], tuple[str, Fields]]] = {}


def writer(*ops: str):
    def deco(fn):
        for op in ops:
            WRITERS[op] = fn
        return fn
    return deco


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


# ---- per-op layer writers: (Caffe type, the layer's *_param fields) ------------------------------

def _sym_pad(layer: Layer) -> tuple[int, int]:
    t, l, b, r = layer.attrs["pad"]
    if (t, l) != (b, r):
        raise layer.error(f"Caffe pads symmetrically; pad {[t, l, b, r]} (top, left, bottom, right) cannot be written")
    return t, l


def _hw(base: str, h: str, w: str, vals) -> Fields:
    a, b = vals
    return [(base, a)] if a == b else [(h, a), (w, b)]


@writer("conv2d")
def _conv(layer: Layer) -> tuple[str, Fields]:
    a = layer.attrs
    p: Fields = [("num_output", a["out_channels"]), ("bias_term", "bias" in layer.params)]
    p += _hw("pad", "pad_h", "pad_w", _sym_pad(layer)) + _hw("kernel_size", "kernel_h", "kernel_w", a["kernel"])
    p += _hw("stride", "stride_h", "stride_w", a["stride"])
    if a["groups"] != 1:
        p.append(("group", a["groups"]))
    if list(a["dilation"]) != [1, 1]:
        p += [("dilation", d) for d in (a["dilation"][:1] if a["dilation"][0] == a["dilation"][1] else a["dilation"])]
    return "Convolution", [("convolution_param", p)]


@writer("dense")
def _dense(layer: Layer) -> tuple[str, Fields]:
    return "InnerProduct", [("inner_product_param", [("num_output", layer.attrs["out_features"]),
                                                      ("bias_term", "bias" in layer.params)])]


@writer("batchnorm")
def _bn(layer: Layer) -> tuple[str, Fields]:
    p: Fields = [("eps", float(layer.attrs["eps"]))]
    if "caffe_use_global_stats" in layer.meta:
        p.append(("use_global_stats", bool(layer.meta["caffe_use_global_stats"])))
    return "BatchNorm", [("batch_norm_param", p)]


@writer("scale")
def _scale(layer: Layer) -> tuple[str, Fields]:
    return "Scale", [("scale_param", [("bias_term", "bias" in layer.params)])]


@writer("bias")
def _bias(layer: Layer) -> tuple[str, Fields]:
    return "Bias", []


@writer("prelu")
def _prelu(layer: Layer) -> tuple[str, Fields]:
    shared = tuple(layer.params["slope"].shape) == (1,) and layer.inputs[0].type.shape[1] != 1
    return "PReLU", [("prelu_param", [("channel_shared", True)])] if shared else []


@writer("relu", "leaky_relu")
def _relu(layer: Layer) -> tuple[str, Fields]:
    if layer.op == "relu":
        return "ReLU", []
    return "ReLU", [("relu_param", [("negative_slope", float(layer.attrs["alpha"]))])]


@writer("sigmoid", "tanh")
def _plain(layer: Layer) -> tuple[str, Fields]:
    return {"sigmoid": "Sigmoid", "tanh": "TanH"}[layer.op], []


@writer("clip")
def _clip(layer: Layer) -> tuple[str, Fields]:
    lo, hi = layer.attrs.get("min"), layer.attrs.get("max")
    return "Clip", [("clip_param", [("min", -math.inf if lo is None else float(lo)),
                                    ("max", math.inf if hi is None else float(hi))])]


@writer("power")
def _power(layer: Layer) -> tuple[str, Fields]:
    return "Power", [("power_param", [(k, float(layer.attrs[k])) for k in ("power", "scale", "shift")])]


@writer("dropout")
def _dropout(layer: Layer) -> tuple[str, Fields]:
    return "Dropout", [("dropout_param", [("dropout_ratio", float(layer.attrs["ratio"]))])]


@writer("softmax")
def _softmax(layer: Layer) -> tuple[str, Fields]:
    return "Softmax", [("softmax_param", [("axis", layer.attrs["axis"])])]


@writer("lrn")
def _lrn(layer: Layer) -> tuple[str, Fields]:
    a = layer.attrs
    region = Enum("ACROSS_CHANNELS" if a["region"] == "across" else "WITHIN_CHANNEL")
    return "LRN", [("lrn_param", [("local_size", a["size"]), ("alpha", float(a["alpha"])),
                                  ("beta", float(a["beta"])), ("k", float(a["k"])), ("norm_region", region)])]


@writer("max_pool", "avg_pool")
def _pool(layer: Layer) -> tuple[str, Fields]:
    a = layer.attrs
    if layer.op == "avg_pool" and not a.get("count_include_pad", True):
        raise layer.error("Caffe's AVE pooling counts the padding; count_include_pad=false cannot be written")
    p: Fields = [("pool", Enum("MAX" if layer.op == "max_pool" else "AVE"))]
    p += _hw("kernel_size", "kernel_h", "kernel_w", a["kernel"]) + _hw("stride", "stride_h", "stride_w", a["stride"])
    p += _hw("pad", "pad_h", "pad_w", _sym_pad(layer))
    if not a.get("ceil_mode", False):
        p.append(("round_mode", Enum("FLOOR")))      # Caffe's default is CEIL
    return "Pooling", [("pooling_param", p)]


@writer("global_avg_pool", "global_max_pool")
def _gpool(layer: Layer) -> tuple[str, Fields]:
    return "Pooling", [("pooling_param", [("pool", Enum("MAX" if layer.op == "global_max_pool" else "AVE")),
                                          ("global_pooling", True)])]


@writer("eltwise")
def _eltwise(layer: Layer) -> tuple[str, Fields]:
    p: Fields = [("operation", Enum(layer.attrs["mode"].upper()))]
    p += [("coeff", float(c)) for c in layer.attrs.get("coeffs") or []]
    return "Eltwise", [("eltwise_param", p)]


@writer("concat", "identity")
def _concat(layer: Layer) -> tuple[str, Fields]:
    return "Concat", [("concat_param", [("axis", layer.attrs.get("axis", 1))])]


@writer("flatten")
def _flatten(layer: Layer) -> tuple[str, Fields]:
    return "Flatten", [("flatten_param", [("axis", layer.attrs["axis"])])]


@writer("reshape")
def _reshape(layer: Layer) -> tuple[str, Fields]:
    return "Reshape", [("reshape_param", [("shape", [("dim", d) for d in layer.attrs["shape"]])])]


@writer("slice")
def _slice(layer: Layer) -> tuple[str, Fields]:
    return "Slice", [("slice_param", [("axis", layer.attrs["axis"])]
                      + [("slice_point", p) for p in layer.attrs["points"]])]


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
    fn = WRITERS.get(layer.op)
    if fn is None:
        raise layer.error(f"op '{layer.op}' has no Caffe layer; cannot write it as prototxt "
                          f"(writable: {', '.join(sorted(WRITERS))}, input)")
    type_, params = fn(layer)
    return ([("name", layer.name), ("type", type_)] + [("bottom", v.name) for v in layer.inputs]
            + [("top", v.name) for v in layer.outputs] + _param_specs(layer) + params)


def _check(graph: Graph) -> None:
    from cococ.ir.verify import infer_shapes
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


def to_prototxt(graph: Graph) -> str:
    """The graph as Caffe NetParameter text (deploy net; weights go in a separate file)."""
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
    text = to_prototxt(graph)
    path.write_text(text, encoding="utf-8")
    out = {"prototxt": path}
    params = [(l, k, p) for l in graph.layers for k, p in l.params.items()]
    if weights is None:
        weights = bool(params) and all(p.has_data for _, _, p in params)
    if weights and params:
        import numpy as np
        from safetensors.numpy import save_file
        arrays = {f"{l.name}/{k}": np.ascontiguousarray(p.dense(), dtype=np.float32) for l, k, p in params}
        out["weights"] = path.with_suffix(".safetensors")
        save_file(arrays, str(out["weights"]), metadata={"format": "cococ-weights", "net": path.name})
    return out
