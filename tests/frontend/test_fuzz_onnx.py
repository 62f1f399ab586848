"""Fuzzing the ONNX frontend at small scale: mutated bytes of real ONNX models give either a
Graph or a CococError, never another exception (benchmarks/fuzz_onnx.py runs it at large scale).

Seeds are real models: backend test cases from the onnx wheel and a cococ-exported net; the
mutations flip, overwrite, insert, delete and truncate bytes, which reaches protobuf decoding,
the checker, shape inference and every converter's attribute handling.
"""
from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st

from cococ.frontend.onnx import load_onnx
from cococ.ir.core import CococError

DATA = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "pytorch-converted")
SEED_CASES = ["test_Conv2d_dilated", "test_BatchNorm2d_eval", "test_Linear", "test_MaxPool2d",
              "test_PReLU_2d_multiparam", "test_Softmax", "test_ZeroPad2d", "test_ConvTranspose2d"]


def _exported_seed() -> bytes:
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Pad", ["x", "pads"], ["p"]),
             helper.make_node("Conv", ["p", "w", "b"], ["c"], strides=[2, 2]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("AveragePool", ["r"], ["a"], kernel_shape=[2, 2], ceil_mode=1),
             helper.make_node("Flatten", ["a"], ["f"]),
             helper.make_node("Gemm", ["f", "fw", "fb"], ["g"], transB=1),
             helper.make_node("Softmax", ["g"], ["y"], axis=1)]
    inits = [numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "pads"),
             numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(np.zeros(4, np.float32), "b"),
             numpy_helper.from_array(rng.standard_normal((5, 16)).astype(np.float32), "fw"),
             numpy_helper.from_array(np.zeros(5, np.float32), "fb")]
    g = helper.make_graph(nodes, "seed", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 6, 6])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], ir_version=8).SerializeToString()


def _seed(case: str) -> bytes:
    """One of the onnx wheel's test models; a missing one fails (an onnx upgrade that moved them
    would otherwise shrink the fuzz to one seed without a word)."""
    with open(os.path.join(DATA, case, "model.onnx"), "rb") as f:
        return f.read()


SEEDS = [_seed(c) for c in SEED_CASES] + [_exported_seed()]

mutation = st.tuples(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]),
                     st.floats(0, 1, exclude_max=True), st.integers(0, 255), st.integers(1, 8))


def mutate(data: bytes, muts) -> bytes:
    b = bytearray(data)
    for kind, where, byte, n in muts:
        i = int(where * len(b)) if b else 0
        if kind == "flip" and b:
            b[i] ^= 1 << (byte % 8)
        elif kind == "set" and b:
            b[i] = byte
        elif kind == "insert":
            b[i:i] = bytes([byte]) * n
        elif kind == "delete":
            del b[i:i + n]
        elif kind == "truncate":
            del b[i:]
    return bytes(b)


def load_or_clean_error(data: bytes) -> None:
    try:
        load_onnx(data)
    except CococError as e:
        assert str(e)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@example(0, [("flip", 0.76953125, 7, 1)])   # an initializer name made invalid UTF-8: a traceback (CI)
@given(st.sampled_from(range(len(SEEDS))), st.lists(mutation, min_size=1, max_size=4))
def test_mutated_onnx_gives_only_cococ_errors(seed, muts):
    load_or_clean_error(mutate(SEEDS[seed], muts))


ERROR_SEEDS = {"test_ZeroPad2d", "test_ConvTranspose2d"}     # unsupported on purpose: the error paths


def test_seeds_import_or_fail_cleanly():
    """Every seed is there; the unmutated ones import, except the two that reach the error paths."""
    assert len(SEEDS) == len(SEED_CASES) + 1
    for case, s in zip(SEED_CASES + ["exported"], SEEDS):
        if case in ERROR_SEEDS:
            with pytest.raises(CococError):
                load_onnx(s)
        else:
            assert load_onnx(s).layers, case
