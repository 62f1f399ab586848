"""Per-layer kernel choice: run a compressed weight's sparse kernel only where it beats dense.

Scalpel's honesty rule (seed 004 §3.3): a sparse format is not a speedup by itself; under the
break-even sparsity the index loads cost more than the skipped MACs. The backends ask this
module whether a layer's sparse form is estimated faster than its dense form on the target,
and when it is not, keep the layer dense and say so in a warning that names the layer.

The estimate here is the measured break-even table of benchmarks/sparse_breakeven.py
(docs/benchmarks/sparse-breakeven-{m4,x86}.json): the sparse/dense time ratio at the layer's
sparsity, linearly interpolated (arm-m4: q15 100x100 matrix-vector in the emulator; x86: f32
4096x4096 matrix-vector wall time, simd_group width 8). The arm-m4 backend prefers the exact
answer when it can get it — both kernels of the layer emulated (backends/mcu/sparse.py) — and
falls back to this table without arm-none-eabi-gcc.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cococ.ir.core import Param
from cococ.ir.formats import matrix_shape

BENCH_DIR = Path(__file__).resolve().parents[2] / "docs" / "benchmarks"
TABLES = {"arm-m4": "sparse-breakeven-m4.json", "x86": "sparse-breakeven-x86.json"}
# conv layers (matrix-matrix over the im2col matrix): benchmarks/sparse_breakeven_mm.py, same columns
TABLES_MM = {"arm-m4": "sparse-breakeven-mm-m4.json", "x86": "sparse-breakeven-mm-x86.json"}


@dataclass
class Choice:
    """The kernel one layer runs, and why."""
    layer: str
    format: str               # the weight's stored format
    kernel: str               # what runs: "dense" or the format
    sparsity: float           # fraction of the weight matrix the kernel skips
    ratio: float | None       # estimated or measured sparse / dense time (None: not compared)
    basis: str                # where the ratio comes from
    breakeven: float | None = None
    reason: str = ""          # why dense was kept (empty when the sparse kernel runs)

    def as_dict(self) -> dict:
        return {"layer": self.layer, "format": self.format, "kernel": self.kernel,
                "sparsity": round(self.sparsity, 4), "ratio": None if self.ratio is None else round(self.ratio, 4),
                "basis": self.basis, "breakeven": self.breakeven, "reason": self.reason}


def kernel_sparsity(p: Param) -> float:
    """Fraction of the (padded) matrix a sparse kernel does not visit: stored groups of a
    simd_group count whole, zeros inside them included (that is what the kernel multiplies)."""
    rows, cols = matrix_shape(p.shape)
    if rows * cols == 0:
        return 0.0
    if p.format == "csr":
        return 1.0 - p.arrays["values"].size / (rows * cols)
    if p.format == "simd_group":
        w = int(p.attrs["width"])
        return 1.0 - p.arrays["indices"].size * w / (rows * (-(-cols // w) * w))
    return float(np.mean(p.dense() == 0))


def crossing(sp: list[float], ratio: list[float]) -> float | None:
    """The break-even: first sparsity where sparse/dense time drops below 1 (linear
    interpolation between the measured points), None if it never does."""
    for i, (s, r) in enumerate(zip(sp, ratio)):
        if r < 1.0:
            if i == 0:
                return s
            s0, r0 = sp[i - 1], ratio[i - 1]
            return s0 + (1.0 - r0) * (s - s0) / (r - r0)
    return None


def table(target: str, fmt: str, kind: str = "mv") -> tuple[list[float], list[float], str] | None:
    """(sparsities, sparse/dense ratios, source) of the measured table, or None if none exists;
    kind "mv" (FC layers) or "mm" (conv layers)."""
    name = (TABLES_MM if kind == "mm" else TABLES).get(target)
    path = BENCH_DIR / name if name else None
    if path is None or not path.exists():
        return None
    rows = json.loads(path.read_text())["rows"]
    sp = [r[0] / 100 for r in rows]
    if target == "arm-m4":  # [sparsity%, dense, csr, simd_group, csr/dense, simd/dense]
        col = {"csr": 4, "simd_group": 5}[fmt]
        return sp, [float(r[col]) for r in rows], path.name
    # x86: [sparsity%, numpy, cococ dense, scipy csr, cococ csr, cococ simd_group, ...] (ms; MM the same)
    col = {"csr": 4, "simd_group": 5}[fmt]
    return sp, [float(r[col]) / float(r[2]) for r in rows], path.name


def estimate(layer: str, p: Param, target: str, kind: str = "mv") -> Choice:
    """Choice from the measured table (kind "mv" for FC, "mm" for conv); a target/format without
    a table keeps the sparse kernel (nothing says it is slower) and records that it was not compared."""
    s = kernel_sparsity(p)
    t = table(target, p.format, kind)
    if t is None:
        return Choice(layer, p.format, p.format, s, None, f"no break-even table for {target}")
    sp, ratio, src = t
    r = float(np.interp(s, sp, ratio))
    be = crossing(sp, ratio)
    c = Choice(layer, p.format, p.format, s, r, f"estimated ({src})", None if be is None else round(be, 4))
    if r >= 1.0:
        c.kernel = "dense"
        c.reason = keep_dense_message(c, target)
    return c


def keep_dense_message(c: Choice, target: str, detail: str = "") -> str:
    be = "" if c.breakeven is None else f"break-even {c.breakeven:.0%}"
    why = "; ".join(x for x in (detail, be) if x)
    return (f"layer {c.layer}: {c.format} at {c.sparsity:.0%} sparsity is slower than dense on {target}"
            + (f" ({why})" if why else "") + "; kept dense")
