"""What a Cortex-M4 build needs in memory, and what to say when it does not fit.

- `arena_intervals`: one lifetime per arena-resident tensor, with element-wise steps run in
  place: when an element-wise step (`Op.elementwise`, or the input quantize) is the last
  reader of an arena input of its output's size and element width or wider, the output takes
  the input's bytes (one interval). Such a kernel reads element i before it writes element i,
  so overwriting the input is safe; its C signature then drops `restrict` (codegen.Kernel).
- `check_fit`: the numbers against the target, and when SRAM is short, the largest tensors
  live at the peak step and what would shrink them (int8, `--target-opt io=int8`, a smaller input, a
  bigger part); never "quantize" to a model that is already quantized.
- `image_memory`: the linked ELF's flash and SRAM split into the model (kernels, executor,
  weights, arena), the board harness (start-up, main.c, the I/O buffers, the sample input,
  the stack) and the C libraries (libm/libc/libgcc: the kernels' math, main.c's memcpy; and
  alignment padding), from its symbol table.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from elftools.elf.elffile import ELFFile

from cococ.backends.mcu.lower import NP_OF, Program, Step, Tensor
from cococ.backends.mcu.plan import Interval, live_at, peak_step
from cococ.ir.core import CococError
from cococ.ir.registry import OPS
from cococ.ir.target import KIB, Target

_MODEL_SYMBOL = re.compile(r"(model_run|arena|k\d+_\w+|w_\w+|cococ_\w+)$")
_HARNESS_SYMBOL = re.compile(r"(main|Reset_Handler|Fault_Handler|vector_table|sh_\w+|put_\w+|model_input|"
                             r"model_output|model_test_input|model_sample)$")


def _itemsize(t: Tensor) -> int:
    return np.dtype(NP_OF[t.dtype]).itemsize


def _in_place(step: Step) -> bool:
    """Whether the step's kernel computes y[i] from its inputs' element i alone."""
    op = OPS.get(step.op.split("+")[0])
    return step.op == "quantize" or (op is not None and op.elementwise)


def arena_intervals(prog: Program, in_place: bool = True) -> tuple[list[Interval], dict[int, Tensor]]:
    """One interval per arena-resident storage root (first writing step .. last reading step),
    and the aliases (output root id -> the input root whose bytes it takes): outputs of in-place
    element-wise steps share their input's interval (their kernel is marked `alias`)."""
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for i, s in enumerate(prog.steps):
        for t in s.outputs + s.inputs:
            first.setdefault(id(t.storage), i)
            last[id(t.storage)] = i
    alias: dict[int, Tensor] = {}   # output root -> the input root whose bytes it takes
    for i, s in enumerate(prog.steps):
        if not in_place or len(s.outputs) != 1 or not _in_place(s):
            continue
        y = s.outputs[0]
        yr = y.storage
        if yr.home != "arena" or first[id(yr)] != i:
            continue
        for x in s.inputs:
            xr = x.storage
            if (xr.home == "arena" and last[id(xr)] == i and x.size == y.size == xr.size
                    and _itemsize(y) <= _itemsize(x) and id(xr) not in {id(a) for a in alias.values()}):
                alias[id(yr)] = xr
                s.kernel.meta["alias"] = True
                break
    spans: dict[int, Interval] = {}
    for i, s in enumerate(prog.steps):
        for t in s.outputs + s.inputs:
            root = t.storage
            while id(root) in alias:
                root = alias[id(root)]
            if root.home != "arena":
                continue
            iv = spans.get(id(root))
            if iv is None:
                spans[id(root)] = Interval(root.name, root.nbytes, i, i)
            else:
                iv.start, iv.end = min(iv.start, i), max(iv.end, i)
    return list(spans.values()), alias


def place(prog: Program, intervals: list[Interval], alias: dict[int, Tensor]) -> None:
    """Copy the planned offsets onto the program's tensors (aliased outputs: their input's)."""
    offsets = {iv.name: iv.offset for iv in intervals}
    for s in prog.steps:
        for t in s.args:
            if isinstance(t, Tensor) and t.storage.home == "arena":
                root = t.storage
                while id(root) in alias:
                    root = alias[id(root)]
                t.storage.offset = offsets[root.name]


def kib_text(n: int) -> str:
    return f"{n / KIB:.0f} KiB" if n >= 10 * KIB else f"{n / KIB:.1f} KiB"


def _size_opt(n: int) -> str:
    """The smallest power-of-two size >= n bytes, as a --target-opt value (512K, 1M, 2M ...)."""
    k = 1 << max(0, (n - 1).bit_length())
    return f"{k // (KIB * KIB)}M" if k >= KIB * KIB else f"{max(1, k // KIB)}K"


def peak_detail(prog: Program, intervals: list[Interval], top: int = 3) -> str:
    """`at step N (layers): a 36,864 B, b 18,432 B, ...`: the largest tensors live at the peak."""
    step = peak_step(intervals)
    if step < 0:
        return ""
    live = sorted(live_at(intervals, step), key=lambda iv: -iv.size)
    s = prog.steps[step]
    what = "+".join(s.layers) if s.layers else s.op
    names = ", ".join(f"{iv.name} {iv.size:,} B" for iv in live[:top])
    more = f" and {len(live) - top} more" if len(live) > top else ""
    return f"arena peak at step {step} ({what}): {names}{more} live"


def fit_advice(target: Target, flash: int, sram: int, quantize: str | None, in_floats: int = 0) -> str:
    """The ways out, concretely, for what is short; nothing a model already has."""
    fixes = []
    if sram > target.sram:
        if quantize is None:
            fixes.append("--quantize int8 or q15 (activations 1 or 2 bytes instead of 4)")
        elif quantize == "q15":
            fixes.append("int8 instead of q15 (activations 1 byte instead of 2)")
        if quantize and in_floats:
            fixes.append(f"--target-opt io=int8 (int8 input and output in the arena: the input {in_floats:,} "
                         f"bytes instead of {4 * in_floats:,})")
        fixes.append("a smaller input (--input-shape for .prototxt nets)")
    if flash > target.flash:
        if quantize is None:
            fixes.append("--quantize q15 (halves the weights; int8 quarters them)")
        fixes.append("--prune auto (prunes and retrains for the target)")
    bigger = [f"{k}={_size_opt(n)}" for k, n, have in (("flash", flash, target.flash), ("sram", sram, target.sram))
              if n > have]
    if bigger:
        fixes.append(f"--target-opt {','.join(bigger)} (a part with more memory)")
    return "; fixes: " + ", or ".join(fixes)


def check_fit(target: Target, flash: int, sram: int, what: str, quantize: str | None = None,
              detail: str = "", in_floats: int = 0) -> None:
    problems = []
    if sram > target.sram:
        problems.append(f"needs {kib_text(sram)} SRAM, target has {kib_text(target.sram)} "
                        f"({sram - target.sram:,} bytes over" + (f"; {detail})" if detail else ")"))
    if flash > target.flash:
        problems.append(f"needs {kib_text(flash)} flash, target has {kib_text(target.flash)} "
                        f"({flash - target.flash:,} bytes over)")
    if problems:
        raise CococError(f"model does not fit {target.name} ({what}): " + "; ".join(problems)
                         + fit_advice(target, flash, sram, quantize, in_floats))


def image_memory(elf: Path) -> dict:
    """flash = everything loaded into flash (.text, .rodata, exidx, .data's image); sram = .data
    + .bss + stack (what the linker script places in RAM); and both split into model, harness
    and libraries (the rest: libm/libc/libgcc and padding) by the ELF's symbols."""
    with open(elf, "rb") as f:
        e = ELFFile(f)
        secs = {s.name: s for s in e.iter_sections()}
        size = lambda n: int(secs[n]["sh_size"]) if n in secs else 0  # noqa: E731
        flash = size(".text") + size(".ARM.exidx") + size(".data")
        sram = size(".data") + size(".bss") + size(".stack")
        ram_lo = int(secs[".data"]["sh_addr"]) if ".data" in secs else 0x2000_0000
        parts = {"model": {"flash": 0, "sram": 0}, "harness": {"flash": 0, "sram": size(".stack")}}
        seen = set()
        symtab = e.get_section_by_name(".symtab")
        syms = {s.name: s for s in symtab.iter_symbols()} if symtab is not None else {}
        arena = syms.get("arena")
        in_arena = (lambda v: arena["st_value"] <= v < arena["st_value"] + arena["st_size"]) if arena else None
        for sym in symtab.iter_symbols() if symtab is not None else ():
            if sym["st_info"]["type"] not in ("STT_FUNC", "STT_OBJECT") or not sym["st_size"]:
                continue
            key = (sym["st_value"] & ~1, sym.name)
            if key in seen or (in_arena and sym.name in ("model_input", "model_output") and in_arena(sym["st_value"])):
                continue  # io=int8: the I/O tensors are views of the arena, counted with it
            seen.add(key)
            part = "model" if _MODEL_SYMBOL.match(sym.name) else "harness" if _HARNESS_SYMBOL.match(sym.name) else None
            if part:
                parts[part]["sram" if sym["st_value"] >= ram_lo else "flash"] += int(sym["st_size"])
    parts["libraries"] = {k: (flash if k == "flash" else sram) - parts["model"][k] - parts["harness"][k]
                          for k in ("flash", "sram")}
    return {"flash": flash, "sram": sram, "memory": parts,
            "sections": {n: size(n) for n in (".text", ".ARM.exidx", ".data", ".bss", ".stack")}}
