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
vectors instead of transposing the tile with scalar stores. Widths with no divisor that fills
the lanes (SqueezeNet's 113) take it on their whole vectors and a scalar tail (`row_tail`).
A conv's padded copy ("pad") is kept and run as plain parallel rows; at stride 2 it is stored
as even/odd column phases.
A 1x1 conv that lower.py hands over as one row of positions ([N, C, 1, H*W], `flat_positions`)
takes the row-vector tile too, its parallel tasks being runs of up to 7 vectors of that row.
Depthwise and other grouped convs whose weights are not packed, pools and everything else are
scheduled by schedule_x86_window.py (window computations over NCHW planes: why there).
"""
from __future__ import annotations

import numpy as np
import tvm
from tvm import s_tir, tirx
from tvm.ir.expr import TensorLoad

from cococ.backends.tvm.schedule_x86_window import (_consumer, _conv_depthwise, _conv_direct, _divisor,
                                                    _extent, _generic, _x_stride, dw_plain_rows)

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
    keep_pad = anchor == "conv_packed" or (anchor == "conv_direct" and _dw_over_copy(sch, anchor, lanes))
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

def _is_reduction(sch, name: str) -> bool:
    return any(iv.iter_type == 2 for iv in sch.get(sch.get_sblock(name)).iter_vars)


def _is_depthwise(sch, name: str) -> bool:
    """A direct conv whose channel reduction has extent 1 (depthwise; the schedule above)."""
    return _extent(sch, sch.get_loops(sch.get_sblock(name))[4]) == 1


def _dw_over_copy(sch, name: str, lanes: int) -> bool:
    """A depthwise conv that reads a padded copy of its input: stride 1, in the register tile
    (rows taken as LLVM-vectorized loops test their borders instead, `dw_plain_rows`)."""
    blk = sch.get_sblock(name)
    ow = _extent(sch, sch.get_loops(blk)[3])
    return _is_depthwise(sch, name) and _x_stride(sch, blk) == 1 and not dw_plain_rows(1, ow, lanes)


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
    k = _extent(sch, rc) * _extent(sch, ry) * _extent(sch, rx)
    tail = row_tail(_extent(sch, x), k, _x_stride(sch, blk), lanes)
    if tail:
        return _conv_packed_rows_tail(sch, blk, epilogue, lanes, tail)
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
        _tile_epilogue_unrolled(sch, eb, lanes)
    init = sch.decompose_reduction(blk, rc)
    iloops = sch.get_loops(init)
    sch.vectorize(iloops[-1])


def _tile_epilogue_unrolled(sch, eb, lanes: int) -> None:
    """The channel-vector tile's epilogue, at the tile ([channels, columns] below the two outer
    loops), unrolled so that every accumulator index is a constant: LLVM then keeps the tile in
    registers instead of storing it and reading it back. Vectorized along the packed channels
    (the accumulator's contiguous axis; the NCHW stores are scalar), not unrolled lane by lane:
    a SiLU epilogue (EfficientNet-B0's 192 -> 1152 1x1s on 7x7) took 1.10-1.17x the time of the
    loop version as scalar code and 0.9x as vectors. An epilogue that only copies the tile to NCHW
    (no fused layer: DenseNet's 3x3 convs before a concat) keeps its loop, which LLVM handles
    better than either (unrolled: 1.03-1.14x)."""
    body = sch.get(eb).body
    if isinstance(body, tirx.BufferStore) and isinstance(body.value, TensorLoad):  # a load: plain copy
        return
    el = sch.get_loops(eb)[2:]
    if len(el) == 2 and _extent(sch, el[0]) % lanes == 0:
        co, ci = sch.split(el[0], [None, lanes])
        sch.reorder(co, el[1], ci)
        el = [co, el[1]]
        sch.vectorize(ci)
    for loop in el:
        sch.unroll(loop)


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


def row_tail(ow: int, k: int, stride: int, lanes: int) -> int:
    """Columns left after whole vectors where a short-reduction conv's width has no divisor that
    fills the lanes (SqueezeNet's 113-wide stem: 7 vectors of 16 + 1), else 0: those convs take
    the row-vector tile on the whole vectors and a scalar tail (`_conv_packed_rows_tail`)."""
    if stride not in (1, 2) or k >= WIDE_K or ow <= lanes or width_vector(ow, k, stride, lanes):
        return 0
    return ow % lanes


def _conv_packed_rows_tail(sch, blk, epilogue: str | None, lanes: int, tail: int) -> None:
    """The row-vector tile on a width of whole vectors + `tail` columns: the output row is split
    (`loop_partition`) into the vectors (the row-vector tile) and the tail (scalar, its channels
    unrolled); the epilogue runs on the finished row of the block's channels. SqueezeNet's
    3 -> 64, 3x3/2 stem + relu (113 wide), alone, one thread, best of 3 processes x 300 runs:
    711 -> 563 us (the channel-vector tile before; onnxruntime's NCHWc kernel 462 us)."""
    sch.transform_layout(blk, ("write", 0), lambda n, cb, y, x, ci: (n, cb, y, ci, x))
    if _x_stride(sch, blk) == 2:
        _phase_split(sch)
    n, cb, y, x, ci, rc, ry, rx = sch.get_loops(blk)
    first, second = (y, cb) if _rows_outer(sch, blk) else (cb, y)
    sch.reorder(n, first, second, x, ci, rc, ry, rx)
    row = sch.fuse(n, first, second)
    sch.parallel(row)
    if epilogue:
        sch.reverse_compute_at(sch.get_sblock(epilogue), row)
    main, rest = sch.loop_partition(x, [_extent(sch, x) - tail, None])
    mb = sch.get_child_blocks(main)[0]
    xm, ci, rc, ry, rx = sch.get_loops(mb)[-5:]
    xo, xi = sch.split(xm, [None, lanes])
    sch.reorder(xo, rc, ry, rx, ci, xi)
    sch.unroll(ci)
    sch.vectorize(xi)
    init = sch.decompose_reduction(mb, rc)
    sch.vectorize(sch.get_loops(init)[-1])
    tb = sch.get_child_blocks(rest)[0]
    xt, ci, rc, ry, rx = sch.get_loops(tb)[-5:]
    sch.reorder(xt, rc, ry, rx, ci)
    sch.unroll(ci)


def _conv_packed_rows(sch, blk, epilogue: str | None, v: int) -> None:
    """The row-vector tile: the accumulator laid out [n, cb, y, ci, x] so that `v` output
    columns are one vector, the packed block's output channels unrolled (one broadcast weight
    each), the epilogue vectorized along the row and stored contiguously, its channels unrolled:
    with every accumulator index a constant LLVM keeps the tile in registers (a loop over the
    channels made it store the 16 accumulators, zero them through memory and read them back).
    MobileNet v2's 1x1 convs alone, one thread: 16 -> 96 on 112x112 0.61x, 32 -> 32 0.77-0.81x,
    24 -> 144 on 56x56 0.83-0.90x, 64 -> 384 on 28x28 0.95-0.97x (shorter reductions gain most)."""
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
        sch.unroll(el[-2])
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
    padded copy (no padding) the input is read lane by lane (a copy made for it, a cache_read,
    measured no faster on SqueezeNet's 227-wide stem and slower on small ones)."""
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
