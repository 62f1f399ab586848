"""x86: a dense (FC) or conv2d layer with a csr / simd_group weight runs cococ's sparse kernels.

Without this the TVM lowering expands every weight to dense (te_ops `_dense_params`), and a
pruned model is exactly as fast as the unpruned one. Here, for a batch-1 layer whose sparse
form the measured break-even table (backends/sparse/choose.py: x86 rows of
docs/benchmarks/sparse-breakeven-x86.json for FC, matrix-matrix ...-mm-x86.json for conv)
estimates faster than dense, the fused group of the layer becomes:

  FC    1. `call_tir` of the f32 matrix-vector TIR kernel of the weight's format
           (backends/sparse/tir.py, specialised to the layer's sizes and stored count;
           `width`-lane vector loads for simd_group), the format's arrays (A', IA', JA') as
           Relax constants, the input flattened (zero-padded to a multiple of `width`);
  conv  0. cococ's im2col TIR kernel (`_im2col`): X[cols_pad, n_pad] (row k = input
           channel/ky/kx of the OIHW weight's column k, column p = output position, zero where
           the window leaves the padded input and in the padding rows/columns);
        1. `call_tir` of the f32 matrix-matrix TIR kernel (backends/sparse/tir_mm.py:
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
keeps the faster; this costs two small builds per compressed layer. `CHOICE`
switches to "table" (estimate only) or "always" (the sparse kernel whenever one exists: the
tests that check the kernels' outputs use it). Everything else (batch > 1, grouped conv,
cuda, `to_relax`) stays dense; a layer kept dense gets a warning naming it.
"""
from __future__ import annotations

from dataclasses import replace

from tvm import relax, te, tirx

from cococ.backends.sparse import tir, tir_mm
from cococ.backends.sparse.build import TVM_DTYPE
from cococ.backends.sparse.choose import Choice, estimate, keep_dense_message, kernel_sparsity
from cococ.ir.core import Layer
from cococ.ir.formats import cols_padded, matrix_shape

TARGET = "x86"
CHOICE = "measure"           # "measure" | "table" | "always"


def choice(layer: Layer, group: list[Layer] | None = None, ctx=None) -> Choice | None:
    """The kernel of a dense/conv2d layer with a compressed weight (None: the weight is dense).
    With its fused `group` and the lowering `ctx` both forms are measured (module docstring) and
    the choice is appended to `ctx.choices`; without, the table's estimate."""
    c = _choose(layer, group, ctx)
    if c is not None and ctx is not None:
        ctx.choices.append(c)
    return c


def _choose(layer: Layer, group: list[Layer] | None, ctx) -> Choice | None:
    p = layer.params.get("weight")
    if layer.op not in ("dense", "conv2d") or p is None or p.format == "dense":
        return None
    n = layer.inputs[0].type.shape[0]
    if n != 1:
        return Choice(layer.name, p.format, "dense", kernel_sparsity(p), None, "not compared",
                      reason=f"layer {layer.name}: {p.format} weight at batch {n}: the x86 sparse kernels are "
                             "for batch 1; kept dense")
    if layer.op == "conv2d" and layer.attrs["groups"] != 1:
        return Choice(layer.name, p.format, "dense", kernel_sparsity(p), None, "not compared",
                      reason=f"layer {layer.name}: {p.format} conv with groups={layer.attrs['groups']}: the sparse "
                             "conv kernel is for groups 1; kept dense")
    if p.type.dtype != "f32":
        return Choice(layer.name, p.format, "dense", kernel_sparsity(p), None, "not compared",
                      reason=f"layer {layer.name}: the x86 sparse kernels are f32, the weight is {p.type.dtype}; "
                             "kept dense")
    c = estimate(layer.name, p, TARGET, "mm" if layer.op == "conv2d" else "mv")
    if CHOICE == "always":
        c.kernel, c.reason, c.basis = p.format, "", c.basis + "; sparse kernel forced (sparse.CHOICE)"
    elif CHOICE == "measure" and group is not None and ctx is not None:
        c = _measure(group, ctx, c)
    return c


def _measure(group: list[Layer], ctx, c: Choice) -> Choice:
    """Time the group dense and sparse on the host; `c` updated with the measured ratio."""
    import numpy as np
    import tvm

    from cococ.backends.target import get_target
    from cococ.backends.tvm.build import tvm_target
    from cococ.backends.tvm.lower import LOWERINGS, TVM_DTYPES, emit_dense_group, group_inputs
    from cococ.backends.tvm.schedule_x86 import schedule_module
    ext = group_inputs(group)
    lanes = ctx.oc_block if ctx.oc_block > 1 else 8
    target = tvm_target(get_target("x86"))
    dev = tvm.cpu()
    rng = np.random.default_rng(0)
    feeds = [tvm.runtime.tensor(rng.standard_normal(v.type.shape).astype(TVM_DTYPES[v.type.dtype]), dev) for v in ext]

    def timer(sparse: bool):
        bb = relax.BlockBuilder()
        params = [relax.Var(f"x{i}", relax.TensorType(list(v.type.shape), TVM_DTYPES[v.type.dtype]))
                  for i, v in enumerate(ext)]
        with bb.function("main", params):
            with bb.dataflow():
                env = {id(v): q for v, q in zip(ext, params)}
                if sparse:
                    emit(bb, group, env, ctx, LOWERINGS, "m")
                else:
                    emit_dense_group(bb, group, env, ctx)
                out = bb.emit_output(env[id(group[-1].outputs[0])])
            bb.emit_func_output(out)
        ex = relax.build(schedule_module(bb.get(), lanes), target)
        vm = relax.VirtualMachine(ex, dev)
        t0 = vm.time_evaluator("main", dev, number=1, repeat=3)(*feeds).min  # also the warm-up
        return vm.time_evaluator("main", dev, number=max(1, min(1000, int(1e-3 / max(t0, 1e-7)))), repeat=5)

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


def _kernel(p):
    rows, cols = matrix_shape(p.shape)
    a = p.arrays
    index = TVM_DTYPE[a["indices"].dtype]
    if p.format == "csr":
        return tir.csr_mv_f32(rows, cols, a["values"].size, index)
    return tir.simd_group_mv_f32(rows, cols_padded(p), a["indices"].size, int(p.attrs["width"]), index)


def _consts(p) -> list:
    import numpy as np
    return [relax.const(np.ascontiguousarray(a) if a.size else np.zeros(1, a.dtype))
            for a in (p.arrays[k] for k in ("values", "indptr", "indices"))]


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
    mv = _call(bb, _kernel(p), f"{name}_{p.format}_mv", _consts(p) + [x], rows)
    return mv, (1, rows), lambda y, idx: y[idx[1]]


def _emit_conv(bb, layer, env, name, lanes: int):
    """Y[rows * n_pad] of im2col + the sparse matrix-matrix kernel, the output shape, and the
    read of output (0, r, i, j) from Y."""
    p = layer.params["weight"]
    rows, cols = matrix_shape(p.shape)
    a = layer.attrs
    _, c, h, w = layer.inputs[0].type.shape
    _, o, oh, ow = layer.outputs[0].type.shape
    (kh, kw), (sh, sw), (dh, dw), (t, l, _, _) = a["kernel"], a["stride"], a["dilation"], a["pad"]
    vecs = 4
    npos, tile = oh * ow, vecs * lanes
    n_pad = -(-npos // tile) * tile
    idx = p.arrays["indices"]
    index = TVM_DTYPE[idx.dtype]
    if p.format == "csr":
        cp = cols
        prim = tir_mm.csr_mm_f32(rows, cols, n_pad, p.arrays["values"].size, lanes, vecs, index)
    else:
        cp = cols_padded(p)
        prim = tir_mm.simd_group_mm_f32(rows, cp, n_pad, idx.size, int(p.attrs["width"]), lanes, vecs, index)

    xflat = bb.emit(relax.op.reshape(env[id(layer.inputs[0])], (c * h * w,)))
    xcol = _call(bb, _im2col(c, h, w, oh, ow, a, cols, cp, n_pad), f"{name}_im2col", [xflat], cp * n_pad)
    y = _call(bb, prim, f"{name}_{p.format}_mm", _consts(p) + [xcol], rows * n_pad)
    return y, (1, o, oh, ow), lambda yy, i: yy[i[1] * n_pad + i[2] * ow + i[3]]


def _im2col(c, h, w, oh, ow, a, cols: int, cp: int, n_pad: int):
    """TIR (TVMScript) of X[cols_pad, n_pad] from the flat input: plain nested loops over (channel,
    ky, kx, output row, output column), the innermost along an input row (contiguous for stride 1),
    so LLVM vectorises the copy; no fused-loop div/mod, no parallel region (as a TE compute with
    the generic schedule this took 13-24 us on LeNet-5's conv2, now about 3.5). Zero where the
    window leaves the padded input, in the position padding and in the rows past `cols`."""
    from cococ.backends.mcu.qkernels import _parse
    (kh, kw), (sh, sw), (dh, dw), (t, l, _, _) = a["kernel"], a["stride"], a["dilation"], a["pad"]
    iy, ix = f"i * {sh} - {t} + r * {dh}", f"j * {sw} - {l} + s * {dw}"
    xv = f"x[ci * {h * w} + ({iy}) * {w} + {ix}]"
    if any(a["pad"]):
        xv = f"T.if_then_else({iy} >= 0 and {iy} < {h} and {ix} >= 0 and {ix} < {w}, {xv}, T.float32(0))"
    row = f"(ci * {kh * kw} + r * {kw} + s) * {n_pad}"
    src = f'''
@T.prim_func(s_tir=True)
def f(x: T.Buffer(({c * h * w},), "float32"), X: T.Buffer(({cp * n_pad},), "float32")):
    T.func_attr({{"tirx.noalias": True}})
    with T.sblock("root"):
        for ci, r, s, i in T.grid({c}, {kh}, {kw}, {oh}):
            for j in range({ow}):
                X[{row} + i * {ow} + j] = {xv}
'''
    # (the explicit root block: Relax's RewriteDataflowReshape inspects one-input call_tir callees
    # and requires block-form TIR)
    if n_pad > oh * ow:
        src += f"        for ci, r, s, q in T.grid({c}, {kh}, {kw}, {n_pad - oh * ow}):\n"
        src += f"            X[{row} + {oh * ow} + q] = T.float32(0)\n"
    if cp > cols:
        src += f"        for e in range({(cp - cols) * n_pad}):\n            X[{cols * n_pad} + e] = T.float32(0)\n"
    return _parse(src)


def emit(bb: relax.BlockBuilder, group: list[Layer], env: dict, ctx, lowerings, name: str) -> None:
    """Emit the group anchored at a sparse dense/conv2d layer (see the module docstring)."""
    layer = group[0]
    if layer.op == "conv2d":
        mv, oshape, at = _emit_conv(bb, layer, env, name, ctx.oc_block if ctx.oc_block > 1 else 8)
    else:
        mv, oshape, at = _emit_fc(bb, layer, env, name)

    inside = {id(v) for l in group for v in l.outputs}
    ext = []
    for l in group[1:]:
        for v in l.inputs:
            if id(v) not in inside and all(v is not e for e in ext):
                ext.append(v)
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
