"""MCUArtifact: a Cortex-M4 project folder; `run` executes its ELF on the emulated core.

The ELF is the folder's code: its sha256 is recorded at build time and checked before the
emulator parses it (backends/artifact.py), so a truncated or damaged ELF is a one-line error."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from cococ.backends.artifact import Artifact
from cococ.backends.mcu.emulator import Emulator
from cococ.backends.mcu.io import dequantize, quantize_input
from cococ.ir.core import CococError


REBUILD = "rebuild the artifact with `cococ build`"


class MCUArtifact(Artifact):
    kind = "mcu"

    def __init__(self, target, manifest, dir=None, graph=None):
        super().__init__(target, manifest, dir, graph)
        self._emu = None
        self.last_run = None  # RunResult of the latest run: instructions, cycles, per step

    @property
    def report(self) -> dict[str, Any]:
        path = self.dir / "report.json"
        try:
            report = json.loads(path.read_text(encoding="utf-8"))
        except OSError as e:
            raise CococError(f"{path}: cannot read: {e.strerror or e}; {REBUILD}") from None
        except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
            raise CococError(f"{path}: bad JSON ({e}); {REBUILD}") from None
        steps = report.get("steps") if isinstance(report, dict) else None
        if not isinstance(steps, list) or not all(isinstance(s, dict) for s in steps):
            raise CococError(f"{path}: not a build report (no 'steps' list of objects); {REBUILD}")
        return report

    def code_files(self) -> list[str]:
        elf = self.manifest.get("elf")
        if elf is None:
            return []
        if not isinstance(elf, str) or Path(elf).name != elf:
            raise CococError(f"{self.dir}/artifact.json: 'elf' must be a file name in the folder, got {elf!r}")
        return [elf]

    @property
    def elf(self) -> Path:
        if self.dir is None or not self.manifest.get("elf"):
            raise CococError("this arm-m4 artifact has no ELF (arm-none-eabi-gcc was missing at build time); "
                             "build it with `make` in the project folder, or install gcc-arm-none-eabi")
        return self.dir / self.code_files()[0]

    def emulator(self):
        if self._emu is None:
            elf = self.elf
            self.verify_code()
            self._emu = Emulator(elf, flash_ws=int(self.manifest.get("options", {}).get("flash_ws", 0)),
                                 io_dtype=np.int8 if self.io else np.float32)
        return self._emu

    @property
    def io(self) -> dict | None:
        """The io=int8 record (backends/mcu/io.py: scales, zero points), None for float I/O."""
        return self.manifest.get("io")

    def normalize_inputs(self, inputs):
        """io=int8: an int8 array is taken as already quantized (dequantized here, and quantized
        back exactly in `_run`), a float one is quantized at the recorded scale."""
        if self.io is not None:
            s = self.io["inputs"][0]["scale"]
            deq = lambda x: dequantize(x, s) if isinstance(x, np.ndarray) and x.dtype == np.int8 else x  # noqa: E731
            inputs = ({k: deq(v) for k, v in inputs.items()} if isinstance(inputs, dict) else
                      [deq(v) for v in inputs] if isinstance(inputs, (list, tuple)) else deq(inputs))
        return super().normalize_inputs(inputs)

    def device_outputs(self, x: np.ndarray) -> np.ndarray:
        """The float outputs of one uncounted run (Emulator.outputs) on the flat float input x:
        io=int8 builds quantize x and dequantize the outputs as the float-io build's steps do."""
        if self.io is None:
            return self.emulator().outputs(x)
        q = self.emulator().outputs(quantize_input(x, self.io["inputs"][0]["scale"]))
        return dequantize(q, self.io["outputs"][0]["scale"])

    def _run(self, inputs):
        x = np.concatenate([inputs[n].reshape(-1) for n in self.input_names]).astype(np.float32)
        if self.io is not None:
            x = quantize_input(x, self.io["inputs"][0]["scale"])
        res = self.emulator().run(x)
        if self.io is not None:
            res.outputs = dequantize(res.outputs, self.io["outputs"][0]["scale"])
        self.last_run = res
        sizes = [math.prod(spec["shape"]) for spec in self.manifest["outputs"]]
        if sum(sizes) != res.outputs.size:  # a damaged manifest: shapes the ELF does not write
            raise CococError(f"{self.dir / 'artifact.json'}: 'outputs' hold {sum(sizes)} values, the ELF's "
                             f"model_output holds {res.outputs.size}; {REBUILD}")
        out, off = {}, 0
        for spec, n in zip(self.manifest["outputs"], sizes):
            out[spec["name"]] = res.outputs[off:off + n].reshape(spec["shape"])
            off += n
        return out

    def bench(self, n: int = 1, inputs=None) -> dict[str, Any]:
        """Cycles are deterministic on the emulator: one run gives the estimate (n is ignored)."""
        self.run(inputs if inputs is not None else self.random_inputs())
        return self.profile()

    def profile(self) -> dict[str, Any]:
        """Instructions and estimated cycles of the latest run, in total and per step (layer)."""
        r = self.last_run
        if r is None:
            raise CococError("run the artifact first")
        steps = self.report["steps"]
        rows = []
        for s in r.steps:
            info = steps[s.index] if s.index < len(steps) else {}
            macs = info.get("macs", 0)
            done = info.get("stored_macs", macs)  # a sparse kernel does only its stored weights' MACs
            rows.append({"step": s.index, "layers": info.get("layers", []), "op": info.get("op", "?"),
                         "kernel": s.kernel, "format": info.get("kernel", "dense"), "macs": macs,
                         "stored_macs": done, "instructions": s.instructions, "cycles": s.cycles,
                         "cycles_per_mac": round(s.cycles / done, 3) if done else None})
        return {"instructions": r.instructions, "cycles": r.cycles, "flash_ws": self.emulator().flash_ws,
                "flash_stall_cycles": r.flash_stall_cycles, "executor_instructions": r.executor_instructions,
                "executor_cycles": r.executor_cycles, "steps": rows}
