"""The cuda backend: LeNet and a small ResNet compile to CUDA C and through nvcc on any machine;
they run (and are checked against the reference interpreter) only where a GPU is present."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

pytest.importorskip("tvm")

from cococ.runtime.interpreter import run  # noqa: E402

from tests.backends.test_tvm_x86 import close, lenet, rand, small_resnet  # noqa: E402


def has_gpu() -> bool:
    import tvm
    try:
        return bool(tvm.cuda(0).exist)
    except Exception:  # noqa: BLE001  (no driver at all)
        return False


@pytest.fixture(scope="module", params=[lenet, small_resnet], ids=["lenet", "small_resnet"])
def built(request):
    if shutil.which("nvcc") is None:
        pytest.skip("nvcc is not on PATH: the cuda backend compiles with it")
    from cococ.backends.tvm import build_tvm
    graph = request.param()
    return graph, build_tvm(graph, "cuda")


def test_compiles_to_cuda_with_nvcc(built, tmp_path):
    graph, art = built
    src = art.cuda_source()
    assert "__global__" in src and "extern \"C\"" in src
    assert (art.dir / "model.so").stat().st_size > 0
    art.save(tmp_path / "a")
    assert (tmp_path / "a" / "kernels.cu").exists()


def test_runs_on_gpu(built):
    if not has_gpu():
        pytest.skip("no CUDA GPU on this machine: the artifact was compiled, running needs a GPU")
    graph, art = built
    x = rand(*graph.inputs[0].type.shape)
    assert close(art.run(x)["prob"], run(graph, [x])["prob"])
