"""The pass manager: a registry of named passes, MLIR-style pipeline strings, instruments.

A pass is a dataclass with `name: ClassVar[str]` (kebab-case), its options as typed fields, and
`apply(self, graph, ctx) -> Graph`, registered with `@register_pass`. It lives in
`passes/<snake_name>.py`; `PASS_MODULES` maps every pass name to that module so a pipeline
imports only the passes it names (the pruning passes pull in heavy dependencies).

Pipelines are strings (cococ.passes.pipeline), because the same string goes into
reproducers, dumps and reports. Dumping, timing and verification are instruments
(cococ.passes.instruments) hooked before/after each pass, not code inside passes.
"""
from __future__ import annotations

import dataclasses
import difflib
import importlib
import importlib.util
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from cococ.ir.core import CococError, Graph
from cococ.passes.pipeline import format_pass, parse_pipeline

# pass name -> module under cococ.passes (imported on first use). tests/passes/test_pipeline.py
# checks that every module registering a pass is listed here.
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
    "prune-for-target": "prune_for_target",
}

PASSES: dict[str, type] = {}
_KEBAB = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")


def register_pass(cls: type) -> type:
    """Class decorator: add a pass dataclass to the registry under `cls.name`."""
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not _KEBAB.match(name):
        raise TypeError(f"pass {cls.__qualname__} needs `name: ClassVar[str]` in kebab-case, got {name!r}")
    if not dataclasses.is_dataclass(cls) or not callable(getattr(cls, "apply", None)):
        raise TypeError(f"pass '{name}' must be a dataclass with an apply(graph, ctx) method")
    old = PASSES.get(name)
    if old is not None and (old.__module__, old.__qualname__) != (cls.__module__, cls.__qualname__):
        raise RuntimeError(f"pass '{name}' registered twice ({old.__module__} and {cls.__module__})")
    PASSES[name] = cls
    return cls


def get_pass(name: str) -> type:
    """The pass class called `name`, importing its module if needed."""
    if name not in PASSES:
        module = PASS_MODULES.get(name, name.replace("-", "_"))
        full = f"cococ.passes.{module}"
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


# ---- running --------------------------------------------------------------------------------------

@dataclass
class PassContext:
    """What a pass may know about the run it is part of; `notes` is for passes to report in."""
    pipeline: str = ""
    index: int = 0          # 1-based position of the running pass
    total: int = 0
    notes: dict[str, Any] = field(default_factory=dict)


@dataclass
class PassInfo:
    """What instruments are told about each pass."""
    pass_: Any
    index: int              # 1-based
    total: int
    pipeline: str
    seconds: float = 0.0    # time in apply(), set before run_after_pass

    @property
    def name(self) -> str:
        return self.pass_.name

    @property
    def spec(self) -> str:
        return format_pass(self.pass_)


def run_pipeline(graph: Graph, pipeline: str | Sequence[Any], *, instruments: Sequence[Any] = (),
                 verify: bool = True, reproducer: str | Path | None = ".") -> Graph:
    """Run the passes of `pipeline` on `graph` (which they may change in place) and return the result.

    `instruments` get run_before_pass/run_after_pass around every pass (and exit_pipeline at the
    end); with `verify`, the graph is verified after every pass. When a pass crashes or leaves
    invalid IR, a reproducer (the IR before that pass, with weights, and the pipeline) is written
    to `reproducer` (a folder; None writes none) and named in the CococError.
    """
    from cococ.passes.instruments import Verify

    passes = parse_pipeline(pipeline) if isinstance(pipeline, str) else list(pipeline)
    text = ",".join(format_pass(p) for p in passes)
    hooks = list(instruments) + ([Verify()] if verify else [])
    ctx = PassContext(pipeline=text, total=len(passes))
    try:
        for i, p in enumerate(passes, 1):
            info = PassInfo(p, i, len(passes), text)
            before = graph.clone() if reproducer is not None else None
            for h in hooks:
                h.run_before_pass(graph, info)
            ctx.index = i
            start = time.perf_counter()
            try:
                result = p.apply(graph, ctx)
                if not isinstance(result, Graph):
                    raise TypeError(f"apply() returned {type(result).__name__}, not a Graph")
            except CococError as e:  # a diagnosed problem (bad option value, missing weights): no reproducer
                msg = str(e)
                raise CococError(msg if msg.startswith(p.name) else f"pass '{p.name}': {msg}") from e
            except Exception as e:  # noqa: BLE001 - a crash in a pass: keep what reproduces it
                raise _failure(info, f"crashed: {type(e).__name__}: {e}", before, passes, reproducer) from e
            info.seconds = time.perf_counter() - start
            graph = result
            try:
                for h in hooks:
                    h.run_after_pass(graph, info)
            except InvalidIR as e:
                raise _failure(info, f"left invalid IR: {e.error}", before, passes, reproducer) from e.error
    finally:
        for h in hooks:
            exit_pipeline = getattr(h, "exit_pipeline", None)
            if exit_pipeline is not None:
                exit_pipeline(graph)
    return graph


class InvalidIR(Exception):
    """Raised by the Verify instrument so the manager can write a reproducer for the pass."""

    def __init__(self, error: CococError):
        super().__init__(str(error))
        self.error = error


def _failure(info: PassInfo, what: str, before: Graph | None, passes: list, where) -> CococError:
    msg = f"pass '{info.name}' ({info.index} of {info.total}) {what}"
    if before is None:
        return CococError(msg)
    rest = ",".join(format_pass(p) for p in passes[info.index - 1:])
    try:
        path = write_reproducer(before, info, rest, msg, Path(where))
    except Exception as e:  # noqa: BLE001 - the original failure matters more than this one
        return CococError(f"{msg} (no reproducer: {e})")
    return CococError(f"{msg}; reproducer: {path} (run: cococ opt {path} -p '{rest}')")


def write_reproducer(graph: Graph, info: PassInfo, rest: str, msg: str, folder: Path) -> Path:
    """The IR before the failing pass (weights in a side-car .npz) with the pipeline in its header."""
    from cococ.ir.printer import save_ir

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"cococ-reproducer-{info.name}.ir"
    save_ir(graph, path, weights="npz")
    body = path.read_text(encoding="utf-8")
    header = [f"// cococ reproducer: {' '.join(msg.splitlines())}",
              f"// full pipeline: {info.pipeline}",
              f"// RUN: cococ opt %s -p '{rest}'"]
    path.write_text("\n".join(header) + "\n" + body, encoding="utf-8")
    return path
