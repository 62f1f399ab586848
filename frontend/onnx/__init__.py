"""ONNX import: `load_onnx(path_or_model) -> Graph`.

`loader` reads and checks the model and walks its nodes; `context` holds the converter
table and the state converters share; `convert_nn`, `convert_elementwise` and
`convert_tensor` hold one converter per ONNX op type, by family (docs/frontends.md lists them).
"""
from cococ.frontend.onnx.loader import load_onnx

__all__ = ["load_onnx"]
