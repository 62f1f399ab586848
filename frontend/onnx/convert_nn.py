"""Converters for weighted and windowed ops: Conv, Gemm, MatMul, BatchNormalization, pools (and the
ReduceMean/ReduceMax over H, W that are global pools), Resize/Upsample, Pad, LRN.

The IR is 2-D NCHW only, so 1-D and 3-D convs and pools are reported as unsupported rather
than reshaped. A zero `Pad` is not a layer: it is held back and folded into the `pad`
attribute of the conv or average pool that reads it, which is exact; anything else a Pad
feeds is an error (see PendingPad).
"""
from __future__ import annotations

import numpy as np

from cococ.frontend.onnx.context import Ctx, PendingPad, as_ints, converter


def _spatial2d(ctx: Ctx, x: str, what: str) -> tuple[int, ...]:
    shape = ctx.shape(x)
    if len(shape) != 4:
        raise ctx.unsupported(f"{what} on a rank-{len(shape)} input {list(shape)} is not supported "
                              "(cococ's IR is 2-D NCHW only)")
    return shape


def _pads(ctx: Ctx, a: dict, in_hw, kernel, stride, dilation) -> list[int]:
    """ONNX pads / auto_pad as the IR's [top, left, bottom, right]."""
    auto = a.get("auto_pad", "NOTSET")
    if auto in ("NOTSET", ""):
        p = as_ints(a.get("pads", [0, 0, 0, 0]))
        if len(p) != 4:
            raise ctx.unsupported(f"pads {p} must have 4 entries for a 2-D window")
        return [p[0], p[1], p[2], p[3]]
    if auto == "VALID":
        return [0, 0, 0, 0]
    if auto not in ("SAME_UPPER", "SAME_LOWER"):
        raise ctx.unsupported(f"auto_pad '{auto}' is not one of NOTSET, SAME_UPPER, SAME_LOWER, VALID")
    lo, hi = [], []
    for size, k, s, d in zip(in_hw, kernel, stride, dilation):
        total = max(0, (-(-size // s) - 1) * s + (k - 1) * d + 1 - size)
        small, big = total // 2, total - total // 2
        lo.append(big if auto == "SAME_LOWER" else small)
        hi.append(small if auto == "SAME_LOWER" else big)
    return [lo[0], lo[1], hi[0], hi[1]]


def _window(ctx: Ctx, a: dict, kernel_default=None) -> tuple[list[int], list[int], list[int]]:
    kernel = as_ints(a["kernel_shape"]) if "kernel_shape" in a else kernel_default
    if kernel is None or len(kernel) != 2:
        raise ctx.unsupported(f"kernel_shape {kernel} is not 2-D")
    stride = as_ints(a.get("strides", [1, 1]))
    dilation = as_ints(a.get("dilations", [1, 1]))
    if len(stride) != 2 or len(dilation) != 2:
        raise ctx.unsupported(f"strides {stride} / dilations {dilation} are not 2-D")
    return kernel, stride, dilation


def _in_hw(ctx: Ctx, x: str) -> tuple[int, int]:
    """Spatial size of what the window op sees, a pending Pad included (for auto_pad)."""
    if x in ctx.pads:
        t, l, b, r = ctx.pads[x].pads
        h, w = ctx.shape(ctx.pads[x].source)[2:]
        return h + t + b, w + l + r
    return ctx.shape(x)[2:]


def _folded_input(ctx: Ctx, name: str, pads: list[int], allow: bool, why: str):
    """The activation feeding a window op, with any pending zero Pad added to `pads`."""
    pend = ctx.pads.get(name)
    if pend is None:
        return ctx.value(name), pads
    if not allow:
        raise ctx.unsupported(f"folding the zero Pad '{pend.node}' into this node is not supported: {why}")
    return ctx.value(pend.source), [p + q for p, q in zip(pads, pend.pads)]


@converter("Conv")
def conv(ctx: Ctx, node):
    a = ctx.attrs(node)
    x = node.input[0]
    src = ctx.pads[x].source if x in ctx.pads else x
    _spatial2d(ctx, src, "Conv")
    wt = ctx.const(ctx.input(node, 1), "the Conv weight")
    if wt.ndim != 4:
        raise ctx.unsupported(f"Conv weight of shape {list(wt.shape)} is not 2-D (OIHW)")
    kernel, stride, dilation = _window(ctx, a, list(wt.shape[2:]))
    pads = _pads(ctx, a, _in_hw(ctx, x), kernel, stride, dilation)
    xv, pads = _folded_input(ctx, x, pads, True, "")
    params = {"weight": wt}
    b = ctx.optional_const(node, 2, "the Conv bias")
    if b is not None:
        params["bias"] = b.reshape(-1)
    ctx.emit("conv2d", [xv], {"out_channels": int(wt.shape[0]), "kernel": kernel, "stride": stride,
                              "pad": pads, "dilation": dilation, "groups": int(a.get("group", 1))},
             params, out=node.output[0])


@converter("ConvTranspose")
def conv_transpose(ctx: Ctx, node):
    raise ctx.unsupported("ConvTranspose (deconvolution) is not supported: cococ's IR has no transposed "
                          "convolution")


@converter("Gemm")
def gemm(ctx: Ctx, node):
    a = ctx.attrs(node)
    x = ctx.value(node.input[0])
    if a.get("transA", 0):
        raise ctx.unsupported("Gemm with transA=1 is not supported (the activation must be [N, K])")
    if x.type.rank != 2:
        raise ctx.unsupported(f"Gemm of a rank-{x.type.rank} input is not supported, got {list(x.type.shape)}")
    b = np.asarray(ctx.const(node.input[1], "Gemm's B"), dtype=np.float32)
    if b.ndim != 2:
        raise ctx.unsupported(f"Gemm B must be a matrix, got shape {list(b.shape)}")
    weight = (b if a.get("transB", 0) else b.T) * np.float32(a.get("alpha", 1.0))
    params = {"weight": weight}
    c_name = ctx.input(node, 2)
    beta = float(a.get("beta", 1.0))
    attrs = {"out_features": int(weight.shape[0])}
    if c_name and beta != 0 and not ctx.is_const(c_name):  # + beta * an activation: dense, then eltwise
        cv = ctx.value(c_name)
        y = ctx.emit("dense", [x], attrs, params, suffix="matmul")
        ctx.emit("eltwise", [y, cv], {"mode": "sum"} if beta == 1 else {"mode": "sum", "coeffs": [1.0, beta]},
                 out=node.output[0])
        return
    if c_name and beta != 0:
        params["bias"] = _feature_vector(ctx, ctx.const(c_name), weight.shape[0], "Gemm's C") * np.float32(beta)
    ctx.emit("dense", [x], attrs, params, out=node.output[0])


def _feature_vector(ctx: Ctx, c, n: int, what: str) -> np.ndarray:
    c = np.asarray(c, dtype=np.float32)
    if c.size == 1:
        return np.full(n, c.reshape(-1)[0], dtype=np.float32)
    if c.shape[-1:] == (n,) and c.size == n:
        return c.reshape(n)
    raise ctx.unsupported(f"{what} of shape {list(c.shape)} is not a bias over {n} features, which is not supported")


@converter("MatMul")
def matmul(ctx: Ctx, node):
    x = ctx.value(node.input[0])
    b = np.asarray(ctx.const(node.input[1], "MatMul's second operand (the weight)"), dtype=np.float32)
    if x.type.rank != 2 or b.ndim != 2:
        raise ctx.unsupported(f"MatMul of {list(x.type.shape)} by {list(b.shape)} is not supported: only [N, K] x [K, M] "
                              "with a constant [K, M] maps to dense")
    ctx.emit("dense", [x], {"out_features": int(b.shape[1])}, {"weight": b.T}, out=node.output[0])


@converter("BatchNormalization")
def batchnorm(ctx: Ctx, node):
    a = ctx.attrs(node)
    if a.get("training_mode", 0) or (ctx.opset < 7 and a.get("is_test", 1) == 0):
        raise ctx.unsupported("BatchNormalization in training mode is not supported (inference only)")
    if a.get("spatial", 1) != 1:
        raise ctx.unsupported("BatchNormalization with spatial=0 is not supported")
    if any(o for o in node.output[1:]):
        raise ctx.unsupported("BatchNormalization's training outputs (running mean/var) are not supported")
    x = ctx.value(node.input[0])
    names = ("scale", "bias", "mean", "var")
    p = {k: np.asarray(ctx.const(ctx.input(node, i + 1), f"BatchNormalization {k}"), dtype=np.float32).reshape(-1)
         for i, k in enumerate(names)}
    ctx.emit("batchnorm", [x], {"eps": float(a.get("epsilon", 1e-5))}, p, out=node.output[0])


@converter("MaxPool", "AveragePool")
def pool(ctx: Ctx, node):
    a = ctx.attrs(node)
    x = node.input[0]
    src = ctx.pads[x].source if x in ctx.pads else x
    _spatial2d(ctx, src, node.op_type)
    kernel, stride, dilation = _window(ctx, a)
    if dilation != [1, 1]:
        raise ctx.unsupported(f"{node.op_type} with dilations {dilation} is not supported")
    if any(o for o in node.output[1:]):
        raise ctx.unsupported("MaxPool's Indices output is not supported")
    pads = _pads(ctx, a, _in_hw(ctx, x), kernel, stride, dilation)
    ceil = bool(a.get("ceil_mode", 0))
    if node.op_type == "MaxPool":
        xv, pads = _folded_input(ctx, x, pads, False, "zero padding can win a max where -inf padding cannot")
        ctx.emit("max_pool", [xv], {"kernel": kernel, "stride": stride, "pad": pads, "ceil_mode": ceil},
                 out=node.output[0])
        return
    include = bool(a.get("count_include_pad", 0))
    own_pad = any(pads)
    xv, pads = _folded_input(ctx, x, pads, not ceil and (include or not own_pad),
                             "the pool has its own pads with count_include_pad=0, or ceil_mode")
    if x in ctx.pads:
        include = True  # the folded zeros were real elements to ONNX: count them
    if not any(pads):
        include = True  # no padding: both settings divide by the full window; keep Caffe's default
    ctx.emit("avg_pool", [xv], {"kernel": kernel, "stride": stride, "pad": pads, "ceil_mode": ceil,
                                "count_include_pad": include}, out=node.output[0])


@converter("GlobalAveragePool", "GlobalMaxPool")
def global_pool(ctx: Ctx, node):
    _spatial2d(ctx, node.input[0], node.op_type)
    op = "global_avg_pool" if node.op_type == "GlobalAveragePool" else "global_max_pool"
    ctx.emit(op, [ctx.value(node.input[0])], out=node.output[0])


@converter("ReduceMean", "ReduceMax")
def reduce_hw(ctx: Ctx, node):
    """A mean or max over H and W of an NCHW activation (torch's x.mean([2, 3]), keepdim either way)
    is a global pool, then a reshape to [N, C] without keepdims. Axes are an attribute before
    opset 18 and an input from it; other axes are not supported (the IR has no general reduction)."""
    a = ctx.attrs(node)
    x = node.input[0]
    shape = ctx.shape(x)
    axes = ctx.optional_const(node, 1, f"{node.op_type}'s axes") if ctx.opset >= 18 else a.get("axes")
    r = len(shape)
    axes = sorted({int(v) % r for v in as_ints(axes)} if axes is not None and len(as_ints(axes)) else range(r))
    if r != 4 or axes != [2, 3]:
        raise ctx.unsupported(f"{node.op_type} over axes {axes} of {list(shape)} is not supported (only over H and W "
                              "of an NCHW tensor, as a global pool)")
    op = "global_avg_pool" if node.op_type == "ReduceMean" else "global_max_pool"
    if a.get("keepdims", 1):
        ctx.emit(op, [ctx.value(x)], out=node.output[0])
        return
    y = ctx.emit(op, [ctx.value(x)], suffix="pool")
    ctx.emit("reshape", [y], {"shape": [shape[0], shape[1]]}, out=node.output[0])


@converter("Resize", "Upsample")
def resize(ctx: Ctx, node):
    """Nearest and (bi)linear resampling of H and W. Upsample and opset-10 Resize map coordinates
    asymmetrically and round nearest down (up when shrinking), as onnxruntime does for them; from
    opset 11 the node's coordinate_transformation_mode and nearest_mode apply."""
    a = ctx.attrs(node)
    x = node.input[0]
    shape = _spatial2d(ctx, x, node.op_type)
    mode = a.get("mode", "nearest")
    if mode not in ("nearest", "linear", "bilinear"):
        raise ctx.unsupported(f"{node.op_type} mode '{mode}' is not supported (nearest and linear only)")
    legacy = node.op_type == "Upsample" or ctx.opset < 11
    if node.op_type == "Upsample" and ctx.opset < 9:
        scales, sizes = a.get("scales"), None
    elif legacy:
        scales, sizes = ctx.const(ctx.input(node, 1), f"{node.op_type}'s scales"), None
    else:
        scales, sizes = (ctx.optional_const(node, i, f"Resize's {k}") for i, k in ((2, "scales"), (3, "sizes")))
    scales = None if scales is None or not np.size(scales) else [float(v) for v in np.asarray(scales).reshape(-1)]
    sizes = None if sizes is None or not np.size(sizes) else as_ints(sizes)
    axes = [v % 4 for v in as_ints(a["axes"])] if "axes" in a else [0, 1, 2, 3]

    def full(vs, fill):  # per-axis values for all four dims (opset 18's axes name some of them)
        if len(vs) != len(axes):
            raise ctx.unsupported(f"{node.op_type} scales/sizes {vs} do not match its axes {axes}")
        given = dict(zip(axes, vs))
        return [given.get(i, fill[i]) for i in range(4)]
    coord = "asymmetric" if legacy else a.get("coordinate_transformation_mode", "half_pixel")
    bad = [f"{k}={a[k]!r}" for k, ok in (("keep_aspect_ratio_policy", "stretch"), ("antialias", 0))
           if a.get(k, ok) != ok]
    if coord not in ("half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric", "tf_half_pixel_for_nn") or bad:
        raise ctx.unsupported(f"{node.op_type} with coordinate_transformation_mode '{coord}' {' '.join(bad)} is not "
                              "supported")
    if sizes is not None:
        out, scale_attr = full(sizes, shape), None
    elif scales is not None:
        sc = full(scales, [1.0] * 4)
        out = [int(np.float32(sc[i]) * np.float32(shape[i])) for i in range(4)]
        scale_attr = sc[2:]
    else:
        raise ctx.unsupported(f"{node.op_type} needs scales or sizes")
    if out[:2] != list(shape[:2]):
        raise ctx.unsupported(f"{node.op_type} to {out} from {list(shape)} resizes N or C, which is not supported")
    if legacy:
        ratio = [o / i for o, i in zip(out[2:], shape[2:])] if scale_attr is None else scale_attr
        if min(ratio) < 1 <= max(ratio):
            raise ctx.unsupported(f"{node.op_type} enlarging one axis and shrinking the other is not supported")
        nearest = "floor" if min(ratio) >= 1 else "ceil"
    else:
        nearest = a.get("nearest_mode", "round_prefer_floor")
    attrs = {"size": out[2:], "mode": "nearest" if mode == "nearest" else "linear", "coord": coord, "nearest": nearest}
    if scale_attr is not None:
        attrs["scales"] = scale_attr
    ctx.emit("resize", [ctx.value(x)], attrs, out=node.output[0])


@converter("Pad")
def pad(ctx: Ctx, node):
    a = ctx.attrs(node)
    mode = a.get("mode", "constant")
    if mode != "constant":
        raise ctx.unsupported(f"Pad mode '{mode}' is not supported (only zero padding folded into a conv/pool)")
    if ctx.opset < 11:
        pads = as_ints(a.get("pads", a.get("paddings", [])))
        value = float(a.get("value", 0.0))
    else:
        pads = as_ints(ctx.const(node.input[1], "Pad's pads"))
        cv = ctx.optional_const(node, 2, "Pad's constant_value")
        value = 0.0 if cv is None or cv.size == 0 else float(np.asarray(cv).reshape(-1)[0])
        axes = ctx.optional_const(node, 3, "Pad's axes")
        if axes is not None:
            r = len(ctx.shape(node.input[0]))
            full = [0] * (2 * r)
            ax = [int(v) % r for v in np.asarray(axes).reshape(-1)]
            for j, k in enumerate(ax):
                full[k], full[k + r] = pads[j], pads[j + len(ax)]
            pads = full
    x = node.input[0]
    ctx.value(x)  # must be an activation
    if value != 0.0:
        raise ctx.unsupported(f"Pad with constant value {value} is not supported (only zero padding folds)")
    r = len(ctx.shape(x))
    if r != 4 or len(pads) != 8:
        raise ctx.unsupported(f"Pad of a rank-{r} input with pads {pads}: only 2-D (NCHW) padding folds, other padding is not supported")
    if any(pads[i] for i in (0, 1, 4, 5)) or min(pads) < 0:
        raise ctx.unsupported(f"Pad {pads}: not supported: only non-negative padding of H and W folds into a conv/pool")
    ctx.pads[node.output[0]] = PendingPad(x, [pads[2], pads[3], pads[6], pads[7]], ctx.node_name)


@converter("LRN")
def lrn(ctx: Ctx, node):
    a = ctx.attrs(node)
    x = ctx.value(node.input[0])
    if x.type.rank != 4:
        raise ctx.unsupported(f"LRN on a rank-{x.type.rank} input is not supported (NCHW only)")
    ctx.emit("lrn", [x], {"size": int(a["size"]), "alpha": float(a.get("alpha", 1e-4)),
                          "beta": float(a.get("beta", 0.75)), "k": float(a.get("bias", 1.0)),
                          "region": "across"}, out=node.output[0])
