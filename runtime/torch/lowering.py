"""Torch lowerings of the IR ops: one small function per op, in one table.

Each lowering computes what the op's numpy `compute` computes (ir/ops/*.py), with torch
functions so that autograd can train through it. A lowering is called as
`fn(layer, xs, p, ctx) -> list[Tensor]`: `layer` has its attr defaults filled, `xs` are the
input tensors, `p` maps param names to tensors (absent optional params are absent), `ctx` is
a `Ctx` (training mode, batchnorm momentum). Ops added later may register theirs from their
own module with `@register_lowering("op")`; `LOWERINGS` is the whole table.

Pooling pads explicitly instead of using torch's `padding=`: the IR allows asymmetric pads and
Caffe's ceil mode, and an explicit pad to exactly the windows the IR's `pool_out_size` keeps
gives the same windows (and average divisors) as the reference interpreter in every case.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from cococ.ir.ops.activation import norm_axis
from cococ.ir.ops.pool import _divisor, pool_out_size  # the interpreter's own window rules
from cococ.ir.ops.tensor import reshape_target


@dataclass
class Ctx:
    """What a lowering may need besides its layer: whether the net trains, batchnorm momentum."""
    training: bool = False
    bn_momentum: float = 0.1
    frozen: bool = False  # the layer is frozen: batchnorm keeps its statistics


Lowering = Callable[..., list]
LOWERINGS: dict[str, Lowering] = {}


def register_lowering(op: str):
    """Decorator: make `fn` the torch lowering of IR op `op`; one per op (a second is a mistake)."""
    def deco(fn: Lowering) -> Lowering:
        if op in LOWERINGS:
            raise ValueError(f"torch lowering of {op!r} registered twice ({LOWERINGS[op].__name__}, {fn.__name__})")
        LOWERINGS[op] = fn
        return fn
    return deco


def _chan(v: torch.Tensor, rank: int) -> torch.Tensor:
    """A [C] vector shaped to broadcast over axis 1 of a rank-`rank` tensor."""
    return v.reshape((1, -1) + (1,) * (rank - 2))


# ---- weighted layers ---------------------------------------------------------------------------

@register_lowering("conv2d")
def _conv2d(layer, xs, p, ctx):
    a = layer.attrs
    t, l, b, r = a["pad"]
    x = xs[0]
    if (t, l) == (b, r):
        return [F.conv2d(x, p["weight"], p.get("bias"), a["stride"], (t, l), a["dilation"], a["groups"])]
    x = F.pad(x, (l, r, t, b))
    return [F.conv2d(x, p["weight"], p.get("bias"), a["stride"], 0, a["dilation"], a["groups"])]


@register_lowering("dense")
def _dense(layer, xs, p, ctx):
    return [F.linear(xs[0], p["weight"], p.get("bias"))]


@register_lowering("batchnorm")
def _batchnorm(layer, xs, p, ctx):
    """Inference batchnorm in eval mode; in training, batch statistics and a moving average (as
    Caffe's BatchNorm with use_global_stats=false), unless the layer is frozen."""
    x = xs[0]
    train = ctx.training and not ctx.frozen
    return [F.batch_norm(x, p["mean"], p["var"], p.get("scale"), p.get("bias"), train,
                         ctx.bn_momentum, layer.attrs["eps"])]


@register_lowering("scale")
def _scale(layer, xs, p, ctx):
    x = xs[0]
    y = x * _chan(p["scale"], x.dim())
    return [y + _chan(p["bias"], x.dim()) if "bias" in p else y]


@register_lowering("bias")
def _bias(layer, xs, p, ctx):
    return [xs[0] + _chan(p["bias"], xs[0].dim())]


@register_lowering("mask")
def _mask(layer, xs, p, ctx):
    """Scalpel's node-pruning gate (ir/ops/mask.py): x · α[c] · β[c]; node_prune trains β and sets α."""
    x = xs[0]
    return [x * _chan(p["alpha"] * p["beta"], x.dim())]


@register_lowering("lrn")
def _lrn(layer, xs, p, ctx):
    """Sum of squares over the IR's window (c - (size-1)//2 .. c + size//2), as a padded average pool."""
    a = layer.attrs
    x = xs[0]
    n = a["size"]
    pre, post = (n - 1) // 2, n - 1 - (n - 1) // 2
    sq = x * x
    if a["region"] == "across":
        s = F.avg_pool3d(F.pad(sq, (0, 0, 0, 0, pre, post)).unsqueeze(1), (n, 1, 1), 1).squeeze(1)
    else:
        s = F.avg_pool2d(F.pad(sq, (pre, post, pre, post)), n, 1)
    return [x * torch.pow(a["k"] + a["alpha"] * s, -a["beta"])]


# ---- activations ----------------------------------------------------------------------------

LOWERINGS.update({
    "relu": lambda layer, xs, p, ctx: [F.relu(xs[0])],
    "sigmoid": lambda layer, xs, p, ctx: [torch.sigmoid(xs[0])],
    "tanh": lambda layer, xs, p, ctx: [torch.tanh(xs[0])],
    "identity": lambda layer, xs, p, ctx: [xs[0]],
    "leaky_relu": lambda layer, xs, p, ctx: [F.leaky_relu(xs[0], layer.attrs["alpha"])],
    "clip": lambda layer, xs, p, ctx: [torch.clamp(xs[0], layer.attrs.get("min"), layer.attrs.get("max"))],
    "dropout": lambda layer, xs, p, ctx: [F.dropout(xs[0], layer.attrs["ratio"], ctx.training)],
})


@register_lowering("prelu")
def _prelu(layer, xs, p, ctx):
    x, s = xs[0], p["slope"]
    s = s.reshape(()) if s.numel() == 1 else _chan(s, x.dim())
    return [torch.where(x > 0, x, x * s)]


@register_lowering("power")
def _power(layer, xs, p, ctx):
    a = layer.attrs
    y = a["shift"] + a["scale"] * xs[0]
    return [y if a["power"] == 1 else torch.pow(y, a["power"])]


@register_lowering("softmax")
def _softmax(layer, xs, p, ctx):
    return [torch.softmax(xs[0], norm_axis(layer, layer.attrs["axis"], xs[0].dim()))]


# ---- pooling -----------------------------------------------------------------------------------

def _pool_pad(layer, x: torch.Tensor, fill: float):
    """Pad x so that an unpadded floor-mode sweep gives exactly the IR's windows; return (x, oh, ow)."""
    a = layer.attrs
    (kh, kw), (sh, sw), (t, l, b, r) = a["kernel"], a["stride"], a["pad"]
    h, w = x.shape[2:]
    oh = pool_out_size(h, kh, sh, t, b, a["ceil_mode"])
    ow = pool_out_size(w, kw, sw, l, r, a["ceil_mode"])
    hi_h = max(0, (oh - 1) * sh + kh - h - t)
    hi_w = max(0, (ow - 1) * sw + kw - w - l)
    if t or l or hi_h or hi_w:
        x = F.pad(x, (l, hi_w, t, hi_h), value=fill)
    return x, oh, ow


@register_lowering("max_pool")
def _max_pool(layer, xs, p, ctx):
    x, oh, ow = _pool_pad(layer, xs[0], float("-inf"))
    return [F.max_pool2d(x, layer.attrs["kernel"], layer.attrs["stride"])[:, :, :oh, :ow]]


@register_lowering("avg_pool")
def _avg_pool(layer, xs, p, ctx):
    a = layer.attrs
    h, w = xs[0].shape[2:]
    x, oh, ow = _pool_pad(layer, xs[0], 0.0)
    (kh, kw), (sh, sw), (t, l, b, r) = a["kernel"], a["stride"], a["pad"]
    s = F.avg_pool2d(x, (kh, kw), (sh, sw))[:, :, :oh, :ow] * (kh * kw)
    dh = _divisor(h, oh, kh, sh, t, b, a["count_include_pad"])
    dw = _divisor(w, ow, kw, sw, l, r, a["count_include_pad"])
    div = torch.as_tensor(np.outer(dh, dw), dtype=s.dtype, device=s.device)
    return [s / div]


LOWERINGS.update({
    "global_avg_pool": lambda layer, xs, p, ctx: [xs[0].mean(dim=(2, 3), keepdim=True)],
    "global_max_pool": lambda layer, xs, p, ctx: [xs[0].amax(dim=(2, 3), keepdim=True)],
})


# ---- data movement -----------------------------------------------------------------------------

@register_lowering("eltwise")
def _eltwise(layer, xs, p, ctx):
    mode, co = layer.attrs["mode"], layer.attrs.get("coeffs")
    if mode == "sum" and co is not None:
        y = co[0] * xs[0]
        for c, x in zip(co[1:], xs[1:]):
            y = y + c * x
        return [y]
    fold = {"sum": torch.add, "prod": torch.mul, "max": torch.maximum}[mode]
    y = xs[0]
    for x in xs[1:]:
        y = fold(y, x)
    return [y]


@register_lowering("concat")
def _concat(layer, xs, p, ctx):
    return [torch.cat(xs, norm_axis(layer, layer.attrs["axis"], xs[0].dim()))]


@register_lowering("slice")
def _slice(layer, xs, p, ctx):
    x = xs[0]
    ax = norm_axis(layer, layer.attrs["axis"], x.dim())
    pts = [0, *layer.attrs["points"], x.shape[ax]]
    return list(torch.split(x, [b - a for a, b in zip(pts, pts[1:])], dim=ax))


@register_lowering("flatten")
def _flatten(layer, xs, p, ctx):
    return [torch.flatten(xs[0], norm_axis(layer, layer.attrs["axis"], xs[0].dim()))]


@register_lowering("reshape")
def _reshape(layer, xs, p, ctx):
    return [xs[0].reshape(reshape_target(layer, tuple(xs[0].shape)))]
