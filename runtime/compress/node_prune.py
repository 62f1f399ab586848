"""Scalpel's node pruning (seed 004 §3.4): mask layers find the nodes to remove; remove them; retrain.

A driver (it trains): `node_prune(graph, solver, data, ...)`

1. a `mask` layer (ir/ops/mask.py) goes right after every conv/dense layer whose channels can be
   removed (ir/channels.plan_channel_removal says so: not the output layer, not into an
   eltwise), α = β = 1 (eq. 5);
2. the masks are trained together with every other param, loss = cross-entropy + λ·Σβ (eq. 7);
   before every iteration β is clipped to [0, 1] and divided by its layer's maximum, α is set by
   eq. 6 (hysteresis: 1 from T+ε up, 0 under T, unchanged between), and every dropout runs at
   D_0·N_k/N_0 (eq. 8);
3. λ is searched per mask layer, round robin: a trial trains one layer's mask (the others held)
   and may remove at most a share (`max_step`) of its alive nodes; it is kept if the masked net
   stays within `max_drop` percentage points of the unpruned accuracy. λ grows by r after a kept
   trial that removed less than its share; a failed trial is undone and r → √r, λ → λ/r, the
   share halves; a layer is done when r < `min_growth` or after `max_trials` trials;
4. channels with α = 0 are removed (ir/channels.remove_channels: the layer and every
   consumer's inputs shrink), β of the kept ones is folded into the layer's weight rows and
   bias (exact: the mask sits directly after the conv/dense, and relu/max-pool commute with a
   positive per-channel scale), the masks are dropped and the net is retrained.

Why not Scalpel's text as is (one λ for all masks, absolute β): on LeNet-5 it pruned all or
nothing. A trained net at ~0 training loss barely resists a uniform down-scaling of a layer
(ReLU nets are scale-equivariant and the logit margins are large), so the penalty pulled every
β of a layer down together and they crossed T within a few iterations; and a λ per node weighs
layers by width (with Σβ the 500 nodes of ip1 went first, with Σβ/N the 20 maps of conv1).
Dividing β by its maximum leaves the penalty only the ranking of nodes within a layer (a lagging
node falls further, the cross-entropy holds up the needed ones); λ per layer and the share per
trial make each accuracy check see a bounded step. `lambdas=` still runs the text literally (one
λ schedule shared by all masks, absolute β, no cap; stops at the first failure).

`ops` restricts it to conv2d or dense (prune-for-target's moderate case: conv only).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

import torch
import torch.nn.functional as F

from cococ.ir.channels import NotPrunable, plan_channel_removal, remove_channels
from cococ.ir.core import Graph, Layer, Param, Value
from cococ.ir.verify import infer_shapes
from cococ.runtime.compress.cost import layer_macs
from cococ.runtime.compress.training import accuracy, decision_dataset
from cococ.runtime.torch.module import param_key, to_torch
from cococ.runtime.train import logits_value, train

# λ schedule as the distance (in β) the penalty alone moves β during one mask-training run:
# λ = f·(1 - momentum) / (base_lr · mask_iter) -- a fixed λ means nothing across solvers.
DEFAULT_PUSH = (0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5)
START_PUSH = 2.0   # the per-layer search's first λ, in the same units


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
    lam: float = 0.0                                  # the largest accepted λ (any layer)
    lambdas: dict = field(default_factory=dict)       # layer -> accepted λ
    channels: dict = field(default_factory=dict)      # layer -> [before, after]
    steps: list = field(default_factory=list)
    macs_before: int = 0
    macs_after: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    def table(self) -> str:
        rows = [f"{'layer':<12}{'nodes':>14}{'removed':>9}{'lambda':>10}"]
        for name, (n, k) in self.channels.items():
            rows.append(f"{name:<12}{f'{n} -> {k}':>14}{1 - k / n:>9.0%}{self.lambdas.get(name, 0.0):>10.3g}")
        rows.append(f"accuracy {self.accuracy_before:.2%} -> {self.accuracy_after:.2%} "
                    f"(masked {self.accuracy_masked:.2%}), MACs {self.macs_before:,} -> {self.macs_after:,}")
        return "\n".join(rows)


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


def _cap(alive: int, max_step: float) -> int:
    """How many of `alive` nodes one trial may remove (at least one, or the search stalls)."""
    return max(1, int(max_step * alive))


def cap_removals(alpha: np.ndarray, start: np.ndarray, beta: np.ndarray, cap: int) -> np.ndarray:
    """At most `cap` of the nodes alive at the start of a trial (`start`) may have α = 0: the
    lowest β go first, the others keep α = 1 until the next trial (after the accuracy check)."""
    gone = np.nonzero((start > 0) & (alpha == 0))[0]
    if len(gone) <= cap:
        return alpha
    out = alpha.copy()
    out[gone[np.argsort(beta[gone], kind="stable")[cap:]]] = 1.0
    return out


def train_masks(graph: Graph, solver, ds, lams: dict[str, float], iters: int, seed: int, log=None,
                max_step: float = 1.0, relative: bool = True) -> None:
    """Train with the penalty Σ λ_m·Σβ_m over the masks named in `lams` (the other masks are held:
    their β and α do not move), α by eq. 6, dropout by eq. 8; results into `graph`.

    Before each iteration a trained mask's β is clipped to [0, 1] and, with `relative`, divided by
    its maximum (the layer's scale is not the penalty's business: without this every β of a layer
    falls together and crosses T at once). α follows eq. 6 with at most `max_step` of the nodes
    alive at the start removed (cap_removals); once that many are gone the mask's β is held and
    the rest of the run retrains the other layers around the removal.
    `log(it, {mask: (alive, β quantiles 0/10/50/90/100%)})` is called every 10 iterations."""
    masks = [l for l in graph.layers if l.op == "mask"]
    module = to_torch(graph, outputs=[logits_value(graph)], frozen=[m.name for m in masks if m.name not in lams])
    P = module.ir_parameters()
    for m in masks:     # α is set by eq. 6, never by the optimizer
        P[param_key(m.name, "alpha")].requires_grad_(False)
    alpha = {m.name: m.params["alpha"].dense().astype(np.float32) for m in masks}
    start = {k: a.copy() for k, a in alpha.items()}
    cap = {k: _cap(int(a.sum()), max_step) for k, a in alpha.items()}
    n0 = sum(a.size for a in alpha.values())
    drops = {d: module.attrs(d)["ratio"] for d in module.layer_names("dropout")}
    step, held = [0], set()

    def loss(mod, x, y):
        with torch.no_grad():
            for m in masks:
                if m.name not in lams or m.name in held:
                    continue
                b = P[param_key(m.name, "beta")]
                b.clamp_(0.0, 1.0)
                if relative and 0.0 < float(b.max()) < 1.0:
                    b.div_(b.max())
                bn = b.numpy()
                a = hysteresis(alpha[m.name], bn, m.attrs["threshold"], m.attrs["epsilon"])
                alpha[m.name] = cap_removals(a, start[m.name], bn, cap[m.name])
                P[param_key(m.name, "alpha")].copy_(torch.from_numpy(alpha[m.name]))
                if int(((start[m.name] > 0) & (alpha[m.name] == 0)).sum()) >= cap[m.name]:
                    b.requires_grad_(False)   # this trial's share removed: hold β, retrain the rest
                    held.add(m.name)
            nk = sum(float(a.sum()) for a in alpha.values())
            for d, d0 in drops.items():
                module.set_attrs(d, ratio=d0 * nk / max(n0, 1))
        if log is not None and step[0] % 10 == 0:
            log(step[0], {m.name: (int(alpha[m.name].sum()), np.quantile(
                P[param_key(m.name, "beta")].detach().numpy(), [0, .1, .5, .9, 1]).round(3).tolist()) for m in masks
                if m.name in lams})
        step[0] += 1
        z = mod(x)
        pen = sum(lam * P[param_key(name, "beta")].sum() for name, lam in lams.items() if name not in held)
        return F.cross_entropy(z, y) + pen, z

    train(graph, solver, ds, max_iter=iters, seed=seed, module=module, loss=loss, progress=False)
    for m in masks:   # the optimizer's last step moved β: the state of eq. 6 is what counts
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
    return sum(layer_macs(l) for l in graph.layers if l.opdef.weighted)


def _alive(graph: Graph) -> dict[str, int]:
    return {m.meta["masks"]: int(m.params["alpha"].dense().sum()) for m in graph.layers if m.op == "mask"}


def node_prune(graph: Graph, solver, data, *, max_drop: float = 0.5, ops=("conv2d", "dense"),
               threshold: float = 0.5, epsilon: float = 0.05, lambdas=None, mask_iter: int = 100,
               retrain_iter: int = 100, growth: float = 2.0, min_growth: float = 1.1, max_trials: int = 10,
               max_step: float = 0.25, seed: int = 0, log=None, trace=None) -> tuple[Graph, NodeReport]:
    """Scalpel §3.4 on `graph` (trained): see the module docstring. Changes `graph` in place.

    `max_drop`: tolerated accuracy drop in percentage points. Each layer's λ starts where the
    penalty alone would move β by START_PUSH in one run of `mask_iter` iterations
    (`auto_lambdas`), grows by `growth` after a kept trial that removed less than its share
    (`max_step` of the alive nodes), and after a failed trial r → √r, λ → λ/r and the share
    halves; at most `max_trials` trials per layer. `lambdas`: Scalpel's text instead (one λ
    schedule shared by all masks, absolute β, no share). `log(str)` gets one line per trial,
    `trace(trial, it, stats)` the β quantiles and α counts during mask training.
    """
    infer_shapes(graph)
    ds = decision_dataset(graph, data)   # accuracies here are on the validation split where there is one
    say = log or (lambda s: None)
    rep = NodeReport(accuracy(graph, ds), macs_before=total_macs(graph))
    floor = rep.accuracy_before - max_drop / 100.0
    work = graph.clone()
    masks = [m.name for m in insert_masks(work, ops, threshold, epsilon)]
    if not masks:
        rep.accuracy_after = rep.accuracy_masked = rep.accuracy_before
        rep.macs_after = rep.macs_before
        return graph, rep
    infer_shapes(work)
    by_mask = {m: work.layer(m).meta["masks"] for m in masks}

    def trial(names, lam, i, step=1.0, literal=False):
        """Train the masks `names` at λ; keep the result if the accuracy holds."""
        nonlocal work
        t = work.clone()
        hook = None if trace is None else (lambda it, s: trace(i, it, s))
        train_masks(t, solver, ds, {n: lam for n in names}, mask_iter, seed + i, hook, max_step=step,
                    relative=not literal)
        acc, kept = accuracy(t, ds), _alive(t)
        ok = acc >= floor
        rep.steps.append({"layers": [by_mask[n] for n in names], "lambda": lam, "accuracy": acc,
                          "kept": kept, "accepted": ok})
        say(f"node-prune: {'+'.join(by_mask[n] for n in names)} lambda {lam:.3g}: kept {kept}, "
            f"accuracy {acc:.2%} ({'kept' if ok else 'undone'})")
        if ok:
            work, rep.accuracy_masked = t, acc
            for n in names:
                rep.lambdas[by_mask[n]] = lam
        return ok

    i = 0
    if lambdas is not None:          # Scalpel's text: one λ for every mask, raised until it fails
        for lam in lambdas:
            i += 1
            if not trial(masks, lam, i, step=1.0, literal=True):
                break
    else:
        lam0 = auto_lambdas(solver, mask_iter, (START_PUSH,))[0]
        state = {m: {"lam": lam0, "r": growth, "n": 0, "step": max_step} for m in masks}
        live = list(masks)
        while live:
            for m in list(live):
                s = state[m]
                i, s["n"] = i + 1, s["n"] + 1
                before = _alive(work)[by_mask[m]]
                if trial([m], s["lam"], i, s["step"]):
                    # a trial that removed less than its share: the penalty was too weak, raise it
                    if before - _alive(work)[by_mask[m]] < _cap(before, s["step"]):
                        s["lam"] *= s["r"]
                else:           # back off: a smaller λ and half the share
                    s["r"] = math.sqrt(s["r"])
                    s["lam"] /= s["r"]
                    s["step"] /= 2
                if s["r"] < min_growth or s["n"] >= max_trials:
                    live.remove(m)
    if not rep.lambdas:
        rep.accuracy_after = rep.accuracy_masked = rep.accuracy_before
        rep.macs_after = rep.macs_before
        return graph, rep
    rep.lam = max(rep.lambdas.values())
    rep.channels = remove_masked(work)
    infer_shapes(work)
    rep.accuracy_after = accuracy(work, ds)
    if retrain_iter > 0:
        # the retraining is a step like the others: kept only if it does not lose accuracy (an
        # unchecked last retrain had cost 0.6-0.8 validation points on MNIST, past max_drop)
        retrained = work.clone()
        train(retrained, solver, ds, max_iter=retrain_iter, seed=seed + 100, progress=False)
        acc = accuracy(retrained, ds)
        say(f"node-prune: retrain {retrain_iter} iterations: accuracy {rep.accuracy_after:.2%} -> {acc:.2%} "
            f"({'kept' if acc >= rep.accuracy_after else 'undone'})")
        if acc >= rep.accuracy_after:
            work, rep.accuracy_after = retrained, acc
    rep.macs_after = total_macs(work)
    graph = _adopt_structure(graph, work)
    graph.meta["node_prune"] = rep.to_dict()
    return graph, rep


def _adopt_structure(graph: Graph, other: Graph) -> Graph:
    """Make `graph` (the caller's object) hold `other`'s layers and outputs (node pruning reshapes)."""
    graph.layers, graph.outputs = other.layers, other.outputs
    return graph
