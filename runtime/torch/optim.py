"""Caffe's solvers, update for update: SGD with momentum, Nesterov, Adam; lr policies.

torch's own optimizers differ from Caffe in ways that change results: torch SGD puts the
learning rate outside the momentum buffer (v = m v + g; w -= lr v), Caffe inside
(v = m v + lr (g + wd w); w -= v), which differs whenever the lr changes (every lr policy but
`fixed`); and Caffe scales both lr and weight decay per param (`lr_mult`, `decay_mult`). A
prototxt and solver tuned in Caffe should train the same here, so this module follows
caffe/src/caffe/solvers/*.cpp: `Regularize` (L2: g += wd·decay_mult·w, L1: g += wd·decay_mult·sign(w)),
then `ComputeUpdateValue` with local_rate = lr·lr_mult.

The optimizer state is a flat dict of named tensors (`history/layer/param`, `history2/...`)
so a snapshot is one safetensors file.
"""
from __future__ import annotations

import math
from typing import Mapping

import torch

from cococ.ir.core import CococError
from cococ.runtime.torch.module import param_key

POLICIES = ("fixed", "step", "exp", "inv", "multistep", "poly", "sigmoid")
TYPES = ("SGD", "Nesterov", "Adam")


def _get(solver, name, default):
    v = getattr(solver, name, default)
    return default if v is None else v


def policy_lr(solver, it: int) -> float:
    """Caffe's SGDSolver::GetLearningRate for iteration `it` (0-based, before the update)."""
    base = float(solver.base_lr)
    policy = _get(solver, "lr_policy", "fixed")
    gamma, power = float(_get(solver, "gamma", 0.0)), float(_get(solver, "power", 0.0))
    if policy == "fixed":
        return base
    if policy == "step":
        return base * gamma ** (it // int(solver.stepsize))
    if policy == "exp":
        return base * gamma ** it
    if policy == "inv":
        return base * (1.0 + gamma * it) ** (-power)
    if policy == "multistep":
        return base * gamma ** sum(1 for s in _get(solver, "stepvalue", []) if it >= s)
    if policy == "poly":
        return base * (1.0 - it / float(solver.max_iter)) ** power
    if policy == "sigmoid":
        return base * (1.0 / (1.0 + math.exp(-gamma * (it - int(solver.stepsize)))))
    raise CococError(f"solver: unknown lr_policy '{policy}' (known: {', '.join(POLICIES)})")


def lr_at(solver, it: int) -> float:
    """The solver's learning rate at `it`: its own `lr_at` where it has one (the parsed Solver)."""
    f = getattr(solver, "lr_at", None)
    return float(f(it)) if callable(f) else policy_lr(solver, it)


class CaffeOptimizer:
    """Updates named params in place, as Caffe's solver `type` does.

    `mults` maps a param key to (lr_mult, decay_mult); absent keys use (1, 1). Params whose
    `requires_grad` is False (frozen) or that got no gradient are left alone, history included.
    """

    def __init__(self, params: Mapping[str, torch.nn.Parameter], solver,
                 mults: Mapping[str, tuple[float, float]] | None = None):
        self.params = dict(params)
        self.type = _get(solver, "type", "SGD")
        if self.type not in TYPES:
            raise CococError(f"solver: type '{self.type}' is not supported (supported: {', '.join(TYPES)})")
        self.momentum = float(_get(solver, "momentum", 0.0 if self.type != "Adam" else 0.9))
        self.momentum2 = float(_get(solver, "momentum2", 0.999))
        self.delta = float(_get(solver, "delta", 1e-8))
        self.weight_decay = float(_get(solver, "weight_decay", 0.0))
        self.reg = str(_get(solver, "regularization_type", "L2"))
        if self.reg not in ("L1", "L2"):
            raise CococError(f"solver: regularization_type '{self.reg}' must be L1 or L2")
        self.mults = {k: tuple(map(float, (mults or {}).get(k, (1.0, 1.0)))) for k in self.params}
        self.state: dict[str, torch.Tensor] = {}
        for k, p in self.params.items():
            self.state[f"history/{k}"] = torch.zeros_like(p)
            if self.type == "Adam":
                self.state[f"history2/{k}"] = torch.zeros_like(p)

    @torch.no_grad()
    def step(self, it: int, lr: float) -> None:
        """One update with learning rate `lr` at iteration `it` (Adam's bias correction uses it)."""
        for k, p in self.params.items():
            if not p.requires_grad or p.grad is None:
                continue
            lr_mult, decay_mult = self.mults[k]
            g = p.grad
            decay = self.weight_decay * decay_mult
            if decay:
                g = g + decay * (p if self.reg == "L2" else torch.sign(p))
            rate = lr * lr_mult
            h = self.state[f"history/{k}"]
            if self.type == "SGD":
                h.mul_(self.momentum).add_(g, alpha=rate)
                p.sub_(h)
            elif self.type == "Nesterov":
                prev = h.clone()
                h.mul_(self.momentum).add_(g, alpha=rate)
                p.sub_((1 + self.momentum) * h - self.momentum * prev)
            else:  # Adam: beta1 = momentum, beta2 = momentum2, eps = delta
                h2 = self.state[f"history2/{k}"]
                t = it + 1
                h.mul_(self.momentum).add_(g, alpha=1 - self.momentum)
                h2.mul_(self.momentum2).addcmul_(g, g, value=1 - self.momentum2)
                correction = math.sqrt(1 - self.momentum2 ** t) / (1 - self.momentum ** t)
                p.sub_(rate * correction * h / (h2.sqrt() + self.delta))

    def zero_grad(self) -> None:
        for p in self.params.values():
            p.grad = None

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return dict(self.state)

    def load_state_tensors(self, tensors: Mapping[str, torch.Tensor], where: str = "snapshot") -> None:
        missing = [k for k in self.state if k not in tensors]
        if missing:
            raise CococError(f"{where}: no optimizer state for {missing[0]} (the snapshot is of another "
                             f"net or solver type; {len(missing)} missing)")
        for k, t in self.state.items():
            src = torch.as_tensor(tensors[k])
            if src.shape != t.shape:
                raise CococError(f"{where}: {k} is {list(src.shape)}, the net needs {list(t.shape)}")
            t.copy_(src)


def caffe_mults(graph, module) -> dict[str, tuple[float, float]]:
    """(lr_mult, decay_mult) per param key from each layer's `meta["caffe_param"]`.

    The prototxt frontend stores Caffe's `param { lr_mult decay_mult }` blocks as a list, one
    per blob in the layer's blob order, which is the order of `layer.params`; a dict keyed by
    param name is accepted too. Unspecified entries are Caffe's default 1.
    """

    out = {}
    for layer in graph.layers:
        spec = layer.meta.get("caffe_param")
        if not spec:
            continue
        names = list(layer.params)
        pairs = spec.items() if isinstance(spec, Mapping) else zip(names, spec)
        for name, entry in pairs:
            entry = entry or {}
            key = param_key(layer.name, name)
            if key in module.ir_parameters():
                out[key] = (float(entry.get("lr_mult", 1.0)), float(entry.get("decay_mult", 1.0)))
    return out
