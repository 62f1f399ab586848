"""A newcomer's path (issue 19): commands that quietly did the wrong thing, and dead ends.

`-p 'quantize{...}'` builds what `--quantize` builds; `--prune auto` with int8 prunes for the int8
kernels, a -p quantize after the pruning; a Data-layer net warns about its guessed input shape and takes --input-shape; `run
--random` on a build calibrated on data draws inside the calibration range; `prune` on a chain
says why and what to use; the fit error names concrete fixes; the M4 run table shows a sparse
step's kernel and the MACs it does; `build` calls its count "stored weights", `show` "params".
"""
from __future__ import annotations

import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

import cococ
from cococ import passes
from cococ.backends.build import build
from cococ.commands.run import check, print_profile
from cococ.ir.builder import GraphBuilder
from cococ.ir.parser import parse_file

ROOT = Path(__file__).resolve().parents[2]
BN_NET = str(ROOT / "examples" / "ir" / "bn_net.ir")
LENET = [str(ROOT / "examples" / "lenet" / "lenet.prototxt"),
         "--weights", str(ROOT / "examples" / "lenet" / "lenet.safetensors")]
needs_gcc = pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None,
                               reason="arm-none-eabi-gcc not installed (apt: gcc-arm-none-eabi)")
DATA_NET = """name: "tiny"
layer { name: "cifar" type: "Data" top: "data" top: "label" data_param { source: "db" batch_size: 100 } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" inner_product_param { num_output: 10 } }
"""




# ---- -p quantize{...} == --quantize ---------------------------------------------------------------

@needs_gcc
@pytest.mark.slow  # two arm-m4 builds: ~25 s
def test_pipeline_quantize_builds_what_the_flag_builds(cli, tmp_path):
    # the flag build runs arm-m4's default pipeline (canonicalize) first; the explicit one says so
    rc, out, err = cli("build", "--target=arm-m4", BN_NET, "-p", "canonicalize,quantize{dtype=q15}", "-o", "piped")
    assert rc == 0, err
    assert ", q15" in out  # the summary names the fixed point: integer kernels, not float
    rc, out, err = cli("build", "--target=arm-m4", BN_NET, "--quantize", "q15", "-o", "flag")
    assert rc == 0, err
    for f in ("kernels.c", "model.c", "weights.c"):
        assert (tmp_path / "piped" / f).read_bytes() == (tmp_path / "flag" / f).read_bytes(), f


def test_pipeline_and_flag_that_disagree_are_refused(cli):
    rc, _, err = cli("build", "--target=arm-m4", BN_NET, "-p", "quantize{dtype=int8}", "--quantize", "q15")
    assert rc == 1 and "--quantize q15 and -p 'quantize{dtype=int8}' disagree" in err


# ---- --prune auto with int8 -----------------------------------------------------------------------

@pytest.mark.parametrize("how", [["--quantize", "int8"], ["-p", "quantize{dtype=int8}"]])
def test_prune_auto_int8_prunes_for_the_int8_kernels(cli, monkeypatch, how):
    """Either way of asking for int8 prunes against the int8 kernels (the pass gets dtype int8),
    and a -p quantize runs after the pruning, not before (retraining would leave its scales stale);
    the pruning itself (stubbed here) is tests/runtime/test_prune_int8.py's."""
    import cococ.runtime.compress.prune_for_target as pft
    seen = {}

    def fake(graph, target, data, solver, max_drop, *, dtype, **kw):
        seen.update(dtype=dtype, quantized="quant" in graph.meta)
        raise cococ.CococError("stub: stop after the pruning's arguments")

    monkeypatch.setattr(pft, "prune_for_target", fake)
    rc, out, err = cli("build", "--target=arm-m4", *LENET, "--prune", "auto", *how, "-o", "pruned")
    assert rc == 1 and "stub: stop" in err
    assert seen == {"dtype": "int8", "quantized": False}


# ---- Data-layer nets: the guessed input shape -----------------------------------------------------

def test_data_layer_guess_warns_naming_the_layer(cli, tmp_path):
    (tmp_path / "train_val.prototxt").write_text(DATA_NET)
    with pytest.warns(UserWarning) as w:  # the CLI prints it as `cococ show: warning: ...`
        rc, out, err = cli("show", "train_val.prototxt")
    assert rc == 0
    msg = " ".join(str(x.message) for x in w)
    assert "Data layer 'cifar': input shape guessed as [100, 3, 224, 224]" in msg
    assert "--input-shape N,C,H,W" in msg


def test_input_shape_sets_the_data_layers_shape(cli, tmp_path):
    (tmp_path / "train_val.prototxt").write_text(DATA_NET)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no guess, no warning
        rc, out, err = cli("show", "train_val.prototxt", "--input-shape", "1,3,32,32")
    assert rc == 0, err
    assert "inputs: %data: f32[1,3,32,32]; outputs: %ip: f32[1,10]" in out
    g = cococ.load(tmp_path / "train_val.prototxt", input_shape=[2, 3, 32, 32])
    assert list(g.inputs[0].type.shape) == [2, 3, 32, 32]


def test_input_shape_on_a_net_with_two_inputs_names_them(cli, tmp_path):
    (tmp_path / "two.prototxt").write_text(
        'name: "two"\ninput: "a"\ninput_dim: 1\ninput_dim: 3\ninput_dim: 4\ninput_dim: 4\n'
        'input: "b"\ninput_dim: 1\ninput_dim: 3\ninput_dim: 4\ninput_dim: 4\n'
        'layer { name: "sum" type: "Eltwise" bottom: "a" bottom: "b" top: "sum" }\n')
    rc, _, err = cli("show", "two.prototxt", "--input-shape", "1,3,8,8")
    assert rc == 1 and "--input-shape sets the shape of one input; the net has 2 (a, b)" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("args, msg", [
    (["--input-shape", "1,x,3"], "expected positive dims separated by commas"),
    (["--input-shape", "1,0"], "expected positive dims separated by commas"),
])
def test_bad_input_shape_is_a_one_line_error(cli, tmp_path, args, msg):
    (tmp_path / "train_val.prototxt").write_text(DATA_NET)
    rc, _, err = cli("show", "train_val.prototxt", *args)
    assert rc == 1 and msg in err and len(err.strip().splitlines()) == 1


def test_input_shape_on_an_ir_file_says_it_is_for_prototxt(cli):
    rc, _, err = cli("show", BN_NET, "--input-shape", "1,3,8,8")
    assert rc == 1 and "--input-shape is for .prototxt nets" in err


# ---- run --random on a build calibrated on data ---------------------------------------------------

@pytest.fixture(scope="module")
def int8_on_data(tmp_path_factory):
    """bn_net in int8, calibrated on inputs in [0, 1] (as digits images are): ~12 s."""
    rng = np.random.default_rng(0)
    cal = [[rng.uniform(0, 1, (1, 3, 8, 8)).astype(np.float32)] for _ in range(16)]
    out = tmp_path_factory.mktemp("int8") / "bn-int8"
    return build(parse_file(BN_NET), "arm-m4", quantize="int8", calibration=cal, out_dir=out)


@needs_gcc
def test_random_normal_inputs_would_fail_the_check(int8_on_data, capsys):
    """The finding: normal inputs reach |x| ~ 3, the device clips at the calibrated 1.0."""
    x = int8_on_data.random_inputs(0)
    assert check(int8_on_data, x, int8_on_data.run(x)) == 1
    assert "MISMATCH" in capsys.readouterr().out


@needs_gcc
def test_run_random_draws_inside_the_calibration_range(cli, int8_on_data):
    rc, out, err = cli("run", int8_on_data.dir, "--random", "--check")
    assert rc == 0, out + err
    assert re.search(r"input data: random uniform in \[-0\.99\d*, 0\.99\d*\], the range the int8 build was calibrated on", out)
    assert "check prob: ok" in out


# ---- dead ends --------------------------------------------------------------------------------------

def test_prune_on_a_chain_net_says_it_has_no_modules(cli):
    rc, _, err = cli("prune", *LENET, "--objective", "min ModelSize constraint Accuracy >= 0.9",
                     "--solver", ROOT / "examples" / "lenet" / "lenet_solver.prototxt", "--sample", "2")
    assert rc == 1 and "a chain network (no branches), so it has no modules" in err
    assert "prune-filters{" in err and "--prune auto" in err and "identify-modules" not in err


def test_fit_error_names_concrete_fixes(cli, tmp_path):
    rc, _, err = cli("build", "--target=arm-m4", *LENET)
    assert rc == 1 and "needs 1684 KiB flash, target has 512 KiB" in err  # weights: no sample input in flash
    assert "--quantize q15" in err and "--prune auto" in err and "--target-opt flash=2M" in err
    rc, _, err = cli("build", "--target=arm-m4", *LENET, "--quantize", "q15")
    assert rc == 1 and "needs 848 KiB flash" in err
    fixes = err.split("fixes:")[1]
    assert "--target-opt flash=1M" in fixes and "--prune auto" in fixes and "quantize" not in fixes


# ---- the M4 run table and the word "params" ---------------------------------------------------------

def test_run_table_shows_a_sparse_steps_kernel_and_stored_macs(capsys):
    step = {"layers": ["ip1"], "op": "dense+relu", "instructions": 900, "cycles": 1000, "step": 0}
    prof = {"instructions": 2000, "cycles": 3000, "executor_instructions": 70, "executor_cycles": 121, "steps": [
        {**step, "format": "simd_group", "macs": 400000, "stored_macs": 40000, "cycles_per_mac": 0.025},
        {**step, "layers": ["ip2"], "op": "dense", "step": 1, "format": "dense", "macs": 5000,
         "stored_macs": 5000, "cycles_per_mac": 0.2}]}
    print_profile(prof)
    lines = capsys.readouterr().out.splitlines()
    assert "dense+relu (simd_group)" in lines[1] and "40,000" in lines[1] and "400,000" not in lines[1]
    assert "dense " in lines[2] and "5,000" in lines[2]
    assert "1 sparse step (csr / simd_group kernel)" in lines[-2]
    assert max(len(line) for line in lines) <= 100


@needs_gcc
def test_report_and_profile_count_the_stored_macs():
    """A 63-32-10 MLP, 80% simd_group-pruned (as tests/backends/test_sparse_build.py): ~10 s."""
    rng = np.random.default_rng(0)
    b = GraphBuilder("mlp")
    y = b.input("x", (1, 63))
    for i, (k, o) in enumerate(((63, 32), (32, 10))):
        y = b("dense", f"fc{i + 1}", y, {"out_features": o},
              {"weight": rng.standard_normal((o, k)).astype(np.float32), "bias": np.zeros(o, np.float32)})
    g = passes.run(b.graph(y), "infer-shapes,simd-group{sparsity=0.8}")
    art = build(g, "arm-m4")
    art.run({"x": rng.standard_normal((1, 63)).astype(np.float32)})
    steps = art.profile()["steps"]
    assert any(s["format"] == "simd_group" for s in steps)
    for s in steps:
        if s["format"] == "dense":
            assert s["stored_macs"] == s["macs"]
        else:
            assert 0 < s["stored_macs"] < s["macs"]
            assert s["cycles_per_mac"] == round(s["cycles"] / s["stored_macs"], 3)


def test_show_counts_params_and_build_counts_stored_weights(cli):
    rc, out, _ = cli("show", BN_NET)
    assert rc == 0 and "params 778" in out
    rc, out, err = cli("build", "--target=arm-m4", BN_NET, "--quantize", "q15", "-o", "b")
    assert rc == 0, err
    assert " stored weights, " in out and " params" not in out
