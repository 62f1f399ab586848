"""Scalpel for an int8 build (issue 15 item 4): `cococ build --target=arm-m4 --quantize int8 --prune auto`.

Pruning judges a layer by the kernels the build will run: under int8 the int8 break-even table
(backends/kernels/data/sparse-breakeven-int8-m4.json) at the group width it chooses (4: SXTB16
on words), not q15's table at pairs. So a layer pruned to 60% is worth storing for q15 (break-even
58%) and not for int8 (break-even 69% at width 4). A q15 build prunes as it did.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cococ.backends.kernels.choice import kernel_model, load_table
from cococ.frontend.solver import Solver
from cococ.ir.core import Graph, Layer, Param, TensorType, Value
from cococ.ir.verify import infer_shapes
from cococ.runtime.compress.cost import simd_width

torch.set_num_threads(1)
INT8 = load_table("sparse-breakeven-int8-m4")
Q15 = load_table("sparse-breakeven-m4")


def mlp(hidden=(96, 48), seed=0) -> Graph:
    """8x8 digits -> 96 -> 48 -> 10: LeNet-300-100's layer kinds, group-width-4 friendly sizes."""
    rng = np.random.default_rng(seed)
    x = Value("data", TensorType((1, 1, 8, 8)))
    layers = [Layer("input", "data", [], [x], {"shape": [1, 1, 8, 8]}),
              Layer("flatten", "flat", [x], [Value("flat")], {})]
    last, n = layers[-1].outputs[0], 64
    for i, h in enumerate(hidden + (10,), 1):
        w = (rng.standard_normal((h, n)) * np.sqrt(2 / n)).astype(np.float32)
        layers.append(Layer("dense", f"ip{i}", [last], [Value(f"ip{i}")], dict(out_features=h),
                            dict(weight=Param.from_array(w), bias=Param.from_array(np.zeros(h, np.float32)))))
        last, n = layers[-1].outputs[0], h
        if i <= len(hidden):
            layers.append(Layer("relu", f"relu{i}", [last], [Value(f"relu{i}")], {}))
            last = layers[-1].outputs[0]
    layers.append(Layer("softmax", "prob", [last], [Value("prob")], {}))
    g = Graph("mlp", layers, [layers[-1].outputs[0]])
    infer_shapes(g)
    return g


def test_int8_cost_model_reads_the_int8_table_at_its_width():
    assert simd_width("arm-m4", "int8") == 4 and simd_width("arm-m4", "q15") == 2
    m = kernel_model("arm-m4", "dense", "int8")
    assert m.breakeven == INT8["breakeven"]["simd_group w4"] and "int8, width 4" in m.source
    assert m.dense_per_mac == INT8["rows"][0][1] / 10_000 and m.ratio == [r[7] for r in INT8["rows"]]
    assert kernel_model("arm-m4", "dense", "int8", 2).breakeven == INT8["breakeven"]["simd_group w2"]
    # q15 (and no quantization) read the q15 table as before; an int8 conv its own int8 conv table
    # (tests/runtime/test_breakeven_mm_int8.py), not q15's matrix-matrix one
    for quant in ("q15", None):
        assert kernel_model("arm-m4", "dense", quant).breakeven == Q15["breakeven"]["simd_group"]
    assert "mm-int8" in kernel_model("arm-m4", "conv2d", "int8").source
    assert kernel_model("arm-m4", "conv2d", "q15") == kernel_model("arm-m4", "conv2d")


@pytest.mark.parametrize("dtype, width, formats, warned", [
    ("int8", 4, {"ip1": "simd_group", "ip2": "dense", "ip3": "dense"}, {"ip2", "ip3"}),
    ("q15", 2, {"ip1": "simd_group", "ip2": "simd_group", "ip3": "dense"}, {"ip3"}),
])
def test_scalpel_keeps_what_the_dtypes_break_even_says(monkeypatch, dtype, width, formats, warned):
    """Retraining stubbed: ip1 holds 75% pruned, ip2 60%, ip3 50%. 60% is past q15's break-even
    (58%) and short of int8's at width 4 (69%): ip2 is stored sparse for q15 only."""
    import cococ.runtime.compress.scalpel as sc
    limit = {"ip1": 0.75, "ip2": 0.6, "ip3": 0.5}

    def retrain(graph, solver, ds, masks, iters, seed):
        name = list(masks)[-1]  # the layer whose turn it is: its mask comes last
        return 1.0 if 1 - masks[name].mean() <= limit[name] + 0.01 else 0.0

    monkeypatch.setattr(sc, "retrain", retrain)
    g, rep = sc.simd_prune(mlp(), None, "digits", target="arm-m4", dtype=dtype, steps=(0.5, 0.6, 0.75),
                           policy=sc.StepPolicy(0, 1, 0))
    assert rep.width == width
    assert {l.layer: l.format for l in rep.layers} == formats, rep.table()
    m = kernel_model("arm-m4", "dense", dtype)
    assert rep.breakeven == m.breakeven and rep.cost_source == m.source
    for l in rep.layers:
        assert l.dense_time == pytest.approx(l.macs * m.dense_per_mac)
        if l.format == "simd_group":
            assert g.layer(l.layer).params["weight"].attrs["width"] == width
            assert l.sparse_time == pytest.approx(m.sparse_time(l.dense_time, l.sparsity))
            assert l.sparse_time < l.dense_time
    assert {w.split(":")[0] for w in rep.warnings} == warned  # kept dense: under the break-even


@pytest.mark.slow  # ~36 s at load 14 on 2 cores: training, ~9 retrainings, an int8 build + emulated comparisons
def test_build_int8_prune_auto_runs_int8_sparse_kernels(tmp_path, monkeypatch, capsys):
    import shutil

    import cococ.runtime.compress.prune_for_target as pft
    from cococ.cli import main
    from cococ.ir.printer import save_ir
    from cococ.runtime.compress.scalpel import simd_prune
    from cococ.runtime.train import train
    if shutil.which("arm-none-eabi-gcc") is None:
        pytest.skip("arm-none-eabi-gcc not installed (apt: gcc-arm-none-eabi)")
    g = mlp()
    train(g, Solver(base_lr=0.05, max_iter=200, momentum=0.9, weight_decay=5e-4, random_seed=1), "digits",
          max_iter=200, progress=False)
    save_ir(g, tmp_path / "net.ir")
    monkeypatch.chdir(tmp_path)

    def cli(*args):
        rc = main(list(args))
        return (rc, *capsys.readouterr())
    # fewer, shorter steps than the CLI's (speed only: the decisions are the real code's)
    monkeypatch.setattr(pft, "simd_prune", lambda *a, **k: simd_prune(*a, **{**k, "steps": (0.5, 0.75, 0.9),
                                                                             "retrain_iter": 40}))
    rc, out, err = cli("build", "net.ir", "--target=arm-m4", "--quantize", "int8", "--prune", "auto",
                       "--max-accuracy-drop", "3", "-o", "out")
    assert rc == 0, err
    assert "int8, width 4" in out and ", int8" in out  # pruned against the int8 table, built in int8
    rep = json.loads((tmp_path / "out" / "report.json").read_text())
    be = INT8["breakeven"]["simd_group w4"]
    stored = {c["layer"]: c for c in rep["sparse"]}
    assert stored, out
    for c in stored.values():  # only layers past the int8 break-even are stored sparse, at width 4
        assert c["format"] == "simd_group" and c["sparsity"] >= be - 0.01, c
    assert any(c["kernel"] == "simd_group" for c in stored.values()), stored
    assert "simd_group w4 (SXTB16 + SMLAD) int8" in (tmp_path / "out" / "kernels.c").read_text()
    rc, out, err = cli("run", "out", "--random", "--check")
    assert rc == 0 and "check prob: ok" in out, out + err


def test_prune_auto_with_quantize_off_the_m4_is_refused_before_pruning(tmp_path, monkeypatch, capsys):
    from cococ.cli import main
    monkeypatch.chdir(tmp_path)
    rc = main(["build", "--target=x86", "net.prototxt", "--quantize", "int8", "--prune", "auto", "-o", "out"])
    out, err = capsys.readouterr()
    assert rc == 1 and out == "" and len(err.strip().splitlines()) == 1
    assert "--quantize int8 is for arm-m4; target x86 runs float" in err
