"""Issue 16: the ResNet-20 teacher on Fashion-MNIST (examples/resnet20) and the §7 protocol at
that scale (benchmarks/wootz_fashion.py). The full run is the benchmark itself
(docs/performance.md); here its --quick mode runs every part at tiny scale."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import cococ
from cococ.ir.verify import infer_shapes
from cococ.runtime.data import load_data
from cococ.runtime.explore.evaluate import graph_cost

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "wootz_fashion.py"
EXAMPLE = ROOT / "examples" / "resnet20"
sys.path.insert(0, str(ROOT / "benchmarks"))

from wootz_fashion import subset, within  # noqa: E402
from wootz_fashion_t3 import ALPHAS, at_budget  # noqa: E402


def test_resnet20_has_nine_modules_and_resnet20_size():
    g = cococ.load(EXAMPLE / "resnet20.prototxt", init="random")
    assert g.modules == [f"res{s}{m}" for s in (2, 3, 4) for m in "abc"]
    params, macs = graph_cost(g)
    assert (params, macs) == (273754, 31329280)   # ResNet-20's ~270k (+ two 1x1 projections)


def test_shipped_teacher_is_trained():
    """The shipped weights load and classify Fashion-MNIST (first 500 test images; ~2 s)."""
    g = cococ.load(EXAMPLE / "resnet20.prototxt", weights=EXAMPLE / "resnet20.safetensors")
    infer_shapes(g)
    from wootz_fashion import accuracy
    test = subset(load_data("fashion-mnist", g.inputs[0].type.shape), 500, "test")
    assert accuracy(g, test) > 0.85


def test_within_one_point_needs_the_curve_to_stay():
    curve = [[0, 0.1], [10, 0.80], [20, 0.70], [30, 0.795], [40, 0.80], [50, 0.81]]
    assert within(curve) == 30          # 20's dip counts: the curve has not stayed yet
    assert within([[0, 0.5]]) == 0
    assert within([[0, 0.1], [10, 0.9], [20, 0.9], [30, 0.9]]) == 10


@pytest.mark.slow
def test_quick_runs_every_part(tmp_path):
    """66 s at load 4-5 on the shared 2-core machine (262-277 s at load 7-11): pre-training,
    curves, two Table 2s, a Table 3 (with its replays) and its cost measurement at tiny scale,
    through 2 worker processes, then a rerun that reuses every part."""
    r = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--no-write", "--workers", "2",
                        "--work", str(tmp_path)], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "### (b) Table 2, rates {0.5, 0.7, 0.9}" in r.stdout and "### (c) Table 3, subspace of 4" in r.stdout
    state = json.loads((tmp_path / "results.json").read_text())
    parts = {k.split(" {")[0]: v["result"] for k, v in state.items()}
    assert set(parts) == {"pretrain", "curves", "table2 set 0", "table2 set 1", "table3", "cost"}
    assert parts["cost"]["blocks"] > 0 and parts["cost"]["default_cpu"] > 0 and parts["cost"]["pretrain_cpu"] > 0
    for recs in parts["curves"]:
        for rec in recs:
            assert [it for it, _ in rec["default"]["curve"]] == [0, 3, 6]
    assert len(parts["table2 set 0"]) == 3 and all(0 <= n["block"]["init"] <= 1 for n in parts["table2 set 0"])
    t3 = parts["table3"]
    assert [row["alpha"] for row in t3["rows"]] == list(ALPHAS)
    assert set(t3["sweep"]) == {"2", str(t3["steps"])} and t3["sweep"][str(t3["steps"])] == t3["rows"]
    assert len(t3["early stop"]) == len(ALPHAS) and len(t3["records"]["comp"]) == 4
    assert "### (d) Table 3 at shorter fine-tuning budgets" in r.stdout and "### (g) Figures 6 and 7" in r.stdout
    again = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--no-write", "--workers", "2",
                            "--work", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and again.stdout.count("reused from") == 6   # nothing recomputed


def test_at_budget_reads_the_curve_and_scales_seconds():
    """A k-iteration fine-tuning's record from a longer run's curve (fixed lr: the same trajectory)."""
    rec = {"idx": 0, "accuracy": 0.9, "metrics": {"Accuracy": 0.9, "ModelSize": 10}, "seconds": 40.0,
           "curve": [[0, 0.1], [25, 0.6], [50, 0.8], [100, 0.9]]}
    got = at_budget([rec], 50, 100)[0]
    assert (got["accuracy"], got["metrics"]["Accuracy"], got["seconds"]) == (0.8, 0.8, 20.0)
    assert got["curve"] == [[0, 0.1], [25, 0.6], [50, 0.8]] and got["metrics"]["ModelSize"] == 10
    assert at_budget([rec], 100, 100)[0]["accuracy"] == 0.9
    assert at_budget([rec], 30, 100) == []          # no test at 30: no record (not a guess)


def test_rows_of_a_cut_off_run_say_what_the_records_bound():
    """--table3-partial: a search whose records end before its answer gives "> m" configs and a
    bounded speedup, not a guess (synthetic records, no training)."""
    from wootz_fashion_render import table3_rows
    from wootz_fashion_t3 import rows_for

    from cococ.frontend.objective import parse_objective
    statics = {i: {"ModelSize": 10 * (i + 1), "MACs": 100} for i in range(4)}
    rec = lambda i, acc: {"idx": i, "params": 10 * (i + 1), "accuracy": acc, "seconds": 10.0,  # noqa: E731
                          "metrics": {**statics[i], "Accuracy": acc}, "curve": [[0, 0.1], [4, acc]]}
    base = [rec(0, 0.5), rec(1, 0.6)]                      # cut off after 2 of 4
    comp = [rec(0, 0.7), rec(1, 0.95), rec(2, 0.9), rec(3, 0.9)]
    at = lambda alpha: parse_objective(f"min ModelSize constraint Accuracy >= {0.9 - alpha!r}")  # noqa: E731
    rows = rows_for(at, statics, base, comp, 5.0, 40, (0.0, 0.35))
    r0, r35 = rows
    assert (r0["configs comp"], r0["covered comp"], r0["size comp"]) == (2, True, 0.5)
    assert (r0["configs base"], r0["covered base"], r0["time base"]) == (2, False, 20.0)
    assert (r35["configs base"], r35["covered base"], r35["configs comp"]) == (2, True, 1)
    text = table3_rows(rows)
    assert "| +0% | 0.9 | > 2 | 2 |" in text and "≥ 0.80×" in text      # 20 s / (20 s + 5 s pre-training)
    assert "| +35% | 0.55 | 2 | 1 |" in text and "1.33×" in text          # 20 s / (10 s + 5 s)


def test_table4_sizes_double_up_to_below_the_run():
    from wootz_fashion_t3 import table4_sizes
    assert table4_sizes(4) == [] and table4_sizes(32) == [4, 8, 16]
    assert table4_sizes(64) == [4, 8, 16, 32] and table4_sizes(500) == [4, 8, 16, 32, 64, 128, 256]


def t3_run(n: int, base: int, comp: int) -> dict:
    """A synthetic Table 3 run at subspace n whose only row's answers are base's and comp's
    `base`-th and `comp`-th candidates (unit costs 10 s a candidate, 20 s pre-training)."""
    row = {"alpha": 0.02, "threshold": 0.9, "configs base": base, "configs comp": comp, "time base": 10.0 * base,
           "time comp": 10.0 * comp + 20, "size base": 0.5, "size comp": 0.4, "pretrain": 20.0, "covered base": True,
           "covered comp": True, "speedup": base / (comp + 2), "overhead": 0.1}
    return {"result": {"n": n, "rows": [row], "table4": {"4": [[row]] * 2}, "evaluated": {"base": n, "comp": n},
                       "mean acc base": 0.89, "mean acc comp": 0.9, "records": {}},
            "cost": {"result": {"default_cpu": 10.0, "block_cpu": 10.0, "pretrain_cpu": 20.0}}}


def test_a_run_keeps_the_published_table3_of_other_sizes_with_its_settings(tmp_path):
    """--reuse-published at subspace 64 keeps the published subspace-32 Table 3 (same settings),
    not one of other settings, and not one of its own size (which it replaces)."""
    from wootz_fashion_sizes import kept_table3, render_sizes
    settings = {"sets": "0.3,0.5,0.7;0.5,0.7,0.9", "table3_steps": 175, "table3_interval": 25, "val": 1000,
                "pretrain_steps": 150, "pretrain_lr": 0.02, "ft_lr": 0.01, "table3": 32}
    other = {**t3_run(16, 4, 1), "settings": {"rates": "0.3,0.5,0.7", "table3_steps": 60}}
    path = tmp_path / "wootz-fashion.json"
    path.write_text(json.dumps({"settings": settings, "table3": t3_run(32, 12, 2),
                                "table3 other sizes": {"16": other}}))
    assert kept_table3({**settings, "table3": 32}, 32, path) == {}
    kept = kept_table3({**settings, "table3": 64}, 64, path)
    assert list(kept) == ["32"] and kept["32"]["result"]["rows"][0]["configs base"] == 12
    assert kept_table3({**settings, "table3_steps": 100}, 64, path) == {}
    sections, reading = render_sizes(t3_run(64, 24, 1), kept)
    assert "### (h) Table 3, subspace of 32" in sections[0] and "| 32 | the whole run | 1 | 3.00× |" in sections[1]
    assert "| 64 | the whole run | 1 | 8.00× |" in sections[1]
    assert "| 4 | drawn from 64 | 2 | 8.00× (2) |" in sections[1]
    # comp's answer is its 1st: with base's at 24/64 of a larger subspace, 10× at 10·(10 + 20) / (10·24/64) = 80
    # the cap n / (1 + P/c), P = 2 candidates: 32 / 3 → 64 / 3; the best measured speedups 3× → 8×
    assert "goes 10.67× → 21.33×, while the best measured speedup" in reading[0] and "goes 3.00× → 8.00×" in reading[0]
    assert "32: base 12, comp 2 → 3.00×; 64: base 24, comp 1 → 8.00×" in reading[1]
    assert "10× needs about 80 configurations" in reading[1]
    _, reading = render_sizes(t3_run(64, 24, 4), kept)      # answers in proportion: 24·10 / (4·10) = 6×
    assert "tends to 6.0×" in reading[1] and "10× at no size" in reading[1]


def test_table3_reuse_copies_shared_configurations_only_under_the_same_settings(tmp_path, monkeypatch):
    """--table3-reuse: the other run's evaluations of configurations this subspace holds are copied
    (re-indexed, marked reused; one it had copied itself keeps its first source), and a run of other
    settings is refused with a one-line error (the settings are stubbed: no network is built)."""
    import argparse

    import wootz_fashion_t3 as t3
    from composability import finetune_solver

    from cococ.ir.core import CococError
    from cococ.runtime.explore.records import RunDB
    other, mine = tmp_path / "other", tmp_path / "mine"
    src = RunDB(other / "run.sqlite")
    src.set_meta("settings", {"subspace": "2 configurations", "steps": 175})
    rec = lambda i, c, w: {"idx": i, "config": c, "params": 10, "metrics": {"Accuracy": 0.9},  # noqa: E731
                           "accuracy": 0.9, "curve": [[0, 0.1], [175, 0.9]], "seconds": 5.0, "worker": w}
    src.add_evaluation("base", rec(0, (0.7, 0.7), "vm:1"))
    src.add_evaluation("comp", rec(1, (0.3, 0.7), "vm:2"))
    src.add_evaluation("comp", rec(0, (0.7, 0.7), t3.REUSED + "older vm:3"))
    src.add_evaluation("comp", rec(2, (0.5, 0.5), "vm:4"))            # not in this subspace
    src.close()
    settings = {"steps": 175}
    monkeypatch.setattr("cococ.runtime.explore.settings.run_settings",
                        lambda *args, **kw: {"subspace": "3 configurations", **settings})
    monkeypatch.setattr(t3, "table3_dir", lambda a, full, configs: mine)
    a = argparse.Namespace(table3_steps=175, ft_lr=0.01, table3_interval=25, val=100, pretrain_lr=0.02,
                           pretrain_steps=150)
    configs = [(0.3, 0.3), (0.3, 0.7), (0.7, 0.7)]
    assert t3.reuse_shared(a, None, None, configs, finetune_solver, other) == 3
    db = RunDB(mine / "run.sqlite")
    got = {(r["mode"], r["idx"]): r for r in db.evaluations()}
    db.close()
    assert set(got) == {("base", 2), ("comp", 1), ("comp", 2)} and got[("comp", 1)]["config"] == (0.3, 0.7)
    assert got[("comp", 2)]["worker"] == t3.REUSED + "older vm:3"
    assert t3.slim(got[("base", 2)])["reused"] and got[("base", 2)]["worker"] == t3.REUSED + "other vm:1"
    assert t3.reuse_shared(a, None, None, configs, finetune_solver, other) == 0     # already there
    settings["steps"] = 100
    with pytest.raises(CococError, match=r"--table3-reuse .*other: its settings differ .*steps: 175 -> 100"):
        t3.reuse_shared(a, None, None, configs, finetune_solver, other)
    with pytest.raises(CococError, match="no run database"):
        t3.reuse_shared(a, None, None, configs, finetune_solver, tmp_path / "none")


def test_rows_with_a_gap_in_the_order_bound_from_the_prefix_before_it():
    """Records with a gap in the smallest-first order (a reused run still filling in) count only up
    to the gap: the replay never reads past a candidate it has no record of."""
    from wootz_fashion_t3 import rows_for

    from cococ.frontend.objective import parse_objective
    statics = {i: {"ModelSize": 10 * (i + 1), "MACs": 100} for i in range(4)}
    rec = lambda i, acc: {"idx": i, "params": 10 * (i + 1), "accuracy": acc, "seconds": 10.0,  # noqa: E731
                          "metrics": {**statics[i], "Accuracy": acc}, "curve": [[0, 0.1], [4, acc]]}
    at = lambda alpha: parse_objective(f"min ModelSize constraint Accuracy >= {0.9 - alpha!r}")  # noqa: E731
    base = [rec(0, 0.5), rec(2, 0.95), rec(3, 0.95)]        # candidate 1 not evaluated yet
    r = rows_for(at, statics, base, base, 0.0, 40, (0.0,))[0]
    assert (r["configs base"], r["covered base"], r["time base"]) == (1, False, 10.0)
    r = rows_for(at, statics, base + [rec(1, 0.5)], base, 0.0, 40, (0.0,))[0]
    assert (r["configs base"], r["covered base"], r["size base"]) == (3, True, 0.75)


def test_table3_set_names_its_rates_in_the_run_folder_and_refuses_a_missing_set():
    """--table3-set 1: Table 3 on the second rate set, in its own run folder (the first set's
    folder name, and so its records, unchanged); a set --sets does not have is a usage error."""
    import argparse

    from wootz_fashion import main
    from wootz_fashion_t3 import table3_dir, table3_rates
    full = cococ.load(EXAMPLE / "resnet20.prototxt", init="random")
    a = argparse.Namespace(sets="0.3,0.5,0.7;0.5,0.7,0.9", table3_set=0, work="/w", table3_steps=175,
                           pretrain_steps=150, table3_interval=25)
    assert table3_rates(a) is None and table3_dir(a, full, [()] * 32).name.endswith("_n32_t175_p150_i25")
    a.table3_set = 1
    assert table3_rates(a) == "0.5,0.7,0.9"
    assert table3_dir(a, full, [()] * 32).name.endswith("_n32_t175_p150_i25_r0.5-0.7-0.9")
    with pytest.raises(SystemExit) as e:
        main(["--table3-set", "2"])
    assert e.value.code == 2


def test_a_run_on_another_rate_set_keeps_the_published_first_set_table3(tmp_path):
    """--reuse-published --table3-set 1: the published Table 3 on the first rate set (and its
    kept sizes) stays (c)-(i) and the JSON's "table3"; the new run goes under "table3 other rates",
    shown as its own Table 3 with its rates, compared with the first set's at its size."""
    from wootz_fashion_rates import arrange, render_rates
    settings = {"sets": "0.3,0.5,0.7;0.5,0.7,0.9", "table3_steps": 175, "table3_interval": 25, "val": 1000,
                "pretrain_steps": 150, "pretrain_lr": 0.02, "ft_lr": 0.01, "table3": 64, "workers": 2}
    kept32 = {**t3_run(32, 12, 2), "settings": {"rates": "0.3,0.5,0.7", "table3_steps": 175, "table3_interval": 25,
                                                 "val": 1000, "pretrain_steps": 150, "pretrain_lr": 0.02,
                                                 "ft_lr": 0.01}}
    path = tmp_path / "wootz-fashion.json"
    path.write_text(json.dumps({"settings": settings, "table3": t3_run(64, 24, 1),
                                "table3 other sizes": {"32": kept32}}))
    mine = t3_run(32, 20, 1)
    mine["result"].update(steps=175, blocks=27, partial=True)     # written from its records: no time of its own
    show = arrange({**settings, "table3": 32, "table3_set": 1}, mine, True, path)
    assert show["settings"] == settings and show["t3"]["result"]["n"] == 64 and list(show["kept"]) == ["32"]
    assert list(show["rates"]) == ["0.5,0.7,0.9"] and show["rates"]["0.5,0.7,0.9"]["settings"]["rates"] == "0.5,0.7,0.9"
    assert sorted(show["firsts"]) == [32, 64]
    sections, reading = render_rates(show["rates"], show["firsts"])
    assert sections[0].startswith("### (j) Table 3 on the rate set {0.5, 0.7, 0.9}: subspace of 32")
    assert "| +2% | 0.9 | 20 | 1 |" in sections[0]
    # 20·10 / (1·10 + 20) = 6.67× here, against the first set's 12·10 / (2·10 + 20) = 3× at 32
    assert "best 6.67× at α = +2% (equal load), against 3.00× at α = +2% on {0.3, 0.5, 0.7}" in reading[0]
    # a later run on the first set keeps the published run on the other set; without --reuse-published nothing
    path.write_text(json.dumps({"settings": settings, "table3": t3_run(64, 24, 1),
                                "table3 other rates": show["rates"]}))
    again = arrange({**settings, "table3": 256}, t3_run(256, 90, 3), True, path)
    assert again["t3"]["result"]["n"] == 256 and list(again["rates"]) == ["0.5,0.7,0.9"]
    assert arrange({**settings, "table3_set": 1}, mine, False, path)["rates"] == {}
