"""Targets: what a piece of hardware offers to the passes and the code generators.

Passes read `parallelism` (Scalpel §3.1: low -> SIMD-aware weight pruning, high -> node
pruning, moderate -> both) and `lanes` (the SIMD width per dtype: the group width of
simd-group sparsification). Backends read `tvm` (a TVM 0.27 target dict, which
backends/tvm/build.py turns into a tvm.target.Target) and, for MCUs, the memory sizes a build
must fit in. The table is data only, so it lives in ir/, below both of its readers.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cococ.ir.core import CococError

KIB = 1024


@dataclass(frozen=True)
class Target:
    name: str
    tvm: dict[str, Any]                      # tvm.target.Target(this) builds kernels for it
    parallelism: str                         # "low" | "moderate" | "high"
    lanes: dict[str, int]                    # SIMD lanes per IR dtype
    flash: int | None = None                 # bytes (MCUs only)
    sram: int | None = None                  # bytes (MCUs only)
    description: str = ""
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def is_mcu(self) -> bool:
        return self.flash is not None

    @property
    def flash_ws(self) -> int:
        """Flash wait states the cycle estimate charges (`--target-opt flash-ws=N`; arm-m4)."""
        return int(self.options.get("flash-ws", 0))

    @property
    def io(self) -> str:
        """The model's input/output type (`--target-opt io=int8`; arm-m4 under --quantize int8):
        "float32" (model_run quantizes and dequantizes) or "int8" (TFLite Micro style)."""
        return str(self.options.get("io", "float32"))

    def facts(self) -> dict[str, Any]:
        """A JSON-able summary (for `cococ targets` and report.json)."""
        d = {"name": self.name, "parallelism": self.parallelism, "lanes": dict(self.lanes), "tvm": self.tvm}
        if self.is_mcu:
            d.update(flash=self.flash, sram=self.sram)
        return d


def parse_size(text: str | int) -> int:
    """'512K', '1M', '192KiB', '65536' -> bytes."""
    if isinstance(text, int):
        return text
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmM]?)(?:i?[bB])?\s*", str(text))
    if not m:
        raise CococError(f"bad memory size {text!r} (examples: 512K, 1M, 131072)")
    mult = {"": 1, "k": KIB, "m": KIB * KIB}[m.group(2).lower()]
    return int(float(m.group(1)) * mult)


def parse_target_options(text: str | None) -> dict[str, str]:
    """'flash=1M,sram=192K' -> {'flash': '1M', 'sram': '192K'} (the CLI's --target-opt)."""
    out: dict[str, str] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        if "=" not in item:
            raise CococError(f"bad target option {item!r}: expected key=value")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def _arm_m4(options: dict[str, Any]) -> Target:
    known = {"flash", "sram", "flash-ws", "io"}
    _check_options("arm-m4", options, known)
    if str(options.get("io", "float32")) not in ("float32", "int8"):
        raise CococError(f"bad io {options['io']!r} for target arm-m4: float32 (the default) or int8 "
                         "(int8 input and output, with --quantize int8)")
    ws = str(options.get("flash-ws", "0"))
    if not ws.isdigit() or int(ws) > 15:  # FLASH_ACR.LATENCY is 4 bits on STM32L4+
        raise CococError(f"bad flash-ws {ws!r} for target arm-m4: flash wait states, 0..15 "
                         "(NUCLEO-L4R5ZI at 120 MHz: 5)")
    return Target(
        name="arm-m4",
        tvm={"kind": "c", "mcpu": "cortex-m4"},
        parallelism="low",
        lanes={"i16": 2, "i8": 4, "f32": 1},  # SMLAD: 2 x 16-bit MACs; SXTB16+SMLAD: 4 x 8-bit
        flash=parse_size(options.get("flash", "512K")),
        sram=parse_size(options.get("sram", "128K")),
        description="Cortex-M4F with DSP extension (thumbv7em, FPv4-SP); C + AOT executor, arm-none-eabi-gcc",
        options=dict(options),
    )


def host_simd(cpuinfo: str | None = None) -> tuple[str, int]:
    """('avx512f'|'avx2'|'sse2', f32 lanes) from /proc/cpuinfo's flags."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    flags = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    if "avx512f" in flags:
        return "avx512f", 16
    if "avx2" in flags:
        return "avx2", 8
    return "sse2", 4


def _x86(options: dict[str, Any]) -> Target:
    _check_options("x86", options, {"mcpu", "threads", "sparse", "winograd"})
    if str(options.get("winograd", "table")) not in ("off", "table", "measure", "f2", "f4"):
        raise CococError(f"bad winograd {options['winograd']!r} for target x86: table (the default), off, measure, f2 or f4")
    isa, f32 = host_simd()
    tvm_t: dict[str, Any] = {"kind": "llvm", "mcpu": options.get("mcpu", "native")}
    if "threads" in options:
        tvm_t["num-cores"] = int(options["threads"])
    return Target(
        name="x86", tvm=tvm_t, parallelism="moderate",
        lanes={"f32": f32, "i16": f32 * 2, "i8": f32 * 4},
        description=f"host CPU through TVM's LLVM backend ({isa}: {f32} f32 lanes)",
        options=dict(options),
    )


def _cuda(options: dict[str, Any]) -> Target:
    _check_options("cuda", options, {"arch"})
    arch = str(options.get("arch", "sm_80"))
    if not re.fullmatch(r"sm_\d+[a-z]?", arch):
        raise CococError(f"bad cuda arch {arch!r} (examples: sm_80, sm_90)")
    return Target(
        name="cuda", tvm={"kind": "cuda", "arch": arch, "host": {"kind": "llvm"}}, parallelism="high",
        lanes={"f32": 32, "f16": 32, "i8": 32},  # a warp
        description=f"NVIDIA GPU through TVM's CUDA codegen and nvcc ({arch})",
        options=dict(options),
    )


TARGETS = {"arm-m4": _arm_m4, "x86": _x86, "cuda": _cuda}


def _check_options(name: str, options: dict[str, Any], known: set[str]) -> None:
    bad = sorted(set(options) - known)
    if bad:
        raise CococError(f"unknown option(s) {', '.join(bad)} for target {name} (known: {', '.join(sorted(known))})")


def get_target(name: str | Target, options: dict[str, Any] | None = None) -> Target:
    """The Target called `name`, with options (e.g. {"flash": "1M", "sram": "192K"}) applied."""
    if isinstance(name, Target):
        return name if not options else get_target(name.name, {**name.options, **options})
    if name not in TARGETS:
        raise CococError(f"unknown target '{name}' (known: {', '.join(TARGETS)})")
    return TARGETS[name](dict(options or {}))


def all_targets() -> list[Target]:
    return [f({}) for f in TARGETS.values()]


__all__ = ["Target", "get_target", "all_targets", "parse_size", "parse_target_options", "KIB"]
