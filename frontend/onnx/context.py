"""The converter table and the state converters share while one ONNX graph is imported.

One converter per ONNX op type, registered with `@converter("Conv", ...)` (TVM's frontend
layout, split by op family into `convert_*.py`). A converter reads the node through `Ctx`:
`ctx.const(name)` for weights (initializers, Constant nodes and folded constants),
`ctx.value(name)` for activations, `ctx.emit(...)` to add IR layers. Each emitted layer is
shape-checked at once with the op registry, so a mismatch names the ONNX node that caused it
rather than surfacing later in the verifier. An op that an ONNX op type maps to 1:1 needs no
converter here: it declares `onnx_import` (and, for attributes, an onnx-import rule) on its
class, and `converters()` adds it to the table.

Converters raise `ctx.unsupported(...)` for an op or a configuration the IR cannot express;
the loader collects these over the whole graph and reports every such node in one error.

A node whose inputs are all constants is folded before any converter sees it (`Ctx.fold`, with
onnx's reference implementation of the op): exporters compute pads, shapes and indices with
subgraphs of ConstantOfShape, Slice, Concat, Cast ... over constants, and these end as plain
constants whatever the op. Weights are never limited in size (they are already in the file);
folding is: a folded constant may not grow much beyond its inputs (a mutated file's
ConstantOfShape of 10^12 elements), and what it allocates asks the memory guard first.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import onnx
from onnx import helper, numpy_helper, shape_inference
from onnx.reference import ReferenceEvaluator

from cococ.ir.core import CococError, Graph, Layer, Param, TensorType, Value
from cococ.ir.memory import check_memory
from cococ.ir.registry import Op, all_ops, rule_of
from cococ.ir.verify import check_layer

CONVERTERS: dict[str, Callable[["Ctx", onnx.NodeProto], None]] = {}

MAX_FOLD_ELEMENTS = 1 << 24  # a folded constant may be this big, or as big as its inputs together
SMALL_CONST = 1024  # constants up to this size go to a folded node's shape inference as data
NOT_FOLDED = {"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike",
              "Bernoulli", "Multinomial"}  # a new value on every run: not a constant


def converter(*op_types: str):
    """Register a converter for one or more ONNX op types (default domain)."""
    def deco(fn):
        for t in op_types:
            CONVERTERS[t] = fn
        return fn
    return deco


def converters() -> dict[str, Callable[["Ctx", onnx.NodeProto], None]]:
    """The converter of every ONNX op type: the hand-written ones above, and for the rest each
    op that declares the ONNX types it imports 1:1 from (`Op.onnx_import`, ir/registry.py), so
    a new op imports without an edit here."""
    table = {t: imported_as(op) for op in all_ops().values() for t in op.onnx_import}
    table.update(CONVERTERS)
    return table


def imported_as(op: type[Op]) -> Callable[["Ctx", onnx.NodeProto], None]:
    """The converter of a 1:1 op: the node's inputs are the layer's, its first output the layer's,
    its attributes mapped by the op's onnx-import rule (none without one)."""
    to_attrs = rule_of(op, "onnx-import")

    def convert(ctx: "Ctx", node: onnx.NodeProto) -> None:
        attrs = to_attrs(ctx.attrs(node), ctx) if to_attrs is not None else {}
        ctx.emit(op.name, [ctx.value(i) for i in node.input if i], attrs, out=node.output[0])
    return convert


class NodeError(CococError):
    """One node that cannot be imported; the loader gathers these into one CococError."""


class PendingPad:
    """A zero `Pad` not yet emitted: it folds into the padding of the conv or pool that reads it."""

    def __init__(self, source: str, pads: list[int], node: str):
        self.source, self.pads, self.node = source, pads, node  # pads = [top, left, bottom, right]


class Ctx:
    def __init__(self, model: onnx.ModelProto, opset: int, onnx_shapes: dict[str, tuple[int, ...]]):
        self.model = model
        self.opset = opset
        self.graph = Graph(model.graph.name or "main")
        self.consts: dict[str, np.ndarray] = {}
        self.values: dict[str, Value] = {}
        self.pads: dict[str, PendingPad] = {}
        self.onnx_shapes = onnx_shapes  # from onnx.shape_inference, fully static ones only
        self.uses: dict[str, int] = {}
        for n in model.graph.node:
            for i in n.input:
                self.uses[i] = self.uses.get(i, 0) + 1
        for o in model.graph.output:
            self.uses[o.name] = self.uses.get(o.name, 0) + 1
        self.layer_names: set[str] = set()
        self.value_names: set[str] = set()
        self.node: onnx.NodeProto | None = None
        self.node_name = ""
        self.module: str | None = None

    # -- reading the current node -------------------------------------------------------------
    def unsupported(self, message: str) -> NodeError:
        return NodeError(message)

    def attrs(self, node: onnx.NodeProto) -> dict[str, Any]:
        out = {}
        for a in node.attribute:
            v = helper.get_attribute_value(a)
            if isinstance(v, bytes):
                v = v.decode("utf-8", "replace")
            elif isinstance(v, list):
                v = [x.decode("utf-8", "replace") if isinstance(x, bytes) else x for x in v]
            out[a.name] = v
        return out

    def input(self, node: onnx.NodeProto, i: int) -> str:
        """Name of input i, or "" when absent (ONNX's optional inputs)."""
        return node.input[i] if i < len(node.input) else ""

    def is_const(self, name: str) -> bool:
        return name in self.consts

    def const(self, name: str, what: str = "this input") -> np.ndarray:
        if name in self.consts:
            return self.consts[name]
        raise self.unsupported(f"{what} ('{name}') is not a constant, which is not supported: "
                               "cococ keeps weights as layer params (initializers or Constant nodes)")

    def optional_const(self, node, i: int, what: str) -> np.ndarray | None:
        name = self.input(node, i)
        return None if name == "" else self.const(name, what)

    def value(self, name: str) -> Value:
        if name in self.values:
            return self.values[name]
        if name in self.pads:
            raise self.unsupported(f"reads the output of Pad '{self.pads[name].node}': a standalone Pad is not "
                                   "supported (a zero Pad folds only into the padding of a Conv or an "
                                   "AveragePool)")
        if name in self.consts:
            raise self.unsupported(f"input '{name}' is a constant where the IR needs an activation, which is not supported")
        raise self.unsupported(f"input '{name}' is not computed by any earlier node")

    def type(self, name: str) -> TensorType:
        return self.value(name).type

    def shape(self, name: str) -> tuple[int, ...]:
        """Static shape of an activation or a constant."""
        if name in self.consts:
            return tuple(self.consts[name].shape)
        return self.type(name).shape

    def set_const(self, name: str, array: np.ndarray) -> None:
        """Bind a constant. Outside a node (an initializer) or from a node without inputs (a
        Constant) it is data from the file, of any size; a folded one is refused when it grows."""
        array = np.asarray(array)
        limit = self.fold_limit(self.node) if self.node is not None and len(self.node.input) else None
        if limit is not None and array.size > limit:
            raise self.unsupported(f"constant folding would make '{name}' of {array.size} elements from "
                                   f"inputs of {self.const_input_size(self.node)} (a folded constant may have "
                                   f"{MAX_FOLD_ELEMENTS} or as many as its inputs)")
        self.consts[name] = array

    def const_input_size(self, node: onnx.NodeProto) -> int:
        return sum(self.consts[i].size for i in node.input if i in self.consts)

    def fold_limit(self, node: onnx.NodeProto) -> int:
        """The most elements a constant folded from `node` may have: growth, not size, is refused."""
        return max(MAX_FOLD_ELEMENTS, self.const_input_size(node))

    # -- constant folding ---------------------------------------------------------------------
    def foldable(self, node: onnx.NodeProto) -> bool:
        """A default-domain node of a deterministic op, without subgraphs, whose inputs are all
        constants (at least one: a Constant node has its converter)."""
        names = [i for i in node.input if i]
        return (bool(names) and all(i in self.consts for i in names) and node.domain in ("", "ai.onnx")
                and node.op_type not in NOT_FOLDED
                and not any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
                            for a in node.attribute))

    def fold(self, node: onnx.NodeProto) -> None:
        """Evaluate a foldable node with onnx.reference and bind its outputs as constants.

        Raises NotImplementedError where the reference implementation has no such op (or opset
        version), NodeError where the result would be too big or evaluation fails. Its output
        shapes are inferred first, with the small inputs as data, so that a node that would grow
        past `fold_limit` is refused before anything is allocated."""
        names = list(dict.fromkeys(i for i in node.input if i))
        small = [n for n in names if self.consts[n].size <= SMALL_CONST]
        big = [n for n in names if n not in small]
        model = helper.make_model(
            helper.make_graph([node], "fold", [self._value_info(n) for n in big],
                              [helper.make_value_info(o, onnx.TypeProto()) for o in node.output if o],
                              [numpy_helper.from_array(np.asarray(self.consts[n]), n) for n in small]),
            opset_imports=list(self.model.opset_import), ir_version=max(self.model.ir_version, 4))
        self._check_fold_size(node, model)
        try:
            evaluator = ReferenceEvaluator(model)
        except NotImplementedError:
            raise
        except Exception as e:
            raise NotImplementedError(str(e)) from None
        try:
            results = evaluator.run(None, {n: self.consts[n] for n in big})
        except Exception as e:  # the node's own data makes it invalid (a bad reshape, an index out of range)
            raise self.unsupported(f"constant folding failed ({type(e).__name__}: {' '.join(str(e).split())[:200]})") from None
        for o, r in zip([o for o in node.output if o], results):
            self.set_const(o, r)

    def _value_info(self, name: str) -> onnx.ValueInfoProto:
        a = np.asarray(self.consts[name])
        return helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)

    def _check_fold_size(self, node: onnx.NodeProto, model: onnx.ModelProto) -> None:
        try:
            inferred = shape_inference.infer_shapes(model, check_type=False, strict_mode=False)
        except Exception:  # evaluation will say what is wrong
            return
        limit = self.fold_limit(node)
        for vi in inferred.graph.output:
            tt = vi.type.tensor_type
            if not (tt.HasField("shape") and all(d.HasField("dim_value") for d in tt.shape.dim)):
                continue
            size = int(np.prod([d.dim_value for d in tt.shape.dim], dtype=np.int64))
            if size > limit:
                raise self.unsupported(f"constant folding would make '{vi.name}' of {size} elements from inputs "
                                       f"of {self.const_input_size(node)} (a folded constant may have "
                                       f"{MAX_FOLD_ELEMENTS} or as many as its inputs)")
            itemsize = np.dtype(helper.tensor_dtype_to_np_dtype(tt.elem_type)).itemsize if tt.elem_type else 8
            check_memory(size * itemsize, f"constant folding of '{vi.name}'")

    def only_use(self, name: str) -> bool:
        return self.uses.get(name, 0) == 1

    # -- writing IR ---------------------------------------------------------------------------
    def fresh_value_name(self, base: str) -> str:
        name, i = base, 1
        while name in self.value_names or name in self.values or name in self.consts:
            name, i = f"{base}_{i}", i + 1
        return name

    def emit(self, op: str, inputs: list[Value], attrs: dict | None = None, params: dict | None = None,
             out: str | None = None, suffix: str | None = None) -> Value:
        """Add one IR layer for the current node and return its output value.

        The first layer of a node takes the node's name; extra ones get `name/suffix`. `out` is
        the ONNX output it computes (bound for later nodes); None makes an internal value.
        """
        return self.emit_multi(op, inputs, attrs, params, [out], suffix)[0]

    def emit_multi(self, op: str, inputs: list[Value], attrs: dict | None = None, params: dict | None = None,
                   outs: list[str | None] = (None,), suffix: str | None = None) -> list[Value]:
        base = self.node_name if suffix is None else f"{self.node_name}/{suffix}"
        name, i = base, 1
        while name in self.layer_names:
            name, i = f"{base}_{i}", i + 1
        vs = [Value(o if o is not None else self.fresh_value_name(name if len(outs) == 1 else f"{name}_{k}"))
              for k, o in enumerate(outs)]
        ps = {k: Param.from_array(np.ascontiguousarray(a, dtype=np.float32)) for k, a in (params or {}).items()}
        layer = Layer(op, name, inputs, vs, dict(attrs or {}), ps, module=self.module)
        try:
            types = check_layer(layer)
        except CococError as e:
            raise self.unsupported(f"as IR {op}: {e.message}") from None
        for v, t, o in zip(vs, types, outs):
            v.type = t
            want = self.onnx_shapes.get(o) if o is not None else None
            if want is not None and want != t.shape:
                raise self.unsupported(f"IR {op} gives shape {list(t.shape)} where ONNX shape inference "
                                       f"says {list(want)} (semantics differ; please report)")
        for v, o in zip(vs, outs):
            if o is not None:
                self.values[o] = v
            self.value_names.add(v.name)
        self.layer_names.add(name)
        self.graph.layers.append(layer)
        if self.module is not None and self.module not in self.graph.modules:
            self.graph.modules.append(self.module)
        return vs

    def add_input(self, name: str, shape: tuple[int, ...]) -> None:
        v = Value(name, TensorType(shape, "f32"))
        self.graph.layers.append(Layer("input", name, [], [v], {"shape": list(shape), "dtype": "f32"}))
        self.layer_names.add(name)
        self.value_names.add(name)
        self.values[name] = v

    def bind(self, onnx_name: str, value: Value) -> None:
        """Make an ONNX output name stand for an existing IR value (no layer needed)."""
        self.values[onnx_name] = value


def tensor_to_array(t: onnx.TensorProto) -> np.ndarray:
    try:
        return numpy_helper.to_array(t)
    except Exception as e:  # malformed raw_data, external data not loaded, unknown dtype
        raise NodeError(f"cannot read tensor '{t.name}': {e}") from None


def as_ints(a) -> list[int]:
    return [int(x) for x in np.asarray(a).reshape(-1)]


def channel_vector(ctx: Ctx, c: np.ndarray, x_shape: tuple[int, ...], what: str,
                   align_axis: int | None = None) -> np.ndarray:
    """`c` as a [C] vector when broadcasting it against x (NC...) varies along axis 1 only.

    numpy (multidirectional) broadcasting aligns trailing dims; `align_axis` gives the legacy
    (opset < 7) `broadcast=1, axis=k` alignment that starts at dim k. A scalar becomes C copies.
    """
    c = np.asarray(c, dtype=np.float32)
    r = len(x_shape)
    if r < 2:
        raise ctx.unsupported(f"{what}: an activation without a channel axis (shape {list(x_shape)}) is not supported")
    C = x_shape[1]
    if c.size == 1:
        return np.full(C, c.reshape(-1)[0], dtype=np.float32)
    if align_axis is not None:
        if align_axis < 0:
            align_axis += r
        cs = (1,) * align_axis + c.shape + (1,) * max(0, r - align_axis - c.ndim)
    else:
        cs = (1,) * (r - c.ndim) + c.shape
    if len(cs) != r or any(d != 1 for i, d in enumerate(cs) if i != 1) or cs[1] not in (1, C):
        raise ctx.unsupported(f"{what}: constant of shape {list(c.shape)} is not per-channel or scalar for an "
                              f"activation of shape {list(x_shape)}, which is not supported (the IR has per-channel "
                              "bias/scale only)")
    return np.broadcast_to(c.reshape(cs), (1, C) + (1,) * (r - 2)).reshape(C).copy()
