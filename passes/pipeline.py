"""Pipeline text: `a,b{opt=1,flag=true,rates=[0.3,0.5]},c` to pass instances and back.

Options are written as text and converted to each pass's dataclass field types (int, float,
bool, str, tuples of them: `[0.3,0.5]` or a lone `0.3` for a `tuple[float, ...]`; an untyped
element reads as the most specific of int, float, bool, str). `format_pass` writes an instance back as the text that makes it, which is
what reproducers, dumps and timing tables show.
"""
from __future__ import annotations

import re
import types
import typing
from typing import Any

from cococ.ir.core import CococError
from cococ.passes.manager import get_pass, option_default, option_types, pass_options

# ---- options ------------------------------------------------------------------------------------

_INT = re.compile(r"^[+-]?\d+$")
_FLOAT = re.compile(r"^[+-]?(\d+\.?\d*([eE][+-]?\d+)?|\.\d+([eE][+-]?\d+)?|inf|nan)$", re.I)
_BOOLS = {"true": True, "1": True, "yes": True, "on": True, "false": False, "0": False, "no": False, "off": False}


def convert_option(pass_name: str, key: str, raw: Any, typ: Any) -> Any:
    """Convert the parsed text `raw` (a str or a list of them) to the field type `typ`."""
    def bad(want: str) -> CococError:
        return CococError(f"option '{key}' of pass '{pass_name}' must be {want}, got {_show(raw)}")

    origin, args = typing.get_origin(typ), typing.get_args(typ)
    if origin in (typing.Union, getattr(types, "UnionType", None)):
        if type(None) in args and isinstance(raw, str) and raw.lower() in ("none", "null"):
            return None
        rest = [a for a in args if a is not type(None)]
        return convert_option(pass_name, key, raw, rest[0] if len(rest) == 1 else Any)
    if typ in (list, tuple) or origin in (list, tuple):
        items = raw if isinstance(raw, list) else [raw]
        elem = args[0] if args and args[0] is not Ellipsis else Any
        out = [convert_option(pass_name, key, x, elem) for x in items]
        return tuple(out) if (typ is tuple or origin is tuple) else out
    if isinstance(raw, list):
        raise bad(_type_name(typ))
    if typ is bool:
        if raw.lower() not in _BOOLS:
            raise bad("true or false")
        return _BOOLS[raw.lower()]
    if typ is int:
        if not _INT.match(raw):
            raise bad("an integer")
        return int(raw)
    if typ is float:
        if not (_FLOAT.match(raw) or _INT.match(raw)):
            raise bad("a number")
        return float(raw)
    if typ is str:
        return raw
    # untyped (Any, bare `list` elements): the most specific reading of the text
    if _INT.match(raw):
        return int(raw)
    if _FLOAT.match(raw):
        return float(raw)
    return _BOOLS.get(raw.lower(), raw) if raw.lower() in ("true", "false") else raw


def _type_name(typ: Any) -> str:
    return getattr(typ, "__name__", None) or str(typ).replace("typing.", "")


def _show(raw: Any) -> str:
    return "[" + ",".join(map(_show, raw)) + "]" if isinstance(raw, list) else repr(raw)


def make_pass(name: str, options: dict[str, Any] | None = None) -> Any:
    """Instantiate pass `name` from options given as text (as parsed from a pipeline)."""
    cls = get_pass(name)
    fields = {f.name: f for f in pass_options(cls)}
    hints = option_types(cls)
    kwargs = {}
    for key, raw in (options or {}).items():
        fname = key.replace("-", "_")
        if fname not in fields:
            known = ", ".join(fields) or "none"
            raise CococError(f"unknown option '{key}' for pass '{name}' (options: {known})")
        kwargs[fname] = convert_option(name, key, raw, hints.get(fname, Any))
    try:
        return cls(**kwargs)
    except TypeError as e:  # a required option is missing
        raise CococError(f"pass '{name}': {e}") from None


def format_pass(p: Any) -> str:
    """The pipeline text of a pass instance: its name and the options that differ from defaults."""
    opts = []
    for f in pass_options(type(p)):
        v = getattr(p, f.name)
        if v != option_default(f):
            opts.append(f"{f.name}={format_value(v)}")
    return p.name + ("{" + ",".join(opts) + "}" if opts else "")


def format_value(v: Any) -> str:
    """An option value as pipeline text (lists and tuples in brackets, odd strings quoted)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(format_value(x) for x in v) + "]"
    s = str(v)
    return f'"{s}"' if isinstance(v, str) and (not s or re.search(r"[\s,{}\[\]=\"']", s)) else s


# ---- the pipeline parser -------------------------------------------------------------------------

class _Reader:
    """Recursive descent over `a,b{k=v k2=[x,y]},c`; errors point at a column of the text."""

    def __init__(self, text: str):
        self.text, self.i = text, 0

    def error(self, msg: str) -> CococError:
        return CococError(f"bad pipeline '{self.text}' at column {self.i + 1}: {msg}")

    def skip(self) -> None:
        while self.i < len(self.text) and self.text[self.i].isspace():
            self.i += 1

    def peek(self) -> str:
        self.skip()
        return self.text[self.i] if self.i < len(self.text) else ""

    def expect(self, ch: str) -> None:
        if self.peek() != ch:
            raise self.error(f"expected '{ch}', found {self._found()}")
        self.i += 1

    def _found(self) -> str:
        return f"'{self.text[self.i]}'" if self.i < len(self.text) else "the end"

    def word(self, what: str) -> str:
        self.skip()
        m = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*").match(self.text, self.i)
        if not m:
            raise self.error(f"expected {what}, found {self._found()}")
        self.i = m.end()
        return m.group()

    def value(self) -> Any:
        ch = self.peek()
        if ch == "[":
            self.i += 1
            items: list = []
            if self.peek() == "]":
                self.i += 1
                return items
            while True:
                items.append(self.value())
                if self.peek() == ",":
                    self.i += 1
                    continue
                self.expect("]")
                return items
        if ch in "\"'":
            end = self.text.find(ch, self.i + 1)
            if end < 0:
                raise self.error("unterminated string")
            s, self.i = self.text[self.i + 1:end], end + 1
            return s
        m = re.compile(r"[^\s,{}\[\]=\"']+").match(self.text, self.i)
        if not m:
            raise self.error(f"expected a value, found {self._found()}")
        self.i = m.end()
        return m.group()

    def options(self) -> dict[str, Any]:
        opts: dict[str, Any] = {}
        while self.peek() != "}":
            if not self.peek():
                raise self.error("expected '}'")
            key = self.word("an option name")
            if self.peek() == "=":
                self.i += 1
                val = self.value()
            else:
                val = "true"  # a bare option name is a flag: `canonicalize{no-fold}` reads as true
            if key in opts:
                raise self.error(f"option '{key}' given twice")
            opts[key] = val
            if self.peek() == ",":
                self.i += 1
        self.i += 1
        return opts

    def pipeline(self) -> list[tuple[str, dict[str, Any]]]:
        out = []
        if not self.peek():
            return out
        while True:
            name = self.word("a pass name")
            opts = {}
            if self.peek() == "{":
                self.i += 1
                opts = self.options()
            out.append((name, opts))
            if not self.peek():
                return out
            self.expect(",")


def parse_pipeline_text(text: str) -> list[tuple[str, dict[str, Any]]]:
    """`a,b{k=1}` -> [("a", {}), ("b", {"k": "1"})]: names and raw option text, nothing looked up."""
    return _Reader(text).pipeline()


def parse_pipeline(text: str) -> list[Any]:
    """Pipeline text -> pass instances, with options converted to their field types."""
    return [make_pass(name, opts) for name, opts in parse_pipeline_text(text)]


def default_pipeline(target) -> str:
    """The passes a build runs when `-p` is not given: `canonicalize` on every target (batchnorm,
    scale and bias fold into the conv/dense before them, dropout goes), so that on arm-m4 they
    neither run as float steps of a --quantize build nor cost a kernel call, and on x86/cuda the
    conv's epilogue is one add instead of three per-channel steps (onnxruntime folds them at load
    time too; MobileNet v2 from Caffe: 0.95x the CPU time at one thread). `cococ build` and the
    search's measured metrics (Cycles[arm-m4], Latency[x86]) both start from it. `target` is
    kept for targets that will want their own passes."""
    return "canonicalize"
