"""Sequitur (Nevill-Manning & Witten 1997): a linear-time grammar of a symbol sequence.

Wootz §5 runs it over the concatenated configurations of the promising subspace so that
sequences of (module, rate) pairs that recur across networks become rules; the rules are
the candidate tuning blocks. Two invariants hold after every appended symbol:

  digram uniqueness  no pair of adjacent symbols occurs twice in the grammar
                     (non-overlapping), kept with a hash index of digrams;
  rule utility       every rule but the start rule is used at least twice.

Symbols live in doubly linked circular lists (one per rule, with a guard node), so every
substitution and expansion is O(1) and the whole run is linear in the input length.

Why compiled arrays: a subspace of 10^5 networks is 1.7 M symbols, and with one Python object
per symbol and a tuple per digram key the run took 23 s (identification must stay a negligible
part of a search). Here a node is an index into parallel int64 arrays (value, prev, next), a
symbol's value is an int (terminal t -> 2t, rule r -> 2r + 1, guard -1), a digram's key is one
int in an open-addressing table, and numba compiles it. The textbook's mutual recursion
(check -> match -> substitute -> check) runs from an explicit work stack in the same order,
because numba's on-disk cache crashes on reloading mutually recursive functions and compiling
afresh costs 5 s per process. Step for step it is the textbook algorithm, so the grammar is the
one the object version built (tests/passes/test_sequitur.py pins the recorded inputs' grammars).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Hashable, Iterable

import numpy as np
from numba import njit

_GUARD = -1
_SHIFT = 1 << 32            # digram key = value(a) * _SHIFT + value(b); values stay below 2^31
_NODES, _RULES = 0, 1       # counters in the state array C
# work-stack frames (the textbook recursion check -> match -> substitute -> check, unrolled so the
# compiled code has no recursion and numba can cache it): kind, then two node/rule ids
_CHECK, _MATCH, _SUBST, _MATCH_REST, _EXPAND_CHECK = range(5)


# -- the digram index: open addressing, linear probing, backward-shift deletion ---------------
@njit(cache=True)
def _slot(HK, k):
    mask = len(HK) - 1
    h = k * 0x5851F42D4C957F2D
    i = (h ^ (h >> 29)) & mask
    while HK[i] != -1 and HK[i] != k:
        i = (i + 1) & mask
    return i


@njit(cache=True)
def _index_del(HK, HV, k, s):
    """Remove key k if it maps to node s."""
    mask = len(HK) - 1
    i = _slot(HK, k)
    if HK[i] != k or HV[i] != s:
        return
    HK[i] = -1
    j = i
    while True:
        j = (j + 1) & mask
        kj = HK[j]
        if kj == -1:
            return
        h = kj * 0x5851F42D4C957F2D
        ideal = (h ^ (h >> 29)) & mask
        stays = (i < ideal <= j) if i <= j else (ideal > i or ideal <= j)
        if not stays:
            HK[i] = kj
            HV[i] = HV[j]
            HK[j] = -1
            i = j


@njit(cache=True)
def _index_set(HK, HV, k, s):
    i = _slot(HK, k)
    HK[i] = k
    HV[i] = s


# -- nodes and rules ---------------------------------------------------------------------------
@njit(cache=True)
def _node(V, P, N, O, R, C, value, obj):
    """A new unlinked node holding `value` (terminal object id `obj`, or -1)."""
    s = C[_NODES]
    C[_NODES] += 1
    V[s] = value
    P[s] = -1
    N[s] = -1
    O[s] = obj
    if value != _GUARD and value & 1:
        R[value >> 1] += 1
    return s


@njit(cache=True)
def _new_rule(V, P, N, O, R, G, GR, C):
    r = C[_RULES]
    C[_RULES] += 1
    R[r] = 0
    g = _node(V, P, N, O, R, C, _GUARD, -1)
    P[g] = g
    N[g] = g
    G[r] = g
    GR[g] = r
    return r


# -- list surgery ----------------------------------------------------------------------------
@njit(cache=True)
def _forget(V, N, HK, HV, s):
    """Remove the digram starting at s from the index, if it is the indexed one."""
    t = N[s]
    if V[s] != _GUARD and V[t] != _GUARD:
        _index_del(HK, HV, V[s] * _SHIFT + V[t], s)


@njit(cache=True)
def _join(V, P, N, HK, HV, left, right):
    if N[left] != -1:
        _forget(V, N, HK, HV, left)
        # keep an overlapping triple (a a a) indexed at its surviving member
        p, n = P[right], N[right]
        if p != -1 and n != -1:
            v = V[right]
            if v != _GUARD and V[p] == v and V[n] == v:
                _index_set(HK, HV, v * _SHIFT + v, right)
        p, n = P[left], N[left]
        if p != -1 and n != -1:
            v = V[left]
            if v != _GUARD and V[p] == v and V[n] == v:
                _index_set(HK, HV, v * _SHIFT + v, p)
    N[left] = right
    P[right] = left


@njit(cache=True)
def _insert_after(V, P, N, HK, HV, at, s):
    _join(V, P, N, HK, HV, s, N[at])
    _join(V, P, N, HK, HV, at, s)


@njit(cache=True)
def _delete(V, P, N, R, HK, HV, s):
    _join(V, P, N, HK, HV, P[s], N[s])
    v = V[s]
    if v != _GUARD:
        _forget(V, N, HK, HV, s)
        if v & 1:
            R[v >> 1] -= 1


@njit(cache=True)
def _expand(V, P, N, R, G, HK, HV, s):
    """Replace the nonterminal s (whose rule is used only here) by the rule's body."""
    left, right = P[s], N[s]
    rule = V[s] >> 1
    g = G[rule]
    f, l = N[g], P[g]
    _forget(V, N, HK, HV, s)
    _forget(V, N, HK, HV, left)
    R[rule] -= 1
    _join(V, P, N, HK, HV, left, f)
    _join(V, P, N, HK, HV, l, right)
    if V[l] != _GUARD and V[right] != _GUARD:
        _index_set(HK, HV, V[l] * _SHIFT + V[right], l)
    P[g] = g     # the rule is gone
    N[g] = g


@njit(cache=True)
def _digram_seen(V, N, HK, HV, s):
    """check(s)'s look-up: -2 if s starts no digram or the digram is new (then indexed) or s
    itself is indexed; -1 if an overlapping occurrence is indexed; else the other occurrence."""
    t = N[s]
    if V[s] == _GUARD or V[t] == _GUARD:
        return -2
    k = V[s] * _SHIFT + V[t]
    i = _slot(HK, k)
    if HK[i] != k:
        HK[i] = k
        HV[i] = s
        return -2
    found = HV[i]
    if found == s:
        return -2
    return -1 if N[found] == s else found


@njit(cache=True)
def _push(W, top, kind, a, b):
    W[top, 0] = kind
    W[top, 1] = a
    W[top, 2] = b
    return top + 1


@njit(cache=True)
def _enforce(V, P, N, O, R, G, GR, C, HK, HV, W, s):
    """check(s) and everything it sets off, in the textbook order. False if W overflowed."""
    top = _push(W, 0, _CHECK, s, 0)
    while top > 0:
        if top >= len(W) - 4:
            return False
        top -= 1
        kind, a, b = W[top, 0], W[top, 1], W[top, 2]
        if kind == _CHECK:
            found = _digram_seen(V, N, HK, HV, a)
            if found >= 0:
                top = _push(W, top, _MATCH, a, found)
        elif kind == _MATCH:            # match(new=a, old=b)
            if V[P[b]] == _GUARD and V[N[N[b]]] == _GUARD:
                # the old digram is a whole rule: reuse it
                rule = GR[P[b]]
                top = _push(W, top, _EXPAND_CHECK, rule, 0)
                top = _push(W, top, _SUBST, a, rule)
            else:
                rule = _new_rule(V, P, N, O, R, G, GR, C)
                g = G[rule]
                n2 = N[a]
                _insert_after(V, P, N, HK, HV, P[g], _node(V, P, N, O, R, C, V[a], O[a]))
                _insert_after(V, P, N, HK, HV, P[g], _node(V, P, N, O, R, C, V[n2], O[n2]))
                top = _push(W, top, _MATCH_REST, rule, 0)
                top = _push(W, top, _SUBST, a, rule)
                top = _push(W, top, _SUBST, b, rule)
        elif kind == _SUBST:            # substitute(s=a, rule=b)
            q = P[a]
            _delete(V, P, N, R, HK, HV, N[q])
            _delete(V, P, N, R, HK, HV, N[q])
            _insert_after(V, P, N, HK, HV, q, _node(V, P, N, O, R, C, 2 * b + 1, -1))
            found = _digram_seen(V, N, HK, HV, q)      # if not check(q): check(next(q))
            if found >= 0:
                top = _push(W, top, _MATCH, q, found)
            elif found == -2:
                top = _push(W, top, _CHECK, N[q], 0)
        else:
            if kind == _MATCH_REST:     # a new rule's own digram, then rule utility
                f = N[G[a]]
                _index_set(HK, HV, V[f] * _SHIFT + V[N[f]], f)
            # rule utility: a rule referenced once is inlined
            first = N[G[a]]
            v = V[first]
            if v != _GUARD and v & 1 and R[v >> 1] == 1:
                _expand(V, P, N, R, G, HK, HV, first)
    return True


@njit(cache=True)
def _run(terminals, V, P, N, O, R, G, GR, C, HK, HV, W):
    """Append every terminal id; False if an array ran out (the caller grows them and reruns)."""
    start = _new_rule(V, P, N, O, R, G, GR, C)
    g = G[start]
    room = len(V) - 8
    for i in range(len(terminals)):
        if C[_NODES] >= room or C[_RULES] >= len(G) - 2:
            return False
        _insert_after(V, P, N, HK, HV, P[g], _node(V, P, N, O, R, C, 2 * terminals[i], terminals[i]))
        last = P[g]
        if V[P[last]] != _GUARD:
            if not _enforce(V, P, N, O, R, G, GR, C, HK, HV, W, P[last]):
                return False
    return True


class _Grammar:
    """The grammar Sequitur built: node arrays (value, prev, next, terminal) and rules' guards."""

    def __init__(self, terminals: np.ndarray):
        cap = 4 * len(terminals) + 64
        while True:
            self.val, self.prv, self.nxt, self.obj, self.guard_rule = (np.empty(cap, np.int64) for _ in range(5))
            self.guard_rule.fill(-1)
            self.refs, self.guard = np.empty(cap // 2, np.int64), np.empty(cap // 2, np.int64)
            counters = np.zeros(2, np.int64)
            keys = np.full(1 << int(2 * cap).bit_length(), -1, np.int64)
            work = np.empty((cap, 3), np.int64)
            if _run(terminals, self.val, self.prv, self.nxt, self.obj, self.refs, self.guard,
                    self.guard_rule, counters, keys, np.empty_like(keys), work):
                break
            cap *= 2
        self.start = 0

    def body(self, rule: int) -> list[int]:
        out, g = [], int(self.guard[rule])
        nxt = self.nxt
        s = int(nxt[g])
        while s != g:
            out.append(s)
            s = int(nxt[s])
        return out

    def rules(self) -> list[int]:
        """Every live rule, start rule first, in first-reference order."""
        seen, order, i = {self.start}, [self.start], 0
        while i < len(order):
            for s in self.body(order[i]):
                v = int(self.val[s])
                if v & 1 and (v >> 1) not in seen:
                    seen.add(v >> 1)
                    order.append(v >> 1)
            i += 1
        return order


@dataclass
class Grammar:
    """A Sequitur grammar as plain data: rule name -> body (terminals or rule names)."""
    bodies: dict[str, list] = field(default_factory=dict)
    start: str = "r0"

    def is_rule(self, sym) -> bool:
        return isinstance(sym, str) and sym in self.bodies

    def expand(self, name: str) -> list:
        out = []
        for s in self.bodies[name]:
            out.extend(self.expand(s) if self.is_rule(s) else [s])
        return out

    def frequencies(self) -> dict[str, int]:
        """How many times each rule occurs in the full derivation of the start rule."""
        freq = {self.start: 1}
        for name in self.topological():
            for s in self.bodies[name]:
                if self.is_rule(s):
                    freq[s] = freq.get(s, 0) + freq[name]
        return freq

    def topological(self) -> list[str]:
        """Rules parents-first (the grammar is a DAG rooted at the start rule)."""
        order, seen = [], set()

        def visit(n):
            if n in seen:
                return
            seen.add(n)
            for s in self.bodies[n]:
                if self.is_rule(s):
                    visit(s)
            order.append(n)

        visit(self.start)
        return order[::-1]

    def __str__(self) -> str:
        freq = self.frequencies()
        return "\n".join(f"{freq[n]:>4}  {n} -> {' '.join(map(str, b))}" for n, b in self.bodies.items())


def sequitur(symbols: Iterable[Hashable]) -> Grammar:
    """Run Sequitur over `symbols`; rules are renamed r0 (start), r1, ... in first-use order."""
    ids: dict = {}
    terminals = np.fromiter((ids.setdefault(s, len(ids)) for s in symbols), np.int64)
    objects = list(ids)
    g = _Grammar(terminals)
    rules = g.rules()
    names = {r: f"r{i}" for i, r in enumerate(rules)}
    val, obj = g.val, g.obj
    return Grammar({names[r]: [names[int(val[s]) >> 1] if val[s] & 1 else objects[obj[s]] for s in g.body(r)]
                    for r in rules})
