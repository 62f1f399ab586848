"""x86: a dense (FC) or conv2d layer with a csr / simd_group weight runs cococ's sparse kernels.

Without this the TVM lowering expands every weight to dense (kernels/compute.py `consts`), and a
pruned model is exactly as fast as the unpruned one. Here, for a batch-1 layer whose sparse
form the measured break-even table (backends/kernels/choice.py: sparse-breakeven-x86.json
for FC, matrix-matrix sparse-breakeven-mm-x86.json for conv)
estimates faster than dense, the fused group of the layer becomes:

  FC    1. `call_tir` of the f32 matrix-vector TIR kernel of the weight's format
           (backends/kernels/mv.py, specialised to the layer's sizes and stored count;
           `width`-lane vector loads for simd_group), the format's arrays (A', IA', JA') as
           Relax constants, the input flattened (zero-padded to a multiple of `width`);
  conv  0. cococ's im2col TIR kernel (backends/kernels/im2col.py): X[cols_pad, n_pad] (row k = input
           channel/ky/kx of the OIHW weight's column k, column p = output position, zero where
           the window leaves the padded input and in the padding rows/columns);
        1. `call_tir` of the f32 matrix-matrix TIR kernel (backends/kernels/mm.py:
           each stored weight broadcast against 4 vectors of output positions);
  both  2. one TE kernel for the rest of the group: bias plus the fused epilogue (relu, ...),
           scheduled like every other elementwise kernel.

The TIR kernels are hand-written loops, already "scheduled": they are marked so the x86
scheduler leaves them alone. They are single-threaded, where the dense kernels are parallel
over output blocks.

The choice is measured, as on the M4: the table estimate leaves out what decides small layers
(the extra calls — pad or im2col, the epilogue — and the im2col traffic, against a dense conv
scheduled by schedule_x86 rather than the table's dense matrix-matrix kernel; LeNet-5's conv
layers ran 1.4x slower sparse although the table said 3-10x faster). So the lowering builds
the fused group both ways as two tiny Relax modules (cococ's x86 schedules, the host's TVM
target), times each on the host (the VM's time evaluator, the minimum over interleaved repeats —
other jobs on a shared machine only ever add time —, runtime threads as configured) and
keeps the faster; this costs two small builds per compressed layer. The x86 target option
`sparse` (LowerCtx.sparse) switches to "table" (estimate only) or "always" (the sparse kernel
whenever one exists: the tests that check the kernels' outputs use it). Everything else (batch > 1, grouped conv,
cuda, `to_relax`) stays dense; a layer kept dense gets a warning naming it.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
from tvm import relax, te, tirx

from cococ.backends.kernels import im2col
from cococ.backends.kernels.choice import Choice, dense_reason, estimate, keep_dense_message, not_compared
from cococ.backends.kernels.layout import sparse_arrays
from cococ.backends.kernels.x86 import plan_mm_x86, prim_mv_x86
from cococ.backends.tvm.group_timing import group_feeds, group_timer
from cococ.backends.tvm.lower import LOWERINGS, emit_dense_group, group_inputs
from cococ.ir.core import CococError, Layer
from cococ.ir.formats import cols_padded, matrix_shape

TARGET = "x86"
MODES = ("measure", "table", "always")


def choice(layer: Layer, group: list[Layer] | None = None, ctx=None) -> Choice | None:
    """The kernel of a dense/conv2d layer with a compressed weight (None: the weight is dense).
    With the lowering `ctx`, its mode (ctx.sparse: the x86 option `sparse`) decides how — both
    forms of the fused `group` measured (module docstring), the table's estimate, or always the
    sparse kernel — and the choice is appended to `ctx.choices`; without, the table's estimate."""
    c = _choose(layer, group, ctx)
    if c is not None and ctx is not None:
        ctx.choices.append(c)
    return c


def _choose(layer: Layer, group: list[Layer] | None, ctx) -> Choice | None:
    p = layer.params.get("weight")
    if layer.op not in ("dense", "conv2d") or p is None or p.format == "dense":
        return None
    reason = dense_reason(layer, TARGET)
    if reason:
        return not_compared(layer, reason)
    mode = ctx.sparse if ctx is not None else "table"
    if mode not in MODES:
        raise CococError(f"x86 option sparse={mode!r}: expected one of {', '.join(MODES)}")
    c = estimate(layer.name, p, TARGET, "mm" if layer.op == "conv2d" else "mv")
    if mode == "always":
        c.kernel, c.reason, c.basis = p.format, "", c.basis + "; sparse kernel forced (option sparse=always)"
    elif mode == "measure" and group is not None:
        c = _measure(group, ctx, c)
    return c


def _measure(group: list[Layer], ctx, c: Choice) -> Choice:
    """Time the group dense and sparse on the host; `c` updated with the measured ratio."""
    ext = group_inputs(group)
    lanes = ctx.oc_block if ctx.oc_block > 1 else 8
    feeds = group_feeds(ext)

    def timer(sparse: bool):
        def lower(bb, env):
            if sparse:
                emit(bb, group, env, ctx, LOWERINGS, "m")
            else:
                emit_dense_group(bb, group, env, ctx)
        return group_timer(group, ext, feeds, lanes, lower)[1]

    try:
        fd, fs = timer(False), timer(True)
        td = ts = float("inf")
        for _ in range(3):  # interleaved; the minimum of each: other jobs only ever add time
            td, ts = min(td, fd(*feeds).min), min(ts, fs(*feeds).min)
    except Exception as e:  # noqa: BLE001  (a measurement that fails must not fail the build)
        c.basis += f"; measuring failed ({type(e).__name__}: {e}), table estimate used"
        return c
    c.ratio, c.basis = ts / td, f"measured: {ts * 1e6:.1f} us vs {td * 1e6:.1f} us dense"
    c.kernel, c.reason = c.format, ""
    if ts >= td:  # (no table break-even in the message: the 4096² table says little about this layer)
        c.kernel = "dense"
        c.reason = keep_dense_message(replace(c, breakeven=None), TARGET,
                                      f"measured {ts * 1e6:.1f} vs {td * 1e6:.1f} us dense")
    return c


def _consts(p) -> list:
    return [relax.const(a) for a in sparse_arrays(p)]


def _call(bb, prim, fname: str, args: list, size: int):
    # scheduled (the x86 scheduler leaves it alone) and opaque (Relax must not fuse it: FuseTIR
    # needs block-form TIR, these are plain loops)
    prim = prim.with_attr("tirx.is_scheduled", True).with_attr("global_symbol", fname).with_attr("op_pattern", 8)
    gv = bb.add_func(prim, fname)
    return bb.emit(relax.call_tir(gv, args, relax.TensorType([size], "float32")))


def _emit_fc(bb, layer, env, name):
    """y[rows] of the sparse matrix-vector kernel, and how the epilogue reads it: (y, at(j))."""
    p = layer.params["weight"]
    rows, cols = matrix_shape(p.shape)
    cp = cols_padded(p)
    x = bb.emit(relax.op.reshape(env[id(layer.inputs[0])], (cols,)))
    if cp != cols:
        x = bb.emit_te(lambda t: te.compute((cp,), lambda j: tirx.if_then_else(j < cols, t[j], tirx.const(0, "float32")),
                                             name="pad"), x, primfunc_name_hint=f"{name}_pad")
    mv = _call(bb, prim_mv_x86(p), f"{name}_{p.format}_mv", _consts(p) + [x], rows)
    return mv, (1, rows), lambda y, idx: y[idx[1]]


def _emit_conv(bb, layer, env, name, lanes: int):
    """Y[rows * n_pad] of im2col + the sparse matrix-matrix kernel, the output shape, and the
    read of output (0, r, i, j) from Y."""
    p = layer.params["weight"]
    rows, cols = matrix_shape(p.shape)
    xs, ys = layer.inputs[0].type.shape, layer.outputs[0].type.shape
    _, o, oh, ow = ys
    prim, _, cp, n_pad = plan_mm_x86(p, oh * ow, lanes)
    xflat = bb.emit(relax.op.reshape(env[id(layer.inputs[0])], (int(np.prod(xs)),)))
    xcol = _call(bb, im2col.matrix_f32(xs, ys, layer.attrs, cols, cp, n_pad), f"{name}_im2col", [xflat], cp * n_pad)
    y = _call(bb, prim, f"{name}_{p.format}_mm", _consts(p) + [xcol], rows * n_pad)
    return y, (1, o, oh, ow), lambda yy, i: yy[i[1] * n_pad + i[2] * ow + i[3]]


def emit(bb: relax.BlockBuilder, group: list[Layer], env: dict, ctx, lowerings, name: str) -> None:
    """Emit the group anchored at a sparse dense/conv2d layer (see the module docstring)."""
    layer = group[0]
    if layer.op == "conv2d":
        mv, oshape, at = _emit_conv(bb, layer, env, name, ctx.oc_block if ctx.oc_block > 1 else 8)
    else:
        mv, oshape, at = _emit_fc(bb, layer, env, name)

    # what the epilogue layers read from outside the group (the sparse layer's output is inside)
    ext = [v for v in group_inputs(group[1:]) if all(v is not o for o in layer.outputs)]
    bias = [relax.const(layer.params["bias"].dense())] if "bias" in layer.params else []
    rest = [{k: relax.const(a) for k, a in lowerings[l.op].params(l, ctx).items()} for l in group[1:]]

    def fn(y, bs, ins, pss):
        out = te.compute(oshape, lambda *i: at(y, i) + bs[0][i[1]] if bs else at(y, i), name=f"{layer.op}_out")
        tenv = {id(v): t for v, t in zip(ext, ins)}
        tenv[id(layer.outputs[0])] = out
        for l, ps in zip(group[1:], pss):
            for v, t in zip(l.outputs, lowerings[l.op].compute(l, [tenv[id(v)] for v in l.inputs], ps, ctx)):
                tenv[id(v)] = t
        return tenv[id(group[-1].outputs[0])]

    env[id(group[-1].outputs[0])] = bb.emit_te(fn, mv, bias, [env[id(v)] for v in ext], rest,
                                               primfunc_name_hint=f"{name}_epilogue")
