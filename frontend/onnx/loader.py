"""load_onnx: an ONNX model (file, bytes or ModelProto) to a cococ Graph.

Steps: parse (any protobuf or checker failure becomes a CococError; an IR < 4 file that
leaves initializers out of its graph inputs is a warning, as onnxruntime runs it), fix a
symbolic batch dim to 1, run onnx's shape inference (used to cross-check every layer's shape),
turn initializers into constants, then walk the nodes in order: a node over constants only is
folded (Ctx.fold), any other goes through the converter table. A node that cannot be imported is recorded and its outputs poisoned, so the walk continues
and the user sees every unsupported node in one error instead of fixing them one by one.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import onnx
from onnx import helper

from cococ.frontend.onnx import convert_elementwise, convert_nn, convert_tensor  # noqa: F401 (register)
from cococ.frontend.onnx.context import SMALL_CONST, Ctx, NodeError, converters, tensor_to_array
from cococ.ir.core import CococError, Graph
from cococ.ir.memory import check_memory

MIN_OPSET = 6  # the ONNX backend test data is opset 6; cococ is tested on 6 and 9..21
MODULE_KEY = "cococ.module"  # node metadata written by cococ's exporter


def load_onnx(path_or_model) -> Graph:
    """Import an ONNX model into the layer IR; raises CococError on anything it cannot import."""
    model, where = _read(path_or_model)
    try:
        graph = _convert(model)
    except UnicodeDecodeError as e:  # a name in a damaged file: protobuf decodes it only when read
        raise CococError(f"not a readable ONNX model ({type(e).__name__}: {_short(e)})", path=where) from None
    except CococError as e:
        if where and not e.path:
            e.path = where
            e.args = (str(e),)
        raise
    graph.source_path = where
    return graph


def _read(src) -> tuple[onnx.ModelProto, str | None]:
    where = None
    try:
        if isinstance(src, onnx.ModelProto):
            model = src
        elif isinstance(src, (bytes, bytearray)):
            model = onnx.load_model_from_string(bytes(src))
        else:
            where = os.fspath(src)
            if not Path(where).is_file():
                raise CococError("no such file", path=where)
            model = onnx.load(where)
    except CococError:
        raise
    except Exception as e:  # DecodeError, external-data errors, RecursionError, ...
        raise CococError(f"not a readable ONNX model ({type(e).__name__}: {_short(e)})", path=where) from None
    try:
        model = _list_initializers(model, where)   # a name that is not UTF-8 fails here (fuzzed file)
        onnx.checker.check_model(model)
    except Exception as e:
        raise CococError(f"invalid ONNX model: {_short(e)}", path=where) from None
    check_memory(sum(_tensor_bytes(t) for t in model.graph.initializer), f"{where or 'the model'}: its weights")
    return model, where


def _list_initializers(model: onnx.ModelProto, where: str | None) -> onnx.ModelProto:
    """IR version 3 and older require every initializer to be a graph input too; old exporters
    (and files with a stale ir_version) leave some out, which onnx's checker rejects and
    onnxruntime runs. A copy that lists them is the model the exporter meant: a warning, not an error."""
    if model.ir_version >= 4:
        return model
    listed = {vi.name for vi in model.graph.input}
    unlisted = [t for t in model.graph.initializer if t.name not in listed]
    if not unlisted:
        return model
    names = ", ".join(f"'{t.name}'" for t in unlisted[:3]) + (f" and {len(unlisted) - 3} more" if len(unlisted) > 3 else "")
    warnings.warn(f"{where or 'the model'}: ONNX IR version {model.ir_version} lists every initializer as a graph "
                  f"input, but {names} {'is' if len(unlisted) == 1 else 'are'} not; imported as weights, as "
                  "onnxruntime does", stacklevel=4)
    model = onnx.ModelProto.FromString(model.SerializeToString())  # never edit the caller's model
    model.graph.input.extend(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in unlisted)
    return model


def _tensor_bytes(t: onnx.TensorProto) -> int:
    try:
        itemsize = np.dtype(helper.tensor_dtype_to_np_dtype(t.data_type)).itemsize
    except Exception:  # an unknown element type: tensor_to_array names it
        itemsize = 1
    return int(np.prod(list(t.dims), dtype=np.int64)) * itemsize


def _short(e: BaseException, limit: int = 300) -> str:
    s = " ".join(str(e).split())
    return s if len(s) <= limit else s[:limit] + "..."


def _opset(model: onnx.ModelProto) -> int:
    versions = [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")]
    if not versions:
        raise CococError("the model imports no default-domain opset")
    v = versions[0]
    if v < MIN_OPSET:
        raise CococError(f"opset {v} is older than the oldest supported ({MIN_OPSET}); "
                         "upgrade it with onnx.version_converter.convert_version(model, 13)")
    return v


def _skeleton(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of the model without the data of its big initializers (each a typed graph input
    instead), for the batch fix and shape inference: copying and serializing a VGG's 500 MB of
    weights for them took longer than the import. The small ones (shapes, axes, pads) stay data."""
    g = model.graph
    sk = onnx.ModelProto(ir_version=model.ir_version)
    sk.opset_import.extend(model.opset_import)
    sk.functions.extend(model.functions)
    sk.graph.name = g.name
    for field in ("node", "input", "output", "value_info"):
        getattr(sk.graph, field).extend(getattr(g, field))
    listed = {vi.name for vi in g.input}
    for t in g.initializer:
        if int(np.prod(list(t.dims), dtype=np.int64)) <= SMALL_CONST:
            sk.graph.initializer.append(t)
        elif t.name not in listed:
            sk.graph.input.append(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
    return sk


def _fix_inputs(model: onnx.ModelProto, inits: set[str]) -> list[tuple[str, tuple[int, ...]]]:
    """Graph inputs that are not initializers, with a symbolic or unknown batch dim set to 1."""
    out = []
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        tt = vi.type.tensor_type
        if not vi.type.HasField("tensor_type") or not tt.HasField("shape"):
            raise CococError(f"graph input '{vi.name}' has no tensor shape; give it a static shape")
        if tt.elem_type != onnx.TensorProto.FLOAT:
            raise CococError(f"graph input '{vi.name}' has element type "
                             f"{onnx.TensorProto.DataType.Name(tt.elem_type) if tt.elem_type in onnx.TensorProto.DataType.values() else tt.elem_type}, "
                             "which is not supported (cococ imports float32 inputs only)")
        shape = []
        for i, d in enumerate(tt.shape.dim):
            if d.HasField("dim_value") and d.dim_value > 0:
                shape.append(d.dim_value)
            elif i == 0:  # symbolic or unknown batch: cococ compiles for batch 1
                d.Clear()
                d.dim_value = 1
                shape.append(1)
            else:
                raise CococError(f"graph input '{vi.name}' has a symbolic or unknown dim at axis {i} "
                                 f"('{d.dim_param}'), which is not supported: cococ needs static shapes except the batch")
        out.append((vi.name, tuple(shape)))
    return out


def _onnx_shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    try:
        inferred = onnx.shape_inference.infer_shapes(model, check_type=False, strict_mode=False)
    except Exception as e:
        raise CococError(f"ONNX shape inference failed: {_short(e)}") from None
    shapes = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.output):
        tt = vi.type.tensor_type
        if vi.type.HasField("tensor_type") and tt.HasField("shape") and all(
                d.HasField("dim_value") for d in tt.shape.dim):
            shapes[vi.name] = tuple(d.dim_value for d in tt.shape.dim)
    return shapes


def _convert(model: onnx.ModelProto) -> Graph:
    opset = _opset(model)
    skeleton = _skeleton(model)  # the batch fix edits it, never the caller's model
    inputs = _fix_inputs(skeleton, {t.name for t in model.graph.initializer})
    ctx = Ctx(model, opset, _onnx_shapes(skeleton))
    for name, shape in inputs:
        ctx.add_input(name, shape)
    for t in model.graph.initializer:
        ctx.set_const(t.name, tensor_to_array(t))

    table = converters()
    missing: dict[int, str] = {}  # every node of an op type we lack, even downstream, unless it folds
    for i, node in enumerate(model.graph.node):
        if node.domain not in ("", "ai.onnx") or node.op_type not in table:
            dom = f"{node.domain}." if node.domain not in ("", "ai.onnx") else ""
            missing[i] = f"{_node_label(node, i)} ({dom}{node.op_type}): op type not supported"
    errors: list[tuple[int, str]] = []
    poisoned: set[str] = set()
    for i, node in enumerate(model.graph.node):
        fn = table.get(node.op_type) if node.domain in ("", "ai.onnx") else None
        if any(x in poisoned for x in node.input):
            poisoned.update(o for o in node.output if o)
            continue
        ctx.node, ctx.node_name = node, _layer_name(ctx, node, i)
        ctx.module = next((p.value for p in node.metadata_props if p.key == MODULE_KEY), None)
        try:
            if _folded(ctx, node):
                missing.pop(i, None)
                continue
            if fn is None:
                poisoned.update(o for o in node.output if o)
                continue
            fn(ctx, node)
        except CococError as e:
            errors.append((i, f"{_node_label(node, i)} ({node.op_type}): {e.message}"))
            poisoned.update(o for o in node.output if o)
            missing.pop(i, None)
        except Exception as e:  # malformed attributes of a fuzzed or hand-made file
            errors.append((i, f"{_node_label(node, i)} ({node.op_type}): malformed node "
                              f"({type(e).__name__}: {_short(e, 120)})"))
            poisoned.update(o for o in node.output if o)
            missing.pop(i, None)
    errors += missing.items()
    if errors:
        raise CococError(f"cannot import {len(errors)} ONNX node{'s' if len(errors) > 1 else ''}: "
                         + "; ".join(msg for _, msg in sorted(errors)))
    for o in model.graph.output:
        if o.name in poisoned:
            continue
        try:
            ctx.graph.outputs.append(ctx.value(o.name))
        except NodeError as e:
            raise CococError(f"graph output '{o.name}': {e.message}") from None
    if not ctx.graph.outputs:
        raise CococError("the model has no outputs")
    _check_modules_contiguous(ctx.graph)
    return ctx.graph


def _folded(ctx: Ctx, node: onnx.NodeProto) -> bool:
    """Fold a node whose inputs are all constants (Ctx.fold); False leaves it to its converter
    (or to the op-type-not-supported error), also where onnx.reference has no implementation."""
    if not ctx.foldable(node):
        return False
    try:
        ctx.fold(node)
    except NotImplementedError:
        return False
    return True


def _node_label(node: onnx.NodeProto, i: int) -> str:
    return f"node '{node.name}'" if node.name else f"node #{i}"


def _layer_name(ctx: Ctx, node: onnx.NodeProto, i: int) -> str:
    base = node.name or (node.output[0] if node.output and node.output[0] else f"{node.op_type.lower()}_{i}")
    name, k = base, 1
    while name in ctx.layer_names:
        name, k = f"{base}_{k}", k + 1
    return name


def _check_modules_contiguous(graph: Graph) -> None:
    """Drop module tags that are not contiguous (a hand-edited file): the IR requires contiguity."""
    seen, last = set(), None
    for layer in graph.layers:
        m = layer.module
        if m is not None and m != last and m in seen:
            for l in graph.layers:
                l.module = None
            graph.modules = []
            return
        if m is not None:
            seen.add(m)
        last = m
