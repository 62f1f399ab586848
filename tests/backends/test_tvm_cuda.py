"""The cuda backend: LeNet and a small ResNet compile to CUDA C and through nvcc on any machine
(SqueezeNet from the corpus too, behind -m slow); they run (and are checked against the reference
interpreter) only where a GPU is present, and skip saying so elsewhere."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import tvm

import cococ
from cococ.backends.tvm import build_tvm
from cococ.ir.interpreter import run

from tests.backends.test_tvm_x86 import close, lenet, rand, small_resnet, with_logits


def has_gpu() -> bool:
    """TVM's own answer (False without a driver or a device; any other error is a real failure)."""
    return bool(tvm.cuda(0).exist)


NO_GPU = "no CUDA GPU on this machine (tvm.cuda(0).exist is False): the artifact was compiled, running needs a GPU"


@pytest.fixture(scope="module", params=[lenet, small_resnet], ids=["lenet", "small_resnet"])
def built(request):
    if shutil.which("nvcc") is None:
        pytest.skip("nvcc is not on PATH: the cuda backend compiles with it")
    graph = request.param()
    return graph, build_tvm(graph, "cuda")


def test_compiles_to_cuda_with_nvcc(built, tmp_path):
    graph, art = built
    src = art.cuda_source()
    assert "__global__" in src and "extern \"C\"" in src
    assert (art.dir / "model.so").stat().st_size > 0
    assert (art.dir / "kernels.fatbin").stat().st_size > 0 and art.manifest["build_times"]["nvcc_s"] > 0
    art.save(tmp_path / "a")
    assert (tmp_path / "a" / "kernels.cu").exists() and (tmp_path / "a" / "kernels.fatbin").exists()


def test_runs_on_gpu(built):
    if not has_gpu():
        pytest.skip(NO_GPU)
    graph, art = built
    x = rand(*graph.inputs[0].type.shape)
    assert close(art.run(x)["prob"], run(graph, [x])["prob"])


SQUEEZENET = "SqueezeNet/SqueezeNet_v1.1/deploy.prototxt"  # in the corpus


@pytest.fixture(scope="module")
def squeezenet(corpus):
    """Issue 4's done-when for cuda, on the cheapest corpus net (about a minute on 2 busy cores);
    benchmarks/cuda_compile.py builds all four nets."""
    if shutil.which("nvcc") is None:
        pytest.skip("nvcc is not on PATH: the cuda backend compiles with it")
    graph = cococ.load(corpus / SQUEEZENET, init="random")
    with_logits(graph)
    return graph, build_tvm(graph, "cuda")


@pytest.mark.slow
def test_corpus_squeezenet_compiles_with_nvcc(squeezenet):
    graph, art = squeezenet
    src = art.cuda_source()
    assert src.count("__global__") >= art.manifest["kernels"] >= 20
    assert (art.dir / "kernels.fatbin").stat().st_size > 0
    print(f"squeezenet cuda: {art.manifest['kernels']} kernels, build {art.manifest['build_times']}")


@pytest.mark.slow
def test_corpus_squeezenet_runs_on_gpu(squeezenet):
    if not has_gpu():
        pytest.skip(NO_GPU)
    graph, art = squeezenet
    x = art.random_inputs()
    got, ref = art.run(x), run(graph, x)
    for k in ref:  # as the x86 test, relative to the output's scale; 1e-3: nvcc's --use_fast_math
        err = float(np.abs(got[k] - ref[k]).max())
        assert err <= 1e-3 * (1 + float(np.abs(ref[k]).max())), (k, err)
