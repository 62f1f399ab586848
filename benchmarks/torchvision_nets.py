"""torchvision CNNs with random weights as ONNX files: shared by benchmarks/x86_vs_onnxruntime.py
and tests/frontend/test_torch_cnns.py (issue 17), so both measure and check the same graphs.

`models()` imports torchvision.models beside the pinned CPU torch; `random_model(make)` builds a
net with seed-0 weights and random BatchNorm statistics (so that no BatchNorm is an identity);
`export(model, x, exporter)` runs one of torch's two ONNX exporters; `cached_onnx(...)` exports
once into a cache folder and returns the file on later calls.
"""
from __future__ import annotations

import io
import os
import sys
import warnings
from pathlib import Path

import onnx
import torch


def models():
    """torchvision.models, also where torchvision's compiled ops do not load.

    PyPI's torchvision wheel is built against the CUDA torch; beside the pinned CPU torch its
    `_C` library cannot load, and `import torchvision` then fails declaring fakes for the two
    ops it registers unconditionally (nms, qnms). Declaring their schemas first lets the pure
    Python part, which the model definitions are, import; detection ops stay unusable."""
    try:
        import torchvision.models as tv
        return tv
    except RuntimeError as e:
        if "torchvision::nms" not in str(e):
            raise
    for name in [k for k in sys.modules if k == "torchvision" or k.startswith("torchvision.")]:
        del sys.modules[name]
    lib = torch.library.Library("torchvision", "DEF")
    for op in ("nms", "qnms"):
        lib.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    models.lib = lib  # the definitions live as long as the library object
    import torchvision.models as tv
    return tv


def random_model(make) -> torch.nn.Module:
    """make() with torch's seed 0, BatchNorm statistics and affine parameters drawn at random
    (torchvision's init leaves mean 0, var 1, scale 1, shift 0: an identity an engine could skip)."""
    torch.manual_seed(0)
    model = make()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    return model.eval()


def export(model: torch.nn.Module, x: torch.Tensor, exporter: str = "torchscript") -> onnx.ModelProto:
    """torch.onnx.export: "torchscript" (dynamo=False, opset 17) or "dynamo" (opset 18, onnxscript)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporters' deprecation and tracing notices
        if exporter == "dynamo":
            return torch.onnx.export(model, (x,), dynamo=True, opset_version=18, verbose=False).model_proto
        buf = io.BytesIO()
        torch.onnx.export(model, (x,), buf, dynamo=False, opset_version=17)
        return onnx.load_from_string(buf.getvalue())


def cached_onnx(name: str, size: int, cache: Path, exporter: str = "torchscript") -> Path:
    """torchvision's `name` (random weights, `random_model`), batch 1, size x size, exported once to
    cache/NAME-...onnx; the file name carries every version that shapes it, so an upgrade exports
    anew instead of reusing a stale file. Written to a temporary name and renamed: a killed export
    leaves no half file behind."""
    tv = models()
    import torchvision  # after models(): a plain first import fails beside the CPU torch
    path = Path(cache) / (f"{name}-{size}-{exporter}-seed0-torch{torch.__version__}"
                          f"-torchvision{torchvision.__version__}.onnx").replace("+", "_")
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        model = random_model(getattr(tv, name))
        proto = export(model, torch.zeros(1, 3, size, size), exporter)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(proto.SerializeToString())
        tmp.replace(path)
    return path
