"""Running a pipeline: passes in order, instruments around each, reproducers when one fails.

Pipelines are strings (cococ.passes.pipeline), because the same string goes into
reproducers, dumps and reports. Dumping, timing and verification are instruments
(cococ.passes.instruments) hooked before/after each pass, not code inside passes.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from cococ.ir.core import CococError, Graph
from cococ.ir.printer import save_ir
from cococ.passes.instruments import InvalidIR, Verify
from cococ.passes.pipeline import format_pass, parse_pipeline


@dataclass
class PassContext:
    """What a pass may know about the run it is part of; `notes` is for passes to report in,
    `log` for a long pass (prune-for-target) to say how it is getting on."""
    pipeline: str = ""
    index: int = 0          # 1-based position of the running pass
    total: int = 0
    notes: dict[str, Any] = field(default_factory=dict)
    log: Callable[[str], None] | None = None


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
                 verify: bool = True, reproducer: str | Path | None = ".",
                 log: Callable[[str], None] | None = None) -> Graph:
    """Run the passes of `pipeline` on `graph` (which those with `in_place` change) and return the result.

    `instruments` get run_before_pass/run_after_pass around every pass (and exit_pipeline at the
    end); with `verify`, the graph is verified after every pass. When a pass crashes or leaves
    invalid IR, a reproducer (the IR before that pass, with weights, and the pipeline) is written
    to `reproducer` (a folder; None writes none) and named in the CococError. `log` reaches the
    passes as `ctx.log`.
    """
    passes = parse_pipeline(pipeline) if isinstance(pipeline, str) else list(pipeline)
    text = ",".join(format_pass(p) for p in passes)
    hooks = list(instruments) + ([Verify()] if verify else [])
    ctx = PassContext(pipeline=text, total=len(passes), log=log)
    try:
        for i, p in enumerate(passes, 1):
            info = PassInfo(p, i, len(passes), text)
            # a pass that leaves its input alone needs no copy for the reproducer
            before = None if reproducer is None else graph.clone() if getattr(p, "in_place", True) else graph
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
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"cococ-reproducer-{info.name}.ir"
    save_ir(graph, path, weights="npz")
    body = path.read_text(encoding="utf-8")
    header = [f"// cococ reproducer: {' '.join(msg.splitlines())}",
              f"// full pipeline: {info.pipeline}",
              f"// RUN: cococ opt %s -p '{rest}'"]
    path.write_text("\n".join(header) + "\n" + body, encoding="utf-8")
    return path
