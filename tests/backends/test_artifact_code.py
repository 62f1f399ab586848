"""An artifact folder is code (issue 18): the manifest records the sha256 of model.so (x86) and
model.elf (arm-m4) at build time, and `cococ run` checks it before loading, so a truncated
library is a one-line error instead of SIGBUS (the x86 case runs in a subprocess: were the check
gone, the signal would take the test process with it), and a truncated ELF one line instead
of a traceback."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from cococ.backends.artifact import HASHES, MANIFEST, file_sha256, load_artifact
from cococ.backends.build import build
from cococ.backends.mcu.emulator import Emulator
from cococ.cli import main
from cococ.ir.core import CococError, Graph, Layer, Param, Value
from cococ.ir.interpreter import run as reference
from cococ.ir.verify import infer_shapes

CODE = {"x86": "model.so", "arm-m4": "model.elf"}


def tiny() -> Graph:
    rng = np.random.default_rng(0)
    p = lambda *s: Param.from_array((rng.standard_normal(s) * 0.3).astype(np.float32))  # noqa: E731
    v = {n: Value(n) for n in "x h r y".split()}
    return infer_shapes(Graph("tiny", [
        Layer("input", "x", [], [v["x"]], {"shape": [1, 16]}),
        Layer("dense", "h", [v["x"]], [v["h"]], {"out_features": 8}, {"weight": p(8, 16), "bias": p(8)}),
        Layer("relu", "r", [v["h"]], [v["r"]]),
        Layer("dense", "y", [v["r"]], [v["y"]], {"out_features": 4}, {"weight": p(4, 8), "bias": p(4)}),
    ], [v["y"]]))


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    out = {}
    for target in CODE:
        out[target] = tmp_path_factory.mktemp(target) / "art"
        build(tiny(), target, out_dir=out[target])
    return out


@pytest.fixture(params=list(CODE))
def built(request, folders):
    return request.param, folders[request.param]


def damaged(src, tmp_path, edit):
    """A copy of the artifact folder `src` with `edit(folder)` applied."""
    d = tmp_path / "copy"
    shutil.copytree(src, d)
    edit(d)
    return d


def truncate(name):
    return lambda d: os.truncate(d / name, os.path.getsize(d / name) // 2)


def drop_hashes(d):
    m = json.loads((d / MANIFEST).read_text())
    del m[HASHES]
    (d / MANIFEST).write_text(json.dumps(m))


def test_manifest_records_the_hash_and_the_intact_folder_runs(built):
    target, d = built
    manifest = json.loads((d / MANIFEST).read_text())
    assert manifest[HASHES] == {CODE[target]: file_sha256(d / CODE[target])}
    x = np.random.default_rng(1).standard_normal((1, 16)).astype(np.float32)
    got = load_artifact(d).run(x)["y"]
    np.testing.assert_allclose(got, reference(tiny(), [x])["y"], rtol=1e-4, atol=1e-4)


def refused(path) -> str:
    return (f"cococ run: error: {path}: sha256 differs from the one artifact.json recorded at build time "
            f"(changed or truncated since); refusing to load it: rebuild with `cococ build`\n")


def test_truncated_library_is_one_line_error_not_sigbus(folders, tmp_path):
    d = damaged(folders["x86"], tmp_path, truncate("model.so"))
    r = subprocess.run([sys.executable, "-m", "cococ", "run", str(d)], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 1, (r.returncode, r.stderr)   # -7 (SIGBUS) without the check
    assert r.stderr == refused(d / "model.so")


def test_truncated_elf_is_one_line_error(folders, tmp_path, capsys):
    d = damaged(folders["arm-m4"], tmp_path, truncate("model.elf"))
    assert main(["run", str(d)]) == 1
    assert capsys.readouterr().err == refused(d / "model.elf")


def test_manifest_without_hash_is_refused(built, tmp_path, capsys):
    target, src = built
    d = damaged(src, tmp_path, drop_hashes)
    assert main(["run", str(d)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{d / MANIFEST}: no sha256 recorded for {CODE[target]}" in err


def test_one_changed_byte_is_refused(built, tmp_path, capsys):
    target, src = built

    def flip(d):
        b = bytearray((d / CODE[target]).read_bytes())
        b[len(b) // 2] ^= 1
        (d / CODE[target]).write_bytes(bytes(b))

    d = damaged(src, tmp_path, flip)
    with pytest.raises(CococError, match="sha256 differs"):
        load_artifact(d).run(np.zeros((1, 16), np.float32))


def test_elf_name_outside_the_folder_is_refused(folders, tmp_path):

    def escape(d):
        m = json.loads((d / MANIFEST).read_text())
        m["elf"], m[HASHES] = "../model.elf", {"../model.elf": m[HASHES]["model.elf"]}
        (d / MANIFEST).write_text(json.dumps(m))

    d = damaged(folders["arm-m4"], tmp_path, escape)
    with pytest.raises(CococError, match="'elf' must be a file name in the folder"):
        load_artifact(d).run(np.zeros((1, 16), np.float32))


def test_truncated_elf_without_manifest_is_a_cococ_error(folders, tmp_path):
    """The emulator itself (used without a manifest by the sparse benchmarks) names a bad ELF."""
    d = damaged(folders["arm-m4"], tmp_path, truncate("model.elf"))
    with pytest.raises(CococError, match="not a readable ELF"):
        Emulator(d / "model.elf")
