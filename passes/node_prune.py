"""Scalpel's node pruning (seed 004 §3.4): mask layers find the nodes to remove; remove them; retrain.

A driver (it trains): `node_prune(graph, solver, data, ...)`

1. a `mask` layer (ir/ops/mask.py) goes right after every conv/dense layer whose channels can be
   removed (ir/channels.plan_channel_removal says so: not the output layer, not into an
   eltwise), α = β = 1 (eq. 5);
2. the masks are trained together with every other param, loss = cross-entropy + λ·Σβ (eq. 7);
   before every iteration β is clipped to [0, 1] and α set by eq. 6 (hysteresis: 1 from
   T+ε up, 0 under T, unchanged between), and every dropout runs at D_0·N_k/N_0 (eq. 8);
3. λ is raised through `lambdas` while the masked net stays within `max_drop` percentage
   points of the unpruned accuracy; the last state that held is kept;
4. channels with α = 0 are removed (ir/channels.remove_channels: the layer and every
   consumer's inputs shrink), β of the kept ones is folded into the layer's weight rows and
   bias (exact: the mask sits directly after the conv/dense, and relu/max-pool commute with a
   positive per-channel scale), the masks are dropped and the net is retrained.

`ops` restricts it to conv2d or dense (prune-for-target's moderate case: conv only).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from cococ.ir.channels import NotPrunable, plan_channel_removal, remove_channels
from cococ.ir.core import Graph, Layer, Param, Value
from cococ.passes.scalpel import accuracy, load_dataset

# λ schedule as the distance (in β) the penalty alone moves β during one mask-training run:
# λ = f·(1 - momentum) / (base_lr · mask_iter); each run continues from the last accepted state.
DEFAULT_PUSH = (0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5)


def auto_lambdas(solver, mask_iter: int, push=DEFAULT_PUSH) -> tuple[float, ...]:
    """λ values that move β by `push` over `mask_iter` iterations of `solver` (SGD with momentum)."""
    lr = float(solver.base_lr)
    mom = float(getattr(solver, "momentum", 0.0) or 0.0)
    return tuple(f * (1.0 - mom) / (lr * max(mask_iter, 1)) for f in push)


@dataclass
class NodeReport:
    accuracy_before: float
    accuracy_after: float = float("nan")
    accuracy_masked: float = float("nan")
    lam: float = 0.0
    channels: dict = field(default_factory=dict)   # layer -> [before, after]
    steps: list = field(default_factory=list)
    macs_before: int = 0
    macs_after: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def insert_masks(graph: Graph, ops=("conv2d", "dense"), threshold: float = 0.5, epsilon: float = 0.05) -> list[Layer]:
    """A mask layer after every prunable conv/dense of `ops`; returns the masks inserted."""
    users = graph.users_map()
    masks = []
    for layer in list(graph.layers):
        if layer.op not in ops or "weight" not in layer.params:
            continue
        n = layer.output.type.shape[1]
        try:
            plan_channel_removal(graph, layer, np.arange(max(n - 1, 1)), users=users)
        except NotPrunable:
            continue
        out = layer.output
        new = Value(graph.unique_name(f"{layer.name}_mask"), out.type)
        one = Param.from_array(np.ones(n, np.float32))
        m = Layer("mask", graph.unique_name(f"{layer.name}_mask"), [out], [new],
                  {"threshold": float(threshold), "epsilon": float(epsilon)}, {"alpha": one, "beta": one.copy()})
        m.meta["masks"] = layer.name
        graph.replace_all_uses(out, new)
        m.inputs = [out]
        graph.insert_after(layer, m)
        masks.append(m)
    return masks


def hysteresis(alpha: np.ndarray, beta: np.ndarray, t: float, eps: float) -> np.ndarray:
    """Equation 6."""
    return np.where(beta >= t + eps, 1.0, np.where(beta < t, 0.0, alpha)).astype(np.float32)


def train_masks(graph: Graph, solver, ds, lam: float, iters: int, seed: int) -> None:
    """Train everything with the L1 penalty λ·Σβ, α by eq. 6, dropout by eq. 8; results into `graph`."""
    import torch
    import torch.nn.functional as F
    from cococ.runtime.torch.module import param_key, to_torch
    from cococ.runtime.train import logits_value, train

    module = to_torch(graph, outputs=[logits_value(graph)])
    masks = [l for l in graph.layers if l.op == "mask"]
    alpha = {m.name: m.params["alpha"].dense().astype(np.float32) for m in masks}
    n0 = sum(a.size for a in alpha.values())
    drops = [(s[0], s[0].attrs["ratio"]) for s in module._steps if s[0].op == "dropout"]
    P = module.ir_parameters()

    def loss(mod, x, y):
        with torch.no_grad():
            for m in masks:
                b = P[param_key(m.name, "beta")]
                b.clamp_(0.0, 1.0)
                alpha[m.name] = hysteresis(alpha[m.name], b.numpy(), m.attrs["threshold"], m.attrs["epsilon"])
                P[param_key(m.name, "alpha")].copy_(torch.from_numpy(alpha[m.name]))
            nk = sum(float(a.sum()) for a in alpha.values())
            for d, d0 in drops:
                d.attrs["ratio"] = d0 * nk / max(n0, 1)
        z = mod(x)
        pen = sum(P[param_key(m.name, "beta")].sum() for m in masks)
        return F.cross_entropy(z, y) + lam * pen, z

    train(graph, solver, ds, max_iter=iters, seed=seed, module=module, loss=loss, progress=False)
    for m in masks:   # the optimizer's last step moved α and β: the state of eq. 6 is what counts
        beta = np.clip(m.params["beta"].dense(), 0.0, 1.0).astype(np.float32)
        m.params["alpha"] = Param.from_array(alpha[m.name])
        m.params["beta"] = Param.from_array(beta)


def remove_masked(graph: Graph) -> dict:
    """Fold β into each producer, drop channels with α = 0, remove the masks; {layer: [n, kept]}."""
    out = {}
    for m in [l for l in graph.layers if l.op == "mask"]:
        prod = m.inputs[0].producer
        a, b = m.params["alpha"].dense(), m.params["beta"].dense()
        keep = np.nonzero(a > 0)[0]
        if len(keep) == 0:
            keep = np.array([int(np.argmax(b))])
        g = (a * b).astype(np.float32)
        w = prod.params["weight"].dense()
        prod.params["weight"] = Param.from_array((w * g.reshape((-1,) + (1,) * (w.ndim - 1))).astype(w.dtype))
        if "bias" in prod.params:
            prod.params["bias"] = Param.from_array((prod.params["bias"].dense() * g).astype(np.float32))
        graph.replace_all_uses(m.output, m.inputs[0])
        graph.remove_layer(m)
        n = len(a)
        if len(keep) < n:
            remove_channels(graph, prod, keep)
        out[prod.name] = [n, int(len(keep))]
    return out


def total_macs(graph: Graph) -> int:
    from cococ.passes.scalpel import layer_macs
    return sum(layer_macs(l) for l in graph.layers if l.op in ("conv2d", "dense"))


def node_prune(graph: Graph, solver, data, *, max_drop: float = 0.5, ops=("conv2d", "dense"),
               threshold: float = 0.5, epsilon: float = 0.05, lambdas=None, mask_iter: int = 100,
               retrain_iter: int = 100, seed: int = 0, log=None) -> tuple[Graph, NodeReport]:
    """Scalpel §3.4 on `graph` (trained): see the module docstring. Changes `graph` in place."""
    from cococ.ir.verify import infer_shapes
    from cococ.passes.scalpel import _adopt_structure
    infer_shapes(graph)
    ds = load_dataset(graph, data)
    say = log or (lambda s: None)
    rep = NodeReport(accuracy(graph, ds), macs_before=total_macs(graph))
    floor = rep.accuracy_before - max_drop / 100.0
    lambdas = auto_lambdas(solver, mask_iter) if lambdas is None else lambdas
    work = graph.clone()
    if not insert_masks(work, ops, threshold, epsilon):
        rep.accuracy_after = rep.accuracy_masked = rep.accuracy_before
        rep.macs_after = rep.macs_before
        return graph, rep
    infer_shapes(work)
    best = None
    for i, lam in enumerate(lambdas):
        trial = work.clone()
        train_masks(trial, solver, ds, lam, mask_iter, seed + i)
        acc = accuracy(trial, ds)
        kept = {m.name: int(m.params["alpha"].dense().sum()) for m in trial.layers if m.op == "mask"}
        ok = acc >= floor
        rep.steps.append({"lambda": lam, "accuracy": acc, "kept": kept, "accepted": ok})
        say(f"node-prune: lambda {lam:g}: kept {kept}, accuracy {acc:.2%} ({'kept' if ok else 'undone'})")
        if not ok:
            break
        work, best, rep.lam, rep.accuracy_masked = trial, trial, lam, acc
    if best is None:
        rep.accuracy_after, rep.macs_after = rep.accuracy_before, rep.macs_before
        return graph, rep
    rep.channels = remove_masked(best)
    infer_shapes(best)
    if retrain_iter > 0:
        from cococ.runtime.train import train
        train(best, solver, ds, max_iter=retrain_iter, seed=seed + 100, progress=False)
    rep.accuracy_after = accuracy(best, ds)
    rep.macs_after = total_macs(best)
    graph = _adopt_structure(graph, best)
    graph.meta["node_prune"] = rep.to_dict()
    return graph, rep
