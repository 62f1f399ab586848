"""Each op's numpy semantics against torch.nn.functional (an independent reference), its shape
inference against its compute, its cost against hand numbers, and its attribute checks."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cococ.ir.core import CococError, Layer, Param, TensorType, Value
from cococ.ir.registry import ChannelRule, all_ops, get_op

RNG = np.random.default_rng(0)


def rand(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def T(a):
    return torch.from_numpy(np.ascontiguousarray(a))


def make(op, n_in=1, attrs=None, params=None, n_out=1):
    return Layer(op, "L", [Value(f"x{i}") for i in range(n_in)], [Value(f"y{i}") for i in range(n_out)],
                 attrs or {}, {k: Param.from_array(v) for k, v in (params or {}).items()})


def apply(op, xs, attrs=None, params=None, n_out=1):
    """Check the layer as the verifier would, infer, compute; shape inference must agree."""
    xs = xs if isinstance(xs, list) else [xs]
    layer = make(op, len(xs), attrs, params, n_out)
    cls = get_op(op)
    cls.check_arity(layer)
    cls.check_attrs(layer)
    types = [TensorType(x.shape) for x in xs]
    cls.verify(layer, types)
    want = cls.param_shapes(layer, types)
    for k, p in layer.params.items():
        assert p.shape == tuple(want[k]), k
    out_types = cls.infer(layer, types)
    ys = cls.compute(layer, xs, {k: p.dense() for k, p in layer.params.items()})
    assert [y.shape for y in ys] == [t.shape for t in out_types]
    assert all(y.dtype == np.float32 for y in ys)
    return ys if n_out > 1 else ys[0]


def close(y, ref, tol=1e-5):
    ref = ref.numpy() if isinstance(ref, torch.Tensor) else ref
    np.testing.assert_allclose(y, ref, rtol=tol, atol=tol)


# ---- weighted layers ------------------------------------------------------------------------

@pytest.mark.parametrize("groups,dilation,pad,stride", [
    (1, [1, 1], [1, 1, 1, 1], [1, 1]),
    (2, [2, 1], [0, 2, 1, 0], [2, 1]),
    (4, [1, 1], [2, 1, 0, 3], [1, 2]),   # depthwise-ish, asymmetric pad
])
def test_conv2d(groups, dilation, pad, stride):
    x, w, b = rand(2, 4, 9, 8), rand(8, 4 // groups, 3, 2), rand(8)
    y = apply("conv2d", x, dict(out_channels=8, kernel=[3, 2], stride=stride, pad=pad,
                                dilation=dilation, groups=groups), {"weight": w, "bias": b})
    t, l, bo, r = pad
    ref = F.conv2d(F.pad(T(x), (l, r, t, bo)), T(w), T(b), stride=stride, dilation=dilation, groups=groups)
    close(y, ref, 1e-4)


def test_dense():
    x, w, b = rand(3, 10), rand(5, 10), rand(5)
    close(apply("dense", x, {"out_features": 5}, {"weight": w, "bias": b}), F.linear(T(x), T(w), T(b)))
    close(apply("dense", x, {"out_features": 5}, {"weight": w}), F.linear(T(x), T(w)))


def test_batchnorm_scale_bias():
    x = rand(2, 3, 4, 5)
    m, v, s, b = rand(3), np.abs(rand(3)) + 0.1, rand(3), rand(3)
    close(apply("batchnorm", x, {"eps": 1e-3}, dict(mean=m, var=v, scale=s, bias=b)),
          F.batch_norm(T(x), T(m), T(v), T(s), T(b), training=False, eps=1e-3))
    close(apply("batchnorm", x, {}, dict(mean=m, var=v)),
          F.batch_norm(T(x), T(m), T(v), training=False, eps=1e-5))
    x2 = rand(4, 3)  # rank 2: per feature
    close(apply("batchnorm", x2, {}, dict(mean=m, var=v)), F.batch_norm(T(x2), T(m), T(v), eps=1e-5))
    close(apply("scale", x, params=dict(scale=s, bias=b)), T(x) * T(s)[:, None, None] + T(b)[:, None, None])
    close(apply("scale", x, params=dict(scale=s)), T(x) * T(s)[:, None, None])
    close(apply("bias", x, params=dict(bias=b)), T(x) + T(b)[:, None, None])


# ---- activations ----------------------------------------------------------------------------

def test_activations():
    x = rand(2, 3, 4, 4) * 4
    close(apply("relu", x), F.relu(T(x)))
    close(apply("leaky_relu", x, {"alpha": 0.2}), F.leaky_relu(T(x), 0.2))
    close(apply("leaky_relu", x), F.leaky_relu(T(x)))  # default alpha 0.01 as torch
    close(apply("sigmoid", x * 30), torch.sigmoid(T(x * 30)))
    close(apply("tanh", x), torch.tanh(T(x)))
    close(apply("clip", x, {"min": 0.0, "max": 6}), torch.clamp(T(x), 0, 6))
    close(apply("clip", x, {"max": 1.0}), torch.clamp(T(x), max=1.0))
    s = rand(3)
    close(apply("prelu", x, params={"slope": s}), F.prelu(T(x), T(s)))
    close(apply("prelu", x, params={"slope": s[:1]}), F.prelu(T(x), T(s[:1])))
    close(apply("power", x, {"power": 2.0, "scale": 0.5, "shift": 1.0}), torch.pow(1.0 + 0.5 * T(x), 2.0))
    close(apply("power", np.abs(x), {"power": 0.5}), torch.sqrt(T(np.abs(x))))
    for axis in (1, -1, 0):
        close(apply("softmax", x, {"axis": axis}), F.softmax(T(x), dim=axis))
    close(apply("dropout", x, {"ratio": 0.3}), x)
    close(apply("identity", x), x)


@pytest.mark.parametrize("shape", [(2, 3, 4, 4), (5, 3)])
def test_mask_against_torch(shape):
    """Scalpel's node gate, by hand in torch: channel c of x times alpha[c] * beta[c] (alpha 0
    drops the channel, beta scales the kept ones), the same for every other axis."""
    x = rand(*shape)
    alpha, beta = np.array([1, 0, 1], np.float32), np.array([0.25, 0.9, 0.6], np.float32)
    ref = T(x).clone()
    for c in range(3):
        ref[:, c] = ref[:, c] * (float(alpha[c]) * float(beta[c]))
    y = apply("mask", x, params={"alpha": alpha, "beta": beta})
    close(y, ref)
    assert not y[:, 1].any() and np.abs(y[:, 0]).sum() > 0


# ---- pooling --------------------------------------------------------------------------------

def pool_cases():
    for h, w in [(7, 6), (5, 9)]:
        for k in (2, 3):
            for s in (1, 2, 3):
                for p in range(k // 2 + 1):
                    yield h, w, k, s, p


@pytest.mark.parametrize("ceil", [False, True])
def test_pools_against_torch(ceil):
    for h, w, k, s, p in pool_cases():
        x = rand(1, 2, h, w)
        attrs = dict(kernel=[k, k], stride=[s, s], pad=[p] * 4, ceil_mode=ceil)
        close(apply("max_pool", x, attrs), F.max_pool2d(T(x), k, s, p, ceil_mode=ceil))
        for inc in (True, False):
            close(apply("avg_pool", x, {**attrs, "count_include_pad": inc}),
                  F.avg_pool2d(T(x), k, s, p, ceil_mode=ceil, count_include_pad=inc))


def test_pools_asymmetric_pad():
    x = rand(2, 3, 8, 7)
    attrs = dict(kernel=[3, 2], stride=[2, 1], pad=[1, 0, 2, 1])
    ref = F.max_pool2d(F.pad(T(x), (0, 1, 1, 2), value=-np.inf), (3, 2), (2, 1))
    close(apply("max_pool", x, attrs), ref)
    ref = F.avg_pool2d(F.pad(T(x), (0, 1, 1, 2)), (3, 2), (2, 1))  # floor mode: full windows
    close(apply("avg_pool", x, {**attrs, "count_include_pad": True}), ref)


def test_caffe_ceil_mode_by_hand():
    # ones 4x4, kernel 3, stride 2, pad 1, ceil: ceil((4+2-3)/2)+1 = 3 outputs per axis; the last
    # window [3, 6) is clipped to the padded extent [-1, 5): 2 rows, of which 1 is input (Caffe AVE)
    y = apply("avg_pool", np.ones((1, 1, 4, 4), np.float32),
              dict(kernel=[3, 3], stride=[2, 2], pad=[1] * 4, ceil_mode=True))
    f = np.array([2 / 3, 1, 1 / 2])
    close(y[0, 0], np.outer(f, f))
    # Caffe drops a last window starting inside the padding: H=5, k=2, s=2, pad=1 -> 3, not 4
    assert apply("max_pool", rand(1, 1, 5, 5), dict(kernel=[2, 2], stride=[2, 2], pad=[1] * 4,
                                                   ceil_mode=True)).shape == (1, 1, 3, 3)
    # without pad, ceil mode keeps a partial window: H=6, k=3, s=2 -> 3 (floor gives 2)
    x = rand(1, 1, 6, 6)
    y = apply("max_pool", x, dict(kernel=[3, 3], stride=[2, 2], ceil_mode=True))
    assert y.shape == (1, 1, 3, 3) and y[0, 0, 2, 2] == x[0, 0, 4:, 4:].max()


def test_global_pools():
    x = rand(2, 3, 5, 4)
    close(apply("global_avg_pool", x), T(x).mean((2, 3), keepdim=True))
    close(apply("global_max_pool", x), T(x).amax((2, 3), keepdim=True))


def test_lrn():
    x = rand(2, 7, 5, 6)
    for size in (1, 3, 5):
        close(apply("lrn", x, dict(size=size, alpha=0.3, beta=0.75, k=2.0)),
              F.local_response_norm(T(x), size, 0.3, 0.75, 2.0))
    # within: Caffe averages x^2 over a size x size zero-padded window (stride 1)
    avg = F.avg_pool2d(T(x) ** 2, 3, 1, 1, count_include_pad=True)
    close(apply("lrn", x, dict(size=3, alpha=0.5, beta=0.75, region="within")), T(x) * (1 + 0.5 * avg) ** -0.75)


# ---- tensor ops -----------------------------------------------------------------------------

def test_eltwise_concat_slice():
    a, b, c = rand(2, 3, 4, 4), rand(2, 3, 4, 4), rand(2, 3, 4, 4)
    close(apply("eltwise", [a, b, c]), a + b + c)
    close(apply("eltwise", [a, b], {"coeffs": [1.0, -1]}), a - b)
    close(apply("eltwise", [a, b, c], {"mode": "prod"}), a * b * c)
    close(apply("eltwise", [a, b], {"mode": "max"}), torch.maximum(T(a), T(b)))
    d = rand(2, 5, 4, 4)
    close(apply("concat", [a, d]), torch.cat([T(a), T(d)], 1))
    close(apply("concat", [a, b], {"axis": -1}), torch.cat([T(a), T(b)], -1))
    x = rand(2, 8, 3, 3)
    ys = apply("slice", x, {"points": [2, 5]}, n_out=3)
    for y, r in zip(ys, torch.split(T(x), [2, 3, 3], 1)):
        close(y, r)
    ys = apply("slice", x, {"axis": 3, "points": [1]}, n_out=2)
    assert [y.shape for y in ys] == [(2, 8, 3, 1), (2, 8, 3, 2)]


def test_flatten_reshape():
    x = rand(2, 3, 4, 5)
    close(apply("flatten", x), torch.flatten(T(x), 1))
    assert apply("flatten", x, {"axis": 2}).shape == (2, 3, 20)   # Caffe: end_axis = -1
    assert apply("reshape", x, {"shape": [0, -1]}).shape == (2, 60)
    assert apply("reshape", x, {"shape": [0, 0, -1, 10]}).shape == (2, 3, 2, 10)
    close(apply("reshape", x, {"shape": [-1, 5, 1]}), x.reshape(-1, 5, 1))


# ---- cost -----------------------------------------------------------------------------------

def cost(op, in_shapes, attrs, params):
    layer = make(op, len(in_shapes), attrs, params)
    cls = get_op(op)
    cls.check_attrs(layer)
    ins = [TensorType(s) for s in in_shapes]
    return cls.cost(layer, ins, cls.infer(layer, ins))


def test_cost_hand_numbers():
    # ResNet-50 conv1: 64 x 112 x 112 outputs, each 3 * 7 * 7 MACs
    c = cost("conv2d", [(1, 3, 224, 224)], dict(out_channels=64, kernel=[7, 7], stride=[2, 2], pad=[3] * 4),
             dict(weight=np.zeros((64, 3, 7, 7), np.float32), bias=np.zeros(64, np.float32)))
    assert (c.params, c.macs) == (64 * 3 * 49 + 64, 118_013_952)
    c = cost("conv2d", [(1, 32, 8, 8)], dict(out_channels=16, kernel=[3, 3], pad=[1] * 4, groups=4),
             dict(weight=np.zeros((16, 8, 3, 3), np.float32)))
    assert (c.params, c.macs) == (16 * 8 * 9, 16 * 64 * 8 * 9)
    c = cost("dense", [(2, 2048)], dict(out_features=1000),
             dict(weight=np.zeros((1000, 2048), np.float32), bias=np.zeros(1000, np.float32)))
    assert (c.params, c.macs) == (2048 * 1000 + 1000, 2 * 2048 * 1000)
    z = np.zeros(8, np.float32)
    assert cost("batchnorm", [(1, 8, 4, 4)], {}, dict(mean=z, var=z)).macs == 128
    assert cost("relu", [(1, 8, 4, 4)], {}, {}).macs == 0


# ---- schema, verify, channel rules ----------------------------------------------------------

@pytest.mark.parametrize("op,attrs,msg", [
    ("max_pool", {"kernel": [2, 2], "size": 3}, "unknown attribute 'size'"),
    ("max_pool", {}, "requires attribute 'kernel'"),
    ("max_pool", {"kernel": [2]}, "must have 2 elements"),
    ("avg_pool", {"kernel": [2, 2], "ceil_mode": 1}, "must be bool"),
    ("eltwise", {"mode": "min"}, "must be one of"),
    ("lrn", {"size": 3, "region": "spatial"}, "must be one of"),
    ("leaky_relu", {"alpha": "x"}, "must be float"),
    ("slice", {"points": [1.5]}, "must be ints"),
])
def test_attr_schema_errors(op, attrs, msg):
    with pytest.raises(CococError, match=msg) as e:
        get_op(op).check_attrs(make(op, attrs=attrs))
    assert "layer 'L'" in str(e.value)


@pytest.mark.parametrize("op,xs,attrs,msg", [
    ("max_pool", [(1, 1, 4, 4)], {"kernel": [2, 2], "pad": [2, 0, 0, 0]}, "smaller than the kernel"),
    ("avg_pool", [(1, 4, 4)], {"kernel": [2, 2]}, "rank 4"),
    ("eltwise", [(1, 2), (1, 3)], {}, "one shape"),
    ("eltwise", [(1, 2), (1, 2)], {"coeffs": [1.0]}, "2 inputs but 1 coeffs"),
    ("eltwise", [(1, 2), (1, 2)], {"mode": "max", "coeffs": [1.0, 1.0]}, "only apply to mode=sum"),
    ("concat", [(1, 2, 3), (1, 2, 4)], {}, "differ off that axis"),
    ("slice", [(1, 4)], {"points": [3, 2]}, "must increase"),
    ("softmax", [(1, 4)], {"axis": 2}, "out of range"),
    ("clip", [(1, 4)], {"min": 1.0, "max": 0.0}, "greater than max"),
])
def test_verify_errors(op, xs, attrs, msg):
    layer = make(op, len(xs), attrs)
    cls = get_op(op)
    cls.check_attrs(layer)
    with pytest.raises(CococError, match=msg):
        cls.verify(layer, [TensorType(s) for s in xs])


@pytest.mark.parametrize("spec", [[7, -1], [-1, -1], [0, 0, 0, 0, 0], [5, -2]])
def test_reshape_errors(spec):
    with pytest.raises(CococError, match="reshape"):
        apply("reshape", rand(2, 3, 4), {"shape": spec})


def test_arity_and_outputs():
    with pytest.raises(CococError, match="takes 2..n inputs"):
        get_op("eltwise").check_arity(make("eltwise", 1))
    with pytest.raises(CococError, match="has 3 outputs"):
        get_op("slice").check_arity(make("slice", attrs={"points": [1, 2]}, n_out=2))


def test_channel_rules():
    t4 = [TensorType((1, 8, 4, 4))]

    def rule(op, attrs=None, params=None, ins=t4):
        layer = make(op, len(ins), attrs, params)
        get_op(op).check_attrs(layer)
        return get_op(op).channels(layer, ins)

    assert rule("batchnorm").params == {"mean": 0, "var": 0, "scale": 0, "bias": 0}
    assert rule("prelu", params={"slope": np.zeros(8, np.float32)}).params == {"slope": 0}
    assert rule("prelu", params={"slope": np.zeros(1, np.float32)}).params == {}
    for op, attrs in [("relu", {}), ("max_pool", {"kernel": [2, 2]}), ("global_avg_pool", {}),
                      ("lrn", {"size": 3}), ("dropout", {}), ("identity", {}), ("power", {}), ("clip", {})]:
        assert rule(op, attrs).kind == "passthrough", op
    assert rule("eltwise", ins=t4 * 2).kind == "tie"
    assert rule("concat", ins=t4 * 2).kind == "concat"
    assert rule("concat", {"axis": 2}, ins=t4 * 2).kind == "opaque"
    assert rule("slice", {"points": [4]}).kind == "split"
    assert rule("flatten").kind == "flatten"
    assert rule("reshape", {"shape": [1, -1]}).kind == "opaque"
    assert rule("softmax").kind == "opaque"


def test_every_op_documented_and_registered():
    ops = all_ops()
    names = ["input", "conv2d", "dense", "batchnorm", "scale", "bias", "relu", "leaky_relu", "prelu",
             "sigmoid", "tanh", "clip", "max_pool", "avg_pool", "global_avg_pool", "global_max_pool",
             "eltwise", "concat", "flatten", "reshape", "softmax", "dropout", "lrn", "identity",
             "slice", "power", "mask", "hardswish", "hardsigmoid", "transpose", "broadcast_eltwise", "resize"]
    # exactly these: an op lost or renamed (or one added without a test here) fails
    assert sorted(ops) == sorted(names)
    assert all(ops[name].doc for name in names), [name for name in names if not ops[name].doc]
    assert isinstance(ops["relu"].channels(make("relu"), [TensorType((1, 2))]), ChannelRule)
