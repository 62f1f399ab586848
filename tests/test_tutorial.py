"""docs/tutorial.md runs as written: every block, in order, in one empty folder.

The tutorial's blocks carry `<!-- docs-test: skip (run by tests/test_tutorial.py...) -->` so
that tests/test_docs.py leaves them to this test: a walk whose steps build on each other (the
exported net, the data, the trained weights) runs once, in order. A block tagged
`...; fails on purpose` must exit non-zero (the "does not fit" example) and say why; one tagged
`...; smaller here: OLD => NEW; OLD2 => NEW2` runs with those replacements (the two pruning
steps, minutes as written). About two and a half minutes on 2 idle cores: slow tier.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_docs import blocks  # noqa: E402  (the one reader of fenced blocks and their docs-test tags)

ROOT = Path(__file__).resolve().parent.parent
TUTORIAL = ROOT / "docs" / "tutorial.md"
OWNER = "run by tests/test_tutorial.py"


def tutorial_blocks() -> list[tuple[int, str, str, str]]:
    """(line, language, text, tag reason) of each fenced block of the tutorial (test_docs' reader)."""
    return [(b.line, b.lang, b.text, b.reason) for b in blocks(TUTORIAL)]


def substitutions(reason: str) -> list[tuple[str, str]]:
    """The OLD => NEW pairs after `smaller here:` in a tag's reason."""
    _, _, subs = reason.partition("smaller here:")
    return [tuple(x.strip() for x in pair.split("=>")) for pair in subs.split(";") if "=>" in pair]


def test_every_command_block_is_run_here():
    """Each sh/python block is tagged for this test; nothing else runs, nothing is left out."""
    blocks = tutorial_blocks()
    runnable = [b for b in blocks if b[1] in ("sh", "python")]
    assert len(runnable) >= 9
    untagged = [line for line, lang, _, reason in blocks
                if lang not in ("text",) and not reason.startswith(OWNER)]
    assert not untagged, f"docs/tutorial.md blocks at lines {untagged} are not tagged '{OWNER}'"


@pytest.mark.slow
def test_tutorial_runs(tmp_path):
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               MPLBACKEND="Agg", PYTHONDONTWRITEBYTECODE="1")
    for line, lang, text, reason in tutorial_blocks():
        if lang not in ("sh", "python"):
            continue
        for old, new in substitutions(reason):
            assert old in text, f"docs/tutorial.md:{line}: {old!r} not in the block"
            text = text.replace(old, new)
        cmd = [sys.executable, "-c", text] if lang == "python" else ["bash", "-e", "-c", text]
        p = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        out = p.stdout + p.stderr
        if "fails on purpose" in reason:
            assert p.returncode != 0, f"docs/tutorial.md:{line}: should fail, exited 0"
            assert "does not fit" in out and "--target-opt" in out and "Traceback" not in out, out
        else:
            assert p.returncode == 0, f"docs/tutorial.md:{line}: {lang} block failed:\n{text}\n---\n{out[-3000:]}"
    assert (tmp_path / "build" / "mynet-pruned" / "model.elf").is_file()
    assert (tmp_path / "build" / "mynet-int8" / "model.elf").is_file()
    assert (tmp_path / "prune-run" / "pruned.prototxt").is_file()
