"""Tuning-block identification (Wootz §5) and pre-training groups (Wootz §6.2).

A configuration gives one pruning rate per convolution module. Each network of the
promising subspace becomes a string of (module index, rate) symbols, the strings are
concatenated with a unique separator per network, and Sequitur's grammar exposes the runs
of consecutive pruned modules that recur across networks. Wootz's traversal then picks the
tuning blocks S:

  post-order over the grammar DAG (each terminal a leaf node, parallel edges merged);
  a node with frequency > 1 whose frequency equals its most frequent child's is marked as a
  potential block and its children are unmarked; any other node gets a dead-end mark and
  nothing above it is marked (a parent of a dead-end is a dead-end).

The side product is a composite vector per network: which block covers each module.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from cococ.passes.sequitur import Grammar, sequitur

Config = tuple[float, ...]


@dataclass(frozen=True)
class TuningBlock:
    """A run of consecutive modules [start, start+len(rates)) pruned at `rates`."""
    start: int
    rates: tuple[float, ...]
    frequency: int = 0

    @property
    def stop(self) -> int:
        return self.start + len(self.rates)

    @property
    def key(self) -> tuple[int, tuple[float, ...]]:
        return (self.start, self.rates)

    @property
    def needs_training(self) -> bool:
        """A block with every rate 0 is the teacher's own module: nothing to pre-train."""
        return any(r > 0 for r in self.rates)

    def overlaps(self, other: "TuningBlock") -> bool:
        return self.start < other.stop and other.start < self.stop

    def name(self, modules: Sequence[str] | None = None) -> str:
        mods = [modules[i] if modules else str(i) for i in range(self.start, self.stop)]
        return "+".join(f"{m}@{r:g}" for m, r in zip(mods, self.rates))


@dataclass
class BlockPlan:
    """Result of identification: the blocks S, each network's composite vector, the grammar."""
    blocks: list[TuningBlock]
    composite: list[list[int | None]]   # per network, per module: index into blocks, or None
    grammar: Grammar | None = None
    groups: list[list[int]] = field(default_factory=list)


def _symbols(configs: Sequence[Config]) -> list:
    out: list = []
    for n, cfg in enumerate(configs):
        out.extend((m, float(r)) for m, r in enumerate(cfg))
        out.append(("#", n))
    return out


def _is_sep(sym) -> bool:
    return isinstance(sym, tuple) and sym[0] == "#"


def identify_tuning_blocks(configs: Sequence[Config], method: str = "sequitur") -> BlockPlan:
    """Find the tuning blocks for a promising subspace.

    method="sequitur" is Wootz §5; method="modules" makes every (module, rate) pair used in
    the subspace a block (Wootz §7.3's "basic" setting, the peer of Table 5).
    """
    configs = [tuple(float(r) for r in c) for c in configs]
    if not configs:
        return BlockPlan([], [])
    if len({len(c) for c in configs}) != 1:
        raise ValueError("all configurations must give one rate per module (same length)")
    if method == "modules":
        return _module_blocks(configs)
    if method != "sequitur":
        raise ValueError(f"unknown tuning-block method '{method}' (sequitur, modules)")
    grammar = sequitur(_symbols(configs))
    freq = grammar.frequencies()
    term_freq: dict = {}
    for name in grammar.bodies:
        for s in grammar.bodies[name]:
            if not grammar.is_rule(s) and not _is_sep(s):
                term_freq[s] = term_freq.get(s, 0) + freq[name]

    def node_freq(node) -> int:
        return freq[node] if grammar.is_rule(node) else term_freq[node]

    def children(node) -> list:
        if not grammar.is_rule(node):
            return []
        seen, out = set(), []
        for s in grammar.bodies[node]:
            if not _is_sep(s) and s not in seen:
                seen.add(s)
                out.append(s)
        return out

    marked: set = set()
    dead: set = set()
    done: set = set()

    def visit(node) -> None:   # post-order, children first
        if node in done:
            return
        done.add(node)
        kids = children(node)
        for k in kids:
            visit(k)
        if node == grammar.start:
            return
        f = node_freq(node)
        if f > 1 and not any(k in dead for k in kids) and (not kids or f == max(node_freq(k) for k in kids)):
            marked.add(node)
            marked.difference_update(kids)
        else:
            dead.add(node)

    visit(grammar.start)

    # blocks in module order; map each marked node to its block index
    spans = {n: grammar.expand(n) if grammar.is_rule(n) else [n] for n in marked}
    nodes = sorted(marked, key=lambda n: (spans[n][0][0], len(spans[n]), str(spans[n])))
    blocks, index = [], {}
    for n in nodes:
        syms = spans[n]
        index[n] = len(blocks)
        blocks.append(TuningBlock(syms[0][0], tuple(r for _, r in syms), node_freq(n)))

    n_modules = len(configs[0])
    covered: dict = {}     # rule -> the block index (or None) of each module it derives

    def cover(node) -> list:
        if node in index:
            return [index[node]] * len(blocks[index[node]].rates)
        if not grammar.is_rule(node):
            return [None]
        if node not in covered:   # a rule recurs across networks: derive its cover once
            covered[node] = [b for s in grammar.bodies[node] for b in cover(s)]
        return covered[node]

    composite: list[list[int | None]] = []
    current: list[int | None] = []
    for s in grammar.bodies[grammar.start]:
        if _is_sep(s):
            composite.append(current)
            current = []
        else:
            current.extend(cover(s))
    assert all(len(c) == n_modules for c in composite)
    plan = BlockPlan(blocks, composite, grammar)
    plan.groups = group_blocks(blocks)
    return plan


def _module_blocks(configs: list[Config]) -> BlockPlan:
    count: dict = {}
    for cfg in configs:
        for m, r in enumerate(cfg):
            count[(m, r)] = count.get((m, r), 0) + 1
    keys = sorted(count)
    blocks = [TuningBlock(m, (r,), count[(m, r)]) for m, r in keys]
    index = {k: i for i, k in enumerate(keys)}
    composite = [[index[(m, r)] for m, r in enumerate(cfg)] for cfg in configs]
    return BlockPlan(blocks, composite, None, group_blocks(blocks))


def group_blocks(blocks: Sequence[TuningBlock]) -> list[list[int]]:
    """Partition blocks into groups with no overlapping modules, to pre-train one group per run.

    Wootz §6.2's pseudo-code is ambiguous (as printed it adds a new group once per existing
    group); the intent, implemented here: blocks sorted by their lowest module, each joins the
    first group it does not overlap, else starts a new group.
    """
    order = sorted(range(len(blocks)), key=lambda i: (blocks[i].start, blocks[i].stop))
    groups: list[list[int]] = []
    for i in order:
        for g in groups:
            if not any(blocks[i].overlaps(blocks[j]) for j in g):
                g.append(i)
                break
        else:
            groups.append([i])
    return groups
