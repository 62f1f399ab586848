"""The pass registry: what a pass is, the passes by name, and their options.

A pass is a frozen dataclass with `name: ClassVar[str]` (kebab-case), its options as typed
fields (tuples, not lists: a pass object is a value, the same text makes an equal object),
`in_place: ClassVar[bool]` and `apply(self, graph, ctx) -> Graph`, registered with
`@register_pass`. `in_place` is the pass's contract with its caller: True, apply() edits the
graph it is given and returns it; False, the graph given is left as it was and a new one is
returned. Running passes is cococ.passes.runner; pipeline text is cococ.passes.pipeline.

`PASS_MODULES` maps every pass name to its module, so a pipeline imports only the passes it
names (the pruning driver pulls in torch). A plain name is a module under cococ.passes
(`passes/<snake_name>.py`); a dotted one is a full module path, for a pass that lives above
passes/ because it trains (prune-for-target, in cococ.runtime.compress: docs/design.md).
"""
from __future__ import annotations

import dataclasses
import difflib
import importlib
import importlib.util
import re
import typing
from typing import Any

from cococ.ir.core import CococError

# pass name -> module (imported on first use). tests/passes/test_pipeline.py checks that every
# module registering a pass is listed here.
PASS_MODULES = {
    "infer-shapes": "infer_shapes",
    "canonicalize": "canonicalize",
    "dce": "dce",
    "identify-modules": "identify_modules",
    "prune-filters": "prune_filters",
    "prune-weights": "prune_weights",
    "simd-group": "simd_group",
    "teacher-student": "teacher_student",
    "quantize": "quantize",
    "prune-for-target": "cococ.runtime.compress.prune_for_target",
}

PASSES: dict[str, type] = {}
_KEBAB = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
_MUTABLE = (list, dict, set)


def module_of(name: str) -> str:
    """The full module path that registers pass `name` (whether or not it exists)."""
    module = PASS_MODULES.get(name, name.replace("-", "_"))
    return module if "." in module else f"cococ.passes.{module}"


# ---- options ------------------------------------------------------------------------------------

def pass_options(cls: type) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if f.init]


def option_default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return dataclasses.MISSING


def option_types(cls: type) -> dict[str, Any]:
    """Field name -> resolved type (annotations are strings under `from __future__ import annotations`)."""
    try:
        return typing.get_type_hints(cls)
    except Exception:  # noqa: BLE001 - an unresolvable annotation: fall back to the raw one
        return dict(getattr(cls, "__annotations__", {}))


# ---- the registry -------------------------------------------------------------------------------

def register_pass(cls: type) -> type:
    """Class decorator: add a pass to the registry under `cls.name`, checking the pass contract."""
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not _KEBAB.match(name):
        raise TypeError(f"pass {cls.__qualname__} needs `name: ClassVar[str]` in kebab-case, got {name!r}")
    if not dataclasses.is_dataclass(cls) or not callable(getattr(cls, "apply", None)):
        raise TypeError(f"pass '{name}' must be a dataclass with an apply(graph, ctx) method")
    if not cls.__dataclass_params__.frozen:  # type: ignore[attr-defined]
        raise TypeError(f"pass '{name}' must be a frozen dataclass (@dataclass(frozen=True)): "
                        "its options are what the pipeline text says, nothing else")
    if not isinstance(cls.__dict__.get("in_place"), bool):
        raise TypeError(f"pass '{name}' must declare `in_place: ClassVar[bool]` "
                        "(True: apply() edits the graph it is given)")
    types = option_types(cls)
    for f in pass_options(cls):
        typ = types.get(f.name)
        if typ in _MUTABLE or typing.get_origin(typ) in _MUTABLE:
            raise TypeError(f"option '{f.name}' of pass '{name}' is a {typing.get_origin(typ) or typ}: "
                            "write it as a tuple (tuple[float, ...])")
    old = PASSES.get(name)
    if old is not None and (old.__module__, old.__qualname__) != (cls.__module__, cls.__qualname__):
        raise RuntimeError(f"pass '{name}' registered twice ({old.__module__} and {cls.__module__})")
    PASSES[name] = cls
    return cls


def get_pass(name: str) -> type:
    """The pass class called `name`, importing its module if needed."""
    if name not in PASSES:
        full = module_of(name)
        if name in PASS_MODULES or (_KEBAB.match(name) and importlib.util.find_spec(full) is not None):
            importlib.import_module(full)
    if name not in PASSES:
        known = sorted(set(PASS_MODULES) | set(PASSES))
        hint = difflib.get_close_matches(name, known, n=1)
        raise CococError(f"unknown pass '{name}'" + (f" (did you mean '{hint[0]}'?)" if hint else "")
                         + f"; known passes: {', '.join(known)}")
    return PASSES[name]


def all_passes() -> dict[str, type]:
    """Every registered pass (importing every module in PASS_MODULES), by name."""
    for name in PASS_MODULES:
        get_pass(name)
    return dict(sorted(PASSES.items()))
