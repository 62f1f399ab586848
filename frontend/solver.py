"""Caffe solver prototxt -> a typed `Solver`, with Caffe's learning-rate policies.

Fine-tuning (Wootz's block training, the pruned nets' retraining) starts from a Caffe solver;
reading it into a checked dataclass means a typo'd policy or a missing stepsize is an error at
its line now, not a wrong schedule hours later. Defaults are caffe.proto's. Fields Caffe knows
but cococ has no use for (display, solver_mode, device_id, ...) are kept in `extra`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cococ.frontend.prototxt import load_prototxt, net_to_graph
from cococ.frontend.prototxt.schema import check_fields
from cococ.frontend.prototxt.textformat import INT64, Message, parse_file, parse_text
from cococ.ir.core import CococError

POLICIES = ("fixed", "step", "exp", "inv", "multistep", "poly", "sigmoid")
TYPES = ("SGD", "Nesterov", "AdaGrad", "RMSProp", "AdaDelta", "Adam")
_ENUM_TYPES = {"SGD": "SGD", "NESTEROV": "Nesterov", "ADAGRAD": "AdaGrad", "RMSPROP": "RMSProp",
               "ADADELTA": "AdaDelta", "ADAM": "Adam"}


@dataclass
class Solver:
    base_lr: float
    max_iter: int
    lr_policy: str = "fixed"
    gamma: float | None = None
    power: float | None = None
    stepsize: int | None = None
    stepvalue: list[int] = field(default_factory=list)
    momentum: float = 0.0
    momentum2: float = 0.999
    delta: float = 1e-8
    weight_decay: float = 0.0
    regularization_type: str = "L2"
    type: str = "SGD"
    test_iter: list[int] = field(default_factory=list)
    test_interval: int = 0
    snapshot: int = 0
    snapshot_prefix: str | None = None
    random_seed: int = -1
    iter_size: int = 1
    net: str | None = None          # net / train_net file (relative to the solver file as written)
    test_nets: list[str] = field(default_factory=list)
    test_stages: list[list[str]] = field(default_factory=list)  # the stages of each test_state
    net_param: Message | None = None  # an inline net_param / train_net_param
    batch_sizes: dict[str, int] = field(default_factory=dict)  # data layer -> batch_size (inline nets)
    path: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    lenient: bool = False  # unknown fields warn (here and in the net) instead of failing

    def lr_at(self, it: int) -> float:
        """The learning rate at iteration `it`, as Caffe's SGDSolver::GetLearningRate."""
        p, lr = self.lr_policy, self.base_lr
        if p == "fixed":
            return lr
        if p == "step":
            return lr * self.gamma ** (it // self.stepsize)
        if p == "exp":
            return lr * self.gamma ** it
        if p == "inv":
            return lr * (1 + self.gamma * it) ** (-self.power)
        if p == "multistep":
            return lr * self.gamma ** sum(1 for s in self.stepvalue if it >= s)
        if p == "poly":
            return lr * (1 - it / self.max_iter) ** self.power
        return lr / (1 + math.exp(-self.gamma * (it - self.stepsize)))  # sigmoid

    def net_graph(self, phase: str = "TRAIN", stages=()):
        """The inline net as a Graph (the file named by `net` is loaded with load_prototxt);
        `stages` select include/exclude rules, e.g. one of `test_stages`."""
        if self.net_param is not None:
            return net_to_graph(self.net_param, phase, path=self.path, stages=stages, lenient=self.lenient)
        if self.net is None:
            raise CococError("the solver names no net", path=self.path)
        p = Path(self.net)
        if not (p.is_absolute() or p.exists()):
            p = Path(self.path or ".").parent / p
        return load_prototxt(p, phase, stages=stages, lenient=self.lenient)


def load_solver(path, *, lenient: bool = False) -> Solver:
    return solver_from_message(parse_file(path), str(path), lenient=lenient)


def load_solver_text(text: str, path: str | None = None, *, lenient: bool = False) -> Solver:
    return solver_from_message(parse_text(text, path), path, lenient=lenient)


def solver_from_message(m: Message, path: str | None = None, *, lenient: bool = False) -> Solver:
    """A field caffe.proto's SolverParameter (inline nets included) does not define is an error,
    or with `lenient` a warning; the inline net is checked again when it is built."""
    check_fields(m, "SolverParameter", lenient=lenient)

    def need(name: str, cond: bool, why: str):
        if not cond:
            f = m.field(name)
            raise m.error(f"field '{name}' {why}", f.loc if f else None)

    base_lr = m.get_float("base_lr")
    need("base_lr", base_lr is not None, "is required")
    need("base_lr", base_lr > 0 and math.isfinite(base_lr), f"must be a positive number, got {base_lr}")
    max_iter = m.get_int("max_iter")
    need("max_iter", max_iter is not None, "is required")
    need("max_iter", max_iter > 0, f"must be positive, got {max_iter}")
    policy = m.get_str("lr_policy", "fixed")
    need("lr_policy", policy in POLICIES, f"must be one of {', '.join(POLICIES)}, got '{policy}'")
    gamma, power, stepsize = m.get_float("gamma"), m.get_float("power"), m.get_int("stepsize")
    stepvalue = m.get_ints("stepvalue")
    if policy in ("step", "exp", "inv", "multistep", "sigmoid"):
        need("gamma", gamma is not None, f"is required by lr_policy '{policy}'")
    if policy in ("inv", "poly"):
        need("power", power is not None, f"is required by lr_policy '{policy}'")
    if policy in ("step", "sigmoid"):
        need("stepsize", stepsize is not None and stepsize > 0, f"must be a positive integer for lr_policy '{policy}'")
    if policy == "multistep":
        need("stepvalue", bool(stepvalue), "is required by lr_policy 'multistep'")
        need("stepvalue", stepvalue == sorted(stepvalue), f"must increase, got {stepvalue}")
    if m.has("type"):
        type_ = m.get_str("type")
        need("type", type_ in TYPES, f"must be one of {', '.join(TYPES)}, got '{type_}'")
    else:
        type_ = _ENUM_TYPES[m.get_enum("solver_type", _ENUM_TYPES, "SGD", numbers=dict(enumerate(_ENUM_TYPES)))]
    momentum = m.get_float("momentum", 0.0)
    need("momentum", 0 <= momentum < 1 or type_ == "AdaDelta" and 0 <= momentum <= 1,
         f"must be in [0, 1), got {momentum}")
    weight_decay = m.get_float("weight_decay", 0.0)
    need("weight_decay", weight_decay >= 0, f"must be >= 0, got {weight_decay}")
    test_iter = m.get_ints("test_iter")
    need("test_iter", all(t > 0 for t in test_iter), f"must be positive, got {test_iter}")
    net_param = m.get_msg("net_param") or m.get_msg("train_net_param")
    s = Solver(
        base_lr=base_lr, max_iter=max_iter, lr_policy=policy, gamma=gamma, power=power, stepsize=stepsize,
        stepvalue=stepvalue, momentum=momentum, momentum2=m.get_float("momentum2", 0.999),
        delta=m.get_float("delta", 1e-8), weight_decay=weight_decay,
        regularization_type=m.get_str("regularization_type", "L2"),
        type=type_, test_iter=test_iter, test_interval=m.get_int("test_interval", 0),
        snapshot=m.get_int("snapshot", 0), snapshot_prefix=m.get_str("snapshot_prefix"),
        random_seed=m.get_int("random_seed", -1, INT64), iter_size=m.get_int("iter_size", 1),
        net=m.get_str("net") or m.get_str("train_net"), test_nets=m.get_strs("test_net"),
        test_stages=[t.get_strs("stage") for t in m.get_msgs("test_state")], net_param=net_param, path=path,
        lenient=lenient)
    need("regularization_type", s.regularization_type in ("L1", "L2"), "must be L1 or L2")
    need("iter_size", s.iter_size >= 1, "must be >= 1")
    if net_param is not None:
        s.batch_sizes = _batch_sizes(net_param)
    for f in m.fields:
        if f.name in ("display", "average_loss", "solver_mode", "device_id", "clip_gradients", "test_initialization",
                      "snapshot_format", "debug_info", "rms_decay") and not isinstance(f.value, Message):
            s.extra[f.name] = f.value if not isinstance(f.value, str) else str(f.value)
    return s


def _batch_sizes(net: Message) -> dict[str, int]:
    out = {}
    for f in net.fields:
        if f.name in ("layer", "layers") and isinstance(f.value, Message):
            for pf in ("data_param", "image_data_param", "memory_data_param", "window_data_param", "hdf5_data_param"):
                p = f.value.get(pf)
                if isinstance(p, Message) and p.has("batch_size"):
                    key = f.value.get_str("name") or pf
                    phases = [r.get("phase") for r in f.value.get_all("include") if isinstance(r, Message)]
                    key += "".join(f"/{ph}" for ph in phases if ph is not None)
                    out[key] = p.get_int("batch_size")
    return out
