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
  - the outer loops (batch, channel blocks, output rows) run in parallel; rows outside the
    blocks when the input is bigger than the weights (`_rows_outer`).
Short reductions (most 1x1 convs, stems) take the row-vector tile instead (`width_vector`): a
vector of output columns x the block's channels unrolled, so the epilogue stores NCHW rows as
vectors instead of transposing the tile with scalar stores. A conv's padded copy ("pad") is kept
and run as plain parallel rows; at stride 2 it is stored as even/odd column phases.
Depthwise conv (one input channel per output channel, MobileNet's 3x3 layers) keeps NCHW too:
a register tile of up to 8 output rows x one vector along the output width (the width's largest
divisor that fits the lanes), the taps unrolled, a broadcast weight per tap, the epilogue on the
finished tile, parallel over channels. Other grouped convs vectorize along the output row.
A 1x1 conv that lower.py hands over as one row of positions ([N, C, 1, H*W], `flat_positions`)
takes the row-vector tile too, its parallel tasks being runs of up to 7 vectors of that row.
Everything else gets a generic schedule: inline the injective stages, vectorize the innermost
spatial loop by a divisor of the lanes, parallelize the fused outer spatial loops; strided
window reductions (pools) are scalar, unrolled windows over parallel rows instead, and
reductions over whole planes (global pools) keep a vector of partial results per channel.
"""
from __future__ import annotations

import numpy as np
import tvm
from tvm import s_tir, sym, tirx

ANCHORS = ("conv_packed", "dense_packed", "conv_direct", "dense_direct")
MAX_ACC_VECTORS = 16
WIDE_K = 256  # reductions this long keep the channel-vector tile (width_vector)


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
    keep_pad = anchor == "conv_packed" or (anchor == "conv_direct" and _is_depthwise(sch, anchor)
                                              and _x_stride(sch, sch.get_sblock(anchor)) == 1)
    for n in names:  # inline injective stages (a conv's "pad" stays: one copy beats a test per MAC)
        if n != anchor and n not in outputs and (n != "pad" or not keep_pad) and not _is_reduction(sch, n):
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
        if n == "pad" and keep_pad:
            _pad_copy(sch, b)
        elif n in names and n not in done:  # not a block made by scheduling (an init block)
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
    v = width_vector(_extent(sch, x), _extent(sch, rc) * _extent(sch, ry) * _extent(sch, rx),
                     _x_stride(sch, blk), lanes)
    if v:
        return _conv_packed_rows(sch, blk, epilogue, v)
    reg, ocn = conv_tiling(_extent(sch, cb), _extent(sch, x))
    cbo, cbi = sch.split(cb, [None, ocn])
    xo, xi = sch.split(x, [None, reg])
    first, second = (y, cbo) if _rows_outer(sch, blk) else (cbo, y)
    sch.reorder(n, first, second, xo, rc, ry, rx, cbi, xi, ci)
    outer = sch.fuse(n, first, second)
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


def width_vector(ow: int, k: int, stride: int, lanes: int) -> int:
    """Output columns per vector of the row-vector conv tile (0: take the channel-vector tile).
    Short reductions (k = in-channels x kh x kw, below WIDE_K) spend as much time writing their
    channel-vector tile to NCHW (a 16 x 14 transpose, scalar) as computing it: there a row of
    NCHW output (a divisor of the width that fills at least 3/4 of the lanes) is the vector
    instead, written contiguously, at the cost of the unused lanes. At stride 2 the padded
    input is split into column phases (`_phase_split`) so that the row is still one contiguous
    read per tap (ResNet-50's 7x7/2 stem alone: 1.46x -> 0.91x onnxruntime's time)."""
    if stride not in (1, 2) or k >= WIDE_K:
        return 0
    v = ow if ow <= lanes else _divisor(ow, lanes)
    return v if v * 4 >= lanes * 3 else 0


def _x_stride(sch, blk) -> int:
    """The conv's stride along the output width: the input column's coefficient of x."""
    b = sch.get(blk)
    xx = b.iter_vars[3].var
    for r in b.reads:
        if len(r.region) == 4:
            coef = sym.detect_linear_equation(r.region[3].min, [xx])
            if len(coef) == 2:
                return int(coef[0])
    return 0


def _conv_packed_rows(sch, blk, epilogue: str | None, v: int) -> None:
    """The row-vector tile: the accumulator laid out [n, cb, y, ci, x] so that `v` output
    columns are one vector, the packed block's output channels unrolled (one broadcast weight
    each), the epilogue vectorized along the row and stored contiguously."""
    sch.transform_layout(blk, ("write", 0), lambda n, cb, y, x, ci: (n, cb, y, ci, x))
    if _x_stride(sch, blk) == 2:
        _phase_split(sch)
    n, cb, y, x, ci, rc, ry, rx = sch.get_loops(blk)
    xo, xi = sch.split(x, [None, v])
    if _extent(sch, y) == 1:  # one row of positions (lower.py's flat_positions): tasks of <= 7 vectors
        chunk, xo = sch.split(xo, [None, _divisor(_extent(sch, xo), 7)])
        y = sch.fuse(y, chunk)
    first, second = (y, cb) if _rows_outer(sch, blk) else (cb, y)
    sch.reorder(n, first, second, xo, rc, ry, rx, ci, xi)
    sch.parallel(sch.fuse(n, first, second))
    sch.unroll(ci)
    sch.vectorize(xi)
    if epilogue:
        eb = sch.get_sblock(epilogue)
        sch.reverse_compute_at(eb, xo)
        el = sch.get_loops(eb)
        _, eci = sch.split(el[-1], [None, v])
        sch.vectorize(eci)
    init = sch.decompose_reduction(blk, rc)
    sch.vectorize(sch.get_loops(init)[-1])


def _rows_outer(sch, blk) -> bool:
    """Output rows outside the channel blocks when the input is the bigger operand: each input
    row is then read once for all the blocks while it is in L1 (a 56x56 map with 64-256
    channels), instead of the whole input once per block; the weights, smaller, stay in L2."""
    b = sch.get(blk)  # reads: the accumulator, the input, the weight (the compute's order, ir/ops/nn.py)
    sizes = [int(np.prod([int(d) for d in r.source.shape])) for r in b.reads]
    return len(sizes) == 3 and sizes[1] > sizes[2]


def _phase_split(sch) -> None:
    """A stride-2 conv's padded input stored as [n, c, y, x % 2, x // 2]: the even and the odd
    columns each contiguous, so a vector of outputs reads one contiguous run per tap. Without a
    padded copy (no padding) the input is read lane by lane."""
    pads = [b for b in sch.get_child_blocks(sch.get_sblock("root")) if sch.get(b).name_hint == "pad"]
    if not pads:
        return
    pad = pads[0]
    w = int(sch.get(pad).writes[0].source.shape[3])
    sch.transform_layout(pad, ("write", 0), lambda n, c, y, x: (n, c, y, x % 2, x // 2),
                         pad_value=0.0 if w % 2 else None)
    if w % 2 == 0:  # the copy's loops in the new order: its stores are contiguous
        sch.transform_block_layout(pad, lambda n, c, y, x: (n, c, y, x % 2, x // 2))


def _pad_copy(sch, blk) -> None:
    """A conv's padded input copy: parallel over rows, each row one plain loop (LLVM vectorizes
    what is contiguous); a vectorized row with the border tests per lane cost more than the conv."""
    loops = sch.get_loops(blk)
    sch.parallel(sch.fuse(*loops[:3]))


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
    if red and nsp == 4 and len(loops) == 6 and _x_stride(sch, blk) > 1:
        _strided_window(sch, blk, spatial, red)
        return
    if len(red) == 2 and nsp == 4 and _extent(sch, spatial[2]) == _extent(sch, spatial[3]) == 1:
        _plane_reduction(sch, blk, spatial, red, lanes)
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


def _strided_window(sch, blk, spatial, red) -> None:
    """A strided window reduction (max/avg pool with stride 2): per-lane reads of a strided row
    and border tests cost more than they save, so rows run in parallel and each output is a
    scalar loop over its window, unrolled."""
    sch.parallel(sch.fuse(*spatial[:3]))
    for r in red:
        sch.unroll(r)


def _plane_reduction(sch, blk, spatial, red, lanes: int) -> None:
    """A reduction over whole H x W planes (global avg/max pool): one serial chain of scalar adds
    per channel is bound by the add's latency (a 14x14 plane: 196 dependent adds). The plane,
    contiguous in NCHW, is reduced into `v` partial results instead (v lanes, vector loads; rfactor),
    and those are reduced at the end: parallel over channels."""
    k = sch.fuse(*red)
    v = _divisor(_extent(sch, k), lanes, prefer=(lanes, lanes // 2))
    par = sch.fuse(*spatial)
    sch.parallel(par)
    if v < 2 or v == _extent(sch, k):  # planes of <= 16 elements (or prime sizes): scalar sums
        return
    _, ki = sch.split(k, [None, v])
    try:
        rf = sch.rfactor(ki, factor_axis=4)
    except s_tir.ScheduleError:  # a reducer rfactor does not know: the split loops stay scalar
        return
    sch.compute_at(rf, par)
    lane, step = sch.get_loops(rf)[-2:]
    sch.reorder(step, lane)
    sch.vectorize(lane)
    init = sch.decompose_reduction(rf, step)
    sch.vectorize(sch.get_loops(init)[-1])
