"""Dense or sparse, for one layer with a compressed weight: the one place that decides.

Scalpel's honesty rule (seed 004 §3.3): a sparse format is not a speedup by itself; under the
break-even sparsity the index loads cost more than the skipped MACs. Every user asks here:
the x86 lowering (backends/tvm/sparse.py), the arm-m4 executor (backends/mcu/sparse.py) and
the pruning cost model (runtime/compress/cost.py). This module holds

  - the eligibility rules (`dense_reason`): which layers have a sparse kernel on a target at
    all (batch, groups, dtype, quantization, group width) and the warning that says why not;
  - the measured break-even tables of benchmarks/sparse_breakeven*.py, shipped as package
    data in data/ (the benchmarks write them there and to docs/benchmarks/): sparse/dense time
    ratio by sparsity (arm-m4: q15 100x100 matrix-vector / 100x100x100 matrix-matrix, int8
    100x100 matrix-vector and int8 3x3 conv (ResNet-8's 16 -> 16 channels at 32x32, im2col
    included) with csr and both simd_group widths, emulated executor steps; x86: f32
    4096x4096 matrix-vector / 128x1200x729 matrix-matrix, wall time, simd_group width 8). A
    table a target should have and does not is an error, never a silent default;
  - the estimate from those tables (`estimate`), which the backends use when they cannot
    measure the layer itself, and the per-target cost model (`kernel_model`) Scalpel prunes against.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from cococ.ir.core import CococError, Layer, Param
from cococ.ir.formats import matrix_shape

# package data, found through importlib.resources: the installed wheel has no docs/ nor benchmarks/
TABLE_DIR = resources.files("cococ.backends.kernels") / "data"
TABLES = {"arm-m4": "sparse-breakeven-m4.json", "x86": "sparse-breakeven-x86.json"}
# conv layers (matrix-matrix over the im2col matrix): benchmarks/sparse_breakeven_mm.py, same columns
TABLES_MM = {"arm-m4": "sparse-breakeven-mm-m4.json", "x86": "sparse-breakeven-mm-x86.json"}
# int8 FC layers on arm-m4 (benchmarks/sparse_breakeven.py): rows [sparsity%, dense, csr,
# simd_group w2, simd_group w4, csr/dense, w2/dense, w4/dense] (ratios stored)
TABLES_INT8 = {"arm-m4": "sparse-breakeven-int8-m4.json"}
# int8 conv layers on arm-m4 (benchmarks/sparse_breakeven_mm_int8.py: the executor's int8 dense conv
# vs its int8 sparse conv steps, im2col included), the int8 table's columns
TABLES_MM_INT8 = {"arm-m4": "sparse-breakeven-mm-int8-m4.json"}
BENCHMARK = {"sparse-breakeven-mm-int8-": "sparse_breakeven_mm_int8", "sparse-breakeven-mm-": "sparse_breakeven_mm",
             "sparse-breakeven-": "sparse_breakeven"}   # the script that writes a table, by name prefix
# sparse/dense columns of a table's rows: arm-m4 [sparsity%, dense, csr, simd_group, csr/dense,
# simd/dense] (ratios stored); x86 [sparsity%, numpy, cococ dense, scipy csr, cococ csr, cococ
# simd_group, ...] (ms; the ratio is the column over cococ dense)
COLUMN = {"csr": 4, "simd_group": 5}
COLUMN_INT8 = {("csr", 1): 5, ("simd_group", 2): 6, ("simd_group", 4): 7}
INT8_WIDTHS = (2, 4)  # the int8 simd_group kernels: one SXTB16 per halfword pair, or SXTB16 + ROR 8 per word


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


def dense_reason(layer: Layer, target: str, quant: str | None = None) -> str:
    """Why `layer` (dense/conv2d, compressed weight) has no sparse kernel on `target` ("" when
    it has one): x86 runs f32 at batch 1; arm-m4 runs FC at batch 1 and conv at any batch, f32,
    q15 (simd_group of width 2: the SMLAD kernels read pairs) or int8 (simd_group of width 2 or
    4: SXTB16 on a halfword pair or a word); both need a conv of groups 1."""
    p = layer.params["weight"]
    n, conv, head = layer.inputs[0].type.shape[0], layer.op == "conv2d", f"layer {layer.name}: {p.format}"
    if target == "x86" and n != 1:
        return f"{head} weight at batch {n}: the x86 sparse kernels are for batch 1; kept dense"
    if conv and layer.attrs["groups"] != 1:
        return f"{head} conv with groups={layer.attrs['groups']}: the sparse conv kernel is for groups 1; kept dense"
    if target == "x86" and p.type.dtype != "f32":
        return f"layer {layer.name}: the x86 sparse kernels are f32, the weight is {p.type.dtype}; kept dense"
    if target == "arm-m4" and not conv and n != 1:
        return f"{head} weight at batch {n}: the sparse FC kernels are matrix-vector (batch 1); kept dense"
    if target == "arm-m4" and quant not in (None, "q15", "int8"):
        return f"layer {layer.name}: no {quant} sparse kernel yet; kept dense"
    if target == "arm-m4" and quant == "int8" and p.format == "simd_group" and int(p.attrs["width"]) not in INT8_WIDTHS:
        return (f"layer {layer.name}: int8 simd_group kernels read groups of 2 or 4, this weight has width "
                f"{p.attrs['width']}; kept dense")
    if target == "arm-m4" and quant == "q15" and p.format == "simd_group" and int(p.attrs["width"]) != 2:
        return (f"layer {layer.name}: q15 simd_group kernel reads pairs (width 2), this weight has width "
                f"{p.attrs['width']}; kept dense")
    return ""


def not_compared(layer: Layer, reason: str) -> Choice:
    """The choice of a layer kept dense without a comparison (`dense_reason`)."""
    p = layer.params["weight"]
    return Choice(layer.name, p.format, "dense", kernel_sparsity(p), None, "not compared", reason=reason)


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


def load_table(name: str) -> dict:
    """The JSON of a break-even table shipped with cococ (`name` without .json)."""
    path = TABLE_DIR / f"{name}.json"
    if not path.is_file():
        script = next(s for prefix, s in BENCHMARK.items() if name.startswith(prefix))
        raise CococError(f"break-even table {path} is missing from the installed package: run benchmarks/{script}.py")
    return json.loads(path.read_text(encoding="utf-8"))


def save_table(name: str, data: dict) -> Path:
    """Write a break-even table into the package (benchmarks/sparse_breakeven*.py, run in a
    checkout: the package folder is then the source folder, a plain directory)."""
    path = Path(str(TABLE_DIR / f"{name}.json"))
    path.write_text(json.dumps(data, indent=1))
    return path


def table_name(target: str, kind: str = "mv", quant: str | None = None) -> tuple[str | None, bool]:
    """(file name of the table a layer of `kind` ("mv": FC, "mm": conv) reads on `target`, or
    None; whether it is an int8 table): an int8 layer reads the int8 table of its kind where
    the target has one (arm-m4: both), any other layer the target's own."""
    int8 = (TABLES_INT8 if kind == "mv" else TABLES_MM_INT8) if quant == "int8" else {}
    if target in int8:
        return int8[target], True
    return (TABLES_MM if kind == "mm" else TABLES).get(target), False


def by_channels(d: dict, channels: int | None) -> dict:
    """The part of a table measured on the shape nearest `channels` output channels (rows of
    the weight matrix; log scale) where it holds several ("shapes": the int8 conv table, whose
    ratios move with the channels: the sparse conv's im2col of each position is shared by
    fewer rows); the table itself otherwise."""
    shapes = d.get("shapes")
    if not shapes or not channels:
        return d
    return min(shapes.values(), key=lambda s: (abs(np.log2(s["shape"][0] / channels)), -s["shape"][0]))


def table(target: str, fmt: str, kind: str = "mv", quant: str | None = None,
          width: int | None = None, channels: int | None = None) -> tuple[list[float], list[float], str] | None:
    """(sparsities, sparse/dense ratios, source) of the measured table for kind "mv" (FC
    layers) or "mm" (conv layers); an int8 layer reads the int8 table of its kind, the column
    of its format and group width (an int8 conv the shape nearest its `channels`, `by_channels`);
    None for a target nothing was measured on (cuda)."""
    name, int8 = table_name(target, kind, quant)
    if name is None:
        return None
    rows = by_channels(load_table(name[:-5]), channels)["rows"]
    sp = [r[0] / 100 for r in rows]
    col = COLUMN_INT8[(fmt, int(width or 1) if fmt == "simd_group" else 1)] if int8 else COLUMN[fmt]
    if target == "arm-m4":
        return sp, [float(r[col]) for r in rows], name
    return sp, [float(r[col]) / float(r[2]) for r in rows], name


def int8_width(target: str, kind: str = "mv") -> int | None:
    """The int8 simd_group width whose measured break-even is lower on `target` for FC ("mv")
    or conv ("mm") layers (the table chooses between SXTB16 on words of four and on halfword
    pairs; a width that never breaks even counts as 100%); None without an int8 table."""
    name = (TABLES_INT8 if kind == "mv" else TABLES_MM_INT8).get(target)
    if name is None:
        return None
    be = load_table(name[:-5])["breakeven"]
    return min(INT8_WIDTHS, key=lambda w: 1.0 if be[f"simd_group w{w}"] is None else be[f"simd_group w{w}"])


def estimate(layer: str, p: Param, target: str, kind: str = "mv", quant: str | None = None) -> Choice:
    """Choice from the measured table (kind "mv" for FC, "mm" for conv; an int8 build's FC
    layers the int8 table); a target without a table keeps the sparse kernel (nothing says it
    is slower) and records that it was not compared."""
    s = kernel_sparsity(p)
    t = table(target, p.format, kind, quant, p.attrs.get("width"), p.shape[0])
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


# ---- the pruning cost model (runtime/compress/cost.py) -------------------------------------------------

@dataclass
class KernelModel:
    """Dense cycles per MAC and the measured sparse/dense ratio by sparsity, for one target."""
    target: str
    dense_per_mac: float            # estimated cycles (M4) or ns (x86) per dense MAC
    sparsity: list[float]           # 0 .. 0.95 (int8 conv: .. 0.97)
    ratio: list[float]              # simd_group time / dense time at each sparsity
    breakeven: float | None         # sparsity from which simd_group is faster than dense;
    source: str                     # None: never, at any measured sparsity
    unit: str = "cycles"

    def sparse_time(self, dense: float, sparsity: float) -> float:
        return dense * float(np.interp(sparsity, self.sparsity, self.ratio))

    def pays_by(self, sparsity: float) -> bool:
        """Whether the sparse kernel is faster than dense at or below `sparsity` at all."""
        return self.breakeven is not None and self.breakeven <= sparsity

    @property
    def measured_to(self) -> float:
        return self.sparsity[-1]


def kernel_model(target: str, op: str = "dense", quant: str | None = None,
                 width: int | None = None, channels: int | None = None) -> KernelModel:
    """The measured break-even table for `target` and the kernel `op` runs on: an FC layer the
    matrix-vector one (arm-m4: emulated executor steps, 100x100; x86: wall time, 4096²), a conv
    on arm-m4 the matrix-matrix one (its im2col product, 100x100·100x100; its dense kernel does
    fewer cycles per MAC and its break-even is lower). An int8 layer on arm-m4 reads the int8
    table of its kind (FC: matrix-vector; conv: the executor's int8 conv steps, im2col included)
    at the simd_group column of `width` (default `int8_width` of that table: the one it says
    pays; a conv the shape nearest its output `channels`, `by_channels`), so Scalpel prunes
    against the kernels an int8 build runs; there `breakeven` is None where the kernel never
    beats dense within the table. A target nothing was measured on gets
    Scalpel's M4 numbers (48% break-even), and its `source` says so."""
    if target not in TABLES:   # Scalpel fig. 9 (M4, MV), linear between its points
        return KernelModel(target, 3.0, [0.0, 0.48, 1.0], [1.84, 1.0, 0.06], 0.48, "assumed (Scalpel fig. 9)")
    kind = "mm" if op == "conv2d" else "mv"
    if table_name(target, kind, quant)[1]:
        return _int8_model(target, int(width or int8_width(target, kind)), kind, channels)
    name = (TABLES_MM if op == "conv2d" and target == "arm-m4" else TABLES)[target][:-5]
    d = load_table(name)
    rows, sp, src = d["rows"], [r[0] / 100 for r in d["rows"]], str(TABLE_DIR / f"{name}.json")
    if target == "arm-m4":   # ratios stored; dense cycles over the benchmark's MACs
        m, k, n = d.get("shape", (100, 100, 1))
        return KernelModel(target, rows[0][1] / (m * k * n), sp, [r[5] for r in rows],
                           float(d["breakeven"]["simd_group"]), src)
    n = int(d.get("size", 4096))
    return KernelModel(target, rows[0][2] * 1e6 / (n * n), sp, [r[5] / r[2] for r in rows],
                       float(d["breakeven"]["cococ simd_group vs cococ dense"]), src, "ns")


def _int8_model(target: str, width: int, kind: str = "mv", channels: int | None = None) -> KernelModel:
    """The int8 model of FC ("mv") or conv ("mm") layers: dense int8 cycles per MAC of the
    table's shape (rows, cols, positions; a conv's nearest its `channels`) and the simd_group
    column of `width`."""
    if width not in INT8_WIDTHS:
        raise CococError(f"int8 simd_group kernels read groups of {' or '.join(map(str, INT8_WIDTHS))}, not {width}")
    name = (TABLES_INT8 if kind == "mv" else TABLES_MM_INT8)[target][:-5]
    d = by_channels(load_table(name), channels if kind == "mm" else None)
    rows, col = d["rows"], COLUMN_INT8[("simd_group", width)]
    m, k, n = d.get("shape", (100, 100, 1))
    be = d["breakeven"][f"simd_group w{width}"]
    what = "int8" if kind == "mv" else f"int8 conv {m}x{k}x{n}"
    return KernelModel(target, rows[0][1] / (m * k * n), [r[0] / 100 for r in rows], [r[col] for r in rows],
                       None if be is None else float(be), f"{TABLE_DIR / name}.json ({what}, width {width})")
