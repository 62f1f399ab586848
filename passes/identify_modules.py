"""identify-modules: find convolution modules as single-entry single-exit regions.

Wootz needs modules annotated in the prototxt; this pass finds them in an unannotated graph.
On the layer DAG (a virtual source before the inputs, a virtual sink after the outputs) it
computes dominators and post-dominators. Every layer s whose output fans out opens a
candidate region ending at t = ipdom(s), provided s dominates t: the region is every layer
that s strictly dominates and t post-dominates (t included). A residual block opens at the
layer before the split and closes at the eltwise add; an inception module closes at its
concat. Regions holding at least two convolutions are kept; of nested regions the outermost
is kept (inception-v3's inner 1x3/3x1 splits stay inside their module). The single-input
activation chain right after t (the ReLU after an add) joins the module, so that modules tile
the network. Chains without branches (LeNet, AlexNet, VGG) have no fan-out, hence no modules:
a documented choice — every conv there is its own pruning unit.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from cococ.ir.core import Graph, Layer
from cococ.ir.ops.nn import Conv2d
from cococ.ir.ops.tensor import Concat, Eltwise
from cococ.passes.manager import register_pass


def _trails(layer: Layer) -> bool:
    """An activation (or an inference no-op) that joins the module it follows."""
    return layer.opdef.activation or layer.opdef.alias


def _dominators(order: list, preds: dict) -> dict:
    """Immediate dominators of a DAG given in topological order (root = order[0])."""
    idom = {order[0]: order[0]}
    pos = {n: i for i, n in enumerate(order)}

    def intersect(a, b):
        while a != b:
            while pos[a] > pos[b]:
                a = idom[a]
            while pos[b] > pos[a]:
                b = idom[b]
        return a

    for n in order[1:]:
        ps = [p for p in preds[n] if p in idom]
        d = ps[0]
        for p in ps[1:]:
            d = intersect(d, p)
        idom[n] = d
    return idom


def _dominates(idom: dict, a, b) -> bool:
    while True:
        if a == b:
            return True
        if idom[b] == b:
            return False
        b = idom[b]


def find_modules(graph: Graph) -> list[list[Layer]]:
    layers = graph.layers
    ids = {id(l): i for i, l in enumerate(layers)}
    SRC, SNK = -1, len(layers)
    succ: dict[int, set] = {n: set() for n in range(-1, len(layers) + 1)}
    pred: dict[int, set] = {n: set() for n in range(-1, len(layers) + 1)}
    producers = {id(v): ids[id(l)] for l in layers for v in l.outputs}

    def edge(a, b):
        succ[a].add(b)
        pred[b].add(a)

    for i, l in enumerate(layers):
        srcs = {producers[id(v)] for v in l.inputs if id(v) in producers}
        for s in srcs:
            edge(s, i)
        if not srcs:
            edge(SRC, i)
    for v in graph.outputs:
        edge(producers[id(v)], SNK)
    for i in range(len(layers)):
        if not succ[i]:
            edge(i, SNK)

    order = [SRC, *range(len(layers)), SNK]
    idom = _dominators(order, pred)
    ipdom = _dominators(order[::-1], succ)

    regions = []
    for s in range(len(layers)):
        if len(succ[s]) < 2:
            continue
        t = ipdom[s]
        if t == SNK or not _dominates(idom, s, t):
            continue
        region = [n for n in range(s + 1, t + 1) if _dominates(idom, s, n) and n != s and _dominates(ipdom, t, n)]
        if sum(layers[n].op == Conv2d.name for n in region) >= 2:
            regions.append((s, t, set(region)))
    # outermost regions only
    kept = [r for r in regions if not any(o is not r and r[2] <= o[2] for o in regions)]
    out = []
    for s, t, region in sorted(kept, key=lambda r: r[1]):
        n = t
        while len(succ[n]) == 1:
            (u,) = succ[n]
            if u == SNK or not _trails(layers[u]) or len(pred[u]) != 1:
                break
            region.add(u)
            n = u
        out.append([layers[i] for i in sorted(region)])
    return out


@register_pass
@dataclass(frozen=True)
class IdentifyModules:
    """Find convolution modules (SESE regions with >= 2 convs) unless the graph has modules already."""
    name: ClassVar[str] = "identify-modules"
    in_place: ClassVar[bool] = True
    force: bool = False   # re-identify even when the graph came with `module` annotations

    def apply(self, graph: Graph, ctx=None) -> Graph:
        if graph.modules and not self.force:
            return graph
        for l in graph.layers:
            l.module = None
        modules = find_modules(graph)
        member = {}
        names = []
        taken = set()
        for layers in modules:
            exit_layer = max(layers, key=lambda l: graph.layers.index(l))
            joins = (Eltwise.name, Concat.name)
            name = next(l for l in layers if l.op in joins).name if any(
                l.op in joins for l in layers) else exit_layer.name
            base, k = name, 1
            while name in taken:
                name, k = f"{base}_{k}", k + 1
            taken.add(name)
            names.append(name)
            for l in layers:
                member[id(l)] = name
                l.module = name
        # make every module contiguous: emit a module's layers together where its first one stands
        new, emitted = [], set()
        for l in graph.layers:
            if id(l) in emitted:
                continue
            m = member.get(id(l))
            group = [x for x in graph.layers if member.get(id(x)) == m] if m else [l]
            for x in group:
                emitted.add(id(x))
                new.append(x)
        graph.layers = new
        graph.modules = names
        return graph
