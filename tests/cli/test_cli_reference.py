"""The command reference (docs/cli.md, generated from the argparse definitions) is current and
complete; one option name per idea across commands, old spellings warning; the top-level help's
summaries are whole sentences; `--version`; success lines; MetaSchedule's and the pre-training's
progress output."""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from cococ.cli import COMMANDS, make_parser, summary, version
from cococ.cli_docs import markdown
from cococ.commands.common import deprecated_aliases

ROOT = Path(__file__).resolve().parents[2]
BN_NET = str(ROOT / "examples" / "ir" / "bn_net.ir")


@pytest.fixture(scope="module")
def subparsers() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in make_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_docs_cli_md_is_current():
    assert (ROOT / "docs" / "cli.md").read_text(encoding="utf-8") == markdown(), \
        "docs/cli.md is stale: run `make docs` (python -m cococ.cli_docs > docs/cli.md)"


def test_reference_has_every_command_and_visible_option(subparsers):
    text = markdown()
    for name in COMMANDS:
        assert f"## `cococ {name}`" in text
        for action in subparsers[name]._actions:
            if action.help == argparse.SUPPRESS or not action.option_strings or action.dest == "help":
                continue
            assert f"`{', '.join(action.option_strings)}" in text, (name, action.option_strings)
    assert "| `--sample-seed N` | `0` |" in text          # defaults shown, 0 included
    assert "| `-o, --output RUNDIR` | `prune-run` |" in text
    assert "`--seed` (now `--sample-seed`)" in text       # old spellings named, not as options


def test_command_summaries_are_whole_sentences(subparsers):
    for name in COMMANDS:
        s = summary(subparsers[name].description)
        assert s.endswith("."), (name, s)
    assert summary(subparsers["run"].description).endswith("estimated cycles per layer).")
    help_text = " ".join(make_parser().format_help().split())
    assert "with executed instructions and estimated cycles per layer)." in help_text


def test_version(cli):
    rc, out, _ = cli("--version")
    assert rc == 0 and out == f"cococ {version()}\n" and version()[0].isdigit()


# one name per idea: (commands, the option's name there); the old spelling is hidden and warns
SAME_IDEA = [
    (("prune", "blocks"), "--sample-seed"),   # seed of --sample
    (("prune", "blocks"), "--blocks"),        # how tuning blocks are found
    (("train", "eval", "blocks"), "--batch-size"),
    (("prune", "blocks"), "--pretrain-steps"),   # blocks' --steps was prune's --pretrain-steps
    (("prune", "blocks"), "--pretrain-solver"),
]


@pytest.mark.parametrize("commands,option", SAME_IDEA)
def test_one_name_per_idea(subparsers, commands, option):
    for name in commands:
        assert any(option in a.option_strings and a.help != argparse.SUPPRESS for a in subparsers[name]._actions)
    visible = {s for name in COMMANDS for a in subparsers[name]._actions if a.help != argparse.SUPPRESS
               for s in a.option_strings}
    assert not visible & {"--method", "--batch"}


@pytest.mark.parametrize("command,argv,dest,value", [
    ("prune", ["net.ir", "--sample", "2", "--objective", "o", "--solver", "s", "--seed", "7"], "sample_seed", 7),
    ("blocks", ["net.ir", "--sample", "2", "--method", "modules"], "blocks", "modules"),
    ("blocks", ["net.ir", "--sample", "2", "--batch", "8"], "batch_size", 8),
    ("blocks", ["net.ir", "--sample", "2", "--steps", "3"], "pretrain_steps", 3),
    ("blocks", ["net.ir", "--sample", "2", "--solver", "s.prototxt"], "pretrain_solver", "s.prototxt"),
])
def test_old_spellings_still_work_and_warn(command, argv, dest, value):
    parser = make_parser(only=command)
    with pytest.warns(FutureWarning, match=r"is deprecated; use --"):
        args = parser.parse_args([command, *argv])
    assert getattr(args, dest) == value
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    assert set(deprecated_aliases(sub)) <= {"--seed", "--method", "--batch", "--steps", "--solver"}


def test_old_spelling_warns_in_one_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "cococ", "prune", "missing.prototxt", "--sample", "2", "--seed", "1",
                        "--solver", "s.prototxt", "--objective", "min ModelSize constraint Accuracy >= 0.9"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    assert r.stderr.splitlines() == ["cococ prune: warning: --seed is deprecated; use --sample-seed",
                                     "cococ prune: error: missing.prototxt: no such file"]


def test_help_names_outputs_and_defaults(subparsers):
    def help_of(name, flag):
        return next(a.help for a in subparsers[name]._actions if flag in a.option_strings)
    assert ".prototxt" in help_of("opt", "-o")
    assert "prune-run" in help_of("prune", "-o")


@pytest.mark.parametrize("suffix,written", [(".onnx", ["out.onnx"]), (".ir", ["out.ir", "out.npz"]),
                                            (".prototxt", ["out.prototxt", "out.safetensors"])])
def test_convert_prints_what_it_wrote(cli, tmp_path, suffix, written):
    rc, out, _ = cli("convert", BN_NET, "-o", f"out{suffix}")
    assert rc == 0 and out == f"wrote bn_net (10 layers) to {' + '.join(written)}\n"
    assert all((tmp_path / w).exists() for w in written)


def test_convert_counts_the_caffe_layers_it_wrote(cli, tmp_path):
    """An affine batchnorm is written as two Caffe layers (BatchNorm + Scale): the success line
    counts the layers of the file written, not the IR's."""
    import numpy as np

    from cococ.ir.builder import GraphBuilder
    from cococ.ir.printer import save_ir
    w = np.linspace(0.5, 1.5, 4).astype(np.float32)
    b = GraphBuilder("bn_affine")
    x = b.input("x", [1, 4, 3, 3])
    y = b("batchnorm", "bn", x, {"eps": 1e-5}, {"mean": w, "var": w, "scale": w, "bias": w})
    save_ir(b.graph(y), tmp_path / "a.ir")
    rc, out, _ = cli("convert", "a.ir", "-o", "a.prototxt")
    assert rc == 0 and out == "wrote bn_affine (3 layers) to a.prototxt + a.safetensors\n"
    assert (tmp_path / "a.prototxt").read_text().count("layer {") == 2   # the input is `input:`, not a layer
    rc, out, _ = cli("convert", "a.ir", "-o", "b.ir")
    assert rc == 0 and out.startswith("wrote bn_affine (2 layers) to b.ir")


def test_convert_to_stdout_prints_only_the_ir(cli):
    rc, out, _ = cli("convert", BN_NET, "-o", "-")
    assert rc == 0 and out.startswith("graph @bn_net") and "wrote" not in out


def test_pretraining_groups_are_numbered_over_the_run(monkeypatch):
    """One group per `pretrain` call (`shared_teacher=False`): each call gets its place in the run
    ("group 2 (3/3)"), not "group 0 (1/1)" three times; by default the groups share one call."""
    from cococ.runtime.explore import blockstore
    calls = []
    monkeypatch.setattr(blockstore, "pretrain", lambda *a, **k: calls.append((k["numbering"], k["group_ids"])))
    monkeypatch.setattr(blockstore, "block_key", lambda full, b: b.key)
    blocks = [SimpleNamespace(key=f"m{i}@0.5", needs_training=True, rates=(0.5,)) for i in range(3)]
    plan = SimpleNamespace(blocks=blocks, groups=[[0], [1], [2]])
    db = SimpleNamespace(blocks=lambda: {"m0@0.5": {}}, add_block=lambda *a: None,
                         add_phase_seconds=lambda *a: None)
    blockstore.pretrain_groups(None, plan, "digits", None, set(), db, steps=1, progress=False, shared_teacher=False)
    assert calls == [((1, 1, 2), [1]), ((2, 2, 2), [2])]   # group 0 was recorded already
    calls.clear()
    blockstore.pretrain_groups(None, plan, "digits", None, set(), db, steps=1, progress=False)
    assert calls == [(None, [1, 2])]
