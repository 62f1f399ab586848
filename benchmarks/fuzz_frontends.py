"""Fuzz every input format the CLI reads: each mutated input must load or fail with a CococError.

Formats (FORMATS in benchmarks/fuzz_formats.py): prototxt, solver, ir, onnx, caffemodel,
safetensors, npz (weights), npy (`run --input`), artifact (a built arm-m4 folder). Seeds are
real files (the corpus, the shipped examples, files written from them); mutations are byte
flips, truncation, token and field edits, and giant dimensions. An outcome is one of
    ok      the input loaded (and, for small nets, took random weights: the size guard's path)
    clean   a CococError, what the CLI prints on one line
    crash   any other exception (a traceback for the user)
    hang    a case past --timeout seconds
    signal  the process died (SIGSEGV, SIGBUS, ...)
Each format runs in its own worker process, so a signal is counted and the campaign goes on
from the next case; case i of a format is mutated from `Random(f"{seed}/{format}/{i}")`, so any
case can be made again from its number (`--keep` saves the findings' inputs).

    python benchmarks/fuzz_frontends.py -n 10000 [--format prototxt] [--seed 0] [--report]

tests/frontend/test_fuzz_*.py run a small seeded sample of each format in-process (`campaign`).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: `benchmarks.*` importable
from benchmarks.fuzz_formats import FORMATS, Case  # noqa: E402
from cococ.ir.memory import limited_memory  # noqa: E402

OUTCOMES = ("ok", "clean", "crash", "hang", "signal")
MEMORY_LIMIT = "256M"  # the size guard's limit in the workers: a giant net is refused, not allocated


class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang()


def run_one(fmt: str, case: Case, work: Path, timeout: float) -> tuple[str, str]:
    """-> (outcome, detail) of one case, in this process."""
    from cococ.ir.core import CococError
    path = FORMATS[fmt].write(case, work)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            FORMATS[fmt].load(path, case)
        return "ok", ""
    except CococError as e:
        if "\n" in str(e):
            return "crash", f"multi-line CococError: {str(e)[:200]!r}"
        return "clean", str(e)[-80:]
    except Hang:
        return "hang", ""
    except BaseException as e:  # noqa: BLE001 - the point is to catch everything else
        if isinstance(e, KeyboardInterrupt):
            raise
        return "crash", "".join(traceback.format_exception(e)[-3:])
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def make_case(fmt: str, seeds: list, seed: int, i: int) -> Case:
    rng = random.Random(f"{seed}/{fmt}/{i}")
    s = seeds[rng.randrange(len(seeds))]
    return FORMATS[fmt].mutate(s, rng)


def campaign(fmt: str, n: int, seed: int = 0, timeout: float = 10.0, start: int = 0, log=None,
             work: Path | None = None) -> Counter:
    """Run cases start..n-1 of one format in this process; -> Counter of outcomes. With `log` (a
    file), write `{"i", "outcome", "seed", "detail"}` per case and flush: the parent's progress.
    Files go to `work` (default: a temporary folder)."""
    signal.signal(signal.SIGALRM, _alarm)
    counts: Counter = Counter()
    with contextlib.ExitStack() as stack:
        stack.enter_context(limited_memory(MEMORY_LIMIT))
        if work is None:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=f"fuzz-{fmt}-")))
        work.mkdir(parents=True, exist_ok=True)
        seeds = FORMATS[fmt].seeds(work)
        parent = os.getppid()
        if log is not None:
            log.write(json.dumps({"i": start - 1, "outcome": "ready"}) + "\n")
            log.flush()
        for i in range(start, n):
            if log is not None and os.getppid() != parent:  # the campaign was stopped: so is its worker
                break
            case = make_case(fmt, seeds, seed, i)
            if log is not None:
                log.write(json.dumps({"i": i, "outcome": "start"}) + "\n")
                log.flush()
            outcome, detail = run_one(fmt, case, work, timeout)
            counts[outcome] += 1
            if log is not None:
                log.write(json.dumps({"i": i, "outcome": outcome, "seed": case.seed, "detail": detail}) + "\n")
                log.flush()
    return counts


# ---- the isolating parent ------------------------------------------------------------------------

def run_format(fmt: str, n: int, seed: int, timeout: float, keep: Path | None, budget: float = float("inf")) -> dict:
    """Cases 0..n-1 of one format in worker processes: a worker that dies (signal) or stops
    answering (a hang in C code) is counted at the case it was on and restarted after it.
    Past `budget` seconds the worker is stopped and the cases finished so far are the count."""
    counts: Counter = Counter()
    findings: list[dict] = []
    t0 = time.perf_counter()
    start = 0
    with tempfile.TemporaryDirectory(prefix="fuzz-log-") as tmp:
        while start < n and time.perf_counter() - t0 < budget:
            log_path = Path(tmp) / f"{fmt}-{start}.jsonl"
            cmd = [sys.executable, __file__, "--worker", fmt, "-n", str(n), "--seed", str(seed),
                   "--timeout", str(timeout), "--start", str(start), "--log", str(log_path),
                   "--work", str(Path(tmp) / f"{fmt}-{start}")]
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            current, last, ready = start, time.monotonic(), False
            lines_read = 0
            while True:
                done = proc.poll() is not None
                lines = log_path.read_text().splitlines() if log_path.exists() else []
                for line in lines[lines_read:]:
                    try:
                        rec = json.loads(line)
                    except ValueError:  # a line being written
                        break
                    lines_read += 1
                    last = time.monotonic()
                    if rec["outcome"] == "ready":
                        ready = True
                    elif rec["outcome"] == "start":
                        current = rec["i"]
                    else:
                        counts[rec["outcome"]] += 1
                        current = rec["i"] + 1
                        if rec["outcome"] in ("crash", "hang"):
                            findings.append(rec)
                        if (rec["i"] + 1) % 1000 == 0:
                            print(f"  {fmt}: {rec['i'] + 1}/{n} {dict(counts)}", file=sys.stderr, flush=True)
                if done:
                    break
                if time.perf_counter() - t0 > budget:
                    proc.kill()
                    proc.wait()
                    break
                # a worker stuck past the in-process timer (C code that never returns) is killed
                if time.monotonic() - last > (timeout * 3 + 5 if ready else 600):
                    proc.kill()
                    proc.wait()
                    counts["hang"] += 1
                    findings.append({"i": current, "outcome": "hang", "detail": "killed: no answer"})
                    current += 1
                    break
                time.sleep(0.05)
            err = proc.stderr.read() if proc.stderr else ""
            if proc.returncode not in (0, None) and current < n and proc.returncode != -signal.SIGKILL:
                if proc.returncode < 0:
                    counts["signal"] += 1
                    findings.append({"i": current, "outcome": "signal",
                                     "detail": signal.Signals(-proc.returncode).name})
                    current += 1
                else:
                    raise SystemExit(f"{fmt} worker failed (exit {proc.returncode}):\n{err[-2000:]}")
            start = current
    if keep is not None and findings:
        _keep(fmt, seed, findings, keep)
    secs = time.perf_counter() - t0
    return {"format": fmt, "inputs": sum(counts.values()), "seed": seed, "seconds": round(secs, 1),
            **{k: counts.get(k, 0) for k in OUTCOMES}, "findings": findings[:20]}


def _keep(fmt: str, seed: int, findings: list[dict], keep: Path) -> None:
    """Write each finding's input again (cases are reproducible from their number)."""
    keep.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        seeds = FORMATS[fmt].seeds(Path(tmp))
        for f in findings:
            case = make_case(fmt, seeds, seed, f["i"])
            out = keep / f"{fmt}-{f['outcome']}-{f['i']}"
            out.mkdir(exist_ok=True)
            FORMATS[fmt].write(case, out)
            print(f"  kept {out} ({f.get('detail', '')[:100]})", file=sys.stderr)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=10000, help="mutated inputs per format")
    ap.add_argument("--format", action="append", choices=sorted(FORMATS), help="default: all")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds before a case counts as a hang")
    ap.add_argument("--keep", type=Path, help="save the inputs of crashes, hangs and signals here")
    ap.add_argument("--seconds", type=float, default=float("inf"),
                    help="stop the whole campaign after this long, each format taking an equal share of the "
                         "time left (cheap formats first, so what they leave goes to the costly ones)")
    ap.add_argument("--report", action="store_true", help="write the fuzz section of docs/performance.md")
    ap.add_argument("--worker", choices=sorted(FORMATS), help=argparse.SUPPRESS)
    ap.add_argument("--start", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--log", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        with open(args.log, "w") as log:
            campaign(args.worker, args.n, args.seed, args.timeout, args.start, log, args.work)
        return 0
    results = []
    formats = args.format or list(FORMATS)
    deadline = time.monotonic() + args.seconds
    for k, fmt in enumerate(formats):
        r = run_format(fmt, args.n, args.seed, args.timeout, args.keep,
                       (deadline - time.monotonic()) / (len(formats) - k))
        results.append(r)
        print(f"{fmt:12s} {r['inputs']} inputs in {r['seconds']} s: ok {r['ok']}, clean error {r['clean']}, "
              f"crash {r['crash']}, hang {r['hang']}, signal {r['signal']}", flush=True)
        for f in r["findings"]:
            print(f"  case {f['i']} ({f.get('seed', '?')}): {f['outcome']}: {f.get('detail', '')}", flush=True)
    if args.report:
        report(results, args)
    return 1 if any(r["crash"] or r["hang"] or r["signal"] for r in results) else 0


def report(results: list[dict], args) -> None:
    """Write the fuzz section of docs/performance.md. The formats run now replace their rows of
    the last report (docs/benchmarks/frontend-fuzzing.json), so one format can be rerun alone."""
    from benchmarks.report import ROOT as DOCS_ROOT, markdown_table, write_section
    last = DOCS_ROOT / "docs" / "benchmarks" / "frontend-fuzzing.json"
    merged = {r["format"]: r for r in (json.loads(last.read_text())["results"] if last.exists() else [])
              if r.get("format") in FORMATS}
    merged.update({r["format"]: {**r, "command": _command(args)} for r in results})
    results = [merged[f] for f in FORMATS if f in merged]
    rows = [[r["format"], r["inputs"], r["ok"], r["clean"], r["crash"], r["hang"], r["signal"], r["seconds"]]
            for r in results]
    commands = sorted({r["command"] for r in results if r.get("command")})
    write_section("Frontend fuzzing", REPORT_HEAD + markdown_table(
        ["format", "inputs", "ok", "clean error", "traceback", "hang", "signal", "seconds"], rows)
        + "\n\nRun by (a format rerun alone replaces its row): " + "; ".join(f"`{c}`" for c in commands) + ".",
        {"results": results})


def _command(args) -> str:
    cut = f" --seconds {args.seconds:g}" if args.seconds < float("inf") else ""
    only = "".join(f" --format {f}" for f in args.format or ())
    return (f"python benchmarks/fuzz_frontends.py -n {args.n} --seed {args.seed} --timeout {args.timeout:g}"
            f"{cut}{only} --report")


REPORT_HEAD = """## Frontend fuzzing

Mutated real inputs of every format the CLI reads (`benchmarks/fuzz_frontends.py`; the formats,
seeds and mutations are in `benchmarks/fuzz_formats.py`): each must load (`ok`) or give a
one-line CococError (`clean error`). A traceback, a hang (past the per-case time limit) or a
signal is a finding. Each format runs in its own worker process with the size guard's limit at
256 MiB (`COCOC_MAX_MEMORY`), so giant dimensions are refused up front rather than allocated.
A format with fewer inputs than asked for was stopped by `--seconds`.

"""


if __name__ == "__main__":
    sys.exit(main())
