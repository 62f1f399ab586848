"""Shared by the benchmarks: write a named section of docs/performance.md and a JSON file.

Each benchmark owns one section, delimited by HTML comments, and replaces only that one, so
benchmarks can run in any order and the file keeps every table.
"""
from __future__ import annotations

import json
import platform
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PERF = ROOT / "docs" / "performance.md"
HEADER = "# Performance\n\nEvery table here is written by a script under `benchmarks/`; rerun it to refresh.\n"


def machine() -> str:
    import os
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def markdown_table(headers: list[str], rows: list[list]) -> str:
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def write_section(name: str, body: str, data: dict | None = None) -> None:
    """Replace (or append) section `name` of docs/performance.md; save `data` as JSON beside."""
    PERF.parent.mkdir(exist_ok=True)
    text = PERF.read_text() if PERF.exists() else HEADER
    start, end = f"<!-- section: {name} -->", f"<!-- end: {name} -->"
    block = f"{start}\n{body.strip()}\n\n_Machine: {machine()}._\n{end}"
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    PERF.write_text(text)
    if data is not None:
        out = ROOT / "docs" / "benchmarks"
        out.mkdir(exist_ok=True)
        (out / f"{re.sub(r'[^a-z0-9]+', '-', name.lower()).strip('-')}.json").write_text(json.dumps(data, indent=1))
