"""`build_mcu`: graph -> C project (+ ELF) for the Cortex-M4, as one straight line of steps.

    lower -> tensor lifetimes (in-place steps) -> generate kernels through TVM -> plan the
    arena -> check it fits -> write the project -> compile and link (when arm-none-eabi-gcc is
    present) -> report

The fit check runs twice (memory.py): before compiling, on what cococ placed itself (weights,
arena, main.c's I/O buffers, stack; the sample input only when one was given), so a model that
cannot fit fails fast with the numbers; and after linking, on the ELF's real section sizes
(code, libm and start-up included), which report.json gives as `flash` and `sram`, split into
model, board harness and libraries under `memory`, with `sram_lower_bound` (the arena at its
lower bound, the most bytes live at one step).
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

from cococ.backends.artifact import io_spec, save_graph
from cococ.backends.mcu import emit
from cococ.backends.mcu.artifact import MCUArtifact
from cococ.backends.mcu.codegen import generate_c
from cococ.backends.mcu.io import int8_io, io_offsets, quantize_input
from cococ.backends.mcu.lower import Program, lower
from cococ.backends.mcu.memory import (arena_intervals, check_fit, fit_advice, image_memory, kib_text,
                                       peak_detail, place)
from cococ.backends.mcu.plan import peak_live, plan_arena
from cococ.ir.core import CococError, Graph
from cococ.ir.formats import matrix_shape
from cococ.ir.target import Target
from cococ.ir.verify import infer_shapes

GCC = "arm-none-eabi-gcc"


def build_mcu(graph: Graph, target: Target, *, out_dir=None, quantize: str | None = None,
              sample_input: np.ndarray | None = None, compile: bool | None = None, seed: int = 0, **options):
    """Build `graph` for an MCU target; returns an MCUArtifact (folder: out_dir or a temp dir)."""
    if len(graph.inputs) < 1:
        raise CococError("graph has no inputs")
    graph = graph.clone()
    infer_shapes(graph)
    prog = lower(graph, quantize, float_out=target.io != "int8")  # int8: a float tail (i8kernels)
    io = int8_io(prog, graph) if target.io == "int8" else None  # io.py: int8 I/O, in the arena
    for w in prog.warnings:  # a compressed layer kept dense (backends/mcu/sparse.py): say so
        warnings.warn(w, stacklevel=2)
    intervals, alias = arena_intervals(prog)  # before codegen: an in-place kernel drops `restrict`
    if io is not None:
        io_offsets(prog, intervals, alias)
    generate_c(list(prog.kernels.values()))
    arena = plan_arena(intervals)
    place(prog, intervals, alias)

    # the pre-link check: what cococ places itself (the linked image adds code, libm, start-up)
    weight_bytes = sum(w.data.nbytes for w in prog.weights)
    io_bytes = 0 if io is not None else \
        sum(t.nbytes for t in prog.inputs) + sum(t.nbytes for t in prog.outputs)  # main.c's buffers
    sample = None if sample_input is None else np.asarray(sample_input, np.float32).reshape(-1)
    if sample is not None and io is not None:
        sample = quantize_input(sample, io["inputs"][0]["scale"])
    est_sram = arena + io_bytes + emit.STACK_BYTES
    est_flash = weight_bytes + (sample.nbytes if sample is not None else 0)
    in_floats = sum(t.size for t in prog.inputs if t.dtype == "float32")
    check_fit(target, est_flash, est_sram, "weights + arena + I/O + stack", quantize,
              peak_detail(prog, intervals), in_floats)

    dir = Path(out_dir) if out_dir is not None else Path(tempfile.mkdtemp(prefix="cococ-m4-"))
    files = emit.write_project(dir, prog, arena, sample, target.flash, target.sram, io)
    report = make_report(graph, prog, arena, intervals, target, quantize)
    if io is not None:
        report["io"] = io
    report["files"] = files
    report["estimate"] = {"flash": est_flash, "sram": est_sram}
    report["sample_input"] = "baked into input.c (flash)" if sample is not None else emit.GENERATED_INPUT
    if compile is None:
        compile = shutil.which(GCC) is not None
    if compile:
        elf = compile_project(dir, target, quantize)
        report["elf"] = elf.name
        report.update(image_memory(elf))
        report["sram_lower_bound"] = report["sram"] - arena + report["arena_peak_live_bytes"]
        check_fit(target, report["flash"], report["sram"], "linked image", quantize,
                  peak_detail(prog, intervals), in_floats)
    else:
        report["flash"], report["sram"] = est_flash, est_sram
        report["sram_lower_bound"] = est_sram - arena + report["arena_peak_live_bytes"]
        report["note"] = f"{GCC} not found: project written, ELF not built"
    (dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    save_graph(graph, dir)
    manifest = {"kind": "mcu", "target": target.name, "inputs": io_spec(graph.inputs),
                "outputs": io_spec(graph.outputs), "elf": report.get("elf"),
                "options": {"quantize": quantize, "flash": target.flash, "sram": target.sram,
                            "flash_ws": target.flash_ws, **_jsonable(options)}}
    if io is not None:
        manifest["options"]["io"] = "int8"
        manifest["io"] = io  # the int8 input/output scales: MCUArtifact quantizes and dequantizes
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
                             f"(target has {kib_text(target.flash)} flash, {kib_text(target.sram)} SRAM)"
                             + fit_advice(target, target.flash + over.get("flash", 0),
                                          target.sram + over.get("sram", 0), quantize))
        raise CococError(f"{GCC} failed in {dir}:\n{msg[-3000:]}")
    return dir / "model.elf"


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
