"""cococ.passes: graph-to-graph transformations run by name from pipeline strings.

    g = cococ.passes.run(g, "infer-shapes,canonicalize,dce")
    g = cococ.passes.run(g, "prune-filters{rates=[0.3,0.5]}", instruments=[PassTiming()])

Every pass, its options and defaults: docs/passes.md (`python -m cococ.passes.docs`).
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

from cococ.ir.core import Graph
from cococ.passes.instruments import DumpIR, PassInstrument, PassTiming, Verify
from cococ.passes.manager import all_passes, get_pass, register_pass
from cococ.passes.pipeline import parse_pipeline
from cococ.passes.runner import PassContext, PassInfo, run_pipeline


def run(graph: Graph, pipeline: str | Sequence[Any], *, instruments: Sequence[PassInstrument] = (),
        verify: bool = True, reproducer: str | None = ".", log: Callable[[str], None] | None = None) -> Graph:
    """Run a pipeline (`"a,b{opt=1},c"` or a list of pass objects) on `graph` and return the result.

    Passes that declare `in_place` change `graph`: pass `graph.clone()` to keep the original. The
    graph is verified after every pass unless verify=False; a pass that crashes or leaves invalid
    IR writes a reproducer into the folder `reproducer` (None: none) and raises a CococError.
    `log(line)` gets a long pass's progress (prune-for-target's retraining steps).
    """
    return run_pipeline(graph, pipeline, instruments=instruments, verify=verify, reproducer=reproducer, log=log)


__all__ = ["run", "register_pass", "get_pass", "all_passes", "parse_pipeline", "PassContext", "PassInfo",
           "PassInstrument", "DumpIR", "PassTiming", "Verify"]
