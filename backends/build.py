"""`build(graph, target, **options) -> Artifact`: the one entry point of every backend.

arm-m4 goes to cococ's own MCU backend (backends/mcu/); x86 and cuda go to the TVM backend
(backends/tvm/, `build_tvm`). Both return an `Artifact` (backends/artifact.py). Options every
backend understands: `out_dir` (where the artifact folder goes; a temp folder if None),
`target_options` (e.g. {"flash": "1M"}), `quantize` ("q15" or "int8" on arm-m4). The rest is passed on.
"""
from __future__ import annotations

from cococ.ir.core import CococError, Graph
from cococ.ir.target import Target, get_target
from cococ.passes.quantize import Quantize


def build(graph: Graph, target: str | Target = "x86", *, out_dir=None, target_options: dict | None = None,
          quantize: str | None = None, calibration=None, **options):
    t = get_target(target, target_options)
    if quantize is not None:
        if quantize not in ("q15", "int8"):
            raise CococError(f"unknown quantization '{quantize}' (known: q15, int8)")
        graph = ensure_quantized(graph, quantize, calibration, seed=options.get("seed", 0))
    if t.name == "arm-m4":
        from cococ.backends.mcu.build import build_mcu  # local: a build imports only its own backend
        return build_mcu(graph, t, out_dir=out_dir, quantize=quantize, **options)
    if quantize is not None:
        raise CococError(f"--quantize {quantize} is for arm-m4; target {t.name} runs float")
    from cococ.backends.tvm import build_tvm  # local: TVM takes seconds to import; arm-m4 builds skip it
    art = build_tvm(graph, t, out_dir=out_dir, **options)
    if out_dir is not None:
        art.save(out_dir)
    return art


def ensure_quantized(graph: Graph, dtype: str, calibration=None, seed: int = 0) -> Graph:
    """The graph itself if a quantize pass already ran for `dtype`; otherwise quantized now,
    calibrated on `calibration` (inputs for the reference interpreter) or random samples."""
    q = graph.meta.get("quant")
    if q and q.get("dtype") == dtype:
        return graph
    return Quantize(dtype=dtype).run_on(graph, samples=calibration, seed=seed)
