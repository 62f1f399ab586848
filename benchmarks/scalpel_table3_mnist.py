"""Scalpel Table 3 on MNIST, like for like (`scalpel_table3.py --data mnist`; issue 15 item 3).

Per model (LeNet-300-100, LeNet-5 as Caffe defines them, the shipped MNIST weights
examples/*/*_mnist.safetensors and their Caffe solvers *_mnist_solver.prototxt):

- `--prune auto` for arm-m4 (`prune_for_target`: Scalpel's SIMD-group pruning, width 2), one row
  per seed (`--seeds`), then their mean and spread;
- the traditional baseline (magnitude pruning, `scalpel_table3.magnitude_prune`: the same loop,
  steps, retraining and floor; csr), one seed;
- Scalpel's node pruning (`node_prune`, its §3.4, what Scalpel runs on the GPU; its Table 4 gives
  the nodes removed per layer), one seed, built for the M4 like the others (dense kernels, smaller).

Every accept/undo decision reads the 5,000-image validation split carved from MNIST's training
file (`Dataset.for_decisions()`, runtime/data.py); the 10,000 test images are read only before
and after, for the reported accuracy drop (Scalpel's criterion: no loss, ours <= `--max-drop`).
Each pruned graph is built for arm-m4 in q15 and int8 (emulated once: whole-model estimated
cycles; `--m4-child`, a fresh process per graph) and, for the first seed's graphs, for x86 in a
child process of its own (`--x86-child`: TVM, one thread, interleaved rounds; the child reports
its load and CPU affinity). Results are saved after every finished piece to `--out` (JSON), the
pruned graphs beside it, so a run cut short still renders what it measured: `--render --from
A.json B.json` merges the files of runs split by model (`--models`) or method (`--methods`),
`--rebuild` redoes the M4 builds that failed from the kept graphs. `--retrain-lr` retrains at
another base_lr (what bounds the result: docs/pruning.md). `--quick` is a smoke run for the test.
"""
from __future__ import annotations

import dataclasses
import json
import os
import pickle
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from report import write_section
from scalpel_tables_render import METHODS, render_mnist, x86_runs

ROOT = Path(__file__).resolve().parents[1]
SECTION = "scalpel-table3-mnist"
QUICK = {"retrain_iter": 2, "steps": (0.5, 0.9), "max_trials": 1}   # --quick: a smoke run, not a result


def m4_builds(graph, x: np.ndarray) -> dict:
    """`m4_child` in a fresh process: a long run's process must not build (TVMScript reads a
    kernel's source from disk when it compiles it: a file edited since the process imported it
    fails to parse)."""
    return child("--m4-child", (graph, x))


def child(flag: str, payload) -> dict:
    """Run `scalpel_table3.py FLAG PICKLE` (this module's m4_child / x86_child) and read its JSON."""
    with tempfile.NamedTemporaryFile(suffix=".pkl", delete=False) as f:
        f.write(pickle.dumps(payload))
    try:
        r = subprocess.run([sys.executable, str(Path(__file__).resolve().parent / "scalpel_table3.py"), flag, f.name],
                           capture_output=True, text=True, check=False)
    finally:
        os.unlink(f.name)
    if r.returncode != 0:
        return {"error": (r.stderr.strip().splitlines() or ["no output"])[-1][:300]}
    return json.loads(r.stdout.strip().splitlines()[-1])


def m4_child(path: str) -> None:
    """q15 and int8 arm-m4 builds of the pickled graph, emulated once on its input: print JSON
    with cycles, flash, kernel per FC/conv step; a build that fails says why (int8 calibrates on
    random samples: cycles do not depend on the values)."""
    from cococ.backends.build import build
    from scalpel_table3 import step_layers  # a cycle: that module runs this one's children
    graph, x = pickle.loads(Path(path).read_bytes())
    out = {}
    for q in ("q15", "int8"):
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            try:
                art = build(graph, "arm-m4", quantize=q, target_options={"flash": "2M"})
                art.run({graph.inputs[0].name: x})
            except Exception as e:  # noqa: BLE001 - a build that fails is a result here, said in the table
                out[q] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"}
                continue
        out[q] = {"cycles": art.profile()["cycles"], "flash": art.report["flash"], "layers": step_layers(art),
                  "warnings": sorted({str(m.message) for m in w if "kept dense" in str(m.message)})}
    print(json.dumps(out))


def x86_child(path: str) -> None:
    """In a process of its own: build the pickled graphs for x86 (one thread) and time them
    interleaved; print JSON with min / median seconds, load and affinity."""
    from cococ.backends.build import build
    from scalpel_table3 import interleaved_times  # a cycle, as in m4_child
    graphs, x, runs, rounds = pickle.loads(Path(path).read_bytes())
    machine = {"load_before": os.getloadavg()[0], "affinity_before": sorted(os.sched_getaffinity(0))}
    arts = {k: (build(g, "x86", threads=1), {g.inputs[0].name: x}) for k, g in graphs.items()}
    times = interleaved_times(arts, runs, rounds)
    machine.update(load_after=os.getloadavg()[0], affinity_after=sorted(os.sched_getaffinity(0)))
    print(json.dumps({"times": {k: {"min_s": t[0], "median_s": t[1]} for k, t in times.items()},
                      "machine": machine}))


def x86_times(graphs: dict, x: np.ndarray, runs: int = 200, rounds: int = 5) -> dict:
    return child("--x86-child", (graphs, x, runs, rounds))


def run_model(name: str, args, log, save) -> dict:
    # local imports: torch and cococ's training take seconds, `--render` needs neither;
    # scalpel_table3 imports this module (a cycle)
    import cococ
    from cococ.frontend.solver import load_solver
    from cococ.passes.simd_group import weight_layers
    from cococ.runtime.compress.cost import kernel_model, layer_macs
    from cococ.runtime.compress.node_prune import node_prune
    from cococ.runtime.compress.prune_for_target import prune_for_target
    from cococ.runtime.compress.scalpel import DEFAULT_STEPS
    from cococ.runtime.compress.training import accuracy, load_dataset
    from scalpel_table3 import MODELS, csr_ratio, magnitude_prune, model_bytes
    from cococ.backends.kernels.choice import load_table
    d = ROOT / "examples" / name
    load = lambda: cococ.load(d / f"{name}.prototxt", weights=d / f"{name}_mnist.safetensors")  # noqa: E731
    solver = load_solver(d / f"{name}_mnist_solver.prototxt")
    if getattr(args, "retrain_lr", None):   # retraining restarts at base_lr: a smaller one, to see what it bounds
        solver = dataclasses.replace(solver, base_lr=args.retrain_lr)
    quick = QUICK if args.quick else {}
    it = quick.get("retrain_iter", args.retrain_iter)
    g0 = load()
    ds = load_dataset(g0, "mnist")
    dec = ds.for_decisions()
    _, dense_f32 = model_bytes(g0)
    x = ds.x_test[:1].astype(np.float32)
    out = {"model": MODELS[name], "key": name, "retrain_iter": it, "split": ds.describe(),
           "test_before": accuracy(g0, ds), "val_before": accuracy(g0, dec), "dense_bytes": dense_f32,
           "scalpel": [], "built_dense": m4_builds(g0, x)}
    save(out)

    def row(g, t0, label, built=True, **kw):
        """One method's result; --quick builds only dense and `--prune auto` (a build and its
        emulation take most of a quick run's time). With --out the pruned graph is kept beside
        it (`--rebuild` builds it again)."""
        if args.out:
            Path(f"{args.out}.{name}.{label}.pkl").write_bytes(pickle.dumps((g, x)))
        return {"test_after": accuracy(g, ds), "size": model_bytes(g)[0] / dense_f32, "bytes": model_bytes(g)[0],
                "seconds": time.perf_counter() - t0, "graph": label, **kw,
                "m4": m4_builds(g, x) if built else {q: {"error": "not built (--quick)"} for q in ("q15", "int8")}}

    def auto_row(seed):
        t0 = time.perf_counter()
        g, rep = prune_for_target(load(), "arm-m4", ds, solver, args.max_drop, retrain_iter=it, seed=seed, log=log)
        sg = rep["simd_group"]
        out["scalpel"].append(row(g, t0, f"auto{seed}", seed=seed, val_after=sg["accuracy_after"],
                                  est_speedup=sg["speedup"], layers={l["layer"]: l["sparsity"] for l in sg["layers"]},
                                  retrainings=len(sg["steps"]), steps=sg["steps"], warnings=sg["warnings"]))
        save(out)
        return g

    graphs = {"dense": g0}
    methods = getattr(args, "methods", None) or METHODS
    seeds = list(args.seeds) if "auto" in methods else []
    if seeds:    # the first seed's --prune auto row first: the one the x86 row times
        graphs["scalpel"] = auto_row(seeds.pop(0))
    if "magnitude" in methods:
        t0 = time.perf_counter()
        g, _, val1, per_layer, tried = magnitude_prune(
            load(), solver, dec, max_drop=args.max_drop, steps=quick.get("steps", DEFAULT_STEPS),
            retrain_iter=it, seed=args.seeds[0], log=log)
        table = load_table("sparse-breakeven-m4")
        dc = sc = 0.0
        for l in weight_layers(g, []):
            c = layer_macs(l) * kernel_model("arm-m4", l.op).dense_per_mac
            dc, sc = dc + c, sc + (c * csr_ratio(per_layer[l.name], table) if per_layer[l.name] > 0 else c)
        out["traditional"] = row(g, t0, "magnitude", not args.quick, seed=args.seeds[0], val_after=val1,
                                 est_speedup=dc / sc, layers=per_layer, retrainings=len(tried), steps=tried)
        graphs["traditional"] = g
        save(out)
    if "node" in methods:
        t0 = time.perf_counter()
        g, nrep = node_prune(load(), solver, ds, max_drop=args.max_drop, mask_iter=it, retrain_iter=it,
                             max_trials=quick.get("max_trials", 10), seed=args.seeds[0], log=log)
        out["node"] = row(g, t0, "node", not args.quick, seed=args.seeds[0], val_after=nrep.accuracy_after,
                          channels=nrep.channels, macs=[nrep.macs_before, nrep.macs_after], trials=len(nrep.steps))
        graphs["node"] = g
        save(out)
    if not args.no_x86:
        out["x86"] = [x86_times(graphs, x)]
        save(out)
    for seed in seeds:
        auto_row(seed)
    return out


def merge(paths: list[str]) -> tuple[list[dict], dict, float, dict]:
    """The per-model JSON files of one or more runs: (results, args, wall seconds, machine)."""
    results, wall, machine, args = [], 0.0, {}, {}
    for p in paths:
        d = json.loads(Path(p).read_text())
        for r in d["results"]:     # runs of one model split by --methods: one entry
            same = next((o for o in results if o["key"] == r["key"]), None)
            if same is None:
                results.append(r)
                continue
            by_seed = {m["seed"]: m for m in same["scalpel"] + r["scalpel"]}   # a seed run again: the later file
            same["scalpel"] = [by_seed[k] for k in sorted(by_seed)]
            same["x86"] = x86_runs(same) + x86_runs(r)
            for k in ("traditional", "node"):
                if k in r:
                    same[k] = r[k]
        wall = max(wall, d["seconds"])
        args = args or dict(d["args"])
        args["methods"] = sorted(set(args.get("methods") or METHODS) | set(d["args"].get("methods") or METHODS),
                                 key=METHODS.index)
        for k, v in d["machine"].items():
            machine[k] = max(machine.get(k, v), v) if k.startswith("load") else machine.get(k, v)
    order = ["lenet300", "lenet"]
    results.sort(key=lambda r: order.index(r["key"]) if r["key"] in order else 9)
    return results, args, wall, machine


def rebuild(results: list[dict], sources: list[str]) -> None:
    """Build again, from the graphs kept beside the --out files, every M4 build that failed (a
    kernel module being edited while the run went on); the pruning results stay as measured."""
    for r in results:
        for m in r["scalpel"] + [r[k] for k in ("traditional", "node") if k in r]:
            if any("cycles" not in v and not v.get("error", "").startswith("not built") for v in m["m4"].values()):
                for src in sources:
                    p = Path(f"{src}.{r['key']}.{m.get('graph')}.pkl")
                    if p.exists():
                        m["m4"], m["rebuilt"] = m4_builds(*pickle.loads(p.read_bytes())), True
                        print(f"rebuilt {r['key']} {m['graph']}", file=sys.stderr)


def main(args) -> int:
    import argparse
    no_write = args.no_write
    if args.render:
        results, saved, wall, machine = merge(args.sources)
        if args.rebuild:
            rebuild(results, args.sources)
        args = argparse.Namespace(**saved)
    else:
        import torch
        torch.set_num_threads(args.threads)
        log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
        machine = {"load_before": os.getloadavg()[0], "affinity_before": sorted(os.sched_getaffinity(0))}
        t0, results = time.perf_counter(), []

        def save(partial):
            done = results + ([partial] if partial is not None and partial not in results else [])
            keep = {k: v for k, v in vars(args).items() if k not in ("render", "sources", "no_write", "x86_child", "m4_child", "rebuild")}
            if args.out:
                Path(args.out).write_text(json.dumps({"results": done, "args": keep, "machine": {
                    **machine, "load_after": os.getloadavg()[0]}, "seconds": time.perf_counter() - t0}, indent=1))

        for n in args.models:
            results.append(run_model(n, args, log, save))
        machine.update(load_after=os.getloadavg()[0], affinity_after=sorted(os.sched_getaffinity(0)))
        wall = time.perf_counter() - t0
        save(None)
    body = render_mnist(results, args, wall, machine)
    print(body)
    if not no_write:
        keep = {k: v for k, v in vars(args).items() if k not in ("render", "sources", "no_write", "x86_child", "m4_child", "rebuild")}
        write_section(SECTION, body, {"results": results, "args": keep, "seconds": wall, "machine": machine})
    return 0
