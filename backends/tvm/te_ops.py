"""Per-op lowering of the layer IR to TVM tensor expressions (TE), one registration per op.

Each op registers two functions (a table, as the frontends do, so adding an op touches one place):
  - `params(layer, ctx) -> dict[str, np.ndarray]`: the constants the kernel reads, in the
    layout the kernel wants. This is where compile-time work happens once instead of on every
    run: batchnorm folds to one multiply-add per channel, conv/dense weights are packed so the
    innermost loop reads `ctx.oc_block` output channels as one vector.
  - `compute(layer, xs, ps, ctx) -> list[te.Tensor]`: the computation over TE tensors.
Ops without a registration fall back to nothing: `lower_graph` raises a CococError naming the
op, which is better than a silently wrong kernel. Block names matter: the schedules find the
conv/dense reductions by the names `conv_packed`, `conv_direct` and `dense_packed`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from tvm import te, tirx, topi

from cococ.ir.ops.activation import norm_axis
from cococ.ir.ops.pool import pool_out_size
from cococ.ir.ops.tensor import reshape_target


@dataclass(frozen=True)
class LowerCtx:
    """Target facts the lowering needs: conv/dense output channels per vector (1 = unpacked);
    sparse: run compressed FC/conv weights with the sparse kernels (x86, backends/tvm/sparse.py);
    the lowering then appends each compressed layer's kernel choice to `choices` (for the manifest)."""
    oc_block: int = 1
    sparse: bool = False
    choices: list = field(default_factory=list, compare=False)


@dataclass(frozen=True)
class Lowering:
    compute: Callable
    params: Callable


LOWERINGS: dict[str, Lowering] = {}


def _dense_params(layer, ctx) -> dict[str, np.ndarray]:
    return {k: np.ascontiguousarray(p.dense()) for k, p in layer.params.items()}


def lowering(op: str, params: Callable = _dense_params):
    def deco(fn):
        LOWERINGS[op] = Lowering(fn, params)
        return fn
    return deco


# ---- conv2d and dense -------------------------------------------------------------------------

def _pack_oc(w: np.ndarray, ob: int) -> np.ndarray:
    """[O, ...] -> [ceil(O/ob), ..., ob] with zero rows for the tail: one vector per output block."""
    o = w.shape[0]
    ocb = -(-o // ob)
    wp = np.zeros((ocb * ob,) + w.shape[1:], w.dtype)
    wp[:o] = w
    wp = wp.reshape((ocb, ob) + w.shape[1:])
    return np.ascontiguousarray(np.moveaxis(wp, 1, -1))


def conv_packs(layer, ctx: LowerCtx) -> bool:
    """Pack the weight unless the conv is depthwise-like (an output vector would span groups)."""
    g, o = layer.attrs["groups"], layer.attrs["out_channels"]
    return ctx.oc_block > 1 and (g == 1 or (o // g) % ctx.oc_block == 0)


def _conv_params(layer, ctx):
    ps = _dense_params(layer, ctx)
    if conv_packs(layer, ctx):
        ps["weight"] = _pack_oc(ps["weight"], ctx.oc_block)
    return ps


@lowering("conv2d", _conv_params)
def _conv2d(layer, xs, ps, ctx):
    x, w = xs[0], ps["weight"]
    a = layer.attrs
    n, c, h, wd = (int(d) for d in x.shape)
    o, g = a["out_channels"], a["groups"]
    (kh, kw), (sh, sw), (dh, dw), (t, l, b, r) = a["kernel"], a["stride"], a["dilation"], a["pad"]
    oh = (h + t + b - (dh * (kh - 1) + 1)) // sh + 1
    ow = (wd + l + r - (dw * (kw - 1) + 1)) // sw + 1
    xp = topi.nn.pad(x, [0, 0, t, l], [0, 0, b, r], name="pad") if (t or l or b or r) else x
    icg, og = c // g, o // g
    rc, ry, rx = te.reduce_axis((0, icg), "rc"), te.reduce_axis((0, kh), "ry"), te.reduce_axis((0, kw), "rx")
    bias = ps.get("bias")
    if len(w.shape) == 5:  # packed [OB, icg, kh, kw, ob]
        ob = int(w.shape[-1])

        def packed(nn, cb, y, xx, ci):
            ic = rc if g == 1 else (cb * ob) // og * icg + rc
            return te.sum(xp[nn, ic, y * sh + ry * dh, xx * sw + rx * dw] * w[cb, rc, ry, rx, ci], axis=[rc, ry, rx])

        conv = te.compute((n, int(w.shape[0]), oh, ow, ob), packed, name="conv_packed")

        def unpack(nn, co, y, xx):
            v = conv[nn, co // ob, y, xx, co % ob]
            return v + bias[co] if bias is not None else v

        return [te.compute((n, o, oh, ow), unpack, name="conv_out")]

    def direct(nn, co, y, xx):
        ic = rc if g == 1 else co // og * icg + rc
        return te.sum(xp[nn, ic, y * sh + ry * dh, xx * sw + rx * dw] * w[co, rc, ry, rx], axis=[rc, ry, rx])

    conv = te.compute((n, o, oh, ow), direct, name="conv_direct")
    if bias is None:
        return [conv]
    return [te.compute(conv.shape, lambda nn, co, y, xx: conv[nn, co, y, xx] + bias[co], name="conv_out")]


def _dense_params_packed(layer, ctx):
    ps = _dense_params(layer, ctx)
    if ctx.oc_block > 1:
        ps["weight"] = _pack_oc(ps["weight"], ctx.oc_block)  # [OB, K, ob]
    return ps


@lowering("dense", _dense_params_packed)
def _dense(layer, xs, ps, ctx):
    x, w, bias = xs[0], ps["weight"], ps.get("bias")
    n, k = (int(d) for d in x.shape)
    o = layer.attrs["out_features"]
    rk = te.reduce_axis((0, k), "rk")
    if len(w.shape) == 3:
        ob = int(w.shape[-1])
        acc = te.compute((n, int(w.shape[0]), ob),
                         lambda i, cb, ci: te.sum(x[i, rk] * w[cb, rk, ci], axis=rk), name="dense_packed")
        get = lambda i, j: acc[i, j // ob, j % ob]  # noqa: E731
    else:
        acc = te.compute((n, o), lambda i, j: te.sum(x[i, rk] * w[j, rk], axis=rk), name="dense_direct")
        get = lambda i, j: acc[i, j]  # noqa: E731
    return [te.compute((n, o), lambda i, j: get(i, j) + bias[j] if bias is not None else get(i, j),
                       name="dense_out")]


# ---- per-channel affine -----------------------------------------------------------------------

def _affine(x, mul, add, name):
    """x * mul[c] + add[c] over axis 1 (either may be None)."""
    def f(*idx):
        v = x(*idx)
        if mul is not None:
            v = v * mul[idx[1]]
        if add is not None:
            v = v + add[idx[1]]
        return v
    return te.compute(x.shape, f, name=name)


def _bn_params(layer, ctx):
    """Fold (x - mean) / sqrt(var + eps) * scale + bias into x * a + b, in float64 then f32."""
    p = {k: v.dense().astype(np.float64) for k, v in layer.params.items()}
    a = 1.0 / np.sqrt(p["var"] + layer.attrs["eps"])
    if "scale" in p:
        a = a * p["scale"]
    b = -p["mean"] * a + (p["bias"] if "bias" in p else 0.0)
    return {"mul": a.astype(np.float32), "add": b.astype(np.float32)}


@lowering("batchnorm", _bn_params)
def _batchnorm(layer, xs, ps, ctx):
    return [_affine(xs[0], ps["mul"], ps["add"], "batchnorm")]


@lowering("scale")
def _scale(layer, xs, ps, ctx):
    return [_affine(xs[0], ps["scale"], ps.get("bias"), "scale")]


@lowering("bias")
def _bias(layer, xs, ps, ctx):
    return [_affine(xs[0], None, ps["bias"], "bias")]


def _mask_params(layer, ctx):
    """Scalpel's node-pruning gate folds to one per-channel multiplier, alpha * beta."""
    p = _dense_params(layer, ctx)
    return {"gate": (p["alpha"] * p["beta"]).astype(np.float32)}


@lowering("mask", _mask_params)
def _mask(layer, xs, ps, ctx):
    return [_affine(xs[0], ps["gate"], None, "mask")]


# ---- element-wise -----------------------------------------------------------------------------

def _map(name, fn):
    @lowering(name)
    def _lower(layer, xs, ps, ctx):
        x = xs[0]
        return [te.compute(x.shape, lambda *i: fn(layer, x(*i), ps, i), name=name)]
    return _lower


def _f(x, v):
    """The constant `v` in the dtype of `x` (a te.Tensor or a PrimExpr, whose dtype is `.ty` in 0.27)."""
    dt = x.dtype if isinstance(x, te.Tensor) else str(x.ty)
    return tirx.const(v, dt)


_map("relu", lambda l, v, ps, i: te.max(v, _f(v, 0)))
_map("leaky_relu", lambda l, v, ps, i: tirx.Select(v > _f(v, 0), v, v * _f(v, l.attrs["alpha"])))
_map("prelu", lambda l, v, ps, i: tirx.Select(
    v > _f(v, 0), v, v * (ps["slope"][0] if int(ps["slope"].shape[0]) == 1 else ps["slope"][i[1]])))
_map("sigmoid", lambda l, v, ps, i: te.sigmoid(v))
_map("tanh", lambda l, v, ps, i: te.tanh(v))


def _clip(l, v, ps, i):
    lo, hi = l.attrs.get("min"), l.attrs.get("max")
    if lo is not None:
        v = te.max(v, _f(v, lo))
    if hi is not None:
        v = te.min(v, _f(v, hi))
    return v


def _power(l, v, ps, i):
    a = l.attrs
    y = _f(v, a["shift"]) + _f(v, a["scale"]) * v
    return y if a["power"] == 1 else te.power(y, _f(v, a["power"]))


_map("clip", _clip)
_map("power", _power)


@lowering("eltwise")
def _eltwise(layer, xs, ps, ctx):
    mode, co = layer.attrs["mode"], layer.attrs.get("coeffs")

    def f(*i):
        vs = [x(*i) for x in xs]
        if mode == "sum" and co is not None:
            vs = [v * _f(v, c) for v, c in zip(vs, co)]
        acc = vs[0]
        for v in vs[1:]:
            acc = acc + v if mode == "sum" else acc * v if mode == "prod" else te.max(acc, v)
        return acc
    return [te.compute(xs[0].shape, f, name="eltwise")]


@lowering("softmax")
def _softmax(layer, xs, ps, ctx):
    x = xs[0]
    ax = norm_axis(layer, layer.attrs["axis"], len(x.shape))
    k = te.reduce_axis((0, int(x.shape[ax])), "k")
    red_shape = [d for j, d in enumerate(x.shape) if j != ax]

    def at(i, kk):  # full index from a reduced index plus the axis coordinate
        return list(i[:ax]) + [kk] + list(i[ax:])
    mx = te.compute(red_shape, lambda *i: te.max(x(*at(i, k)), axis=k), name="softmax_max")
    e = te.compute(x.shape, lambda *i: te.exp(x(*i) - mx(*(i[:ax] + i[ax + 1:]))), name="softmax_exp")
    k2 = te.reduce_axis((0, int(x.shape[ax])), "k2")
    s = te.compute(red_shape, lambda *i: te.sum(e(*at(i, k2)), axis=k2), name="softmax_sum")
    return [te.compute(x.shape, lambda *i: e(*i) / s(*(i[:ax] + i[ax + 1:])), name="softmax")]


@lowering("lrn")
def _lrn(layer, xs, ps, ctx):
    x = xs[0]
    a = layer.attrs
    size = a["size"]
    n, c, h, w = (int(d) for d in x.shape)
    pre = (size - 1) // 2
    sq = te.compute(x.shape, lambda *i: x(*i) * x(*i), name="lrn_sq")
    if a["region"] == "across":
        p = topi.nn.pad(sq, [0, pre, 0, 0], [0, size - 1 - pre, 0, 0], name="lrn_pad")
        r = te.reduce_axis((0, size), "r")
        s = te.compute(x.shape, lambda i, j, y, z: te.sum(p[i, j + r, y, z], axis=r), name="lrn_sum")
        cnt = size
    else:
        p = topi.nn.pad(sq, [0, 0, pre, pre], [0, 0, size - 1 - pre, size - 1 - pre], name="lrn_pad")
        ry, rx = te.reduce_axis((0, size), "ry"), te.reduce_axis((0, size), "rx")
        s = te.compute(x.shape, lambda i, j, y, z: te.sum(p[i, j, y + ry, z + rx], axis=[ry, rx]), name="lrn_sum")
        cnt = size * size
    k_, al, be = _f(x, a["k"]), _f(x, a["alpha"] / cnt), _f(x, -a["beta"])
    return [te.compute(x.shape, lambda *i: x(*i) * te.power(k_ + al * s(*i), be), name="lrn")]


# ---- pooling ----------------------------------------------------------------------------------

def _window(layer, x, fill):
    """The input padded with `fill` as far as the windows reach, and the output size."""
    a = layer.attrs
    _, _, h, w = (int(d) for d in x.shape)
    (kh, kw), (sh, sw), (t, l, b, r) = a["kernel"], a["stride"], a["pad"]
    oh = pool_out_size(h, kh, sh, t, b, a["ceil_mode"])
    ow = pool_out_size(w, kw, sw, l, r, a["ceil_mode"])
    hi_h, hi_w = max(0, (oh - 1) * sh + kh - h - t), max(0, (ow - 1) * sw + kw - w - l)
    xp = topi.nn.pad(x, [0, 0, t, l], [0, 0, hi_h, hi_w], pad_value=fill, name="pool_pad") \
        if (t or l or hi_h or hi_w) else x
    return xp, oh, ow


@lowering("max_pool")
def _max_pool(layer, xs, ps, ctx):
    x = xs[0]
    a = layer.attrs
    xp, oh, ow = _window(layer, x, -np.inf)
    ry, rx = te.reduce_axis((0, a["kernel"][0]), "ry"), te.reduce_axis((0, a["kernel"][1]), "rx")
    sh, sw = a["stride"]
    return [te.compute((x.shape[0], x.shape[1], oh, ow),
                       lambda n, c, y, z: te.max(xp[n, c, y * sh + ry, z * sw + rx], axis=[ry, rx]),
                       name="max_pool")]


@lowering("avg_pool")
def _avg_pool(layer, xs, ps, ctx):
    x = xs[0]
    a = layer.attrs
    xp, oh, ow = _window(layer, x, 0.0)
    (kh, kw), (sh, sw), (t, l, b, r) = a["kernel"], a["stride"], a["pad"]
    h, w = int(x.shape[2]), int(x.shape[3])
    ry, rx = te.reduce_axis((0, kh), "ry"), te.reduce_axis((0, kw), "rx")
    s = te.compute((x.shape[0], x.shape[1], oh, ow),
                   lambda n, c, y, z: te.sum(xp[n, c, y * sh + ry, z * sw + rx], axis=[ry, rx]), name="avg_sum")

    def count(i, k, s_, lo, hi, size):  # as the IR's _divisor
        start = i * s_ - lo
        if a["count_include_pad"]:
            return te.min(start + k, size + hi) - start
        return te.min(start + k, size) - te.max(start, 0)

    def f(n, c, y, z):
        d = count(y, kh, sh, t, b, h) * count(z, kw, sw, l, r, w)
        return s[n, c, y, z] / d.astype(x.dtype)
    return [te.compute(s.shape, f, name="avg_pool")]


@lowering("global_avg_pool")
def _gap(layer, xs, ps, ctx):
    x = xs[0]
    n, c, h, w = (int(d) for d in x.shape)
    ry, rx = te.reduce_axis((0, h), "ry"), te.reduce_axis((0, w), "rx")
    s = te.compute((n, c, 1, 1), lambda i, j, y, z: te.sum(x[i, j, ry, rx], axis=[ry, rx]), name="gap_sum")
    return [te.compute(s.shape, lambda *i: s(*i) * _f(x, 1.0 / (h * w)), name="global_avg_pool")]


@lowering("global_max_pool")
def _gmp(layer, xs, ps, ctx):
    x = xs[0]
    n, c, h, w = (int(d) for d in x.shape)
    ry, rx = te.reduce_axis((0, h), "ry"), te.reduce_axis((0, w), "rx")
    return [te.compute((n, c, 1, 1), lambda i, j, y, z: te.max(x[i, j, ry, rx], axis=[ry, rx]),
                       name="global_max_pool")]


# ---- data movement ----------------------------------------------------------------------------

@lowering("concat")
def _concat(layer, xs, ps, ctx):
    ax = norm_axis(layer, layer.attrs["axis"], len(xs[0].shape))
    return [topi.concatenate(xs, ax)]


@lowering("slice")
def _slice(layer, xs, ps, ctx):
    x = xs[0]
    ax = norm_axis(layer, layer.attrs["axis"], len(x.shape))
    pts = [0, *layer.attrs["points"], int(x.shape[ax])]

    def piece(k, lo, hi):
        shape = list(x.shape)
        shape[ax] = hi - lo
        return te.compute(shape, lambda *i: x(*(i[:ax] + (i[ax] + lo,) + i[ax + 1:])), name=f"slice{k}")
    return [piece(k, lo, hi) for k, (lo, hi) in enumerate(zip(pts, pts[1:]))]


def _reshape_to(x, shape):
    return topi.reshape(x, shape)


@lowering("flatten")
def _flatten(layer, xs, ps, ctx):
    x = xs[0]
    ax = norm_axis(layer, layer.attrs["axis"], len(x.shape))
    shape = [int(d) for d in x.shape]
    return [_reshape_to(x, shape[:ax] + [int(np.prod(shape[ax:]))])]


@lowering("reshape")
def _reshape(layer, xs, ps, ctx):
    x = xs[0]
    return [_reshape_to(x, list(reshape_target(layer, tuple(int(d) for d in x.shape))))]


@lowering("identity")
def _identity(layer, xs, ps, ctx):
    return [te.compute(xs[0].shape, lambda *i: xs[0](*i), name="identity")]


LOWERINGS["dropout"] = LOWERINGS["identity"]
