"""Run one kernel (or a few) on the emulated Cortex-M4 and count its cycles.

`emulate_image` compiles a one-file test image and runs it once: the break-even benchmarks,
the executor's dense-vs-sparse comparison and the tests use it. `emulate(steps)` makes that
image from executor steps (Kernel, args) on random inputs: the dense and the sparse step of
one layer for sparse.py's choice, the FC steps of benchmarks/sparse_breakeven.py. For one bare q15
library kernel (`run_on_m4`, `run_mm_on_m4`) the image is the smallest thing backends/mcu.s
Emulator runs: the kernel's C (TVM codegen, sparse_kernels.kernel_q15 / kernel_q15_mm of
backends/kernels/mv.py and mm.py), the param's arrays and the input
(vector, or the XT im2col buffer) as initialised globals, and a
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

from cococ.backends.kernels.layout import filled, q15_args, x_q15, x_q15_mm
from cococ.backends.mcu.codegen import C_TYPES, Kernel, generate_c
from cococ.backends.mcu.emulator import Emulator
from cococ.backends.mcu.lower import Weight
from cococ.backends.mcu.sparse_kernels import c_file, kernel_q15, kernel_q15_mm
from cococ.ir.core import CococError, Param

GCC = "arm-none-eabi-gcc"
CFLAGS = ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16", "-O2", "-std=gnu11",
          "-ffreestanding", "-nostdlib", "-nostartfiles", "-Wl,--gc-sections", "-ffunction-sections",
          "-fno-strict-aliasing"]  # as the firmware build (emit.CFLAGS): kernels read int16 pairs as words
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
    cycles: int             # estimated cycles inside the kernel (backends/mcu/cycles.py table)
    instructions: int
    text_bytes: int         # code size of the kernel function


def available() -> bool:
    return shutil.which(GCC) is not None


def _array(name: str, a: np.ndarray, const: bool) -> str:
    vals = ",".join(str(int(v)) for v in a.reshape(-1))
    q = "const " if const else ""
    return f"{q}{C_ELEM[a.dtype]} {name}[{a.size}] __attribute__((aligned(4))) = {{{vals}}};\n"


def _image(kernel, args: list[tuple[str, np.ndarray]], out_len: int) -> str:
    """C of the emulator image: kernel, arrays as globals, `model_run` calling it once."""
    text = c_file([kernel]) + "\n"
    # weights in flash (const, as a deployed model keeps them), the input in SRAM
    text += "".join(_array(f"a_{n}", a, n != "x") for n, a in args)
    text += f"int32_t a_y[{out_len}];\nfloat model_input[1];\nfloat model_output[{out_len}];\n"
    call = ", ".join(f"a_{n}" for n, _ in args)
    text += ("__attribute__((section(\".text.model_run\"))) void model_run(const float* in, float* out) {\n"
             f"  (void)in;\n  {kernel.name}({call}, a_y);\n"
             f"  for (int i = 0; i < {out_len}; ++i) ((int32_t*)out)[i] = a_y[i];\n}}\n")
    return text


def source(param: Param, x: np.ndarray, name: str) -> str:
    return _image(kernel_q15(param, name), q15_args(param) + [("x", x_q15(param, x))], param.shape[0])


def source_mm(param: Param, x: np.ndarray, name: str) -> str:
    """The MM image: x is X[cols, n], passed as the XT im2col buffer (layout.x_q15_mm)."""
    n = int(np.asarray(x).shape[1])
    return _image(kernel_q15_mm(param, name, n), q15_args(param) + [("x", x_q15_mm(param, x))],
                  param.shape[0] * n)


def run_on_m4(param: Param, x: np.ndarray, workdir: str | Path | None = None) -> M4Run:
    """Compile `param`'s q15 MV kernel with `x` baked in, run it once, return y and its cycles."""
    return _run(source(param, x, f"k0_{param.format}"), f"k0_{param.format}", param.format, workdir)


def run_mm_on_m4(param: Param, x: np.ndarray, workdir: str | Path | None = None) -> M4Run:
    """The same for the q15 MM kernel, X[cols, n] int16; y comes back as Y[rows, n] int32."""
    name = f"k0_mm_{param.format}"
    r = _run(source_mm(param, x, name), name, param.format, workdir)
    r.y = r.y.reshape(param.shape[0], -1)
    return r


def emulate_image(text: str, what: str, workdir=None, libs: tuple[str, ...] = ()):
    """Compile a one-file test image (C source with `model_run`) for the M4, run it once on the
    emulator; returns (emulator, result). `what` names the image in a compiler error."""
    if not available():
        raise CococError(f"{GCC} not found: the Cortex-M4 kernels cannot be compiled")
    with tempfile.TemporaryDirectory(dir=workdir) as d:
        d = Path(d)
        (d / "k.c").write_text(text)
        (d / "k.ld").write_text(LDSCRIPT)
        r = subprocess.run([GCC, *CFLAGS, "k.c", "-T", "k.ld", "-o", "k.elf", *libs], cwd=d,
                           capture_output=True, text=True)
        if r.returncode:
            raise CococError(f"{GCC} failed on the {what}:\n{r.stderr[-2000:]}")
        emu = Emulator(d / "k.elf")
        return emu, emu.run(np.zeros(1, np.float32))


def _run(text: str, name: str, what: str, workdir) -> M4Run:
    emu, res = emulate_image(text, f"{what} kernel", workdir)
    step = [s for s in res.steps if s.kernel == name]
    if len(step) != 1:
        raise CococError(f"the emulator saw {len(step)} calls of {name}")
    return M4Run(res.outputs.view(np.int32).copy(), step[0].cycles, step[0].instructions,
                 emu.symbols.get(name, (0, 0))[1])


# ---- several executor steps in one image (the dense-vs-sparse comparison, benchmarks) ----------

def _c_def(name: str, a: np.ndarray, const: bool, dtype: str) -> str:
    q = "const " if const else ""
    vals = [repr(float(v)) + "f" if a.dtype == np.float32 else str(int(v)) for v in filled(a.reshape(-1))]
    return f"static {q}{C_TYPES[dtype]} {name}[{max(a.size, 1)}] __attribute__((aligned(4))) = {{{', '.join(vals)}}};\n"


def emulate(steps: list[tuple[Kernel, list]], seed: int = 0) -> list[int]:
    """Cycles of each (kernel, args) step, run once in this order on random inputs."""
    generate_c([k for k, _ in steps])
    rng = np.random.default_rng(seed)
    names: dict[int, str] = {}
    defs, calls = [], []
    written = {id(a) for k, args in steps for a, spec in zip(args, k.args) if spec[2]}
    for k, args in steps:
        exprs = []
        for a, (_, dtype, is_out) in zip(args, k.args):
            key = id(a) if not isinstance(a, Weight) else a.symbol
            if key not in names:
                names[key] = f"m{len(names)}"
                if isinstance(a, Weight):
                    defs.append(_c_def(names[key], a.data, True, a.dtype))
                else:
                    n = a.nbytes // np.dtype({"float32": np.float32, "int16": np.int16,
                                              "int8": np.int8}[a.dtype]).itemsize
                    data = (rng.standard_normal(n).astype(np.float32) if a.dtype == "float32" else
                            rng.integers(-128, 128, n).astype(np.int8) if a.dtype == "int8" else
                            rng.integers(-8192, 8192, n).astype(np.int16))
                    defs.append(_c_def(names[key], np.zeros_like(data) if id(a) in written else data, False, a.dtype))
            exprs.append(names[key])
        calls.append(f"  {k.name}({', '.join(exprs)});\n")
    incs = sorted({"<stdint.h>", "<math.h>"} | {i for k, _ in steps for i in k.includes})
    preludes = "".join(dict.fromkeys(k.meta["prelude"] for k, _ in steps if k.meta.get("prelude")))  # as kernels.c
    src = ("".join(f"#include {i}\n" for i in incs) + preludes + "\n".join(k.source for k, _ in steps) + "".join(defs)
           + "float model_input[1];\nfloat model_output[1];\n"
           + "__attribute__((section(\".text.model_run\"))) void model_run(const float* in, float* out) {\n"
           + "  (void)in; (void)out;\n" + "".join(calls) + "}\n")
    _, res = emulate_image(src, "kernel comparison image", libs=("-lm",))
    if len(res.steps) != len(steps):
        raise CococError(f"the emulator saw {len(res.steps)} kernel calls, expected {len(steps)}")
    return [s.cycles for s in res.steps]
