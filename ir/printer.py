"""The printer of the textual IR (grammar: ir/ir.lark, explained in docs/ir.md).

The printed text is the IR's canonical form: the parser reads it back into an equal graph
and printing that again gives the same bytes, so tests, reproducers and `--dump-ir` can
compare text. Everything that decides the output is deterministic: attributes in the op's
schema order and then sorted, params in the layer's order, floats as Python's shortest
round-tripping repr (`1e-05`, `inf`, `nan`).
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from cococ.ir.core import CococError, Graph, Layer, Param, TensorType, digest, dtype_name
from cococ.ir.registry import all_ops

_BARE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*\Z")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_SIMPLE = (bool, int, float, str, np.integer, np.floating, np.bool_)


# ---- atoms --------------------------------------------------------------------------------------

def quote(s: str) -> str:
    """A string literal: JSON escapes for quote, backslash and unprintable characters only,
    so names such as `inception_3a/1x1` or non-ASCII text stay readable."""
    out = ['"']
    for ch in s:
        if ch == '"' or ch == "\\":
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif not ch.isprintable():
            code = ord(ch)
            if code > 0xFFFF:  # JSON spells these as a surrogate pair
                code -= 0x10000
                out.append(f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}")
            else:
                out.append(f"\\u{code:04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def value_name(name: str) -> str:
    """`%name` when the name is bare-safe, else `%"name"` (Caffe tops such as conv1/7x7_s2)."""
    return "%" + (name if _BARE_NAME.match(name) else quote(name))


def graph_name(name: str) -> str:
    return "@" + (name if _BARE_NAME.match(name) else quote(name))


def key(name: str) -> str:
    return name if _IDENT.match(name) and name not in ("true", "false") else quote(name)


def fmt_type(t: TensorType | None) -> str:
    return "?" if t is None else f"{t.dtype}[{','.join(map(str, t.shape))}]"


def fmt_float(x: float) -> str:
    if math.isnan(x):
        return "nan"
    return repr(float(x))  # '1e-05', 'inf', '-inf', '0.1': exact round trip through float()


def fmt_value(v: Any) -> str:
    """An attribute value: int, float, bool, str, and lists/dicts of them."""
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return fmt_float(float(v))
    if isinstance(v, str):
        return quote(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(fmt_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return fmt_dict(v)
    raise CococError(f"cannot print attribute value {v!r} of type {type(v).__name__}")


def fmt_dict(d: dict[str, Any], order: list[str] | None = None) -> str:
    keys = [k for k in (order or []) if k in d] + sorted(k for k in d if k not in (order or []))
    return "{" + ", ".join(f"{key(k)} = {fmt_value(d[k])}" for k in keys) + "}"


def printable(v: Any) -> bool:
    """Whether `v` has a textual form (graph meta entries without one are not printed)."""
    if isinstance(v, _SIMPLE):
        return True
    if isinstance(v, (list, tuple)):
        return all(printable(x) for x in v)
    if isinstance(v, dict):
        return all(isinstance(k, str) and printable(x) for k, x in v.items())
    return False


def fmt_array(a: np.ndarray) -> str:
    """Inline values, flat in C order. Floats use the shortest text that reads back to the
    same bits in their own dtype, falling back to the float64 repr where that is not so."""
    flat = np.ascontiguousarray(a).reshape(-1)
    if flat.dtype == np.bool_:
        items = ["true" if x else "false" for x in flat]
    elif np.issubdtype(flat.dtype, np.integer):
        items = [str(int(x)) for x in flat]
    else:
        items = []
        for x in flat:
            s = "nan" if np.isnan(x) else str(x)
            if not np.isnan(x) and flat.dtype.type(float(s)) != x:
                s = repr(float(x))
            items.append(s)
    return "[" + ", ".join(items) + "]"


# ---- params -------------------------------------------------------------------------------------

def _array_text(a: np.ndarray, inline: bool) -> str:
    t = f"{dtype_name(a.dtype)}[{','.join(map(str, a.shape))}] #{digest([a])}"
    return t + (" = " + fmt_array(a) if inline else "")


def fmt_param(name: str, p: Param, inline: bool) -> str:
    head = f"{key(name)}: {fmt_type(p.type)}"
    if p.format != "dense":
        head += f" {p.format}"
    if p.attrs:
        head += " " + fmt_dict(p.attrs)
    if p.format == "dense":
        if p.data is not None:
            return f"{head} #{p.hash}" + (" = " + fmt_array(p.data) if inline else "")
        return f"{head} #{p.hash}"
    if p.arrays:
        arrays = [f"{key(k)}: {_array_text(a, inline)}" for k, a in p.arrays.items()]
    else:  # from text without weights: types and hashes only
        arrays = [f"{key(k)}: {fmt_type(t)} #{h}" for k, (t, h) in p.array_stubs.items()]
    return f"{head} (" + ", ".join(arrays) + ")"


# ---- layers and graphs --------------------------------------------------------------------------

def _attr_order(layer: Layer) -> list[str]:
    op = all_ops().get(layer.op)
    return list(op.attrs) if op is not None else []


def fmt_layer(layer: Layer, inline: bool = False, indent: str = "  ") -> str:
    results = ", ".join(f"{value_name(v.name)}: {fmt_type(v.type)}" for v in layer.outputs)
    line = f"{indent}{results} = {layer.op} {quote(layer.name)}"
    if layer.inputs:
        line += " (" + ", ".join(value_name(v.name) for v in layer.inputs) + ")"
    if layer.attrs:
        line += " " + fmt_dict(layer.attrs, _attr_order(layer))
    if layer.params:
        line += f"\n{indent}    [" + ", ".join(fmt_param(k, p, inline) for k, p in layer.params.items()) + "]"
    return line


def print_graph(graph: Graph, weights: str = "hash") -> str:
    """The graph as text; weights="hash" prints a content hash per param, "inline" the values."""
    if weights not in ("hash", "inline"):
        raise CococError(f"weights must be 'hash' or 'inline', got {weights!r}")
    inline = weights == "inline"
    lines = [f"graph {graph_name(graph.name)} {{"]
    meta = {k: v for k, v in graph.meta.items() if isinstance(k, str) and printable(v)}
    if meta:
        lines.append(f"  meta {fmt_dict(meta)}")
    current = None
    for layer in graph.layers:
        if layer.module != current:
            if current is not None:
                lines.append("  }")
            if layer.module is not None:
                lines.append(f"  module {quote(layer.module)} {{")
            current = layer.module
        lines.append(fmt_layer(layer, inline, "    " if current is not None else "  "))
    if current is not None:
        lines.append("  }")
    for m in graph.modules:  # modules without layers (the verifier rejects them) stay visible
        if not any(l.module == m for l in graph.layers):
            lines.append(f"  module {quote(m)} {{\n  }}")
    ret = ", ".join(value_name(v.name) for v in graph.outputs)
    lines.append(f"  return {ret}".rstrip())
    lines.append("}")
    return "\n".join(lines) + "\n"


def save_ir(graph: Graph, path, weights: str = "npz") -> None:
    """Write the graph's text to `path`; weights="npz" puts the weights in the side-car
    `<stem>.npz` (keys `layer/param`, compressed `layer/param/array`), "inline" in the text."""
    path = Path(path)
    if weights not in ("npz", "inline"):
        raise CococError(f"weights must be 'npz' or 'inline', got {weights!r}")
    path.write_text(print_graph(graph, "inline" if weights == "inline" else "hash"), encoding="utf-8")
    if weights == "npz":
        arrays = sidecar_arrays(graph)
        side = path.with_suffix(".npz")
        if arrays:
            np.savez(side, **arrays)
        elif side.exists():
            side.unlink()  # a stale side-car would be loaded with the new text


def sidecar_arrays(graph: Graph) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}

    def put(k: str, a: np.ndarray, layer: Layer) -> None:
        if k in out:
            raise layer.error(f"side-car key '{k}' is ambiguous (another layer/param spells the same key)")
        out[k] = a

    for layer in graph.layers:
        for pname, p in layer.params.items():
            if p.format == "dense" and p.data is not None:
                put(f"{layer.name}/{pname}", p.data, layer)
            for aname, a in p.arrays.items():
                put(f"{layer.name}/{pname}/{aname}", a, layer)
    return out
