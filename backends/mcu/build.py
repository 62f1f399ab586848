"""`build_mcu`: graph -> C project (+ ELF) for the Cortex-M4, as one straight line of steps.

    lower -> generate kernels through TVM -> plan the arena -> check it fits ->
    write the project -> compile and link (when arm-none-eabi-gcc is present) -> report

The fit check runs twice: before compiling, on what cococ placed itself (weights, arena, I/O
buffers, stack), so a model that cannot fit fails fast with the numbers; and after linking,
on the ELF's real section sizes (code, libm and start-up included).
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path

import numpy as np
from elftools.elf.elffile import ELFFile

from cococ.backends.artifact import io_spec, save_graph
from cococ.backends.mcu import emit
from cococ.backends.mcu.artifact import MCUArtifact
from cococ.backends.mcu.codegen import generate_c
from cococ.backends.mcu.lower import Program, lower
from cococ.backends.mcu.plan import Interval, peak_live, plan_arena
from cococ.ir.core import CococError, Graph
from cococ.ir.formats import matrix_shape
from cococ.ir.target import KIB, Target
from cococ.ir.verify import infer_shapes

GCC = "arm-none-eabi-gcc"


def arena_intervals(prog: Program) -> list[Interval]:
    """One interval per arena-resident storage root: first writing step .. last reading step."""
    spans: dict[int, Interval] = {}
    for i, s in enumerate(prog.steps):
        for t in s.outputs + s.inputs:
            root = t.storage
            if root.home != "arena":
                continue
            iv = spans.get(id(root))
            if iv is None:
                spans[id(root)] = Interval(root.name, root.nbytes, i, i)
            else:
                iv.start, iv.end = min(iv.start, i), max(iv.end, i)
    return list(spans.values())


def _fmt(n: int) -> str:
    return f"{n / KIB:.0f} KiB" if n >= 10 * KIB else f"{n / KIB:.1f} KiB"


def fit_advice(target: Target, flash: int, sram: int, quantize: str | None) -> str:
    """The ways out of a model that does not fit, concretely: quantize (float only), prune, or
    a part with more memory (`--target-opt` sizes rounded up to a power of two)."""
    fixes = [] if quantize else ["--quantize q15 (halves the weights; int8 quarters them)"]
    fixes.append("--prune auto (prunes and retrains for the target)")
    bigger = [f"{k}={_size_opt(n)}" for k, n, have in (("flash", flash, target.flash), ("sram", sram, target.sram))
              if n > have]
    if bigger:
        fixes.append(f"--target-opt {','.join(bigger)} (a part with more memory)")
    return "; fixes: " + ", or ".join(fixes)


def _size_opt(n: int) -> str:
    """The smallest power-of-two size >= n bytes, as a --target-opt value (512K, 1M, 2M ...)."""
    k = 1 << max(0, (n - 1).bit_length())
    return f"{k // (KIB * KIB)}M" if k >= KIB * KIB else f"{max(1, k // KIB)}K"


def check_fit(target: Target, flash: int, sram: int, what: str, quantize: str | None = None) -> None:
    problems = []
    if sram > target.sram:
        problems.append(f"needs {_fmt(sram)} SRAM, target has {_fmt(target.sram)} "
                        f"({sram - target.sram:,} bytes over)")
    if flash > target.flash:
        problems.append(f"needs {_fmt(flash)} flash, target has {_fmt(target.flash)} "
                        f"({flash - target.flash:,} bytes over)")
    if problems:
        raise CococError(f"model does not fit {target.name} ({what}): " + "; ".join(problems)
                         + fit_advice(target, flash, sram, quantize))


def build_mcu(graph: Graph, target: Target, *, out_dir=None, quantize: str | None = None,
              sample_input: np.ndarray | None = None, compile: bool | None = None, seed: int = 0, **options):
    """Build `graph` for an MCU target; returns an MCUArtifact (folder: out_dir or a temp dir)."""
    if len(graph.inputs) < 1:
        raise CococError("graph has no inputs")
    graph = graph.clone()
    infer_shapes(graph)
    prog = lower(graph, quantize)
    for w in prog.warnings:  # a compressed layer kept dense (backends/mcu/sparse.py): say so
        warnings.warn(w, stacklevel=2)
    generate_c(list(prog.kernels.values()))
    intervals = arena_intervals(prog)
    arena = plan_arena(intervals)
    offsets = {iv.name: iv.offset for iv in intervals}
    for s in prog.steps:
        for t in s.args:
            if hasattr(t, "storage") and t.storage.home == "arena":
                t.storage.offset = offsets[t.storage.name]

    weight_bytes = sum(w.data.nbytes for w in prog.weights)
    io_bytes = 4 * (sum(t.size for t in prog.inputs) + sum(t.size for t in prog.outputs))
    est_sram = arena + io_bytes + emit.STACK_BYTES
    est_flash = weight_bytes + 4 * sum(t.size for t in prog.inputs)  # + code, checked after linking
    check_fit(target, est_flash, est_sram, "weights + arena + I/O + stack", quantize)

    dir = Path(out_dir) if out_dir is not None else Path(tempfile.mkdtemp(prefix="cococ-m4-"))
    if sample_input is None:
        rng = np.random.default_rng(seed)
        sample_input = np.concatenate([rng.standard_normal(t.size).astype(np.float32) for t in prog.inputs])
    files = emit.write_project(dir, prog, arena, np.asarray(sample_input, np.float32).reshape(-1),
                               target.flash, target.sram)
    report = make_report(graph, prog, arena, intervals, target, quantize)
    report["files"] = files
    report["estimate"] = {"flash": est_flash, "sram": est_sram}
    if compile is None:
        compile = shutil.which(GCC) is not None
    if compile:
        elf = compile_project(dir, target, quantize)
        report["elf"] = elf.name
        report.update(elf_sizes(elf))
        check_fit(target, report["flash"], report["sram"], "linked image", quantize)
    else:
        report["flash"], report["sram"] = est_flash, est_sram
        report["note"] = f"{GCC} not found: project written, ELF not built"
    (dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    save_graph(graph, dir)
    manifest = {"kind": "mcu", "target": target.name, "inputs": io_spec(graph.inputs),
                "outputs": io_spec(graph.outputs), "elf": report.get("elf"),
                "options": {"quantize": quantize, "flash": target.flash, "sram": target.sram, **_jsonable(options)}}
    art = MCUArtifact(target.name, manifest, dir, graph).record_hashes()
    (dir / "artifact.json").write_text(json.dumps(art.manifest, indent=2) + "\n")
    return art if out_dir is not None else art.remove_when_collected()


def _jsonable(d: dict) -> dict:
    return {k: v for k, v in d.items() if isinstance(v, (str, int, float, bool, type(None), list))}


def compile_project(dir: Path, target: Target, quantize: str | None = None) -> Path:
    """Compile and link model.elf with the Makefile's flags (called directly: no make needed)."""
    cmd = [GCC, *emit.CFLAGS, *emit.SOURCES, "-T", "mps2_an386.ld", *emit.LDFLAGS, "-lm", "-o", "model.elf"]
    r = subprocess.run(cmd, cwd=dir, capture_output=True, text=True)
    if r.returncode != 0:
        msg = r.stderr.strip()
        if "overflowed by" in msg:
            m = re.findall(r"region `(\w+)' overflowed by (\d+) bytes", msg)
            over = {("sram" if reg == "RAM" else "flash"): int(n) for reg, n in m}
            what = "; ".join(f"{'SRAM' if k == 'sram' else 'flash'} over by {n} bytes" for k, n in over.items())
            raise CococError(f"model does not fit {target.name} (linked image): {what} "
                             f"(target has {_fmt(target.flash)} flash, {_fmt(target.sram)} SRAM)"
                             + fit_advice(target, target.flash + over.get("flash", 0),
                                          target.sram + over.get("sram", 0), quantize))
        raise CococError(f"{GCC} failed in {dir}:\n{msg[-3000:]}")
    return dir / "model.elf"


def elf_sizes(elf: Path) -> dict:
    """flash = everything loaded into flash (.text, .rodata, exidx, .data's image);
    sram = .data + .bss + stack (what the linker script places in RAM)."""
    with open(elf, "rb") as f:
        e = ELFFile(f)
        secs = {s.name: s for s in e.iter_sections()}
        size = lambda n: secs[n]["sh_size"] if n in secs else 0  # noqa: E731
        flash = size(".text") + size(".ARM.exidx") + size(".data")
        sram = size(".data") + size(".bss") + size(".stack")
        return {"flash": int(flash), "sram": int(sram),
                "sections": {n: int(size(n)) for n in (".text", ".ARM.exidx", ".data", ".bss", ".stack")}}


def stored_macs(graph: Graph, step) -> int:
    """The MACs a step's kernel does: its dense MACs for a dense kernel; for a sparse one (csr,
    simd_group) only the stored weights' share of them (each stored entry x its group width)."""
    if step.format == "dense":
        return int(step.macs)
    p = graph.layer(step.layers[0]).params["weight"]
    rows, cols = matrix_shape(p.shape)
    width = int(p.attrs.get("width", 1)) if p.format == "simd_group" else 1
    return int(round(step.macs * min(1.0, p.arrays["indices"].size * width / (rows * cols))))


def make_report(graph: Graph, prog: Program, arena: int, intervals, target: Target, quantize) -> dict:
    layers = []
    for i, s in enumerate(prog.steps):
        wbytes = sum(a.data.nbytes for a in s.args if hasattr(a, "symbol"))
        layers.append({"step": i, "layers": s.layers, "op": s.op, "kernel": s.format, "function": s.kernel.name,
                       "origin": s.kernel.origin, "macs": int(s.macs), "stored_macs": stored_macs(graph, s),
                       "weight_bytes": int(wbytes),
                       "params": int(sum(a.data.size for a in s.args if hasattr(a, "symbol"))),
                       "output_bytes": int(sum(t.nbytes for t in s.outputs)),
                       "outputs": [{"name": t.name, "dtype": t.dtype, "shape": list(t.shape),
                                    "home": t.storage.home,
                                    "offset": t.storage.offset if t.storage.home == "arena" else t.storage.io_offset}
                                   for t in s.outputs]})
    return {
        "target": target.facts(), "quantize": quantize,
        "macs": int(sum(s.macs for s in prog.steps)),
        "params": int(sum(w.data.size for w in prog.weights)),
        "weight_bytes": int(sum(w.data.nbytes for w in prog.weights)),
        "arena_bytes": int(arena), "arena_peak_live_bytes": int(peak_live(intervals)),
        "arena_tensors": [{"name": iv.name, "bytes": iv.size, "offset": iv.offset, "live": [iv.start, iv.end]}
                          for iv in intervals],
        "kernels": {k.name: {"origin": k.origin, "doc": k.meta.get("doc", "")} for k in prog.kernels.values()},
        "steps": layers,
        "sparse": prog.choices, "warnings": prog.warnings,
    }
