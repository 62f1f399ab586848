"""cococ's own s_tir schedules for x86 (TVM 0.27 ships none for conv on CPU).

The conv kernel is the classic register-blocked direct convolution (as in TVM's former
`conv2d_NCHWc` x86 schedule), adapted to cococ's NCHW-in/NCHW-out layers:
  - weights are packed at lowering time to [O/ob, I, KH, KW, ob] (ob = the target's f32 lanes),
    so the innermost loop is one vector FMA over ob output channels;
  - `reg` output columns x `ocn` channel vectors are accumulated at once (<= 16 vectors: they
    stay in registers; 16 x 64 B = 1 KiB is also TVM's limit for a stack buffer, beyond it each
    tile would call the workspace allocator);
  - each input element is a scalar broadcast read straight from NCHW (contiguous along the
    output row for stride 1), so the input needs no repacking;
  - the fused epilogue (bias, batchnorm, residual add, relu...) runs on the finished tile,
    while it is hot, and writes NCHW;
  - the outer loops (batch, channel blocks, output rows) run in parallel.
Depthwise conv (one input channel per output channel, MobileNet's 3x3 layers) keeps NCHW too:
a register tile of up to 8 output rows x one vector along the output width (the width's largest
divisor that fits the lanes), the taps unrolled, a broadcast weight per tap, the epilogue on the
finished tile, parallel over channels. Other grouped convs vectorize along the output row.
Everything else gets a generic schedule: inline the injective stages, vectorize the innermost
spatial loop by a divisor of the lanes, parallelize the fused outer spatial loops.
"""
from __future__ import annotations

import tvm
from tvm import s_tir, tirx

ANCHORS = ("conv_packed", "dense_packed", "conv_direct", "dense_direct")
MAX_ACC_VECTORS = 16


def schedule_module(mod: tvm.IRModule, lanes: int) -> tvm.IRModule:
    """Every PrimFunc of `mod` scheduled for x86 with `lanes` f32 lanes."""
    mod = mod.clone()
    for gv, func in list(mod.functions.items()):
        if isinstance(func, tirx.PrimFunc) and not func.attrs.get("tirx.is_scheduled", False):
            mod[gv] = schedule_func(func, lanes)
    return mod


def schedule_func(func: tirx.PrimFunc, lanes: int) -> tirx.PrimFunc:
    """`func` scheduled by cococ's rules, marked scheduled so later passes leave it alone."""
    return make_schedule(func, lanes).mod["main"].with_attr("tirx.is_scheduled", True)


def make_schedule(func, lanes: int) -> s_tir.Schedule:
    """cococ's schedule of one kernel (a PrimFunc, or a module whose "main" is one), as a traced
    s_tir.Schedule: `--tune` replays its trace as the baseline record (tune.py)."""
    sch = s_tir.Schedule(func)
    root = sch.get_sblock("root")
    names = [sch.get(b).name_hint for b in sch.get_child_blocks(root)]
    anchor = next((n for n in names if n in ANCHORS), None)
    outputs = {sch.get(b).name_hint for b in sch.get_output_blocks(root)}
    for n in names:  # inline injective stages (a conv's "pad" stays: one copy beats a test per MAC)
        if n != anchor and n not in outputs and (n != "pad" or anchor != "conv_packed") and not _is_reduction(sch, n):
            try:
                sch.compute_inline(sch.get_sblock(n))
            except Exception:  # noqa: BLE001  (not inlinable: scheduled generically below)
                pass
    done = set()
    if anchor is not None:
        epilogue = _consumer(sch, anchor)
        if anchor == "conv_packed":
            _conv_packed(sch, anchor, epilogue, lanes)
        elif anchor == "dense_packed":
            _dense_packed(sch, anchor, epilogue, lanes)
        elif anchor == "conv_direct" and _is_depthwise(sch, anchor):
            _conv_depthwise(sch, anchor, epilogue, lanes)
        elif anchor == "conv_direct":
            _conv_direct(sch, anchor, epilogue, lanes)
        else:
            epilogue = None
        done = {anchor} | ({epilogue} if epilogue else set())
    for b in sch.get_child_blocks(root):
        n = sch.get(b).name_hint
        if n in names and n not in done:  # not a block made by scheduling (an init block)
            _generic(sch, b, lanes)
    return sch


# ---- helpers ----------------------------------------------------------------------------------

def _extent(sch, loop) -> int:
    return int(sch.get(loop).extent)


def _is_reduction(sch, name: str) -> bool:
    return any(iv.iter_type == 2 for iv in sch.get(sch.get_sblock(name)).iter_vars)


def _is_depthwise(sch, name: str) -> bool:
    """A direct conv whose channel reduction has extent 1 (depthwise; the schedule above)."""
    return _extent(sch, sch.get_loops(sch.get_sblock(name))[4]) == 1


def _consumer(sch, name: str) -> str | None:
    """The one block reading the anchor's result (the fused epilogue), if there is exactly one."""
    cs = sch.get_consumers(sch.get_sblock(name))
    return sch.get(cs[0]).name_hint if len(cs) == 1 else None


def _divisor(n: int, limit: int, prefer=()) -> int:
    """Largest divisor of n that is <= limit, trying `prefer` first."""
    for p in prefer:
        if p <= limit and n % p == 0:
            return p
    return max(d for d in range(1, min(n, limit) + 1) if n % d == 0)


# ---- conv / dense -----------------------------------------------------------------------------

def conv_tiling(ob_count: int, ow: int) -> tuple[int, int]:
    """(reg, ocn): output columns and channel vectors per register tile."""
    reg = _divisor(ow, 14, prefer=(14, 12, 8, 16))
    if reg < 7 and ow > 16:  # awkward widths (113, prime-ish): a full tile and a masked tail
        reg = 8
    ocn = 1
    for c in (4, 2):
        if ob_count % c == 0 and reg * c <= MAX_ACC_VECTORS:
            ocn = c
            break
    return reg, ocn


def _conv_packed(sch, name: str, epilogue: str | None, lanes: int) -> None:
    blk = sch.get_sblock(name)
    n, cb, y, x, ci, rc, ry, rx = sch.get_loops(blk)
    reg, ocn = conv_tiling(_extent(sch, cb), _extent(sch, x))
    cbo, cbi = sch.split(cb, [None, ocn])
    xo, xi = sch.split(x, [None, reg])
    sch.reorder(n, cbo, y, xo, rc, ry, rx, cbi, xi, ci)
    outer = sch.fuse(n, cbo, y)
    sch.parallel(outer)
    sch.unroll(cbi)
    sch.unroll(xi)
    sch.vectorize(ci)
    if epilogue:
        eb = sch.get_sblock(epilogue)
        sch.reverse_compute_at(eb, xo)
    init = sch.decompose_reduction(blk, rc)
    iloops = sch.get_loops(init)
    sch.vectorize(iloops[-1])


def _dense_packed(sch, name: str, epilogue: str | None, lanes: int) -> None:
    blk = sch.get_sblock(name)
    i, cb, ci, rk = sch.get_loops(blk)
    sch.reorder(i, cb, rk, ci)
    outer = sch.fuse(i, cb)
    sch.parallel(outer)
    k = _extent(sch, rk)
    if k % 4 == 0:
        _, rki = sch.split(rk, [None, 4])
        sch.unroll(rki)
    sch.vectorize(ci)
    if epilogue:
        sch.reverse_compute_at(sch.get_sblock(epilogue), outer)
    init = sch.decompose_reduction(blk, sch.get_loops(blk)[1])
    sch.vectorize(sch.get_loops(init)[-1])


def dw_tiling(oh: int, ow: int, lanes: int) -> tuple[int, int]:
    """(rows, v) of a depthwise register tile: v output columns per vector (the largest divisor
    of the width that fits the lanes: 28 -> 14, not 4), `rows` output rows accumulated at once
    (up to 8 when a row is one vector, as on 7x7 and 14x14 maps; else up to 4)."""
    v = ow if ow <= lanes else _divisor(ow, lanes)
    if v < 4 and ow <= 2 * lanes:  # prime-ish widths (19, 23...): one wide vector, split by LLVM
        v = ow
    rows = _divisor(oh, 8) if ow <= lanes else _divisor(oh, 4, prefer=(4, 2))
    return rows, v


def _conv_depthwise(sch, name: str, epilogue: str | None, lanes: int) -> None:
    """Depthwise conv (one input channel per output channel): a register tile of `rows` output
    rows x one vector of `v` output columns per step, the 3x3 (kh x kw) taps unrolled, each a
    vector load of the input row (unaligned, contiguous for stride 1) x a broadcast weight; the
    fused epilogue (batchnorm, relu6, ...) runs on the finished tile; parallel over channels.
    The padding stays inlined (a bounds test per tap): a padded copy would be one more pass over
    memory for a kernel that does only 9 MACs per output (a per-channel padded tile: not tried)."""
    blk = sch.get_sblock(name)
    n, co, y, x, rc, ry, rx = sch.get_loops(blk)
    rows, v = dw_tiling(_extent(sch, y), _extent(sch, x), lanes)
    yo, yi = sch.split(y, [None, rows])
    xo, xi = sch.split(x, [None, v])
    sch.reorder(n, co, yo, xo, rc, ry, rx, yi, xi)
    sch.parallel(sch.fuse(n, co))
    sch.unroll(ry)
    sch.unroll(rx)
    sch.unroll(yi)
    if v > 1:
        sch.vectorize(xi)
    _tile_epilogue(sch, blk, name, epilogue, xo, rc, v)


def _tile_epilogue(sch, blk, name: str, epilogue: str | None, xo, rc, v: int) -> None:
    """The fused epilogue runs on each finished tile (at `xo`) and the accumulator's zeroing
    leaves the reduction: both vectorized like the tile, `v` lanes."""
    if epilogue and _consumer(sch, name) == epilogue and name != epilogue:
        eb = sch.get_sblock(epilogue)
        sch.reverse_compute_at(eb, xo)
        if v > 1:
            sch.vectorize(sch.get_loops(eb)[-1])
    init = sch.decompose_reduction(blk, rc)
    if v > 1:
        sch.vectorize(sch.get_loops(init)[-1])


def _conv_direct(sch, name: str, epilogue: str | None, lanes: int) -> None:
    """Grouped conv: vectorize along the output row, reductions outside the vector;
    the epilogue runs per row tile, so the accumulator never goes to memory."""
    blk = sch.get_sblock(name)
    n, co, y, x, rc, ry, rx = sch.get_loops(blk)
    ow = _extent(sch, x)
    v = _divisor(ow, lanes, prefer=(lanes, lanes // 2, lanes // 4))
    if v == 1 and ow <= lanes:
        v = ow
    xo, xi = sch.split(x, [None, v])
    sch.reorder(n, co, y, xo, rc, ry, rx, xi)
    sch.parallel(sch.fuse(n, co, y))
    if v > 1:
        sch.vectorize(xi)
    _tile_epilogue(sch, blk, name, epilogue, xo, rc, v)


# ---- everything else --------------------------------------------------------------------------

def _generic(sch, blk, lanes: int) -> None:
    """Parallel over the outer spatial loops, vectorized along the innermost one (by a divisor of
    the lanes). Not one fused, vectorized loop: that puts an int64 div/mod per lane in the body.
    Reductions (pools, softmax) move below the outer loops so the innermost spatial loop still
    vectorizes: max_pool reads a row of windows per vector."""
    block = sch.get(blk)
    loops = sch.get_loops(blk)
    if not loops:
        return
    nsp = sum(1 for iv in block.iter_vars if iv.iter_type == 0)
    spatial, red = loops[:nsp], loops[nsp:]
    if not spatial:
        return
    w = _extent(sch, spatial[-1])
    v = _divisor(w, lanes, prefer=(lanes, lanes // 2, lanes // 4))
    if v < 4 and w > 1:  # short rows: vectorize over whole rows of the last two axes instead
        if len(spatial) > 1:
            spatial = spatial[:-2] + [sch.fuse(spatial[-2], spatial[-1])]
            w = _extent(sch, spatial[-1])
            v = _divisor(w, lanes, prefer=(lanes, lanes // 2, lanes // 4))
    if v < 2 or len(spatial) == 1 and w == v and red:
        fused = sch.fuse(*spatial) if len(spatial) > 1 else spatial[0]
        if _extent(sch, fused) > 1:
            sch.parallel(fused)
        return
    outer = spatial[:-1]
    io, ii = sch.split(spatial[-1], [None, v])
    if red:
        sch.reorder(*outer, io, *red, ii)
    par = sch.fuse(*outer, io) if outer else io
    if _extent(sch, par) > 1:
        sch.parallel(par)
    sch.vectorize(ii)
    if red:
        init = sch.decompose_reduction(blk, red[0])
        sch.vectorize(sch.get_loops(init)[-1])
