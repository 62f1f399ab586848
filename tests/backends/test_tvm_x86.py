"""The x86 TVM backend against the reference interpreter (|y - ref| <= 1e-4 (1 + |ref|)).

Every op is lowered in one small multi-output graph (one build: TVM builds cost seconds each,
and CI has two cores), then each op is checked on its own output, so a failure names the op.
Fusion, tails of the packed conv, save/load in a new process, and real nets (slow) follow.
"""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import tvm
from tvm import relax

from cococ.ir.core import Graph, Layer, Param, TensorType, Value
from cococ.ir.interpreter import run
from cococ.ir.registry import all_ops as registered_ops

RNG = np.random.default_rng(3)


def rand(*shape, pos=False):
    a = RNG.standard_normal(shape).astype(np.float32)
    return np.abs(a) + 0.5 if pos else a


class G:
    """Tiny graph builder: each call adds a layer and returns its output value(s)."""

    def __init__(self):
        self.layers, self.outs = [], []

    def input(self, name, shape):
        v = Value(name, TensorType(shape))
        self.layers.append(Layer("input", name, [], [v], {"shape": list(shape)}))
        return v

    def __call__(self, op, name, inputs, attrs=None, params=None, n_out=1, out=False):
        outs = [Value(name if n_out == 1 else f"{name}_{i}") for i in range(n_out)]
        self.layers.append(Layer(op, name, inputs if isinstance(inputs, list) else [inputs], outs, attrs,
                                 {k: Param.from_array(v) for k, v in (params or {}).items()}))
        if out:
            self.outs.extend(outs)
        return outs[0] if n_out == 1 else outs

    def graph(self):
        return Graph("t", self.layers, self.outs)


def conv(c, o, k, **a):
    g = a.get("groups", 1)
    attrs = {"out_channels": o, "kernel": [k, k], **a}
    params = {"weight": rand(o, c // g, k, k)}
    if a.pop("bias", True):
        params["bias"] = rand(o)
    attrs.pop("bias", None)
    return attrs, params


# (case name, op, input shapes, attrs, params, number of outputs)
CASES = [
    ("conv3x3", "conv2d", [(1, 8, 10, 10)], *conv(8, 16, 3, pad=[1, 1, 1, 1]), 1),
    ("conv_tail_stride_asym", "conv2d", [(2, 5, 11, 9)], *conv(5, 20, 3, stride=[2, 2], pad=[0, 1, 1, 0]), 1),
    ("conv_dilated_nobias", "conv2d", [(1, 4, 12, 12)], *conv(4, 16, 3, dilation=[2, 2], pad=[2, 2, 2, 2], bias=False), 1),
    ("conv_groups2", "conv2d", [(1, 8, 7, 7)], *conv(8, 8, 3, groups=2, pad=[1, 1, 1, 1]), 1),
    ("conv_groups_packed", "conv2d", [(1, 32, 6, 6)], *conv(32, 32, 1, groups=2), 1),
    ("conv_depthwise_s2", "conv2d", [(1, 16, 13, 13)], *conv(16, 16, 3, groups=16, stride=[2, 2], pad=[1, 1, 1, 1]), 1),
    ("conv_depthwise_wide", "conv2d", [(1, 8, 30, 30)], *conv(8, 8, 3, groups=8, pad=[1, 1, 1, 1]), 1),
    ("conv_depthwise_mult_dilated", "conv2d", [(1, 4, 9, 11)],
     *conv(4, 8, 3, groups=4, dilation=[2, 2], pad=[2, 1, 2, 1]), 1),
    ("conv_depthwise_prime", "conv2d", [(1, 3, 19, 19)], *conv(3, 3, 3, groups=3, pad=[1, 1, 1, 1], bias=False), 1),
    ("conv_prime_width", "conv2d", [(1, 3, 21, 21)], *conv(3, 16, 3), 1),
    ("conv_1x1_wide", "conv2d", [(1, 3, 5, 37)], *conv(3, 40, 1), 1),
    ("dense", "dense", [(2, 24)], {"out_features": 37}, {"weight": rand(37, 24), "bias": rand(37)}, 1),
    ("dense_nobias", "dense", [(1, 16)], {"out_features": 16}, {"weight": rand(16, 16)}, 1),
    ("batchnorm", "batchnorm", [(2, 6, 4, 5)], {"eps": 1e-3},
     {"mean": rand(6), "var": rand(6, pos=True), "scale": rand(6), "bias": rand(6)}, 1),
    ("batchnorm_plain", "batchnorm", [(1, 6, 3, 3)], {}, {"mean": rand(6), "var": rand(6, pos=True)}, 1),
    ("scale", "scale", [(1, 6, 3, 3)], {}, {"scale": rand(6), "bias": rand(6)}, 1),
    ("scale_nobias_2d", "scale", [(3, 6)], {}, {"scale": rand(6)}, 1),
    ("bias", "bias", [(1, 6, 3, 3)], {}, {"bias": rand(6)}, 1),
    ("mask", "mask", [(1, 6, 3, 3)], {}, {"alpha": np.array([1, 0, 1, 1, 0, 1], np.float32), "beta": rand(6)}, 1),
    ("relu", "relu", [(2, 3, 4, 5)], {}, {}, 1),
    ("leaky_relu", "leaky_relu", [(2, 3, 4, 5)], {"alpha": 0.1}, {}, 1),
    ("prelu", "prelu", [(2, 3, 4, 5)], {}, {"slope": rand(3)}, 1),
    ("prelu_shared", "prelu", [(2, 3, 4)], {}, {"slope": rand(1)}, 1),
    ("sigmoid", "sigmoid", [(2, 3, 4, 5)], {}, {}, 1),
    ("tanh", "tanh", [(2, 3, 4, 5)], {}, {}, 1),
    ("clip", "clip", [(2, 3, 4, 5)], {"min": -0.5, "max": 0.7}, {}, 1),
    ("clip_min", "clip", [(2, 3, 4, 5)], {"min": 0.0}, {}, 1),
    ("power", "power", [(2, 3, 4, 5)], {"power": 2.0, "scale": 0.5, "shift": 1.0}, {}, 1),
    ("power_affine", "power", [(2, 3)], {"scale": -2.0, "shift": 0.5}, {}, 1),
    ("softmax", "softmax", [(2, 10)], {}, {}, 1),
    ("softmax_axis_last", "softmax", [(2, 3, 4, 5)], {"axis": -1}, {}, 1),
    ("max_pool_ceil", "max_pool", [(1, 3, 10, 10)], {"kernel": [3, 3], "stride": [2, 2], "ceil_mode": True}, {}, 1),
    ("max_pool_pad", "max_pool", [(1, 3, 9, 9)], {"kernel": [3, 3], "stride": [2, 2], "pad": [1, 1, 1, 1]}, {}, 1),
    ("avg_pool_incl", "avg_pool", [(1, 3, 10, 10)],
     {"kernel": [3, 3], "stride": [2, 2], "pad": [1, 1, 1, 1], "ceil_mode": True}, {}, 1),
    ("avg_pool_excl", "avg_pool", [(1, 3, 10, 10)],
     {"kernel": [3, 3], "stride": [2, 2], "pad": [1, 1, 1, 1], "ceil_mode": True, "count_include_pad": False}, {}, 1),
    ("global_avg_pool", "global_avg_pool", [(2, 5, 7, 7)], {}, {}, 1),
    ("global_max_pool", "global_max_pool", [(2, 5, 7, 7)], {}, {}, 1),
    ("eltwise_coeffs", "eltwise", [(1, 4, 3, 3)] * 2, {"mode": "sum", "coeffs": [0.5, -2.0]}, {}, 1),
    ("eltwise_prod", "eltwise", [(1, 4, 3, 3)] * 3, {"mode": "prod"}, {}, 1),
    ("eltwise_max", "eltwise", [(1, 4, 3, 3)] * 2, {"mode": "max"}, {}, 1),
    ("concat", "concat", [(1, 2, 3, 3), (1, 5, 3, 3)], {"axis": 1}, {}, 1),
    ("concat_h", "concat", [(1, 2, 3, 3), (1, 2, 4, 3)], {"axis": 2}, {}, 1),
    ("flatten", "flatten", [(2, 3, 4, 5)], {"axis": 1}, {}, 1),
    ("reshape", "reshape", [(2, 3, 4, 5)], {"shape": [0, -1, 5]}, {}, 1),
    ("dropout", "dropout", [(2, 3)], {"ratio": 0.3}, {}, 1),
    ("identity", "identity", [(2, 3)], {}, {}, 1),
    ("slice", "slice", [(1, 7, 3, 3)], {"axis": 1, "points": [2, 5]}, {}, 3),
    ("lrn_across", "lrn", [(1, 7, 4, 4)], {"size": 5, "alpha": 1e-2, "beta": 0.75, "k": 2.0}, {}, 1),
    ("lrn_within", "lrn", [(1, 3, 6, 6)], {"size": 3, "alpha": 1e-2, "beta": 0.75, "region": "within"}, {}, 1),
    ("transpose_shuffle", "transpose", [(1, 2, 3, 4, 5)], {"perm": [0, 2, 1, 3, 4]}, {}, 1),
    ("transpose_nhwc", "transpose", [(2, 3, 4, 5)], {"perm": [0, 2, 3, 1]}, {}, 1),
    ("broadcast_se", "broadcast_eltwise", [(2, 6, 3, 4), (2, 6, 1, 1)], {"mode": "prod"}, {}, 1),
    ("broadcast_add", "broadcast_eltwise", [(2, 6, 3, 4), (1, 6, 3, 1)], {"mode": "sum"}, {}, 1),
    ("resize_nearest", "resize", [(1, 3, 5, 4)], {"size": [10, 7]}, {}, 1),
    ("resize_linear", "resize", [(1, 3, 5, 4)], {"size": [9, 8], "mode": "linear", "coord": "align_corners"}, {}, 1),
]
# an op not listed above runs once with its defaults (one input, no params), so a new op that needs
# nothing more has a case without a line here; one that needs attributes or params fails, naming them
CASES += [(op, op, [(2, 3, 4, 4)], {}, {}, 1) for op in registered_ops()
          if op != "input" and op not in {c[1] for c in CASES}]


@pytest.fixture(scope="module")
def all_ops():
    """One graph holding every case (each with its own inputs), built once for x86."""
    from cococ.backends.tvm import build_tvm
    g = G()
    feeds = {}
    for name, op, shapes, attrs, params, n_out in CASES:
        ins = []
        for i, s in enumerate(shapes):
            ins.append(g.input(f"{name}_in{i}", s))
            feeds[f"{name}_in{i}"] = rand(*s)
        g(op, name, ins, dict(attrs), params, n_out=n_out, out=True)
    graph = g.graph()
    art = build_tvm(graph, "x86")
    return art.run(feeds), run(graph, feeds)


def close(y, ref):
    return np.all(np.abs(y - ref) <= 1e-4 * (1 + np.abs(ref)))


@pytest.mark.parametrize("case", [c[0] for c in CASES])
def test_op_matches_interpreter(all_ops, case):
    got, ref = all_ops
    names = [k for k in ref if k == case or k.startswith(case + "_") and k[len(case) + 1:].isdigit()]
    assert names
    for k in names:
        assert got[k].shape == ref[k].shape, k
        assert close(got[k], ref[k]), (k, float(np.abs(got[k] - ref[k]).max()))


def lenet():
    g = G()
    x = g.input("data", (1, 1, 28, 28))
    c1 = g("conv2d", "conv1", x, *conv(1, 20, 5))
    p1 = g("max_pool", "pool1", c1, {"kernel": [2, 2], "stride": [2, 2]})
    c2 = g("conv2d", "conv2", p1, *conv(20, 50, 5))
    p2 = g("max_pool", "pool2", c2, {"kernel": [2, 2], "stride": [2, 2]})
    f = g("flatten", "flat", p2)
    d1 = g("dense", "ip1", f, {"out_features": 500}, {"weight": rand(500, 800) * 0.05, "bias": rand(500)})
    r = g("relu", "relu1", d1)
    d2 = g("dense", "ip2", r, {"out_features": 10}, {"weight": rand(10, 500) * 0.05, "bias": rand(10)})
    g("softmax", "prob", d2, out=True)
    return g.graph()


def small_resnet():
    """stem conv-bn-relu, two residual blocks (one with a projection), pool, fc."""
    g = G()
    x = g.input("data", (1, 3, 16, 16))

    def cbr(name, v, c, o, k, stride=1, relu=True):
        y = g("conv2d", name, v, *conv(c, o, k, stride=[stride] * 2, pad=[k // 2] * 4, bias=False))
        y = g("batchnorm", name + "_bn", y, {}, {"mean": rand(o), "var": rand(o, pos=True),
                                                 "scale": rand(o), "bias": rand(o)})
        return g("relu", name + "_relu", y) if relu else y

    s = cbr("stem", x, 3, 16, 3)
    a = cbr("b1a", s, 16, 16, 3)
    b = cbr("b1b", a, 16, 16, 3, relu=False)
    r1 = g("relu", "b1_out", g("eltwise", "b1_add", [b, s]))
    a = cbr("b2a", r1, 16, 32, 3, stride=2)
    b = cbr("b2b", a, 32, 32, 3, relu=False)
    p = cbr("b2p", r1, 16, 32, 1, stride=2, relu=False)
    r2 = g("relu", "b2_out", g("eltwise", "b2_add", [p, b]))
    gp = g("global_avg_pool", "gap", r2)
    fc = g("dense", "fc", g("flatten", "flat", gp), {"out_features": 10}, {"weight": rand(10, 32), "bias": rand(10)})
    g("softmax", "prob", fc, out=True)
    return g.graph()


@pytest.mark.parametrize("make", [lenet, small_resnet])
def test_small_nets_end_to_end(make, tmp_path):
    from cococ.backends.tvm import build_tvm
    graph = make()
    art = build_tvm(graph, "x86")
    x = rand(*graph.inputs[0].type.shape)
    ref = run(graph, [x])["prob"]
    assert close(art.run(x)["prob"], ref)
    art.save(tmp_path / "a")
    # a new process loads the library and checks against the saved graph
    r = subprocess.run([sys.executable, "-m", "cococ", "run", str(tmp_path / "a"), "--check"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_depthwise_with_fused_epilogue():
    """MobileNet's depthwise conv + batchnorm + relu6 as one kernel (the depthwise register tile
    runs the epilogue on each finished tile): map widths 7/14/28/56, stride 1 and 2."""
    from cococ.backends.tvm import build_tvm
    from cococ.backends.tvm.lower import fusion_groups
    g, feeds = G(), {}
    for c, h, s in [(32, 56, 1), (24, 28, 2), (48, 14, 1), (64, 7, 1)]:
        name = f"dw{c}_{h}_{s}"
        x = g.input(name, (1, c, h, h))
        feeds[name] = rand(1, c, h, h)
        attrs, params = conv(c, c, 3, groups=c, stride=[s, s], pad=[1, 1, 1, 1], bias=False)
        y = g("conv2d", f"{name}_conv", x, attrs, params)
        y = g("batchnorm", f"{name}_bn", y, {"eps": 1e-5},
              {"mean": rand(c), "var": rand(c, pos=True), "scale": rand(c), "bias": rand(c)})
        g("clip", f"{name}_relu6", y, {"min": 0.0, "max": 6.0}, out=True)
    graph = g.graph()
    assert all(len(gr) == 3 for gr in fusion_groups(graph))
    got, ref = build_tvm(graph, "x86").run(feeds), run(graph, feeds)
    for k in ref:
        assert close(got[k], ref[k]), k


def test_residual_block_is_fused():
    """conv+bn(+relu) and conv+bn+add+relu are one kernel each; flatten is a view, not a kernel."""
    from cococ.backends.tvm.lower import fusion_groups
    ops = [[l.op for l in gr] for gr in fusion_groups(small_resnet())]
    cbr, cbar = ["conv2d", "batchnorm", "relu"], ["conv2d", "batchnorm", "eltwise", "relu"]
    assert ops == [cbr, cbr, cbar, cbr, cbar, ["conv2d", "batchnorm"], ["global_avg_pool"], ["dense"], ["softmax"]]


def _relax_run(mod, x, n_out):
    """Build a Relax module with TVM's own pipeline for llvm and run its main on x."""
    vm = relax.VirtualMachine(relax.build(mod, target="llvm"), tvm.cpu())
    out = vm["main"](tvm.runtime.tensor(x))
    return [o.numpy() for o in out] if n_out > 1 else [out.numpy()]


@pytest.mark.parametrize("net", [lenet, small_resnet])
def test_to_relax_runs_and_matches_the_interpreter(net):
    """The exported module is built by relax.build (not cococ's build) and run: outputs equal the
    reference interpreter's, with the weights bound or passed back in through BindParams."""
    import cococ
    from cococ.backends.tvm.relax_export import to_relax
    graph = net()
    with_logits(graph)
    x = rand(*graph.inputs[0].type.shape)
    ref = run(graph, [x])
    mod = cococ.to_relax(graph)
    for v, y in zip(graph.outputs, _relax_run(mod, x, len(graph.outputs))):
        assert close(y, ref[v.name]), (v.name, float(np.abs(y - ref[v.name]).max()))
    mod2, params = to_relax(graph, bind_params=False)
    n_params = sum(len(l.params) for l in graph.layers if l.op in ("conv2d", "dense"))
    if net is lenet:
        assert len(mod2["main"].params) == 1 + len(params) == 1 + n_params == 1 + 8  # 4 layers x (weight, bias)
    bound = relax.transform.BindParams("main", params)(mod2)
    for v, y in zip(graph.outputs, _relax_run(bound, x, len(graph.outputs))):
        assert close(y, ref[v.name]), (v.name, float(np.abs(y - ref[v.name]).max()))


def test_missing_weights_is_a_user_error():
    from cococ.backends.tvm import build_tvm
    from cococ.ir.core import CococError
    graph = lenet()
    graph.layer("conv1").params["weight"] = Param(TensorType((20, 1, 5, 5)))
    with pytest.raises(CococError, match="conv1"):
        build_tvm(graph, "x86")


def with_logits(graph):
    """Random weights saturate the final softmax (one-hot); compare the logits before it too."""
    last = graph.layers[-1]
    if last.op == "softmax" and last.inputs[0] not in graph.outputs:
        graph.outputs.append(last.inputs[0])


REAL = {  # paths in the corpus
    "resnet50": "deep-residual-networks/prototxt/ResNet-50-deploy.prototxt",
    "mobilenet_v2": "MobileNet-Caffe/mobilenet_v2_deploy.prototxt",
    "squeezenet": "SqueezeNet/SqueezeNet_v1.1/deploy.prototxt",
}


@pytest.mark.slow
@pytest.mark.parametrize("net", list(REAL))
def test_real_nets_match_reference(corpus, net):
    import cococ
    from cococ.backends.tvm import build_tvm
    graph = cococ.load(corpus / REAL[net], init="random")
    with_logits(graph)
    art = build_tvm(graph, "x86")
    x = art.random_inputs()
    got, ref = art.run(x), run(graph, x)
    for k in ref:  # random weights make logits of 1e5: 1e-4 relative to the output's scale
        # (float32 sums in another order differ by ~1e-6 of the largest partial sums)
        err = float(np.abs(got[k] - ref[k]).max())
        assert err <= 1e-4 * (1 + float(np.abs(ref[k]).max())), (k, err)
    print(f"{net}: build {art.manifest['build_times']}")
