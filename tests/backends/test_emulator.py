"""The Cortex-M4 emulator: cycle table, instruction counting, per-kernel breakdown."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from cococ.backends.mcu.cycles import BRANCH_PENALTY, CycleModel, instruction_cycles


def test_cycle_table():
    assert instruction_cycles("ldr", "r0, [r1]", False)[0] == 2
    assert instruction_cycles("ldr.w", "r0, [r1, #4]", True)[0] == 1  # pipelined after a load
    assert instruction_cycles("smlad", "r4, r0, r5, r4", False)[0] == 1
    assert instruction_cycles("mla", "r0, r1, r2, r3", False)[0] == 1
    assert instruction_cycles("vmla.f32", "s0, s1, s2", False)[0] == 3
    assert instruction_cycles("vdiv.f32", "s0, s1, s2", False)[0] == 14
    assert instruction_cycles("push", "{r4, r5, r6, lr}", False)[0] == 5
    assert instruction_cycles("vpush", "{d8-d15}", False)[0] == 9
    cyc, _, branch = instruction_cycles("bne.n", "#0x594", False)
    assert (cyc, branch) == (1, True)
    assert instruction_cycles("pop", "{r4, pc}", False)[2]


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
