"""x86: Winograd F(2,3) / F(4,3) for 3x3, stride-1, dilation-1, groups-1 convs (with the fused epilogue).

Y = A^T [ U ⊙ V ] A per output tile of m x m (m = 2 or 4, alpha = m + 2 input rows/columns per
tile), U = G g G^T the transformed weights, V = B^T d B the transformed input tile; the
matrices are Cook-Toom's with TVM's interpolation points (topi's winograd_util). One kernel
(a `call_tir` of one PrimFunc, scheduled here with s_tir and marked scheduled) of four stages:

  wino_pad   the input, zero-padded to whole tiles, stored as m column phases
             [N, C, Hp, m, Wp/m] (column x at phase x % m, index x // m): the input transform
             then reads one contiguous vector of tiles per tap (the stride-m gather made contiguous,
             as schedule_x86's stride-2 phase split); parallel over rows.
  wino_in    V[a1, a2, c, p] (p = tile, row-major over n, tile row, tile column): the
             alpha x alpha outputs of each tile unrolled, each a short sum with the zero
             coefficients of B dropped, vectorized over a run of tile columns (the largest
             divisor of them that fits the lanes); parallel over channels x tile rows.
  wino_gemm  M[a1, a2, kb, p, ki] = sum_c V[a1, a2, c, p] * U[a1, a2, kb, c, ki]: alpha^2
             batched GEMMs, the register tile of schedule_x86's direct conv (up to 14 tiles x
             1-4 vectors of `lanes` output channels, broadcast V x vector U FMAs); U is packed
             [alpha, alpha, K/lanes, C, lanes] at lowering time (weights are constants); parallel
             over (a1, a2, channel blocks, tile blocks).
  output     the output transform A^T M A (the m x m outputs of a tile unrolled, M read as
             vectors of `lanes` output channels), + bias, then the group's epilogue (batchnorm,
             residual add, relu, ...: the layers' own TVM rules, inlined), stored NCHW; parallel
             over channel blocks x tile rows.

Which convs take it is `choose`: the x86 target option `winograd` (LowerCtx.winograd):
"off" never, "table" the measured table below (TABLE: per conv shape, measured against the
direct conv with `benchmarks/winograd_x86.py` on this project's machine), "measure" both timed
at build, "f2"/"f4" forced (tests). See docs/targets.md, "Winograd on x86".
"""
from __future__ import annotations

import numpy as np
from tvm import relax, s_tir, te, tirx

from cococ.backends.kernels.compute import LowerCtx, compute, consts
from cococ.backends.tvm.schedule_x86_window import _divisor, _extent
from cococ.ir.core import CococError, Layer

MODES = ("off", "table", "measure", "f2", "f4")
# (in channels, out channels, H, W) -> m (2: F(2,3), 4: F(4,3), 0: the direct conv): what
# benchmarks/winograd_x86.py chose (docs/benchmarks/winograd-x86.json; 16 lanes, batch 1; its rule
# in its docstring). Shapes not listed keep the direct conv.
TABLE: dict[tuple[int, int, int, int], int] = {
    (64, 64, 56, 56): 4, (128, 128, 28, 28): 4, (256, 256, 14, 14): 2, (512, 512, 7, 7): 4,  # ResNet-50
    (16, 64, 56, 56): 4, (32, 128, 28, 28): 4, (48, 192, 14, 14): 0, (64, 256, 14, 14): 2,   # SqueezeNet 1.1
}


# ---- transform matrices ----------------------------------------------------------------------

def matrices(m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(A [alpha, m], B [alpha, alpha], G [alpha, 3]) in float64: Y = A^T [(G g G^T) ⊙ (B^T d B)] A."""
    from tvm.topi.nn.winograd_util import _cook_toom_convolution, _interpolation_points
    a, b, g = _cook_toom_convolution(_interpolation_points(m + 1), m, 3)
    return np.asarray(a, np.float64), np.asarray(b, np.float64), np.asarray(g, np.float64)


def transform_weights(w: np.ndarray, m: int, lanes: int) -> np.ndarray:
    """OIHW 3x3 weight -> U packed [alpha, alpha, ceil(K/lanes), C, lanes] (zero channels in the tail)."""
    _, _, g = matrices(m)
    u = np.einsum("ar,kcrs,bs->abkc", g, w.astype(np.float64), g)  # [alpha, alpha, K, C]
    al, _, k, c = u.shape
    kb = -(-k // lanes)
    up = np.zeros((al, al, kb * lanes, c))
    up[:, :, :k] = u
    return np.ascontiguousarray(up.reshape(al, al, kb, lanes, c).transpose(0, 1, 2, 4, 3).astype(np.float32))


def _lincomb(coefs, terms):
    """sum coef * term without the zero coefficients (and without multiplying by +-1)."""
    out = None
    for cf, t in zip(coefs, terms):
        cf = float(cf)
        if cf == 0.0:
            continue
        mag = abs(cf)
        e = t if mag == 1.0 else t * tirx.const(mag, "float32")
        out = (e if cf > 0 else -e) if out is None else (out + e if cf > 0 else out - e)
    return out if out is not None else tirx.const(0.0, "float32")


def _select(idx, exprs):
    """exprs[idx] for a loop variable idx (the loop is unrolled: each Select folds to one branch)."""
    e = exprs[-1]
    for i in range(len(exprs) - 2, -1, -1):
        e = tirx.Select(idx == i, exprs[i], e)
    return e


# ---- which convs ------------------------------------------------------------------------------

def applicable(layer: Layer, ctx: LowerCtx) -> bool:
    """A dense-weight 3x3 conv2d, stride 1, dilation 1, groups 1, f32, on x86 (packed lanes)."""
    if layer.op != "conv2d" or ctx.oc_block <= 1:
        return False
    a, p = layer.attrs, layer.params.get("weight")
    return (list(a["kernel"]) == [3, 3] and list(a["stride"]) == [1, 1] and list(a["dilation"]) == [1, 1]
            and a["groups"] == 1 and p is not None and p.format == "dense"
            and layer.inputs[0].type.dtype == "f32" and len(layer.inputs[0].type.shape) == 4)


def shape_key(layer: Layer) -> tuple[int, int, int, int]:
    n, c, h, w = (int(d) for d in layer.inputs[0].type.shape)
    return c, int(layer.attrs["out_channels"]), h, w


def choose(group: list[Layer], ctx: LowerCtx) -> int:
    """m of the Winograd kernel the group's conv takes (0: the direct conv)."""
    mode = getattr(ctx, "winograd", "") or "off"
    if mode not in MODES:
        raise CococError(f"x86 option winograd={mode!r}: expected one of {', '.join(MODES)}")
    if mode == "off" or not applicable(group[0], ctx):
        return 0
    if mode in ("f2", "f4"):
        return int(mode[1])
    if mode == "table":
        return TABLE.get(shape_key(group[0]), 0)
    try:  # "measure": the three built alone and timed here (benchmarks/winograd_x86.py's rule)
        times = measure_group(group, ctx)
    except Exception:  # noqa: BLE001  (a measurement that fails must not fail the build)
        return 0
    best = min((2, 4), key=lambda mv: times[mv] * (0.95 if mv == 2 else 1.0))  # F(2,3) on a near tie
    return best if times[best] < 0.9 * times[0] else 0


# ---- the kernel -------------------------------------------------------------------------------

def build_te(group: list[Layer], ext_ts: list, ps_ts: list[dict], u_t, bias_t, m: int, ctx: LowerCtx):
    """The group's output tensor computed through Winograd F(m,3) (stage names: module docstring)."""
    conv = group[0]
    x = ext_ts[0]
    n, c, h, w = (int(d) for d in x.shape)
    k = int(conv.attrs["out_channels"])
    t, l, b, r = conv.attrs["pad"]
    oh, ow = h + t + b - 2, w + l + r - 2
    al = m + 2
    nh, nw = -(-oh // m), -(-ow // m)
    hp, wq = nh * m + 2, nw + 1  # padded rows; columns per phase (nw * m + 2 <= (nw + 1) * m)
    ob = int(u_t.shape[-1])
    at, bt, _ = matrices(m)
    f0 = tirx.const(0.0, "float32")

    def padded(nn, cc, y, ph, q):
        xx = q * m + ph - l
        yy = y - t
        ok = tirx.all(yy >= 0, yy < h, xx >= 0, xx < w)
        return tirx.if_then_else(ok, x[nn, cc, tirx.max(tirx.min(yy, h - 1), 0), tirx.max(tirx.min(xx, w - 1), 0)], f0)
    xp = te.compute((n, c, hp, m, wq), padded, name="wino_pad")

    def row(a1, j, cc, p):  # B^T d: the tile's columns, each a short sum over its rows
        nn, th, tw = p // (nh * nw), p // nw % nh, p % nw

        def d(i, jj):  # input element (i, jj) of the tile: column tw*m + jj is phase jj % m, index tw + jj // m
            return xp[nn, cc, th * m + i, jj % m, tw + jj // m]
        return _select(a1, [_select(j, [_lincomb(bt[:, e1], [d(i, jj) for i in range(al)]) for jj in range(al)])
                            for e1 in range(al)])
    rt = te.compute((al, al, c, n * nh * nw), row, name="wino_row")

    def vin(a1, a2, cc, p):  # (B^T d) B
        return _select(a2, [_lincomb(bt[:, e2], [rt[a1, j, cc, p] for j in range(al)]) for e2 in range(al)])
    v = te.compute((al, al, c, n * nh * nw), vin, name="wino_in")

    rc = te.reduce_axis((0, c), "rc")
    mm = te.compute((al, al, int(u_t.shape[2]), n * nh * nw, ob),
                    lambda a1, a2, kb, p, ki: te.sum(v[a1, a2, rc, p] * u_t[a1, a2, kb, rc, ki], axis=rc),
                    name="wino_gemm")

    def yout(nn, kk, y, xx):
        i, j = y % m, xx % m
        p = (nn * nh + y // m) * nw + xx // m

        def ym(ii, jj):
            terms, coefs = [], []
            for e1 in range(al):
                for e2 in range(al):
                    cf = at[e1, ii] * at[e2, jj]
                    if cf != 0:
                        terms.append(mm[e1, e2, kk // ob, p, kk % ob])
                        coefs.append(cf)
            return _lincomb(coefs, terms)
        val = _select(i, [_select(j, [ym(ii, jj) for jj in range(m)]) for ii in range(m)])
        return val + bias_t[kk] if bias_t is not None else val
    out = te.compute((n, k, oh, ow), yout, name="wino_out")

    tenv = {id(v_): t_ for v_, t_ in zip(_ext(group), ext_ts)}
    tenv[id(conv.outputs[0])] = out
    for lay, ps in zip(group[1:], ps_ts):
        for v_, t_ in zip(lay.outputs, compute(lay, [tenv[id(q)] for q in lay.inputs], ps, ctx)):
            tenv[id(v_)] = t_
    return tenv[id(group[-1].outputs[0])]


def _ext(group: list[Layer]):
    from cococ.backends.tvm.lower import group_inputs  # local: lower.py imports this module
    return group_inputs(group)


def schedule(func: tirx.PrimFunc, m: int, lanes: int) -> tirx.PrimFunc:
    """The four stages scheduled (module docstring); the result is marked scheduled."""
    from cococ.backends.tvm.schedule_x86 import conv_tiling
    sch = s_tir.Schedule(func)
    root = sch.get_sblock("root")
    outputs = {sch.get(bk).name_hint for bk in sch.get_output_blocks(root)}
    for bk in sch.get_child_blocks(root):
        nm = sch.get(bk).name_hint
        if nm not in ("wino_pad", "wino_row", "wino_in", "wino_gemm") and nm not in outputs:
            sch.compute_inline(bk)
    # pad: parallel rows, the phase loop and the row plain (LLVM)
    pad = sch.get_sblock("wino_pad")
    lp = sch.get_loops(pad)
    sch.parallel(sch.fuse(*lp[:3]))
    # input transform: (c, n, tile row) parallel, tile columns vectorized, the alpha^2 outputs unrolled
    blk = sch.get_sblock("wino_in")
    a1, a2, c, p = sch.get_loops(blk)
    nm_, nh, nw = _tiles(sch, blk)
    v = _divisor(nw, lanes)  # tile columns per vector: all when they fit the lanes (14: one 14-wide vector)
    pn, th, two, twi = sch.split(p, [nm_, nh, nw // v, v])
    sch.reorder(c, pn, th, two, a1, a2, twi)
    sch.parallel(sch.fuse(c, pn, th))
    sch.unroll(a1)
    sch.unroll(a2)
    if v > 1:
        sch.vectorize(twi)
    rb = sch.get_sblock("wino_row")  # B^T d of one row of the tile (alpha x v values) on the stack
    sch.compute_at(rb, a1)
    sch.set_scope(rb, 0, "local")
    rl = sch.get_loops(rb)[-3:]  # j, (c: 1), tile columns
    sch.unroll(rl[0])
    if v > 1:
        sch.vectorize(rl[-1])
    # batched GEMM: the direct conv's register tile
    g = sch.get_sblock("wino_gemm")
    a1, a2, kb, p, ki, rc = sch.get_loops(g)
    reg, ocn = conv_tiling(_extent(sch, kb), _extent(sch, p))
    kbo, kbi = sch.split(kb, [None, ocn])
    po, pi = sch.split(p, [None, reg])
    sch.reorder(a1, a2, kbo, po, rc, kbi, pi, ki)
    sch.parallel(sch.fuse(a1, a2, kbo, po))
    sch.unroll(kbi)
    sch.unroll(pi)
    sch.vectorize(ki)
    init = sch.decompose_reduction(g, rc)
    sch.vectorize(sch.get_loops(init)[-1])
    # output transform + epilogue: (n, channel block, tile row) parallel, the m x m outputs unrolled,
    # vectors of output channels
    ob = sch.get_sblock(sorted(outputs)[0])
    nn, kk, y, xx = sch.get_loops(ob)
    vk = lanes if _extent(sch, kk) % lanes == 0 else 1
    kbo, ki = sch.split(kk, [None, vk])
    th, i = sch.split(y, [None, m])
    tw, j = sch.split(xx, [None, m])
    sch.reorder(nn, kbo, th, tw, i, j, ki)
    sch.parallel(sch.fuse(nn, kbo, th))
    sch.unroll(i)
    sch.unroll(j)
    if vk > 1:
        sch.vectorize(ki)
    return sch.mod["main"].with_attr("tirx.is_scheduled", True)


def _tiles(sch, blk) -> tuple[int, int, int]:
    """(N, tile rows, tile columns) of the input transform, read from the padded input's shape."""
    pad = sch.get(sch.get_sblock("wino_pad")).writes[0].source
    n, _, hp, m, wq = (int(d) for d in pad.shape)
    return n, (hp - 2) // m, wq - 1


def emit(bb: relax.BlockBuilder, group: list[Layer], env: dict, ctx: LowerCtx, m: int, name: str) -> None:
    """Emit the group (a conv for which `applicable`, and its epilogue) as one Winograd kernel."""
    conv = group[0]
    ext = _ext(group)
    lanes = ctx.oc_block
    w = conv.params["weight"].dense()
    u = transform_weights(w, m, lanes)
    bias = conv.params["bias"].dense().astype(np.float32) if "bias" in conv.params else None
    rest = [consts(lay, ctx) for lay in group[1:]]
    from cococ.backends.tvm.lower import TVM_DTYPES
    ext_ts = [te.placeholder(list(v_.type.shape), TVM_DTYPES[v_.type.dtype], name=f"x{i}") for i, v_ in enumerate(ext)]
    u_t = te.placeholder(list(u.shape), "float32", name="U")
    bias_t = te.placeholder([len(bias)], "float32", name="bias") if bias is not None else None
    ps_ts = [{kname: te.placeholder(list(a.shape), str(a.dtype), name=f"p{li}_{kname}") for kname, a in ps.items()}
             for li, ps in enumerate(rest)]
    try:
        out = build_te(group, ext_ts, ps_ts, u_t, bias_t, m, ctx)
        args_t = ext_ts + [u_t] + ([bias_t] if bias_t is not None else []) + [t_ for ps in ps_ts for t_ in ps.values()]
        prim = schedule(te.create_prim_func(args_t + [out]), m, lanes)
    except CococError:
        raise
    except Exception as e:  # a TVM error while lowering: name the layer
        raise conv.error(f"Winograd F({m},3) lowering failed: {type(e).__name__}: {e}") from e
    # opaque (Relax must not fuse it); no global_symbol: kernels of the same shapes become one function
    prim = prim.without_attr("global_symbol").with_attr("op_pattern", 8)
    gv = bb.add_func(prim, name)
    args = [env[id(v_)] for v_ in ext] + [relax.const(u)] + ([relax.const(bias)] if bias is not None else [])
    args += [relax.const(a) for ps in rest for a in ps.values()]
    ov = group[-1].outputs[0]
    env[id(ov)] = bb.emit(relax.call_tir(gv, args, relax.TensorType(list(ov.type.shape), TVM_DTYPES[ov.type.dtype])))


# ---- measurement ------------------------------------------------------------------------------

def group_timers(group: list[Layer], ctx: LowerCtx, variants=(0, 2, 4)) -> tuple[dict, list]:
    """{m: (vm, time evaluator)} of the group built alone per variant (0: the direct conv), and the feeds."""
    from cococ.backends.tvm.group_timing import group_feeds, group_timer
    from cococ.backends.tvm.lower import emit_dense_group
    ext = _ext(group)
    feeds = group_feeds(ext)

    def lower(mv):
        return lambda bb, env: emit(bb, group, env, ctx, mv, "m") if mv else emit_dense_group(bb, group, env, ctx)
    return {mv: group_timer(group, ext, feeds, ctx.oc_block, lower(mv), budget_s=2e-3, repeat=3)
            for mv in variants}, feeds


def measure_group(group: list[Layer], ctx: LowerCtx, rounds: int = 3, variants=(0, 2, 4)) -> dict[int, float]:
    """Minimum time per variant over interleaved rounds (other jobs only ever add time)."""
    timers, feeds = group_timers(group, ctx, variants)
    best = {mv: float("inf") for mv in timers}
    for _ in range(rounds):
        for mv, (_, f) in timers.items():
            best[mv] = min(best[mv], f(*feeds).min)
    return best
