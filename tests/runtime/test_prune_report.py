"""The prune report's figures (Wootz Fig. 6 and 7), checked on the matplotlib Figure (series,
labels), not on pixels; and write_report's files: valid PNGs that the Markdown and HTML embed."""
from __future__ import annotations

import io
import json

import PIL.Image
import pytest

from cococ.frontend.objective import parse_objective
from cococ.runtime.explore import ExploreRun
from cococ.runtime.explore.report import (figure_accuracy_vs_size, figure_curves, print_table, table_row,
                                          write_report)
from cococ.runtime.explore.search import SearchResult

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def rec(idx, params, acc, curve):
    return {"idx": idx, "config": (0.5, 0.5), "params": params, "macs": 10 * params, "accuracy": acc,
            "curve": curve, "seconds": 1.0, "worker": "0", "metrics": {"ModelSize": params, "Accuracy": acc}}


def fake_run(base_idx=(0, 1, 2), comp_idx=(0, 1)) -> ExploreRun:
    obj = parse_objective("min ModelSize constraint Accuracy >= 0.9")
    sizes = {0: 100, 1: 200, 2: 300}
    base = [rec(i, sizes[i], 0.8 + 0.05 * i, [[0, 0.3], [10, 0.7], [20, 0.8 + 0.05 * i]]) for i in base_idx]
    comp = [rec(i, sizes[i], 0.85 + 0.05 * i, [[0, 0.6], [10, 0.8], [20, 0.85 + 0.05 * i]]) for i in comp_idx]
    b = SearchResult("base", base[-1], base, list(base_idx), True, 3.0, 3.0)
    c = SearchResult("comp", comp[-1], comp, list(comp_idx), True, 2.0, 2.0, pretrain_seconds=0.5)
    return ExploreRun(obj, [(0.5, 0.5)] * 3, {}, c, b, None, 1000, full_accuracy=0.95, blocks=2)


def labelled(lines):
    return [l for l in lines if not l.get_label().startswith("_")]


def test_figure7_one_scatter_series_per_mode():
    fig = figure_accuracy_vs_size(fake_run())
    ax = fig.axes[0]
    assert len(ax.collections) == 2
    assert [len(c.get_offsets()) for c in ax.collections] == [3, 2]     # base: 3 candidates, comp: 2
    assert [c.get_label() for c in ax.collections] == ["default (base)", "block-trained (comp)"]
    assert {l.get_label() for l in labelled(ax.lines)} == {"full model", "threshold"}


def test_figure6_one_curve_per_candidate_and_mode():
    fig = figure_curves(fake_run())
    lines = labelled(fig.axes[0].lines)
    assert len(lines) == 5                     # candidates 0, 1 in both modes, 2 in base only
    assert sorted(l.get_label() for l in lines) == ["#0 (10%) base", "#0 (10%) comp", "#1 (20%) base",
                                                    "#1 (20%) comp", "#2 (30%) base"]
    by = {l.get_label(): l for l in lines}
    assert list(by["#1 (20%) comp"].get_xdata()) == [0, 10, 20]
    assert by["#0 (10%) comp"].get_linestyle() == "-" and by["#0 (10%) base"].get_linestyle() == "--"
    assert by["#0 (10%) comp"].get_color() == by["#0 (10%) base"].get_color()


def test_figure6_caps_candidates_comparisons_first():
    fig = figure_curves(fake_run(), max_candidates=1)
    assert sorted(l.get_label() for l in labelled(fig.axes[0].lines)) == ["#0 (10%) base", "#0 (10%) comp"]


def test_figures_with_one_mode_only():
    run = fake_run()
    run.base = None
    assert len(figure_accuracy_vs_size(run).axes[0].collections) == 1
    assert len(labelled(figure_curves(run).axes[0].lines)) == 2


def test_write_report_files(tmp_path):
    paths = write_report(fake_run(), tmp_path)
    for key in ("png", "curves"):
        data = paths[key].read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 1000, key
    with PIL.Image.open(paths["curves"]) as im:
        im.verify()
    md, page = paths["md"].read_text(), paths["html"].read_text()
    for name in ("finetune_curves.png", "accuracy_vs_size.png"):
        assert f"]({name})" in md and f'src="{name}"' in page
    assert "<table>" in page and "speedup" in page
    rep = json.loads(paths["json"].read_text())
    assert rep["evaluations"]["comp"][0]["curve"] == [[0, 0.6], [10, 0.8], [20, 0.85]]


def test_terminal_table_fits_100_columns_with_a_legend():
    """Table 3's long headers needed ~140 columns; cut at 80 they read `thres…`, `spee…`."""
    f = io.StringIO()
    print_table([table_row(fake_run())], title="cococ prune: min ModelSize constraint Accuracy >= 0.9", out=f)
    lines = f.getvalue().splitlines()
    assert max(len(l.rstrip()) for l in lines) <= 100
    assert "…" not in f.getvalue()
    text = " ".join(f.getvalue().split())
    for word in ("accuracy", "configs", "speedup", "overhead", "base: the search with default networks"):
        assert word in text


def test_terminal_table_title_keeps_the_metrics_target():
    """rich read `[arm-m4, int8]` in the title as markup and dropped it: `min Cycles constraint ...`."""
    f = io.StringIO()
    print_table([table_row(fake_run())], title="cococ prune: min Cycles[arm-m4, int8] constraint Accuracy >= 0.9", out=f)
    assert "min Cycles[arm-m4, int8] constraint" in f.getvalue()
