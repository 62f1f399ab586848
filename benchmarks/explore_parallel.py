"""Both cores in the composability search: pre-training with one teacher forward per batch, groups
in parallel processes, and candidates in parallel workers (issue 16 item 3).

Pre-training: `cococ blocks` on the example ResNet (examples/resnet, trained weights, `digits`),
the same subspace, blocks and steps three ways — one run per group (the teacher's forward
repeated per group, as before), one run for all groups (one teacher forward per batch: the
default), and that split over two processes (`--workers 2`). The stores are compared: the blocks
must be identical. Search: `cococ prune --no-comp --baseline --no-early-stop` with an unreachable
threshold (every candidate is fine-tuned), `--workers 1` vs `--workers 2`.

Each configuration runs in its own process, interleaved over `--rounds`; wall time and the child's
CPU time (user + system) are printed with the load average and the CPU affinity, because the
machine is shared: CPU time is the fairer measure of work, wall time of what a user waits.

    python benchmarks/explore_parallel.py [--quick] [--rounds 1] [--pretrain-steps 50]
"""
from __future__ import annotations

import argparse
import hashlib
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from report import markdown_table, write_section  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NET = ROOT / "examples" / "resnet" / "resnet.prototxt"
WEIGHTS = ROOT / "examples" / "resnet" / "resnet.safetensors"
SOLVER = ROOT / "examples" / "resnet" / "resnet_solver.prototxt"
COCOC = [sys.executable, "-m", "cococ.cli"]


def load() -> str:
    return " / ".join(f"{x:.1f}" for x in os.getloadavg())


def timed(cmd: list[str]) -> dict:
    """Run `cmd` in its own process: wall and CPU seconds, the load before and after."""
    before, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    la = load()
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode not in (0, 2):
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall": wall, "cpu": cpu, "load before": la, "load after": load(), "stdout": out.stdout}


def store_digest(d: Path) -> str:
    """The blocks' arrays (not the files' metadata, which holds timings-free but path-free fields)."""
    from safetensors.numpy import load_file
    h = hashlib.sha256()
    for p in sorted(d.glob("*.safetensors")):
        for k, a in sorted(load_file(str(p)).items()):
            h.update(p.name.encode() + k.encode() + a.tobytes())
    return h.hexdigest()[:16]


def pretrain_runs(args, tmp: Path) -> list[dict]:
    ways = [("one run per group (before)", ["--per-group"]), ("one teacher forward per batch", []),
            ("one teacher forward per batch, 2 processes", ["--workers", "2"])]
    rows = []
    for r in range(args.rounds):
        for name, extra in ways:
            store = tmp / f"store-{r}-{len(rows)}"
            res = timed(COCOC + ["blocks", str(NET), "--weights", str(WEIGHTS), "--sample", str(args.sample),
                                 "--pretrain", "--pretrain-steps", str(args.pretrain_steps), "--store", str(store),
                                 "--show", "1"] + extra)
            took = re.search(r"pre-training took ([0-9.]+) s", res["stdout"])
            res.update(way=name, round=r, digest=store_digest(store), pretrain=float(took.group(1)))
            print(f"pretrain [{name}] round {r}: {res['pretrain']:.1f} s pre-training in a "
                  f"{res['wall']:.1f} s wall, {res['cpu']:.1f} s CPU command, "
                  f"load {res['load before']} -> {res['load after']}, blocks {res['digest']}", flush=True)
            rows.append(res)
    return rows


def search_runs(args, tmp: Path) -> list[dict]:
    rows = []
    for r in range(args.rounds):
        for workers in (1, 2):
            out = tmp / f"search-{r}-{workers}"
            res = timed(COCOC + ["prune", str(NET), "--weights", str(WEIGHTS), "--sample", str(args.configs),
                                 "--objective", "min ModelSize constraint Accuracy >= 0.9999", "--solver", str(SOLVER),
                                 "--steps", str(args.steps), "--no-comp", "--baseline", "--no-early-stop",
                                 "--workers", str(workers), "--no-progress", "-o", str(out)])
            res.update(workers=workers, round=r)
            print(f"search --workers {workers} round {r}: {res['wall']:.1f} s wall, {res['cpu']:.1f} s CPU, "
                  f"load {res['load before']} -> {res['load after']}", flush=True)
            rows.append(res)
    return rows


def pretrain_cpu(args) -> list[dict]:
    """`pretrain` one run per group vs one teacher forward per batch, in this one process,
    interleaved: CPU seconds of the pre-training alone (no process start), robust to the load."""
    import torch

    import cococ
    from cococ.frontend.subspace import sample_subspace
    from cococ.passes.tuning_blocks import identify_tuning_blocks
    from cococ.runtime.blocks import BlockStore, pretrain, teacher_hash
    from cococ.runtime.data import load_data
    torch.set_num_threads(1)
    full = cococ.load(NET, weights=WEIGHTS)
    ds = load_data("digits", full.inputs[0].type.shape)
    plan = identify_tuning_blocks(sample_subspace(args.sample, len(full.modules), [0.3, 0.5, 0.7], seed=0))
    rows = []
    for r in range(args.rounds):
        for shared in (False, True):
            with tempfile.TemporaryDirectory() as d:
                la, c0, t0 = load(), time.process_time(), time.perf_counter()
                pretrain(full, plan, ds, None, BlockStore(d, teacher_hash(full)), steps=args.pretrain_steps,
                         progress=False, shared_teacher=shared)
                rows.append({"way": "one teacher forward per batch" if shared else "one run per group (before)",
                             "round": r, "cpu": time.process_time() - c0, "wall": time.perf_counter() - t0,
                             "load before": la, "load after": load(), "blocks": len(plan.blocks),
                             "groups": len(plan.groups)})
                print(f"pretrain CPU [{rows[-1]['way']}] round {r}: {rows[-1]['cpu']:.2f} s CPU, "
                      f"{rows[-1]['wall']:.1f} s wall, load {la} -> {load()}", flush=True)
    return rows


def write_pretrain_cpu(args, rows: list[dict]) -> None:
    per = [r["cpu"] for r in rows if r["way"].startswith("one run")]
    shared = [r["cpu"] for r in rows if not r["way"].startswith("one run")]
    body = (f"`python benchmarks/explore_parallel.py --pretrain-cpu --rounds {args.rounds} --pretrain-steps "
            f"{args.pretrain_steps}` — `runtime.blocks.pretrain` of the {rows[0]['blocks']} tuning blocks "
            f"({rows[0]['groups']} groups) of {args.sample} sampled configurations of the example ResNet (digits, "
            f"{args.pretrain_steps} steps), one torch thread, both ways in one process, interleaved: the process's "
            "CPU seconds, which the machine's load moves far less than wall seconds. The blocks are the same "
            "bit for bit (tests/runtime/test_blocks.py). One teacher forward per batch used "
            f"{sum(shared) / sum(per):.2f}× the CPU of one run per group.\n\n"
            + markdown_table(["pre-training", "round", "CPU s", "wall s", "load"],
                             [[r["way"], r["round"], r["cpu"], r["wall"], f"{r['load before']} → {r['load after']}"]
                              for r in rows]))
    print(body)
    if not args.no_write and not args.quick:
        write_section("Wootz search: pre-training CPU", body, {"rows": rows})


def early_stop_replay(args, tmp: Path) -> list[dict]:
    """Both searches once, exhaustively (every candidate trained to the end, tested every
    `--test-interval`), then each threshold's one-node search replayed with and without the
    early-stop rule (runtime/explore/earlystop.py; the same rule for both)."""
    import dataclasses

    import torch

    import cococ
    from cococ.commands.prune import full_accuracy
    from cococ.frontend.objective import parse_objective
    from cococ.frontend.solver import load_solver
    from cococ.frontend.subspace import sample_subspace
    from cococ.runtime.explore import explore, replay
    from cococ.runtime.explore.earlystop import EarlyStop
    torch.set_num_threads(1)
    full = cococ.load(NET, weights=WEIGHTS)
    solver = dataclasses.replace(load_solver(SOLVER), test_interval=args.test_interval)
    configs = sample_subspace(args.es_configs, len(full.modules), [0.3, 0.5, 0.7], seed=0)
    t0 = time.perf_counter()
    run = explore(full, configs, parse_objective("min ModelSize constraint Accuracy >= 2"), solver, "digits",
                  tmp / "es", steps=args.es_steps, pretrain_steps=args.es_steps, baseline=True, exhaustive=True,
                  progress=False, workers=2)
    wall = time.perf_counter() - t0
    acc = full_accuracy(full, "digits")
    rows = []
    for alpha in (-0.01, 0.0, 0.01, 0.02):
        obj = parse_objective(f"min ModelSize constraint Accuracy >= {acc - alpha!r}")
        row = {"alpha": alpha, "threshold": acc - alpha, "exhaustive wall": wall}
        for mode, s in (("base", run.base), ("comp", run.comp)):
            pre = s.pretrain_seconds
            plain = replay(obj, run.statics, s.evaluated, pre)
            stop = replay(obj, run.statics, s.evaluated, pre, stopper=EarlyStop(obj, args.es_steps))
            same = (plain["answer"] or {}).get("idx") == (stop["answer"] or {}).get("idx")
            row.update({f"{mode} configs": plain["configs"], f"{mode} s": plain["seconds"],
                        f"{mode} s with stop": stop["seconds"], f"{mode} stopped": stop["stopped"],
                        f"{mode} same answer": same})
        rows.append(row)
        print(f"early stop α {alpha:+.2f}: " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                                       for k, v in row.items()), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes (a test runs this)")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--sample", type=int, default=64, help="subspace size for the tuning blocks")
    ap.add_argument("--pretrain-steps", type=int, default=50)
    ap.add_argument("--configs", type=int, default=8, help="candidates of the search")
    ap.add_argument("--steps", type=int, default=40, help="fine-tuning steps per candidate")
    ap.add_argument("--no-write", action="store_true", help="print only; leave docs/performance.md")
    ap.add_argument("--early-stop", action="store_true",
                    help="only the early-stop part: an exhaustive search replayed with and without the rule")
    ap.add_argument("--search-only", action="store_true",
                    help="only the search part (--workers 1 vs 2), in its own section")
    ap.add_argument("--pretrain-cpu", action="store_true",
                    help="only the pre-training CPU part: both ways in this process, interleaved")
    ap.add_argument("--es-configs", type=int, default=16, help="candidates of the early-stop part")
    ap.add_argument("--es-steps", type=int, default=100, help="fine-tuning (and pre-training) steps there")
    ap.add_argument("--test-interval", type=int, default=20, help="the solver's test interval there")
    args = ap.parse_args()
    if args.quick:
        args.sample, args.pretrain_steps, args.configs, args.steps = 4, 2, 2, 2
    print(f"affinity {sorted(os.sched_getaffinity(0))}, load {load()}", flush=True)
    if args.pretrain_cpu:
        if args.quick:
            args.sample, args.pretrain_steps = 4, 2
        write_pretrain_cpu(args, pretrain_cpu(args))
        return
    if args.search_only:
        with tempfile.TemporaryDirectory(prefix="cococ-explore-parallel-") as d:
            rows = search_runs(args, Path(d))
        body = (f"`python benchmarks/explore_parallel.py --search-only --rounds {args.rounds} --configs "
                f"{args.configs} --steps {args.steps}` — a baseline search of the example ResNet (digits, "
                f"{args.configs} candidates × {args.steps} fine-tuning steps, every candidate trained), "
                "`--workers 1` vs `--workers 2`, each its own process, interleaved, nothing else of this "
                f"benchmark's session beside it; affinity {sorted(os.sched_getaffinity(0))}. The kernel shares the "
                "CPU between sessions (autogroup), not processes: on a machine kept busy by other sessions a "
                "second worker only gains the time a core would otherwise idle.\n\n"
                + markdown_table(["search", "round", "wall s", "CPU s", "load"],
                                 [[f"--workers {r['workers']}", r["round"], r["wall"], r["cpu"],
                                   f"{r['load before']} → {r['load after']}"] for r in rows]))
        print(body)
        if not args.no_write and not args.quick:
            write_section("Wootz search: --workers 1 vs 2", body,
                          {"search": [{k: v for k, v in r.items() if k != "stdout"} for r in rows]})
        return
    if args.early_stop:
        if args.quick:
            args.es_configs, args.es_steps, args.test_interval = 3, 4, 2
        with tempfile.TemporaryDirectory(prefix="cococ-explore-parallel-") as d:
            rows = early_stop_replay(args, Path(d))
        write_early_stop(args, rows)
        return
    with tempfile.TemporaryDirectory(prefix="cococ-explore-parallel-") as d:
        pre = pretrain_runs(args, Path(d))
        search = search_runs(args, Path(d))
    same = len({r["digest"] for r in pre}) == 1
    print(f"blocks identical in every way and round: {same}")
    if not same:
        raise SystemExit("the pre-trained blocks differ between the ways: a bug")
    body = [f"`python benchmarks/explore_parallel.py{' --quick' if args.quick else ''}` — pre-training "
            f"{args.sample} sampled configurations of the example ResNet (digits, {args.pretrain_steps} steps per "
            f"block), and a baseline search of {args.configs} candidates × {args.steps} fine-tuning steps. Each "
            f"row its own process, interleaved; affinity {sorted(os.sched_getaffinity(0))}; the machine was shared "
            "(load: 1/5/15-minute averages before → after). The blocks were identical in every way "
            "(sha256 of their arrays).", "",
            markdown_table(["pre-training", "round", "pre-training wall s", "command wall s", "command CPU s",
                            "load"],
                           [[r["way"], r["round"], r["pretrain"], r["wall"], r["cpu"],
                             f"{r['load before']} → {r['load after']}"] for r in pre]), "",
            "pre-training wall s: what `cococ blocks` prints (the pre-training, worker processes' start "
            "included); command: the whole process (loading torch and the data, the plan, the table).", "",
            markdown_table(["search", "round", "wall s", "CPU s", "load"],
                           [[f"--workers {r['workers']}", r["round"], r["wall"], r["cpu"],
                             f"{r['load before']} → {r['load after']}"] for r in search])]
    print("\n".join(body))
    if not args.no_write and not args.quick:
        write_section("Wootz search: one teacher forward, two cores", "\n".join(body),
                      {"pretrain": [{k: v for k, v in r.items() if k != "stdout"} for r in pre],
                       "search": [{k: v for k, v in r.items() if k != "stdout"} for r in search]})



def write_early_stop(args, rows: list[dict]) -> None:
    cols = ["α", "threshold", "base configs", "base s", "base s, early stop", "base stopped", "comp configs",
            "comp s", "comp s, early stop", "comp stopped", "same answers"]
    table = markdown_table(cols, [[f"{100 * r['alpha']:+g}%", r["threshold"], r["base configs"], r["base s"],
                                   r["base s with stop"], r["base stopped"], r["comp configs"], r["comp s"],
                                   r["comp s with stop"], r["comp stopped"],
                                   "yes" if r["base same answer"] and r["comp same answer"] else "NO"]
                                  for r in rows])
    body = (f"`python benchmarks/explore_parallel.py --early-stop` — {args.es_configs} configurations of the "
            f"example ResNet (rates 0.3/0.5/0.7, digits), both searches run once exhaustively ({args.es_steps} "
            f"fine-tuning and pre-training steps, a test every {args.test_interval}; "
            f"{rows[0]['exhaustive wall']:.0f} s wall with 2 workers, load {load()} at the end), then each "
            "threshold's one-node search replayed from the records without and with the early-stop rule "
            "(runtime/explore/earlystop.py, default margin 0.02; the same rule for both searches). Seconds are "
            "1-node compute (pre-training included for comp); a stopped candidate's seconds are scaled to the "
            "iterations it ran (an estimate).\n\n" + table)
    print(body)
    if not args.no_write and not args.quick:
        write_section("Wootz search: early stop", body, {"rows": rows})


if __name__ == "__main__":
    main()
