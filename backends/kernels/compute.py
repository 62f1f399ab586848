"""The driver of the ops' TVM rules: what a target tells them (LowerCtx) and how they are called.

Each op's TE compute is its `@rule(Op, "tvm")` in ir/ops/<family>.py, one for x86, cuda and
arm-m4; an op whose constants need compile-time work (batchnorm folding, weight packing, the
mask's gate) also registers `@rule(Op, "tvm-params")`, else its params go in as they are (dense).
What differs between targets are LowerCtx's options, read by the rules: `oc_block` (weights
packed so the innermost loop reads that many output channels as one vector; x86) and
`implicit_pad` (padding read through a bounds test instead of a padded copy: arm-m4, where a
copy would cost SRAM). Views and aliases have no rule: the Relax lowering (lower.py) and the
M4 executor make them share their input's storage.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Callable, ClassVar, Iterator

import numpy as np
import tvm
from tvm import te, tirx, topi

from cococ.ir.core import Layer
from cococ.ir.registry import all_ops, rule_of


@dataclass(frozen=True)
class LowerCtx:
    """Target facts the rules read. oc_block: conv/dense output channels per vector (1 = unpacked);
    implicit_pad: pad by bounds test (arm-m4) instead of a padded copy; sparse: how compressed
    FC/conv weights choose their kernel (x86, backends/tvm/sparse.py): "" dense, "measure" (both
    forms timed), "table" (break-even estimate) or "always" (sparse wherever a kernel exists);
    the lowering then appends each compressed layer's kernel choice to `choices` (for the manifest);
    winograd: which 3x3 stride-1 convs take Winograd (x86, backends/tvm/winograd_x86.py; "" none),
    each one that does appended to `winograd_layers` (for the manifest)."""
    oc_block: int = 1
    sparse: str = ""
    winograd: str = ""
    implicit_pad: bool = False
    choices: list = field(default_factory=list, compare=False)
    winograd_layers: list = field(default_factory=list, compare=False)
    te: ClassVar = te
    tirx: ClassVar = tirx
    topi: ClassVar = topi

    def pad(self, x: te.Tensor, before: list[int], after: list[int], fill, name: str) -> Callable:
        """x padded with `fill` (a number or a TIR constant), as something indexed like a tensor:
        `x` itself when nothing is padded, a padded copy (TE stage `name`; the x86 schedule keeps a
        packed conv's "pad") or, with implicit_pad, a bounds test around each read."""
        if not any(before) and not any(after):
            return x
        if not self.implicit_pad:
            return topi.nn.pad(x, before, after, pad_value=fill, name=name)
        value = fill if tvm.ir.is_prim_expr(fill) else tirx.const(fill, x.dtype)
        shape = [int(d) for d in x.shape]

        def at(*idx):
            src = [i - b for i, b in zip(idx, before)]
            inside = [c for s, b, a, d in zip(src, before, after, shape) if b or a for c in (s >= 0, s < d)]
            return tirx.if_then_else(tirx.all(*inside), x(*src), value)
        return at

    def pack_oc(self, w: np.ndarray) -> np.ndarray:
        """[O, ...] -> [ceil(O/ob), ..., ob] with zero rows for the tail: one vector per output block."""
        ob, o = self.oc_block, w.shape[0]
        ocb = -(-o // ob)
        wp = np.zeros((ocb * ob,) + w.shape[1:], w.dtype)
        wp[:o] = w
        wp = wp.reshape((ocb, ob) + w.shape[1:])
        return np.ascontiguousarray(np.moveaxis(wp, 1, -1))


def consts(layer: Layer, ctx: LowerCtx) -> dict[str, np.ndarray]:
    """The constants `layer`'s tvm rule reads, prepared for the target (its tvm-params rule)."""
    fn = rule_of(layer.op, "tvm-params")
    if fn is not None:
        return fn(layer, ctx)
    return {k: np.ascontiguousarray(p.dense()) for k, p in layer.params.items()}


def compute(layer: Layer, xs: list, ps: dict, ctx: LowerCtx) -> list[te.Tensor]:
    """`layer` as TE tensors over its inputs `xs` and constants `ps` (its tvm rule)."""
    fn = rule_of(layer.op, "tvm")
    if fn is None:
        raise layer.error(f"op '{layer.op}' has no TVM lowering (known: {', '.join(sorted(LOWERINGS))})")
    return fn(layer, xs, ps, ctx)


@dataclass(frozen=True)
class Lowering:
    compute: Callable
    params: Callable


class _Lowerings(Mapping):
    """op name -> Lowering(compute, params) of every op with a tvm rule (what the sparse
    epilogue emitter, backends/tvm/sparse.py, calls)."""

    def __getitem__(self, op: str) -> Lowering:
        if rule_of(op, "tvm") is None:
            raise KeyError(op)
        return Lowering(compute, consts)

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(n for n in all_ops() if rule_of(n, "tvm") is not None))

    def __len__(self) -> int:
        return sum(1 for _ in self)


LOWERINGS: Mapping[str, Lowering] = _Lowerings()
