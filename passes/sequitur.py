"""Sequitur (Nevill-Manning & Witten 1997): a linear-time grammar of a symbol sequence.

Wootz §5 runs it over the concatenated configurations of the promising subspace so that
sequences of (module, rate) pairs that recur across networks become rules; the rules are
the candidate tuning blocks. Two invariants hold after every appended symbol:

  digram uniqueness  no pair of adjacent symbols occurs twice in the grammar
                     (non-overlapping), kept with a hash index of digrams;
  rule utility       every rule but the start rule is used at least twice.

Symbols live in doubly linked circular lists (one per rule, with a guard node), so every
substitution and expansion is O(1) and the whole run is linear in the input length.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Hashable, Iterable


class Rule:
    __slots__ = ("guard", "refs", "id")

    def __init__(self, rid: int):
        self.id = rid
        self.refs = 0
        self.guard = _Sym(None, self)
        self.guard.prev = self.guard.next = self.guard

    def first(self) -> "_Sym":
        return self.guard.next

    def last(self) -> "_Sym":
        return self.guard.prev

    def symbols(self) -> list["_Sym"]:
        out, s = [], self.guard.next
        while s is not self.guard:
            out.append(s)
            s = s.next
        return out


class _Sym:
    __slots__ = ("value", "rule", "prev", "next")

    def __init__(self, value, rule: Rule | None = None):
        # value: a terminal (hashable) or a Rule; `rule` set only on guard nodes
        self.value = value
        self.rule = rule
        self.prev = self.next = None

    @property
    def is_guard(self) -> bool:
        return self.rule is not None

    @property
    def is_rule(self) -> bool:
        return isinstance(self.value, Rule)

    def key(self):
        return ("R", self.value.id) if self.is_rule else ("T", self.value)


class Sequitur:
    def __init__(self):
        self._next_id = 0
        self.start = self._new_rule()
        self.index: dict[tuple, _Sym] = {}

    def _new_rule(self) -> Rule:
        r = Rule(self._next_id)
        self._next_id += 1
        return r

    # -- list surgery ------------------------------------------------------------------------
    def _digram(self, s: _Sym):
        return (s.key(), s.next.key())

    def _forget(self, s: _Sym) -> None:
        """Remove the digram starting at s from the index, if it is the indexed one."""
        if s.is_guard or s.next.is_guard:
            return
        k = self._digram(s)
        if self.index.get(k) is s:
            del self.index[k]

    def _join(self, left: _Sym, right: _Sym) -> None:
        if left.next is not None:
            self._forget(left)
            # keep an overlapping triple (a a a) indexed at its surviving member
            if (right.prev is not None and right.next is not None and not right.is_guard
                    and not right.prev.is_guard and not right.next.is_guard
                    and right.key() == right.prev.key() == right.next.key()):
                self.index[self._digram(right)] = right
            if (left.prev is not None and left.next is not None and not left.is_guard
                    and not left.prev.is_guard and not left.next.is_guard
                    and left.key() == left.prev.key() == left.next.key()):
                self.index[self._digram(left.prev)] = left.prev
        left.next = right
        right.prev = left

    def _insert_after(self, at: _Sym, s: _Sym) -> None:
        self._join(s, at.next)
        self._join(at, s)

    def _delete(self, s: _Sym) -> None:
        self._join(s.prev, s.next)
        if not s.is_guard:
            self._forget(s)
            if s.is_rule:
                s.value.refs -= 1

    def _make(self, value) -> _Sym:
        s = _Sym(value)
        if isinstance(value, Rule):
            value.refs += 1
        return s

    # -- the two invariants ------------------------------------------------------------------
    def _check(self, s: _Sym) -> bool:
        """Enforce digram uniqueness for the digram starting at s; True if it changed the grammar."""
        if s.is_guard or s.next.is_guard:
            return False
        k = self._digram(s)
        found = self.index.get(k)
        if found is None:
            self.index[k] = s
            return False
        if found is s:
            return False
        if found.next is not s:
            self._match(s, found)
        return True

    def _match(self, new: _Sym, old: _Sym) -> None:
        if old.prev.is_guard and old.next.next.is_guard:
            # the old digram is a whole rule: reuse it
            rule = old.prev.rule
            self._substitute(new, rule)
        else:
            rule = self._new_rule()
            self._insert_after(rule.last(), self._make(new.value))
            self._insert_after(rule.last(), self._make(new.next.value))
            self._substitute(old, rule)
            self._substitute(new, rule)
            self.index[self._digram(rule.first())] = rule.first()
        # rule utility: a rule referenced once is inlined
        first = rule.first()
        if first.is_rule and first.value.refs == 1:
            self._expand(first)

    def _substitute(self, s: _Sym, rule: Rule) -> None:
        q = s.prev
        self._delete(q.next)
        self._delete(q.next)
        self._insert_after(q, self._make(rule))
        if not self._check(q):
            self._check(q.next)

    def _expand(self, s: _Sym) -> None:
        """Replace the nonterminal s (whose rule is used only here) by the rule's body."""
        left, right = s.prev, s.next
        rule: Rule = s.value
        f, l = rule.first(), rule.last()
        self._forget(s)
        self._forget(left)
        s.value.refs -= 1
        self._join(left, f)
        self._join(l, right)
        if not l.is_guard and not right.is_guard:
            self.index[self._digram(l)] = l
        rule.guard.prev = rule.guard.next = rule.guard  # the rule is gone

    # -- public ------------------------------------------------------------------------------
    def append(self, terminal: Hashable) -> None:
        self._insert_after(self.start.last(), self._make(terminal))
        last = self.start.last()
        if not last.prev.is_guard:
            self._check(last.prev)

    def rules(self) -> list[Rule]:
        """Every live rule, start rule first, in first-reference order."""
        seen, order, work = {self.start.id}, [self.start], [self.start]
        while work:
            r = work.pop(0)
            for s in r.symbols():
                if s.is_rule and s.value.id not in seen:
                    seen.add(s.value.id)
                    order.append(s.value)
                    work.append(s.value)
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
    seq = Sequitur()
    for s in symbols:
        seq.append(s)
    rules = seq.rules()
    names = {r.id: f"r{i}" for i, r in enumerate(rules)}
    return Grammar({names[r.id]: [names[s.value.id] if s.is_rule else s.value for s in r.symbols()] for r in rules})
