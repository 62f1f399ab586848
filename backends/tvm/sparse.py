"""x86: a dense (FC) layer with a csr / simd_group weight runs cococ's sparse matrix-vector kernel.

Without this the TVM lowering expands every weight to dense (te_ops `_dense_params`), and a
pruned model is exactly as fast as the unpruned one. Here, for a batch-1 FC layer whose
sparse form the measured break-even table (backends/sparse/choose.py, x86 rows of
docs/benchmarks/sparse-breakeven-x86.json) estimates faster than dense, the fused group
of the layer becomes two calls:

  1. `call_tir` of the f32 TIR kernel of the weight's format (backends/sparse/tir.py,
     specialised to the layer's sizes and stored count; `width`-lane vector loads for
     simd_group), with the format's arrays (A', IA', JA') as Relax constants and the input
     flattened (and zero-padded to a multiple of `width` when the columns are not);
  2. one TE kernel for the rest of the group: bias plus the fused epilogue (relu, ...),
     scheduled like every other elementwise kernel.

The kernel is hand-written loops, already "scheduled": it is marked so the x86 scheduler
leaves it alone. It is single-threaded (one row after another), where the dense GEMV is
parallel over output blocks. Everything else (batch > 1, cuda, `to_relax`) stays dense; a
layer kept dense gets a warning naming it.
"""
from __future__ import annotations

from tvm import relax, te, tirx

from cococ.backends.sparse import tir
from cococ.backends.sparse.choose import Choice, estimate, kernel_sparsity
from cococ.ir.core import Layer
from cococ.ir.formats import cols_padded, matrix_shape

TARGET = "x86"
TVM_INDEX = {"int16": "int16", "int32": "int32"}


def choice(layer: Layer) -> Choice | None:
    """The kernel of a dense layer with a compressed weight (None: the weight is dense)."""
    p = layer.params.get("weight")
    if layer.op != "dense" or p is None or p.format == "dense":
        return None
    n = layer.inputs[0].type.shape[0]
    if n != 1:
        return Choice(layer.name, p.format, "dense", kernel_sparsity(p), None, "not compared",
                      reason=f"layer {layer.name}: {p.format} weight at batch {n}: the sparse kernels are "
                             "matrix-vector (batch 1); kept dense")
    if p.type.dtype != "f32":
        return Choice(layer.name, p.format, "dense", kernel_sparsity(p), None, "not compared",
                      reason=f"layer {layer.name}: the x86 sparse kernels are f32, the weight is {p.type.dtype}; "
                             "kept dense")
    return estimate(layer.name, p, TARGET)


def choices(graph) -> list[Choice]:
    return [c for c in (choice(l) for l in graph.layers) if c is not None]


def _kernel(p):
    rows, cols = matrix_shape(p.shape)
    a = p.arrays
    index = TVM_INDEX[str(a["indices"].dtype)]
    if p.format == "csr":
        return tir.csr_mv_f32(rows, cols, a["values"].size, index)
    return tir.simd_group_mv_f32(rows, cols_padded(p), a["indices"].size, int(p.attrs["width"]), index)


def emit(bb: relax.BlockBuilder, group: list[Layer], env: dict, ctx, lowerings, name: str) -> None:
    """Emit the group anchored at a sparse dense layer (see the module docstring)."""
    import numpy as np
    layer = group[0]
    p = layer.params["weight"]
    rows, cols = matrix_shape(p.shape)
    cp = cols_padded(p)
    x = bb.emit(relax.op.reshape(env[id(layer.inputs[0])], (cols,)))
    if cp != cols:
        x = bb.emit_te(lambda t: te.compute((cp,), lambda j: tirx.if_then_else(j < cols, t[j], tirx.const(0, "float32")),
                                             name="pad"), x, primfunc_name_hint=f"{name}_pad")
    consts = [relax.const(np.ascontiguousarray(a) if a.size else np.zeros(1, a.dtype))
              for a in (p.arrays[k] for k in ("values", "indptr", "indices"))]
    fname = f"{name}_{p.format}_mv"
    prim = _kernel(p).with_attr("tirx.is_scheduled", True).with_attr("global_symbol", fname)
    gv = bb.add_func(prim, fname)
    mv = bb.emit(relax.call_tir(gv, consts + [x], relax.TensorType([rows], "float32")))

    inside = {id(v) for l in group for v in l.outputs}
    ext = []
    for l in group[1:]:
        for v in l.inputs:
            if id(v) not in inside and all(v is not e for e in ext):
                ext.append(v)
    bias = [relax.const(layer.params["bias"].dense())] if "bias" in layer.params else []
    rest = [{k: relax.const(a) for k, a in lowerings[l.op].params(l, ctx).items()} for l in group[1:]]

    def fn(y, bs, ins, pss):
        out = te.compute((1, rows), lambda i, j: y[j] + bs[0][j] if bs else y[j], name="dense_out")
        tenv = {id(v): t for v, t in zip(ext, ins)}
        tenv[id(layer.outputs[0])] = out
        for l, ps in zip(group[1:], pss):
            for v, t in zip(l.outputs, lowerings[l.op].compute(l, [tenv[id(v)] for v in l.inputs], ps, ctx)):
                tenv[id(v)] = t
        return tenv[id(group[-1].outputs[0])]

    env[id(group[-1].outputs[0])] = bb.emit_te(fn, mv, bias, [env[id(v)] for v in ext], rest,
                                               primfunc_name_hint=f"{name}_epilogue")
