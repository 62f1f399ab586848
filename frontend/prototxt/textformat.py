"""Protobuf text format (as Caffe writes it) -> a generic, schema-free message tree.

Why generic and not `google.protobuf.text_format` against caffe.proto: the Wootz `module`
extension is not in caffe.proto, error messages must carry our path:line:col, and a missing
protoc must not stop anyone from importing a net. The tree keeps every field in file order
with its line:col; the Caffe translator and the solver reader interpret it with the typed
accessors below, which raise CococError naming the field and its line on a bad value.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Iterable

from lark import Lark, Token, Transformer, UnexpectedCharacters, UnexpectedEOF, UnexpectedInput

from cococ.ir.core import CococError

INT32 = (-2**31, 2**31 - 1)
UINT32 = (0, 2**32 - 1)
INT64 = (-2**63, 2**63 - 1)


class Ident(str):
    """An unquoted identifier value: an enum name, true/false, inf/nan."""


@dataclass
class Field:
    name: str
    value: Any  # str | Ident | int | float | Message
    loc: tuple[int, int]


class Message:
    """A message: its fields in file order. Repeated fields are fields with the same name."""

    __slots__ = ("fields", "loc", "path")

    def __init__(self, fields: list[Field], loc: tuple[int, int] = (1, 1), path: str | None = None):
        self.fields, self.loc, self.path = fields, loc, path

    # -- plain access --------------------------------------------------------------------------
    def has(self, name: str) -> bool:
        return any(f.name == name for f in self.fields)

    def field(self, name: str) -> Field | None:
        """The last field of that name (proto2: the last value of an optional field wins)."""
        for f in reversed(self.fields):
            if f.name == name:
                return f
        return None

    def get(self, name: str, default: Any = None) -> Any:
        f = self.field(name)
        return default if f is None else f.value

    def get_all(self, name: str) -> list[Any]:
        return [f.value for f in self.fields if f.name == name]

    def all_fields(self, name: str) -> list[Field]:
        return [f for f in self.fields if f.name == name]

    def error(self, message: str, loc: tuple[int, int] | None = None, **kw) -> CococError:
        return CococError(message, loc=loc or self.loc, path=self.path, **kw)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (repeated fields become lists), for meta records."""
        out: dict[str, Any] = {}
        for f in self.fields:
            v = f.value
            v = v.to_dict() if isinstance(v, Message) else (str(v) if isinstance(v, str) else v)
            if f.name in out:
                out[f.name] = (out[f.name] if isinstance(out[f.name], list) else [out[f.name]]) + [v]
            else:
                out[f.name] = v
        return out

    # -- typed access (errors name the field and its line) -------------------------------------
    def _conv(self, f: Field, kind: str, conv) -> Any:
        try:
            return conv(f.value)
        except (TypeError, ValueError, OverflowError):
            raise self.error(f"field '{f.name}' must be {kind}, got {_show(f.value)}", f.loc) from None

    def _one(self, name, default, kind, conv):
        f = self.field(name)
        return default if f is None else self._conv(f, kind, conv)

    def _many(self, name, kind, conv) -> list:
        return [self._conv(f, kind, conv) for f in self.all_fields(name)]

    def get_int(self, name: str, default: int | None = None, rng: tuple[int, int] = INT32) -> int | None:
        kind = "an integer" if rng != UINT32 else "a non-negative integer"
        return self._one(name, default, kind, lambda v: _as_int(v, rng))

    def get_ints(self, name: str, rng: tuple[int, int] = INT32) -> list[int]:
        return self._many(name, "an integer", lambda v: _as_int(v, rng))

    def get_float(self, name: str, default: float | None = None) -> float | None:
        return self._one(name, default, "a number", _as_float)

    def get_floats(self, name: str) -> list[float]:
        return self._many(name, "a number", _as_float)

    def get_bool(self, name: str, default: bool | None = None) -> bool | None:
        return self._one(name, default, "true or false", _as_bool)

    def get_str(self, name: str, default: str | None = None) -> str | None:
        return self._one(name, default, "a string", _as_str)

    def get_strs(self, name: str) -> list[str]:
        return self._many(name, "a string", _as_str)

    def get_enum(self, name: str, choices: Iterable[str], default: str | None = None,
                 numbers: dict[int, str] | None = None) -> str | None:
        """An enum value by name (or by number, when `numbers` maps them), checked against choices."""
        f = self.field(name)
        if f is None:
            return default
        v = f.value
        if numbers and isinstance(v, int) and not isinstance(v, bool) and v in numbers:
            v = numbers[v]
        choices = tuple(choices)
        if not isinstance(v, str) or str(v) not in choices:
            raise self.error(f"field '{name}' must be one of {', '.join(choices)}, got {_show(f.value)}", f.loc)
        return str(v)

    def get_msg(self, name: str) -> "Message | None":
        f = self.field(name)
        if f is None:
            return None
        if not isinstance(f.value, Message):
            raise self.error(f"field '{name}' must be a message {{ ... }}, got {_show(f.value)}", f.loc)
        return f.value

    def get_msgs(self, name: str) -> list["Message"]:
        out = []
        for f in self.all_fields(name):
            if not isinstance(f.value, Message):
                raise self.error(f"field '{name}' must be a message {{ ... }}, got {_show(f.value)}", f.loc)
            out.append(f.value)
        return out

    def __repr__(self) -> str:
        return f"Message({', '.join(f.name for f in self.fields)})"


def _show(v: Any) -> str:
    if isinstance(v, Message):
        return "a message"
    s = repr(str(v)) if isinstance(v, str) and not isinstance(v, Ident) else str(v)
    return s if len(s) <= 40 else s[:37] + "..."


def _as_int(v, rng) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError
    if not rng[0] <= v <= rng[1]:
        raise ValueError
    return v


_SPECIAL_FLOATS = {"inf": math.inf, "infinity": math.inf, "nan": math.nan}


def _as_float(v) -> float:
    if isinstance(v, bool) or isinstance(v, Message):
        raise ValueError
    if isinstance(v, Ident):
        neg = v.startswith("-")
        x = _SPECIAL_FLOATS[v.lstrip("-").lower()] if v.lstrip("-").lower() in _SPECIAL_FLOATS else None
        if x is None:
            raise ValueError
        return -x if neg else x
    if isinstance(v, (int, float)) and not isinstance(v, str):
        return float(v)
    raise ValueError


def _as_bool(v) -> bool:
    if isinstance(v, Ident) and v in ("true", "True", "t", "false", "False", "f"):
        return v in ("true", "True", "t")
    if isinstance(v, int) and not isinstance(v, bool) and v in (0, 1):
        return bool(v)
    raise ValueError


def _as_str(v) -> str:
    if isinstance(v, str) and not isinstance(v, Ident):
        return str(v)
    raise ValueError


# ---- parsing ----------------------------------------------------------------------------------

_ESCAPES = {"n": b"\n", "t": b"\t", "r": b"\r", "a": b"\a", "b": b"\b", "f": b"\f", "v": b"\v",
            "\\": b"\\", "'": b"'", '"': b'"', "?": b"?"}
_ESC_RE = re.compile(r"\\(?:([0-7]{1,3})|[xX]([0-9A-Fa-f]{1,2})|u([0-9A-Fa-f]{4})|U([0-9A-Fa-f]{8})|(.))", re.S)


def unescape(body: str) -> str:
    """C-style escapes of protobuf text strings -> str (bytes decoded as UTF-8, bad bytes replaced)."""
    out = bytearray()
    pos = 0
    for m in _ESC_RE.finditer(body):
        out += body[pos:m.start()].encode("utf-8", "surrogatepass")
        octal, hx, u4, u8, ch = m.groups()
        if octal:
            out.append(int(octal, 8) & 0xFF)
        elif hx:
            out.append(int(hx, 16))
        elif u4 or u8:
            cp = int(u4 or u8, 16)
            if cp > 0x10FFFF:
                raise ValueError(f"bad escape \\U{u8}")
            out += chr(cp).encode("utf-8", "surrogatepass")
        elif ch in _ESCAPES:
            out += _ESCAPES[ch]
        else:
            raise ValueError(f"unknown escape '\\{ch}'")
        pos = m.end()
    out += body[pos:].encode("utf-8", "surrogatepass")
    return out.decode("utf-8", "replace")


def _number(text: str):
    t = text
    if t[:2] in ("0x", "0X"):
        return int(t, 16)
    if re.fullmatch(r"\d+", t):
        return int(t, 8) if len(t) > 1 and t[0] == "0" else int(t)
    if t[-1] in "fF":
        t = t[:-1]
    return float(t)


def _loc(tok: Token) -> tuple[int, int]:
    return (tok.line, tok.column)


class _Build(Transformer):
    """Runs inside the LALR parser (one callback per reduction): builds Field lists."""

    def __init__(self, path: str | None):
        super().__init__()
        self.path = path

    def string(self, toks):
        try:
            return "".join(unescape(t[1:-1]) for t in toks)
        except ValueError as e:
            raise CococError(f"bad string literal {toks[0][:30]}: {e}", loc=_loc(toks[0]), path=self.path) from None

    def number(self, toks):
        try:
            return _number(toks[0])
        except ValueError:  # a leading 0 means octal, as in protobuf: `09` is no number
            raise CococError(f"bad number {toks[0][:30]!r}", loc=_loc(toks[0]), path=self.path) from None

    def neg_number(self, toks):
        return -self.number(toks)

    def ident(self, toks):
        return Ident(toks[0])

    def neg_ident(self, toks):
        return Ident("-" + toks[0])

    def scalar_field(self, c):
        return [Field(str(c[0]), c[1], _loc(c[0]))]

    def list_field(self, c):
        return [Field(str(c[0]), v, _loc(c[0])) for v in c[1:] if v is not None]

    def message_field(self, c):
        return [Field(str(c[0]), Message(_flatten(c[2:]), _loc(c[0]), self.path), _loc(c[0]))]

    def start(self, c):
        return Message(_flatten(c), (1, 1), self.path)


def _flatten(children) -> list[Field]:
    return [f for group in children for f in group]


_GRAMMAR = resources.files("cococ.frontend.prototxt").joinpath("grammar.lark").read_text(encoding="utf-8")
_BUILD = _Build(None)
_PARSER = Lark(_GRAMMAR, parser="lalr", lexer="contextual", transformer=_BUILD)


def _describe(e: UnexpectedInput, text: str) -> tuple[str, tuple[int, int]]:
    if isinstance(e, UnexpectedCharacters):
        ch = text[e.pos_in_stream] if 0 <= e.pos_in_stream < len(text) else "?"
        what = "unterminated string" if ch in "\"'" else f"unexpected character {ch!r}"
        return f"syntax error: {what}", (e.line, e.column)
    if isinstance(e, UnexpectedEOF):
        lines = text.split("\n")
        return "syntax error: unexpected end of file (a '}' or value is missing)", (len(lines), len(lines[-1]) + 1)
    tok = getattr(e, "token", None)
    expected = sorted(getattr(e, "expected", ()) or ())
    names = {"NAME": "a field name", "RBRACE": "'}'", "COLON": "':'", "LBRACE": "'{'", "LSQB": "'['",
             "RSQB": "']'", "MORETHAN": "'>'", "NUMBER": "a number", "STRING": "a string", "COMMA": "','",
             "MINUS": "'-'", "LANGLE": "'<'", "$END": "end of file"}
    closer = _innermost(text[:max(getattr(tok, "start_pos", 0) or 0, 0)])
    drop = {"RBRACE", "MORETHAN", "RSQB"} - {closer}
    names["_SEP"] = "',' or ';'"
    want = ", ".join(dict.fromkeys(names.get(x, x) for x in expected if x not in drop))
    if tok is None or tok.type == "$END":
        lines = text.split("\n")
        return f"syntax error: unexpected end of file (expected {want})", (len(lines), len(lines[-1]) + 1)
    shown = str(tok)[:30]
    return f"syntax error: unexpected {shown!r} (expected {want})", (e.line, e.column)


_SKIP = re.compile(r'"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\'|#[^\n]*')


def _innermost(prefix: str) -> str | None:
    """The closing token the parser waits for at the end of `prefix` (LALR merges states, so its
    expected-token set can list '>' inside `{ }`; this keeps the message to what can follow)."""
    stack = []
    for ch in _SKIP.sub("", prefix):
        if ch in "{<[":
            stack.append({"{": "RBRACE", "<": "MORETHAN", "[": "RSQB"}[ch])
        elif ch in "}>]" and stack:
            stack.pop()
    return stack[-1] if stack else None


MAX_DEPTH = 100  # Caffe files nest a few levels; the readers of the tree (to_dict) recurse


def parse_text(text: str, path: str | None = None) -> Message:
    """Parse protobuf text into the root Message; CococError with path:line:col on bad syntax."""
    _BUILD.path = path  # the in-parser transformer stamps each Message with the path
    try:
        root = _PARSER.parse(text)
    except UnexpectedInput as e:
        msg, loc = _describe(e, text)
        raise CococError(msg, loc=loc, path=path) from None
    _check_depth(root)
    return root


def _check_depth(root: Message) -> None:
    """Messages nested deeper than MAX_DEPTH are an error at the first one too deep (an iterative
    walk: the parser itself does not recurse, and this check must not either)."""
    todo = [(root, 0)]
    while todo:
        m, depth = todo.pop()
        for f in m.fields:
            if isinstance(f.value, Message):
                if depth + 1 > MAX_DEPTH:
                    raise CococError(f"messages nested more than {MAX_DEPTH} deep", loc=f.loc, path=root.path)
                todo.append((f.value, depth + 1))


def read_text(path: str | Path) -> str:
    """A file's text as UTF-8; a bad byte is a CococError at its line:col."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise CococError(f"cannot read: {e.strerror}", path=str(p)) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        before = data[:e.start]
        line = before.count(b"\n") + 1
        col = e.start - (before.rfind(b"\n") + 1) + 1
        raise CococError(f"invalid UTF-8 byte 0x{data[e.start]:02x}", loc=(line, col), path=str(p)) from None


def parse_file(path: str | Path) -> Message:
    return parse_text(read_text(path), str(path))
