"""Every command meets bad input with a one-line error, never a traceback (issue 18).

The kinds of input of the issue's 227-input probe, each at least once per command where it
applies: a missing file, a folder where a file belongs, an empty file, non-UTF-8 text, truncated
or garbage binaries (npy, npz, safetensors, caffemodel, onnx, artifact.json), bad numbers for
numeric flags, and an output place that cannot be written. Output places are checked before
any work starts, and a failed start leaves nothing behind. Commands run in-process
(cococ.cli.main), so the module takes seconds. `cococ prune` is covered in PRUNE_CASES.
"""
from __future__ import annotations

import json
import os
from hashlib import sha256
from pathlib import Path

import numpy as np
import pytest

import cococ
from cococ.ir.core import CococError
from cococ.ir.interpreter import run as interpret
from cococ.ir.memory import LIMIT_ENV
from cococ.ir.parser import parse_file

ROOT = Path(__file__).resolve().parents[2]
EX = ROOT / "examples"
BN_NET = str(EX / "ir" / "bn_net.ir")
LENET = str(EX / "lenet" / "lenet.prototxt")
LENET_W = str(EX / "lenet" / "lenet.safetensors")
SOLVER = str(EX / "lenet" / "lenet_solver.prototxt")
RESNET = str(EX / "resnet" / "resnet.prototxt")   # has conv modules, for `cococ blocks`
LATIN1 = b"graph @g {\n  // caf\xe9\n}\n"       # not UTF-8: 0xe9 at line 2, column 9
MANIFEST = {"kind": "mcu", "target": "arm-m4", "elf": "model.elf", "options": {},
            "inputs": [{"name": "data", "shape": [1, 1, 28, 28], "dtype": "f32"}],
            "outputs": [{"name": "prob", "shape": [1, 10], "dtype": "f32"}]}


@pytest.fixture(scope="module")
def bad(tmp_path_factory) -> Path:
    """A folder holding one file (or folder) of each bad kind, named KIND.SUFFIX."""
    d = tmp_path_factory.mktemp("bad")
    for suffix in ("ir", "prototxt", "onnx", "safetensors", "caffemodel", "npy", "npz", "json"):
        (d / f"dir.{suffix}").mkdir()
        (d / f"empty.{suffix}").write_bytes(b"")
        (d / f"garbage.{suffix}").write_bytes(b"\x08\xff\xff\xff\xff\x93NUMPY\x01\x00" * 7)
        (d / f"latin1.{suffix}").write_bytes(LATIN1)
    good_npy = (EX / "lenet" / "digit.npy").read_bytes()
    (d / "trunc.npy").write_bytes(good_npy[:100])
    (d / "trunc.safetensors").write_bytes(Path(LENET_W).read_bytes()[:300])
    (d / "trunc.caffemodel").write_bytes(b"\x0a\x80\x80\x04layer")            # a length past the end
    np.save(d / "strings.npy", np.full((1, 1, 28, 28), "a"))
    (d / "afile").write_text("a file where a folder belongs\n")
    # hand-made M4 artifacts whose ELF is broken but matches the manifest's hash (a bad build, not a
    # damaged copy): the inputs are read, and the ELF parsed, past the hash check
    for name, elf in [("art", b""), ("art-elf-empty", b""), ("art-elf-garbage", b"\x7fELF\x01\x01\x01" + b"\xff" * 40)]:
        (d / name).mkdir()
        (d / name / "model.elf").write_bytes(elf)
        (d / name / "artifact.json").write_text(json.dumps({**MANIFEST, "sha256": {"model.elf": sha256(elf).hexdigest()}}))
    for name, content in [("empty", b""), ("latin1", LATIN1), ("trunc", json.dumps(MANIFEST)[:40].encode()),
                          ("list", b"[1, 2]"), ("nokeys", b'{"kind": "mcu"}'),
                          ("badshape", json.dumps({**MANIFEST, "inputs": [{"name": "x", "shape": [-1],
                                                                            "dtype": "f32"}]}).encode())]:
        (d / f"art-{name}").mkdir()
        (d / f"art-{name}" / "artifact.json").write_bytes(content)
    return d


@pytest.fixture
def cli(bad, cli_call, monkeypatch):
    """The CLI runner (tests/cli/conftest.py) in the `bad` folder, with no memory limit set."""
    monkeypatch.chdir(bad)
    monkeypatch.delenv(LIMIT_ENV, raising=False)
    return cli_call


def assert_one_line_error(result, fragment: str) -> None:
    rc, out, err = result
    assert "Traceback" not in out + err
    assert rc in (1, 2), (rc, out, err)
    lines = [l for l in err.splitlines() if l.strip() and ": warning: " not in l]
    assert len(lines) == 1 and "error: " in lines[0], err
    assert fragment in lines[0], (fragment, lines[0])


# ---- the network argument, for every command that reads one ----------------------------------------

COMMANDS = {  # command -> its argv with NET for the network (every other argument good)
    "show": ["show", "NET"],
    "opt": ["opt", "NET", "-p", "dce"],
    "convert": ["convert", "NET", "-o", "out.ir"],
    "build": ["build", "NET", "-o", "out-build"],
    "train": ["train", "NET", "--solver", SOLVER, "--max-iter", "1", "-o", "out.safetensors"],
    "eval": ["eval", "NET", "--weights", LENET_W],
    "blocks": ["blocks", "NET", "--sample", "2"],
}
NETWORKS = {  # kind -> (file, what the message must name)
    "missing": ("missing.ir", "missing.ir: no such file"),
    "dir": ("dir.prototxt", "dir.prototxt: is a folder"),
    "empty-ir": ("empty.ir", "empty.ir:1:1"),
    "empty-prototxt": ("empty.prototxt", "empty.prototxt"),
    "non-utf8-ir": ("latin1.ir", "latin1.ir:2:9: invalid UTF-8 byte 0xe9"),
    "non-utf8-prototxt": ("latin1.prototxt", "latin1.prototxt:2:9: invalid UTF-8 byte 0xe9"),
    "garbage-onnx": ("garbage.onnx", "garbage.onnx: not a readable ONNX model"),
    "empty-onnx": ("empty.onnx", "empty.onnx"),
}


@pytest.mark.parametrize("kind", NETWORKS)
@pytest.mark.parametrize("command", COMMANDS)
def test_bad_network(cli, command, kind):
    path, fragment = NETWORKS[kind]
    argv = [path if a == "NET" else a for a in COMMANDS[command]]
    assert_one_line_error(cli(*argv), fragment)


# ---- --weights, for every command that takes it ------------------------------------------------------

WEIGHTS = {
    "missing": ("missing.safetensors", "missing.safetensors"),
    "dir": ("dir.safetensors", "--weights dir.safetensors: is a folder"),
    "empty-safetensors": ("empty.safetensors", "empty.safetensors: cannot read .safetensors"),
    "garbage-safetensors": ("garbage.safetensors", "garbage.safetensors: cannot read .safetensors"),
    "truncated-safetensors": ("trunc.safetensors", "trunc.safetensors: cannot read .safetensors"),
    "garbage-caffemodel": ("garbage.caffemodel", "garbage.caffemodel: corrupt caffemodel"),
    "truncated-caffemodel": ("trunc.caffemodel", "trunc.caffemodel: corrupt caffemodel"),
    "garbage-npz": ("garbage.npz", "garbage.npz: cannot read .npz"),
    "empty-npz": ("empty.npz", "empty.npz: cannot read .npz"),
    "wrong-format": ("garbage.npy", "unknown weights format '.npy'"),
}


@pytest.mark.parametrize("kind", WEIGHTS)
@pytest.mark.parametrize("command", COMMANDS)
def test_bad_weights(cli, command, kind):
    path, fragment = WEIGHTS[kind]
    argv = [{"NET": LENET, LENET_W: path}.get(a, a) for a in COMMANDS[command]]
    if path not in argv:
        argv += ["--weights", path]
    assert_one_line_error(cli(*argv), fragment)


# ---- each command's own file arguments -------------------------------------------------------------

TRAIN = ["train", LENET, "--max-iter", "1", "-o", "out.safetensors"]
RUN = ["run", "art"]
BLOCKS = ["blocks", RESNET]


@pytest.mark.parametrize("argv, fragment", [
    # train --solver / --data / --resume
    (TRAIN + ["--solver", "missing.prototxt"], "missing.prototxt: no such file"),
    (TRAIN + ["--solver", "dir.prototxt"], "--solver dir.prototxt: is a folder"),
    (TRAIN + ["--solver", "latin1.prototxt"], "latin1.prototxt:2:9: invalid UTF-8 byte 0xe9"),
    (TRAIN + ["--solver", "garbage.prototxt"], "garbage.prototxt"),
    (TRAIN + ["--solver", SOLVER, "--data", "garbage.npz"], "garbage.npz: cannot read as .npz"),
    (TRAIN + ["--solver", SOLVER, "--data", "empty.npz"], "empty.npz: cannot read as .npz"),
    (TRAIN + ["--solver", SOLVER, "--data", "missing.npz"], "missing.npz: no such data set"),
    (TRAIN + ["--solver", SOLVER, "--data", "dir.npz"], "dir.npz: no class sub-folders"),
    (TRAIN + ["--solver", SOLVER, "--resume", "dir.safetensors"], "--resume dir.safetensors: is a folder"),
    (TRAIN + ["--solver", SOLVER, "--resume", "missing.safetensors"], "--resume missing.safetensors: no such file"),
    # eval --data
    (["eval", LENET, "--weights", LENET_W, "--data", "garbage.npz"], "garbage.npz: cannot read as .npz"),
    (["eval", LENET, "--weights", LENET_W, "--data", "missing.npz"], "missing.npz: no such data set"),
    # build: the solver of --prune, the calibration data of --quant-data
    (["build", LENET, "--init", "random", "--prune", "auto", "--solver", "dir.prototxt"], "--solver dir.prototxt"),
    (["build", LENET, "--init", "random", "--quant-data", "digits"], "--quant-data goes with --quantize"),
    # run DIR: not an artifact, or a damaged artifact.json
    (["run", "missing-art"], "missing-art: not a cococ artifact"),
    (["run", "afile"], "afile: not a cococ artifact"),
    (["run", "art-empty"], "art-empty/artifact.json: bad JSON"),
    (["run", "art-latin1"], "art-latin1/artifact.json: bad JSON"),
    (["run", "art-trunc"], "art-trunc/artifact.json: bad JSON"),
    (["run", "art-list"], "art-list/artifact.json: expected a JSON object"),
    (["run", "art-nokeys"], "art-nokeys/artifact.json: 'target' must be"),
    (["run", "art-badshape"], "art-badshape/artifact.json: 'inputs' must be"),
    (["run", "art-elf-empty"], "art-elf-empty/model.elf: not a readable ELF"),
    (["run", "art-elf-garbage"], "art-elf-garbage/model.elf: not a readable ELF"),
    # run --input
    (RUN + ["--input", "missing.npy"], "--input missing.npy: no such file"),
    (RUN + ["--input", "dir.npy"], "--input dir.npy: is a folder"),
    (RUN + ["--input", "empty.npy"], "--input empty.npy: cannot read"),
    (RUN + ["--input", "garbage.npy"], "--input garbage.npy: cannot read"),
    (RUN + ["--input", "trunc.npy"], "--input trunc.npy: cannot read"),
    (RUN + ["--input", "latin1.npy"], "--input latin1.npy: cannot read"),
    (RUN + ["--input", "garbage.npz"], "--input garbage.npz: cannot read"),
    (RUN + ["--input", "strings.npy"], "--input strings.npy"),
    # blocks --subspace
    (BLOCKS + ["--subspace", "missing.json"], "--subspace missing.json: no such file"),
    (BLOCKS + ["--subspace", "dir.json"], "--subspace dir.json: is a folder"),
    (BLOCKS + ["--subspace", "empty.json"], "empty.json: invalid JSON"),
    (BLOCKS + ["--subspace", "latin1.json"], "latin1.json: invalid JSON"),
    (BLOCKS + ["--subspace", "garbage.npy"], "garbage.npy: not a numeric .npy"),
    (BLOCKS + ["--subspace", "trunc.npy"], "trunc.npy: not a numeric .npy"),
    (BLOCKS + ["--subspace", "empty.npy"], "empty.npy: not a numeric .npy"),
    (BLOCKS + ["--sample", "2", "--pretrain", "--init", "random", "--pretrain-solver", "dir.prototxt"],
     "--pretrain-solver dir.prototxt"),
], ids=lambda v: " ".join(Path(a).name for a in v) if isinstance(v, list) else None)
def test_bad_file_arguments(cli, argv, fragment):
    assert_one_line_error(cli(*argv), fragment)


# ---- numbers that must be positive (or at least 0) --------------------------------------------------

@pytest.mark.parametrize("argv, fragment", [
    (["train", LENET, "--solver", SOLVER, "--max-iter", "-3"], "argument --max-iter: expected a positive whole number, got -3"),
    (["train", LENET, "--solver", SOLVER, "--max-iter", "0"], "argument --max-iter"),
    (["train", LENET, "--solver", SOLVER, "--max-iter", "many"], "argument --max-iter: expected a positive whole number, got 'many'"),
    (["train", LENET, "--solver", SOLVER, "--batch-size", "0"], "argument --batch-size"),
    (["train", LENET, "--solver", SOLVER, "--threads", "0"], "argument --threads"),
    (["train", LENET, "--solver", SOLVER, "--crop-size", "-1"], "argument --crop-size"),
    (["eval", LENET, "--weights", LENET_W, "--batch-size", "0"], "argument --batch-size"),
    (["eval", LENET, "--weights", LENET_W, "--batch-size", "-1"], "argument --batch-size"),
    (["run", "art", "--bench", "-5"], "argument --bench: expected a positive whole number, got -5"),
    (["run", "art", "--bench", "0"], "argument --bench"),
    (["run", "art", "--seed", "x"], "argument --seed"),
    (["build", BN_NET, "--tune", "-3"], "argument --tune: expected a whole number >= 0, got -3"),
    (["build", BN_NET, "--seed", "1.5"], "argument --seed"),
    (["blocks", RESNET, "--sample", "0"], "argument --sample"),
    (["blocks", RESNET, "--sample", "2", "--pretrain-steps", "0"], "argument --pretrain-steps"),
    (["blocks", RESNET, "--sample", "2", "--show", "-1"], "argument --show"),
    (["blocks", RESNET, "--sample", "2", "--batch-size", "0"], "argument --batch-size"),
    (["show", BN_NET, "--seed", "x"], "argument --seed"),
    (["opt", BN_NET, "--seed", "x"], "argument --seed"),
    (["convert", BN_NET, "-o", "x.ir", "--seed", "x"], "argument --seed"),
    (["targets", "--max-memory", "lots"], "bad memory size 'lots'"),
    (["show", BN_NET, "--max-memory", "0"], "bad memory size '0'"),
], ids=lambda v: " ".join(Path(a).name for a in v) if isinstance(v, list) else None)
def test_bad_numbers(cli, argv, fragment):
    assert_one_line_error(cli(*argv), fragment)


# ---- output places that cannot be written: refused before any work --------------------------------

@pytest.mark.parametrize("argv, fragment", [
    (["opt", BN_NET, "-o", "afile/x.ir"], "-o afile/x.ir: folder afile does not exist"),
    (["opt", BN_NET, "-o", "dir.ir"], "-o dir.ir: is a folder"),
    (["opt", BN_NET, "--dump-ir-dir", "afile/dumps"], "--dump-ir-dir afile/dumps: cannot write there: afile is a file"),
    (["convert", BN_NET, "-o", "afile/x.ir"], "-o afile/x.ir: folder afile does not exist"),
    (["convert", BN_NET, "-o", "dir.onnx"], "-o dir.onnx: is a folder"),
    (["build", BN_NET, "-o", "afile/out"], "-o afile/out: cannot write there: afile is a file"),
    (["build", BN_NET, "-o", "afile"], "-o afile: is a file, expected a folder"),
    (["train", LENET, "--solver", SOLVER, "-o", "afile/w.safetensors"], "-o afile/w.safetensors: cannot write there"),
    (["train", LENET, "--solver", SOLVER, "-o", "dir.safetensors"], "-o dir.safetensors: is a folder"),
    (["train", LENET, "--solver", SOLVER, "--snapshot-prefix", "afile/snap"], "snapshot_prefix afile/snap_iter_0"),
    (["eval", LENET, "--weights", LENET_W, "--plot", "--plot-file", "afile/c.png"], "--plot-file afile/c.png"),
    (["eval", LENET, "--weights", LENET_W, "--plot", "--plot-file", "dir.json"], "--plot-file dir.json: is a folder"),
    (["blocks", RESNET, "--init", "random", "--sample", "2", "--pretrain", "--store", "afile/store"],
     "--store afile/store: cannot write there: afile is a file"),
    (["blocks", RESNET, "--init", "random", "--sample", "2", "--pretrain", "--store", "afile"],
     "--store afile: is a file"),
], ids=lambda v: " ".join(Path(a).name for a in v) if isinstance(v, list) else None)
def test_unwritable_outputs(cli, argv, fragment):
    rc, out, err = cli(*argv)
    assert_one_line_error((rc, out, err), fragment)
    assert out == ""  # refused before anything ran: no banner, no table, no progress


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
@pytest.mark.parametrize("argv", [["build", BN_NET, "-o", "ro/out"],
                                  ["train", LENET, "--solver", SOLVER, "-o", "ro/w.safetensors"]])
def test_read_only_folder(cli, bad, argv):
    (bad / "ro").mkdir(exist_ok=True)
    (bad / "ro").chmod(0o500)
    try:
        assert_one_line_error(cli(*argv), f"{argv[-1]}: cannot write in ro")
    finally:
        (bad / "ro").chmod(0o700)


def test_output_checked_before_the_network_and_the_data(cli):
    """The output place fails first, so no training or compile is lost to it (issue 18 item 4)."""
    assert_one_line_error(cli("train", "missing.prototxt", "--solver", SOLVER, "--data", "missing.npz",
                              "-o", "afile/w.safetensors"), "-o afile/w.safetensors")
    assert_one_line_error(cli("build", "missing.ir", "-o", "afile/out"), "-o afile/out")


def test_failed_start_leaves_nothing_behind(cli, bad):
    assert_one_line_error(cli("build", "missing.ir", "-o", "new-build/x86"), "missing.ir")
    assert_one_line_error(cli("train", LENET, "--solver", SOLVER, "--data", "garbage.npz",
                              "-o", "new-train/w.safetensors"), "garbage.npz")
    assert_one_line_error(cli("blocks", RESNET, "--init", "random", "--sample", "2", "--pretrain",
                              "--pretrain-steps", "1", "--data", "garbage.npz", "--store", "new-store"), "garbage.npz")
    assert not any((bad / n).exists() for n in ("new-build", "new-train", "new-store"))


# ---- the size guard ----------------------------------------------------------------------------------

def test_giant_input_refused_before_allocating(cli, bad):
    text = Path(LENET).read_text().replace("dim: 28 dim: 28", "dim: 100000 dim: 100000")
    (bad / "giant.prototxt").write_text(text)
    assert_one_line_error(cli("show", "giant.prototxt", "--init", "random"),
                          "LeNet: --init random would need 56.8 TiB; the limit is 16.0 GiB")
    assert_one_line_error(cli("train", "giant.prototxt", "--solver", SOLVER), "would need 56.8 TiB")


def test_large_allowed_network_warns(cli):
    with pytest.warns(UserWarning, match=r"^LeNet: --init random needs 1.6 MiB \(the limit is 4.0 MiB\)$"):
        rc, out, err = cli("show", LENET, "--init", "random", "--max-memory", "4M")
    assert rc == 0 and "Traceback" not in err


def test_activation_guards(cli, monkeypatch):
    assert_one_line_error(cli("train", LENET, "--solver", SOLVER, "--batch-size", "1000", "--max-memory", "64M"),
                          "LeNet: training with batch 1000 would need")
    assert_one_line_error(cli("eval", LENET, "--weights", LENET_W, "--max-memory", "1M"),
                          "LeNet: evaluating with batch 256 would need")
    graph = parse_file(BN_NET)
    monkeypatch.setenv(LIMIT_ENV, "1K")
    with pytest.raises(CococError, match="bn_net: running the interpreter would need .* the limit is 1.0 KiB"):
        interpret(graph, [np.zeros(graph.inputs[0].type.shape, np.float32)])


# ---- the API too: cococ.load raises CococError -------------------------------------------------------

@pytest.mark.parametrize("path, fragment", [("latin1.ir", "latin1.ir:2:9: invalid UTF-8 byte 0xe9"),
                                            ("dir.ir", "dir.ir: is a folder"), ("dir.onnx", "dir.onnx: is a folder")])
def test_load_raises_coco_error(bad, path, fragment):
    with pytest.raises(CococError, match=fragment):
        cococ.load(bad / path)


# ---- cococ prune: rows for the same kinds, kept by the prune command's owner ------------------------

PRUNE = ["--sample", "2", "--solver", SOLVER, "--objective", "min ModelSize constraint Accuracy >= 0.5",
         "-o", "prune-run"]
PRUNE_CASES: list = [  # (argv, what the one-line error must name)
    (["prune", "missing.prototxt", *PRUNE], "missing.prototxt"),
    (["prune", "latin1.ir", *PRUNE], "latin1.ir:2:9: invalid UTF-8 byte 0xe9"),
]


@pytest.mark.parametrize("argv, fragment", PRUNE_CASES,
                         ids=lambda v: " ".join(Path(a).name for a in v) if isinstance(v, list) else None)
def test_prune_bad_inputs(cli, argv, fragment):
    assert_one_line_error(cli(*argv), fragment)
