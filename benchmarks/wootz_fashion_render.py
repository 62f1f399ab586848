"""Rendering of benchmarks/wootz_fashion.py's section of docs/performance.md (issue 16): the
recovery curves, Table 2, Table 3 and the reading against the issue's goals, from the records
wootz_fashion.py computes (or reuses from --work/results.json)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from report import markdown_table


def timing(t: dict) -> str:
    return (f"{t['wall_s']:.0f} s wall, {t['cpu_s']:.0f} s CPU; at its start {t['start']}, "
            f"at its end {t['end']}")


def render(a, sets, full_val, full_test, plan, pre, curves, budget, tables2, t3, total, sizes=((), ())) -> str:
    """The section; `sizes`: (sections, reading lines) of the Table 3 runs kept at other subspace
    sizes (wootz_fashion_sizes.render_sizes), placed after this run's tables and reading."""
    name = lambda s: "{" + ", ".join(f"{r:g}" for r in sets[s]) + "}"  # noqa: E731
    trained = [r for r in pre["result"] if "mse_after" in r]
    stored = sum(r["status"] == "stored" for r in pre["result"])
    mse = np.median([[r["mse_before"], r["mse_after"]] for r in trained], axis=0) if trained else [np.nan] * 2
    needed, steps = budget
    out = ["## Wootz at a scale where recovery is slow: ResNet-20 on Fashion-MNIST (`benchmarks/wootz_fashion.py`)\n",
           f"Teacher: examples/resnet20 (9 residual modules, {Path(a.weights).name}), validation accuracy "
           f"{full_val:.4f} on the first {a.val} validation images, test {full_test:.4f} on the first {a.test} test "
           f"images. Tuning blocks: one per module and rate ({sum(b.needs_training for b in plan.blocks)} blocks in "
           f"{len(plan.groups)} groups; {len(trained)} trained in this run, {stored} found in the store), "
           f"teacher-student for {a.pretrain_steps} iterations per group (batch 32, fixed lr {a.pretrain_lr}), block "
           f"MSE median {mse[0]:.4g} → {mse[1]:.4g}; pre-training {timing(pre['time'])}. Fine-tuning: batch 32, "
           f"fixed lr {a.ft_lr}, momentum 0.9, the same batch stream for both kinds; 1 torch thread per "
           f"process.\n"]
    rows = []
    for s, recs in enumerate(curves["result"]):
        for rec in recs:
            for kind in ("default", "block"):
                c = rec[kind]["curve"]
                rows.append([name(s), " ".join(f"{r:g}" for r in rec["rates"]), kind,
                             " → ".join(f"{acc:.3f}" for _, acc in c), rec[kind]["within_1pt"], rec[kind]["test"]])
    out.append(f"### (a) Recovery curves and the fine-tuning budget\n\nValidation accuracy every {a.curve_interval} "
               f"iterations over {a.curve_steps} iterations of fine-tuning (from iteration 0, before any). "
               f"\"within 1 pt\" = the iteration from which the curve stays within 1 point of its final accuracy "
               f"(mean of its last three tests); test = test accuracy at the end. The default candidates needed "
               f"{needed} iterations at most: Table 2's budget is {steps}"
               f"{' (--ft-steps)' if a.ft_steps else f' (capped at --ft-cap {a.ft_cap})' if steps < needed else ''}. "
               f"{timing(curves['time'])}.\n\n"
               + markdown_table(["rates", "configuration", "network", "validation accuracy curve", "within 1 pt",
                                 "test"], rows))
    for s, t in enumerate(tables2):
        nets = t["result"]
        med = lambda kind, k: float(np.median([p[kind][k] for p in nets]))  # noqa: E731
        better = sum(p["block"]["final"] >= p["default"]["final"] for p in nets)
        tuned = (f"and after {t['steps']} iterations (final, final+). Block-trained final ≥ default's on {better} of "
                 f"{len(nets)}" if t["steps"] else "(not fine-tuned in this run, `--final-sets`: no final, final+)")
        out.append(f"### (b) Table 2, rates {name(s)}\n\nMedians over {len(nets)} networks (ORNL §5.2 sample, seed 0) "
                   f"of the test accuracy before fine-tuning (init: default network, init+: block-trained) {tuned}. "
                   f"{timing(t['time'])}.\n\n"
                   + markdown_table(["networks", "teacher (test)", "init", "init+", "init+ − init (points)",
                                     "final", "final+"],
                                    [[len(nets), full_test, med("default", "init"), med("block", "init"),
                                      100 * (med("block", "init") - med("default", "init")),
                                      med("default", "final") if t["steps"] else "—",
                                      med("block", "final") if t["steps"] else "—"]]))
    if t3 is not None:
        out += render_t3(a, t3, name(getattr(a, "table3_set", 0)))
    else:
        out.append("### (c) Table 3\n\nNot run in this run (`--table3 0`).")
    out += sizes[0]
    out.append("### Against the issue's goals\n\n" + "\n".join([goals(sets, curves["result"], tables2, t3), *sizes[1]])
               + f"\n\nThis invocation (parts found in --work are reused, not recomputed; each part's own time is "
                 f"given with it): {timing(total)}."
               + (" The pre-training, (a) and (b) were taken from the run published before "
                  "(`--reuse-published`: docs/benchmarks/wootz-fashion.json, the same settings; their times are that "
                  "run's, with 2 worker processes)." if getattr(a, "reuse_published", False) else ""))
    return "\n\n".join(out)


def goals(sets, curves, tables2, t3) -> str:
    """The issue's two goals, read off the tables, and where the time of each search went."""
    lines = []
    for s, recs in enumerate(curves):
        for rec in recs:
            d, b = rec["default"], rec["block"]
            lines.append(f"- Curve {' '.join(f'{r:g}' for r in rec['rates'])}: the default network starts at "
                         f"{d['curve'][0][1]:.3f} and stays within 1 point of its final {d['curve'][-1][1]:.3f} from "
                         f"iteration {d['within_1pt']}; the block-trained one starts at {b['curve'][0][1]:.3f} "
                         f"(from iteration {b['within_1pt']}, final {b['curve'][-1][1]:.3f}).")
    for s, t in enumerate(tables2):
        nets = t["result"]
        gap = [100 * (p["block"]["init"] - p["default"]["init"]) for p in nets]
        fin = [100 * (p["block"]["final"] - p["default"]["final"]) for p in nets]
        lines.append(f"- Rates {{{', '.join(f'{r:g}' for r in sets[s])}}}: block-trained networks start a median "
                     f"{np.median(gap):.1f} points above default ones (goal ≥ 40: "
                     f"{'met' if np.median(gap) >= 40 else 'missed'}; per network {min(gap):.1f} to "
                     f"{max(gap):.1f})" + (f"; after {t['steps']} iterations the median difference is "
                                            f"{np.median(fin):+.1f} points." if t["steps"] else "."))
    lines += reading_t3(t3)
    return "\n".join(lines)


PCT = lambda v: "—" if v is None else f"{100 * v:.1f}%"  # noqa: E731
X = lambda v: "—" if v is None else f"{v:.2f}×"  # noqa: E731
F4 = lambda v: "—" if v is None else f"{v:.4f}"  # noqa: E731


def no_larger(r: dict) -> bool:
    """Comp found an answer and it is no larger than the baseline's (or the baseline found none)."""
    return r["size comp"] is not None and (r["size base"] is None or r["size comp"] <= r["size base"] + 1e-12)


def configs(r: dict, mode: str) -> str:
    """#configs of one search; "> m" where a cut-off run's records end before its answer."""
    return f"{r[f'configs {mode}']}" if r.get(f"covered {mode}", True) else f"> {r[f'configs {mode}']}"


def sp_value(rb: dict, rc: dict, unit: dict | None = None, fb: float = 1.0, fc: float = 1.0) -> float | None:
    """time base / time comp, or with `unit` (part_cost's CPU seconds, measured together) the same
    counts at equal load: N_base · c_default · fb / (N_comp · c_block · fc + P), fb/fc the budget
    fractions of a full candidate."""
    if unit:
        return (rb["configs base"] * unit["default_cpu"] * fb
                / (rc["configs comp"] * unit["block_cpu"] * fc + unit["pretrain_cpu"]))
    return rb["time base"] / rc["time comp"] if rc["time comp"] else None


def speedup(rb: dict, rc: dict, unit: dict | None = None, fb: float = 1.0, fc: float = 1.0) -> str:
    """A speedup (sp_value); ≥ or ≤ where one search's records end before its answer."""
    v = sp_value(rb, rc, unit, fb, fc)
    if v is None:
        return "—"
    cb, cc = rb.get("covered base", True), rc.get("covered comp", True)
    if not cb and not cc:
        return "?"
    return ("" if cb and cc else "≥ " if cc else "≤ ") + X(v)


def table3_rows(rows: list[dict], stopped: bool = False, unit: dict | None = None) -> str:
    head = ["α", "threshold", "#configs base", "#configs comp", "time base (s)", "time comp (s)", "size base",
            "size comp", "speedup", "overhead"] + (["stopped base / comp"] if stopped else []) \
        + (["speedup at equal load (CPU)"] if unit else [])
    return markdown_table(head, [[f"{100 * r['alpha']:+g}%", r["threshold"], configs(r, "base"), configs(r, "comp"),
                                  r["time base"], r["time comp"], PCT(r["size base"]), PCT(r["size comp"]),
                                  speedup(r, r), X(r["overhead"])]
                                 + ([f"{r['stopped base']} / {r['stopped comp']}"] if stopped else [])
                                 + ([speedup(r, r, unit)] if unit else []) for r in rows])


def cell(rb: dict, rc: dict, unit: dict | None = None, fb: float = 1.0, fc: float = 1.0) -> str:
    """base #configs / comp #configs, speedup, and whether comp's answer is no larger."""
    mark = "" if no_larger({**rc, "size base": rb["size base"]}) else (" (none)" if rc["size comp"] is None
                                                                       else " (larger)")
    return f"{configs(rb, 'base')}/{configs(rc, 'comp')} {speedup(rb, rc, unit, fb, fc)}{mark}"


def span(r3: dict) -> str:
    """When the evaluations ran (from their finish times) and their summed seconds, per search."""
    import time
    recs = {m: [r for r in rs if not r.get("reused")] for m, rs in (r3.get("records") or {}).items()}
    reused = {m: len(rs) - len(recs[m]) for m, rs in (r3.get("records") or {}).items()}
    got = [(r["finished_at"] - r["seconds"], r["finished_at"]) for m in ("base", "comp") for r in recs.get(m, [])
           if r.get("finished_at")]
    if not got:
        return ""
    hm = lambda t: time.strftime("%H:%M", time.gmtime(t))  # noqa: E731
    secs = {m: sum(r["seconds"] for r in recs.get(m, [])) for m in ("base", "comp")}
    return (f" The evaluations ran between {hm(min(g[0] for g in got))} and {hm(max(g[1] for g in got))} UTC "
            f"({time.strftime('%Y-%m-%d', time.gmtime(got[0][1]))}), {secs['comp']:.0f} s of comp candidates and "
            f"{secs['base']:.0f} s of base candidates in all"
            + (f"; {reused.get('base', 0)} default and {reused.get('comp', 0)} block-trained records (their seconds "
               f"from that run) were copied from a run at another subspace size that holds the same configurations "
               f"(`--table3-reuse`: the same settings; a candidate's fine-tuning is deterministic, so a copied "
               f"record is the one this run would make, apart from its seconds)." if any(reused.values()) else "."))


def render_t3(a, t3: dict, rates: str) -> list[str]:
    r3 = t3["result"]
    steps = r3.get("steps", a.table3_steps)
    unit = (t3.get("cost") or {}).get("result")
    how = ("speedup at equal load: the same counts costed with the CPU seconds of part_cost (below), "
           "a candidate's cost scaled by its budget" if unit else "speedup: time base / time comp")
    out = [f"### (c) Table 3, subspace of {a.table3}, rates {rates}, {steps} fine-tuning iterations\n\nBoth searches "
           f"run over every candidate once ({steps} fine-tuning iterations each, validation accuracy on {a.val} "
           f"images) and each α's 1-node search replayed from the records (smallest candidate first, as Wootz); "
           f"time = compute seconds to the answer, comp including all pre-training "
           f"({r3['rows'][0]['pretrain']:.0f} s, {r3['blocks']} blocks). Mean validation accuracy over the subspace: "
           f"default {F4(r3['mean acc base'])}, block-trained {F4(r3['mean acc comp'])}. {a.workers} worker "
           f"process{'es' if a.workers > 1 else ''}; the two searches' candidates ran at different times (one "
           f"after the other, or in resumable pieces: `--table3-modes`), so their seconds differ with the load as "
           f"well as the work."
           + ("" if r3.get("partial") else f" {timing(t3['time'])}.")
           + (f" The issue's subspaces of {', '.join(map(str, left(a.table3)))} were not run in this run (time)."
              if left(a.table3) else "")
           + (f" **A cut-off run** (`--table3-partial`): {r3['evaluated']['base']} of {r3['n']} default and "
              f"{r3['evaluated']['comp']} of {r3['n']} block-trained candidates were evaluated (each search smallest "
              f"first); where a search's records end before its answer the table says \"> m\" configurations and "
              f"the speedup is a bound (≥, ≤)." if min(r3.get("evaluated", {"x": a.table3}).values()) < a.table3 else "")
           + span(r3)
           + (" The last column costs the same counts with the CPU seconds measured together (see the reading "
              "below): the searches' own seconds ran at different loads." if unit else "")
           + "\n\n" + table3_rows(r3["rows"], unit=unit)]
    sweep = r3.get("sweep")
    if sweep and len(sweep) > 1:
        ks = sorted(sweep, key=int)
        alphas = [r["alpha"] for r in r3["rows"]]
        head = ["budget (iterations)"] + [f"α {100 * al:+g}%" for al in alphas]
        f = lambda k: int(k) / steps  # noqa: E731
        same = [[k] + [cell(rb, rc, unit, f(k), f(k)) for rb, rc in zip(sweep[k], sweep[k])] for k in ks]
        mixed = [[k] + [cell(rb, rc, unit, 1.0, f(k)) for rb, rc in zip(sweep[ks[-1]], sweep[k])] for k in ks]
        out.append(f"### (d) Table 3 at shorter fine-tuning budgets (replayed from the same run)\n\nThe learning "
                   f"rate is fixed and the batch stream the same, so a candidate's validation accuracy at iteration k "
                   f"of its {steps}-iteration run (a test every {r3['interval']}) is what a k-iteration fine-tuning "
                   f"ends with; seconds are scaled by k / {steps} (an estimate: assembly and tests do not scale). "
                   f"Each cell: #configs base / #configs comp, {how} (pre-training included); \"(larger)\": comp's answer is larger than base's, \"(none)\": comp found none. "
                   f"First both searches at the same budget k:\n\n" + markdown_table(head, same)
                   + f"\n\nThen base at the full {steps} iterations (the budget a default candidate needs, (a)) and "
                     f"comp at budget k (Wootz's second source of speedup: a block-trained network needs fewer "
                     f"iterations):\n\n" + markdown_table(head, mixed))
    if r3.get("early stop"):
        out.append(f"### (e) Table 3 with the shared early-stop rule (simulated from the curves)\n\nBoth searches "
                   f"with runtime/explore/earlystop.py's rule (margin 0.02, a test every {r3['interval']}), replayed "
                   f"as explore.replay does; a stopped candidate's seconds are scaled to its iterations.\n\n"
                   + table3_rows(r3["early stop"], stopped=True))
    t4 = r3.get("table4")
    if t4:
        alphas = [r["alpha"] for r in r3["rows"]]
        med = lambda runs, j: geo([r[j] for r in runs], unit)  # noqa: E731
        rows = [[m, len(runs)] + [med(runs, j) for j in range(len(alphas))] for m, runs in t4.items()]
        rows.append([r3["n"], 1] + [speedup(r, r, unit) for r in r3["rows"]])
        out.append(f"### (f) Table 4: speedup vs subspace size (replayed from the same run)\n\nSubspaces drawn "
                   f"(seed 0) from the {r3['n']} configurations above, both searches replayed on each; comp charged "
                   f"all of the pre-training ({r3['rows'][0]['pretrain']:.0f} s, as Wootz's Table 4 charges all block "
                   f"variants). Each cell: the geometric mean of the speedups ({how}) over the draws whose searches the "
                   f"records cover, and how many of the draws that is; the last row is (c).\n\n"
                   + markdown_table(["subspace", "draws"] + [f"α {100 * al:+g}%" for al in alphas], rows))
    recs = r3.get("records")
    if recs:
        out.append(figures(recs, r3["full size"], steps))
    return out


def left(n: int) -> list[int]:
    """The issue's subspace sizes (64, 256, at least 500) above n: not run by a run at n."""
    return [m for m in (64, 256, 500) if m > n]


def window(r3: dict, unit: dict | None) -> list[str]:
    """The reading in one place: which thresholds give comp fewer candidates, and how wide that is."""
    recs = r3["records"]
    base, comp = {r["idx"]: r for r in recs["base"]}, {r["idx"]: r for r in recs["comp"]}
    both = [i for i in base if i in comp]
    if not both:
        return []
    gap = float(np.median([comp[i]["accuracy"] - base[i]["accuracy"] for i in both]))
    gap0 = float(np.median([comp[i]["curve"][0][1] - base[i]["curve"][0][1] for i in both]))
    win = [r for r in r3["rows"] if r.get("covered comp", True) and no_larger(r) and (sp_value(r, r, unit) or 0) > 1]
    same = [r for r in r3["rows"] if r.get("covered base", True) and r.get("covered comp", True) and r not in win]
    fmt = lambda rs: ", ".join(f"{100 * r['alpha']:+g}%" for r in rs) or "none"  # noqa: E731
    return [f"- **Reading.** With one budget for every candidate, composability can only win by reaching a "
            f"passing candidate earlier in the smallest-first order. Block-trained candidates start a median "
            f"{100 * gap0:.1f} points above the default ones but end only {100 * gap:+.1f} points above them after "
            f"{r3['steps']} iterations ({len(both)} candidates evaluated in both searches), so the thresholds where "
            f"comp's answer comes enough earlier to pay for its pre-training (or base finds none) form a window of "
            f"about that width: here α = {fmt(win)} (speedup > 1 at equal load); at α = {fmt(same)} comp is no or "
            f"too little earlier (or neither passes), and the pre-training makes it slower. Within the window the speedup is base's count over comp's count plus the pre-training"
            + (f" ({unit['pretrain_cpu'] / ((unit['default_cpu'] + unit['block_cpu']) / 2):.1f} candidates of CPU)"
               if unit else "")
            + "; it reaches 10× only if base scans at least 10× as many candidates as comp plus the pre-training"
              "'s share. A larger subspace gives that only where comp's answer stays near the front of the "
              "smallest-first order while base's moves back with the sample's density (Wootz, ResNet-50 on "
              "Flowers102 at α = 0: base's first passing network was the 297th of 500, comp's the 3rd; here: the "
              "speedup-vs-size lines, where runs at several sizes are kept), or where default networks recover "
              "less within the budget than these do."]


def geo(rows: list[dict], unit: dict | None = None) -> str:
    """Geometric mean of the covered speedups of `rows` (one per draw), and how many were covered."""
    ok = [sp_value(r, r, unit) for r in rows if r.get("covered base", True) and r.get("covered comp", True)]
    ok = [v for v in ok if v]
    return f"{float(np.exp(np.mean(np.log(ok)))):.2f}× ({len(ok)})" if ok else f"— (0 of {len(rows)})"


def figures(recs: dict, full_size: int, steps: int) -> str:
    """Wootz Figures 6 and 7 as a table: every candidate's validation curve, default and block-trained."""
    base = {r["idx"]: r for r in recs["base"]}
    comp = {r["idx"]: r for r in recs["comp"]}
    its = sorted({int(it) for r in recs["base"] + recs["comp"] for it, _ in r["curve"]})
    show = [it for it in its if it in (0, steps) or it in its[1:-1][::max(1, len(its) // 4)]]
    at = lambda r, it: dict((int(i), v) for i, v in r["curve"]).get(it)  # noqa: E731
    rows = []
    both = {**comp, **base}
    val = lambda r, it: "—" if r is None or at(r, it) is None else f"{at(r, it):.3f}"  # noqa: E731
    for i in sorted(both, key=lambda i: (both[i]["params"], i)):
        b, c = base.get(i), comp.get(i)
        rows.append([f"{100 * both[i]['params'] / full_size:.1f}%", " ".join(f"{r:g}" for r in both[i]["config"])]
                    + [f"{val(b, it)} / {val(c, it)}" for it in show])
    gain0 = [at(comp[i], 0) - at(base[i], 0) for i in base if i in comp and at(base[i], 0) is not None] or [np.nan]
    gainf = [comp[i]["accuracy"] - base[i]["accuracy"] for i in base if i in comp] or [np.nan]
    return (f"### (g) Figures 6 and 7: every candidate's validation curve, default / block-trained\n\nSmallest "
            f"first (size = parameters / the full model's); each cell default / block-trained validation accuracy "
            f"at that iteration. Median block-trained − default: {100 * np.median(gain0):+.1f} points before "
            f"fine-tuning, {100 * np.median(gainf):+.1f} after {steps} iterations (block-trained higher at the end "
            f"on {sum(g > 0 for g in gainf)} of {sum(g == g for g in gainf)} evaluated in both).\n\n"
            + markdown_table(["size", "configuration"] + [f"iteration {it}" for it in show], rows))


def reading_t3(t3) -> list[str]:
    """Where the time of each search went, and what bounds the speedup at this subspace."""
    if t3 is None:
        return ["- The 10× search goal was not measured in this run (Table 3 not run)."]
    r3 = t3["result"]
    rows = r3["rows"]
    unit = (t3.get("cost") or {}).get("result")
    best = max([r for r in rows if r["speedup"] and no_larger(r) and r.get("covered comp", True)],
               key=lambda r: sp_value(r, r, unit), default=None)
    if best is None:
        lines = ["- Composability search: no α where it found an answer no larger than the baseline's."]
    else:
        v = sp_value(best, best, unit)
        verdict = ("met" if v >= 10 else "missed" if best.get("covered base", True)
                   else "not shown: base's records end before its answer")
        lines = [f"- Composability search: best {speedup(best, best, unit)} "
                 f"{'at equal load (CPU-costed counts) ' if unit else ''}at α = {100 * best['alpha']:+g}% with an "
                 f"answer no larger than the baseline's (goal ≥ 10×: {verdict}); in the searches' own seconds "
                 f"{speedup(best, best)}: comp {best['time comp']:.0f} s ({best['pretrain']:.0f} s pre-training, "
                 f"{configs(best, 'comp')} candidates), base {best['time base']:.0f} s ({configs(best, 'base')} "
                 f"candidates)."]
    recs = r3.get("records")
    if not recs or not (recs["base"] or recs["comp"]):
        return lines
    n = r3.get("n", len(recs["base"]))
    pre = rows[0]["pretrain"]
    med = lambda mode: float(np.median([r["seconds"] for r in recs[mode]])) if recs[mode] else float("nan")  # noqa: E731
    cb, cc = med("base"), med("comp")
    c = float(np.median([r["seconds"] for r in recs["base"] + recs["comp"]]))
    lines.append(f"- Cost per candidate ({r3['steps']} iterations): median {cc:.1f} s in comp, {cb:.1f} s in base "
                 f"(the same work; the difference is the load); pre-training {pre:.0f} s = {pre / c:.1f} candidates "
                 f"at the median of both. With a fixed budget per candidate, the speedup is (N_base · c) / (N_comp · c + P): "
                 f"even if comp needed 1 candidate and base all {n}, it would be {n / (1 + pre / c):.1f}× here; 10× "
                 f"needs a subspace of at least {int(np.ceil(10 * (1 + pre / c)))} with base searching through all "
                 f"of it. Wootz's ResNet-50 (Flowers102, α = +1%: comp 8.3 h at 82.8% overhead, base 2,858.7 h / 500 "
                 f"candidates) had P ≈ 6.9 h ≈ 1.2 candidates of 5.7 h, and subspaces of 500.")
    cost = t3.get("cost")
    if cost:
        k = cost["result"]
        cu = (k["default_cpu"] + k["block_cpu"]) / 2
        ratio = k["pretrain_cpu"] / cu
        lines.append(f"- The same ratio in CPU seconds, measured one after the other in one process (1 torch thread; "
                     f"CPU time depends far less on the load): pre-training all {k['blocks']} blocks "
                     f"({k['groups']} groups) {k['pretrain_cpu']:.0f} s, "
                     f"one candidate {k['default_cpu']:.1f} s default / {k['block_cpu']:.1f} s block-trained: P = "
                     f"{ratio:.1f} candidates; the bound at {n} is {n / (1 + ratio):.1f}×, and 10× needs a subspace of "
                     f"at least {int(np.ceil(10 * (1 + ratio)))} (with base evaluating all of it, comp one). "
                     f"{timing(cost['time'])}.")
        est = lambda m: (2 * m * cu + k["pretrain_cpu"]) / 3600  # noqa: E731
        todo = left(n)
        if todo:
            lines.append(f"- Not run (time): the issue's subspaces of {', '.join(map(str, todo))} (Table 3 and Table 4 "
                         "at those sizes) and Table 5. Estimated from these CPU seconds (both searches exhaustive, "
                         "every candidate once): "
                         + ", ".join(f"{m} configurations {est(m):.1f} CPU-hours" for m in todo)
                         + " — about half that in wall time with `--workers 2` on two free cores, several times "
                           "it on a machine as loaded as this one. Command: `python benchmarks/wootz_fashion.py "
                           f"--reuse-published --table3 {todo[0]} --table3-steps {r3['steps']} --workers 2`"
                         + (f" (then {', '.join(map(str, todo[1:]))})." if todo[1:] else ".")
                         + " With `--table3-reuse RUN_DIR` (a run folder at a smaller size) the configurations the "
                           "two samples share are not trained again.")
    late = lambda mode: [float(np.std([a for it, a in r["curve"] if it >= r3["steps"] // 2]))  # noqa: E731
                         for r in recs[mode] if len(r["curve"]) > 3]
    if late("base") or late("comp"):
        lines.append(f"- Noise of one candidate's validation accuracy over the second half of its fine-tuning (fixed "
                     f"lr, a test every {r3['interval']}): median standard deviation "
                     f"{100 * np.median(late('base') or [np.nan]):.1f} points (default), "
                     f"{100 * np.median(late('comp') or [np.nan]):.1f} (block-trained), against α steps of 1 point: "
                     f"whether a candidate near its plateau passes a threshold also depends on the iteration its "
                     f"budget ends at.")
    sweep = r3.get("sweep") or {}
    if len(sweep) > 1:
        full_k = str(r3["steps"])
        for label, pair in (("both at budget k", lambda k: zip(sweep[k], sweep[k])),
                            (f"base at {full_k}, comp at k", lambda k: zip(sweep[full_k], sweep[k]))):
            fb = (lambda k: int(k) / r3["steps"]) if label.startswith("both") else (lambda k: 1.0)
            cands = [(sp_value(rb, rc, unit, fb(k), int(k) / r3["steps"]), k, rb["alpha"])
                     for k in sweep for rb, rc in pair(k)
                     if rc["time comp"] and rb.get("covered base", True) and rc.get("covered comp", True)
                     and no_larger({**rc, "size base": rb["size base"]})]
            if cands:
                sp, k, al = max(cands)
                lines.append(f"- Best speedup over the budgets of (d), {label}, with comp's answer no larger: "
                             f"{sp:.2f}× (k = {k}, α = {100 * al:+g}%).")
    lines += window(r3, unit)
    for r in rows:
        passing = lambda ev: [e for e in ev if e["accuracy"] >= r["threshold"]]  # noqa: E731
        pb, pc = passing(recs["base"]), passing(recs["comp"])
        small = lambda ps: PCT(min(e["params"] for e in ps) / r3["full size"]) if ps else "—"  # noqa: E731
        lines.append(f"  - α {100 * r['alpha']:+g}% (threshold {r['threshold']:.3f}): {len(pb)} of {len(recs['base'])} "
                     f"default and {len(pc)} of {len(recs['comp'])} block-trained candidates evaluated pass; "
                     f"smallest passing {small(pb)} / {small(pc)}.")
    return lines
