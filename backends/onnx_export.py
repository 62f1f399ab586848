"""to_onnx: any IR graph to an ONNX model (opset 17) that onnx.checker accepts and onnxruntime runs.

So Netron and every ONNX tool can open what cococ made, pruned or compressed: compressed
params are written dense (Param.dense()). One lowering per IR op in `LOWER`; each returns
the ONNX nodes for one layer. The main node of a layer carries the layer's name; a layer's
module goes into the node's metadata (`cococ.module`, read back by the ONNX frontend) and its
doc_string, so import -> export -> import keeps names and modules.

Ops ONNX lacks are composed exactly: scale/bias as Mul/Add by [C,1,1] constants, eltwise
coeffs as Mul+Sum, power as Mul/Add/Pow, within-channel LRN as an AveragePool of x^2.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from cococ.ir.core import CococError, Graph, Layer, TensorType
from cococ.ir.verify import infer_shapes

OPSET = 17
IR_VERSION = 10  # node metadata_props need IR version 10; onnxruntime >= 1.17 reads it
MODULE_KEY = "cococ.module"
_ELEM = {"f32": TensorProto.FLOAT, "f16": TensorProto.FLOAT16, "f64": TensorProto.DOUBLE,
         "i64": TensorProto.INT64, "i32": TensorProto.INT32, "i16": TensorProto.INT16,
         "i8": TensorProto.INT8, "u8": TensorProto.UINT8, "bool": TensorProto.BOOL}


class _Builder:
    """Collects nodes and initializers with unique names for one export."""

    def __init__(self, graph: Graph):
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.taken = {v.name for v in graph.values()} | {l.name for l in graph.layers}
        self.layer: Layer | None = None
        self.types: dict[int, TensorType] = {}

    def fresh(self, base: str) -> str:
        name, i = base, 1
        while name in self.taken:
            name, i = f"{base}_{i}", i + 1
        self.taken.add(name)
        return name

    def const(self, base: str, array) -> str:
        name = self.fresh(f"{self.layer.name}.{base}")
        self.inits.append(numpy_helper.from_array(np.array(array, order="C"), name))  # keeps 0-d scalars
        return name

    def param(self, key: str, shape: tuple[int, ...] | None = None) -> str:
        a = np.asarray(self.layer.params[key].dense(), dtype=np.float32)
        return self.const(key, a if shape is None else a.reshape(shape))

    def node(self, op: str, inputs: list[str], outputs: list[str] | None = None, suffix: str | None = None,
             **attrs) -> str:
        """Add a node; the one without `suffix` is the layer's main node and takes its name."""
        l = self.layer
        name = l.name if suffix is None else self.fresh(f"{l.name}/{suffix}")
        outs = outputs or [self.fresh(f"{l.name}/{suffix or op}")]
        n = helper.make_node(op, inputs, outs, name=name, **attrs)
        if l.module is not None:
            n.doc_string = f"cococ module {l.module}"
            n.metadata_props.add(key=MODULE_KEY, value=l.module)
        self.nodes.append(n)
        return outs[0]


LOWER: dict[str, Callable[[_Builder, Layer, list[str], list[str]], None]] = {}


def lowering(*ops: str):
    def deco(fn):
        for o in ops:
            LOWER[o] = fn
        return fn
    return deco


def _chan(b: _Builder, l: Layer) -> tuple[int, ...]:
    """Shape that broadcasts a [C] param over axis 1 of the layer's input: (C, 1, ...)."""
    t = b.types[id(l.inputs[0])]
    return (t.shape[1],) + (1,) * (t.rank - 2)


def to_onnx(graph: Graph, opset: int = OPSET) -> onnx.ModelProto:
    """Export `graph` (not modified) to an ONNX ModelProto; raises CococError for ops without a lowering."""
    g = infer_shapes(graph.clone())  # fills attr defaults and types, on a copy
    missing = sorted({l.op for l in g.layers if l.op != "input" and l.op not in LOWER})
    if missing:
        raise CococError(f"no ONNX lowering for IR op{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
    b = _Builder(g)
    b.types = {id(v): v.type for v in g.values()}
    inputs = []
    for l in g.layers:
        if l.op == "input":
            inputs.append(_info(l.outputs[0].name, l.outputs[0].type))
            continue
        b.layer = l
        try:
            LOWER[l.op](b, l, [v.name for v in l.inputs], [v.name for v in l.outputs])
        except CococError as e:
            raise l.error(f"ONNX export: {e.message}") from None
    outputs = [_info(v.name, v.type) for v in g.outputs]
    if len({v.name for v in g.outputs}) != len(g.outputs):
        raise CococError("the graph returns one value twice, which ONNX cannot express")
    og = helper.make_graph(b.nodes, g.name, inputs, outputs, b.inits)
    model = helper.make_model(og, opset_imports=[helper.make_opsetid("", opset)], producer_name="cococ",
                              ir_version=IR_VERSION)
    if g.modules:
        model.metadata_props.add(key="cococ.modules", value=",".join(g.modules))
    return model


def _info(name: str, t: TensorType) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, _ELEM[t.dtype], list(t.shape))


# ---- lowerings -----------------------------------------------------------------------------------

@lowering("conv2d")
def _conv(b, l, x, y):
    a = l.attrs
    ins = [x[0], b.param("weight")] + ([b.param("bias")] if "bias" in l.params else [])
    b.node("Conv", ins, y, kernel_shape=a["kernel"], strides=a["stride"], pads=a["pad"],
           dilations=a["dilation"], group=a["groups"])


@lowering("dense")
def _dense(b, l, x, y):
    ins = [x[0], b.param("weight")] + ([b.param("bias")] if "bias" in l.params else [])
    b.node("Gemm", ins, y, transB=1)


@lowering("batchnorm")
def _bn(b, l, x, y):
    c = l.params["mean"].shape[0]
    scale = b.param("scale") if "scale" in l.params else b.const("scale", np.ones(c, np.float32))
    bias = b.param("bias") if "bias" in l.params else b.const("bias", np.zeros(c, np.float32))
    b.node("BatchNormalization", [x[0], scale, bias, b.param("mean"), b.param("var")], y,
           epsilon=float(l.attrs["eps"]))


@lowering("scale")
def _scale(b, l, x, y):
    if "bias" not in l.params:
        b.node("Mul", [x[0], b.param("scale", _chan(b, l))], y)
        return
    t = b.node("Mul", [x[0], b.param("scale", _chan(b, l))], suffix="mul")
    b.node("Add", [t, b.param("bias", _chan(b, l))], y)


@lowering("bias")
def _bias(b, l, x, y):
    b.node("Add", [x[0], b.param("bias", _chan(b, l))], y)


@lowering("relu", "sigmoid", "tanh", "identity")
def _simple(b, l, x, y):
    b.node({"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh", "identity": "Identity"}[l.op], x, y)


@lowering("leaky_relu")
def _leaky(b, l, x, y):
    b.node("LeakyRelu", x, y, alpha=float(l.attrs["alpha"]))


@lowering("prelu")
def _prelu(b, l, x, y):
    shared = l.params["slope"].shape == (1,)
    b.node("PRelu", [x[0], b.param("slope", (1,) if shared else _chan(b, l))], y)


@lowering("clip")
def _clip(b, l, x, y):
    bound = {k: b.const(k, np.float32(l.attrs[k])) if l.attrs.get(k) is not None else "" for k in ("min", "max")}
    ins = [x[0], bound["min"], bound["max"]]
    while ins[-1] == "":
        ins.pop()
    b.node("Clip", ins, y)


@lowering("max_pool", "avg_pool")
def _pool(b, l, x, y):
    a = l.attrs
    kw = dict(kernel_shape=a["kernel"], strides=a["stride"], pads=a["pad"], ceil_mode=int(a["ceil_mode"]))
    if l.op == "avg_pool":
        kw["count_include_pad"] = int(a["count_include_pad"])
    b.node("MaxPool" if l.op == "max_pool" else "AveragePool", x, y, **kw)


@lowering("global_avg_pool", "global_max_pool")
def _gpool(b, l, x, y):
    b.node("GlobalAveragePool" if l.op == "global_avg_pool" else "GlobalMaxPool", x, y)


@lowering("eltwise")
def _eltwise(b, l, x, y):
    mode, co = l.attrs["mode"], l.attrs.get("coeffs")
    if mode == "sum" and co is not None and any(c != 1 for c in co):
        x = [xi if c == 1 else b.node("Mul", [xi, b.const(f"coeff{i}", np.float32(c))], suffix=f"coeff{i}")
             for i, (xi, c) in enumerate(zip(x, co))]
    if mode == "prod":
        t = x[0]
        for i, xi in enumerate(x[1:], 1):
            t = b.node("Mul", [t, xi], y if i == len(x) - 1 else None, suffix=None if i == len(x) - 1 else f"mul{i}")
        return
    b.node("Sum" if mode == "sum" else "Max", x, y)


@lowering("concat")
def _concat(b, l, x, y):
    b.node("Concat", x, y, axis=int(l.attrs["axis"]))


@lowering("flatten", "reshape")
def _reshape(b, l, x, y):
    """IR flatten at axis k keeps rank k+1, ONNX Flatten is always 2-D; a Reshape to the inferred
    static shape says exactly what the IR means for both (batch included: shapes are static)."""
    if l.op == "flatten" and l.attrs["axis"] == 1 and b.types[id(l.inputs[0])].rank >= 2:
        b.node("Flatten", x, y, axis=1)
        return
    shape = np.asarray(b.types[id(l.outputs[0])].shape, dtype=np.int64)
    b.node("Reshape", [x[0], b.const("shape", shape)], y)


@lowering("softmax")
def _softmax(b, l, x, y):
    b.node("Softmax", x, y, axis=int(l.attrs["axis"]))


@lowering("dropout")
def _dropout(b, l, x, y):
    b.node("Dropout", [x[0], b.const("ratio", np.float32(l.attrs["ratio"]))], y)


@lowering("lrn")
def _lrn(b, l, x, y):
    a = l.attrs
    n = int(a["size"])
    if a["region"] == "across":
        b.node("LRN", x, y, size=n, alpha=float(a["alpha"]), beta=float(a["beta"]), bias=float(a["k"]))
        return
    # within: y = x * (k + alpha * mean_{n x n window, zero padded}(x^2)) ^ -beta
    pre = (n - 1) // 2
    sq = b.node("Mul", [x[0], x[0]], suffix="square")
    avg = b.node("AveragePool", [sq], suffix="window", kernel_shape=[n, n], strides=[1, 1],
                 pads=[pre, pre, n - 1 - pre, n - 1 - pre], count_include_pad=1)
    t = b.node("Mul", [avg, b.const("alpha", np.float32(a["alpha"]))], suffix="alpha")
    t = b.node("Add", [t, b.const("k", np.float32(a["k"]))], suffix="k")
    t = b.node("Pow", [t, b.const("neg_beta", np.float32(-a["beta"]))], suffix="pow")
    b.node("Mul", [x[0], t], y)


@lowering("slice")
def _slice(b, l, x, y):
    ax = int(l.attrs["axis"])
    n = b.types[id(l.inputs[0])].shape[ax]
    pts = [0, *l.attrs["points"], n]
    sizes = np.asarray([q - p for p, q in zip(pts, pts[1:])], dtype=np.int64)
    b.node("Split", [x[0], b.const("split", sizes)], y, axis=ax)


@lowering("power")
def _power(b, l, x, y):
    a = l.attrs
    t = x[0]
    steps = []
    if a["scale"] != 1:
        steps.append(("Mul", "scale", a["scale"]))
    if a["shift"] != 0:
        steps.append(("Add", "shift", a["shift"]))
    if a["power"] != 1:
        steps.append(("Pow", "power", a["power"]))
    if not steps:
        b.node("Identity", [t], y)
        return
    for i, (op, k, v) in enumerate(steps):
        last = i == len(steps) - 1
        t = b.node(op, [t, b.const(k, np.float32(v))], y if last else None, suffix=None if last else k)


# ---- Scalpel node pruning's mask (issue 6, ir/ops/mask.py): a transient gate, exported as Mul ----

@lowering("mask")
def _mask(b, l, x, y):
    g = (l.params["alpha"].dense() * l.params["beta"].dense()).astype(np.float32).reshape(_chan(b, l))
    b.node("Mul", [x[0], b.const("gate", g)], y)
