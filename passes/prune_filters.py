"""prune-filters: filter pruning at one rate per convolution module (Wootz §7.1, ORNL §4.1).

A configuration γ gives a pruning rate per module (`rates`, in graph.modules order; `rate`
for all). Inside a module, a conv is pruned only if its channels stay inside the module —
they reach other convs of the module through passthrough layers (BN, scale, ReLU, pooling,
depthwise convs) and never a tie (the residual add), a concat leaving the module, or the
module's exit. That is the papers' rule without special cases: in a residual bottleneck the
first two convs are pruned and the last is kept; in an inception module every branch's inner
convs are pruned and each branch's last is kept. Filters are ranked by ℓ1 norm (Li et al.,
the papers' criterion) and the survivors keep their weights: the "default network".
Without modules, every conv whose channels can be removed is pruned at `rate`.
`round_to` keeps each surviving channel count a multiple of the target's SIMD width.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from cococ.ir.channels import NotPrunable, apply_channel_edit, plan_channel_removal
from cococ.ir.core import CococError, Graph, Layer
from cococ.passes.manager import register_pass


def filter_importance(layer: Layer, criterion: str) -> np.ndarray:
    w = layer.params["weight"].dense()
    flat = np.abs(w.reshape(w.shape[0], -1))
    if criterion == "l1":
        return flat.sum(1)
    if criterion == "l2":
        return np.sqrt((flat ** 2).sum(1))
    raise CococError(f"unknown filter criterion '{criterion}' (l1, l2)")


def keep_count(channels: int, rate: float, round_to: int = 1) -> int:
    keep = channels - int(math.floor(rate * channels + 1e-9))
    if round_to > 1:
        keep = int(math.ceil(keep / round_to) * round_to)
    return max(1, min(channels, keep))


def prunable_convs(graph: Graph, module: str | None) -> list[Layer]:
    """Convs of `module` (or of the graph) whose filters can be removed without leaving it."""
    users = graph.users_map()
    out = []
    for l in graph.layers:
        if l.op != "conv2d" or (module is not None and l.module != module):
            continue
        if l.opdef.channels(l, [v.type for v in l.inputs]).kind != "source":
            continue
        try:
            edit = plan_channel_removal(graph, l, np.arange(l.output.type.shape[1]), users=users)
        except NotPrunable:
            continue
        if module is not None and any(t.module != module for t in edit.touched):
            continue
        out.append(l)
    return out


@register_pass
@dataclass(frozen=True)
class PruneFilters:
    """Remove the least important filters of each module's inner convs at per-module rates."""
    name: ClassVar[str] = "prune-filters"
    in_place: ClassVar[bool] = True
    rate: float = 0.0                           # rate for every module (or every conv without modules)
    rates: tuple[float, ...] = ()              # one rate per module, in graph.modules order
    criterion: str = "l1"                       # l1 | l2
    round_to: int = 1                           # keep channel counts a multiple of this (SIMD width)

    def apply(self, graph: Graph, ctx=None) -> Graph:
        rates = [float(r) for r in self.rates]
        if rates and len(rates) != len(graph.modules):
            raise CococError(f"prune-filters: {len(rates)} rates given, the graph has {len(graph.modules)} modules "
                             f"({', '.join(graph.modules) or 'none: run identify-modules'})")
        plan = list(zip(graph.modules, rates or [self.rate] * len(graph.modules))) if graph.modules \
            else [(None, self.rate)]
        for module, rate in plan:
            if not 0.0 <= rate < 1.0:
                raise CococError(f"prune-filters: rate {rate} for module {module} is outside [0, 1)")
            if rate == 0.0:
                continue
            for conv in prunable_convs(graph, module):
                c = conv.output.type.shape[1]
                k = keep_count(c, rate, self.round_to)
                if k == c:
                    continue
                score = filter_importance(conv, self.criterion)
                keep = np.sort(np.argsort(-score, kind="stable")[:k])
                apply_channel_edit(graph, plan_channel_removal(graph, conv, keep))
        graph.meta["pruned_rates"] = dict(plan) if graph.modules else {"*": self.rate}
        return graph
