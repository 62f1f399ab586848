"""Torch lowering of IR layers: the context every op's torch rule gets, and the rule lookup.

Each op's torch rule sits beside the op (ir/ops/*.py, `@rule(Op, "torch")`) and computes what
the op's numpy `compute` computes, with torch functions so that autograd can train through it.
A rule is called `fn(layer, xs, p, ctx) -> list[Tensor]`: `layer` has its attr defaults filled,
`xs` are the input tensors, `p` maps param names to tensors (absent optional params are absent),
`ctx` is a `Ctx`. The ctx also carries torch itself (`ctx.torch`, `ctx.F`), so that the op files,
and importing cococ.ir, never import torch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import torch
import torch.nn.functional

from cococ.ir.registry import all_ops, rule_of


@dataclass
class Ctx:
    """What a lowering may need besides its layer: whether the net trains, batchnorm momentum,
    and the torch modules it computes with."""
    training: bool = False
    bn_momentum: float = 0.1
    frozen: bool = False  # the layer is frozen: batchnorm keeps its statistics
    torch: ClassVar[Any] = torch
    F: ClassVar[Any] = torch.nn.functional


def lowering_of(op: str) -> Callable | None:
    """The torch rule of IR op `op`, or None when it has none."""
    return rule_of(op, "torch")


def lowered_ops() -> list[str]:
    """The ops that have a torch rule (for error messages)."""
    return sorted(op for op in all_ops() if rule_of(op, "torch") is not None)
