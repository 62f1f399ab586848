"""cococ's x86 schedules of window computations over NCHW planes: depthwise and other unpacked
grouped convs, pools, and the generic schedule of everything else (schedule_x86.py dispatches here;
the packed conv and dense tiles are there).

Depthwise conv (one input channel per output channel, MobileNet's 3x3 layers) keeps NCHW: the 1x1
convs around it read and write NCHW, and a channel-blocked depthwise kernel would repack its input
and output per layer, a full extra pass over memory for 9 MACs per output. Instead: a register tile
of up to 8 output rows x one vector along the output width (the width's largest divisor that fits
the lanes), the taps unrolled, a broadcast weight per tap, the epilogue on the finished tile,
parallel over channels. Other grouped convs vectorize along the output row.
Everything else gets a generic schedule: inline the injective stages, vectorize the innermost
spatial loop by a divisor of the lanes, parallelize the fused outer spatial loops; strided
window reductions (pools) are scalar, unrolled windows over parallel rows instead, and
reductions over whole planes (global pools) keep a vector of partial results per channel.
"""
from __future__ import annotations

from tvm import s_tir, sym

STRIDED_DW_WIDTH = 48  # stride-2 depthwise convs with output rows this wide: _conv_depthwise_strided
# Plane reductions reading fewer elements run on one thread: a parallel loop is a fork and join
# of TVM's pool (about 3.4 us at 2 threads here), and a global pool streams its input too fast
# to win it back. 2 threads, fastest of many calls: SqueezeNet's 1000x14x14 pool 22.8 -> 13.1 us,
# EfficientNet-B0's squeeze-excite pools (33k-188k elements) 0.34-0.57x. (Element-wise kernels
# and concats of that size did not gain as a rule: a sigmoid on 7x7 planes was 1.4-1.8x slower.)
PARALLEL_PLANES = 256 * 1024

def _extent(sch, loop) -> int:
    return int(sch.get(loop).extent)


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


def dw_plain_rows(stride: int, ow: int, lanes: int) -> bool:
    """Whether a depthwise conv takes LLVM-vectorized rows (`_conv_depthwise_strided`) instead of
    the register tile: wide stride-2 rows (TVM's tile reads their lanes one by one) and wide
    stride-1 rows that are not whole vectors (56: the tile's 14 of 16 lanes, and its padded copy,
    cost more; MobileNet v2's 144-channel 56x56 layer alone 0.90-0.95x). Whole-vector rows (112:
    1.37x as rows) and narrow ones (28: 2.2-2.6x) keep the tile."""
    return (stride == 2 and ow >= STRIDED_DW_WIDTH) or (stride == 1 and ow >= STRIDED_DW_WIDTH and ow % lanes != 0)


def dw_tiling(oh: int, ow: int, lanes: int, stride: int = 1, kh: int = 3) -> tuple[int, int]:
    """(rows, v) of a depthwise register tile: v output columns per vector (the largest divisor
    of the width that fits the lanes: 56 -> 14, not 4; at stride 1 a row of up to two vectors'
    width is one vector, which LLVM splits: 28 -> 16 + 12, where two of 14 were 8 + 4 + 2 each),
    `rows` output rows accumulated at once (up to 8 when a row is one vector, as on 7x7 and 14x14
    maps; up to 7 when it is two registers and the window 3 high; else up to 4). MobileNet v2's
    28x28 stride-1 layers alone, one thread: 0.93-0.95x for the 28-lane row, 0.96-0.99x more for
    7 rows instead of 4; EfficientNet-B0's 5x5 one 0.92x with 4 rows, 1.07x with 7."""
    v = ow if ow <= lanes else _divisor(ow, lanes)
    if (v < 4 or v < lanes and stride == 1) and ow <= 2 * lanes:  # one wide vector, split by LLVM
        v = ow
    if ow <= lanes:
        rows = _divisor(oh, 8)
    else:  # a row of two registers (28 wide): up to 7 rows, 14 accumulators
        rows = _divisor(oh, 7, prefer=(7, 4, 2)) if v > lanes and kh <= 3 else _divisor(oh, 4, prefer=(4, 2))
    return rows, v


def _conv_depthwise(sch, name: str, epilogue: str | None, lanes: int) -> None:
    """Depthwise conv (one input channel per output channel): a register tile of `rows` output
    rows x one vector of `v` output columns per step, the 3x3 (kh x kw) taps unrolled, each a
    vector load of the input row (unaligned, contiguous for stride 1) x a broadcast weight; the
    fused epilogue (batchnorm, relu6, ...) runs on the finished tile; parallel over channels.
    At stride 2 the padding stays inlined (a bounds test per tap): a padded copy is one more pass
    over memory for a kernel that does only 9 MACs per output (a per-channel padded copy, even/odd
    columns split, was 2x slower: the copy is scalar). Wide stride-2 rows, and wide stride-1 rows
    that are not whole vectors, take `_conv_depthwise_strided` instead (`dw_plain_rows`)."""
    blk = sch.get_sblock(name)
    n, co, y, x, rc, ry, rx = sch.get_loops(blk)
    if dw_plain_rows(_x_stride(sch, blk), _extent(sch, x), lanes):
        return _conv_depthwise_strided(sch, blk, name, epilogue)
    rows, v = dw_tiling(_extent(sch, y), _extent(sch, x), lanes, _x_stride(sch, blk), _extent(sch, ry))
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


def _conv_depthwise_strided(sch, blk, name: str, epilogue: str | None) -> None:
    """Depthwise conv with output rows of >= STRIDED_DW_WIDTH (`dw_plain_rows`): the output row is
    a plain loop that LLVM vectorizes itself (at stride 2 reading the input as whole vectors
    deinterleaved by shuffles, as `_strided_window`), the taps unrolled in its body; the rows and columns whose
    windows cross the border are split off with their tests (`_interior`); the epilogue runs on
    the channel's finished plane (parallel over channels). MobileNet v2's 96-channel 112 -> 56
    layer alone, one thread: 326 -> 168 us (onnxruntime's NCHWc kernel: 119). On narrower rows
    LLVM's vector loop barely runs (28 -> 14 wide: 80 -> 334 us), so they keep the tile above,
    its lanes read one by one."""
    n, co, y, x, rc, ry, rx = sch.get_loops(blk)
    chan = sch.fuse(n, co)
    sch.parallel(chan)
    for r in (rc, ry, rx):
        sch.unroll(r)
    if epilogue and epilogue != name:  # before the partition: the conv is still one block
        sch.reverse_compute_at(sch.get_sblock(epilogue), chan)
    ys, xs = _interior(sch, blk, y, 2), _interior(sch, blk, x, 3)
    mid_y = y
    if ys is not None:
        parts = sch.loop_partition(y, _partition(ys, _extent(sch, y)))
        mid_y = parts[1 if ys[0] else 0]
    if xs is not None:
        xl = sch.get_loops(sch.get_child_blocks(mid_y)[0])[-4]  # [..., x, rc, ry, rx]
        sch.loop_partition(xl, _partition(xs, _extent(sch, xl)))


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


def _generic(sch, blk, lanes: int) -> None:
    """Parallel over the outer spatial loops, vectorized along the innermost one (by a divisor of
    the lanes). Not one fused, vectorized loop: that puts an int64 div/mod per lane in the body.
    Reductions (pools, softmax) move below the outer loops so the innermost spatial loop still
    vectorizes: max_pool reads a row of windows per vector."""
    block = sch.get(blk)
    loops = sch.get_loops(blk)
    if not loops or len(sch.get_child_blocks(loops[0])) > 1:  # placed in another block's loop
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
    """A strided window reduction (max/avg pool with stride 2): rows run in parallel, each output's
    window is unrolled, and the output row is a plain loop that LLVM vectorizes itself (its
    interleaved-load vectorizer reads the stride-2 row as whole vectors and deinterleaves them
    with shuffles). That needs a body without border tests: the rows and columns whose windows
    cross the border (padding, ceil mode) are split off (`loop_partition`, `_interior`) and keep
    the tests. One thread, alone: SqueezeNet's 3x3/2 ceil-mode pool on 56x56 110 -> 51 us, ResNet's
    padded one on 112x112 677 -> 97 us; 28 -> 14 unchanged (63 us). A
    vector of stride-2 lanes written by TVM instead (one load per lane, border test per lane)
    was 10x slower than scalar windows (SqueezeNet's pool3 1.08 -> 0.11 ms)."""
    for r in red:
        sch.unroll(r)
    n, c, y, x = spatial
    ys, xs = _interior(sch, blk, y, 2), _interior(sch, blk, x, 3)
    if ys is None and xs is None:  # every window inside (DenseNet's 2x2/2 pools): rows in parallel
        rows = sch.fuse(n, c, y)
        sch.parallel(rows)
        _join_consumer(sch, blk, rows)  # an avg pool's division, row by row
        return
    chan = sch.fuse(n, c)
    if ys is not None:
        parts = sch.loop_partition(y, _partition(ys, _extent(sch, y)))
        y = parts[1 if ys[0] else 0]
    if xs is not None:
        x = sch.get_loops(sch.get_child_blocks(y)[0])[-3]  # [..., x, ry, rx]
        sch.loop_partition(x, _partition(xs, _extent(sch, x)))
    sch.parallel(chan)


def _partition(part: tuple[int, int], n: int) -> list:
    """loop_partition's factors that cut [0, n) at the interior part (first, count)."""
    lo, mid = part  # the last part's size is left to TVM (None): it refuses factors that sum to n
    return [lo, None] if lo + mid == n else [p for p in (lo, mid) if p] + [None]


def _interior(sch, blk, loop, axis: int) -> tuple[int, int] | None:
    """(first, count) of the outputs along `axis` (2: rows, 3: columns) of a window computation
    whose windows lie inside the input (no border test needed); None where nothing needs
    splitting (every window inside) or the read is not linear. Columns: fewer than 16 inside are
    rounded down to a multiple of 8 (LLVM's vector width here): LLVM left a short loop scalar
    (a 3x3/2 pool on 28x28: 63 -> 176 us), where one vector and a bordered tail kept 63."""
    b = sch.get(blk)
    out_var = b.iter_vars[axis].var
    ri = len(b.iter_vars) - 4 + axis  # its window's axis: pools [n, c, y, x, ry, rx], convs [..., rc, ry, rx]
    red_var, k = b.iter_vars[ri].var, int(b.iter_vars[ri].dom.extent)
    src = next((r for r in b.reads if len(r.region) == 4 and not r.source.same_as(b.writes[0].source)), None)
    if src is None:
        return None
    coef = sym.detect_linear_equation(src.region[axis].min, [out_var, red_var])
    if len(coef) != 3:
        return None
    s, d, off = (int(cf) for cf in coef)
    size, n = int(src.source.shape[axis]), _extent(sch, loop)
    inside = [o for o in range(n) if s * o + off >= 0 and s * o + d * (k - 1) + off <= size - 1]
    if not inside or len(inside) == n:
        return None
    lo = inside[0]
    mid = len(inside) if axis == 2 or len(inside) >= 16 else len(inside) // 8 * 8
    return (lo, mid) if mid and (lo or mid < n) else None


def _plane_reduction(sch, blk, spatial, red, lanes: int) -> None:
    """A reduction over whole H x W planes (global avg/max pool): one serial chain of scalar adds
    per channel is bound by the add's latency (a 14x14 plane: 196 dependent adds). The plane,
    contiguous in NCHW, is reduced into `v` partial results instead (v lanes, vector loads; rfactor),
    and those are reduced at the end: parallel over channels from PARALLEL_PLANES elements read."""
    k = sch.fuse(*red)
    v = _divisor(_extent(sch, k), lanes, prefer=(lanes, lanes // 2))
    par = sch.fuse(*spatial)
    if _extent(sch, par) * _extent(sch, k) >= PARALLEL_PLANES:
        sch.parallel(par)
    if 2 <= v < _extent(sch, k):  # else planes of <= 16 elements (or prime sizes): scalar sums
        _vector_partials(sch, k, v, par)
    _join_consumer(sch, blk, par)


def _vector_partials(sch, k, v: int, par) -> None:
    """`_plane_reduction`'s v partial sums: the reduction loop `k` split by v and rfactored, the
    partials' block computed per channel (in `par`) with its lanes vectorized."""
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


def _join_consumer(sch, blk, par) -> None:
    """The one element-wise stage after a window reduction (an avg pool's division) runs in the
    reduction's loop `par`, on each channel or row as it is finished, instead of a parallel loop
    of its own: each parallel loop is one fork and join of TVM's pool, about 3.4 us at 2 threads
    here (a 64 x 64 copy: 0.25 us serial, 3.4 us parallel), as much as EfficientNet-B0's whole
    squeeze-excite pools on 7x7 planes."""
    cs = sch.get_consumers(blk)
    if len(cs) != 1 or any(iv.iter_type != 0 for iv in sch.get(cs[0]).iter_vars):
        return
    try:
        sch.reverse_compute_at(cs[0], par)
    except s_tir.ScheduleError:  # not over the same channels (a reshape after the pool): its own loop
        return

