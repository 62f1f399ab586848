"""The QEMU cross-check: run a cococ ELF on `qemu-system-arm -M mps2-an386` (a Cortex-M4
board model, independent of unicorn's CPU loop) and read the outputs main.c prints through
semihosting as exact float32 bits."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np

from cococ.ir.core import CococError

QEMU = "qemu-system-arm"
_LINE = re.compile(r"out\[(\d+)\] = 0x([0-9a-f]{8})")


def available() -> bool:
    return shutil.which(QEMU) is not None


def run_qemu(elf: str | Path, timeout: float = 60.0, io_dtype=np.float32) -> np.ndarray:
    """Outputs of main.c's run (the sample input baked into input.c), as float32 (io_dtype
    int8, an io=int8 build: main.c prints each int8 output sign-extended, read back as int8)."""
    cmd = [QEMU, "-M", "mps2-an386", "-nographic", "-monitor", "none", "-serial", "none",
           "-semihosting-config", "enable=on,target=native", "-kernel", str(elf)]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise CococError(f"QEMU did not finish within {timeout:.0f} s on {elf}") from None
    text = r.stdout + r.stderr  # semihosting console output may go to either
    found = {int(i): int(h, 16) for i, h in _LINE.findall(text)}
    if r.returncode != 0 or not found:
        raise CococError(f"QEMU run of {elf} failed (exit {r.returncode}): {text[-500:]}")
    bits = np.array([found[i] for i in range(len(found))], dtype=np.uint32)
    return bits.view(np.int32).astype(np.int8) if np.dtype(io_dtype) == np.int8 else bits.view(np.float32)
