"""`build_tvm(graph, target, **options) -> TVMArtifact`: the x86 and cuda backends, in named steps.

    infer shapes -> lower (one Relax call_tir per fused group, weights packed for the target)
    -> [tune with MetaSchedule] -> schedule (cococ's x86 schedules / dlight on cuda; tuned
    records win) -> relax.build (Relax VM + LLVM / CUDA via nvcc) -> export_library (model.so)

The artifact is the exported library plus a manifest; `cococ run DIR` loads it in a new process.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import tvm
from tvm import relax
from tvm.target import codegen

from cococ.backends.artifact import io_spec
from cococ.backends.tvm import nvcc, schedule_cuda, schedule_x86
from cococ.backends.tvm.artifact import LIBRARY, TVMArtifact, host_affinity, set_threads
from cococ.backends.tvm.lower import lower_graph
from cococ.backends.tvm.schedule_x86 import make_schedule
from cococ.backends.kernels.compute import LowerCtx
from cococ.backends.tvm.tune import apply_database, tune_module
from cococ.ir.core import CococError, Graph
from cococ.ir.target import Target, get_target, host_simd
from cococ.ir.verify import infer_shapes


def tvm_target(t: Target) -> tvm.target.Target:
    """The TVM target of `t`; LLVM's mcpu "native" is resolved to the host CPU's name here,
    because the LLVM inside apache-tvm's wheel rejects "native" and silently falls back to
    generic x86-64 (SSE2: a 4x slower build)."""
    d = dict(t.tvm)
    if d.get("kind") == "llvm" and d.get("mcpu") in (None, "native"):
        d["mcpu"] = codegen.llvm_get_system_cpu()
    if d.get("kind") == "cuda":  # dlight sizes its shared-memory tiles by it (48 KiB: static limit of every GPU)
        d.setdefault("max_shared_memory_per_block", 49152)
    host = d.pop("host", None)
    return tvm.target.Target(d, host=host) if host else tvm.target.Target(d)


def f32_lanes(t: Target) -> int:
    lanes = (t.lanes or {}).get("f32")
    return int(lanes) if lanes else host_simd()[1]


@host_affinity()  # kernels run here (sparse measurement, tuning): the host's CPU affinity stays
def build_tvm(graph: Graph, target: str | Target = "x86", *, tune: int = 0, out_dir=None,
              tuning_dir=None, threads: int | None = None, **options) -> TVMArtifact:
    """Compile `graph` for x86 or cuda. `tune`: MetaSchedule trials per task (0 = cococ's own
    schedules only); the database goes to `tuning_dir` (default OUT_DIR/tuning) and a rebuild
    with the same folder reuses it. `threads`: CPU threads at run time (default: all)."""
    t = get_target(target) if not isinstance(target, Target) else target
    if t.name not in ("x86", "cuda"):
        raise CococError(f"the TVM backend builds x86 and cuda, not {t.name}")
    unknown = set(options) - {"seed", "verbose"}
    if unknown:
        raise CococError(f"unknown build option(s) for {t.name}: {', '.join(sorted(unknown))}")
    threads = threads or (int(t.options["threads"]) if "threads" in t.options else None)
    timings = {}
    t0 = time.perf_counter()
    infer_shapes(graph)
    lanes = f32_lanes(t)
    target_obj = tvm_target(t)
    x86 = t.name == "x86"
    if x86:  # measured and tuned kernels run with the pool they will run with
        set_threads(threads)
    ctx = LowerCtx(oc_block=lanes if x86 else 1, sparse=t.options.get("sparse", "measure") if x86 else "",
                   winograd=t.options.get("winograd", "table") if x86 else "")
    mod = lower_graph(graph, ctx)
    sparse = [c.as_dict() for c in ctx.choices]
    for c in sparse:  # a compressed layer kept dense: say so (backends/tvm/sparse.py)
        if c["reason"]:
            warnings.warn(c["reason"], stacklevel=2)
    timings["lower_s"] = time.perf_counter() - t0

    database, tuned_now = None, 0
    if tune or tuning_dir:
        scratch = not (tuning_dir or out_dir)   # records kept nowhere: a folder for this build only
        tdir = Path(tuning_dir or (Path(out_dir) / "tuning" if out_dir else tempfile.mkdtemp(prefix="cococ-tune-")))
        t1 = time.perf_counter()
        hand = None
        if x86:  # cococ's own schedule is measured and recorded too: the best of both wins
            hand = lambda wl: (None if wl["main"].attrs.get("tirx.is_scheduled", False)  # noqa: E731
                               else make_schedule(wl, lanes))  # (Winograd kernels come scheduled)
        database, tuned_now = tune_module(mod, target_obj, tdir, tune, hand_schedule=hand,
                                          verbose=bool(options.get("verbose")))
        timings["tune_s"] = time.perf_counter() - t1

    t1 = time.perf_counter()
    mod, tuned = schedule(mod, t, target_obj, lanes, database)
    timings["schedule_s"] = time.perf_counter() - t1
    if database is not None and scratch:
        shutil.rmtree(tdir, ignore_errors=True)

    t1 = time.perf_counter()
    env = {"TVM_CUDA_COMPILE_MODE": "nvcc"} if t.name == "cuda" else {}
    with _environ(env):
        ex = relax.build(mod, target_obj, relax_pipeline=relax.pipeline.default_build_pipeline())
    timings["codegen_s"] = time.perf_counter() - t1
    if t.name == "cuda":  # nvcc here: without a CUDA driver TVM only stores the source (nvcc.py)
        t1 = time.perf_counter()
        cuda_src = cuda_source(ex)
        fatbin = nvcc.compile_fatbin(cuda_src, target_obj)
        timings["nvcc_s"] = time.perf_counter() - t1

    work = Path(tempfile.mkdtemp(prefix="cococ-tvm-"))
    t1 = time.perf_counter()
    ex.export_library(str(work / LIBRARY))
    if t.name == "cuda":
        (work / nvcc.SOURCE).write_text(cuda_src)
        (work / nvcc.FATBIN).write_bytes(fatbin)
    timings["export_s"] = time.perf_counter() - t1
    timings["total_s"] = time.perf_counter() - t0
    manifest = {
        "kind": "tvm", "target": t.name, "inputs": io_spec(graph.inputs), "outputs": io_spec(graph.outputs),
        "options": {"tune": tune, "threads": threads, "target_options": dict(t.options)},
        "tvm_target": str(target_obj), "library": LIBRARY, "lanes": lanes,
        "kernels": sum(isinstance(f, tvm.tirx.PrimFunc) for f in mod.functions.values()),
        "tuned_kernels": tuned, "tuned_now": tuned_now,
        "sparse": sparse, "winograd": ctx.winograd_layers,
        "build_times": {k: round(v, 3) for k, v in timings.items()},
    }
    art = TVMArtifact(t.name, manifest, work, graph).record_hashes()
    return art.remove_when_collected()  # build(out_dir=) saves a copy


def schedule(mod, t: Target, target_obj, lanes: int, database=None):
    """Schedule every PrimFunc; a MetaSchedule record for a kernel replaces cococ's schedule.
    Returns (module, number of kernels that came from the tuning database)."""
    tuned = 0
    if database is not None:
        mod, tuned = apply_database(mod, target_obj, database)
    if t.name == "x86":
        return schedule_x86.schedule_module(mod, lanes), tuned
    return schedule_cuda.schedule_module(mod, target_obj), tuned


def cuda_source(ex) -> str:
    """The CUDA C source TVM generated (what nvcc compiled), for inspection and the tests."""
    mods = ex.mod._collect_from_import_tree(lambda m: True)
    return "\n".join(m.inspect_source("") for m in mods if m.kind == "cuda")


class _environ:
    def __init__(self, env):
        self.env, self.old = env, {}

    def __enter__(self):
        for k, v in self.env.items():
            self.old[k] = os.environ.get(k)
            os.environ[k] = v

    def __exit__(self, *exc):
        for k, v in self.old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
