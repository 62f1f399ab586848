"""Wootz Tables 4 and 5 on our scale: speedup vs subspace size; extra speedup of Sequitur tuning blocks.

Same setting as `wootz_search.py` (small ResNet example, 6 residual modules, `digits`; its
teacher/loading helper is reused).

Table 4 (Wootz §7.3, "basic benefits"): for subspace sizes 4, 16, 64 (ORNL §5.2 sampling), the
1-node search for `min ModelSize constraint Accuracy >= full − α`, base (default networks) vs
comp (every module a tuning block, as Wootz's basic-benefit experiments), stopping at the
answer; time to the answer, comp including all pre-training; speedup = base / comp. Searched at
`--alpha` (default 0: no candidate may reach the full model's accuracy, so every one is
evaluated), the `--replay-alphas` replayed from those records at no cost.

Table 5: two collections of N = 8 configurations — collection-1 sampled at random (ORNL §5.2),
collection-2 with one rate shared by each run of consecutive modules (the example's three
stages of two modules) — each explored (comp only, every candidate evaluated once, the 1-node
search replayed per α) with tuning blocks from the Sequitur identifier (`method="sequitur"`) and
with every module a tuning block (`method="modules"`); extra speedup = time(modules) /
time(sequitur), pre-training included, and its geometric mean over the α's.

    python benchmarks/wootz_tables45.py --steps 60 --pretrain-steps 60
    python benchmarks/wootz_tables45.py --steps 60 --pretrain-steps 60 --skip5   # Table 4 only, Table 5 kept

Searches are cached in `--work` (resumed): use a fresh folder to measure again.
"""
from __future__ import annotations

import argparse
import math
import os
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from wootz_search import teacher  # noqa: E402  (reused: loads/trains the teacher, checks the reload)

SIZES = (4, 16, 64)
T5_ALPHAS = (0.0, 0.01, 0.02)


def collection2(n: int, n_modules: int, rates, run_len: int = 2, seed: int = 0) -> list[tuple]:
    """N distinct configurations where each run of `run_len` consecutive modules shares one rate."""
    rng = random.Random(seed)
    runs = math.ceil(n_modules / run_len)
    if n > len(rates) ** runs:
        raise ValueError(f"only {len(rates) ** runs} collection-2 configurations exist")
    out, seen = [], set()
    while len(out) < n:
        per_run = [rng.choice(rates) for _ in range(runs)]
        c = tuple(per_run[m // run_len] for m in range(n_modules))
        if c not in seen:
            seen.add(c)
            out.append(c)
    return out


def fmt_t(x):
    return "—" if x is None else f"{x:.1f}"


def keep_previous(args, full_acc, data: dict, sections: list) -> None:
    """Carry a skipped table over from the last written section (text and JSON), so that adding a
    Table 4 row (`--skip5`) does not erase Table 5, and vice versa. Only when the last run used the
    same teacher accuracy and step counts, else its numbers would not be comparable: then dropped."""
    import json
    import re
    prev_json = ROOT / "docs" / "benchmarks" / "wootz-tables-4-5.json"
    perf = ROOT / "docs" / "performance.md"
    if not prev_json.exists() or not perf.exists():
        return
    prev = json.loads(prev_json.read_text())
    same = (abs(prev.get("full_accuracy", -1) - full_acc) < 1e-9 and prev.get("steps") == args.steps
            and prev.get("pretrain_steps") == args.pretrain_steps)
    if not same:
        print("previous wootz-tables-4-5 run used other settings: skipped table not carried over")
        return
    m = re.search(r"<!-- section: wootz-tables-4-5 -->(.*?)<!-- end: wootz-tables-4-5 -->", perf.read_text(), re.S)
    if not m:
        return
    text = re.sub(r"\n_Machine: .*?_\n?$", "", m.group(1).strip() + "\n").strip()
    parts = {h: p for h, p in ((p.split(":", 1)[0], "### " + p.strip()) for p in text.split("### ")[1:])}
    for skipped, head, keys, at in ((args.skip4, "Table 4", ("table4",), 0),
                                    (args.skip5, "Table 5", ("table5", "table5_configs"), len(sections))):
        if skipped and head in parts:
            sections.insert(at, parts[head])
            data.update({k: prev[k] for k in keys if k in prev})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default=",".join(map(str, SIZES)))
    ap.add_argument("--alpha", type=float, default=0.0, help="Table 4's searched α (fraction: 0.01 = 1%%)")
    ap.add_argument("--replay-alphas", default="0.01,0.02",
                    help="Table 4's further α's, replayed from the searched one's records (each >= --alpha)")
    ap.add_argument("--n", type=int, default=8, help="Table 5's collection size")
    ap.add_argument("--rates", default="0.3,0.5,0.7")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--pretrain-steps", type=int, default=30)
    ap.add_argument("--teacher-iters", type=int, default=200)
    ap.add_argument("--weights")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", default="/tmp/cococ-wootz-tables45")
    ap.add_argument("--skip4", action="store_true")
    ap.add_argument("--skip5", action="store_true")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()

    import torch
    torch.set_num_threads(1)
    from cococ.frontend.objective import parse_objective
    from cococ.frontend.subspace import sample_subspace
    from cococ.passes.tuning_blocks import identify_tuning_blocks
    from cococ.runtime.blocks import teacher_hash
    from cococ.runtime.explore import explore, replay

    load0 = os.getloadavg()[0]     # the machine is shared: times are only as good as its load
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()
    full, solver, full_acc, wpath = teacher(args)
    th = teacher_hash(full)[:8]
    rates = [float(r) for r in args.rates.split(",")]
    n_mod = len(full.modules)
    tag = f"{th}_t{args.steps}_p{args.pretrain_steps}_s{args.seed}"
    data: dict = {"full_accuracy": full_acc, "steps": args.steps, "pretrain_steps": args.pretrain_steps}
    sections = []

    # ---------------- Table 4 ----------------
    rows4 = []
    if not args.skip4:
        alphas = [args.alpha] + [float(a) for a in args.replay_alphas.split(",") if a.strip()]
        if min(alphas) < args.alpha:
            ap.error("--replay-alphas must not be below --alpha: only a higher threshold's records cover a lower one's")
        thr = full_acc - args.alpha
        obj = parse_objective(f"min ModelSize constraint Accuracy >= {thr!r}")
        for size in [int(s) for s in args.sizes.split(",")]:
            configs = sample_subspace(size, n_mod, rates, seed=args.seed)
            t0 = time.perf_counter()
            run = explore(full, configs, obj, solver, "digits", work / f"t4_{tag}_n{size}_a{args.alpha:g}",
                          steps=args.steps, pretrain_steps=args.pretrain_steps, baseline=True, resume=True,
                          method="modules", progress=False)
            pre = run.comp.pretrain_seconds
            for a in alphas:     # a lower threshold is met at or before the run's answer: its records cover it
                o = parse_objective(f"min ModelSize constraint Accuracy >= {full_acc - a!r}")
                b = replay(o, run.statics, run.base.evaluated)
                c = replay(o, run.statics, run.comp.evaluated, pre)
                size_of = lambda r: None if r["answer"] is None else r["answer"]["params"] / run.full_size  # noqa: E731
                row = {"alpha": a, "threshold": full_acc - a, "size": size, "blocks": run.blocks,
                       "#configs base": b["configs"], "#configs comp": c["configs"],
                       "time base (s)": b["seconds"], "time comp (s)": c["seconds"], "pretrain (s)": pre,
                       "model size base": size_of(b), "model size comp": size_of(c),
                       "speedup": b["seconds"] / c["seconds"] if c["seconds"] else None}
                rows4.append(row)
                print(f"T4 size {size} α {a:g}: {row}", flush=True)
            print(f"T4 size {size}: {time.perf_counter() - t0:.0f} s wall", flush=True)
        pct = lambda v: "—" if v is None else f"{100 * v:.1f}%"  # noqa: E731
        lines = ["| α | threshold acc | subspace size | tuning blocks | #configs base | #configs comp | "
                 "time base (s) | time comp (s) | of which pre-training (s) | size base | size comp | speedup |",
                 "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in sorted(rows4, key=lambda r: (r["alpha"], r["size"])):
            sp = "—" if r["speedup"] is None else f"{r['speedup']:.2f}×"
            lines.append(f"| {100 * r['alpha']:+g}% | {r['threshold']:.4f} | {r['size']} | {r['blocks']} | "
                         f"{r['#configs base']} | {r['#configs comp']} | "
                         f"{fmt_t(r['time base (s)'])} | {fmt_t(r['time comp (s)'])} | {fmt_t(r['pretrain (s)'])} | "
                         f"{pct(r['model size base'])} | {pct(r['model size comp'])} | {sp} |")
        sections.append(
            f"### Table 4: speedup vs subspace size (α = {', '.join(f'{100 * a:+g}%' for a in alphas)})\n\n"
            f"Subspaces sampled with ORNL §5.2 (rates {args.rates}, seed {args.seed}; each size sampled on its "
            f"own), every module a tuning block (as in Wootz's basic-benefit experiments), fine-tuning "
            f"{args.steps} iterations per candidate, pre-training {args.pretrain_steps} iterations per group; "
            f"1 node, 1 thread. Each size is searched once, at α = {100 * args.alpha:+g}% (threshold = full "
            f"accuracy − α), in both modes; the other α's 1-node searches are replayed from those records (a "
            f"lower threshold is met at or before the searched one's answer). Time to the answer in compute "
            f"seconds, comp including all pre-training; size in % of the full model's parameters; — = no "
            f"candidate meets the threshold (every candidate evaluated).\n\n" + "\n".join(lines))
        data["table4"] = {"alpha": args.alpha, "alphas": alphas, "threshold": thr, "rows": rows4}

    # ---------------- Table 5 ----------------
    rows5 = []
    if not args.skip5:
        obj_all = parse_objective("min ModelSize constraint Accuracy >= 2")   # exhaustive records
        colls = {"collection-1": sample_subspace(args.n, n_mod, rates, seed=args.seed + 1),
                 "collection-2": collection2(args.n, n_mod, rates, seed=args.seed + 1)}
        for cname, configs in colls.items():
            per = {}
            for method in ("sequitur", "modules"):
                plan = identify_tuning_blocks(configs, method=method)
                t0 = time.perf_counter()
                run = explore(full, configs, obj_all, solver, "digits",
                              work / f"t5_{tag}_{cname}_n{args.n}_{method}", steps=args.steps,
                              pretrain_steps=args.pretrain_steps, resume=True, exhaustive=True,
                              method=method, progress=False)
                pre = run.comp.pretrain_seconds
                multi = sum(1 for bl in plan.blocks if bl.needs_training and len(bl.rates) > 1)
                per[method] = {"blocks": run.blocks, "multi-module blocks": multi, "pretrain": pre,
                               "run": run, "mean acc": sum(e["accuracy"] for e in run.comp.evaluated)
                               / len(run.comp.evaluated)}
                print(f"T5 {cname} {method}: {run.blocks} blocks ({multi} multi-module), pretrain {pre:.1f} s, "
                      f"mean acc {per[method]['mean acc']:.4f} ({time.perf_counter() - t0:.0f} s wall)", flush=True)
            for a in T5_ALPHAS:
                o = parse_objective(f"min ModelSize constraint Accuracy >= {full_acc - a!r}")
                r = {m: replay(o, per[m]["run"].statics, per[m]["run"].comp.evaluated, per[m]["pretrain"])
                     for m in per}
                rows5.append({"collection": cname, "alpha": a, "threshold": full_acc - a,
                              "blocks sequitur": per["sequitur"]["blocks"], "blocks modules": per["modules"]["blocks"],
                              "multi-module blocks": per["sequitur"]["multi-module blocks"],
                              "#configs sequitur": r["sequitur"]["configs"], "#configs modules": r["modules"]["configs"],
                              "time sequitur (s)": r["sequitur"]["seconds"], "time modules (s)": r["modules"]["seconds"],
                              "pretrain sequitur (s)": per["sequitur"]["pretrain"],
                              "pretrain modules (s)": per["modules"]["pretrain"],
                              "mean acc sequitur": per["sequitur"]["mean acc"], "mean acc modules": per["modules"]["mean acc"],
                              "extra speedup": r["modules"]["seconds"] / r["sequitur"]["seconds"]})
            data.setdefault("table5_configs", {})[cname] = [list(c) for c in configs]
        lines = ["| collection | α | threshold acc | tuning blocks sequitur / modules (multi-module) | "
                 "#configs sequitur / modules | pre-training (s) sequitur / modules | time sequitur (s) | "
                 "time modules (s) | extra speedup |", "|---|---|---|---|---|---|---|---|---|"]
        for r in rows5:
            lines.append(f"| {r['collection']} | {100 * r['alpha']:+g}% | {r['threshold']:.4f} | "
                         f"{r['blocks sequitur']} / {r['blocks modules']} ({r['multi-module blocks']}) | "
                         f"{r['#configs sequitur']} / {r['#configs modules']} | "
                         f"{r['pretrain sequitur (s)']:.1f} / {r['pretrain modules (s)']:.1f} | "
                         f"{r['time sequitur (s)']:.1f} | {r['time modules (s)']:.1f} | {r['extra speedup']:.2f}× |")
        gm = {}
        for cname in ("collection-1", "collection-2"):
            v = [r["extra speedup"] for r in rows5 if r["collection"] == cname]
            gm[cname] = math.exp(sum(math.log(x) for x in v) / len(v))
        lines.append(f"| geometric mean | | | | | | | | collection-1 {gm['collection-1']:.2f}×, "
                     f"collection-2 {gm['collection-2']:.2f}× |")
        accs = "; ".join(f"{r['collection']}: sequitur {r['mean acc sequitur']:.4f}, modules {r['mean acc modules']:.4f}"
                         for r in rows5 if r["alpha"] == T5_ALPHAS[0])
        sections.append(
            f"### Table 5: extra speedup of the Sequitur tuning-block identifier (N = {args.n})\n\n"
            f"collection-1: ORNL §5.2 random sample (seed {args.seed + 1}); collection-2: one rate per run of two "
            f"consecutive modules (the example's three stages), distinct configurations drawn at random. Each "
            f"collection is explored with comp only, once with Sequitur's tuning blocks and once with every module "
            f"a tuning block; every candidate evaluated once and each α's 1-node search replayed from the records. "
            f"Times in compute seconds to the answer, pre-training included; extra speedup = time(modules) / "
            f"time(sequitur). Mean final accuracy over the collection — {accs}. One collection of each kind "
            f"(Wootz: five), so the timing noise of a shared 2-core machine is in these numbers. Wootz reports "
            f"1.08× (collection-1) and 1.12× (collection-2) geometric means for ResNet-50.\n\n" + "\n".join(lines))
        data["table5"] = {"rows": rows5, "geomean": gm}

    if args.skip5 or args.skip4:
        keep_previous(args, full_acc, data, sections)
    load1 = os.getloadavg()[0]
    data["load_average"] = [load0, load1]
    body = (f"Small ResNet example (6 modules) on `digits`, full model accuracy {full_acc:.4f} "
            f"(weights: {Path(wpath).name}). Load average (1 min) of the machine: {load0:.1f} when this run "
            f"started, {load1:.1f} when it ended ({os.cpu_count()} cores; this run adds about 1, the rest is "
            f"other jobs sharing the cores, and slowing the times).\n\n" + "\n\n".join(sections))
    print(body)
    print(f"total benchmark time {time.perf_counter() - t_all:.0f} s")
    if not args.no_write:
        from report import write_section
        write_section("wootz-tables-4-5", "## Wootz Tables 4 and 5 on our scale (`benchmarks/wootz_tables45.py`)\n\n"
                      + body, data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
