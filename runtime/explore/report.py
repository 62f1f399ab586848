"""The prune report: Wootz Table 3's columns (terminal table with rich, JSON, Markdown, HTML),
Figure 6 (test accuracy during fine-tuning, block-trained vs default) and Figure 7 (final
accuracy vs model size, default vs block-trained) as PNGs the Markdown and HTML embed.

The figures are built by `figure_*` functions that return the matplotlib Figure (tests inspect
its series) and saved by `plot_*`; everything they show comes from the evaluation records."""
from __future__ import annotations

import json
import textwrap
from html import escape
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from cococ.runtime.explore.earlystop import accuracy_constraints

COLUMNS = ["threshold acc", "#configs base", "#configs comp", "time base (s)", "time comp (s)",
           "model size base", "model size comp", "speedup", "overhead"]


# the early stop's effect per search (SearchResult), beside Table 3's columns
EARLY_STOP = {"stopped early": lambda s: len(s.stopped), "iterations run": lambda s: s.iterations,
              "iterations budget": lambda s: s.steps * len(s.evaluated),
              "seconds saved (estimate)": lambda s: s.saved_seconds}


def _threshold(objective) -> float | None:
    """Table 3's "threshold acc": the first Accuracy constraint's value, whatever its direction.
    Not earlystop.accuracy_floor (the largest `>=`/`>` bound): they differ for `Accuracy <= t`
    (t here, None there) and for two Accuracy constraints (the first here, the largest lower there)."""
    cs = accuracy_constraints(objective)
    return cs[0].value if cs else None


def table_row(run) -> dict:
    """One row of Table 3. Times are 1-node compute time (summed training seconds of the
    configurations evaluated, plus pre-training for comp); sizes are % of the full model."""
    b, c = run.base, run.comp

    def size(s):
        return None if s is None or s.answer is None else s.answer["params"] / run.full_size

    tb = b.total_seconds if b else None
    tc = c.total_seconds if c else None
    return {"threshold acc": _threshold(run.objective),
            "#configs base": b.configs_evaluated if b else None, "#configs comp": c.configs_evaluated if c else None,
            "time base (s)": tb, "time comp (s)": tc,
            "model size base": size(b), "model size comp": size(c),
            "speedup": (tb / tc) if tb and tc else None,
            "overhead": (c.pretrain_seconds / tc) if c and tc else None,
            "answer base": list(b.answer["config"]) if b and b.answer else None,
            "answer comp": list(c.answer["config"]) if c and c.answer else None,
            **{f"{k} {m}": (f(s) if s else None) for m, s in (("base", b), ("comp", c))
               for k, f in EARLY_STOP.items()}}



def _fmt(k: str, v) -> str:
    if v is None:
        return "—"
    if k.startswith("model size") or k == "overhead":
        return f"{100 * v:.1f}%"
    if k == "speedup":
        return f"{v:.2f}×"
    if isinstance(v, float):
        return f"{v:.4g}" if not k.startswith("time") else f"{v:.1f}"
    return str(v)


def markdown(rows: list[dict], title: str = "") -> str:
    head = ["α"] * ("alpha" in rows[0]) + COLUMNS
    lines = ([f"### {title}", ""] if title else []) + ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = ([f"{100 * r['alpha']:+g}%"] if "alpha" in r else []) + [_fmt(k, r[k]) for k in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# the terminal's headers, two lines each so that the table fits 100 columns (Table 3's names, kept
# in the Markdown and JSON, need ~140); LEGEND says what the short names mean
SHORT = {"threshold acc": "accuracy\n≥", "#configs base": "configs\nbase", "#configs comp": "configs\ncomp",
         "time base (s)": "time (s)\nbase", "time comp (s)": "time (s)\ncomp", "model size base": "size\nbase",
         "model size comp": "size\ncomp", "speedup": "speedup\n", "overhead": "overhead\n"}
LEGEND = ("base: the search with default networks; comp: with pre-trained blocks (composability); "
          "configs: candidates evaluated; time: 1-node compute seconds; size: % of the full model's "
          "params; overhead: pre-training's share of comp's time")


def print_table(rows: list[dict], title: str = "cococ prune", out=None) -> None:
    """Table 3 for the terminal (~90 columns), with the legend of its short headers. Output that
    is not a terminal gets 100 columns: rich's default of 80 there cut the table's columns."""
    t = Table(title=Text(title), title_justify="left")   # Text: "Cycles[arm-m4]" is not rich markup
    for k in COLUMNS:
        t.add_column(SHORT[k], justify="right", no_wrap=True)
    for r in rows:
        t.add_row(*[_fmt(k, r[k]) for k in COLUMNS])
    console = Console(file=out, highlight=False)
    if not console.is_terminal:
        console.width = 100
    console.print(t)
    print(textwrap.fill(LEGEND, min(console.width, 100)), file=console.file)


MODES = (("base", "default (base)", "x", "--"), ("comp", "block-trained (comp)", "o", "-"))


def _pyplot():
    import matplotlib  # local: loads only when a plot is drawn, and Agg must be chosen before pyplot
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def figure_accuracy_vs_size(run):
    """Wootz Figure 7: final accuracy vs model size of every evaluated candidate, one scatter
    series per mode (default vs block-trained), with the full model and the threshold as lines."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for mode, label, mark, _ in MODES:
        s = getattr(run, mode)
        if s is None or not s.evaluated:
            continue
        ax.scatter([100 * e["params"] / run.full_size for e in s.evaluated], [e["accuracy"] for e in s.evaluated],
                   marker=mark, label=label, alpha=0.8)
    if run.full_accuracy is not None:
        ax.axhline(run.full_accuracy, color="gray", ls="--", lw=1, label="full model")
    t = _threshold(run.objective)
    if t is not None:
        ax.axhline(t, color="red", ls=":", lw=1, label="threshold")
    ax.set_xlabel("model size (% of full)")
    ax.set_ylabel("final accuracy")
    ax.set_title("evaluated candidates (Wootz Fig. 7)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def figure_curves(run, max_candidates: int = 8):
    """Wootz Figure 6: test accuracy during fine-tuning, block-trained (solid) vs default (dashed).

    One colour per candidate, one line per (candidate, mode) with a recorded curve. Candidates
    evaluated in both modes come first (they are the comparison the figure is for), then the
    rest in evaluation order, at most `max_candidates` so the lines stay readable.
    """
    plt = _pyplot()
    recs = {m: {e["idx"]: e for e in getattr(run, m).evaluated if e.get("curve")}
            for m, *_ in MODES if getattr(run, m) is not None}
    both = [i for i in recs.get("comp", {}) if i in recs.get("base", {})]
    rest = [i for m in recs for i in recs[m] if i not in both]
    chosen = list(dict.fromkeys(both + rest))[:max_candidates]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, idx in enumerate(chosen):
        for mode, label, _, ls in MODES:
            e = recs.get(mode, {}).get(idx)
            if e is None:
                continue
            it, acc = zip(*e["curve"])
            size = 100 * e["params"] / run.full_size
            ax.plot(it, acc, ls=ls, marker=".", color=colors[k % len(colors)],
                    label=f"#{idx} ({size:.0f}%) {mode}")
    t = _threshold(run.objective)
    if t is not None:
        ax.axhline(t, color="red", ls=":", lw=1)
    ax.set_xlabel("fine-tuning iteration")
    ax.set_ylabel("test accuracy")
    ax.set_title("fine-tuning curves: block-trained (solid) vs default (dashed) (Wootz Fig. 6)")
    ax.title.set_fontsize(9)
    if chosen:
        ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    return fig


def _save(fig, path) -> Path:
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return Path(path)


def plot_accuracy_vs_size(run, path) -> Path:
    return _save(figure_accuracy_vs_size(run), path)


def plot_curves(run, path) -> Path:
    return _save(figure_curves(run), path)


def html(row: dict, md_intro: str, images: dict[str, str]) -> str:
    """A self-contained page: the Table 3 row, the answers and both figures (relative PNGs)."""
    head = "".join(f"<th>{escape(k)}</th>" for k in COLUMNS)
    cells = "".join(f"<td>{escape(_fmt(k, row[k]))}</td>" for k in COLUMNS)
    figs = "".join(f'<figure><img src="{escape(src)}" alt="{escape(alt)}"><figcaption>{escape(alt)}</figcaption>'
                   f"</figure>" for alt, src in images.items())
    return ("<!doctype html><html><head><meta charset='utf-8'><title>cococ prune report</title>"
            "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}table{border-collapse:collapse}"
            "td,th{border:1px solid #999;padding:.2em .5em;text-align:right}img{max-width:100%}</style></head>"
            f"<body><h1>cococ prune report</h1><p>{escape(md_intro)}</p><table><tr>{head}</tr><tr>{cells}</tr>"
            f"</table><p>Answer (comp): {escape(str(row['answer comp']))}; answer (base): "
            f"{escape(str(row['answer base']))}.</p>{figs}</body></html>\n")


def written_answer(run) -> dict | None:
    """Which answer the pruned.* files hold, labelled: the composability search's, or the
    baseline's (a default network) when only the baseline found one."""
    s = run.chosen
    if s is None or s.answer is None:
        return None
    label = ("the composability search's answer (assembled from pre-trained blocks)" if s.mode == "comp" else
             "the baseline's answer (a default network: ℓ1-pruned, fine-tuned)"
             + ("; the composability search found none" if run.comp is not None else ""))
    return {"mode": s.mode, "config": list(s.answer["config"]), "label": label}


def write_report(run, out_dir) -> dict[str, Path]:
    """report.json (everything, curves included), report.md and report.html (table + figures),
    accuracy_vs_size.png (Figure 7) and finetune_curves.png (Figure 6)."""
    out = Path(out_dir)
    row = table_row(run)
    data = {"objective": str(run.objective), "full_size": run.full_size, "full_accuracy": run.full_accuracy,
            "configs": len(run.configs), "tuning_blocks": run.blocks, "table3": row, "pruned": written_answer(run),
            "evaluations": {m: [{k: e.get(k) for k in ("idx", "config", "params", "macs", "accuracy", "curve",
                                                      "seconds", "worker", "iterations", "stop")}
                                for e in s.evaluated]
                            for m, s in (("base", run.base), ("comp", run.comp)) if s is not None}}
    paths = {"json": out / "report.json", "md": out / "report.md", "html": out / "report.html",
             "png": out / "accuracy_vs_size.png", "curves": out / "finetune_curves.png"}
    paths["json"].write_text(json.dumps(data, indent=1, default=list))
    intro = (f"Objective: `{run.objective}`; {len(run.configs)} configurations, {run.blocks} tuning blocks; "
             f"full model {run.full_size} parameters"
             + (f", accuracy {run.full_accuracy:.4f}" if run.full_accuracy is not None else "") + ".")
    note = ("Times are compute seconds on one node (training of each evaluated configuration, plus "
            "tuning-block pre-training for comp); overhead is pre-training's share of comp's time.")
    images = {"Fine-tuning curves, block-trained vs default (Wootz Fig. 6)": paths["curves"].name,
              "Final accuracy vs model size (Wootz Fig. 7)": paths["png"].name}
    w = written_answer(run)
    pruned = f"pruned.* hold {w['label']}: rates {w['config']}." if w else "No answer: no pruned.* written."
    md = ["# cococ prune report\n\n", intro + "\n\n", markdown([row]),
          f"\nAnswer (comp): {row['answer comp']}; answer (base): {row['answer base']}. {pruned}\n\n", note + "\n"]
    md += [f"\nEarly stop, {s.early_stop_summary()}.\n" for s in (run.comp, run.base) if s is not None]
    md += [f"\n![{alt}]({src})\n" for alt, src in images.items()]
    paths["md"].write_text("".join(md))
    paths["html"].write_text(html(row, f"{intro} {pruned} {note}", images))
    plot_curves(run, paths["curves"])
    plot_accuracy_vs_size(run, paths["png"])
    return paths
