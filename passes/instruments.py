"""Pass instruments: code that watches a pipeline run, kept out of the passes themselves.

As TVM's PassInstrument and MLIR's pass instrumentation: the manager calls
`run_before_pass(graph, info)` and `run_after_pass(graph, info)` around every pass and
`exit_pipeline(graph)` once at the end (also after a failure). `info` is a
cococ.passes.runner.PassInfo (name, spec, index, total, pipeline, seconds in apply()).
A library user adds their own by subclassing PassInstrument:

    class CountLayers(PassInstrument):
        def run_after_pass(self, graph, info):
            print(info.name, len(graph.layers))

    cococ.passes.run(g, "canonicalize,dce", instruments=[CountLayers()])
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import IO

from rich.console import Console
from rich.table import Table

from cococ.ir.core import CococError, Graph
from cococ.ir.printer import print_graph
from cococ.ir.verify import verify
from cococ.passes.manager import get_pass


class PassInstrument:
    """Base class: every hook does nothing."""

    def run_before_pass(self, graph: Graph, info) -> None:
        pass

    def run_after_pass(self, graph: Graph, info) -> None:
        pass

    def exit_pipeline(self, graph: Graph) -> None:
        pass


class InvalidIR(Exception):
    """Raised by the Verify instrument so the runner can write a reproducer for the pass."""

    def __init__(self, error: CococError):
        super().__init__(str(error))
        self.error = error


class Verify(PassInstrument):
    """Verify the graph after every pass (the manager adds it unless verify=False)."""

    def __init__(self):
        self.seconds = 0.0

    def run_after_pass(self, graph, info):
        start = time.perf_counter()
        try:
            verify(graph)
        except CococError as e:
            raise InvalidIR(e) from None
        finally:
            self.seconds += time.perf_counter() - start


DUMP_MODES = ("after-all", "before-all", "after-change", "before:NAME", "after:NAME")


class DumpIR(PassInstrument):
    """Print the IR around passes, to a stream (stderr) or one numbered file per dump in a folder.

    `specs` (one string, comma-separated, or a list): after-all, before-all, after-change (only
    when the printed IR differs from before the pass, as MLIR's print-ir-after-change),
    before:NAME, after:NAME. Files are named `001_after_canonicalize.ir` by the pass's position.
    """

    def __init__(self, specs: str | list[str] = "after-all", directory: str | Path | None = None,
                 stream: IO[str] | None = None):
        if isinstance(specs, str):
            specs = [s for s in specs.split(",") if s.strip()]
        self.before: set[str] = set()   # pass names, or "*" for every pass
        self.after: set[str] = set()
        self.after_change = False
        for spec in specs:
            spec = spec.strip()
            if spec == "after-all":
                self.after.add("*")
            elif spec == "before-all":
                self.before.add("*")
            elif spec == "after-change":
                self.after_change = True
            elif spec.startswith(("before:", "after:")):
                when, name = spec.split(":", 1)
                try:
                    get_pass(name)  # an unknown pass name is an error, not a silent no-dump
                except CococError as e:
                    raise CococError(f"IR dump mode '{spec}': {e}") from None
                (self.before if when == "before" else self.after).add(name)
            else:
                raise CococError(f"unknown IR dump mode '{spec}' (modes: {', '.join(DUMP_MODES)})")
        self.directory = None if directory is None else Path(directory)
        self.stream = stream
        self.files: list[Path] = []
        self._text_before: str | None = None

    def _wants(self, names: set[str], info) -> bool:
        return "*" in names or info.name in names

    def run_before_pass(self, graph, info):
        self._text_before = print_graph(graph) if self.after_change else None
        if self._wants(self.before, info):
            self._dump(graph, "before", info)

    def run_after_pass(self, graph, info):
        if self._wants(self.after, info):
            self._dump(graph, "after", info)
        elif self.after_change:
            text = print_graph(graph)
            if text != self._text_before:
                self._dump(graph, "after", info, text)

    def _dump(self, graph, when: str, info, text: str | None = None) -> None:
        text = print_graph(graph) if text is None else text
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
            path = self.directory / f"{info.index:03d}_{when}_{info.name}.ir"
            path.write_text(f"// IR {when} {info.spec} ({info.index} of {info.total}) in: {info.pipeline}\n"
                            + text, encoding="utf-8")
            self.files.append(path)
            return
        out = self.stream or sys.stderr
        out.write(f"// ----- IR {when} {info.spec} ({info.index} of {info.total}) ----- //\n{text}\n")
        out.flush()


class PassTiming(PassInstrument):
    """Time every pass's apply(); print a table at the end (to stderr) unless show=False."""

    def __init__(self, show: bool = True, stream: IO[str] | None = None):
        self.rows: list[tuple[str, float]] = []   # (pass spec, seconds)
        self.show, self.stream = show, stream

    def run_after_pass(self, graph, info):
        self.rows.append((info.spec, info.seconds))

    def exit_pipeline(self, graph):
        if self.show and self.rows:
            self.print_table()

    def print_table(self) -> None:
        total = sum(s for _, s in self.rows) or 1e-12
        table = Table(title="pass timing", title_justify="left")
        table.add_column("#", justify="right")
        table.add_column("pass")
        table.add_column("ms", justify="right")
        table.add_column("%", justify="right")
        for i, (spec, s) in enumerate(self.rows, 1):
            table.add_row(str(i), spec, f"{s * 1e3:.2f}", f"{100 * s / total:.1f}")
        table.add_row("", "total", f"{total * 1e3:.2f}", "100.0", style="bold")
        Console(file=self.stream or sys.stderr, width=120).print(table)
