"""Float (and order-preserving integer) kernels for the Cortex-M4: the ops' own TVM rules, M4-scheduled.

There is no second copy of any op's math here: a kernel is its op's `@rule(Op, "tvm")` (ir/ops/,
the compute x86 and cuda run) called with `M4`, whose `implicit_pad` reads padding through a
bounds test instead of a padded copy, over placeholders in the executor's buffer layout (see
`lower.py`: element-wise ops get their flat buffer, per-channel ones [outer, C, inner]). What is
M4-specific is the schedule, `_schedule`: every injective stage is inlined into the output loop
(bias, a fused ReLU, an average pool's divisor), and a reduction with the output's shape (conv,
dense, pools) is computed at the innermost output loop with its init hoisted out of the
reduction loop, so its accumulator is one stack scalar: no intermediate tensor and no workspace
allocation. Everything here comes from TVM's TE + C codegen; the only C cococ writes itself is
the executor (model.c).
"""
from __future__ import annotations

import tvm
from tvm import te

from cococ.backends.mcu.codegen import Kernel
from cococ.backends.kernels.compute import LowerCtx, compute
from cococ.ir.core import Layer

M4 = LowerCtx(implicit_pad=True)  # unpacked weights (oc_block 1), padding by bounds test

# loop variable names of the output, by rank (they name the loops of the generated C)
_AXES = {1: ["i"], 2: ["n", "c"], 3: ["n", "c", "i"], 4: ["n", "c", "i", "j"], 5: ["n", "g", "c", "i", "j"]}
_PARAM_ARGS = {"weight": "w", "bias": "b"}  # the C argument names of conv/dense's params


def op_kernel(name: str, layer: Layer, x_shapes: list, p_shapes: dict, act: Layer | None = None,
              dtype: str = "float32", doc: str = "") -> Kernel:
    """`layer`'s tvm rule as one C kernel over inputs of `x_shapes` and params of `p_shapes`
    (name -> shape, in argument order), `act` (a fused activation layer) applied in its output
    loop. Arguments: x, x1, ... (dtype), the params (float32), y."""
    xs = [te.placeholder(tuple(s), name="x" if i == 0 else f"x{i}", dtype=dtype) for i, s in enumerate(x_shapes)]
    ps = {k: te.placeholder(tuple(s), name=_PARAM_ARGS.get(k, k)) for k, s in p_shapes.items()}
    out = compute(layer, xs, ps, M4)[0]
    if act is not None:
        out = compute(act, [out], {}, M4)[0]
    y = te.compute(out.shape, lambda *i: out(*i), name="y", varargs_names=_AXES[len(out.shape)])
    args = xs + list(ps.values()) + [y]
    return Kernel(name, _schedule(te.create_prim_func(args)), _argspec(args), meta={"doc": doc})


def _schedule(f):
    """Inline the injective stages into the output "y"; compute each reduction that has y's
    shape at y's innermost loop, its init hoisted (a softmax's max and sum keep their own loops)."""
    sch = tvm.s_tir.Schedule(f)
    y = sch.get_sblock("y")
    shape = [int(d) for d in sch.get(y).writes[0].source.shape]
    blocks = [b for b in sch.get_child_blocks(sch.get_sblock("root")) if sch.get(b).name_hint != "y"]
    reductions = [b for b in blocks if any(iv.iter_type == 2 for iv in sch.get(b).iter_vars)]
    for b in blocks:
        if b not in reductions:
            sch.compute_inline(b)
    n_out = len(sch.get_loops(y))
    for b in reductions:
        if [int(d) for d in sch.get(b).writes[0].source.shape] == shape:
            sch.compute_at(b, sch.get_loops(y)[-1])
            loops = sch.get_loops(b)
            if len(loops) > n_out:
                sch.decompose_reduction(b, loops[n_out])
    return sch.mod["main"]


def copy(name: str, size: int) -> Kernel:
    """y = x over a flat buffer: a graph output that is an input or another output (no op's rule)."""
    x = te.placeholder((size,), name="x")
    y = te.compute((size,), lambda i: x[i], name="y")
    return Kernel(name, te.create_prim_func([x, y]), _argspec([x, y]), meta={"doc": f"copy x{size}"})


def _argspec(tensors) -> list[tuple[str, str, bool]]:
    *ins, out = tensors
    return [(t.op.name, str(t.dtype), False) for t in ins] + [(out.op.name, str(out.dtype), True)]

