"""cococ show / opt / convert, and how every command reports user errors (status 1, one line)."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cococ.cli import COMMANDS
from cococ.ir.interpreter import run as interpret
from cococ.ir.parser import parse_file

ROOT = Path(__file__).resolve().parents[2]
BN_NET = str(ROOT / "examples" / "ir" / "bn_net.ir")


def same_outputs(a_path, b_path):
    a, b = parse_file(a_path), parse_file(b_path)
    x = np.random.default_rng(0).standard_normal(a.inputs[0].type.shape).astype(np.float32)
    ya, yb = interpret(a, [x]), interpret(b, [x])
    for va, vb in zip(a.outputs, b.outputs):
        np.testing.assert_allclose(ya[va.name], yb[vb.name], rtol=1e-5, atol=1e-5)


# ---- show -------------------------------------------------------------------------------------------

def test_show_table(cli):
    rc, out, err = cli("show", BN_NET)
    assert rc == 0 and err == ""
    assert "graph @bn_net: 10 layers, 1 module" in out
    conv = next(l for l in out.splitlines() if " conv1 " in l)
    assert "conv2d" in conv and "block1" in conv and "f32[1,4,8,8]" in conv and "112" in conv and "6.91k" in conv
    total = next(l for l in out.splitlines() if " total " in l)
    assert "778" in total and "8.06k" in total
    assert "params 778 (3112 bytes), MACs 8064" in out


def test_show_takes_the_example_of_docs_ir_md(cli, tmp_path):
    """The doc's LeNet leaves default attributes (groups, stride) unwritten: show fills them."""
    doc = (ROOT / "docs" / "ir.md").read_text(encoding="utf-8")
    example = next(b for b in re.findall(r"```[a-z]*\n(.*?)```", doc, re.S) if "graph @" in b)
    (tmp_path / "lenet.ir").write_text(example, encoding="utf-8")
    rc, out, err = cli("show", tmp_path / "lenet.ir")
    assert rc == 0 and err == "", err
    assert "MACs 316800" in out


def test_show_dot(cli):
    rc, out, _ = cli("show", BN_NET, "--dot")
    assert rc == 0 and out.startswith('digraph "bn_net" {') and "cluster" in out


# ---- opt -------------------------------------------------------------------------------------------

def test_opt_prints_ir_and_dumps_after_each_pass(cli):
    rc, out, err = cli("opt", BN_NET, "-p", "infer-shapes,canonicalize,dce", "--dump-ir")
    assert rc == 0
    assert out.startswith("graph @bn_net {") and "batchnorm" not in out and "dropout" not in out
    heads = [l for l in err.splitlines() if l.startswith("// ----- IR after")]
    assert heads == ["// ----- IR after infer-shapes (1 of 3) ----- //",
                     "// ----- IR after canonicalize (2 of 3) ----- //", "// ----- IR after dce (3 of 3) ----- //"]


def test_opt_without_pipeline_round_trips(cli):
    rc, out, _ = cli("opt", BN_NET)
    assert rc == 0 and out == Path(BN_NET).read_text()


def test_opt_writes_ir_with_sidecar_and_keeps_numbers(cli, tmp_path):
    rc, out, _ = cli("opt", BN_NET, "-p", "infer-shapes,canonicalize,dce", "-o", "out.ir")
    assert rc == 0 and out == "wrote bn_net (7 layers) to out.ir + out.npz\n"  # the one success line
    assert (tmp_path / "out.ir").exists() and (tmp_path / "out.npz").exists()
    same_outputs(BN_NET, tmp_path / "out.ir")


def test_opt_dump_modes_timing_and_dir(cli, tmp_path):
    rc, _, err = cli("opt", BN_NET, "-p", "infer-shapes,canonicalize,dce", "--dump-ir=after-change",
                     "--dump-ir", "before:dce", "--pass-timing")
    assert rc == 0
    assert [l for l in err.splitlines() if l.startswith("// -----")] == [
        "// ----- IR after canonicalize (2 of 3) ----- //", "// ----- IR before dce (3 of 3) ----- //"]
    assert "pass timing" in err and "total" in err
    rc, _, err = cli("opt", BN_NET, "-p", "canonicalize,dce", "--dump-ir-dir", "dumps")
    assert rc == 0 and err == ""
    assert sorted(p.name for p in (tmp_path / "dumps").iterdir()) == ["001_after_canonicalize.ir", "002_after_dce.ir"]


def test_opt_inline_weights_and_onnx(cli, tmp_path):
    rc, out, _ = cli("opt", BN_NET, "-p", "canonicalize", "--inline-weights")
    assert rc == 0 and "= [" in out
    rc, _, err = cli("opt", BN_NET, "-p", "canonicalize", "-o", "net.onnx")
    assert rc == 0 and (tmp_path / "net.onnx").stat().st_size > 0


# ---- convert --------------------------------------------------------------------------------------

def test_convert_ir_dot_onnx(cli, tmp_path):
    assert cli("convert", BN_NET, "-o", "a.ir")[0] == 0
    assert (tmp_path / "a.ir").read_text() == Path(BN_NET).read_text()
    assert cli("convert", BN_NET, "-o", "a.dot")[0] == 0
    assert (tmp_path / "a.dot").read_text().startswith("digraph")
    rc, out, _ = cli("convert", BN_NET, "-o", "-", "--inline-weights")
    assert rc == 0 and out.startswith("graph @bn_net") and "= [" in out
    rc, _, err = cli("convert", BN_NET, "-o", "a.onnx")
    assert rc == 0, err
    rc, _, err = cli("convert", "a.onnx", "-o", "b.ir")
    assert rc == 0, err
    same_outputs(BN_NET, tmp_path / "b.ir")


# ---- user errors: status 1, one line, no traceback --------------------------------------------------

BROKEN_IR = """graph @b {
  %x: f32[1,3] = input "x" {shape = [1, 3]}
  %y: f32[1,3] = relu "y" (%z)
  return %y
}
"""


@pytest.mark.parametrize("args, message", [
    (["show", "missing.ir"], "missing.ir: no such file"),
    (["opt", "missing.ir", "-p", "dce"], "missing.ir: no such file"),
    (["convert", "missing.ir", "-o", "x.ir"], "missing.ir: no such file"),
    (["show", "net.xyz"], "unknown model format '.xyz'"),
    (["opt", BN_NET, "-p", "canonicalise"], "unknown pass 'canonicalise' (did you mean 'canonicalize'?)"),
    (["opt", BN_NET, "-p", "dce{x=1}"], "unknown option 'x' for pass 'dce' (options: none)"),
    (["opt", BN_NET, "-p", "canonicalize{"], "bad pipeline 'canonicalize{' at column 14"),
    (["opt", BN_NET, "--dump-ir=after:nope"], "IR dump mode 'after:nope': unknown pass 'nope'"),
    (["opt", BN_NET, "--dump-ir=sometimes"], "unknown IR dump mode 'sometimes'"),
    (["opt", "broken.ir"], "broken.ir:3:28: layer 'y': use of undefined value %z"),
    (["convert", BN_NET, "-o", "x.caffemodel"], "cannot write '.caffemodel' files"),
    (["convert", BN_NET, "-o", "x.bin"], "cannot write '.bin' files"),
    (["convert", BN_NET, "-o", "nodir/x.ir"], "folder nodir does not exist"),
    (["opt", BN_NET, "--bogus"], "unrecognized arguments: --bogus"),
    (["convert", BN_NET], "the following arguments are required: -o/--output"),
    (["show"], "the following arguments are required: FILE"),
])
def test_user_errors(cli, tmp_path, args, message):
    (tmp_path / "net.xyz").write_text("x")
    (tmp_path / "broken.ir").write_text(BROKEN_IR)
    rc, out, err = cli(*args)
    assert rc == 1
    assert message in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("cococ")


def test_help_for_every_command(cli):
    for cmd in ("show", "opt", "convert"):
        rc, out, _ = cli(cmd, "--help")
        assert rc == 0 and "usage: cococ " + cmd in out


def test_top_level_help_lists_every_command(cli):
    rc, out, _ = cli("--help")
    assert rc == 0 and all(name in out for name in COMMANDS)


def test_a_command_module_that_fails_to_import_raises(cli, monkeypatch):
    """A broken command module is a bug to see, not a command to leave out of the help."""
    monkeypatch.setitem(COMMANDS, "broken", "no_such_module")
    with pytest.raises(ModuleNotFoundError, match="cococ.commands.no_such_module"):
        cli("--help")


def test_console_script_error_and_debug(tmp_path):
    """Through a real process: one line and status 1; --debug shows the traceback."""
    exe = [sys.executable, "-m", "cococ"]
    r = subprocess.run(exe + ["opt", BN_NET, "-p", "nosuch"], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.strip().startswith("cococ opt: error: unknown pass 'nosuch'") and "Traceback" not in r.stderr
    r = subprocess.run(exe + ["--debug", "opt", BN_NET, "-p", "nosuch"], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode != 0 and "Traceback" in r.stderr
