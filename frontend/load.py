"""One entry point for every input format: picks the frontend from the file suffix."""
from __future__ import annotations

from pathlib import Path

from cococ.frontend.prototxt import load_prototxt
from cococ.frontend.weights import init_weights, load_weights
from cococ.ir.core import CococError, Graph
from cococ.ir.parser import parse_file
from cococ.ir.verify import infer_shapes, verify


def load(path, *, weights=None, init: str | None = None, seed: int = 0, phase: str = "TEST",
         lenient: bool = False, input_shape=None) -> Graph:
    path = Path(path)
    if not path.exists():
        raise CococError(f"{path}: no such file")
    if path.is_dir():
        raise CococError(f"{path}: is a folder, expected a file")
    suffix = path.suffix.lower()
    if suffix == ".ir":
        graph = _load_ir(path)
    elif suffix in (".prototxt", ".pt", ".txt"):
        graph = load_prototxt(path, phase=phase, lenient=lenient, input_shape=input_shape)
    elif suffix == ".onnx":
        # local: onnx takes ~0.7 s to import, and only .onnx files need it
        from cococ.frontend.onnx import load_onnx
        graph = load_onnx(path)
    else:
        raise CococError(f"{path}: unknown model format '{suffix}' (expected .ir, .prototxt or .onnx)")
    if input_shape is not None and suffix not in (".prototxt", ".pt", ".txt"):
        raise CococError(f"{path}: --input-shape is for .prototxt nets ({suffix} files declare their input shapes)")
    if weights is not None:
        load_weights(graph, weights)
    if init is not None:
        init_weights(graph, init, seed=seed)
    return graph


def _load_ir(path: Path) -> Graph:
    """Text IR may leave value types out (`%y: ? = relu ...`): infer them, then verify as usual.

    Only an untyped graph is inferred: inference also fills attribute defaults, which would
    change the printed text of an already typed graph.
    """
    graph = parse_file(path, verify=False)
    try:
        if any(v.type is None for v in graph.values()):
            infer_shapes(graph)
        verify(graph)
    except CococError as e:
        if e.path is None:
            raise CococError(e.message, layer=e.layer, loc=e.loc, path=str(path)) from None
        raise
    return graph
