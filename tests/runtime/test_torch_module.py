"""IR -> torch module: every op equals the reference interpreter; masks, freezing, taps, copy_back."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from cococ.ir.builder import GraphBuilder
from cococ.ir.core import CococError, Param, TensorType
from cococ.ir.interpreter import run
from cococ.ir.registry import all_ops, rule
from cococ.runtime.torch.lowering import lowered_ops
from cococ.runtime.torch.module import copy_back, state_arrays, to_torch

torch.set_num_threads(1)
RNG = np.random.default_rng(0)


def rand(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def G():
    return GraphBuilder("t")


def one(op, attrs=None, params=None, shape=(2, 4, 7, 9), n_in=1, n_out=1):
    g = G()
    xs = [g.input(f"x{i}", shape) for i in range(n_in)]
    ys = g(op, "l", xs, attrs, params, n_out)
    return g.graph(*(ys if n_out > 1 else [ys])), [rand(*shape) for _ in range(n_in)]


C = 4
CASES = {
    "conv2d": [dict(attrs=dict(out_channels=6, kernel=[3, 3], pad=[1, 1, 1, 1]), params=dict(weight=rand(6, 4, 3, 3), bias=rand(6))),
               dict(attrs=dict(out_channels=4, kernel=[3, 2], stride=[2, 1], pad=[0, 1, 2, 0], dilation=[1, 2], groups=2),
                    params=dict(weight=rand(4, 2, 3, 2)))],
    "dense": [dict(attrs=dict(out_features=5), params=dict(weight=rand(5, 6), bias=rand(5)), shape=(3, 6))],
    "batchnorm": [dict(attrs=dict(eps=1e-3), params=dict(mean=rand(C), var=np.abs(rand(C)) + .5, scale=rand(C), bias=rand(C))),
                  dict(params=dict(mean=rand(C), var=np.abs(rand(C)) + .5))],
    "scale": [dict(params=dict(scale=rand(C), bias=rand(C))), dict(params=dict(scale=rand(C)))],
    "bias": [dict(params=dict(bias=rand(C)))],
    "relu": [{}], "sigmoid": [{}], "tanh": [{}], "identity": [{}], "dropout": [dict(attrs=dict(ratio=0.3))],
    "leaky_relu": [dict(attrs=dict(alpha=0.2))],
    "prelu": [dict(params=dict(slope=rand(C))), dict(params=dict(slope=rand(1)))],
    "clip": [dict(attrs=dict(min=0.0, max=0.5)), dict(attrs=dict(max=0.1))],
    "power": [dict(attrs=dict(power=2.0, scale=0.5, shift=3.0)), dict(attrs=dict(scale=-2.0))],
    "softmax": [{}, dict(attrs=dict(axis=-1))],
    "max_pool": [dict(attrs=dict(kernel=[3, 3], stride=[2, 2], ceil_mode=True)),
                 dict(attrs=dict(kernel=[3, 2], stride=[2, 2], pad=[1, 0, 2, 1], ceil_mode=True))],
    "avg_pool": [dict(attrs=dict(kernel=[3, 3], stride=[2, 2], pad=[1, 1, 1, 1], ceil_mode=True)),
                 dict(attrs=dict(kernel=[2, 3], stride=[2, 2], pad=[1, 0, 0, 2], count_include_pad=False)),
                 dict(attrs=dict(kernel=[3, 3], stride=[3, 3], ceil_mode=True))],
    "global_avg_pool": [{}], "global_max_pool": [{}],
    "eltwise": [dict(n_in=3), dict(n_in=2, attrs=dict(mode="prod")), dict(n_in=2, attrs=dict(mode="max")),
                dict(n_in=2, attrs=dict(coeffs=[0.5, -1.0]))],
    "concat": [dict(n_in=2), dict(n_in=3, attrs=dict(axis=3))],
    "slice": [dict(attrs=dict(points=[1, 3]), n_out=3), dict(attrs=dict(axis=2, points=[4]), n_out=2)],
    "flatten": [{}, dict(attrs=dict(axis=2))],
    "reshape": [dict(attrs=dict(shape=[0, -1, 9])), dict(attrs=dict(shape=[0, 4, 63]))],
    "lrn": [dict(attrs=dict(size=5, alpha=1e-2, beta=0.75, k=2.0)), dict(attrs=dict(size=4)),
            dict(attrs=dict(size=3, region="within", alpha=0.1))],
    # --- CNN ops of ONNX imports (issue 17: ir/ops/layout.py, broadcast.py, resize.py) ---
    "transpose": [dict(attrs=dict(perm=[0, 2, 3, 1])), dict(attrs=dict(perm=[0, 2, 1, 3, 4]), shape=(2, 2, 3, 4, 5))],
    "broadcast_eltwise": [dict(n_in=2), dict(n_in=2, attrs=dict(mode="sum"))],
    "resize": [dict(attrs=dict(size=[14, 18])), dict(attrs=dict(size=[5, 13], mode="linear", coord="align_corners"))],
    # --- Scalpel node pruning's mask op (issue 6, ir/ops/mask.py) ---
    "mask": [dict(params=dict(alpha=np.array([1, 0, 1, 1], np.float32), beta=np.abs(rand(C)))),
             dict(attrs=dict(threshold=0.3), params=dict(alpha=np.ones(5, np.float32), beta=np.abs(rand(5))),
                  shape=(3, 5))],
}
# an op not listed above runs once with its defaults (one input, no params), so a new op that needs
# nothing more has a case without a line here; one that needs attributes or params fails, naming them
CASES.update({op: [{}] for op in all_ops() if op not in CASES and op != "input"})


def test_every_op_has_a_lowering():
    ops = set(all_ops()) - {"input"}
    assert ops - set(lowered_ops()) == set(), "ops without a torch lowering"


@pytest.mark.parametrize("op,i", [(op, i) for op, cs in CASES.items() for i in range(len(cs))])
def test_forward_equals_interpreter(op, i):
    case = dict(CASES[op][i])
    graph, xs = one(op, case.get("attrs"), case.get("params"), case.get("shape", (2, 4, 7, 9)),
                    case.get("n_in", 1), case.get("n_out", 1))
    if op == "power" and case["attrs"].get("power") == 2.0:
        xs = [np.abs(x) for x in xs]
    want = run(graph, xs)
    got = to_torch(graph)(*[torch.from_numpy(x) for x in xs])
    got = got if isinstance(got, tuple) else (got,)
    for (name, w), y in zip(want.items(), got):
        assert tuple(y.shape) == w.shape, name
        np.testing.assert_allclose(y.detach().numpy(), w, rtol=1e-5, atol=1e-5, err_msg=f"{op} case {i}")


def lenet_like():
    g = G()
    x = g.input("data", (1, 1, 12, 12))
    c1 = g("conv2d", "conv1", x, dict(out_channels=4, kernel=[3, 3]), dict(weight=rand(4, 1, 3, 3) * .5, bias=rand(4)))
    bn = g("batchnorm", "bn1", c1, {}, dict(mean=rand(4), var=np.abs(rand(4)) + .5))
    r = g("relu", "relu1", bn)
    p = g("max_pool", "pool1", r, dict(kernel=[2, 2], stride=[2, 2], ceil_mode=True))
    f = g("flatten", "flat", p)
    d = g("dense", "ip1", f, dict(out_features=3), dict(weight=rand(3, 100) * .1, bias=rand(3)))
    s = g("softmax", "prob", d)
    return g.graph(s)


def test_params_named_layer_param_and_copy_back():
    graph = lenet_like()
    m = to_torch(graph)
    assert set(dict(m.named_parameters())) == {"conv1/weight", "conv1/bias", "ip1/weight", "ip1/bias"}
    assert set(m.ir_tensors()) == {"conv1/weight", "conv1/bias", "bn1/mean", "bn1/var", "ip1/weight", "ip1/bias"}
    with torch.no_grad():
        m.get_parameter("ip1/bias").fill_(7.0)
    copy_back(m, graph)
    assert np.all(graph.layer("ip1").params["bias"].data == 7.0)
    x = rand(5, 1, 12, 12)   # batch size is free: deploy graphs say 1
    np.testing.assert_allclose(m(torch.from_numpy(x)).detach().numpy(),
                               np.concatenate([run(graph, [x[i:i + 1]])["prob"] for i in range(5)]), atol=1e-5)


def test_taps_and_outputs():
    graph = lenet_like()
    m = to_torch(graph)
    x = rand(1, 1, 12, 12)
    out, taps = m(torch.from_numpy(x), taps=["relu1", "%ip1"])
    ref = run(graph, [x], taps=["relu1", "ip1"])
    np.testing.assert_allclose(taps["relu1"].detach().numpy(), ref["relu1"], atol=1e-5)
    np.testing.assert_allclose(taps["%ip1".lstrip("%")].detach().numpy(), ref["ip1"], atol=1e-5)
    logits = to_torch(graph, outputs=["ip1"])(torch.from_numpy(x))
    np.testing.assert_allclose(logits.detach().numpy(), ref["ip1"], atol=1e-5)
    with pytest.raises(CococError, match="nope"):
        m(torch.from_numpy(x), taps=["nope"])


def _step(m, x, lr=0.01):
    m.train()
    params = [p for p in m.parameters() if p.requires_grad]
    if not params:  # everything frozen: a forward in training mode is all there is
        return m(x)
    opt = torch.optim.SGD(params, lr=lr, momentum=0.9)
    for _ in range(3):
        opt.zero_grad()
        (m(x)[:, 0] ** 2).sum().backward()
        opt.step()
        m.apply_masks()


def test_masks_keep_zeros_through_training():
    graph = lenet_like()
    m = to_torch(graph)
    w0 = m.get_parameter("ip1/weight").detach().clone()
    elem = (torch.rand(w0.shape, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    m.set_mask("ip1/weight", elem)
    m.set_channel_mask("conv1", np.array([1, 0, 1, 0], np.float32))
    # momentum from before the mask must not revive pruned weights either
    _step(m, torch.from_numpy(rand(8, 1, 12, 12)))
    w = m.get_parameter("ip1/weight").detach()
    assert torch.all(w[elem == 0] == 0) and not torch.equal(w[elem == 1], w0[elem == 1])
    cw, cb = m.get_parameter("conv1/weight").detach(), m.get_parameter("conv1/bias").detach()
    assert torch.all(cw[[1, 3]] == 0) and torch.all(cb[[1, 3]] == 0) and torch.any(cw[0] != 0)
    with pytest.raises(CococError, match="needs 4 entries"):
        m.set_channel_mask("conv1", np.ones(3))
    m.clear_mask("ip1/weight")
    assert "ip1/weight" not in m.masks()


def test_mask_zeros_from_the_ir():
    graph = lenet_like()
    graph.layer("ip1").params["weight"].data[:, :50] = 0
    m = to_torch(graph, mask_zeros=True)
    _step(m, torch.from_numpy(rand(4, 1, 12, 12)))
    assert torch.all(m.get_parameter("ip1/weight")[:, :50] == 0)


def test_frozen_layers_do_not_move():
    graph = lenet_like()
    graph.layer("ip1").meta["frozen"] = True
    m = to_torch(graph, frozen=["conv1"])
    assert m.frozen_layers() == ["conv1", "ip1"]
    before = state_arrays(m)
    _step(m, torch.from_numpy(rand(8, 1, 12, 12)))
    after = state_arrays(m)
    for k in ("conv1/weight", "conv1/bias", "ip1/weight"):
        np.testing.assert_array_equal(before[k], after[k])
    assert not np.array_equal(before["bn1/mean"], after["bn1/mean"])  # a trained batchnorm updates stats
    m.freeze(["bn1"])
    mean = state_arrays(m)["bn1/mean"]
    _step(m, torch.from_numpy(rand(8, 1, 12, 12)))
    np.testing.assert_array_equal(state_arrays(m)["bn1/mean"], mean)  # a frozen one does not
    m.freeze(["ip1"], frozen=False)
    assert m.get_parameter("ip1/weight").requires_grad
    with pytest.raises(CococError, match="no such layer"):
        m.freeze(["nope"])


def test_unknown_op_and_registry_hook():
    graph = lenet_like()
    graph.layer("relu1").op = "relu"  # sanity
    layer = graph.layer("relu1")
    layer.op = "mask_test_op"
    from cococ.ir import registry
    from cococ.ir.ops.activation import Relu

    class MaskTest(Relu):
        name = "mask_test_op"
    registry.OPS["mask_test_op"] = MaskTest
    try:
        with pytest.raises(CococError, match="no torch lowering for op 'mask_test_op'"):
            to_torch(graph)
        rule(MaskTest, "torch")(lambda layer, xs, p, ctx: [xs[0] * 0])
        out = to_torch(graph, outputs=["relu1"])(torch.from_numpy(rand(1, 1, 12, 12)))
        assert torch.all(out == 0)
    finally:
        registry.OPS.pop("mask_test_op")
        registry.RULES.pop(("mask_test_op", "torch"), None)


def test_missing_weights_is_a_clear_error():
    graph = lenet_like()
    graph.layer("ip1").params["weight"] = Param(TensorType((3, 100)))
    with pytest.raises(CococError, match="ip1.*no data"):
        to_torch(graph)
