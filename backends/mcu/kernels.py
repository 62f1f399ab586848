"""Float kernels for the Cortex-M4, written as TVM TE computes and scheduled with tvm.s_tir.

Each function returns a `Kernel` (its PrimFunc plus argument order); `codegen.generate_c`
turns them into plain C. The schedules only do what an MCU needs: the reduction of a
conv/dense/pool is computed at the innermost output loop (its accumulator becomes one stack
scalar, so no intermediate tensor and no workspace allocation) and its init is hoisted out of
the reduction loop; bias and ReLU are fused into the same loop nest. Everything here comes
from TVM's TE + C codegen; the only C cococ writes itself is the executor (model.c).
"""
from __future__ import annotations

import numpy as np

from cococ.backends.mcu.codegen import Kernel


def _te():
    import tvm
    from tvm import te
    return tvm, te


def _fuse_reduction(f, red: str = "acc", out: str = "y"):
    """compute_at the reduction block into the output block's innermost loop, hoist its init."""
    import tvm
    sch = tvm.s_tir.Schedule(f)
    rb, yb = sch.get_sblock(red), sch.get_sblock(out)
    n_out = len(sch.get_loops(yb))
    sch.compute_at(rb, sch.get_loops(yb)[-1])
    loops = sch.get_loops(rb)
    if len(loops) > n_out:
        sch.decompose_reduction(rb, loops[n_out])
    return sch.mod["main"]


def _act(tvm, v, act: str | None, dtype: str = "float32"):
    if act == "relu":
        return tvm.te.max(v, tvm.tirx.const(0, dtype))
    return v


def _padded(tvm, x, shape, n, c, ih, iw, fill=0.0):
    """x[n, c, ih, iw] with `fill` outside the input (implicit padding, no padded copy)."""
    _, _, h, w = shape
    cond = tvm.tirx.all(ih >= 0, ih < h, iw >= 0, iw < w)
    return tvm.tirx.if_then_else(cond, x[n, c, ih, iw], tvm.tirx.const(fill, x.dtype))


def conv2d(name, x_shape, w_shape, y_shape, attrs, bias: bool, act: str | None) -> Kernel:
    tvm, te = _te()
    x = te.placeholder(x_shape, name="x")
    w = te.placeholder(w_shape, name="w")
    b = te.placeholder((w_shape[0],), name="b") if bias else None
    o_n, cg, kh, kw = w_shape
    og = o_n // attrs["groups"]
    (sh, sw), (dh, dw), (t, l, pb, pr) = attrs["stride"], attrs["dilation"], attrs["pad"]
    rc, rh, rw = te.reduce_axis((0, cg), "rc"), te.reduce_axis((0, kh), "rh"), te.reduce_axis((0, kw), "rw")
    padded = any(attrs["pad"])

    def xv(n, c, ih, iw):
        return _padded(tvm, x, x_shape, n, c, ih, iw) if padded else x[n, c, ih, iw]

    acc = te.compute(y_shape, lambda n, o, i, j: te.sum(
        xv(n, (o // og) * cg + rc, i * sh - t + rh * dh, j * sw - l + rw * dw) * w[o, rc, rh, rw],
        axis=[rc, rh, rw]), name="acc")
    y = te.compute(y_shape, lambda n, o, i, j: _act(tvm, acc[n, o, i, j] + b[o] if bias else acc[n, o, i, j], act),
                   name="y")
    args = [x, w] + ([b] if bias else []) + [y]
    f = _fuse_reduction(te.create_prim_func(args))
    return Kernel(name, f, _argspec(args), meta={"doc": f"conv2d {list(x_shape)}->{list(y_shape)} k{kh}x{kw}"
                                                 + (" +bias" if bias else "") + (f" +{act}" if act else "")})


def dense(name, x_shape, w_shape, bias: bool, act: str | None) -> Kernel:
    tvm, te = _te()
    n_, k_ = x_shape
    o_ = w_shape[0]
    x = te.placeholder(x_shape, name="x")
    w = te.placeholder(w_shape, name="w")
    b = te.placeholder((o_,), name="b") if bias else None
    rk = te.reduce_axis((0, k_), "rk")
    acc = te.compute((n_, o_), lambda n, o: te.sum(x[n, rk] * w[o, rk], axis=rk), name="acc")
    y = te.compute((n_, o_), lambda n, o: _act(tvm, acc[n, o] + b[o] if bias else acc[n, o], act), name="y")
    args = [x, w] + ([b] if bias else []) + [y]
    f = _fuse_reduction(te.create_prim_func(args))
    return Kernel(name, f, _argspec(args), meta={"doc": f"dense {k_}->{o_}" + (" +bias" if bias else "")
                                                 + (f" +{act}" if act else "")})


def pool2d(name, op, x_shape, y_shape, attrs, act: str | None = None, dtype: str = "float32") -> Kernel:
    """max_pool / avg_pool (with the IR's divisor rules) and the global pools (max: f32, q15 or int8)."""
    tvm, te = _te()
    x = te.placeholder(x_shape, name="x", dtype=dtype)
    _, _, h, w = x_shape
    if op.startswith("global"):
        kh, kw, sh, sw, t, l, pb, pr = h, w, 1, 1, 0, 0, 0, 0
    else:
        (kh, kw), (sh, sw), (t, l, pb, pr) = attrs["kernel"], attrs["stride"], attrs["pad"]
    rh, rw = te.reduce_axis((0, kh), "rh"), te.reduce_axis((0, kw), "rw")
    is_max = "max" in op

    def win(n, c, i, j, fill):
        # padding by condition (TE `where=` on a reduction is lost by compute_at in TVM 0.27)
        return _padded(tvm, x, x_shape, n, c, i * sh - t + rh, j * sw - l + rw, fill)

    if is_max:
        lowest = {"float32": -3.4028234e38, "int8": -128}.get(dtype, -32768)
        acc = te.compute(y_shape, lambda n, c, i, j: te.max(win(n, c, i, j, lowest), axis=[rh, rw]), name="acc")
        y = te.compute(y_shape, lambda n, c, i, j: _act(tvm, acc[n, c, i, j], act, dtype), name="y")
    else:
        acc = te.compute(y_shape, lambda n, c, i, j: te.sum(win(n, c, i, j, 0.0), axis=[rh, rw]), name="acc")
        inc = attrs.get("count_include_pad", True)

        def count(o, k, s, lo, hi, size):
            start = o * s - lo
            if inc:
                return tvm.te.min(start + k, size + hi) - start
            return tvm.te.min(start + k, size) - tvm.te.max(start, 0)

        y = te.compute(y_shape, lambda n, c, i, j: _act(tvm, acc[n, c, i, j] / (
            count(i, kh, sh, t, pb, h) * count(j, kw, sw, l, pr, w)).astype("float32"), act), name="y")
    f = _fuse_reduction(te.create_prim_func([x, y]))
    return Kernel(name, f, _argspec([x, y]), meta={"doc": f"{op} {list(x_shape)}->{list(y_shape)}"})


def elementwise(name, op, size: int, attrs, n_in: int = 1, dtype: str = "float32") -> Kernel:
    """Unary activations over a flat buffer, and eltwise sum/prod/max of n_in inputs
    (relu also on q15: the scale is unchanged)."""
    tvm, te = _te()
    xs = [te.placeholder((size,), name="x" if i == 0 else f"x{i}", dtype=dtype) for i in range(n_in)]
    x = xs[0]
    f32 = lambda v: tvm.tirx.const(v, "float32")  # noqa: E731
    if op == "relu":
        fn = lambda i: te.max(x[i], tvm.tirx.const(0, dtype))  # noqa: E731
    elif op == "copy":
        fn = lambda i: x[i]  # noqa: E731
    elif op == "leaky_relu":
        fn = lambda i: tvm.tirx.Select(x[i] > f32(0), x[i], x[i] * f32(attrs["alpha"]))  # noqa: E731
    elif op == "sigmoid":
        fn = lambda i: f32(1) / (f32(1) + te.exp(-x[i]))  # noqa: E731
    elif op == "tanh":
        fn = lambda i: te.tanh(x[i])  # noqa: E731
    elif op == "clip":
        lo, hi = attrs.get("min"), attrs.get("max")

        def fn(i):
            v = x[i]
            v = te.max(v, f32(lo)) if lo is not None else v
            return te.min(v, f32(hi)) if hi is not None else v
    elif op == "power":
        def fn(i):
            v = f32(attrs["shift"]) + f32(attrs["scale"]) * x[i]
            return te.power(v, f32(attrs["power"])) if attrs["power"] != 1 else v
    elif op == "eltwise":
        mode, co = attrs["mode"], attrs.get("coeffs")

        def fn(i):
            if mode == "sum" and co is not None:
                v = xs[0][i] * f32(co[0])
                for c, xi in zip(co[1:], xs[1:]):
                    v = v + xi[i] * f32(c)
                return v
            v = xs[0][i]
            for xi in xs[1:]:
                v = v + xi[i] if mode == "sum" else v * xi[i] if mode == "prod" else te.max(v, xi[i])
            return v
    else:
        raise ValueError(op)
    y = te.compute((size,), fn, name="y")
    f = te.create_prim_func(xs + [y])
    return Kernel(name, f, _argspec(xs + [y]), meta={"doc": f"{op} x{size}"})


def channel_affine(name, outer: int, c: int, inner: int, kind: str = "affine") -> Kernel:
    """y = x * a[c] + b[c] (batchnorm/scale/bias, folded at build time) or prelu (slope a[c])."""
    tvm, te = _te()
    x = te.placeholder((outer, c, inner), name="x")
    a = te.placeholder((c,), name="a")
    args = [x, a]
    if kind == "affine":
        b = te.placeholder((c,), name="b")
        args.append(b)
        y = te.compute((outer, c, inner), lambda n, ch, i: x[n, ch, i] * a[ch] + b[ch], name="y")
    else:
        y = te.compute((outer, c, inner), lambda n, ch, i: tvm.tirx.Select(
            x[n, ch, i] > tvm.tirx.const(0, "float32"), x[n, ch, i], x[n, ch, i] * a[ch]), name="y")
    f = te.create_prim_func(args + [y])
    return Kernel(name, f, _argspec(args + [y]), meta={"doc": f"{kind} per channel [{outer},{c},{inner}]"})


def softmax(name, outer: int, d: int, inner: int) -> Kernel:
    tvm, te = _te()
    x = te.placeholder((outer, d, inner), name="x")
    k1, k2 = te.reduce_axis((0, d), "k1"), te.reduce_axis((0, d), "k2")
    mx = te.compute((outer, inner), lambda n, i: te.max(x[n, k1, i], axis=k1), name="mx")
    ex = te.compute((outer, d, inner), lambda n, c, i: te.exp(x[n, c, i] - mx[n, i]), name="ex")
    sm = te.compute((outer, inner), lambda n, i: te.sum(ex[n, k2, i], axis=k2), name="sm")
    y = te.compute((outer, d, inner), lambda n, c, i: ex[n, c, i] / sm[n, i], name="y")
    f = te.create_prim_func([x, y])
    sch = tvm.s_tir.Schedule(f)
    sch.compute_inline(sch.get_sblock("ex"))  # recompute exp instead of storing a full copy
    return Kernel(name, sch.mod["main"], _argspec([x, y]), meta={"doc": f"softmax [{outer},{d},{inner}]"})


def concat(name, outer: int, widths: list[int]) -> Kernel:
    """Join inputs viewed as [outer, width_i] along the second axis."""
    tvm, te = _te()
    xs = [te.placeholder((outer, wd), name="x" if i == 0 else f"x{i}") for i, wd in enumerate(widths)]
    total = sum(widths)

    def fn(n, k):
        offs = np.cumsum([0] + widths)
        v = xs[-1][n, k - int(offs[-2])]
        for i in range(len(xs) - 2, -1, -1):
            v = tvm.tirx.if_then_else(k < int(offs[i + 1]), xs[i][n, k - int(offs[i])], v)
        return v

    y = te.compute((outer, total), fn, name="y")
    f = te.create_prim_func(xs + [y])
    return Kernel(name, f, _argspec(xs + [y]), meta={"doc": f"concat {widths}"})


def _argspec(tensors) -> list[tuple[str, str, bool]]:
    *ins, out = tensors
    return [(t.op.name, str(t.dtype), False) for t in ins] + [(out.op.name, str(out.dtype), True)]
