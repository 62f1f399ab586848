"""The Cortex-M4 emulator: cycle table, instruction counting, per-kernel breakdown."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from cococ.backends.mcu.cycles import BRANCH_PENALTY, CycleModel, instruction_cycles


# Each value with its source: ARM Cortex-M4 Processor Technical Reference Manual r0p1 (ARM DDI 0439B),
# Table 3-1 "Cortex-M4 instruction set summary" (§3.3.1), §3.3.2 "Load/store timings", and
# Table 7-1 "FPU instruction set" (§7.2.3). N: registers in the list; P: branch refill (not here).
TRM = [
    ("ldr", "r0, [r1]", False, 2, "Table 3-1, Load / Word: 2"),
    ("ldr.w", "r0, [r1, #4]", True, 1, "§3.3.2: neighbouring load/store singles pipeline, N + 1 for N"),
    ("mla", "r0, r1, r2, r3", False, 1, "Table 3-1, Multiply / Multiply accumulate (MLA): 1"),
    ("smlad", "r4, r0, r5, r4", False, 1, "Table 3-1, Multiply: every DSP multiply-accumulate (SMLAD): 1"),
    ("push", "{r4, r5, r6, lr}", False, 5, "Table 3-1, Push / Push (PUSH {<reglist>}): 1 + N, N = 4"),
    ("bne.n", "#0x594", False, 1, "Table 3-1, Branch / Conditional: 1 not taken (1 + P taken)"),
    ("vmla.f32", "s0, s1, s2", False, 3, "Table 7-1, Multiply / then accumulate float (VMLA.F32): 3"),
    ("vdiv.f32", "s0, s1, s2", False, 14, "Table 7-1, Divide / Floating-point (VDIV.F32): 14"),
    ("vldr", "s0, [r1]", False, 2, "Table 7-1, Load / single float (VLDR.F32): 2"),
    ("vldr", "d0, [r1]", False, 3, "Table 7-1, Load / single double (VLDR.F64): 3"),
    ("vldmia", "r4!, {s0, s1, s2}", False, 4, "Table 7-1, Load / multiple floats (VLDM.F32): 1 + N, N = 3"),
    ("vpush", "{s16, s17}", False, 3, "Table 7-1, Push / float registers (VPUSH.F32): 1 + N, N = 2"),
    ("vpush", "{d8}", False, 3, "Table 7-1, Push / double registers (VPUSH.F64): 1 + 2N, N = 1"),
    ("vpush", "{d8-d15}", False, 17, "Table 7-1, Push / double registers (VPUSH.F64): 1 + 2N, N = 8"),
    ("vpop", "{d8-d9}", False, 5, "Table 7-1, Pop / double registers (VPOP.F64): 1 + 2N, N = 2"),
    ("vstmia", "r1!, {d0, d1, d2}", False, 7, "Table 7-1, Store / multiple doubles (VSTM.F64): 1 + 2N, N = 3"),
]


@pytest.mark.parametrize("mn,ops,after_ls,cycles,source", TRM, ids=[f"{t[0]} {t[1]}" for t in TRM])
def test_cycle_table(mn, ops, after_ls, cycles, source):
    assert instruction_cycles(mn, ops, after_ls)[0] == cycles, source


def test_branches_are_marked():
    """A branch or a write to PC ends a block; the taken-branch penalty P is added per block."""
    assert instruction_cycles("bne.n", "#0x594", False)[2]
    assert instruction_cycles("pop", "{r4, pc}", False) == (3, False, True)     # 1 + N (+ P when taken)
    assert not instruction_cycles("pop", "{r4, r5}", False)[2]


def test_block_cost_counts_it_skipped_instructions():
    # itt ge; movge r2, #1; movge r3, #0; bx lr  (Thumb-2)
    code = bytes.fromhex("a4bf" "0122" "0023" "7047")
    c = CycleModel().block(0x100, code)
    assert c.instructions == 4 and c.cycles == 4 and c.ends_in_branch and c.fallthrough == 0x108
    assert BRANCH_PENALTY == 2


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="arm-none-eabi-gcc not installed")
def test_emulator_counts_per_kernel(tmp_path):
    from cococ.backends.build import build
    from cococ.backends.mcu.emulator import Emulator
    from cococ.ir.core import Graph, Layer, Param, Value
    from cococ.ir.verify import infer_shapes

    rng = np.random.default_rng(0)
    x, h, y = Value("x"), Value("h"), Value("y")
    g = infer_shapes(Graph("fc", [
        Layer("input", "x", [], [x], {"shape": [1, 32]}),
        Layer("dense", "h", [x], [h], {"out_features": 16},
              {"weight": Param.from_array(rng.standard_normal((16, 32)).astype(np.float32))}),
        Layer("sigmoid", "y", [h], [y])], [y]))
    art = build(g, "arm-m4", out_dir=tmp_path)
    emu = Emulator(art.elf)
    inp = rng.standard_normal(32).astype(np.float32)
    r1, r2 = emu.run(inp), emu.run(inp)
    assert (r1.instructions, r1.cycles) == (r2.instructions, r2.cycles)  # deterministic
    assert [s.kernel for s in r1.steps] == ["k0_dense", "k1_sigmoid"]
    assert r1.instructions == sum(s.instructions for s in r1.steps) + r1.executor_instructions
    assert r1.steps[0].instructions > 16 * 32  # at least one instruction per MAC
    want = 1 / (1 + np.exp(-(rng_weights(g) @ inp)))
    np.testing.assert_allclose(r1.outputs, want, rtol=1e-5, atol=1e-6)


def rng_weights(g):
    return g.layer("h").params["weight"].data.astype(np.float64)
