"""`cococ.to_relax(graph) -> tvm.IRModule`: the graph handed to another TVM-based compiler.

The module is what cococ's own build starts from, before any target schedule:
  - `main(<graph inputs, NCHW>)` returns the graph output (or a tuple, in `graph.outputs` order);
  - one `R.call_tir` per fused group of layers (conv/dense + their bias/batchnorm/residual
    add/activation epilogue) to an unscheduled TE-generated PrimFunc named `<op>_<layer>`;
    flatten/reshape are `R.reshape`; identity/dropout disappear;
  - weights are bound as Relax constants (`bind_params=True`, the default), batchnorm already
    folded into one multiply-add per channel. With `bind_params=False` the weights are instead
    trailing parameters of `main` and the function returns `(mod, params)` where `params` maps
    each parameter name to its numpy array, for callers that want to manage weights themselves
    (e.g. `relax.transform.BindParams("main", params)` binds them back).
Weights are unpacked (OIHW) unless `oc_block` > 1 asks for cococ's x86 packing.
Any relax pipeline can take the module, e.g. `relax.build(mod, target)` after scheduling
(dlight on GPUs) or MetaSchedule (`tvm.s_tir.meta_schedule.relax_integration.tune_relax`).
"""
from __future__ import annotations

import numpy as np
import tvm
from tvm import relax
from tvm.relax.expr_functor import PyExprMutator, mutator

from cococ.backends.tvm.lower import lower_graph
from cococ.backends.kernels.compute import LowerCtx
from cococ.ir.core import Graph
from cococ.ir.verify import infer_shapes


def to_relax(graph: Graph, *, bind_params: bool = True, oc_block: int = 1):
    infer_shapes(graph)
    mod = lower_graph(graph, LowerCtx(oc_block=oc_block))
    if bind_params:
        return mod
    return lift_constants(mod)


def lift_constants(mod: tvm.IRModule) -> tuple[tvm.IRModule, dict[str, np.ndarray]]:
    """Turn every constant of `main` into a trailing parameter `p0, p1, ...`; returns (mod, params)."""
    func = mod["main"]
    consts: list[relax.Constant] = []

    @mutator
    class Lift(PyExprMutator):
        def visit_generic_const_(self, op):  # noqa: N802 (TVM's visitor naming)
            for i, c in enumerate(consts):
                if c.same_as(op):
                    return new_params[i]
            consts.append(op)
            v = relax.Var(f"p{len(consts) - 1}", op.ty)
            new_params.append(v)
            return v

    new_params: list[relax.Var] = []
    body = Lift().visit_expr(func.body)
    new_func = relax.Function(list(func.params) + new_params, body, func.ret_ty, func.is_pure,
                              func.attrs)
    out = mod.clone()
    out["main"] = new_func
    return out, {v.name: c.value.numpy() for v, c in zip(new_params, consts)}
