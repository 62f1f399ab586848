"""Read a binary .caffemodel (a serialized caffe.NetParameter): layer names, types and blobs.

A small protobuf wire-format reader, not the `protobuf` package with a compiled caffe.proto:
only five messages and a dozen fields matter for weights (NetParameter.layer/layers,
LayerParameter/V1/V0 name, type and blobs, BlobProto shape and data), it needs no protoc
or generated code, it skips everything else (including the training `diff`s) without
decoding it, and it reads packed floats straight into numpy with `np.frombuffer`.

Field numbers (caffe.proto):
  NetParameter      layer = 100 (LayerParameter), layers = 2 (V1LayerParameter)
  LayerParameter    name = 1, type = 2 (string), blobs = 7
  V1LayerParameter  name = 4, type = 5 (enum), blobs = 6, layer = 1 (V0LayerParameter)
  V0LayerParameter  name = 1, type = 2 (string), blobs = 50
  BlobProto         shape = 7 (BlobShape: dim = 1, int64 packed), data = 5 (float, packed or not),
                    double_data = 8, num/channels/height/width = 1/2/3/4 (legacy 4-D shape)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cococ.ir.core import CococError


@dataclass
class CaffeLayer:
    name: str
    type: str
    blobs: list[np.ndarray] = field(default_factory=list)
    legacy_shape: list[bool] = field(default_factory=list)  # blob i had only num/channels/height/width


class _Wire:
    """Iterates (field number, wire type, value) over one message; value is int or a memoryview."""

    def __init__(self, buf: memoryview, path: str, what: str):
        self.buf, self.path, self.what = buf, path, what

    def error(self, msg: str) -> CococError:
        return CococError(f"corrupt caffemodel ({self.what}): {msg}", path=self.path)

    def varint(self, pos: int) -> tuple[int, int]:
        result = shift = 0
        buf = self.buf
        while True:
            if pos >= len(buf):
                raise self.error("truncated varint")
            b = buf[pos]
            pos += 1
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result, pos
            shift += 7
            if shift > 63:
                raise self.error("varint too long")

    def __iter__(self):
        pos, end = 0, len(self.buf)
        while pos < end:
            key, pos = self.varint(pos)
            num, wt = key >> 3, key & 7
            if wt == 0:
                val, pos = self.varint(pos)
            elif wt == 1:
                val, pos = self.buf[pos:pos + 8], pos + 8
            elif wt == 2:
                n, pos = self.varint(pos)
                val, pos = self.buf[pos:pos + n], pos + n
            elif wt == 5:
                val, pos = self.buf[pos:pos + 4], pos + 4
            else:
                raise self.error(f"unsupported wire type {wt} (field {num})")
            if pos > end:
                raise self.error(f"field {num} runs past the end")
            yield num, wt, val


def _varints(buf: memoryview, w: _Wire) -> list[int]:
    out, pos = [], 0
    sub = _Wire(buf, w.path, w.what)
    while pos < len(buf):
        v, pos = sub.varint(pos)
        out.append(v - (1 << 64) if v >= 1 << 63 else v)
    return out


def _blob(buf: memoryview, path: str, layer: str) -> tuple[np.ndarray, bool]:
    w = _Wire(buf, path, f"blob of layer '{layer}'")
    shape: list[int] | None = None
    legacy = {1: 0, 2: 0, 3: 0, 4: 0}
    floats: list[np.ndarray] = []
    doubles: list[np.ndarray] = []
    for num, wt, val in w:
        if num == 7 and wt == 2:
            shape = []
            for n2, wt2, v2 in _Wire(val, path, w.what):
                if n2 == 1:
                    shape += _varints(v2, w) if wt2 == 2 else [v2 - (1 << 64) if v2 >= 1 << 63 else v2]
        elif num in (5, 8) and wt not in ((2, 5) if num == 5 else (2, 1)):
            raise w.error(f"field {num} has wire type {wt}")
        elif num == 5:
            if wt == 2 and len(val) % 4:
                raise w.error("packed float data is not a multiple of 4 bytes")
            floats.append(np.frombuffer(val, "<f4"))
        elif num == 8:
            if wt == 2 and len(val) % 8:
                raise w.error("packed double data is not a multiple of 8 bytes")
            doubles.append(np.frombuffer(val, "<f8"))
        elif num in legacy and wt == 0:
            legacy[num] = val
    data = np.concatenate(floats) if floats else (np.concatenate(doubles) if doubles else np.zeros(0, "<f4"))
    was_legacy = shape is None
    if shape is None:
        shape = [d for d in (legacy[1], legacy[2], legacy[3], legacy[4])] if any(legacy.values()) else [data.size]
        shape = [max(d, 1) for d in shape] if any(legacy.values()) else shape
    if any(d < 0 for d in shape) or int(np.prod(shape, dtype=np.float64)) != data.size:
        raise CococError(f"blob of layer '{layer}' has shape {shape} but {data.size} values", path=path)
    return data.astype(np.float32).reshape(shape), was_legacy


def _layer(buf: memoryview, path: str, fields: tuple[int, int, int], v1: bool) -> CaffeLayer:
    name_f, type_f, blobs_f = fields
    name, type_, blobs = "", "", []
    w = _Wire(buf, path, "layer")
    for num, wt, val in w:
        if num == name_f and wt == 2:
            name = bytes(val).decode("utf-8", "replace")
        elif num == type_f:
            type_ = str(val) if wt == 0 else bytes(val).decode("utf-8", "replace")
        elif num == blobs_f and wt == 2:
            blobs.append(val)
        elif v1 and num == 1 and wt == 2:  # V0 layer nested inside a V1 `layers`
            inner = _layer(val, path, (1, 2, 50), False)
            name, type_ = inner.name or name, inner.type or type_
            return CaffeLayer(name, type_, inner.blobs, inner.legacy_shape)
    parsed = [_blob(b, path, name) for b in blobs]
    return CaffeLayer(name, type_, [a for a, _ in parsed], [lg for _, lg in parsed])


def read_caffemodel(path: str | Path) -> list[CaffeLayer]:
    """Every layer of a .caffemodel, in file order, with its blobs as float32 arrays."""
    path = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise CococError(f"cannot read: {e.strerror}", path=path) from None
    layers = []
    for num, wt, val in _Wire(memoryview(data), path, "NetParameter"):
        if num == 100 and wt == 2:
            layers.append(_layer(val, path, (1, 2, 7), False))
        elif num == 2 and wt == 2:
            layers.append(_layer(val, path, (4, 5, 6), True))
    return layers
