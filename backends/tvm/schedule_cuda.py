"""CUDA schedules: TVM's dlight GPU rules (tvm.s_tir.dlight.gpu) plus one of cococ's, per PrimFunc.

Every kernel must bind its loops to blocks and threads (one without bindings fails TVM's
memory verification). The rules are tried in order; the first that applies schedules the kernel:

    Matmul           conv2d (an implicit GEMM: im2col tiles in shared memory), dense at batch > 1
    GEMV             dense at batch 1, 1x1 conv on a 1x1 map (classifier heads)
    Reduction        global pools, avg_pool over the whole map
    ThreadPerOutput  cococ's: depthwise/grouped conv, pools, lrn (short reductions, many outputs)
    GeneralReduction softmax (row reductions)
    Fallback         element-wise ops, concat, slice, and whatever the rules above decline

ThreadPerOutput exists because dlight's GeneralReduction, which would otherwise take a depthwise
conv, gives every output pixel its own 256-thread block and reduces its 9 products across the
threads: 96% of the threads idle plus a shared-memory reduction per pixel. When the reduction
is shorter than the number of outputs, one thread per output with the reduction unrolled in a
register is the simple schedule that keeps the GPU busy, and the fused epilogue (batchnorm,
relu, residual add) is computed by the same thread from that register.

cococ's conv/dense reach the GPU unpacked (LowerCtx(oc_block=1)), so the rules see plain NCHW
reductions. Speed on a GPU is not tuned here; `--tune N` (MetaSchedule) is the way to fast kernels.
"""
from __future__ import annotations

import math

import tvm
from tvm import s_tir, tirx
from tvm.s_tir import dlight as dl
from tvm.s_tir.dlight.analysis import normalize_prim_func
from tvm.s_tir.dlight.base import try_inline
from tvm.s_tir.dlight.gpu.base import GPUScheduleRule


class ThreadPerOutput(GPUScheduleRule):
    """One reduction (plus at most one element-wise epilogue after inlining), reduction extent
    <= number of outputs: fuse the output loops, split into blocks of `threads` threads, keep the
    accumulator in a register, unroll the reduction, compute the epilogue in the same thread."""

    def __init__(self, threads: int = 256, unroll: int = 64):
        self.threads, self.unroll = threads, unroll

    def apply(self, func: tirx.PrimFunc, target: tvm.target.Target, _tunable: bool):
        if not isinstance(func, tirx.PrimFunc) or not self.is_target_available(target):
            return None
        sch = s_tir.Schedule(func)
        infos = normalize_prim_func(sch)
        if infos is None:
            return None
        infos = try_inline(sch, infos)
        if not infos or not infos[0].is_reduction() or len(infos) > 2:
            return None
        red, rest = infos[0], infos[1:]
        if any(not b.is_injective() for b in rest):
            return None
        kinds, extents = red.dom_kind(), red.dom()
        if set(kinds) - {"S", "R"} or "S" not in kinds or not all(isinstance(e, (int, tirx.IntImm)) for e in extents):
            return None
        spatial = math.prod(int(e) for k, e in zip(kinds, extents) if k == "S")
        reduce = math.prod(int(e) for k, e in zip(kinds, extents) if k == "R")
        if reduce > spatial:  # few long reductions: a cross-thread reduction (GeneralReduction) wins
            return None
        loops = sch.get_loops(red.block_rv)
        s_loops = [l for l, k in zip(loops, kinds) if k == "S"]
        r_loops = [l for l, k in zip(loops, kinds) if k == "R"]
        sch.reorder(*s_loops, *r_loops)
        bx, tx = sch.split(sch.fuse(*s_loops), factors=[None, min(self.threads, spatial)])
        sch.bind(bx, "blockIdx.x")
        sch.bind(tx, "threadIdx.x")
        if rest:  # the conv's result lives in a register; the epilogue reads it there
            sch.set_scope(red.block_rv, 0, "local")
            sch.reverse_compute_at(rest[0].block_rv, tx)
        if r_loops:
            sch.annotate(r_loops[0], "pragma_auto_unroll_max_step", self.unroll)
            sch.annotate(r_loops[0], "pragma_unroll_explicit", 1)
            sch.decompose_reduction(red.block_rv, r_loops[0])
        return sch


RULES = (dl.gpu.Matmul(), dl.gpu.GEMV(), dl.gpu.Reduction(), ThreadPerOutput(),
         dl.gpu.GeneralReduction(), dl.gpu.Fallback())


def rule_names(mod: tvm.IRModule, target: tvm.target.Target) -> dict[str, str]:
    """Which rule schedules each kernel (for the benchmark's table and the docs)."""
    names = {}
    with target:
        for gv, f in mod.functions.items():
            if isinstance(f, tirx.PrimFunc):
                names[gv.name_hint] = next((type(r).__name__ for r in RULES if r.apply(f, target, False)), "none")
    return names


def schedule_module(mod: tvm.IRModule, target: tvm.target.Target) -> tvm.IRModule:
    with target:
        return dl.ApplyDefaultSchedule(*RULES)(mod)
