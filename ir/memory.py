"""A guard on the memory a graph needs, asked before allocating it (issue 18).

One typo in a prototxt (`input_dim: 100000`) makes a net whose random weights need 56.8 TiB;
numpy would try, and the machine would swap for minutes or the process die without a word.
Whatever allocates the params or the activations of a whole graph asks `check_memory` first:
over the limit is a CococError that says how much and where the limit comes from; over a
quarter of it is a warning, since such a run may still be what the user meant.

The limit is COCOC_MAX_MEMORY (bytes, or 512M, 16G, 1.5T), which the CLI's `--max-memory` sets
for one command (and so for the worker processes it starts); default 16 GiB.
"""
from __future__ import annotations

import os
import re
import warnings
from contextlib import contextmanager

import numpy as np

from cococ.ir.core import CococError, Graph

LIMIT_ENV = "COCOC_MAX_MEMORY"
DEFAULT_LIMIT = 16 * 2**30
WARN_FRACTION = 0.25
UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def parse_memory(text: str) -> int:
    """'64G', '1.5T', '512M', '1048576' -> bytes (binary units; a trailing B or iB is allowed)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)(?:i?[bB])?\s*", str(text))
    if not m or float(m.group(1)) <= 0:
        raise CococError(f"bad memory size {text!r} (examples: 512M, 16G, 1.5T)")
    return int(float(m.group(1)) * UNITS[m.group(2).lower()])


def format_bytes(n: float) -> str:
    for unit in ("TiB", "GiB", "MiB", "KiB"):
        scale = UNITS[unit[0].lower()]
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} bytes"


def memory_limit() -> int:
    text = os.environ.get(LIMIT_ENV)
    if not text:
        return DEFAULT_LIMIT
    try:
        return parse_memory(text)
    except CococError as e:
        raise CococError(f"{LIMIT_ENV}: {e}") from None


@contextmanager
def limited_memory(text: str | None):
    """Set the limit to `text` (None: leave it) while the block runs, then put back the old one."""
    if text is None:
        yield
        return
    parse_memory(text)
    old = os.environ.get(LIMIT_ENV)
    os.environ[LIMIT_ENV] = text
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(LIMIT_ENV, None)
        else:
            os.environ[LIMIT_ENV] = old


def check_memory(nbytes: int, what: str) -> None:
    """Refuse `nbytes` over the limit, warn over WARN_FRACTION of it; `what` says what needs them."""
    limit = memory_limit()
    if nbytes > limit:
        raise CococError(f"{what} would need {format_bytes(nbytes)}; the limit is {format_bytes(limit)}, "
                         f"set by --max-memory or {LIMIT_ENV}")
    if nbytes > WARN_FRACTION * limit:
        warnings.warn(f"{what} needs {format_bytes(nbytes)} (the limit is {format_bytes(limit)})", stacklevel=3)


def param_bytes(graph: Graph, *, missing_only: bool = False) -> int:
    """Bytes of the graph's dense params (only those without data when `missing_only`)."""
    return sum(p.nbytes for layer in graph.layers for p in layer.params.values()
               if not (missing_only and p.has_data))


def activation_bytes(graph: Graph, batch: int | None = None) -> int:
    """Bytes of every typed value of the graph, an upper bound on what running it holds at once;
    with `batch`, the values' leading dimension (the graph's batch) is replaced by `batch`."""
    total = 0
    for v in graph.values():
        if v.type is None:
            continue
        size = v.type.size
        if batch is not None and v.type.rank and v.type.shape[0]:
            size = size // v.type.shape[0] * batch
        total += size * np.dtype(v.type.np_dtype).itemsize
    return total
