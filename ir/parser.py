"""The parser of the textual IR: lark (LALR) over ir/ir.lark, then a walk that builds the Graph.

Names are resolved after the whole text is read, so a use before its definition is not a
parse error: the verifier then reports it as a cycle or as an ordering problem, which says
more than "undefined". Every error is a CococError with path:line:col. `parse_ir` verifies
the graph it builds (types agree with shape inference, params shaped, modules well formed)
unless told not to, so text that parses is text that can be run once weights are loaded.
"""
from __future__ import annotations

import json
import re
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import lark
import numpy as np

from cococ.ir.core import CococError, Graph, Layer, Param, TensorType, Value, digest
from cococ.ir.registry import get_op
from cococ.ir.verify import verify as verify_graph

# how a terminal is named in "expected ..." messages
_TERMINALS = {
    "VALUE": "a value (%name)", "STRING": "a string", "IDENT": "a name", "NUMBER": "a number",
    "HASH": "a hash (#...)", "GRAPH_NAME": "a graph name (@name)", "UNTYPED": "'?'",
    "$END": "end of input",
}


@lru_cache(maxsize=None)
def _lark() -> lark.Lark:
    text = resources.files("cococ.ir").joinpath("ir.lark").read_text(encoding="utf-8")
    return lark.Lark(text, parser="lalr", propagate_positions=True, maybe_placeholders=True)


def parse_ir(text: str, path: str | None = None, *, verify: bool = True) -> Graph:
    """Parse IR text into a Graph (verified unless verify=False)."""
    path = None if path is None else str(path)
    try:
        tree = _lark().parse(text)
    except lark.exceptions.UnexpectedInput as e:
        msg, loc = _describe(e, text), (e.line, e.column)
        if msg.startswith("unexpected end"):  # lark points at the last token; say where the text ends
            lines = text.split("\n")
            loc = (len(lines), len(lines[-1]) + 1)
        raise CococError(msg, loc=loc, path=path) from None
    graph = _Builder(path).graph(tree)
    graph.source_path = path
    if verify:
        try:
            verify_graph(graph)
        except CococError as e:
            if e.path is None and path is not None:
                raise CococError(e.message, layer=e.layer, loc=e.loc, path=path) from None
            raise
    return graph


def parse_file(path, *, verify: bool = True) -> Graph:
    """Parse an .ir file; weights come from the side-car `<stem>.npz` when there is one."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise CococError(f"cannot read {path}: {e.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        before = data[:e.start]
        loc = (before.count(b"\n") + 1, e.start - (before.rfind(b"\n") + 1) + 1)
        raise CococError(f"invalid UTF-8 byte 0x{data[e.start]:02x}", loc=loc, path=str(path)) from None
    graph = parse_ir(text, str(path), verify=verify)
    side = path.with_suffix(".npz")
    if side.exists():
        load_sidecar(graph, side)
    return graph


def load_sidecar(graph: Graph, side) -> None:
    """Fill params that have no data from an .npz, checking each array against its hash."""
    try:
        npz = np.load(side, allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise CococError(f"cannot read side-car weights {side}: {e}") from None
    with npz:
        keys = set(npz.files)
        for layer in graph.layers:
            for pname, p in layer.params.items():
                if p.format == "dense" and p.data is None and f"{layer.name}/{pname}" in keys:
                    a = _member(npz, f"{layer.name}/{pname}", side)
                    _check(layer, pname, a, p.type, p._hash, side)
                    p.data = a
                elif p.format != "dense" and not p.arrays and p.array_stubs:
                    ks = {n: f"{layer.name}/{pname}/{n}" for n in p.array_stubs}
                    if not all(k in keys for k in ks.values()):
                        continue
                    arrays = {n: _member(npz, k, side) for n, k in ks.items()}
                    for n, (t, h) in p.array_stubs.items():
                        _check(layer, f"{pname}/{n}", arrays[n], t, h, side)
                    p.arrays, p.array_stubs = arrays, {}


def _member(npz, key: str, side) -> np.ndarray:
    """One array of the side-car: np.load reads members lazily, so a damaged one fails here."""
    try:
        return npz[key]
    except Exception as e:  # noqa: BLE001 - zip, zlib and .npy format errors: a damaged file
        raise CococError(f"cannot read '{key}' from side-car weights {side}: {e}") from None


def _check(layer: Layer, what: str, a: np.ndarray, t: TensorType, h: str | None, side) -> None:
    if tuple(a.shape) != t.shape or np.dtype(a.dtype) != np.dtype(t.np_dtype):
        raise layer.error(f"param '{what}' in {side} is {a.dtype}{list(a.shape)}, the IR says {t}")
    if h is not None and digest([a]) != h:
        raise layer.error(f"param '{what}' in {side} has hash #{digest([a])}, the IR says #{h}")


def _describe(e: lark.exceptions.UnexpectedInput, text: str) -> str:
    """lark's multi-line error as one line: what was found and what would have been accepted."""
    expected = getattr(e, "expected", None) or getattr(e, "allowed", None) or set()
    ip = getattr(e, "interactive_parser", None)
    if ip is not None:  # LALR's merged lookaheads over-promise; ask what really shifts here
        try:
            expected = ip.accepts() or expected
        except Exception:  # noqa: BLE001 - the plain set is still a fair answer
            pass
    names = sorted({_terminal_name(t) for t in expected})
    want = f", expected {', '.join(names)}" if names else ""
    if isinstance(e, lark.exceptions.UnexpectedCharacters):
        return f"unexpected character {text[e.pos_in_stream]!r}{want}"
    if isinstance(e, lark.exceptions.UnexpectedEOF) or getattr(e, "token", None) is None \
            or e.token.type == "$END":
        return f"unexpected end of input{want}"
    return f"unexpected {e.token.value!r}{want}"


def _terminal_name(name: str) -> str:
    if name in _TERMINALS:
        return _TERMINALS[name]
    for t in _lark().terminals:
        if t.name == name and t.pattern.type == "str":
            return repr(t.pattern.value)
    return name.lower()


_BARE = re.compile(r"[A-Za-z0-9_]")


def _unquote(s: str) -> str:
    return json.loads(s) if s.startswith('"') else s


class _Builder:
    """Walks the lark tree; values are created at their definition and resolved afterwards."""

    def __init__(self, path: str | None):
        self.path = path

    def error(self, msg: str, node, layer: str | None = None) -> CococError:
        loc = (node.line, node.column) if getattr(node, "line", None) is not None else \
              (node.meta.line, node.meta.column)
        return CococError(msg, layer=layer, loc=loc, path=self.path)

    def text(self, tok) -> str:
        try:
            return _unquote(str(tok))
        except ValueError:
            raise self.error(f"bad escape in string {tok}", tok) from None

    def name(self, tok) -> str:  # %name, %"name", @name, @"name"
        if str(tok)[1] != '"':
            return str(tok)[1:]
        try:
            return _unquote(str(tok)[1:])
        except ValueError:  # the token, not its text, carries the line:col for the error
            raise self.error(f"bad escape in string {tok}", tok) from None

    # -- graph -----------------------------------------------------------------------------------
    def graph(self, tree) -> Graph:
        gname, *rest = tree.children
        g = Graph(self.name(gname))
        items, returns = [], []
        for ch in rest:
            if ch is None:
                continue
            if isinstance(ch, lark.Tree) and ch.data == "meta":
                g.meta = self.dict(ch.children[0])
            elif isinstance(ch, lark.Tree) and ch.data in ("layer", "module"):
                items.append(ch)
            elif isinstance(ch, lark.Tree) and ch.data == "value_ref":
                returns.append(ch.children[0])
        defined: dict[str, Value] = {}
        where: dict[str, Any] = {}
        pending = []  # (layer, operand tokens)
        module_at: dict[str, tuple[int, int]] = {}
        for it in items:
            if it.data == "module":
                mname = self.text(it.children[0])
                if mname in module_at:
                    line, col = module_at[mname]
                    raise self.error(f"module '{mname}' appears twice (first at line {line}:{col}); "
                                     "a module's layers must be contiguous", it)
                module_at[mname] = (it.meta.line, it.meta.column)
                g.modules.append(mname)
                for lt in it.children[1:]:
                    pending.append(self.layer(lt, mname, g, defined, where))
            else:
                pending.append(self.layer(it, None, g, defined, where))
        for layer, toks in pending:
            layer.inputs = [self.lookup(t, defined, layer.name) for t in toks]
        g.outputs = [self.lookup(t, defined, None) for t in returns]
        return g

    def lookup(self, tok, defined: dict[str, Value], layer: str | None) -> Value:
        n = self.name(tok)
        if n not in defined:
            raise self.error(f"use of undefined value {tok}", tok, layer)
        return defined[n]

    # -- layers ----------------------------------------------------------------------------------
    def layer(self, tree, module, g: Graph, defined, where):
        results, ops = [], []
        op = name = operands = attrs = params = None
        for ch in tree.children:
            if isinstance(ch, lark.Tree) and ch.data == "result":
                results.append(ch)
            elif isinstance(ch, lark.Token) and ch.type == "IDENT":
                op = str(ch)
                op_tok = ch
            elif isinstance(ch, lark.Token) and ch.type == "STRING":
                name = self.text(ch)
            elif isinstance(ch, lark.Tree) and ch.data == "operands":
                operands = [c.children[0] for c in ch.children if c is not None]
            elif isinstance(ch, lark.Tree) and ch.data == "dict":
                attrs = self.dict(ch)
            elif isinstance(ch, lark.Tree) and ch.data == "params":
                params = ch
        loc = (tree.meta.line, tree.meta.column)
        try:
            get_op(op)
        except CococError as e:
            raise CococError(e.message, layer=name, loc=(op_tok.line, op_tok.column), path=self.path) from None
        outs = []
        for r in results:
            vtok, vtype = r.children
            vname = self.name(vtok)
            if vname in defined:
                first = where[vname]
                raise self.error(f"value {vtok} is defined twice (first at line {first[0]}:{first[1]})",
                                 vtok, name)
            v = Value(vname, self.vtype(vtype))
            defined[vname], where[vname] = v, (vtok.line, vtok.column)
            outs.append(v)
        layer = Layer(op, name, [], outs, attrs or {}, {}, module, loc)
        if params is not None:
            for p in params.children:
                if p is None:
                    continue
                pname, param = self.param(p, name)
                if pname in layer.params:
                    raise self.error(f"param '{pname}' given twice", p, name)
                layer.params[pname] = param
        g.layers.append(layer)
        return layer, operands or []

    def vtype(self, tree) -> TensorType | None:
        (ch,) = tree.children
        return None if isinstance(ch, lark.Token) else self.type(ch)

    def type(self, tree) -> TensorType:
        dtype, *dims = tree.children
        try:
            return TensorType(tuple(self.dim(d) for d in dims if d is not None), str(dtype))
        except CococError as e:
            raise self.error(e.message, dtype) from None

    def dim(self, tok) -> int:
        if not re.fullmatch(r"[+-]?\d+", str(tok)):
            raise self.error(f"a dimension must be an integer, got {tok}", tok)
        return int(str(tok))

    # -- params ----------------------------------------------------------------------------------
    def param(self, tree, layer: str) -> tuple[str, Param]:
        key, ptype, *rest = tree.children
        pname, t = self.key(key), self.type(ptype)
        fmt, attrs = "dense", {}
        for ch in rest:
            if isinstance(ch, lark.Token):
                fmt = str(ch)
            elif ch is not None and ch.data == "dict":
                attrs = self.dict(ch)
            elif ch is not None and ch.data == "dense_body":
                if fmt != "dense":
                    raise self.error(f"param '{pname}' in format {fmt} needs its arrays in (...)", ch, layer)
                data, h = self.body(ch, t, f"param '{pname}'", layer)
                return pname, Param(t, data, attrs=attrs, hash=h)
            elif ch is not None and ch.data == "arrays":
                if fmt == "dense":
                    raise self.error(f"param '{pname}' has arrays but no format (e.g. simd_group)", ch, layer)
                arrays, stubs = {}, {}
                for a in ch.children:
                    akey, atype, abody = a.children
                    aname, at = self.key(akey), self.type(atype)
                    data, h = self.body(abody, at, f"array '{pname}/{aname}'", layer)
                    if data is None:
                        stubs[aname] = (at, h)
                    else:
                        arrays[aname] = data
                if arrays and stubs:
                    raise self.error(f"param '{pname}': give the values of all its arrays or of none",
                                     ch, layer)
                p = Param(t, None, format=fmt, arrays=arrays, attrs=attrs)
                p.array_stubs = stubs
                return pname, p
        raise self.error(f"param '{pname}' has no body", tree, layer)

    def body(self, tree, t: TensorType, what: str, layer: str):
        """(data or None, hash or None) of a `#hash` / `#hash = [...]` body."""
        h, values = None, None
        for ch in tree.children:
            if isinstance(ch, lark.Token) and ch.type == "HASH":
                h = None if set(str(ch)[1:]) == {"?"} else str(ch)[1:]
            elif ch is not None:
                values = ch
        if values is None:
            return None, h
        flat = self.list(values)
        if len(flat) != t.size:
            raise self.error(f"{what} of type {t} needs {t.size} values, got {len(flat)}", values, layer)
        try:
            data = np.array(flat, dtype=t.np_dtype).reshape(t.shape)
        except (TypeError, ValueError, OverflowError) as e:
            raise self.error(f"{what}: values do not fit {t.dtype}: {e}", values, layer) from None
        if h is not None and digest([data]) != h:
            raise self.error(f"{what}: values hash to #{digest([data])}, the text says #{h}", values, layer)
        return data, h

    # -- attribute values ------------------------------------------------------------------------
    def key(self, tree) -> str:
        return self.text(tree.children[0])

    def dict(self, tree) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for e in tree.children:
            if e is None:
                continue
            k = self.key(e.children[0])
            if k in out:
                raise self.error(f"key '{k}' given twice", e)
            out[k] = self.value(e.children[1])
        return out

    def list(self, tree) -> list:
        return [self.value(c) for c in tree.children if c is not None]

    def value(self, tree) -> Any:
        kind = tree.data
        if kind == "number":
            s = str(tree.children[0])
            return int(s) if re.fullmatch(r"[+-]?\d+", s) else float(s)
        if kind == "string":
            return self.text(tree.children[0])
        if kind == "true":
            return True
        if kind == "false":
            return False
        if kind == "list":
            return self.list(tree)
        return self.dict(tree)
