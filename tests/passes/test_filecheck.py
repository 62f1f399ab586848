"""FileCheck-style pass tests: text in, text out, as LLVM's lit/FileCheck and xDSL do.

Each tests/passes/filecheck/*.ir holds its input IR and, in `//` comments:
    // RUN: cococ opt %s -p 'canonicalize'        (`not cococ ...`: must fail; checks read stderr)
    // CHECK: text        next line (at or after the last match) containing text
    // CHECK-NEXT: text   the line right after the last match
    // CHECK-SAME: text   the last matched line, after the previous match on it
    // CHECK-NOT: text    absent between the last match and the next one (or the end)
    // NUMERICS: atol=1e-3 | skip why   the outputs check below: its tolerance, or why it cannot hold
    // XFAIL: why         a known bug: the file must fail (strict), until the bug is fixed
Text matches literally, any run of spaces matches any run of spaces, and `{{regex}}` is a regex.
The command runs in-process (cococ.cli.main), much faster than a subprocess. A successful
output must also read back and print the same (the round-trip check), and the pipeline must
keep the outputs of the reference interpreter (within 1e-5, or NUMERICS's atol) when the file
has weights; outputs a pass adds after the graph's own (teacher-student's students) are not
compared. Tests of pruning passes keep that check by pruning only zero filters, weights or groups.
"""
from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

import numpy as np
import pytest

from cococ.cli import main

HERE = Path(__file__).parent / "filecheck"
FILES = sorted(HERE.glob("*.ir"))
DIRECTIVE = re.compile(r"//\s*(RUN|CHECK|CHECK-NEXT|CHECK-SAME|CHECK-NOT|NUMERICS|XFAIL):(.*)$")
SINGLE = ("RUN", "NUMERICS", "XFAIL")


def directives(path: Path) -> tuple[str, list[tuple[int, str, str]], dict[str, str]]:
    """(RUN, [(line, CHECK kind, text)], {NUMERICS / XFAIL: text})."""
    single: dict[str, str] = {}
    checks = []
    for no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        m = DIRECTIVE.search(line)
        if not m:
            continue
        kind, text = m.group(1), m.group(2).strip()
        if kind in SINGLE:
            assert kind not in single, f"{path.name}:{no}: one {kind} line per file"
            single[kind] = text
        else:
            checks.append((no, kind, text))
    run = single.pop("RUN", None)
    assert run, f"{path.name}: no RUN line"
    assert checks, f"{path.name}: no CHECK lines"
    return run, checks, single


def cases() -> list:
    """The files as pytest params, strict xfail where the file says XFAIL (a known bug)."""
    out = []
    for p in FILES:
        xfail = directives(p)[2].get("XFAIL")
        marks = [pytest.mark.xfail(strict=True, reason=xfail)] if xfail else []
        out.append(pytest.param(p, marks=marks, id=p.stem))
    return out


def pattern(text: str) -> re.Pattern:
    parts = re.split(r"\{\{(.*?)\}\}", text)
    rx = "".join(p if i % 2 else "".join(r"\s+" if t.isspace() else re.escape(t) for t in re.split(r"(\s+)", p) if t)
                 for i, p in enumerate(parts))
    return re.compile(rx)


def run_command(run: str, path: Path, scratch: Path) -> tuple[int, str, str]:
    """Run the RUN line; a crashing pass leaves its reproducer in `scratch`, not the checkout."""
    argv = [str(path) if a == "%s" else a for a in shlex.split(run)]
    expect_fail = argv[0] == "not"
    if expect_fail:
        argv = argv[1:]
    assert argv[0] == "cococ", f"RUN must call cococ, got {argv[0]!r}"
    if argv[1] == "opt" and "--reproducer-dir" not in argv:
        argv += ["--reproducer-dir", str(scratch)]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(argv[1:])
        except SystemExit as e:
            rc = e.code if isinstance(e.code, int) else 1
    if expect_fail:
        assert rc != 0, f"expected failure, got success:\n{out.getvalue()}"
        return rc, err.getvalue(), out.getvalue()
    assert rc == 0, f"command failed ({rc}):\n{err.getvalue()}"
    return rc, out.getvalue(), err.getvalue()


def filecheck(output: str, checks: list[tuple[int, str, str]], name: str) -> None:
    lines = output.splitlines()
    pos, last, col = 0, -1, 0   # next line to search, last matched line, end of the match on it
    nots: list[tuple[int, str]] = []

    def fail(no: int, kind: str, text: str, why: str) -> None:
        pytest.fail(f"{name}:{no}: {kind}: {text}\n  {why}\n--- output ---\n{output}", pytrace=False)

    def check_nots(upto: int) -> None:
        for no, text in nots:
            rx = pattern(text)
            for i in range(max(last, 0), upto):
                start = col if i == last else 0
                if rx.search(lines[i], start):
                    fail(no, "CHECK-NOT", text, f"found on output line {i + 1}: {lines[i]!r}")
        nots.clear()

    for no, kind, text in checks:
        rx = pattern(text)
        if kind == "CHECK-NOT":
            nots.append((no, text))
            continue
        if kind == "CHECK":
            found = next(((i, m) for i in range(pos, len(lines)) if (m := rx.search(lines[i]))), None)
            if found is None:
                fail(no, kind, text, f"no match from output line {pos + 1} on")
        elif kind == "CHECK-NEXT":
            i = last + 1
            m = rx.search(lines[i]) if 0 <= last and i < len(lines) else None
            if m is None:
                fail(no, kind, text, f"output line {i + 1} is {lines[i] if i < len(lines) else '<end>'!r}")
            found = (i, m)
        else:  # CHECK-SAME
            m = rx.search(lines[last], col) if last >= 0 else None
            if m is None:
                fail(no, kind, text, f"not on output line {last + 1} after column {col + 1}")
            found = (last, m)
        i, m = found
        check_nots(i + 1)
        last, col, pos = i, m.end(), i + 1
    check_nots(len(lines))


@pytest.mark.parametrize("path", cases())
def test_filecheck(path, tmp_path):
    run, checks, _ = directives(path)
    rc, output, _ = run_command(run, path, tmp_path)
    filecheck(output, checks, path.name)
    if not run.startswith("not ") and "-o" not in shlex.split(run):
        from cococ.ir.parser import parse_ir
        from cococ.ir.printer import print_graph
        inline = "--inline-weights" in run
        assert print_graph(parse_ir(output), "inline" if inline else "hash") == output, "output does not round-trip"


@pytest.mark.parametrize("path", cases())
def test_filecheck_numerics(path):
    """The RUN's pipeline keeps the interpreter's outputs on random inputs (files with weights)."""
    import cococ
    from cococ.ir.interpreter import run as interpret
    from cococ.passes import run as run_passes

    run, _, single = directives(path)
    argv = shlex.split(run)
    if argv[0] == "not":
        pytest.skip("an error test")
    numerics = single.get("NUMERICS", "atol=1e-5")
    if numerics.startswith("skip"):
        pytest.skip(numerics)
    m = re.fullmatch(r"atol=(\S+)", numerics)
    assert m, f"{path.name}: NUMERICS must be 'atol=X' or 'skip why', got {numerics!r}"
    atol = float(m.group(1))
    pipeline = argv[argv.index("-p") + 1] if "-p" in argv else ""
    graph = cococ.load(path)
    if not all(p.has_data for l in graph.layers for p in l.params.values()):
        pytest.skip("no weights in the file")
    rng = np.random.default_rng(0)
    feeds = [rng.standard_normal(v.type.shape).astype(v.type.np_dtype) for v in graph.inputs]
    before = interpret(graph, feeds)
    before = [before[v.name] for v in graph.outputs]
    after_graph = run_passes(graph.clone(), pipeline, reproducer=None)
    after = interpret(after_graph, feeds)
    after = [after[v.name] for v in after_graph.outputs]
    assert len(after) >= len(before)
    for a, b in zip(after, before):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=atol)


def test_filecheck_runner_catches_mismatches():
    out = "a b\nc d\ne\n"
    filecheck(out, [(1, "CHECK", "a"), (2, "CHECK-SAME", "b"), (3, "CHECK-NEXT", "c  d"), (4, "CHECK-NOT", "zzz"),
                    (5, "CHECK", "{{^e$}}")], "t")
    for checks in ([(1, "CHECK", "x")], [(1, "CHECK", "a"), (2, "CHECK-NEXT", "e")],
                   [(1, "CHECK", "a"), (2, "CHECK-NOT", "c"), (3, "CHECK", "e")],
                   [(1, "CHECK", "c"), (2, "CHECK", "a")], [(1, "CHECK", "b"), (2, "CHECK-SAME", "a")]):
        with pytest.raises(pytest.fail.Exception):
            filecheck(out, checks, "t")


def test_every_pass_has_a_filecheck_file():
    """Each registered pass is run by at least one successful RUN line here."""
    from cococ.passes.manager import PASS_MODULES
    from cococ.passes.pipeline import parse_pipeline

    covered = set()
    for path in FILES:
        argv = shlex.split(directives(path)[0])
        if argv[0] != "not" and "-p" in argv:
            covered |= {p.name for p in parse_pipeline(argv[argv.index("-p") + 1])}
    assert set(PASS_MODULES) <= covered, f"passes without a FileCheck test: {sorted(set(PASS_MODULES) - covered)}"
