"""Mutated IR text, ONNX models, weights files (.caffemodel, .safetensors, .npz), `run --input`
arrays and artifact folders load or raise a one-line CococError only: a seeded sample of
benchmarks/fuzz_frontends.py's campaign, in-process, and the findings of its full runs as
regression cases (the script runs >= 10,000 cases per format, each format in its own process)."""
import shutil
import sys
from pathlib import Path

import pytest

from cococ.ir.core import CococError
from cococ.ir.parser import parse_file, parse_ir

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the benchmarks/ scripts
from benchmarks import fuzz_frontends as fuzz  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize("fmt,n", [("ir", 200), ("onnx", 300), ("caffemodel", 200), ("safetensors", 200),
                                   ("npz", 200), ("npy", 300)])
def test_mutated_inputs_give_only_clean_errors(fmt, n):
    counts = fuzz.campaign(fmt, n, seed=0, timeout=10)
    assert counts["crash"] == counts["hang"] == 0, counts
    assert counts["ok"] and counts["clean"], counts  # the seeds load, and the mutations reach errors


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="the artifact seed is an arm-m4 build")
def test_mutated_artifact_folders_give_only_clean_errors():
    counts = fuzz.campaign("artifact", 200, seed=0, timeout=10)
    assert counts["crash"] == counts["hang"] == 0, counts
    assert counts["ok"] and counts["clean"], counts


# ---- findings of the full runs -------------------------------------------------------------------

def test_bad_escape_in_a_quoted_value_name():
    """ir case 271: `%"a\\q"` raised AttributeError (the error helper got a str, not the token)."""
    with pytest.raises(CococError, match=r"t.ir:2:3: bad escape in string %\"a\\q\""):
        parse_ir('graph @g {\n  %"a\\q": f32[1] = input "x" {shape = [1], dtype = "f32"}\n  return %"a\\q"\n}\n',
                 "t.ir")


def test_damaged_side_car_member(tmp_path):
    """artifact case 223: a side-car .npz whose member fails its CRC raised zipfile.BadZipFile
    (np.load reads members lazily, after the archive opened fine)."""
    shutil.copy(EXAMPLES / "ir" / "bn_net.ir", tmp_path / "bn_net.ir")
    data = bytearray((EXAMPLES / "ir" / "bn_net.npz").read_bytes())
    i = data.index(b"conv1/weight.npy") + 200  # inside the member's data
    data[i] ^= 0xFF
    (tmp_path / "bn_net.npz").write_bytes(bytes(data))
    with pytest.raises(CococError, match=r"cannot read 'conv1/weight' from side-car weights .*bn_net.npz"):
        parse_file(tmp_path / "bn_net.ir")


@pytest.fixture(scope="module")
def tiny_artifact(tmp_path_factory):
    if shutil.which("arm-none-eabi-gcc") is None:
        pytest.skip("the artifact seed is an arm-m4 build")
    from benchmarks.fuzz_formats import FORMATS
    seeds = FORMATS["artifact"].seeds(tmp_path_factory.mktemp("seeds"))
    return seeds[0].ctx  # {file name: bytes} of the folder


def _run_artifact(folder: Path, files: dict, manifest_edit) -> None:
    import json

    from cococ.cli import make_parser
    from cococ.commands.run import run
    folder.mkdir()
    for name, data in files.items():
        (folder / name).write_bytes(data)
    m = json.loads(files["artifact.json"])
    manifest_edit(m)
    (folder / "artifact.json").write_text(json.dumps(m))
    run(make_parser("run").parse_args(["run", str(folder), "--check"]))


def test_giant_input_shape_in_the_manifest(tmp_path, tiny_artifact, monkeypatch):
    """artifact case 166: an input shape of 65536 x ... in artifact.json made numpy raise
    "Maximum allowed dimension exceeded" (or try to allocate it) for the random inputs."""
    monkeypatch.setenv("COCOC_MAX_MEMORY", "1G")
    with pytest.raises(CococError, match=r"random inputs of .* would need .* TiB"):
        _run_artifact(tmp_path / "a", tiny_artifact, lambda m: m["inputs"][0].update(shape=[65536] * 4))


def test_output_shape_the_elf_does_not_write(tmp_path, tiny_artifact):
    """artifact case 188: an output shape of (65536, 3) in artifact.json failed as a numpy reshape."""
    with pytest.raises(CococError, match=r"'outputs' hold 196608 values, the ELF's model_output holds 3"):
        _run_artifact(tmp_path / "a", tiny_artifact, lambda m: m["outputs"][0].update(shape=[65536, 3]))


def test_output_name_the_saved_graph_does_not_have(tmp_path, tiny_artifact):
    """artifact case 697: an output renamed in artifact.json ('prob' -> 'pob') was a KeyError in --check."""
    with pytest.raises(CococError, match=r"artifact.json: output 'pob' is not an output of model.ir \(prob\)"):
        _run_artifact(tmp_path / "a", tiny_artifact, lambda m: m["outputs"][0].update(name="pob"))


def test_quantize_option_of_the_wrong_type(tmp_path, tiny_artifact, capsys):
    """A list as options.quantize was a TypeError (unhashable) in --check: it is not a known
    quantization, so the float tolerance applies."""
    _run_artifact(tmp_path / "a", tiny_artifact, lambda m: m["options"].update(quantize=["q15"]))
    assert "check prob: ok" in capsys.readouterr().out


def test_artifact_kind_of_the_wrong_type(tmp_path, tiny_artifact):
    """artifact case 7656: `"kind": ["mcu"]` was a TypeError (unhashable) in the manifest check;
    a list as an input's dtype would have been the same."""
    with pytest.raises(CococError, match=r"artifact.json: unknown artifact kind \['mcu'\]"):
        _run_artifact(tmp_path / "a", tiny_artifact, lambda m: m.update(kind=["mcu"]))
    with pytest.raises(CococError, match=r"artifact.json: 'inputs' must be a list of \{name, shape, dtype\}"):
        _run_artifact(tmp_path / "b", tiny_artifact, lambda m: m["inputs"][0].update(dtype=["f32"]))
