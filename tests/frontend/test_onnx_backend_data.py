"""The ONNX package's own backend test cases (pytorch-converted/, pytorch-operator/ in the wheel).

Every case is run two ways against its expected outputs: ONNX import + reference interpreter,
and ONNX import + cococ's ONNX export + onnxruntime. 1-D and 3-D cases (names with 1d/3d,
or a rank-3/5 input) are outside the 2-D IR and skipped. A case whose import raises a clear
CococError ("not supported") is counted as unsupported; the sets that pass and that are
unsupported are pinned (PASS, UNSUPPORTED).
Where a case feeds a weight as a graph input (Gemm's B and C, Conv's W, ...), its test value
is baked into an initializer first, since weights are params in the IR.
"""
from __future__ import annotations

import glob
import os
import re

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from cococ.backends.onnx_export import to_onnx
from cococ.frontend.onnx import load_onnx
from cococ.ir.core import CococError
from cococ.ir.interpreter import run

DATA = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data")
# inputs that are weights, by op type: the slots the IR holds as params
WEIGHT_SLOTS = {"Conv": {1, 2}, "Gemm": {1, 2}, "MatMul": {1}, "PRelu": {1}, "BatchNormalization": {1, 2, 3, 4}}
# The exact outcome (onnx's own test data is pinned by the onnx version): a case that stops passing,
# or moves from pass to 'unsupported', fails here; one that starts passing is added here.
PASS = {"test_" + n for n in (
    "AvgPool2d", "AvgPool2d_stride", "BatchNorm2d_eval", "BatchNorm2d_momentum_eval", "Conv2d",
    "Conv2d_depthwise", "Conv2d_depthwise_padded", "Conv2d_depthwise_strided",
    "Conv2d_depthwise_with_multiplier", "Conv2d_dilated", "Conv2d_groups", "Conv2d_groups_thnn",
    "Conv2d_no_bias", "Conv2d_padding", "Conv2d_strided", "GLU", "Linear", "Linear_no_bias",
    "MaxPool2d", "PixelShuffle", "PReLU_2d", "PReLU_2d_multiparam", "ReLU", "Sigmoid", "Softmax", "Tanh",
    "operator_addmm", "operator_clip", "operator_concat2", "operator_conv", "operator_flatten",
    "operator_index", "operator_max", "operator_mm", "softmax_functional_dim3", "softmax_lastdim")}
UNSUPPORTED = {"test_" + n for n in (
    "ConstantPad2d", "ConvTranspose2d", "ConvTranspose2d_no_bias", "Embedding", "Embedding_sparse",
    "LogSoftmax", "MaxPool2d_stride_padding_dilation", "PoissonNLLLLoss_no_reduce",
    "ReflectionPad2d", "ReplicationPad2d", "Softmin", "Softplus", "ZeroPad2d", "log_softmax_dim3",
    "log_softmax_lastdim", "operator_add_size1_broadcast", "operator_add_size1_singleton_broadcast",
    "operator_addconstant", "operator_convtranspose", "operator_exp", "operator_min",
    "operator_non_float_params", "operator_pad", "operator_params", "operator_pow",
    "operator_reduced_mean", "operator_reduced_mean_keepdim", "operator_reduced_sum",
    "operator_reduced_sum_keepdim", "operator_repeat", "operator_repeat_dim_overflow", "operator_selu",
    "operator_sqrt", "operator_symbolic_override")}


def cases() -> list[str]:
    dirs = sorted(glob.glob(os.path.join(DATA, "pytorch-converted", "*")) +
                  glob.glob(os.path.join(DATA, "pytorch-operator", "*")))
    return [d for d in dirs if os.path.isfile(os.path.join(d, "model.onnx"))]


def is_2d(model: onnx.ModelProto, name: str) -> bool:
    if re.search(r"[13]d", name, re.IGNORECASE):
        return False
    inits = {t.name for t in model.graph.initializer}
    ranks = [len(i.type.tensor_type.shape.dim) for i in model.graph.input if i.name not in inits]
    return all(r in (2, 4) for r in ranks)


def bake_weights(model: onnx.ModelProto, inputs: list[np.ndarray]) -> tuple[onnx.ModelProto, list[np.ndarray]]:
    """Turn graph inputs that feed weight slots into initializers holding their test values."""
    inits = {t.name for t in model.graph.initializer}
    graph_inputs = [i.name for i in model.graph.input if i.name not in inits]
    weights = {n.input[k] for n in model.graph.node for k in WEIGHT_SLOTS.get(n.op_type, ())
               if k < len(n.input) and n.input[k] in graph_inputs}
    if not weights:
        return model, inputs
    model = onnx.ModelProto.FromString(model.SerializeToString())
    keep_inputs, keep = [], []
    for name, value in zip(graph_inputs, inputs):
        if name in weights:
            model.graph.initializer.append(numpy_helper.from_array(value, name))
        else:
            keep.append(value)
            keep_inputs.append(name)
    if model.ir_version < 4:  # old models must list every initializer among the graph inputs
        return model, keep
    kept = [i for i in model.graph.input if i.name in keep_inputs or i.name in inits]
    del model.graph.input[:]
    model.graph.input.extend(kept)
    return model, keep


def load_case(d: str):
    model = onnx.load(os.path.join(d, "model.onnx"))
    sets = []
    for ts in sorted(glob.glob(os.path.join(d, "test_data_set_*"))):
        ins = [numpy_helper.to_array(onnx.load_tensor(f)) for f in sorted(glob.glob(os.path.join(ts, "input_*.pb")))]
        outs = [numpy_helper.to_array(onnx.load_tensor(f)) for f in sorted(glob.glob(os.path.join(ts, "output_*.pb")))]
        sets.append((ins, outs))
    return model, sets


def close(got, want, rel=1e-4) -> bool:
    got, want = np.asarray(got), np.asarray(want)
    if got.shape != want.shape:
        return False
    return float(np.abs(got - want).max(initial=0)) <= rel * max(1.0, float(np.abs(want).max(initial=0)))


def run_case(d: str) -> tuple[str, str]:
    """-> (outcome, detail); outcome is pass, fail, unsupported or skipped (not 2-D)."""
    name = os.path.basename(d)
    model, sets = load_case(d)
    baked, _ = bake_weights(model, sets[0][0])
    if not is_2d(baked, name):
        return "skipped", "not 2-D"
    try:
        g = load_onnx(baked)
    except CococError as e:
        return ("unsupported" if "not supported" in str(e) else "fail"), str(e)[:160]
    try:
        exported = to_onnx(g)
        onnx.checker.check_model(exported)
        sess = ort.InferenceSession(exported.SerializeToString(), providers=["CPUExecutionProvider"])
    except Exception as e:  # an export that onnx or onnxruntime rejects is a failure of ours
        return "fail", f"export: {type(e).__name__}: {str(e)[:160]}"
    for ins, outs in sets:
        _, feeds = bake_weights(model, ins)
        try:
            got = run(g, feeds)
        except CococError as e:
            return "fail", f"interpreter: {e}"
        ys = [got[v.name] for v in g.outputs]
        if len(ys) != len(outs) or not all(close(y, w) for y, w in zip(ys, outs)):
            return "fail", "interpreter output differs from the expected output"
        ort_ys = sess.run(None, {i.name: x for i, x in zip(sess.get_inputs(), feeds)})
        if not all(close(y, w) for y, w in zip(ort_ys, outs)):
            return "fail", "import + export + onnxruntime output differs from the expected output"
    return "pass", ""


def test_onnx_backend_data():
    dirs = cases()
    assert dirs, f"no backend test data under {DATA}"
    results = {os.path.basename(d): run_case(d) for d in dirs}
    by = {k: sorted(n for n, (o, _) in results.items() if o == k) for k in ("pass", "fail", "unsupported", "skipped")}
    print()
    for n, (o, detail) in sorted(results.items()):
        if o != "skipped":
            print(f"  {o:11s} {n}" + (f"  -- {detail}" if detail else ""))
    print(f"pass {len(by['pass'])}, fail {len(by['fail'])}, unsupported {len(by['unsupported'])}, "
          f"skipped (not 2-D) {len(by['skipped'])}")
    assert not by["fail"], f"failing: {by['fail']}"
    assert set(by["pass"]) == PASS, f"no longer pass: {sorted(PASS - set(by['pass']))}, " \
                                    f"newly pass (add them to PASS): {sorted(set(by['pass']) - PASS)}"
    assert set(by["unsupported"]) == UNSUPPORTED, sorted(set(by["unsupported"]) ^ UNSUPPORTED)
    for must in ("test_Conv2d", "test_Conv2d_depthwise", "test_Conv2d_dilated", "test_Conv2d_groups",
                 "test_BatchNorm2d_eval", "test_Linear", "test_Linear_no_bias", "test_PReLU_2d_multiparam",
                 "test_MaxPool2d", "test_AvgPool2d", "test_ReLU", "test_Softmax", "test_operator_addmm"):
        assert must in by["pass"], f"{must}: {results[must]}"


@pytest.mark.parametrize("name", ["test_ConvTranspose2d", "test_ReflectionPad2d", "test_ELU"])
def test_unsupported_cases_are_clear_errors(name):
    d = next(d for d in cases() if os.path.basename(d) == name)
    with pytest.raises(CococError, match="not supported"):
        load_onnx(os.path.join(d, "model.onnx"))
