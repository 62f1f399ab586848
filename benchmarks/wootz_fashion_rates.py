"""Table 3 of benchmarks/wootz_fashion.py on another of --sets' rate sets (`--table3-set`, issue 16).

The issue asks for Table 3 also on a harsher rate set ({0.5, 0.7, 0.9}), where default networks
start further away. Such a run has its own records (run folder and settings key named by its
rates, wootz_fashion_t3.table3_rates) and its own place in the section: with `--reuse-published`
the published Table 3 on the first rate set stays (c)-(i), unchanged, and in
docs/benchmarks/wootz-fashion.json "table3" and "settings" stay that run's; a run on another rate
set goes under "table3 other rates" (by its rates, as --sets spells them) and is shown after
them as its own Table 3, its rates in the heading, with its candidates' curves and its reading.
"""
from __future__ import annotations

import json
from pathlib import Path

from wootz_fashion_render import F4, figures, no_larger, reading_t3, sp_value, span, speedup, table3_rows, timing
from wootz_fashion_sizes import PUBLISHED, kept_table3, t3_settings, unit_of


def rates_of(settings: dict) -> str:
    """The rate set a run's Table 3 sampled, as --sets spells it."""
    return settings["sets"].split(";")[settings.get("table3_set") or 0]


def other_rates(settings: dict, t3: dict, path: Path = PUBLISHED) -> tuple[dict | None, dict[str, dict]]:
    """(the published run to show as (c) in place of this one, or None; the Table 3 runs on rate
    sets other than the first, by rates). A run on the first rate set keeps the published runs on
    the others; a run on another set joins them, and the published run on the first set (its
    settings, Table 3 and kept sizes) stays (c)."""
    p = json.loads(path.read_text()) if path.exists() else {}
    runs = dict(p.get("table3 other rates", {}))
    mine = rates_of(settings)
    if not settings.get("table3_set"):
        runs.pop(mine, None)
        return None, runs
    runs[mine] = {"settings": {**t3_settings(settings), "table3": t3["result"]["n"], "workers": settings["workers"]},
                  **t3}
    first = p.get("table3") and rates_of(p["settings"]) != mine
    return (p if first else None), runs


def arrange(settings: dict, t3: dict | None, reuse: bool, path: Path = PUBLISHED) -> dict:
    """What the section and the JSON hold: "settings" and "t3" of the Table 3 shown as (c) (the
    published one on the first rate set where this run is on another), "kept" (its published
    runs at other sizes, wootz_fashion_sizes.kept_table3), "rates" (the runs on other rate sets)
    and "firsts" (the runs on the first rate set by size, to compare those with)."""
    if not reuse or t3 is None:
        return {"settings": settings, "t3": t3, "kept": {}, "rates": {}, "firsts": {}}
    pub, runs = other_rates(settings, t3, path)
    if pub is None:             # no published run on the first set: this one is (c), not also (j)
        runs.pop(rates_of(settings) if settings.get("table3_set") else None, None)
    s, shown = (pub["settings"], pub["table3"]) if pub else (settings, t3)
    kept = kept_table3(s, shown["result"]["n"], path)
    firsts = {int(n): run for n, run in kept.items()}
    if not s.get("table3_set"):
        firsts[shown["result"]["n"]] = {"settings": t3_settings(s), **shown}
    return {"settings": s, "t3": shown, "kept": kept, "rates": runs, "firsts": firsts}


def braces(rates: str) -> str:
    return "{" + ", ".join(f"{float(r):g}" for r in rates.split(",")) + "}"


def render_rates(runs: dict[str, dict], firsts: dict[int, dict]) -> tuple[list[str], list[str]]:
    """(sections, reading lines) of the Table 3 runs on other rate sets; `firsts`: the Table 3
    runs on the first rate set shown above, by size, to compare each with the one of its size."""
    out, lines = [], []
    for rates, run in sorted(runs.items()):
        r3, unit, name = run["result"], unit_of(run), braces(rates)
        out.append(f"### (j) Table 3 on the rate set {name}: subspace of {r3['n']}, {r3['steps']} fine-tuning "
                   f"iterations\n\nThe protocol of (c) (the same settings, teacher and budget) on a subspace of "
                   f"{r3['n']} sampled from the rates {name} (seed 0; `--table3-set`; its own tuning blocks: "
                   f"{r3['rows'][0]['pretrain']:.0f} s pre-training, {r3['blocks']} blocks, all charged to comp), the "
                   f"issue's harsher set (Table 2, {name}: default networks end further from the teacher). "
                   f"{r3['evaluated']['base']} default and "
                   f"{r3['evaluated']['comp']} block-trained candidates evaluated; mean validation accuracy: default "
                   f"{F4(r3['mean acc base'])}, block-trained {F4(r3['mean acc comp'])}. {run['settings']['workers']} "
                   f"worker processes." + ("" if r3.get("partial") else f" {timing(run['time'])}.")
                   + (" **A cut-off run** (`--table3-partial`): where a search's records end before its answer the "
                      "table says \"> m\" configurations and the speedup is a bound (≥, ≤)."
                      if min(r3["evaluated"].values()) < r3["n"] else "")
                   + span(r3) + " Its shorter budgets, early stop and Table 4 are in the JSON.\n\n"
                   + table3_rows(r3["rows"], unit=unit))
        if r3.get("records"):
            body = figures(r3["records"], r3["full size"], r3["steps"]).split("\n\n", 1)[1]
            out.append(f"### (k) Figures 6 and 7 on {name}: every candidate's validation curve, default / "
                       f"block-trained\n\n{body}")
        lines.append(f"- **On the rate set {name}** (subspace of {r3['n']}, (j)):"
                     + compare(run, firsts.get(r3["n"])))
        lines += ["  " + line for line in reading_t3(run) if not line.startswith("- Not run")]
    return out, lines


def best(run: dict) -> dict | None:
    """The row of a run's best equal-load speedup with comp's answer no larger than base's (a
    bound where base's records end before its answer), None if there is none."""
    rows = [r for r in run["result"]["rows"] if no_larger(r) and r.get("covered comp", True)
            and (sp_value(r, r, unit_of(run)) or 0) > 0]
    return max(rows, key=lambda r: sp_value(r, r, unit_of(run)), default=None)


def compare(run: dict, first: dict | None) -> str:
    """One sentence: the best speedup here against the first rate set's at the same size."""
    b = best(run)
    if b is None:
        return " comp found no answer no larger than base's at any α."
    here = f" best {speedup(b, b, unit_of(run))} at α = {100 * b['alpha']:+g}% (equal load)"
    f = best(first) if first else None
    return here + (f", against {speedup(f, f, unit_of(first))} at α = {100 * f['alpha']:+g}% on "
                   f"{braces(rates_of_run(first))} at the same subspace size." if f else ".")


def rates_of_run(run: dict) -> str:
    return run["settings"]["rates"]
