"""benchmarks/torchvision_nets.py and the torchvision nets of benchmarks/x86_vs_onnxruntime.py
(issue 17): exported once into the cache folder, the same file given to both engines. About 15 s
of CPU time (two small exports, one worker process importing torch and cococ); 40 s of wall
time at a load average of 9 on 2 cores."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # the benchmarks/ scripts
from benchmarks import torchvision_nets  # noqa: E402

BENCH = ROOT / "benchmarks" / "x86_vs_onnxruntime.py"


def test_cached_onnx_exports_once(tmp_path, monkeypatch):
    path = torchvision_nets.cached_onnx("squeezenet1_1", 64, tmp_path)
    assert path.parent == tmp_path and "squeezenet1_1-64-torchscript" in path.name
    model = onnx.load(path)
    assert [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim] == [1, 3, 64, 64]
    assert not list(tmp_path.glob("*.tmp"))
    monkeypatch.setattr(torchvision_nets, "export", lambda *a, **k: pytest.fail("exported twice"))
    assert torchvision_nets.cached_onnx("squeezenet1_1", 64, tmp_path) == path


def test_benchmark_gives_both_engines_the_cached_file(tmp_path, monkeypatch):
    """The benchmark's prepare step for a torchvision net: the cached export, byte for byte, as
    the one model.onnx both engines load, and a 224x224 input; the cache file is the one
    cached_onnx finds again (no second export)."""
    env = dict(os.environ, COCOC_CACHE_DIR=str(tmp_path / "cache"))
    cmd = [sys.executable, str(BENCH), "--worker", "prepare", "--dir", str(tmp_path / "w"), "--net", "shufflenet_v2"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    cached = Path(json.loads(r.stdout.strip().splitlines()[-1])["onnx"])
    assert cached.parent == tmp_path / "cache" / "onnx-export" and len(list(cached.parent.iterdir())) == 1
    assert (tmp_path / "w" / "model.onnx").read_bytes() == cached.read_bytes()
    assert np.load(tmp_path / "w" / "input.npy").shape == (1, 3, 224, 224)
    monkeypatch.setattr(torchvision_nets, "export", lambda *a, **k: pytest.fail("exported twice"))
    assert torchvision_nets.cached_onnx("shufflenet_v2_x1_0", 224, cached.parent) == cached


def test_benchmark_rejects_an_unknown_net():
    r = subprocess.run([sys.executable, str(BENCH), "--nets", "densenet121,vgg16", "--no-write"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "unknown net(s) vgg16" in r.stderr and "efficientnet_b0" in r.stderr
