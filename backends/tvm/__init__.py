"""The x86 and cuda backends through Apache TVM 0.27, and the Relax exit (`to_relax`).

    lower.py          graph -> Relax module, one call_tir per fused group (fusion decided on the IR);
                      each kernel is the ops' tvm rules, called through backends/kernels/compute.py
    schedule_x86.py   cococ's s_tir schedules (register-blocked conv, vectorized dense, generic)
    schedule_cuda.py  dlight GPU rules + cococ's ThreadPerOutput (depthwise conv, pools)
    nvcc.py           nvcc on the generated CUDA at build time (kernels.fatbin), reused at load
    tune.py           MetaSchedule tuning, database next to the artifact
    build.py          build_tvm: the steps; artifact.py: TVMArtifact (model.so + manifest)
    relax_export.py   to_relax(graph)
"""
from cococ.backends.tvm.build import build_tvm

__all__ = ["build_tvm"]
