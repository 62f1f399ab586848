"""Teacher-student graph synthesis: Wootz's multiplexing model (§6.1) as IR graphs.

One full graph and a prune_info give the three modes:
  full      the graph itself;
  pretrain  the full model, frozen, as teacher; next to it a pruned copy of each tuning block
            of one group, fed the teacher's value at the block's input; each student's output
            is paired with the teacher's value at the block's output, and the trainer minimises
            1/|O|·‖O − O'‖² summed over the pairs (graph.meta["teacher_student"]). The blocks of a
            group do not overlap, so one teacher forward serves all of them;
  finetune  the pruned network at a configuration, its layers initialised from pre-trained
            blocks where the composite vector names one, the rest inherited from the full model.
Being IR, every mode prints (`cococ opt -p 'teacher-student{mode=pretrain,rates=[..]}' --dump-ir`)
and runs on the reference interpreter and the torch runtime like any graph.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Mapping, Sequence

import numpy as np

from cococ.ir.core import CococError, Graph, Layer, Value
from cococ.passes.manager import register_pass
from cococ.passes.prune_filters import PruneFilters
from cococ.passes.tuning_blocks import TuningBlock


def block_io(graph: Graph, modules: Sequence[str]) -> tuple[Value, Value]:
    """The value entering the first module and the value leaving the last one."""
    span = set(modules)
    members = [l for l in graph.layers if l.module in span]
    if not members:
        raise CococError(f"no layers in modules {list(modules)}")
    inside = {id(v) for l in members for v in l.outputs}
    entries = {id(v): v for l in members for v in l.inputs if id(v) not in inside}
    if len(entries) != 1:
        raise CococError(f"modules {list(modules)} have {len(entries)} entry values; a tuning block needs one")
    users = graph.users_map()
    outs = [v for l in members for v in l.outputs
            if any(u.module not in span for u in users.get(id(v), [])) or any(v is o for o in graph.outputs)]
    if len(outs) != 1:
        raise CococError(f"modules {list(modules)} have {len(outs)} exit values; a tuning block needs one")
    return next(iter(entries.values())), outs[0]


def pruned_network(full: Graph, rates: Sequence[float]) -> Graph:
    """The default network at a configuration: filters pruned by ℓ1, weights inherited."""
    return PruneFilters(rates=tuple(rates)).apply(full.clone())


def block_rates(full: Graph, blocks: Sequence[TuningBlock]) -> list[float]:
    rates = [0.0] * len(full.modules)
    for b in blocks:
        for i, r in enumerate(b.rates):
            rates[b.start + i] = r
    return rates


def block_key(full: Graph, block: TuningBlock) -> str:
    """Names a pre-trained block: its module span and rates (the store adds the teacher hash)."""
    return block.name(full.modules)


def pretrain_graph(full: Graph, blocks: Sequence[TuningBlock]) -> Graph:
    """The frozen teacher plus one pruned student per block (blocks must not overlap)."""
    for i, a in enumerate(blocks):
        for b in blocks[i + 1:]:
            if a.overlaps(b):
                raise CococError(f"tuning blocks {block_key(full, a)} and {block_key(full, b)} overlap; "
                                 "pre-train them in different groups")
    pruned = pruned_network(full, block_rates(full, blocks))
    g = full.clone()
    for l in g.layers:
        l.meta["frozen"] = True
    pairs = []
    for b in blocks:
        mods = full.modules[b.start:b.stop]
        t_in, t_out = block_io(g, mods)
        s_in, s_out = block_io(pruned, mods)
        prefix = block_key(full, b)
        vmap = {id(s_in): t_in}
        span = set(mods)
        for l in [l for l in pruned.layers if l.module in span]:
            outs = [Value(f"{prefix}/{v.name}", v.type) for v in l.outputs]
            for v, nv in zip(l.outputs, outs):
                vmap[id(v)] = nv
            nl = Layer(l.op, f"{prefix}/{l.name}", [vmap[id(v)] for v in l.inputs], outs, dict(l.attrs),
                       {k: p.copy() for k, p in l.params.items()}, module=None)
            nl.meta = {**l.meta, "block": prefix, "source_layer": l.name}  # keeps caffe_param (decay_mult)
            g.layers.append(nl)
        pairs.append({"block": prefix, "student": vmap[id(s_out)].name, "teacher": t_out.name})
        g.outputs.append(vmap[id(s_out)])
    g.meta["teacher_student"] = pairs
    g.meta["mode"] = "pretrain"
    return g


def student_params(g: Graph, block: str) -> dict[str, np.ndarray]:
    """The trained weights of one student block, keyed `layer/param` by the full model's names."""
    out = {}
    for l in g.layers:
        if l.meta.get("block") == block:
            for k, p in l.params.items():
                out[f"{l.meta['source_layer']}/{k}"] = p.dense()
    return out


def finetune_graph(full: Graph, rates: Sequence[float], composite: Sequence[int | None] | None = None,
                   blocks: Sequence[TuningBlock] = (), store: Mapping[str, Mapping[str, np.ndarray]] | None = None
                   ) -> Graph:
    """The block-trained network: pruned at `rates`, layers taken from pre-trained blocks."""
    g = pruned_network(full, rates)
    used = []
    if composite is not None and store is not None:
        for bi in sorted({b for b in composite if b is not None}):
            key = block_key(full, blocks[bi])
            weights = store.get(key)
            if weights is None:
                continue
            for name, arr in weights.items():
                lname, pname = name.rsplit("/", 1)
                p = g.layer(lname).params[pname]
                if p.shape != arr.shape:
                    raise CococError(f"pre-trained block {key}: {name} has shape {arr.shape}, "
                                     f"the pruned network needs {p.shape}")
                p.data = np.array(arr, dtype=p.data.dtype if p.data is not None else np.float32)
                p._hash = None
            used.append(key)
    g.meta["mode"] = "finetune"
    g.meta["blocks_used"] = used
    return g


@register_pass
@dataclass(frozen=True)
class TeacherStudent:
    """Synthesize a multiplexing-model mode: full, pretrain (every pruned module its own block), finetune."""
    name: ClassVar[str] = "teacher-student"
    in_place: ClassVar[bool] = False    # every mode builds a new graph (full: the graph itself)
    mode: str = "pretrain"                      # full | pretrain | finetune
    rates: tuple[float, ...] = ()              # one rate per module

    def apply(self, graph: Graph, ctx=None) -> Graph:
        if self.mode == "full":
            return graph
        if not graph.modules:
            raise CococError("teacher-student needs convolution modules (annotate them or run identify-modules)")
        rates = [float(r) for r in self.rates] or [0.5] * len(graph.modules)
        if len(rates) != len(graph.modules):
            raise CococError(f"teacher-student: {len(rates)} rates for {len(graph.modules)} modules")
        if self.mode == "pretrain":
            blocks = [TuningBlock(i, (r,)) for i, r in enumerate(rates) if r > 0]
            return pretrain_graph(graph, blocks)
        if self.mode == "finetune":
            return finetune_graph(graph, rates)
        raise CococError(f"teacher-student: unknown mode '{self.mode}' (full, pretrain, finetune)")
