"""The layer graph as one Relax module: a `call_tir` per fused group of layers, weights as constants.

Fusion is decided here, on the IR, where the facts are plain: a layer's output that has one
reader and is not a graph output can be computed inside that reader's kernel. A group starts at
any layer (typically conv2d or dense, the "anchor") and takes the chain of element-wise and
per-channel layers after it (bias, batchnorm, scale, relu, clip, ..., and eltwise whose other
operands come from outside), so conv + batchnorm + residual add + relu is one PrimFunc whose
epilogue the schedule computes while the accumulators are still in registers; a gate (SiLU's
x * sigmoid(x)) joins too, and a squeeze-excite product before a 1x1 conv is read through by it.
Aliases (identity, dropout: `Op.alias`) and views (flatten, reshape: `Op.view`, Relax reshapes)
have no kernel at all. Which layers may join a group is the op's `epilogue` property; each
layer's compute is its op's tvm rule (ir/ops/, called through backends/kernels/compute.py).

The module is target-independent (the weights' packing width aside, see LowerCtx): `to_relax`
returns it as is; `build_tvm` schedules each PrimFunc for its target.
"""
from __future__ import annotations

import re

import tvm
from tvm import relax

from cococ.backends.kernels.compute import LOWERINGS, LowerCtx, compute, consts
from cococ.backends.tvm.schedule_x86 import WIDE_K, row_tail, width_vector
from cococ.ir.core import CococError, Graph, Layer, Value
from cococ.ir.registry import rule_of

TVM_DTYPES = {"f32": "float32", "f16": "float16", "f64": "float64", "i64": "int64", "i32": "int32",
              "i16": "int16", "i8": "int8", "u8": "uint8", "bool": "bool"}


def fusion_groups(graph: Graph, lanes: int = 0) -> list[list[Layer]]:
    """Layers (no inputs, aliases or views) grouped into kernels, in graph order of their first
    layer: an anchor (any layer), its chain of epilogue layers (`_epilogue_step`) and, on x86
    (`lanes`: its schedules' f32 lanes; 0 elsewhere), a squeeze-excite product before a 1x1 conv
    (`_prologue_reader`)."""
    users = graph.users_map()
    outputs = {id(v) for v in graph.outputs}
    taken: set[int] = set()
    groups = []
    for layer in graph.layers:
        if layer.op == "input" or _no_kernel(layer) or id(layer) in taken:
            continue
        group = [layer]
        reader = _prologue_reader(layer, users, outputs, taken, lanes)
        if reader is not None:
            group.append(reader)
        taken.update(id(l) for l in group)
        while len(group[-1].outputs) == 1 and id(group[-1].outputs[0]) not in outputs:
            step = _epilogue_step(group[-1].outputs[0], users, outputs, taken, anchor(group), lanes)
            if not step:
                break
            group += step
            taken.update(id(l) for l in step)
        groups.append(group)
    return groups


def _epilogue_step(v: Value, users: dict, outputs: set, taken: set, first: Layer, lanes: int) -> list[Layer]:
    """The layers that join a group ending in `v`: its one reader when that is an epilogue layer
    reading `v` once; or a gate, v's two readers `a` (unary, epilogue) and `b` (an epilogue
    reading `v` and a's output once each, a's only reader): SiLU's x * sigmoid(x), fused so that
    the conv's output is written once instead of written, read twice and written again
    (EfficientNet-B0's 49 SiLUs were a fifth of its time as kernels of their own) - except after
    an x86 depthwise conv on narrow rows (`_narrow_depthwise`), where the kernel of its own,
    on full vectors, is faster."""
    rd = users.get(id(v), [])
    if any(id(r) in taken or not r.opdef.epilogue for r in rd):
        return []
    if len(rd) == 1:
        return rd if sum(x is v for x in rd[0].inputs) == 1 else []  # eltwise(x, x): x is read twice
    if len(rd) != 2 or _narrow_depthwise(first, lanes):
        return []
    for a, b in (rd, rd[::-1]):
        if len(a.inputs) == 1 and len(a.outputs) == 1 and id(a.outputs[0]) not in outputs:
            u = a.outputs[0]
            if ([id(r) for r in users.get(id(u), [])] == [id(b)] and sum(x is v for x in b.inputs) == 1
                    and sum(x is u for x in b.inputs) == 1):
                return [a, b]
    return []


def _prologue_reader(layer: Layer, users: dict, outputs: set, taken: set, lanes: int) -> Layer | None:
    """The 1x1 conv that computes `layer` (a broadcast product or sum: squeeze-excite's x * s with s
    per channel) inside its own kernel, reading x through it, if `layer`'s one reader is such a
    conv (dense weight, one group: the direct kernel, not Winograd's or a sparse one) and x86's
    schedule loads its input as vectors along the row (`_row_tile`: not the channel-vector tile).
    There the product costs one multiply per vector of input loaded, against a kernel of its own
    that reads and writes the whole of x (EfficientNet-B0's 16 SE products: 0.8-0.9x at 28x28 to
    112x112, one thread); the channel-vector tile broadcasts its input element by element, and a
    multiply on each was 1.2-1.8x slower (14x14 and 7x7 maps)."""
    if (layer.op != "broadcast_eltwise" or len(layer.outputs) != 1 or id(layer.outputs[0]) in outputs
            or lanes <= 1):
        return None
    rd = users.get(id(layer.outputs[0]), [])
    if len(rd) != 1 or id(rd[0]) in taken:
        return None
    conv, w = rd[0], rd[0].params.get("weight")
    if (conv.op != "conv2d" or conv.inputs[0] is not layer.outputs[0] or w is None or w.format != "dense"
            or list(conv.attrs["kernel"]) != [1, 1] or conv.attrs["groups"] != 1 or not _row_tile(conv, lanes)):
        return None
    return conv


def _narrow_depthwise(layer: Layer, lanes: int) -> bool:
    """An x86 depthwise (unpacked) conv whose tile vectors are its output rows, narrower than half
    the lanes (7 wide: LLVM splits each 7-lane vector in 4 + 2 + 1; EfficientNet's 5x5 depthwise on
    7x7 was up to 1.16x slower with its SiLU fused), on a map bigger than one vector. (A packed
    conv's channel-vector tile, whose stores are scalar, computes its epilogue as vectors along
    the packed channels: its SiLU fused was 0.71-0.87x the separate kernels, 1x1 convs on 7x7.)"""
    if lanes <= 1 or layer.op != "conv2d" or "weight" not in layer.params:
        return False
    g, o = layer.attrs["groups"], layer.attrs["out_channels"]
    _, _, oh, ow = layer.outputs[0].type.shape
    return not (g == 1 or (o // g) % lanes == 0) and oh * ow > lanes and ow < lanes // 2


def _row_tile(layer: Layer, lanes: int) -> bool:
    """Whether x86's conv schedule (schedule_x86.py) loads `layer`'s input as vectors along its
    rows: a packed conv taking the row-vector tile, a flat row of positions or the row tail; not
    the channel-vector tile, which broadcasts its input element by element."""
    a, c = layer.attrs, layer.inputs[0].type.shape[1]
    ow = layer.outputs[0].type.shape[3]
    k, stride = (c // a["groups"]) * a["kernel"][0] * a["kernel"][1], a["stride"][1]
    return bool(flat_conv(layer, lanes) or width_vector(ow, k, stride, lanes) or row_tail(ow, k, stride, lanes))


def anchor(group: list[Layer]) -> Layer:
    """The group's main layer: its first, or the conv after a prologue (`_prologue_reader`)."""
    if len(group) > 1 and group[1].op == "conv2d" and group[1].inputs[0] is group[0].outputs[0]:
        return group[1]  # a conv joins a group only as a prologue's reader (it is no epilogue)
    return group[0]


def _no_kernel(layer: Layer) -> bool:
    return layer.opdef.alias or layer.opdef.view


def _name(layer: Layer) -> str:
    return re.sub(r"\W", "_", f"{layer.op}_{layer.name}")


def lower_graph(graph: Graph, ctx: LowerCtx | None = None) -> tvm.IRModule:
    """Relax module `main(inputs...) -> output | (outputs...)` of the graph, weights bound as constants."""
    ctx = ctx if ctx is not None else LowerCtx()
    for layer in graph.layers:
        if layer.op != "input" and not _no_kernel(layer) and rule_of(layer.op, "tvm") is None:
            raise layer.error(f"op '{layer.op}' has no TVM lowering (known: {', '.join(sorted(LOWERINGS))})")
        for k, p in layer.params.items():
            if not p.has_data:
                raise layer.error(f"param '{k}' has no data; load weights before building")
    groups = fusion_groups(graph, ctx.oc_block)
    last = {id(g[-1]): g for g in groups}
    bb = relax.BlockBuilder()
    env: dict[int, relax.Expr] = {}
    params = [relax.Var(_sanitize(v.name), relax.TensorType(list(v.type.shape), TVM_DTYPES[v.type.dtype]))
              for v in graph.inputs]
    with bb.function("main", params):
        with bb.dataflow():
            for v, p in zip(graph.inputs, params):
                env[id(v)] = p
            for layer in graph.layers:
                if layer.opdef.alias:
                    env[id(layer.outputs[0])] = env[id(layer.inputs[0])]
                elif layer.opdef.view:
                    shape = layer.outputs[0].type.shape
                    env[id(layer.outputs[0])] = bb.emit(relax.op.reshape(env[id(layer.inputs[0])], shape))
                elif id(layer) in last:
                    emit_group(bb, last[id(layer)], env, ctx)
            outs = [env[id(v)] for v in graph.outputs]
            out = bb.emit_output(outs[0] if len(outs) == 1 else relax.Tuple(outs))
        bb.emit_func_output(out)
    return bb.get()


def _sanitize(name: str) -> str:
    return re.sub(r"\W", "_", name)


def emit_group(bb: relax.BlockBuilder, group: list[Layer], env: dict[int, relax.Expr], ctx: LowerCtx) -> None:
    if anchor(group) is not group[0]:  # a prologue: only the direct kernel reads through it
        return emit_dense_group(bb, group, env, ctx)
    if ctx.sparse:
        from cococ.backends.tvm import sparse  # local: sparse.py builds on this module, a cycle at top
        c = sparse.choice(group[0], group, ctx)  # measured: both forms of this group timed (sparse.py)
        if c is not None and c.kernel != "dense":
            return sparse.emit(bb, group, env, ctx, LOWERINGS, _name(group[0]))
    if ctx.winograd not in ("", "off"):
        from cococ.backends.tvm import winograd_x86  # local, as sparse: it builds on this module
        m = winograd_x86.choose(group, ctx)  # 0: the direct conv (winograd_x86.py: table or measured)
        if m:
            ctx.winograd_layers.append({"layer": group[0].name, "kernel": f"F({m},3)"})
            return winograd_x86.emit(bb, group, env, ctx, m, _name(group[0]))
    emit_dense_group(bb, group, env, ctx)


def group_inputs(group: list[Layer]) -> list[Value]:
    """The values a fused group reads from outside itself, in first-use order."""
    inside = {id(v) for l in group for v in l.outputs}
    ext: list[Value] = []
    for l in group:
        for v in l.inputs:
            if id(v) not in inside and all(v is not e for e in ext):
                ext.append(v)
    return ext


def flat_positions(group: list[Layer], ext: list[Value], ob: int) -> tuple[int, int] | None:
    """(H, W) when the group's kernel is better computed on its H x W positions as one row: a 1x1,
    stride-1, unpadded conv reading few channels (x86's row-vector tile: a vector along the output
    row) on a map whose width is not a multiple of the `ob` lanes while H*W is. On a 28- or
    56-wide row the vectors are 14 wide (2 of 16 lanes idle, and LLVM splits each 14-wide load in
    8 + 4 + 2); the same NCHW memory viewed as [N, C, 1, H*W] fills every lane (MobileNet v2's
    and SqueezeNet's 28x28 / 56x56 1x1 convs: 8-15% faster, one thread). The epilogue layers are
    element-wise or per-channel (axis 1), so every operand of the group's spatial shape is read
    through the same view (a squeeze-excite gate's [N, C, 1, 1] factor as it is); None where
    anything else is read (cuda, arm-m4: `ob` = 1)."""
    conv = anchor(group)
    hw = flat_conv(conv, ob) if len(group[-1].outputs) == 1 else None
    if hw is None or any(len(v.type.shape) != 4 or tuple(v.type.shape[2:]) not in (hw, (1, 1)) for v in ext):
        return None
    return hw


def flat_conv(conv: Layer, ob: int) -> tuple[int, int] | None:
    """(H, W) when `conv` itself qualifies for `flat_positions`' one row of positions (a 1x1,
    stride-1, unpadded, ungrouped conv of fewer than WIDE_K input channels on a map whose width
    is not a multiple of the `ob` lanes while H*W is); also what `_row_tile` asks of a conv."""
    if conv.op != "conv2d" or ob <= 1:
        return None
    a = conv.attrs
    n, c, h, w = conv.inputs[0].type.shape
    if (list(a["kernel"]) != [1, 1] or list(a["stride"]) != [1, 1] or any(a["pad"]) or a["groups"] != 1
            or list(a["dilation"]) != [1, 1] or c >= WIDE_K or h == 1 or w % ob == 0 or (h * w) % ob):
        return None
    return h, w


def emit_dense_group(bb: relax.BlockBuilder, group: list[Layer], env: dict[int, relax.Expr], ctx: LowerCtx) -> None:
    """The group as one TE kernel (every weight expanded to dense)."""
    ext = group_inputs(group)
    cs = [{k: relax.const(a) for k, a in consts(l, ctx).items()} for l in group]
    flat = flat_positions(group, ext, ctx.oc_block)
    args = [env[id(v)] for v in ext]
    if flat:
        args = [a if tuple(v.type.shape[2:]) == (1, 1) else  # a per-channel gate (prologue) as it is
                bb.emit(relax.op.reshape(a, (v.type.shape[0], v.type.shape[1], 1, flat[0] * flat[1])))
                for a, v in zip(args, ext)]

    def fn(ins, pss):
        tenv = {id(v): t for v, t in zip(ext, ins)}
        for l, ps in zip(group, pss):
            outs = compute(l, [tenv[id(v)] for v in l.inputs], ps, ctx)
            for v, t in zip(l.outputs, outs):
                tenv[id(v)] = t
        res = [tenv[id(v)] for v in group[-1].outputs]
        return res[0] if len(res) == 1 else res

    try:
        call = bb.emit_te(fn, args, cs, primfunc_name_hint=_name(group[0]))
    except CococError:
        raise
    except Exception as e:  # a TVM error while lowering: name the layer
        raise group[0].error(f"lowering to TVM failed: {type(e).__name__}: {e}") from e
    outs = group[-1].outputs
    if flat:
        env[id(outs[0])] = bb.emit(relax.op.reshape(call, outs[0].type.shape))
    elif len(outs) == 1:
        env[id(outs[0])] = call
    else:
        for i, v in enumerate(outs):
            env[id(v)] = bb.emit(relax.TupleGetItem(call, i))

