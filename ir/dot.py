"""Graphviz export: one node per layer, one edge per value, modules as clusters.

For people who would rather look than read: `cococ show --dot net.ir | dot -Tsvg`. Edges are
labelled with the value's type, so shapes are visible along the data flow.
"""
from __future__ import annotations

from cococ.ir.core import Graph, Layer


def _q(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _node(layer: Layer, ids: dict[int, str]) -> str:
    lines = [layer.name, layer.op]
    for k in ("kernel", "out_channels", "out_features", "stride", "mode"):
        if k in layer.attrs:
            lines.append(f"{k}={layer.attrs[k]}")
    lines += [f"{k}: {p.format}" for k, p in layer.params.items() if p.format != "dense"]
    label = "\\n".join(_q(s)[1:-1] for s in lines)
    shape = "ellipse" if layer.op == "input" else "box"
    return f'{ids[id(layer)]} [label="{label}", shape={shape}];'


def to_dot(graph: Graph) -> str:
    """Graphviz `digraph` text of the graph."""
    ids = {id(l): f"n{i}" for i, l in enumerate(graph.layers)}
    producer = {id(v): l for l in graph.layers for v in l.outputs}
    lines = [f"digraph {_q(graph.name)} {{", "  rankdir=TB;", '  node [fontname="Helvetica", fontsize=10];',
             '  edge [fontname="Helvetica", fontsize=8];']
    i = 0
    while i < len(graph.layers):  # a module's layers are contiguous: one cluster per run
        layer = graph.layers[i]
        if layer.module is None:
            lines.append("  " + _node(layer, ids))
            i += 1
            continue
        j = i
        while j < len(graph.layers) and graph.layers[j].module == layer.module:
            j += 1
        lines.append(f"  subgraph cluster_{i} {{")
        lines.append(f"    label={_q(layer.module)}; style=rounded; color=gray50;")
        lines += ["    " + _node(l, ids) for l in graph.layers[i:j]]
        lines.append("  }")
        i = j
    for layer in graph.layers:
        for v in layer.inputs:
            p = producer.get(id(v))
            if p is not None:
                label = f"{v.name}: {v.type}" if v.type is not None else v.name
                lines.append(f"  {ids[id(p)]} -> {ids[id(layer)]} [label={_q(label)}];")
    for k, v in enumerate(graph.outputs):
        lines.append(f'  out{k} [label={_q(v.name)}, shape=plaintext];')
        p = producer.get(id(v))
        if p is not None:
            lines.append(f"  {ids[id(p)]} -> out{k};")
    lines.append("}")
    return "\n".join(lines) + "\n"
