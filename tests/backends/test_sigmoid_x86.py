"""Sigmoid's TVM compute takes its exp as a polynomial (ir/ops/activation.py `exp_poly`), so the x86
kernel vectorizes: TVM's exp had become one libm `expf` call per lane (EfficientNet-B0's SiLUs
were half its x86 time, issue 17). About 10 s."""
from __future__ import annotations

import numpy as np
import tvm
from tvm import te, tirx

import cococ
from cococ.backends.kernels.compute import LowerCtx
from cococ.backends.tvm.lower import lower_graph
from cococ.ir.core import Graph, Layer, TensorType, Value
from cococ.ir.interpreter import run
from cococ.ir.ops.activation import exp_poly


def silu_graph(shape) -> Graph:
    x, s, y = Value("x", TensorType(shape)), Value("s"), Value("y")
    return Graph("silu", [Layer("input", "x", [], [x], {"shape": list(shape)}),
                          Layer("sigmoid", "s", [x], [s]),
                          Layer("broadcast_eltwise", "y", [x, s], [y], {"mode": "prod"})], [y])


def test_exp_poly_is_exp_to_float32_precision():
    x = te.placeholder((4096,), name="x")
    f = te.create_prim_func([x, te.compute(x.shape, lambda i: exp_poly(tirx, x[i]), name="e")])
    mod = tvm.tirx.build(f, target="llvm")
    xs = np.concatenate([np.linspace(-87, 88, 4090), [-1e4, -100, 0, 100, 1e4, -88.5]]).astype(np.float32)
    out = tvm.runtime.tensor(np.zeros_like(xs))
    mod(tvm.runtime.tensor(xs), out)
    got, want = out.numpy().astype(np.float64), np.exp(xs[:4090].astype(np.float64))
    assert np.max(np.abs(got[:4090] - want) / want) < 1e-6
    # out of float32's range: 0 and inf as float32's exp, never NaN (sigmoid: exactly 1 and 0)
    assert not np.any(np.isnan(got)) and 0 <= got[4090] < 1e-37 and got[4094] > 1e38 and got[4092] == 1


def test_sigmoid_kernel_has_no_exp_call():
    g = silu_graph((1, 8, 6, 10))
    mod = lower_graph(g, LowerCtx(oc_block=16))
    text = "\n".join(f.script() for f in mod.functions.values() if isinstance(f, tirx.PrimFunc))
    assert "sigmoid" in text and "T.exp(" not in text and "T.sigmoid(" not in text


def test_silu_on_x86_matches_the_reference_at_extremes():
    g = silu_graph((1, 8, 6, 10))
    x = np.random.default_rng(0).standard_normal((1, 8, 6, 10)).astype(np.float32) * 20
    x.flat[:6] = [0.0, -90.0, 90.0, -1e4, 1e4, 1e-8]
    got = cococ.build(g, "x86").run({"x": x})["y"]
    want = run(g, {"x": x})["y"]
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-30)
