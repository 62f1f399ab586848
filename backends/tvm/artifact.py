"""The x86/cuda artifact: `model.so` (the Relax VM executable with its kernels and weights,
written by `export_library`) plus the manifest. Loading needs TVM but not the compiler: a new
process opens the library and runs it on the Relax VM, on the CPU or the first CUDA device.
The library is code loaded into the process: its sha256 (and, for cuda, the kernels' source and
fatbin) is recorded at build time and checked before loading (backends/artifact.py).

TVM's CPU thread pool and the host process (`host_affinity`, `set_threads`): cococ runs inside
programs that have thread pools of their own (torch, BLAS, onnxruntime), so it must leave their
CPU affinity alone. TVM, when it makes or resizes its pool, binds the calling thread to one core
unless TVM_BIND_THREADS=0, and every thread that thread starts later inherits the binding (an
onnxruntime session made after a cococ run had its 2 threads on 1 core: 3.5x slower). Its default
pool is also half the cores (it assumes hyper-threading): one thread on a 2-core machine."""
from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
import tvm
from tvm import relax

from cococ.backends.artifact import Artifact
from cococ.backends.tvm.nvcc import FATBIN, SOURCE, use_prebuilt
from cococ.ir.core import CococError

LIBRARY = "model.so"


class TVMArtifact(Artifact):
    """Runs in-process. `bench` uses TVM's own timer around the VM call (no numpy copies)."""

    kind = "tvm"

    def __init__(self, target: str, manifest: dict[str, Any], dir=None, graph=None):
        super().__init__(target, manifest, dir, graph)
        self._vm = None
        self._dev = None

    def code_files(self) -> list[str]:
        return [LIBRARY, SOURCE, FATBIN] if self.target == "cuda" else [LIBRARY]

    # -- running -----------------------------------------------------------------------------
    def _load(self):
        if self._vm is not None:
            return self._vm
        if self.dir is None or not (self.dir / LIBRARY).exists():
            raise CococError(f"artifact has no {LIBRARY} (folder {self.dir})")
        self.verify_code()  # before load_module: a truncated library is SIGBUS, not an exception
        if self.target == "cuda":
            dev = tvm.cuda(0)
            if not dev.exist:
                raise CococError("no CUDA device on this machine: the cuda artifact builds here but runs "
                                 "where a GPU is present")
            use_prebuilt(self.dir)  # the library may hold CUDA source: load kernels.fatbin for it
        else:
            dev = tvm.cpu(0)
        lib = tvm.runtime.load_module(str(self.dir / LIBRARY))
        self._vm, self._dev = relax.VirtualMachine(lib, dev), dev
        return self._vm

    def _feeds(self, inputs: dict[str, np.ndarray]):
        self._load()
        if self.target != "cuda":  # TVM's pool is per calling thread: size it in each one that runs
            set_threads((self.manifest.get("options") or {}).get("threads"))
        return [tvm.runtime.tensor(np.ascontiguousarray(inputs[n]), self._dev) for n in self.input_names]

    def _run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        vm = self._load()
        out = vm["main"](*self._feeds(inputs))
        outs = [out] if len(self.output_names) == 1 else list(out)
        return {n: o.numpy() for n, o in zip(self.output_names, outs)}

    def bench(self, n: int = 10, inputs=None) -> dict[str, Any]:
        feeds = self._feeds(self.normalize_inputs(inputs if inputs is not None else self.random_inputs()))
        vm = self._load()
        vm["main"](*feeds)  # warm-up
        timer = vm.time_evaluator("main", self._dev, number=1, repeat=max(1, n))
        times = list(timer(*feeds).results)
        return {"n": len(times), "median_s": float(np.median(times)), "min_s": float(np.min(times))}

    def cuda_source(self) -> str:
        p = self.dir / "kernels.cu" if self.dir else None
        return p.read_text() if p and p.exists() else ""

    @classmethod
    def load(cls, dir: Path, manifest: dict[str, Any]) -> "TVMArtifact":
        return cls(manifest["target"], manifest, dir)


_POOL = threading.local()  # .threads: the size this thread's TVM pool was configured to


def set_threads(n: int | None = None) -> int:
    """Size the calling thread's TVM CPU pool to `n` threads (default: every core this process
    may run on), once per thread and size; returns the size. The cpus list only tells TVM the
    count (its thread-local "max concurrency"; with TVM_BIND_THREADS=0 nothing is bound), which
    is what lifts the pool above TVM's half-the-cores default. A pool TVM already made in this
    thread keeps its number of workers (TVM cannot grow it), so `build_tvm` sizes it first."""
    n = int(n or usable_cores())
    if getattr(_POOL, "threads", None) != n:
        with host_affinity():
            tvm.get_global_func("runtime.config_threadpool")(1, n, [str(i) for i in range(n)])  # 1 = kBig
        _POOL.threads = n
    return n


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@contextlib.contextmanager
def host_affinity():
    """Around anything that may make or configure a TVM pool (building: sparse-kernel measurement
    and MetaSchedule trials run kernels; sizing the pool before a thread's first run): TVM's binding
    is off (TVM_BIND_THREADS=0, read when a pool is configured; the variable is put back after),
    and the calling thread's CPU affinity is restored should anything have changed it."""
    old = os.environ.get("TVM_BIND_THREADS")
    before = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    os.environ["TVM_BIND_THREADS"] = "0"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("TVM_BIND_THREADS", None)
        else:
            os.environ["TVM_BIND_THREADS"] = old
        if before is not None and os.sched_getaffinity(0) != before:
            os.sched_setaffinity(0, before)

