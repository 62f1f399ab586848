"""Targets: defaults, overrides, errors."""
import pytest

from cococ.ir.core import CococError
from cococ.ir.target import get_target, host_simd, parse_size, parse_target_options


def test_arm_m4_defaults_and_overrides():
    t = get_target("arm-m4")
    assert (t.parallelism, t.lanes, t.flash, t.sram) == ("low", {"i16": 2, "i8": 4, "f32": 1}, 512 * 1024, 128 * 1024)
    t = get_target("arm-m4", parse_target_options("flash=1M,sram=192K"))
    assert (t.flash, t.sram) == (1 << 20, 192 * 1024)


def test_x86_and_cuda():
    assert get_target("x86").parallelism == "moderate"
    assert get_target("cuda", {"arch": "sm_90"}).tvm["arch"] == "sm_90"
    assert host_simd("flags\t: fpu sse2 avx avx2") == ("avx2", 8)
    assert host_simd("flags\t: fpu avx2 avx512f") == ("avx512f", 16)


def test_errors():
    with pytest.raises(CococError, match="unknown target"):
        get_target("riscv")
    with pytest.raises(CococError, match="unknown option"):
        get_target("arm-m4", {"ram": "1M"})
    with pytest.raises(CococError, match="bad memory size"):
        parse_size("lots")
