"""to_onnx: any IR graph to an ONNX model (opset 17) that onnx.checker accepts and onnxruntime runs.

So Netron and every ONNX tool can open what cococ made, pruned or compressed: compressed
params are written dense (Param.dense()). Each op's ONNX rule sits beside the op in ir/ops
(`@rule(Op, "onnx")`, called `fn(b, layer, xs, ys)` with the `Builder` b of this module) and adds
the ONNX nodes of one layer. The main node of a layer carries the layer's name; a layer's
module goes into the node's metadata (`cococ.module`, read back by the ONNX frontend) and its
doc_string, so import -> export -> import keeps names and modules.

Ops ONNX lacks are composed exactly: scale/bias as Mul/Add by [C,1,1] constants, eltwise
coeffs as Mul+Sum, power as Mul/Add/Pow, within-channel LRN as an AveragePool of x^2.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from cococ.ir.core import CococError, Graph, Layer, TensorType, Value
from cococ.ir.registry import rule_of
from cococ.ir.verify import infer_shapes

OPSET = 17
IR_VERSION = 10  # node metadata_props need IR version 10; onnxruntime >= 1.17 reads it
MODULE_KEY = "cococ.module"
_ELEM = {"f32": TensorProto.FLOAT, "f16": TensorProto.FLOAT16, "f64": TensorProto.DOUBLE,
         "i64": TensorProto.INT64, "i32": TensorProto.INT32, "i16": TensorProto.INT16,
         "i8": TensorProto.INT8, "u8": TensorProto.UINT8, "bool": TensorProto.BOOL}


class Builder:
    """Collects nodes and initializers with unique names for one export; the ONNX rules'
    only way to the output, so that they need no onnx import."""

    def __init__(self, graph: Graph):
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.taken = {v.name for v in graph.values()} | {l.name for l in graph.layers}
        self.layer: Layer | None = None
        self.types: dict[int, TensorType] = {id(v): v.type for v in graph.values()}

    def fresh(self, base: str) -> str:
        name, i = base, 1
        while name in self.taken:
            name, i = f"{base}_{i}", i + 1
        self.taken.add(name)
        return name

    def type_of(self, value: Value) -> TensorType:
        """The inferred type of an IR value of the graph being exported."""
        return self.types[id(value)]

    def chan_shape(self) -> tuple[int, ...]:
        """Shape that broadcasts a [C] param over axis 1 of the layer's input: (C, 1, ...)."""
        t = self.type_of(self.layer.inputs[0])
        return (t.shape[1],) + (1,) * (t.rank - 2)

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


def to_onnx(graph: Graph, opset: int = OPSET) -> onnx.ModelProto:
    """Export `graph` (not modified) to an ONNX ModelProto; raises CococError for ops without a lowering."""
    g = infer_shapes(graph.clone())  # fills attr defaults and types, on a copy
    missing = sorted({l.op for l in g.layers if l.op != "input" and rule_of(l.op, "onnx") is None})
    if missing:
        raise CococError(f"no ONNX lowering for IR op{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
    b = Builder(g)
    inputs = []
    for l in g.layers:
        if l.op == "input":
            inputs.append(_info(l.outputs[0].name, l.outputs[0].type))
            continue
        b.layer = l
        try:
            rule_of(l.op, "onnx")(b, l, [v.name for v in l.inputs], [v.name for v in l.outputs])
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
