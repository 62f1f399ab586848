"""nvcc for the cuda target: compile the generated CUDA at build time, reuse it at load time.

Why cococ runs nvcc itself: TVM 0.27 compiles CUDA inside `relax.build` only where the CUDA
driver (libcuda) is loaded. On a build machine without one, TVM keeps the CUDA *source* in the
library and compiles it when the library is loaded on a GPU, through the global function
`tvm_callback_cuda_compile` (NVRTC unless TVM_CUDA_COMPILE_MODE=nvcc, and NVRTC needs the
cuda-bindings package). TVM_CUDA_COMPILE_MODE=nvcc at build time therefore changes nothing
there: nvcc never ran, and CUDA that does not compile would only fail on the GPU machine.

So the build compiles the source with nvcc here (`compile_fatbin`, TVM's own nvcc flags:
-O3, --use_fast_math, -gencode for the target's sm_XY), fails early with nvcc's message, and
writes `kernels.cu` + `kernels.fatbin` next to `model.so`. Loading the artifact calls
`use_prebuilt(dir)`: the compile callback then returns that fatbin when TVM hands it the same
source, and runs nvcc for any other, so the GPU machine needs neither NVRTC nor a second compile.
"""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import tvm
import tvm_ffi
from tvm.support.nvcc import compile_cuda

from cococ.ir.core import CococError

SOURCE, FATBIN = "kernels.cu", "kernels.fatbin"


def sm_version(target: tvm.target.Target) -> str:
    """"80" for arch sm_80 (the cuda target's `arch` option, default sm_80)."""
    arch = str(target.attrs.get("arch", "sm_80"))
    if not arch.startswith("sm_") or not arch[3:].rstrip("a").isdigit():
        raise CococError(f"cuda arch must look like sm_80 or sm_90a, not {arch!r}")
    return arch[3:]


def compile_fatbin(source: str, target: tvm.target.Target) -> bytes:
    """nvcc the CUDA source for the target's arch; a CococError with nvcc's output on failure."""
    if shutil.which("nvcc") is None:
        raise CococError("nvcc is not on PATH: the cuda target compiles its kernels with nvcc "
                         "(install the CUDA toolkit or add its bin/ to PATH)")
    v = sm_version(target)
    try:
        with target:  # compile_cuda reads the current target for its arch checks
            return bytes(compile_cuda(source, target_format="fatbin", compiler="nvcc",
                                      arch=["-gencode", f"arch=compute_{v},code=sm_{v}"]))
    except RuntimeError as e:  # TVM puts the whole source first, nvcc's messages last
        msg = str(e).split("Compilation error:")[-1].strip()
        raise CococError(f"nvcc failed on the generated CUDA (sm_{v}):\n{msg[-4000:]}") from e


def use_prebuilt(dir: Path) -> None:
    """Make TVM's CUDA compile callback return `dir`'s fatbin for `dir`'s source (nvcc otherwise)."""
    src, fat = Path(dir) / SOURCE, Path(dir) / FATBIN
    prebuilt = {}
    if src.exists() and fat.exists():
        prebuilt[_digest(src.read_text())] = fat.read_bytes()

    def compile_cuda_source(code, *_):
        hit = prebuilt.get(_digest(str(code)))
        if hit is not None:
            return hit
        return bytes(compile_cuda(str(code), target_format="fatbin", compiler="nvcc"))

    tvm_ffi.register_global_func("tvm_callback_cuda_compile", compile_cuda_source, override=True)


def _digest(text: str) -> str:
    return hashlib.sha256(text.strip().encode()).hexdigest()
