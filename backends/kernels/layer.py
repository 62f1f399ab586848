"""Sparse FC and conv layers as the C executor runs them: a format's loop with the layer's epilogue.

mv.py and mm.py have the bare sparse matrix-vector / matrix-matrix loops (int32 accumulators
out). A layer step must produce what the dense kernel of the same layer produces, so these are
the same loops with the epilogue fused in (and, for conv, the im2col of PB output positions at
a time, im2col.block) and the activation tensor as the executor lays it out. backends/mcu
(sparse_kernels.py) wraps them as its Kernels and gives the q15 epilogue: the dense q15 path's
requantisation (an `Epilogue`: the TVMScript of the stored int16 from an int32 accumulator and
a row). FC:

f32   y[i] = relu?(b[i] + sum_k values[k] * x[indices[k]]) (csr), or per group of `width`
      consecutive columns starting at JA' (simd_group; the M4 has one f32 lane, so a group is
      `width` scalar multiply-adds behind one index load). The activation holds `cols` floats
      and nothing after it is ours to read: when cols is not a multiple of `width`, the padded
      tail of a group is guarded (its weight is zero, but 0 * garbage can be NaN).
q15   acc = b_q[i] + sum (SMLAD of one A' word and one x word per group, simd_group width 2,
      whose `indices` are JA' / 2 — the word index, halved at build time: no shift per group;
      or one halfword MLA per element, csr), then y[i] = epilogue(acc) (the dense q15 kernel's
      requantisation: per-row multiplier m and shift sh, saturation, ReLU as the lower clamp).
      The q15 activation tensor is word-padded in the arena, and a padded group's weight lane
      is zero, so the word read of the tail needs no guard.

Accumulators live in y (restrict: gcc keeps them in a register) or in a small TVM local
buffer (q15: y is int16, the sum is int32), as in the other q15 kernels. Written as TVMScript
text, as backends/mcu/qkernels.py's kernels, because the signature depends on bias / sizes and
the epilogue is TVMScript text shared with the dense q15 kernels.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from tvm.script import from_source

from cococ.backends.kernels import im2col
from cococ.backends.kernels.layout import nonempty

ACLE = ("<arm_acle.h>",)  # the q15 kernels call __smlad


@dataclass(frozen=True)
class Epilogue:
    """What a q15 layer kernel does with a row's int32 sum: `store(acc, row)` is the TVMScript of
    the int16 output (reading the kernel's m / sh buffers); `tag` ends the kernel's doc line."""
    store: Callable[[str, str], str]
    tag: str = ""


@dataclass(frozen=True)
class Fused:
    """A layer kernel: the PrimFunc, its arguments (name, dtype, written), a doc line, C includes."""
    prim: object
    args: list
    doc: str
    includes: tuple = ()


def _stored_loop(mac, indent: str, unroll: bool) -> str:
    """TVMScript of the loop over row i's stored entries k = indptr[i] .. indptr[i+1]-1; with
    `unroll`, by two (pairs, then an odd last one; the count is data-dependent). On the M4 the
    loop's counter, compare and taken branch cost about as much as a q15 group's SMLAD; unrolled,
    the q15 simd_group FC of the tests went from 174,280 to 153,641 cycles (fc1, 784->300, 90%).
    The f32 kernels got slower unrolled (265,645 -> 299,951: gcc runs out of registers for the
    recomputed addresses), so they keep the plain loop."""
    body = lambda k: "".join(f"{indent}    {line}\n" for line in mac(k))  # noqa: E731
    s0 = 'T.Cast("int32", indptr[i])'  # inline, not a TVMScript variable (that would be a buffer);
    cnt = f'(T.Cast("int32", indptr[i + 1]) - {s0})'  # gcc loads each once per row
    if not unroll:
        return f'{indent}for k in range({s0}, T.Cast("int32", indptr[i + 1])):\n' + body("k")
    return (f"{indent}for k2 in range(T.shift_right({cnt}, 1)):\n" + body(f"{s0} + k2 * 2")
            + body(f"{s0} + k2 * 2 + 1")
            + f"{indent}if T.bitwise_and({cnt}, 1) == 1:\n" + body(f"{s0} + {cnt} - 1"))


def fc_f32(fmt: str, rows: int, cols: int, stored: int, width: int, index: str,
           bias: bool, relu: bool) -> Fused:
    """f32 sparse FC, batch 1: x[cols] -> y[rows]; `stored` = nnz (csr) or groups (simd_group)."""
    nvals = nonempty(stored) * width

    def mac(k: str) -> list[str]:
        col = f'T.Cast("int32", indices[{k}])'
        if fmt == "csr":
            return [f"y[i] = y[i] + values[{k}] * x[{col}]"]
        xe = f"x[{col} + l]"
        if cols % width:
            xe = f'T.if_then_else({col} + l < {cols}, {xe}, T.float32(0))'
        return [f"for l in T.unroll({width}):", f"    y[i] = y[i] + values[({k}) * {width} + l] * {xe}"]
    init = "b[i]" if bias else "T.float32(0)"
    post = "        y[i] = T.max(y[i], T.float32(0))" if relu else ""
    barg = f'b: T.Buffer(({rows},), "float32"), ' if bias else ""
    src = f'''
@T.prim_func
def f(x: T.Buffer(({cols},), "float32"), values: T.Buffer(({nvals},), "float32"),
      indptr: T.Buffer(({rows + 1},), "{index}"), indices: T.Buffer(({nonempty(stored)},), "{index}"),
      {barg}y: T.Buffer(({rows},), "float32")):
    T.func_attr({{"tirx.noalias": True}})
    for i in range({rows}):
        y[i] = {init}
{_stored_loop(mac, "        ", False)}{post}
'''
    args = [("x", "float32", False), ("values", "float32", False), ("indptr", index, False),
            ("indices", index, False)] + ([("b", "float32", False)] if bias else []) + [("y", "float32", True)]
    what = "csr" if fmt == "csr" else f"simd_group w{width}"
    return Fused(from_source(src), args, f"{what} f32 FC {cols}->{rows}, {stored} stored"
                 + (" +bias" if bias else "") + (" +relu" if relu else ""))


def fc_q15(fmt: str, rows: int, cols: int, stored: int, index: str, epilogue: Epilogue) -> Fused:
    """q15 sparse FC, batch 1, accumulators started at the row's bias, then `epilogue`."""
    cp = cols + cols % 2
    if fmt == "csr":
        vdecl, vals = "", nonempty(stored)
        mac = lambda k: [f'acc[0] = acc[0] + T.Cast("int32", values[{k}]) '  # noqa: E731
                         f'* T.Cast("int32", x[T.Cast("int32", indices[{k}])])']
    else:
        vdecl = f'\n    VV = T.decl_buffer(({nonempty(stored)},), "int32", data=values.data)'
        vals = 2 * nonempty(stored)
        mac = lambda k: [f'acc[0] = T.call_pure_extern("int32", "__smlad", '  # noqa: E731
                         f'XX[T.Cast("int32", indices[{k}])], VV[{k}], acc[0])']
    src = f'''
@T.prim_func(s_tir=True)
def f(x: T.Buffer(({cp},), "int16"), values: T.Buffer(({vals},), "int16"),
      indptr: T.Buffer(({rows + 1},), "{index}"), indices: T.Buffer(({nonempty(stored)},), "{index}"),
      b: T.Buffer(({rows},), "int32"), m: T.Buffer(({rows},), "int32"), sh: T.Buffer(({rows},), "int32"),
      y: T.Buffer(({rows},), "int16")):
    T.func_attr({{"tirx.noalias": True}})
    XX = T.decl_buffer(({cp // 2},), "int32", data=x.data){vdecl}
    acc = T.sblock_alloc_buffer((1,), "int32")
    for i in range({rows}):
        acc[0] = b[i]
{_stored_loop(mac, "        ", True)}        y[i] = {epilogue.store("acc[0]", "i")}
'''
    args = [("x", "int16", False), ("values", "int16", False), ("indptr", index, False), ("indices", index, False),
            ("b", "int32", False), ("m", "int32", False), ("sh", "int32", False), ("y", "int16", True)]
    what = "csr (MLA)" if fmt == "csr" else "simd_group w2 (SMLAD)"
    return Fused(from_source(src), args, f"{what} q15 FC {cols}->{rows}, {stored} stored{epilogue.tag}", ACLE)


# ---- sparse conv: im2col of a block of positions + the sparse matrix-matrix loop + epilogue ---------

PB = 4  # output positions per block: each stored weight (group) is loaded once for PB MACs (mm.py)


def _conv_blocks(npos: int, body) -> str:
    """The position loop: full blocks of PB, then one block of the npos % PB left over."""
    src = ""
    if npos // PB:
        src += f"        for p0 in range({npos // PB}):\n" + body(f"p0 * {PB}", PB)
    if npos % PB:
        src += "        for pt in range(1):\n" + body(str(npos // PB * PB), npos % PB)
    return src


def conv_q15(fmt: str, x_shape, rows: int, y_shape, attrs, cols: int, stored: int, index: str,
             epilogue: Epilogue) -> Fused:
    """q15 sparse conv (groups 1): per block of PB output positions, im2col into `col` (XT[PB, k2]
    int16, k2 = cols rounded even: mm.py's q15 layout), then per weight row the stored groups
    (one A' word + one halved JA' index -> PB SMLADs) or csr entries (one value + one index -> PB MLAs)
    into PB accumulators started at the row's bias, then the epilogue (the dense q15 kernel's
    requantisation and ReLU clamp: integer sums are exact, so the output equals the dense q15
    conv bit for bit)."""
    (n, c, h, w), (_, _, oh, ow) = x_shape, y_shape
    k2, npos = cols + cols % 2, oh * ow
    if fmt == "csr":
        vdecl, vals = "", nonempty(stored)
        mac = lambda k, cnt: [f'v[0] = T.Cast("int32", values[{k}])', f'v[1] = T.Cast("int32", indices[{k}])',  # noqa: E731
                              f"for q in T.unroll({cnt}):",
                              f'    acc[q] = acc[q] + v[0] * T.Cast("int32", col[q * {k2} + v[1]])']
    else:
        vdecl, vals = f'\n    VV = T.decl_buffer(({nonempty(stored)},), "int32", data=values.data)', 2 * nonempty(stored)
        mac = lambda k, cnt: [f"v[0] = VV[{k}]", f'v[1] = T.Cast("int32", indices[{k}])',  # noqa: E731
                              f"for q in T.unroll({cnt}):",
                              f'    acc[q] = T.call_pure_extern("int32", "__smlad", v[0], CC[q * {k2 // 2} + v[1]], acc[q])']

    def body(p0: str, cnt: int) -> str:
        ind = " " * 16
        return (im2col.block(x_shape, y_shape, attrs, k2, cols, cnt, p0, "T.int16(0)")
                + f"            for i in range({rows}):\n"
                + f"{ind}for q in T.unroll({cnt}):\n{ind}    acc[q] = b[i]\n"
                + _stored_loop(lambda k: mac(k, cnt), ind, False)
                + f"{ind}for q in T.unroll({cnt}):\n"
                + f"{ind}    y[nn * {rows * npos} + i * {npos} + {p0} + q] = "
                + epilogue.store("acc[q]", "i") + "\n")
    src = f'''
@T.prim_func(s_tir=True)
def f(x: T.Buffer(({n * c * h * w},), "int16"), values: T.Buffer(({vals},), "int16"),
      indptr: T.Buffer(({rows + 1},), "{index}"), indices: T.Buffer(({nonempty(stored)},), "{index}"),
      b: T.Buffer(({rows},), "int32"), m: T.Buffer(({rows},), "int32"), sh: T.Buffer(({rows},), "int32"),
      col: T.Buffer(({PB * k2},), "int16"), y: T.Buffer(({n * rows * npos},), "int16")):
    T.func_attr({{"tirx.noalias": True}})
    CC = T.decl_buffer(({PB * k2 // 2},), "int32", data=col.data){vdecl}
    acc = T.sblock_alloc_buffer(({PB},), "int32")
    v = T.sblock_alloc_buffer((2,), "int32")
    for nn in range({n}):
{_conv_blocks(npos, body)}'''
    args = [("x", "int16", False), ("values", "int16", False), ("indptr", index, False), ("indices", index, False),
            ("b", "int32", False), ("m", "int32", False), ("sh", "int32", False), ("col", "int16", True),
            ("y", "int16", True)]
    what = "csr (MLA)" if fmt == "csr" else "simd_group w2 (SMLAD)"
    return Fused(from_source(src), args, f"{what} q15 conv2d {list(x_shape)}->{list(y_shape)} (im2col x{PB} + "
                 f"sparse MM), {stored} stored{epilogue.tag}", ACLE)


def conv_f32(fmt: str, x_shape, rows: int, y_shape, attrs, cols: int, stored: int, width: int,
             index: str, bias: bool, relu: bool) -> Fused:
    """f32 sparse conv (groups 1): im2col of PB positions into col[PB, cp] (cp = cols padded to
    the group width, the pad zeroed: no guard in the loop), then per row PB accumulators over the
    stored weights (one index load per csr entry or simd_group group), bias, ReLU."""
    (n, c, h, w), (_, _, oh, ow) = x_shape, y_shape
    cp, npos = (-(-cols // width) * width if fmt == "simd_group" else cols), oh * ow

    def mac(k: str, cnt: int) -> list[str]:
        col0 = f'T.Cast("int32", indices[{k}])'
        if fmt == "csr":
            return [f"for q in T.unroll({cnt}):", f"    acc[q] = acc[q] + values[{k}] * col[q * {cp} + {col0}]"]
        return [f"for l in T.unroll({width}):", f"    for q in T.unroll({cnt}):",
                f"        acc[q] = acc[q] + values[({k}) * {width} + l] * col[q * {cp} + {col0} + l]"]

    def body(p0: str, cnt: int) -> str:
        ind = " " * 16
        out = "T.max(acc[q], T.float32(0))" if relu else "acc[q]"
        return (im2col.block(x_shape, y_shape, attrs, cp, cols, cnt, p0, "T.float32(0)")
                + f"            for i in range({rows}):\n"
                + f"{ind}for q in T.unroll({cnt}):\n{ind}    acc[q] = {'b[i]' if bias else 'T.float32(0)'}\n"
                + _stored_loop(lambda k: mac(k, cnt), ind, False)
                + f"{ind}for q in T.unroll({cnt}):\n"
                + f"{ind}    y[nn * {rows * npos} + i * {npos} + {p0} + q] = {out}\n")
    barg = f'b: T.Buffer(({rows},), "float32"), ' if bias else ""
    src = f'''
@T.prim_func(s_tir=True)
def f(x: T.Buffer(({n * c * h * w},), "float32"), values: T.Buffer(({nonempty(stored) * width},), "float32"),
      indptr: T.Buffer(({rows + 1},), "{index}"), indices: T.Buffer(({nonempty(stored)},), "{index}"),
      {barg}col: T.Buffer(({PB * cp},), "float32"), y: T.Buffer(({n * rows * npos},), "float32")):
    T.func_attr({{"tirx.noalias": True}})
    acc = T.sblock_alloc_buffer(({PB},), "float32")
    for nn in range({n}):
{_conv_blocks(npos, body)}'''
    args = [("x", "float32", False), ("values", "float32", False), ("indptr", index, False),
            ("indices", index, False)] + ([("b", "float32", False)] if bias else []) + [
            ("col", "float32", True), ("y", "float32", True)]
    what = "csr" if fmt == "csr" else f"simd_group w{width}"
    return Fused(from_source(src), args, f"{what} f32 conv2d {list(x_shape)}->{list(y_shape)} (im2col x{PB} + "
                 f"sparse MM), {stored} stored" + (" +bias" if bias else "") + (" +relu" if relu else ""))


