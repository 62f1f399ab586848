"""The MLPerf Tiny IC ResNet-8 as cococ's example files (examples/ic_resnet8/, issue 15 item 5).

`write_prototxt`: mlperf_tiny_models.ResNet8 as a Caffe prototxt cococ trains (its TorchScript
export with BatchNorm kept, read by cococ, written as Caffe BatchNorm + Scale, layers renamed,
one Wootz module per residual stack). `export_onnx`: trained weights back into the torch module,
exported as benchmarks/mlperf_tiny.py exports IC. benchmarks/resnet8_codesign.py runs both
(`--write-prototxt`, `--export-onnx`) and the co-design on the result.
"""
from __future__ import annotations

import re
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EX = ROOT / "examples" / "ic_resnet8"
NET, WEIGHTS = EX / "ic_resnet8.prototxt", EX / "ic_resnet8_fmnist.safetensors"
RETRAIN, ONNX = EX / "ic_resnet8_retrain_solver.prototxt", EX / "ic_resnet8_fmnist.onnx"
HEADER = ("# MLPerf Tiny IC ResNet-8 (mlcommons/tiny resnet_v1_eembc: 16/32/64 filters, 3x32x32 input),\n"
          "# written by benchmarks/resnet8_codesign.py --write-prototxt from mlperf_tiny_models.ResNet8:\n"
          "# torch's BatchNorm2d as Caffe BatchNorm + Scale, one Wootz module per residual stack\n"
          "# (cococ prune prunes each stack's first conv; the second feeds the residual add).\n")


def caffe_names(text: str) -> str:
    """A prototxt cococ wrote from torch's export, with readable layer names, a Scale after each
    BatchNorm (cococ writes the affine batchnorm as a Caffe BatchNorm, whose scale and bias a
    reload drops) and a Wootz module around each residual stack."""
    def new(n):
        if m := re.fullmatch(r"/stem/stem\.(\d)/\w+", n):
            return ["stem_conv", "stem_bn", "stem_relu"][int(m[1])]
        if m := re.fullmatch(r"/stacks\.(\d)/stacks\.\d\.(\d)/\w+", n):
            return f"stack{m[1]}_" + ["conv1", "bn1", "relu1", "conv2", "bn2"][int(m[2])]
        if m := re.fullmatch(r"/shortcuts\.(\d)/Conv", n):
            return f"stack{m[1]}_shortcut"
        if m := re.fullmatch(r"/(Add|Relu)(?:_(\d))?", n):
            return f"stack{m[2] or 0}_{m[1].lower()}"
        return {"/AveragePool": "pool", "/Flatten": "flatten", "/head/Gemm": "fc", "/Softmax": "prob"}[n]
    for n in sorted(set(re.findall(r'name: "(/[^"]*)"', text)), key=len, reverse=True):
        text = text.replace(f'"{n}_output_0"', f'"{new(n)}"').replace(f'"{n}"', f'"{new(n)}"')
    text = HEADER + re.sub(r"(?m)^#.*\n", "", text).replace('name: "main_graph"', 'name: "ic_resnet8"')

    def scale(m):
        top = re.search(r'top: "([^"]+)"', m[0])[1]
        return m[0] + (f'layer {{\n  name: "{top.replace("_bn", "_scale")}"\n  type: "Scale"\n  bottom: "{top}"\n'
                       f'  top: "{top}"\n  scale_param {{\n    bias_term: true\n  }}\n}}\n')
    text = re.sub(r'(?m)^layer \{\n(?: .*\n)*?  type: "BatchNorm"\n(?: .*\n)*?\}\n', scale, text)
    parts = re.split(r"(?m)^(?=layer \{)", text)
    out, cur = [parts[0]], None
    for b in parts[1:]:
        k = (re.match(r"stack(\d)_", re.search(r'name: "([^"]+)"', b)[1]) or [None, None])[1]
        if cur is not None and k != cur:
            out.append("}\n")
        if k is not None and k != cur:
            out.append(f'module {{\n  name: "stack{k}"\n')
        out.append("".join("  " + l for l in b.splitlines(True)) if k is not None else b)
        cur = k
    return "".join(out)


def write_prototxt(path: Path, filters: int = 16) -> None:
    """The IC ResNet-8 with `filters` (16: MLPerf's) as examples/ic_resnet8/ic_resnet8.prototxt."""
    import torch
    import cococ
    from cococ.frontend.prototxt.writer import save_prototxt
    from mlperf_tiny_models import ResNet8
    with tempfile.TemporaryDirectory() as d:
        onnx_path, proto = Path(d) / "ic.onnx", Path(d) / "ic.prototxt"
        torch.onnx.export(ResNet8(filters).eval(), (torch.zeros(1, 3, 32, 32),), str(onnx_path), dynamo=False,
                          opset_version=17, input_names=["input"], output_names=["output"],
                          training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False)  # BN kept
        graph = cococ.load(onnx_path)
        for bn in (l for l in graph.layers if l.op == "batchnorm"):  # Scale layers: caffe_names adds them,
            for k in ("scale", "bias"):                             # named and in place, as Caffe nets do
                bn.params.pop(k, None)
        save_prototxt(graph, proto)
        Path(path).write_text(caffe_names(proto.read_text()))


def torch_key(key: str) -> str:
    """cococ's `layer/param` weight key -> the ResNet8 state_dict key."""
    layer, p = key.split("/")
    p = {"mean": "running_mean", "var": "running_var", "scale": "weight"}.get(p, p)
    if m := re.fullmatch(r"stem_(conv|bn|scale)", layer):
        return f"stem.{0 if m[1] == 'conv' else 1}.{p}"
    if m := re.fullmatch(r"stack(\d)_(conv|bn|scale)(\d)", layer):
        return f"stacks.{m[1]}.{(0 if m[2] == 'conv' else 1) + 3 * (m[3] == '2')}.{p}"
    if m := re.fullmatch(r"stack(\d)_shortcut", layer):
        return f"shortcuts.{m[1]}.{p}"
    return {"fc": "head"}[layer] + f".{p}"


def export_onnx(weights: Path = WEIGHTS, path: Path = ONNX) -> None:
    """The trained weights in mlperf_tiny_models.ResNet8, exported as benchmarks/mlperf_tiny.py
    exports IC (TorchScript exporter, opset 17, eval mode: BatchNorm folded into the convs)."""
    import torch
    from safetensors.numpy import load_file
    from mlperf_tiny_models import ResNet8
    m = ResNet8()
    missing, unexpected = m.load_state_dict({torch_key(k): torch.from_numpy(v) for k, v in load_file(weights).items()},
                                            strict=False)
    assert not unexpected and all(k.endswith("num_batches_tracked") for k in missing), (missing, unexpected)
    torch.onnx.export(m.eval(), (torch.zeros(1, 3, 32, 32),), str(path), dynamo=False, opset_version=17,
                      input_names=["input"], output_names=["output"])
