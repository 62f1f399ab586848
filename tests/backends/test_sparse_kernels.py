"""Every sparse kernel equals the dense numpy reference on the same (masked) weights."""
import ctypes
import subprocess

import numpy as np
import pytest
import tvm

from cococ.ir.core import Param
from cococ.ir.formats import compress
from cococ.backends.kernels.layout import q15_args, x_q15
from cococ.backends.kernels.x86 import mv_x86, prim_mv_x86, x86_target
from cococ.backends.mcu.sparse_kernels import c_file, kernel_q15


def _masked(rows, cols, density, dtype=np.float32, seed=0, width=1):
    rng = np.random.default_rng(seed)
    if dtype == np.int16:
        w = rng.integers(-32768, 32768, (rows, cols)).astype(np.int16)
    else:
        w = rng.standard_normal((rows, cols)).astype(dtype)
    g = -(-cols // width)
    keep = np.repeat(rng.random((rows, g)) < density, width, axis=1)[:, :cols]
    w[~keep] = 0
    return w


CASES = [(16, 64, 0.5), (13, 37, 0.3), (8, 8, 0.0), (5, 100, 1.0), (64, 200, 0.05)]


@pytest.mark.parametrize("rows,cols,density", CASES)
@pytest.mark.parametrize("fmt,width", [("dense", 8), ("csr", 1), ("simd_group", 8), ("simd_group", 4)])
def test_x86_f32(rows, cols, density, fmt, width):
    w = _masked(rows, cols, density, width=width)
    p = compress(Param.from_array(w), fmt, width=width)
    x = np.random.default_rng(1).standard_normal(cols).astype(np.float32)
    mv = mv_x86(p)
    np.testing.assert_allclose(mv(x), w @ x, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(mv(2 * x), 2 * (w @ x), rtol=1e-4, atol=1e-4)


def test_x86_simd_group_uses_vector_loads():
    p = compress(_masked(8, 64, 0.5, width=8), "simd_group", width=8)
    lib = tvm.build(tvm.IRModule({"main": prim_mv_x86(p, 8)}), target=tvm.target.Target(x86_target(8)))
    asm = lib.inspect_source("asm")
    assert "ymm" in asm  # 8 f32 lanes per load


def _run_q15_host(cc, tmp_path, p, x):
    k = kernel_q15(p, "kernel")
    src = tmp_path / "k.c"
    src.write_text(c_file([k]))
    so = tmp_path / "k.so"
    subprocess.run([cc, "-O2", "-shared", "-fPIC", "-std=c99", str(src), "-o", str(so)], check=True)
    lib = ctypes.CDLL(str(so))
    arrays = [np.ascontiguousarray(a) for _, a in q15_args(p)] + [np.ascontiguousarray(x_q15(p, x))]
    rows = p.shape[0]
    y = np.zeros(rows, np.int32)
    lib.kernel(*[a.ctypes.data_as(ctypes.c_void_p) for a in arrays], y.ctypes.data_as(ctypes.c_void_p))
    return y


@pytest.mark.parametrize("rows,cols,density", [(16, 64, 0.5), (13, 37, 0.3), (4, 9, 1.0), (6, 10, 0.0)])
@pytest.mark.parametrize("fmt", ["dense", "csr", "simd_group"])
def test_q15_c_kernels_on_host(host_cc, tmp_path, rows, cols, density, fmt):
    w = _masked(rows, cols, density, np.int16, width=2)
    p = compress(Param.from_array(w), fmt, width=2)
    x = np.random.default_rng(3).integers(-32768, 32768, cols).astype(np.int16)
    # the kernel's int32 accumulator wraps like the Cortex-M4's
    ref = (w.astype(np.int64) @ x.astype(np.int64))
    ref = ((ref + 2 ** 31) % 2 ** 32 - 2 ** 31).astype(np.int32)
    np.testing.assert_array_equal(_run_q15_host(host_cc, tmp_path, p, x), ref)


def test_q15_simd_group_source_uses_smlad_words():
    p = compress(_masked(4, 10, 0.5, np.int16, width=2), "simd_group", width=2)
    src = c_file([kernel_q15(p, "k")])
    assert "cococ_smlad(values[" in src and "const int32_t* restrict x" in src
    assert "smlad %0" in src
