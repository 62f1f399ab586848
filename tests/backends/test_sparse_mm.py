"""Every sparse matrix-matrix kernel equals numpy's W_masked @ X on the same masked weights."""
import ctypes
import shutil
import subprocess

import numpy as np
import pytest
import tvm

from cococ.ir.core import Param
from cococ.ir.formats import compress
from cococ.backends.kernels.layout import q15_args, x_q15_mm
from cococ.backends.kernels.x86 import mm_x86, plan_mm_x86, x86_target
from cococ.backends.mcu.sparse_kernels import kernel_q15_mm, mm_q15_c


def _masked(rows, cols, density, dtype=np.float32, seed=0, width=1, zero_rows=()):
    rng = np.random.default_rng(seed)
    if dtype == np.int16:
        w = rng.integers(-32768, 32768, (rows, cols)).astype(np.int16)
    else:
        w = rng.integers(-8, 9, (rows, cols)).astype(np.float32)  # small integers: f32 sums are exact
    keep = np.repeat(rng.random((rows, -(-cols // width))) < density, width, axis=1)[:, :cols]
    w[~keep] = 0
    w[list(zero_rows)] = 0
    return w


# (rows, cols, n, density, all-zero rows): odd sizes, n below one vector, rows below one tile
CASES = [(16, 64, 40, 0.5, (3,)), (13, 37, 29, 0.3, (0, 12)), (8, 8, 8, 0.0, ()),
         (5, 100, 3, 1.0, (2,)), (3, 24, 70, 0.2, ())]


@pytest.mark.parametrize("rows,cols,n,density,zero", CASES)
@pytest.mark.parametrize("fmt,width", [("dense", 1), ("csr", 1), ("simd_group", 8), ("simd_group", 4)])
def test_x86_f32_mm(rows, cols, n, density, zero, fmt, width):
    w = _masked(rows, cols, density, width=width, zero_rows=zero)
    p = compress(Param.from_array(w), fmt, width=width)
    x = np.random.default_rng(1).integers(-8, 9, (cols, n)).astype(np.float32)
    mm = mm_x86(p, n, 8)
    np.testing.assert_array_equal(mm(x), w @ x)
    np.testing.assert_array_equal(mm(-x), -(w @ x))  # the padded buffers are reused, not stale


def test_x86_mm_broadcasts_a_weight_against_vectors_of_positions():
    p = compress(_masked(8, 64, 0.5, width=8), "simd_group", width=8)
    prim = plan_mm_x86(p, 64, 8)[0]
    lib = tvm.build(tvm.IRModule({"main": prim}), target=tvm.target.Target(x86_target(8)))
    asm = lib.inspect_source("asm")
    assert "vbroadcastss" in asm and "vfmadd231ps" in asm and "ymm" in asm


def _wrap32(a):
    return ((a + 2 ** 31) % 2 ** 32 - 2 ** 31).astype(np.int32)


def _run_q15_host(cc, tmp_path, p, x, ldy=None, offset=0):
    n = x.shape[1]
    src = tmp_path / "k.c"
    src.write_text(mm_q15_c(p, "kernel", n, ldy))
    so = tmp_path / "k.so"
    subprocess.run([cc, "-O2", "-shared", "-fPIC", "-std=c99", str(src), "-o", str(so)], check=True)
    lib = ctypes.CDLL(str(so))
    arrays = [np.ascontiguousarray(a) for _, a in q15_args(p)] + [np.ascontiguousarray(x_q15_mm(p, x))]
    rows = p.shape[0]
    ld = n if ldy is None else ldy
    y = np.full(rows * ld, -7, np.int32)  # garbage: the kernel must write every output it owns
    out = y[offset:]
    lib.kernel(*[a.ctypes.data_as(ctypes.c_void_p) for a in arrays], out.ctypes.data_as(ctypes.c_void_p))
    return y.reshape(rows, ld)


Q15_CASES = [(16, 64, 6, 0.5, (1,)), (13, 37, 5, 0.3, (0, 12)), (4, 9, 1, 1.0, ()), (6, 10, 4, 0.0, ()),
             (7, 3, 9, 0.6, (6,))]


@pytest.mark.parametrize("rows,cols,n,density,zero", Q15_CASES)
@pytest.mark.parametrize("fmt", ["dense", "csr", "simd_group"])
def test_q15_mm_c_kernels_on_host(host_cc, tmp_path, rows, cols, n, density, zero, fmt):
    w = _masked(rows, cols, density, np.int16, width=2, zero_rows=zero)
    p = compress(Param.from_array(w), fmt, width=2)
    x = np.random.default_rng(3).integers(-32768, 32768, (cols, n)).astype(np.int16)
    ref = _wrap32(w.astype(np.int64) @ x.astype(np.int64))
    np.testing.assert_array_equal(_run_q15_host(host_cc, tmp_path, p, x), ref)


@pytest.mark.parametrize("fmt", ["dense", "csr", "simd_group"])
def test_q15_mm_chunk_writes_into_a_wider_output(host_cc, tmp_path, fmt):
    """ldy > n: a chunk of positions lands in its columns of the full output, nothing else moves."""
    w = _masked(5, 18, 0.5, np.int16, width=2, zero_rows=(2,))
    p = compress(Param.from_array(w), fmt, width=2)
    x = np.random.default_rng(4).integers(-32768, 32768, (18, 6)).astype(np.int16)
    y = _run_q15_host(host_cc, tmp_path, p, x, ldy=13, offset=4)
    np.testing.assert_array_equal(y[:, 4:10], _wrap32(w.astype(np.int64) @ x.astype(np.int64)))
    assert (y[:, :4] == -7).all() and (y[:, 10:] == -7).all()


def test_q15_mm_source_pairs_words_for_smlad():
    p = compress(_masked(4, 10, 0.5, np.int16, width=2), "simd_group", width=2)
    k = kernel_q15_mm(p, "k", 6)
    src = mm_q15_c(p, "k", 6)
    assert "const int32_t* restrict x" in src and src.count("cococ_smlad(values[") >= 2
    assert [a[0] for a in k.args] == ["values", "indptr", "indices", "x", "y"]
    d = compress(_masked(4, 10, 1.0, np.int16), "dense")
    assert mm_q15_c(d, "k", 6).count("cococ_smlad(w[") >= 8  # the 2x4 tile, unrolled


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="arm-none-eabi-gcc not installed")
@pytest.mark.parametrize("fmt", ["dense", "csr", "simd_group"])
def test_q15_mm_on_emulated_m4(fmt):
    from cococ.backends.mcu.emulate import run_mm_on_m4
    w = _masked(9, 21, 0.5, np.int16, width=2, zero_rows=(4,))
    p = compress(Param.from_array(w), fmt, width=2)
    x = np.random.default_rng(5).integers(-32768, 32768, (21, 7)).astype(np.int16)
    r = run_mm_on_m4(p, x)
    np.testing.assert_array_equal(r.y, _wrap32(w.astype(np.int64) @ x.astype(np.int64)))
    assert r.cycles > 0 and r.text_bytes > 0
