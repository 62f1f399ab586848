"""Sequitur and Wootz's tuning-block identification, checked against Figure 4 of the paper."""
import hashlib
import random

from hypothesis import given, settings, strategies as st

from cococ.passes.sequitur import sequitur
from cococ.passes.tuning_blocks import TuningBlock, group_blocks, identify_tuning_blocks

# Figure 4 (Wootz §5): four networks of five modules, rates 0, .3, .5
FIG4 = [(.3, .3, .3, .5, 0), (.3, .3, .5, .5, 0), (.5, .3, .3, .5, 0), (0, .3, .5, .5, 0)]


def _fig4_string():
    out = []
    for n, cfg in enumerate(FIG4):
        out += [(m + 1, r) for m, r in enumerate(cfg)] + [("#", n)]
    return out


def _canonical(grammar):
    """Rule bodies with nonterminals replaced by their expansions: equal up to renaming."""
    return sorted((tuple(map(str, grammar.expand(n))), grammar.frequencies()[n]) for n in grammar.bodies)


def test_figure4_grammar_matches_the_paper():
    g = sequitur(_fig4_string())
    assert g.expand("r0") == _fig4_string()
    # The paper's CFG (Figure 4) with every terminal's wrapper rule (r5..r12) inlined:
    #   r0 -> r1 r2 #1 r1 r3 #2 1(.5) 2(.3) r2 #3 1(0) 2(.3) r3 #4
    #   r1 -> 1(.3) 2(.3) [2]   r2 -> 3(.3) r4 [2]   r3 -> 3(.5) r4 [2]   r4 -> 4(.5) 5(0) [4]
    t = lambda m, r: (m, r)  # noqa: E731
    paper = {
        (t(1, .3), t(2, .3)): 2,
        (t(3, .3), t(4, .5), t(5, 0)): 2,
        (t(3, .5), t(4, .5), t(5, 0)): 2,
        (t(4, .5), t(5, 0)): 4,
    }
    ours = {tuple(g.expand(n)): f for n, f in g.frequencies().items() if n != "r0"}
    assert ours == paper
    # the start rule's body: same shape as the paper's r0
    body = g.bodies["r0"]
    assert len(body) == 14 and sum(g.is_rule(s) for s in body) == 6  # + 4 wrapped terminals in the paper


def test_figure4_tuning_blocks():
    plan = identify_tuning_blocks(FIG4)
    got = {(b.start, b.rates): b.frequency for b in plan.blocks}
    # Justification, following the traversal: terminals with frequency > 1 are marked
    # (1@.3, 2@.3, 3@.3, 3@.5, 4@.5, 5@0); r4 = 4@.5 5@0 has frequency 4 = its children's
    # maximum, so it replaces them; r2 and r3 (frequency 2, a child with 4) and r1 (2 vs 4)
    # are dead ends. 1@.5 and 1@0 occur in one network only and are not blocks.
    assert got == {(0, (.3,)): 2, (1, (.3,)): 4, (2, (.3,)): 2, (2, (.5,)): 2, (3, (.5, 0.0)): 4}
    names = [b.key for b in plan.blocks]
    b = {k: i for i, k in enumerate(names)}
    assert plan.composite == [
        [b[(0, (.3,))], b[(1, (.3,))], b[(2, (.3,))], b[(3, (.5, 0.0))], b[(3, (.5, 0.0))]],
        [b[(0, (.3,))], b[(1, (.3,))], b[(2, (.5,))], b[(3, (.5, 0.0))], b[(3, (.5, 0.0))]],
        [None, b[(1, (.3,))], b[(2, (.3,))], b[(3, (.5, 0.0))], b[(3, (.5, 0.0))]],
        [None, b[(1, (.3,))], b[(2, (.5,))], b[(3, (.5, 0.0))], b[(3, (.5, 0.0))]],
    ]


def test_longer_shared_runs_become_one_block():
    # one rate shared across runs of consecutive modules (Wootz's "collection-2")
    cfgs = [(.5, .5, .5, .3, .3), (.5, .5, .5, .7, .7), (.3, .3, .5, .5, .5), (.3, .3, .7, .7, .7)]
    plan = identify_tuning_blocks(cfgs)
    assert any(len(b.rates) > 1 for b in plan.blocks)
    for cfg, vec in zip(cfgs, plan.composite):
        for m, bi in enumerate(vec):
            if bi is not None:
                blk = plan.blocks[bi]
                assert blk.start <= m < blk.stop and blk.rates[m - blk.start] == cfg[m]


def test_modules_method_every_module_rate_is_a_block():
    plan = identify_tuning_blocks(FIG4, method="modules")
    assert len(plan.blocks) == len({(m, r) for c in FIG4 for m, r in enumerate(c)})
    assert all(len(b.rates) == 1 for b in plan.blocks)


def test_groups_do_not_overlap_and_cover_every_block():
    blocks = [TuningBlock(0, (.3, .3)), TuningBlock(1, (.5,)), TuningBlock(2, (.3,)), TuningBlock(0, (.5,)),
              TuningBlock(3, (.7, .7))]
    groups = group_blocks(blocks)
    assert sorted(i for g in groups for i in g) == list(range(len(blocks)))
    for g in groups:
        for i in g:
            for j in g:
                assert i == j or not blocks[i].overlaps(blocks[j])
    assert groups == [[3, 1, 2, 4], [0]]   # first-fit, in order of the lowest module


def _check_invariants(seq, g):
    assert g.expand("r0") == list(seq)
    uses = {}
    digrams = {}
    for name, body in g.bodies.items():
        for i, s in enumerate(body):
            if g.is_rule(s):
                uses[s] = uses.get(s, 0) + 1
            if i + 1 < len(body):
                d = (s, body[i + 1])
                digrams.setdefault(d, []).append((name, i))
    assert all(n >= 2 for n in uses.values())                       # rule utility
    for d, places in digrams.items():                               # digram uniqueness
        if len(places) > 1:  # only overlapping occurrences (a a a) may repeat
            assert len(places) == 2 and places[0][0] == places[1][0] and abs(places[0][1] - places[1][1]) == 1, d


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from("abcd"), max_size=80))
def test_sequitur_invariants_on_random_strings(seq):
    _check_invariants(seq, sequitur(seq))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(st.sampled_from([0.0, 0.3, 0.5, 0.7]), min_size=6, max_size=6), min_size=1, max_size=12))
def test_composite_vectors_agree_with_configs(cfgs):
    plan = identify_tuning_blocks(cfgs)
    for cfg, vec in zip(cfgs, plan.composite):
        assert len(vec) == len(cfg)
        for m, bi in enumerate(vec):
            if bi is not None:
                blk = plan.blocks[bi]
                assert blk.rates[m - blk.start] == cfg[m] and blk.frequency > 1


def test_recorded_subspaces_give_the_recorded_grammars():
    """benchmarks/sequitur_linear.py's inputs (seed 0, 16 modules, rates .3/.5/.7): the rule counts
    docs/performance.md records, and the grammars' digests, taken from the object-per-symbol
    implementation this compiled one replaced (same grammar, 10x faster)."""
    rng = random.Random(0)
    for n, rules, digest in ((100, 210, "2441dc80eb55a890"), (1000, 923, "17d9c0fde5de0bce"),
                             (10000, 4739, "0648f8e4c25460df")):
        cfgs = [tuple(rng.choice((0.3, 0.5, 0.7)) for _ in range(16)) for _ in range(n)]
        seq = [s for i, c in enumerate(cfgs) for s in [*((m, r) for m, r in enumerate(c)), ("#", i)]]
        g = sequitur(seq)
        assert len(g.bodies) == rules
        assert hashlib.sha256(repr(sorted(g.bodies.items())).encode()).hexdigest()[:16] == digest
        assert g.expand("r0") == seq


def test_equal_terminals_of_other_types_are_one_symbol():
    # dict semantics, as before: 1 == 1.0, and the first spelling seen is the one kept
    g = sequitur([1, 2, 1.0, 2])
    assert g.bodies == {"r0": ["r1", "r1"], "r1": [1, 2]}
