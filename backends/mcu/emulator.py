"""Runs a cococ-built Cortex-M4 ELF in unicorn: outputs, executed instructions, cycle estimate.

The ELF's loadable segments are written at their run addresses (so .data starts initialised
and the start-up code is not needed), the input goes into the `model_input` symbol, and
`model_run(model_input, model_output)` is called directly with LR pointing at a stub in the
image: M-profile treats a return to 0xFFFFFFFx as an exception return, so we stop when the PC
reaches the stub instead. Counting uses a basic-block hook (one Python call per block, not per
instruction) and the cycle table of cycles.py. A block that starts at a kernel's entry opens
that kernel's step (calls happen in model.c's order, so the n-th kernel entry is step n); the
step closes when a block starts at the return address read from LR on entry. Whatever runs
between kernels is the executor's overhead.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile
from unicorn import (UC_ARCH_ARM, UC_HOOK_BLOCK, UC_HOOK_MEM_READ, UC_MODE_MCLASS, UC_MODE_THUMB, Uc, UcError,
                     arm_const as A)

from cococ.backends.mcu.cycles import BRANCH_PENALTY, CycleModel, FlashReads
from cococ.ir.core import CococError

FLASH_BASE, FLASH_SIZE = 0x0000_0000, 0x0040_0000   # AN386 SSRAM1 (code)
SRAM_BASE, SRAM_SIZE = 0x2000_0000, 0x0040_0000     # AN386 SSRAM2/3 (data)
SCS_BASE, SCS_SIZE = 0xE000_0000, 0x0010_0000
STUB = FLASH_BASE + FLASH_SIZE - 0x10               # `b .` written past the image: the return target


@dataclass
class StepCount:
    index: int
    kernel: str
    instructions: int = 0
    cycles: int = 0


@dataclass
class RunResult:
    outputs: np.ndarray
    instructions: int
    cycles: int
    steps: list[StepCount] = field(default_factory=list)
    executor_instructions: int = 0
    executor_cycles: int = 0
    flash_stall_cycles: int = 0          # included in cycles (flash_ws > 0: cycles.FlashReads)


class Emulator:
    """One loaded ELF; `run(x)` may be called many times (memory is re-initialised each run)."""

    def __init__(self, elf: str | Path, max_instructions: int = 2_000_000_000, flash_ws: int = 0,
                 io_dtype=np.float32):
        self.path = Path(elf)
        self.flash_ws = flash_ws  # > 0: data reads from flash stall (cycles.FlashReads)
        self.io_dtype = np.dtype(io_dtype)  # int8: an io=int8 build (backends/mcu/io.py)
        if not self.path.exists():
            raise CococError(f"{self.path}: no ELF (was arm-none-eabi-gcc present at build time?)")
        self.segments: list[tuple[int, bytes]] = []
        self.symbols: dict[str, tuple[int, int]] = {}
        try:  # a truncated or foreign file is the user's to rebuild, not a traceback
            with open(self.path, "rb") as f:
                e = ELFFile(f)
                for seg in e.iter_segments():
                    if seg["p_type"] == "PT_LOAD" and seg["p_filesz"]:
                        data = seg.data()
                        self.segments.append((seg["p_vaddr"], data))
                        if seg["p_paddr"] != seg["p_vaddr"]:
                            self.segments.append((seg["p_paddr"], data))
                symtab = e.get_section_by_name(".symtab")
                for sym in symtab.iter_symbols() if symtab is not None else ():
                    if sym.name and sym["st_info"]["type"] in ("STT_FUNC", "STT_OBJECT", "STT_NOTYPE"):
                        self.symbols[sym.name] = (sym["st_value"], sym["st_size"])
        except (ELFError, OSError) as err:
            raise CococError(f"{self.path}: not a readable ELF ({err}); rebuild it with `cococ build`") from None
        for need in ("model_run", "model_input", "model_output", "_estack"):
            if need not in self.symbols:
                raise CococError(f"{self.path}: symbol {need} missing; not a cococ model ELF")
        self.kernels = {addr & ~1: name for name, (addr, size) in self.symbols.items()
                        if name.startswith("k") and "_" in name and name[1:name.index("_")].isdigit()}
        self.cycles = CycleModel()
        self.max_instructions = max_instructions

    def _start(self, x: np.ndarray) -> Uc:
        """A fresh CPU with the image loaded, `x` in model_input and the registers set for
        `model_run(model_input, model_output)` returning to the stub."""
        uc = Uc(UC_ARCH_ARM, UC_MODE_THUMB | UC_MODE_MCLASS)
        uc.ctl_set_cpu_model(A.UC_CPU_ARM_CORTEX_M4)
        uc.mem_map(FLASH_BASE, FLASH_SIZE)
        uc.mem_map(SRAM_BASE, SRAM_SIZE)
        for addr, data in self.segments:
            uc.mem_write(addr, data)
        uc.mem_write(STUB, b"\xfe\xe7")  # b .
        in_addr, in_size = self.symbols["model_input"]
        out_addr, _ = self.symbols["model_output"]
        x = np.ascontiguousarray(np.asarray(x, self.io_dtype).reshape(-1))
        if x.nbytes != in_size:
            raise CococError(f"input has {x.size} values, the ELF's model_input holds "
                             f"{in_size // self.io_dtype.itemsize} ({self.io_dtype})")
        uc.mem_write(in_addr, x.tobytes())
        uc.reg_write(A.UC_ARM_REG_SP, self.symbols["_estack"][0])
        uc.reg_write(A.UC_ARM_REG_R0, in_addr)
        uc.reg_write(A.UC_ARM_REG_R1, out_addr)
        uc.reg_write(A.UC_ARM_REG_LR, STUB | 1)
        _enable_fpu(uc)
        return uc

    def _output(self, uc) -> np.ndarray:
        out_addr, out_size = self.symbols["model_output"]
        return np.frombuffer(bytes(uc.mem_read(out_addr, out_size)), dtype=self.io_dtype).copy()

    def outputs(self, x: np.ndarray) -> np.ndarray:
        """model_output of one run on `x`, without the per-block counting hook: when only the
        outputs are wanted (accuracy on a data set) unicorn runs at native-ish speed, ~0.1 s
        per LeNet-5 inference instead of seconds."""
        uc = self._start(x)
        try:
            uc.emu_start(self.symbols["model_run"][0] | 1, STUB, count=self.max_instructions)
        except UcError as e:
            raise CococError(f"emulated Cortex-M4 faulted: {e}") from None
        return self._output(uc)

    def run(self, x: np.ndarray, n_out: int | None = None) -> RunResult:
        uc = self._start(x)

        state = {"n": 0, "cyc": 0, "prev": None, "ret": None, "cur": None}
        steps: list[StepCount] = []
        kernels, model = self.kernels, self.cycles

        def on_block(uc_, address, size, _):
            prev = state["prev"]
            if prev is not None and prev.ends_in_branch and address != prev.fallthrough:
                state["cyc"] += BRANCH_PENALTY
                if state["cur"] is not None:
                    state["cur"].cycles += BRANCH_PENALTY
            if state["cur"] is not None and address == state["ret"]:
                state["cur"] = None
            if address in kernels and state["cur"] is None:
                state["cur"] = StepCount(len(steps), kernels[address])
                state["ret"] = uc_.reg_read(A.UC_ARM_REG_LR) & ~1
                steps.append(state["cur"])
            c = model.block(address, bytes(uc_.mem_read(address, size)))
            state["n"] += c.instructions
            state["cyc"] += c.cycles
            if state["cur"] is not None:
                state["cur"].instructions += c.instructions
                state["cur"].cycles += c.cycles
            state["prev"] = c
            if state["n"] > self.max_instructions:
                uc_.emu_stop()

        uc.hook_add(UC_HOOK_BLOCK, on_block)
        flash = FlashReads(self.flash_ws)
        if self.flash_ws:
            def on_flash_read(uc_, access, address, size, value, _):
                stall = flash.read(address, size)
                state["cyc"] += stall
                if state["cur"] is not None:
                    state["cur"].cycles += stall

            uc.hook_add(UC_HOOK_MEM_READ, on_flash_read, begin=FLASH_BASE, end=FLASH_BASE + FLASH_SIZE - 1)
        try:
            uc.emu_start(self.symbols["model_run"][0] | 1, STUB)
        except UcError as e:
            pc = uc.reg_read(A.UC_ARM_REG_PC)
            raise CococError(f"emulated Cortex-M4 faulted at pc=0x{pc:08x} ({self.symbol_at(pc)}): {e}") from None
        if state["n"] > self.max_instructions:
            raise CococError(f"model_run did not return within {self.max_instructions} instructions")
        out = self._output(uc)
        k_i = sum(s.instructions for s in steps)
        k_c = sum(s.cycles for s in steps)
        return RunResult(out, state["n"], state["cyc"], steps, state["n"] - k_i, state["cyc"] - k_c, flash.stalls)

    def symbol_at(self, pc: int) -> str:
        best = ("?", 0)
        for name, (addr, size) in self.symbols.items():
            a = addr & ~1
            if a <= pc < a + max(size, 1) :
                return f"{name}+0x{pc - a:x}"
            if a <= pc and a > best[1]:
                best = (name, a)
        return f"{best[0]}+0x{pc - best[1]:x}"


def _enable_fpu(uc) -> None:
    """CPACR.CP10/CP11 = full access, as startup.c does on the board (unicorn has no SCS device)."""
    try:
        uc.reg_write(A.UC_ARM_REG_C1_C0_2, uc.reg_read(A.UC_ARM_REG_C1_C0_2) | (0xF << 20))
    except Exception:  # noqa: BLE001 - older unicorn: fall back to the FPEXC enable bit
        pass
    try:
        uc.reg_write(A.UC_ARM_REG_FPEXC, 0x40000000)
    except Exception:  # noqa: BLE001
        pass
