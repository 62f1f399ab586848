"""Sparse FC layers for the Cortex-M4: csr / simd_group matrix-vector with the layer's epilogue.

backends/sparse/tir.py has the bare sparse matrix-vector loops (int32 accumulators out). An
executor step must produce what the dense kernel of the same layer produces, so these are the
same loops with the dense path's epilogue fused in, and take the activation tensor as the
executor lays it out:

f32   y[i] = relu?(b[i] + sum_k values[k] * x[indices[k]]) (csr), or per group of `width`
      consecutive columns starting at JA' (simd_group; the M4 has one f32 lane, so a group is
      `width` scalar multiply-adds behind one index load). The activation holds `cols` floats
      and nothing after it is ours to read: when cols is not a multiple of `width`, the padded
      tail of a group is guarded (its weight is zero, but 0 * garbage can be NaN).
q15   acc = b_q[i] + sum (SMLAD of one A' word and one x word per group, simd_group width 2;
      or one halfword MLA per element, csr), then y[i] = requant(acc) exactly as the dense
      q15 kernel (qkernels.requant: per-row multiplier and shift, the fast SMULL form when
      every shift allows it, saturation, ReLU as the lower clamp). The q15 activation tensor is word-padded in the arena, and a padded
      group's weight lane is zero, so the word read of the tail needs no guard.

Accumulators live in y (restrict: gcc keeps them in a register) or in a one-element TVM
local buffer (q15: y is int16, the sum is int32), as in the other q15 kernels. Written as
TVMScript text, like qkernels.py, because the signature depends on bias / ReLU / sizes.
"""
from __future__ import annotations

from cococ.backends.mcu.codegen import Kernel
from cococ.backends.mcu.qkernels import _parse, requant


def _n(v: int) -> int:
    return max(1, int(v))


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


def fc_f32(name: str, fmt: str, rows: int, cols: int, stored: int, width: int, index: str,
           bias: bool, relu: bool) -> Kernel:
    """f32 sparse FC, batch 1: x[cols] -> y[rows]; `stored` = nnz (csr) or groups (simd_group)."""
    nvals = _n(stored) * width

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
      indptr: T.Buffer(({rows + 1},), "{index}"), indices: T.Buffer(({_n(stored)},), "{index}"),
      {barg}y: T.Buffer(({rows},), "float32")):
    T.func_attr({{"tirx.noalias": True}})
    for i in range({rows}):
        y[i] = {init}
{_stored_loop(mac, "        ", False)}{post}
'''
    args = [("x", "float32", False), ("values", "float32", False), ("indptr", index, False),
            ("indices", index, False)] + ([("b", "float32", False)] if bias else []) + [("y", "float32", True)]
    what = "csr" if fmt == "csr" else f"simd_group w{width}"
    return Kernel(name, _parse(src), args, origin="tvm-tir",
                  meta={"doc": f"{what} f32 FC {cols}->{rows}, {stored} stored" + (" +bias" if bias else "")
                        + (" +relu" if relu else "")})


def fc_q15(name: str, fmt: str, rows: int, cols: int, stored: int, index: str, relu: bool,
           fast: bool) -> Kernel:
    """q15 sparse FC, batch 1, with the dense q15 kernel's bias and requantisation."""
    cp = cols + cols % 2
    lo = 0 if relu else -32768
    if fmt == "csr":
        vdecl, vals = "", _n(stored)
        mac = lambda k: [f'acc[0] = acc[0] + T.Cast("int32", values[{k}]) '  # noqa: E731
                         f'* T.Cast("int32", x[T.Cast("int32", indices[{k}])])']
    else:
        vdecl = f'\n    VV = T.decl_buffer(({_n(stored)},), "int32", data=values.data)'
        vals = 2 * _n(stored)
        mac = lambda k: [f'acc[0] = T.call_pure_extern("int32", "__smlad", '  # noqa: E731
                         f'XX[T.shift_right(T.Cast("int32", indices[{k}]), 1)], VV[{k}], acc[0])']
    src = f'''
@T.prim_func(s_tir=True)
def f(x: T.Buffer(({cp},), "int16"), values: T.Buffer(({vals},), "int16"),
      indptr: T.Buffer(({rows + 1},), "{index}"), indices: T.Buffer(({_n(stored)},), "{index}"),
      b: T.Buffer(({rows},), "int32"), m: T.Buffer(({rows},), "int32"), sh: T.Buffer(({rows},), "int32"),
      y: T.Buffer(({rows},), "int16")):
    T.func_attr({{"tirx.noalias": True}})
    XX = T.decl_buffer(({cp // 2},), "int32", data=x.data){vdecl}
    acc = T.sblock_alloc_buffer((1,), "int32")
    for i in range({rows}):
        acc[0] = b[i]
{_stored_loop(mac, "        ", True)}        y[i] = {requant("acc[0]", "i", lo, 32767, "int16", fast)}
'''
    args = [("x", "int16", False), ("values", "int16", False), ("indptr", index, False), ("indices", index, False),
            ("b", "int32", False), ("m", "int32", False), ("sh", "int32", False), ("y", "int16", True)]
    what = "csr (MLA)" if fmt == "csr" else "simd_group w2 (SMLAD)"
    return Kernel(name, _parse(src), args, origin="tvm-tir", includes=("<arm_acle.h>",),
                  meta={"doc": f"{what} q15 FC {cols}->{rows}, {stored} stored" + (" +relu" if relu else "")})
