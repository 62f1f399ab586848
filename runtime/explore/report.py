"""The prune report: Wootz Table 3's columns (terminal table with rich, JSON, Markdown) and
Figure 7's plot (final accuracy vs model size, default vs block-trained networks)."""
from __future__ import annotations

import json
from pathlib import Path

COLUMNS = ["threshold acc", "#configs base", "#configs comp", "time base (s)", "time comp (s)",
           "model size base", "model size comp", "speedup", "overhead"]


def _threshold(objective) -> float | None:
    for c in objective.constraints:
        if str(c.metric) == "Accuracy":
            return c.value
    return None


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
            "answer comp": list(c.answer["config"]) if c and c.answer else None}


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


def print_table(rows: list[dict], title: str = "cococ prune") -> None:
    from rich.console import Console
    from rich.table import Table
    t = Table(title=title)
    for k in COLUMNS:
        t.add_column(k, justify="right")
    for r in rows:
        t.add_row(*[_fmt(k, r[k]) for k in COLUMNS])
    Console().print(t)


def plot_accuracy_vs_size(run, path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    for s, label, mark in ((run.base, "default (base)", "x"), (run.comp, "block-trained (comp)", "o")):
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
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def write_report(run, out_dir) -> dict[str, Path]:
    out = Path(out_dir)
    row = table_row(run)
    data = {"objective": str(run.objective), "full_size": run.full_size, "full_accuracy": run.full_accuracy,
            "configs": len(run.configs), "tuning_blocks": run.blocks, "table3": row,
            "evaluations": {m: [{k: e[k] for k in ("idx", "config", "params", "macs", "accuracy", "curve",
                                                  "seconds", "worker")} for e in s.evaluated]
                            for m, s in (("base", run.base), ("comp", run.comp)) if s is not None}}
    paths = {"json": out / "report.json", "md": out / "report.md", "png": out / "accuracy_vs_size.png"}
    paths["json"].write_text(json.dumps(data, indent=1, default=list))
    md = [f"# cococ prune report\n", f"Objective: `{run.objective}`; {len(run.configs)} configurations, "
          f"{run.blocks} tuning blocks; full model {run.full_size} parameters"
          + (f", accuracy {run.full_accuracy:.4f}" if run.full_accuracy is not None else "") + ".\n",
          markdown([row]), f"\nAnswer (comp): {row['answer comp']}; answer (base): {row['answer base']}.\n",
          "\nTimes are compute seconds on one node (training of each evaluated configuration, plus "
          "tuning-block pre-training for comp); overhead is pre-training's share of comp's time.\n",
          "\n![accuracy vs size](accuracy_vs_size.png)\n"]
    paths["md"].write_text("".join(md))
    plot_accuracy_vs_size(run, paths["png"])
    return paths
