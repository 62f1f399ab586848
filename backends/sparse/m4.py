"""Run one q15 sparse kernel on the emulated Cortex-M4 and count its cycles.

The image is the smallest thing runtime/mcu's Emulator runs: the kernel's C (TVM codegen,
backends/sparse/build.py), the param's arrays and the input as initialised globals, and a
`model_run` that calls the kernel once and copies y's int32 words into `model_output`
(a float array to the Emulator; we read the bits back as int32). The kernel is named
`k0_<format>` so the Emulator counts its cycles apart from the wrapper's. Compiled with the
flags of backends/mcu (-O2, cortex-m4, thumb), linked at the AN386 addresses.
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cococ.backends.sparse.build import c_file, kernel_q15, q15_args, x_q15
from cococ.ir.core import CococError, Param

GCC = "arm-none-eabi-gcc"
CFLAGS = ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16", "-O2", "-std=gnu11",
          "-ffreestanding", "-nostdlib", "-nostartfiles", "-Wl,--gc-sections", "-ffunction-sections"]
LDSCRIPT = """MEMORY { FLASH (rx) : ORIGIN = 0x00000000, LENGTH = 4M
         RAM (rwx) : ORIGIN = 0x20000000, LENGTH = 1M }
SECTIONS {
  .text : { KEEP(*(.text.model_run)) *(.text*) *(.rodata*) . = ALIGN(4); } > FLASH
  .data : { . = ALIGN(4); *(.data*) . = ALIGN(4); } > RAM AT > FLASH
  .bss (NOLOAD) : { . = ALIGN(4); *(.bss*) *(COMMON) . = ALIGN(8); } > RAM
  _estack = ORIGIN(RAM) + LENGTH(RAM);
}
"""
C_ELEM = {np.dtype(np.int16): "int16_t", np.dtype(np.int32): "int32_t"}


@dataclass
class M4Run:
    y: np.ndarray           # int32 outputs
    cycles: int             # estimated cycles inside the kernel (runtime/mcu/cycles.py table)
    instructions: int
    text_bytes: int         # code size of the kernel function


def available() -> bool:
    return shutil.which(GCC) is not None


def _array(name: str, a: np.ndarray, const: bool) -> str:
    vals = ",".join(str(int(v)) for v in a.reshape(-1))
    q = "const " if const else ""
    return f"{q}{C_ELEM[a.dtype]} {name}[{a.size}] __attribute__((aligned(4))) = {{{vals}}};\n"


def source(param: Param, x: np.ndarray, name: str) -> str:
    k = kernel_q15(param, name)
    args = q15_args(param) + [("x", x_q15(param, x))]
    rows = param.shape[0]
    text = c_file([k]) + "\n"
    # weights in flash (const, as a deployed model keeps them), the input in SRAM
    text += "".join(_array(f"a_{n}", a, n != "x") for n, a in args)
    text += f"int32_t a_y[{rows}];\nfloat model_input[1];\nfloat model_output[{rows}];\n"
    call = ", ".join(f"a_{n}" for n, _ in args)
    text += ("__attribute__((section(\".text.model_run\"))) void model_run(const float* in, float* out) {\n"
             f"  (void)in;\n  {name}({call}, a_y);\n"
             f"  for (int i = 0; i < {rows}; ++i) ((int32_t*)out)[i] = a_y[i];\n}}\n")
    return text


def run_on_m4(param: Param, x: np.ndarray, workdir: str | Path | None = None) -> M4Run:
    """Compile `param`'s q15 kernel with `x` baked in, run it once, return y and its cycles."""
    from cococ.runtime.mcu.emulator import Emulator
    if not available():
        raise CococError(f"{GCC} not found: the Cortex-M4 kernels cannot be compiled")
    name = f"k0_{param.format}"
    with tempfile.TemporaryDirectory(dir=workdir) as d:
        d = Path(d)
        (d / "k.c").write_text(source(param, x, name))
        (d / "k.ld").write_text(LDSCRIPT)
        r = subprocess.run([GCC, *CFLAGS, "k.c", "-T", "k.ld", "-o", "k.elf"], cwd=d,
                           capture_output=True, text=True)
        if r.returncode:
            raise CococError(f"{GCC} failed on the {param.format} kernel:\n{r.stderr[-2000:]}")
        emu = Emulator(d / "k.elf")
        res = emu.run(np.zeros(1, np.float32))
    step = [s for s in res.steps if s.kernel == name]
    if len(step) != 1:
        raise CococError(f"the emulator saw {len(step)} calls of {name}")
    return M4Run(res.outputs.view(np.int32).copy(), step[0].cycles, step[0].instructions,
                 emu.symbols.get(name, (0, 0))[1])
