"""cococ: a compression-compilation co-design compiler for convolutional networks.

    g = cococ.load("net.prototxt", weights="net.caffemodel")
    g = cococ.passes.run(g, "canonicalize,prune-filters{rate=0.5}")
    art = cococ.build(g, target="arm-m4")
    art.run(x)

Exits to other tools: to_onnx, to_relax, to_torch.
"""
from __future__ import annotations

import importlib

from cococ.ir.core import CococError, Graph, Layer, Param, TensorType, Value

__version__ = "0.1.0"

# Each entry point imports its package when it is called, so that `import cococ` (and the CLI,
# whose `--help` imports every command) loads neither the frontends' grammars nor TVM, torch or onnx.


def load(path, *, weights=None, init: str | None = None, seed: int = 0, phase: str = "TEST",
         lenient: bool = False, input_shape=None) -> Graph:
    """Read a network (.ir, .prototxt, .onnx) into the layer IR, with optional weights
    (`lenient`: a .prototxt field caffe.proto does not define is a warning, not an error;
    `input_shape`: the dims of a .prototxt net's one input, e.g. for a train_val net's Data layer)."""
    from cococ.frontend.load import load as _load
    return _load(path, weights=weights, init=init, seed=seed, phase=phase, lenient=lenient,
                 input_shape=input_shape)


def build(graph: Graph, target: str = "x86", *, pipeline: str | None = None, **options):
    """Compile a graph for a target; returns an Artifact with .run() and .save().

    As `cococ build` does: `pipeline` runs first, on a copy (`graph` is left as it is); None (the
    default) is the target's default pipeline, what `cococ build` runs without -p (canonicalize:
    batchnorm, scale and bias fold into the conv/dense before them, dropout goes); "" runs no pass. Options: `out_dir` (default: a temp folder, where `cococ build`
    writes build/<name>-<target>), `target_options`, `quantize` ("q15", "int8": arm-m4),
    `calibration`, `seed`, `tune` and `threads` (x86/cuda)."""
    from cococ.backends.build import build as _build
    from cococ.ir.target import get_target
    from cococ.ir.verify import infer_shapes
    from cococ.passes import run as run_passes
    from cococ.passes.pipeline import default_pipeline
    if pipeline is None:
        pipeline = default_pipeline(get_target(target, options.get("target_options")))
    if pipeline:
        graph = graph.clone()
        infer_shapes(graph)   # the passes' verifier wants every value typed (a GraphBuilder graph is not yet)
        graph = run_passes(graph, pipeline)
    return _build(graph, target, **options)


def to_onnx(graph: Graph):
    from cococ.backends.onnx_export import to_onnx as _to_onnx
    return _to_onnx(graph)


def to_relax(graph: Graph, *, bind_params: bool = True):
    """The Relax module, weights bound as constants; `bind_params=False`: (module, params)."""
    from cococ.backends.tvm.relax_export import to_relax as _to_relax
    return _to_relax(graph, bind_params=bind_params)


def to_torch(graph: Graph):
    from cococ.runtime.torch.module import to_torch as _to_torch
    return _to_torch(graph)


def __getattr__(name):
    if name in ("passes", "ir", "frontend", "backends", "runtime"):
        return importlib.import_module(f"cococ.{name}")
    raise AttributeError(name)
