"""Fuzz the model frontends with mutated corpus files; every input must load or fail cleanly.

"Cleanly" means a CococError (what the CLI prints on one line, exit 1): any other exception is
a crash, and an input that takes longer than --timeout seconds is a hang. Each frontend is one
entry of FRONTENDS: a function listing its seed files, a mutator (bytes, rng) -> bytes, and a
loader taking a path. Add a frontend (e.g. ONNX) by adding an entry; the campaign, the counts
and the report are shared.

    python benchmarks/fuzz_frontends.py -n 10000 [--frontend prototxt] [--seed 0] [--report]

The small-scale test (tests/frontend/test_fuzz_prototxt.py) drives the same mutators with
hypothesis.
"""
from __future__ import annotations

import argparse
import random
import re
import signal
import sys
import tempfile
import time
import traceback
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "../shared/corpus"

# ---- mutators ------------------------------------------------------------------------------------

_TOKEN = re.compile(rb'"(?:[^"\\\n]|\\.)*"|[A-Za-z_][A-Za-z0-9_]*|-?\d+\.?\d*(?:[eE][+-]?\d+)?|\S')
_NUMBERS = [b"0", b"-1", b"1", b"2147483648", b"99999999999999999999", b"1e308", b"-inf", b"nan", b"0x7fffffff",
            b"3.5", b"-0"]
_NAMES = [b"layer", b"layers", b"module", b"top", b"bottom", b"type", b"name", b"include", b"phase", b"input",
          b"input_dim", b"{", b"}", b":", b'"Convolution"', b'"Eltwise"', b'"Slice"', b'"Input"', b'""', b"TRAIN"]


def _tokens(data: bytes) -> list[tuple[int, int]]:
    return [(m.start(), m.end()) for m in _TOKEN.finditer(data)]


def mutate_text(data: bytes, rng: random.Random, rounds: int | None = None) -> bytes:
    """Byte flips, truncation, token deletion / duplication / replacement, number swaps."""
    for _ in range(rounds or rng.randint(1, 3)):
        kind = rng.choice(("flip", "truncate", "delete", "duplicate", "number", "keyword", "swap"))
        if not data:
            return data
        if kind == "flip":
            i = rng.randrange(len(data))
            data = data[:i] + bytes([rng.randrange(256)]) + data[i + 1:]
        elif kind == "truncate":
            data = data[:rng.randrange(len(data))]
        else:
            toks = _tokens(data)
            if not toks:
                continue
            s, e = rng.choice(toks)
            if kind == "delete":
                data = data[:s] + data[e:]
            elif kind == "duplicate":
                data = data[:e] + b" " + data[s:e] + data[e:]
            elif kind == "number":
                nums = [t for t in toks if re.fullmatch(rb"-?\d+\.?\d*(?:[eE][+-]?\d+)?", data[t[0]:t[1]])]
                if nums:
                    s, e = rng.choice(nums)
                data = data[:s] + rng.choice(_NUMBERS) + data[e:]
            elif kind == "keyword":
                data = data[:s] + rng.choice(_NAMES) + data[e:]
            else:  # swap with another token of the file
                s2, e2 = rng.choice(toks)
                data = data[:s] + data[s2:e2] + data[e:]
    return data


# ---- frontends -----------------------------------------------------------------------------------

@dataclass
class Frontend:
    name: str
    seeds: Callable[[], list[Path]]
    mutate: Callable[[bytes, random.Random], bytes]
    load: Callable[[Path], object]
    suffix: str


def _prototxt_seeds() -> list[Path]:
    d = CORPUS / "prototxt"
    return sorted(p for p in d.rglob("*.prototxt") if "solver" not in p.name)


def _load_prototxt(path: Path):
    from cococ.frontend.prototxt import load_prototxt
    return load_prototxt(path)


def _load_solver(path: Path):
    from cococ.frontend.solver import load_solver
    return load_solver(path)


FRONTENDS: dict[str, Frontend] = {
    "prototxt": Frontend("prototxt", _prototxt_seeds, mutate_text, _load_prototxt, ".prototxt"),
    "solver": Frontend("solver", lambda: sorted((CORPUS / "prototxt").rglob("*solver*.prototxt")), mutate_text,
                       _load_solver, ".prototxt"),
}


# ---- campaign ------------------------------------------------------------------------------------

class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang()


def run_one(fe: Frontend, data: bytes, path: Path, timeout: float) -> tuple[str, str]:
    """-> (outcome, detail): outcome is ok | clean | crash | hang."""
    from cococ.ir.core import CococError
    path.write_bytes(data)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        fe.load(path)
        return "ok", ""
    except CococError as e:
        return "clean", str(e).split(": ")[-1][:60]
    except Hang:
        return "hang", ""
    except BaseException as e:  # noqa: BLE001 - the point is to catch everything else
        if isinstance(e, KeyboardInterrupt):
            raise
        return "crash", "".join(traceback.format_exception(e)[-3:])
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def campaign(fe: Frontend, n: int, seed: int, timeout: float, keep: Path | None) -> dict:
    seeds = fe.seeds()
    if not seeds:
        raise SystemExit(f"no seed files for {fe.name} under {CORPUS}")
    originals = [p.read_bytes() for p in seeds]
    rng = random.Random(seed)
    counts: Counter = Counter()
    crashes: list[tuple[str, str]] = []
    signal.signal(signal.SIGALRM, _alarm)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"fuzz{fe.suffix}"
        for i in range(n):
            k = rng.randrange(len(seeds))
            data = fe.mutate(originals[k], rng)
            outcome, detail = run_one(fe, data, path, timeout)
            counts[outcome] += 1
            if (i + 1) % 1000 == 0:
                print(f"  {fe.name}: {i + 1}/{n} {dict(counts)}", file=sys.stderr, flush=True)
            if outcome in ("crash", "hang"):
                crashes.append((seeds[k].name, detail))
                if keep is not None:
                    keep.mkdir(parents=True, exist_ok=True)
                    (keep / f"{fe.name}-{outcome}-{i}{fe.suffix}").write_bytes(data)
    secs = time.perf_counter() - t0
    return {"frontend": fe.name, "inputs": n, "seed": seed, "seconds": round(secs, 1),
            "per_second": round(n / secs, 1), **{k: counts.get(k, 0) for k in ("ok", "clean", "crash", "hang")},
            "crash_samples": crashes[:10]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=10000, help="mutated inputs per frontend")
    ap.add_argument("--frontend", action="append", choices=sorted(FRONTENDS), help="default: all")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds before an input counts as a hang")
    ap.add_argument("--keep", type=Path, help="save crashing / hanging inputs here")
    ap.add_argument("--report", action="store_true", help="write a section of docs/performance.md")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    results = [campaign(FRONTENDS[f], args.n, args.seed, args.timeout, args.keep)
               for f in (args.frontend or sorted(FRONTENDS))]
    for r in results:
        print(f"{r['frontend']:10s} {r['inputs']} inputs in {r['seconds']} s ({r['per_second']}/s): "
              f"ok {r['ok']}, clean error {r['clean']}, crash {r['crash']}, hang {r['hang']}")
        for name, detail in r["crash_samples"]:
            print(f"  {name}: {detail}")
    if args.report:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script
        from benchmarks.report import markdown_table, write_section
        rows = [[r["frontend"], r["inputs"], r["ok"], r["clean"], r["crash"], r["hang"], r["seconds"]] for r in results]
        write_section("Frontend fuzzing", "## Frontend fuzzing\n\n" + markdown_table(
            ["frontend", "inputs", "ok", "clean error", "crash", "hang", "seconds"], rows), {"results": results})
    return 1 if any(r["crash"] or r["hang"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
