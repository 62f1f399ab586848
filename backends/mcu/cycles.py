"""A Cortex-M4 cycle table, applied per basic block to instructions disassembled with capstone.

Source: ARM Cortex-M4 Processor Technical Reference Manual (ARM DDI 0439B / 100166, r0p1),
chapter 3 "Programmers Model", section "Processor instruction timings" (Table 3-1, "Cortex-M4
instruction set summary"), and the FPU chapter's "FPU instruction set" table (Table 7-1). The
numbers used:

    ALU, shifts, moves, compares, extends, bitfield, saturate, pack        1
    MUL, MLA, MLS, UMULL, SMULL, UMLAL, SMLAL, and every DSP multiply or
      multiply-accumulate (SMLAD, SMLADX, SMUAD, SMLABB.., SMMLA, SMLAL..)  1
    SDIV, UDIV                                                            2..12 (early termination; we use 7)
    LDR/STR single (any width)                                            2; 1 when it directly follows
                                                                          another load/store single
                                                                          ("neighbouring load and store single
                                                                          instructions can pipeline": N + 1)
    LDRD/STRD                                                             1 + 2
    LDM/STM/PUSH/POP of N registers                                       1 + N   (POP/LDM with PC: + P)
    B, BL, BX, BLX, CBZ/CBNZ taken; writes to PC                          1 + P, P = 2 (TRM: 1..3)
    conditional branch not taken                                          1
    IT                                                                    1 (not folded)
    instructions skipped inside an IT block                               1 each (they still issue)
    FPU: VADD, VSUB, VMUL, VNMUL, VABS, VNEG, VCMP, VCVT, VMOV, VMRS       1
         VMLA, VMLS, VNMLA, VNMLS, VFMA, VFMS, VFNMA, VFNMS                3
         VDIV, VSQRT                                                      14
         VLDR, VSTR of a single (s) register                              2
         VLDR, VSTR of a double (d) register                              3
         VLDM, VSTM, VPUSH, VPOP of N single registers                    1 + N
         VLDM, VSTM, VPUSH, VPOP of N double registers                    1 + 2N (a d register is two s)

Not modelled: load-use and FPU result interlocks beyond the above, bus contention, the
ICI/LSU overlap of an LDR with a following FP op. By default (0 wait states) this estimates
the core's issue cycles with zero-wait memory (SRAM/TCM-like) — the usual basis of MCU kernel
comparisons (CMSIS-NN reports cycles the same way). `FlashReads` adds flash wait states
(`--target-opt flash-ws=N`) under the ART-accelerator assumption written there. Unicorn reports whole basic blocks; a
block's cost is the sum over its instructions (IT-skipped ones included, as the core issues
them), plus P when the block ends in a branch that the next block shows was taken.
"""
from __future__ import annotations

from dataclasses import dataclass

from capstone import CS_ARCH_ARM, CS_MODE_MCLASS, CS_MODE_THUMB, Cs

BRANCH_PENALTY = 2      # P in the TRM: pipeline refill, 1..3 cycles
SDIV_CYCLES = 7         # middle of 2..12
FLASH_READ_BYTES = 8    # one flash read: 64 bits (STM32L4/L4+ flash is 64 bits + ECC wide)
DCACHE_LINES = 8        # ART data cache: 8 lines (RM0432 §3.3.4); one flash read per line here

_LOADSTORE_SINGLE = {"ldr", "ldrb", "ldrh", "ldrsb", "ldrsh", "str", "strb", "strh", "ldrex", "strex",
                     "ldrt", "strt", "ldrbt", "ldrht", "strbt", "strht", "ldrsbt", "ldrsht"}
_MULTI = {"ldm", "ldmia", "ldmdb", "ldmfd", "stm", "stmia", "stmdb", "stmea", "push", "pop"}
_BRANCH = {"b", "bl", "bx", "blx", "cbz", "cbnz", "tbb", "tbh"}
_VFP_3 = {"vmla", "vmls", "vnmla", "vnmls", "vfma", "vfms", "vfnma", "vfnms"}
_VFP_14 = {"vdiv", "vsqrt"}
_VFP_MULTI = {"vldm", "vldmia", "vldmdb", "vstm", "vstmia", "vstmdb", "vpush", "vpop"}


@dataclass(frozen=True)
class BlockCost:
    instructions: int
    cycles: int          # without the taken-branch penalty
    ends_in_branch: bool
    fallthrough: int     # address after the block


def _base(mn: str) -> str:
    """Strip condition codes / width qualifiers capstone leaves on: 'ldr.w' -> 'ldr', 'bne' -> 'b'."""
    mn = mn.split(".")[0]
    if mn in _BRANCH or mn.startswith("it"):
        return mn
    for cond in ("eq", "ne", "cs", "hs", "cc", "lo", "mi", "pl", "vs", "vc", "hi", "ls", "ge", "lt", "gt", "le", "al"):
        if mn.endswith(cond) and len(mn) > len(cond) and mn[:-len(cond)] in _BRANCH:
            return mn[:-len(cond)]
    return mn


def _nregs(op_str: str) -> int:
    """Registers moved by a register list, counted in 32-bit words: a double-precision register
    d<n> is two single ones (the TRM's 1 + 2N for VLDM/VSTM/VPUSH/VPOP of N doubles)."""
    if "{" not in op_str:
        return 1
    inner = op_str[op_str.index("{") + 1: op_str.index("}")]
    n = 0
    for part in inner.split(","):
        part = part.strip()
        if "-" in part:  # d8-d15 style ranges
            a, b = part.split("-")
            n += (int(b.strip()[1:]) - int(a.strip()[1:]) + 1) * (2 if a.strip().startswith("d") else 1)
        elif part:
            n += 2 if part.startswith("d") else 1
    return n


def instruction_cycles(mn: str, op_str: str, prev_ls: bool) -> tuple[int, bool, bool]:
    """(cycles, is_load_store_single, is_branch) of one instruction (branch penalty excluded)."""
    m = _base(mn)
    writes_pc = op_str.startswith("pc") or (m in ("pop", "ldm", "ldmia", "ldmfd") and "pc" in op_str)
    if m in _BRANCH:
        return 1, False, True
    if m.startswith("it") and len(m) <= 5 and set(m[2:]) <= {"t", "e"}:
        return 1, False, False
    if m in _LOADSTORE_SINGLE:
        return (1 if prev_ls else 2), True, writes_pc
    if m in ("ldrd", "strd"):
        return 3, False, False
    if m in _MULTI:
        return 1 + _nregs(op_str), False, writes_pc
    if m in ("sdiv", "udiv"):
        return SDIV_CYCLES, False, False
    if m.startswith("v"):
        if m in _VFP_3:
            return 3, False, False
        if m in _VFP_14:
            return 14, False, False
        if m in ("vldr", "vstr"):
            return (3 if op_str.startswith("d") else 2), False, False
        if m in _VFP_MULTI:
            return 1 + _nregs(op_str), False, False
        return 1, False, False
    return 1, False, writes_pc  # ALU, multiplies and DSP MACs (single-cycle on the M4)


class CycleModel:
    """Costs basic blocks, disassembling each address once (cached)."""

    def __init__(self):
        self.cs = Cs(CS_ARCH_ARM, CS_MODE_THUMB | CS_MODE_MCLASS)
        self.cache: dict[tuple[int, int], BlockCost] = {}

    def block(self, address: int, code: bytes) -> BlockCost:
        key = (address, len(code))
        c = self.cache.get(key)
        if c is None:
            n = cyc = 0
            prev_ls = last_branch = False
            for ins in self.cs.disasm(code, address):
                k, prev_ls, last_branch = instruction_cycles(ins.mnemonic, ins.op_str, prev_ls)
                n += 1
                cyc += k
            c = BlockCost(n, cyc, last_branch, address + len(code))
            self.cache[key] = c
        return c


class FlashReads:
    """Stall cycles of data reads from flash at `ws` wait states, behind an ST ART accelerator
    (the MLPerf Tiny board, NUCLEO-L4R5ZI: STM32L4R5 at 120 MHz runs the flash at 5 wait
    states, RM0432 §3.3.3, with prefetch, instruction cache and data cache on, §3.3.4).

    The assumption, deliberately simple and stated so the numbers can be judged:
    - instruction fetches cost nothing extra: prefetch covers straight-line code and every
      kernel's inner loop fits the 1 KB instruction cache, so loops run from the cache;
    - a data read from flash (weights, constant tables, literal pools: what the D-code bus
      reads) costs `ws` cycles when its 64-bit flash word is not among the last
      DCACHE_LINES words read (LRU), else nothing. Streaming int8 weights thus stall `ws`
      cycles per 8 bytes; a constant re-read in a loop stalls once.
    SRAM reads and all writes stay at zero wait states. Not modelled: the data cache's real
    line size, prefetch of the next data word, and bus contention."""

    def __init__(self, ws: int, lines: int = DCACHE_LINES):
        self.ws, self.lines = ws, lines
        self.recent: list[int] = []    # flash words, most recent last
        self.stalls = 0

    def read(self, address: int, size: int) -> int:
        """The stall cycles of one data read of `size` bytes at `address` (a flash address)."""
        cost = 0
        for word in range(address // FLASH_READ_BYTES, (address + max(size, 1) - 1) // FLASH_READ_BYTES + 1):
            if word in self.recent:
                self.recent.remove(word)
            else:
                cost += self.ws
                if len(self.recent) >= self.lines:
                    del self.recent[0]
            self.recent.append(word)
        self.stalls += cost
        return cost
