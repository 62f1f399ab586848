"""CUDA schedules: TVM's dlight GPU rules (tvm.s_tir.dlight.gpu), applied per PrimFunc.

dlight binds every kernel to blocks and threads (a kernel without bindings fails TVM's
memory verification), with dedicated rules for matmul/GEMV-like and reduction kernels and a
fallback for the rest. cococ's conv/dense reach the GPU unpacked (LowerCtx(oc_block=1)), so
the rules see plain NCHW reductions. Performance on a GPU is not tuned here; `--tune N`
(MetaSchedule) is the way to good kernels on cuda.
"""
from __future__ import annotations

import tvm
from tvm.s_tir import dlight as dl


def schedule_module(mod: tvm.IRModule, target: tvm.target.Target) -> tvm.IRModule:
    rules = dl.ApplyDefaultSchedule(dl.gpu.Matmul(), dl.gpu.GEMV(), dl.gpu.Reduction(),
                                    dl.gpu.GeneralReduction(), dl.gpu.Fallback())
    with target:
        return rules(mod)
