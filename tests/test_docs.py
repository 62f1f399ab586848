"""Every command and snippet in README.md and docs/*.md runs: the docs are tested like code.

Convention for fenced code blocks in those files (what a doc writer needs to know):

- ```sh / ```bash / ```shell: a shell script, run with `bash -e` (`cococ` is the venv's).
- ```console: a terminal transcript; lines starting with `$ ` are the commands (a trailing `\\`
  continues one), the other lines are their output, shown but not compared.
- ```python: a snippet, run in a fresh interpreter (subprocess).
- any other language (text, c, json, ir, prototxt, ...): not a command (output, grammar, a
  synopsis with [optional] parts, a listing); not run. A block without a language is an error:
  say what it is.
- `<!-- docs-test: skip (REASON) -->` on the line(s) just before a block: not run; the reason
  is required (a listing of a file the suite tests elsewhere, needs a cluster, ...).
- `<!-- docs-test: small (REASON): OLD => NEW; OLD2 => NEW2 -->` just before a block: run at a
  smaller scale, each OLD text replaced by NEW first (e.g. `--sample 64 => --sample 4`), for a
  command that takes minutes as written; the reason says how long it takes.
- `<!-- docs-test: quote (PATH) -->` just before a block: a listing quoted from the repo file
  PATH (relative to the repo root), checked to appear there verbatim instead of being run.
- `<!-- docs-test: continued -->` just before a python block: it goes on from the file's python
  blocks before it (run together, as one script), for a snippet that uses their names.

The blocks of one file run in order in one temporary folder holding a copy of the repo's
examples/, so paths are those of the repo root and a doc's own earlier steps (a `cococ train
-o resnet.safetensors`) make the files its later ones use. A failure names the file and line of
the block. The runs are marked slow (3.5 minutes in all on the shared 2-core machine, prune.md's
a minute of it): CI runs them; `make test-fast` leaves them out.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL = {"sh", "bash", "shell"}
RUN = SHELL | {"console", "python"}
FENCE = re.compile(r"^\s*```(\S*)\s*$")
TAG = re.compile(r"^\s*<!--\s*docs-test:\s*(\w+)\s*(?:\((.+?)\))?\s*(?::\s*(.*?))?\s*-->\s*$")
TAGS = {"skip": "a reason", "small": "a reason and substitutions", "continued": "nothing", "quote": "a path"}
GENERATED = re.compile(r"<!--\s*generated", re.I)   # a generated doc (cli.md, passes.md): no commands
TIMEOUT_S = 240


@dataclass
class Block:
    file: Path
    line: int          # the opening fence's line, 1-based
    lang: str
    text: str
    tag: str | None    # one of TAGS
    reason: str
    subs: list[tuple[str, str]]

    @property
    def where(self) -> str:
        return f"{self.file.relative_to(ROOT)}:{self.line}"


def blocks(path: Path) -> list[Block]:
    """The fenced blocks of one markdown file, with the docs-test tag just before each."""
    lines = path.read_text().splitlines()
    out, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        start, lang = i, m.group(1).lower()
        j = i + 1
        while j < len(lines) and not FENCE.match(lines[j]):
            j += 1
        k = start - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        tag, reason, subs = None, "", []
        t = TAG.match(lines[k]) if k >= 0 else None
        if t:
            tag, reason = t.group(1), (t.group(2) or "").strip()
            for pair in filter(None, (s.strip() for s in (t.group(3) or "").split(";"))):
                old, sep, new = pair.partition("=>")
                assert sep, f"{path.relative_to(ROOT)}:{k + 1}: a substitution is OLD => NEW: {pair!r}"
                subs.append((old.strip(), new.strip()))
        out.append(Block(path, start + 1, lang, "\n".join(lines[start + 1:j]), tag, reason, subs))
        i = j + 1
    return out


def console_commands(text: str) -> str:
    """The `$ ` commands of a transcript, continuation lines kept, output dropped."""
    cmds, cont = [], False
    for line in text.splitlines():
        if cont or line.startswith("$ "):
            cmds.append(line if cont else line[2:])
            cont = line.rstrip().endswith("\\")
    return "\n".join(cmds)


def script(b: Block) -> str:
    text = console_commands(b.text) if b.lang == "console" else b.text
    for old, new in b.subs:
        assert old in text, f"{b.where}: substitution {old!r} => {new!r}: {old!r} is not in the block"
        text = text.replace(old, new)
    return text


def run_block(b: Block, cwd: Path) -> None:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               MPLBACKEND="Agg", PYTHONDONTWRITEBYTECODE="1")
    cmd = [sys.executable, "-c", script(b)] if b.lang == "python" else ["bash", "-e", "-c", script(b)]
    try:
        p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{b.where}: {b.lang} block ran over {TIMEOUT_S} s", pytrace=False)
    if p.returncode:
        tail = "\n".join((p.stdout + p.stderr).splitlines()[-25:])
        pytest.fail(f"{b.where}: {b.lang} block failed (exit {p.returncode}):\n{script(b)}\n---\n{tail}",
                    pytrace=False)


def doc_files() -> list[Path]:
    return [p for p in DOCS if not GENERATED.search(p.read_text())]


def test_every_block_says_what_it_is():
    """A block without a language could be a command nobody runs; a tag needs its reason."""
    bad = [f"{b.where}: code block without a language (sh/console/python run; text does not)"
           for p in doc_files() for b in blocks(p) if not b.lang]
    bad += [f"{b.where}: docs-test tag on a {b.lang!r} block, which is never run"
            for p in doc_files() for b in blocks(p) if b.tag and b.lang not in RUN]
    bad += [f"{b.where}: docs-test: {b.tag} takes {TAGS.get(b.tag, 'nothing: unknown tag')}"
            for p in doc_files() for b in blocks(p) if b.tag and (
                b.tag not in TAGS or (b.tag in ("skip", "small", "quote")) != bool(b.reason)
                or (b.tag == "small") != bool(b.subs) or (b.tag == "continued" and b.lang != "python"))]
    assert not bad, "\n".join(bad)


def test_tag_parsing_and_console(tmp_path):
    md = tmp_path / "x.md"
    md.write_text("<!-- docs-test: small (takes 3 min): --sample 64 => --sample 4; -o a => -o b -->\n"
                  "```console\n$ cococ prune x --sample 64 \\\n    -o a\nresult line\n$ ls\n```\n")
    [b] = blocks(md)
    assert (b.line, b.lang, b.tag, b.reason) == (2, "console", "small", "takes 3 min")
    b.file = ROOT / "x.md"
    assert script(b) == "cococ prune x --sample 4 \\\n    -o b\nls"


def test_quoted_listings_are_the_files():
    bad = [f"{b.where}: the block is not in {b.reason} as quoted (update the listing)"
           for p in doc_files() for b in blocks(p)
           if b.tag == "quote" and b.text not in (ROOT / b.reason).read_text()]
    assert not bad, "\n".join(bad)


@pytest.mark.slow
@pytest.mark.parametrize("doc", doc_files(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_doc_runs(doc, tmp_path):
    runnable = [b for b in blocks(doc) if b.lang in RUN and b.tag not in ("skip", "quote")]
    if not runnable:
        pytest.skip("no commands or snippets")
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    before: list[str] = []   # the python blocks so far, for a continued one
    for b in runnable:
        if b.lang == "python":
            before = [*before, b.text] if b.tag == "continued" else [b.text]
            b.text = "\n".join(before)
        run_block(b, tmp_path)
