"""CUDA schedules without a GPU: which rule takes which kernel, every op gets thread bindings, and
cococ's ThreadPerOutput rule computes the same numbers as the unscheduled kernel.

The numbers are checked on the CPU: ThreadPerOutput uses no shared memory and no barriers, so
its kernel with every thread loop made a serial loop (and registers made ordinary buffers) is
the same program run one thread after another; LLVM builds it and numpy compares.
"""
from __future__ import annotations

import re
import shutil

import numpy as np
import pytest
import tvm

from tests.backends.test_tvm_x86 import CASES, G, conv, rand


def cuda_target():
    from cococ.backends.tvm.build import tvm_target
    from cococ.ir.target import get_target
    return tvm_target(get_target("cuda"))


def lowered(graph):
    from cococ.backends.tvm.lower import lower_graph
    from cococ.backends.kernels.compute import LowerCtx
    from cococ.ir.verify import infer_shapes
    infer_shapes(graph)
    return lower_graph(graph, LowerCtx(oc_block=1))


def mobile_block():
    """MobileNet v2's pattern: 1x1 expand, depthwise 3x3 (+bn, relu), max pool, lrn, 1x1 project."""
    g = G()
    x = g.input("data", (1, 8, 12, 12))
    e = g("relu", "e_relu", g("conv2d", "expand", x, *conv(8, 16, 1)))
    d = g("conv2d", "dw", e, *conv(16, 16, 3, groups=16, pad=[1, 1, 1, 1]))
    d = g("relu", "dw_relu", g("batchnorm", "dw_bn", d, {}, {"mean": rand(16), "var": rand(16, pos=True)}))
    p = g("max_pool", "pool", d, {"kernel": [3, 3], "stride": [2, 2], "pad": [1, 1, 1, 1]})
    n = g("lrn", "norm", p, {"size": 5, "alpha": 1e-2, "beta": 0.75, "k": 2.0})
    g("conv2d", "project", n, *conv(16, 8, 1), out=True)
    return g.graph()


def test_rules_per_kernel():
    from cococ.backends.tvm.schedule_cuda import rule_names
    names = rule_names(lowered(mobile_block()), cuda_target())
    assert names == {"conv2d_expand": "Matmul", "conv2d_dw": "ThreadPerOutput", "max_pool_pool": "ThreadPerOutput",
                     "lrn_norm": "ThreadPerOutput", "conv2d_project": "Matmul"}


def _serial_on_cpu(sch_mod):
    """The scheduled kernel as a CPU program: thread loops -> serial loops, local -> global."""
    text = sch_mod.script()
    text = re.sub(r'T\.thread_binding\(([^,]+), thread="[^"]+"\)', r"T.serial(\1)", text)
    text = text.replace('scope="local"', 'scope="global"').replace("private=True, ", "")
    return tvm.script.from_source(text.replace('"tirx.is_scheduled": True, ', ""))


@pytest.mark.parametrize("kernel", ["conv2d_dw", "max_pool_pool", "lrn_norm"])
def test_thread_per_output_computes_the_same(kernel):
    from cococ.backends.tvm.schedule_cuda import ThreadPerOutput
    target = cuda_target()
    f = lowered(mobile_block())[kernel]
    with target:
        sch = ThreadPerOutput().apply(f, target, False)
    assert sch is not None
    script = sch.mod.script()
    assert 'thread="threadIdx.x"' in script
    if kernel == "conv2d_dw":  # the fused bn + relu read the accumulator from a register
        assert 'scope="local"' in script
    rng = np.random.default_rng(0)
    args = [rng.standard_normal([int(d) for d in p.shape]).astype(str(p.dtype)) for p in f.params]
    outs = []
    for mod in (_serial_on_cpu(sch.mod), tvm.IRModule({"main": f.with_attr("global_symbol", "main")})):
        lib = tvm.compile(mod, target="llvm")
        bufs = [tvm.runtime.tensor(a) for a in args]
        lib[mod.get_global_vars()[0].name_hint](*bufs)
        outs.append(bufs[-1].numpy())
    assert np.abs(outs[1] - args[-1]).max() > 0  # the kernel wrote its output
    np.testing.assert_allclose(outs[0], outs[1], rtol=1e-5, atol=1e-5)


def test_every_op_gets_thread_bindings():
    """Each op of the x86 test table, lowered and scheduled for cuda: every kernel is bound to
    blocks and threads (an unbound kernel would fail TVM's memory verification at codegen)."""
    from cococ.backends.tvm.schedule_cuda import schedule_module
    g = G()
    for name, op, shapes, attrs, params, n_out in CASES:
        ins = [g.input(f"{name}_in{i}", s) for i, s in enumerate(shapes)]
        g(op, name, ins, dict(attrs), params, n_out=n_out, out=True)
    mod = schedule_module(lowered(g.graph()), cuda_target())
    kernels = {gv.name_hint: f for gv, f in mod.functions.items() if isinstance(f, tvm.tirx.PrimFunc)}
    assert len(kernels) >= 30
    unbound = [k for k, f in kernels.items() if "threadIdx" not in f.script()]
    assert not unbound, unbound


def test_nvcc_error_is_a_user_error():
    from cococ.backends.tvm.nvcc import compile_fatbin
    from cococ.ir.core import CococError
    if shutil.which("nvcc") is None:
        pytest.skip("nvcc is not on PATH: the cuda backend compiles with it")
    with pytest.raises(CococError, match="nvcc failed"):
        compile_fatbin('extern "C" __global__ void k(float* x) { x[0] = undeclared; }', cuda_target())


def test_prebuilt_fatbin_is_handed_to_tvm(tmp_path):
    """Loading a cuda artifact registers TVM's compile callback so that the library's CUDA source
    gets the artifact's fatbin back (checked here without a GPU by calling the callback)."""
    import tvm_ffi
    from cococ.backends.tvm.nvcc import FATBIN, SOURCE, use_prebuilt
    (tmp_path / SOURCE).write_text('extern "C" __global__ void k() {}\n')
    (tmp_path / FATBIN).write_bytes(b"\x50\xed\x55\xba fake fatbin")
    old = tvm.get_global_func("tvm_callback_cuda_compile", allow_missing=True)
    try:
        use_prebuilt(tmp_path)
        got = tvm.get_global_func("tvm_callback_cuda_compile")('extern "C" __global__ void k() {}')
        assert bytes(got) == b"\x50\xed\x55\xba fake fatbin"
    finally:
        if old is not None:
            tvm_ffi.register_global_func("tvm_callback_cuda_compile", old, override=True)
