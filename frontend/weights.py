"""Fill a graph's params: from a .caffemodel, an .npz or a .safetensors file, or randomly.

Matching:
  - .caffemodel: by Caffe layer name (`layer.meta["caffe_name"]`, else the IR layer name), blob i
    -> the i-th param of the op's Caffe order (`caffe_blobs` on the op class); like Caffe's CopyTrainedLayersFrom, source
    layers the graph lacks are ignored (listed in the report). BatchNorm's third blob is the
    moving-average factor: mean and var are divided by it (0 -> zeros, as Caffe).
  - .npz / .safetensors: keys `layer/param` (the layer name may itself hold '/': the last '/'
    splits), the same keys `save_ir` writes; every key must name an existing param.
A count or shape mismatch is a CococError naming the layer and param. A blob stored with the
legacy num/channels/height/width shape is accepted when its element count matches.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

from cococ.frontend.caffemodel import read_caffemodel
from cococ.ir.core import CococError, Graph, Layer, Param
from cococ.ir.memory import check_memory, param_bytes
from cococ.ir.ops.nn import Dense
from cococ.ir.ops.norm import BatchNorm


@dataclass
class WeightsReport:
    loaded: list[str] = field(default_factory=list)    # layer/param keys filled
    ignored: list[str] = field(default_factory=list)   # source layers (or keys) not in the graph
    missing: list[str] = field(default_factory=list)   # graph params still without data


def load_weights(graph: Graph, path) -> WeightsReport:
    path = Path(path)
    if not path.exists():
        raise CococError("no such weights file", path=str(path))
    if path.is_dir():
        raise CococError("is a folder, expected a weights file", path=str(path))
    suffix = path.suffix.lower()
    if suffix == ".caffemodel":
        report = _from_caffemodel(graph, path)
    elif suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except Exception as e:  # np.load raises many types on a bad archive
            raise CococError(f"cannot read .npz: {e}", path=str(path)) from None
        report = _from_arrays(graph, arrays, str(path))
    elif suffix == ".safetensors":
        try:
            arrays = load_file(str(path))
        except Exception as e:
            raise CococError(f"cannot read .safetensors: {e}", path=str(path)) from None
        report = _from_arrays(graph, arrays, str(path))
    else:
        raise CococError(f"unknown weights format '{suffix}' (expected .caffemodel, .npz or .safetensors)",
                         path=str(path))
    report.missing = [f"{l.name}/{p}" for l in graph.layers for p, prm in l.params.items() if not prm.has_data]
    return report


def _set(layer: Layer, pname: str, arr: np.ndarray, path: str, legacy: bool = True) -> None:
    p = layer.params[pname]
    arr = np.asarray(arr, dtype=np.float32)
    if arr.shape != p.shape:
        if not (legacy and arr.size == p.type.size):
            raise CococError(f"param '{pname}' has shape {list(p.shape)} in the graph but {list(arr.shape)} "
                             "in the weights file", layer=layer.name, loc=layer.loc, path=path)
        arr = arr.reshape(p.shape)
    layer.params[pname] = Param.from_array(np.ascontiguousarray(arr), attrs=p.attrs)


def _from_caffemodel(graph: Graph, path: Path) -> WeightsReport:
    spath = str(path)
    index = {l.meta.get("caffe_name", l.name): l for l in graph.layers if l.opdef.caffe_blobs}
    report = WeightsReport()
    for src in read_caffemodel(path):
        if not src.blobs:
            continue
        layer = index.get(src.name)
        if layer is None:
            report.ignored.append(src.name)
            continue
        want = [p for p in layer.opdef.caffe_blobs if p in layer.params]
        blobs = list(src.blobs)
        if layer.op == BatchNorm.name and len(blobs) == 3:
            f = blobs.pop()
            if f.size != 1:
                raise CococError(f"BatchNorm blob 2 (moving-average factor) must hold one value, got {f.size}",
                                 layer=layer.name, loc=layer.loc, path=spath)
            factor = float(f.reshape(-1)[0])
            s = 0.0 if factor == 0 else 1.0 / factor
            blobs = [b * s for b in blobs]
        if len(blobs) != len(want):
            raise CococError(f"the caffemodel has {len(src.blobs)} blob(s) for this layer, the graph's "
                             f"{layer.op} expects {len(want)} ({', '.join(want)})", layer=layer.name,
                             loc=layer.loc, path=spath)
        for i, (pname, arr) in enumerate(zip(want, blobs)):
            if (layer.op == Dense.name and pname == "weight" and layer.meta.get("caffe_transpose")
                    and arr.ndim == 2):
                arr = arr.T
            _set(layer, pname, arr, spath, legacy=src.legacy_shape[i] if i < len(src.legacy_shape) else False)
            report.loaded.append(f"{layer.name}/{pname}")
    return report


def _from_arrays(graph: Graph, arrays: dict[str, np.ndarray], path: str) -> WeightsReport:
    layers = {l.name: l for l in graph.layers}
    report = WeightsReport()
    for key, arr in arrays.items():
        lname, _, pname = key.rpartition("/")
        layer = layers.get(lname)
        if layer is None:
            raise CococError(f"weights key '{key}' names no layer of the graph", path=path)
        if pname not in layer.params:
            known = ", ".join(layer.params) or "none"
            raise CococError(f"weights key '{key}': layer has no param '{pname}' (params: {known})",
                             layer=lname, loc=layer.loc, path=path)
        _set(layer, pname, arr, path, legacy=False)
        report.loaded.append(key)
    return report


def init_weights(graph: Graph, method: str = "random", seed: int = 0, *, overwrite: bool = False) -> Graph:
    """Fill params that have no data (all of them with overwrite=True), deterministically from `seed`.

    "random": He (Kaiming) normal init for weights, std = sqrt(2 / fan_in) with fan_in the
    product of all but the first weight dim (conv: in/groups * kh * kw, dense: in); biases 0;
    scales 1; PReLU slopes 0.25 (Caffe's default); batchnorm mean ~ N(0, 0.1) and var ~ U(0.5, 1.5),
    small but not trivial so that a folding pass has something to get wrong.
    """
    if method != "random":
        raise CococError(f"unknown init method '{method}' (known: random)")
    check_memory(param_bytes(graph, missing_only=not overwrite), f"{graph.name}: --init {method}")
    rng = np.random.default_rng(seed)
    for layer in graph.layers:
        for pname, p in layer.params.items():
            if p.has_data and not overwrite:
                continue
            shape = p.shape
            if pname == "weight":
                fan_in = int(np.prod(shape[1:], dtype=np.int64)) or 1
                a = rng.standard_normal(shape, dtype=np.float32) * np.float32(np.sqrt(2.0 / fan_in))
            elif pname == "bias":
                a = np.zeros(shape, np.float32)
            elif pname == "scale":
                a = np.ones(shape, np.float32)
            elif pname == "slope":
                a = np.full(shape, 0.25, np.float32)
            elif pname == "mean":
                a = (rng.standard_normal(shape) * 0.1).astype(np.float32)
            elif pname == "var":
                a = rng.uniform(0.5, 1.5, shape).astype(np.float32)
            else:
                raise CococError(f"init '{method}' does not know how to fill param '{pname}'",
                                 layer=layer.name, loc=layer.loc)
            layer.params[pname] = Param.from_array(a, attrs=p.attrs)
    return graph
