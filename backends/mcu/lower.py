"""Graph -> Program: the ordered kernel calls of the AOT executor, over tensors and weights.

This is where layers become calls: conv/dense absorb a following ReLU (the kernel applies it
in its output loop), views and aliases (`Op.view`, `Op.alias`: flatten, reshape, identity,
dropout) share their input's storage, every other float layer is its op's TVM rule (the x86
compute, M4-scheduled: kernels.py) with the constants its tvm-params rule prepares (batchnorm
folded to one multiply-add per channel), and in q15 (int8) mode every layer with an integer
kernel (`fixed.integer_reason`: conv/dense, the order-preserving `Op.keeps_scale` ones, and
depthwise conv, add, pools, clip, softmax, hard activations, concat: qlower.py) runs on int16
(int8) tensors (int8 builds: int16 where i8wide.py says so, an average pool's window sums for a
dense and a first conv's float input), a trailing ReLU/Clip fused as its clamp, with
quantize/dequantize calls inserted where a float layer meets a fixed-point one (the other layers stay float32, and
`Program.warnings` names them, one warning per op and reason). Kernels with the same
configuration are generated once and called from every layer that needs them.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cococ.backends.mcu import kernels as K
from cococ.backends.mcu.codegen import Kernel
from cococ.backends.mcu.fixed import bounds, by_lower_integer, fuses_clamp, integer_reason
from cococ.backends.kernels.compute import consts
from cococ.ir.core import CococError, Graph, Layer
from cococ.ir.ops.activation import Relu
from cococ.ir.ops.tensor import Eltwise
from cococ.ir.registry import Op, rule_of

NP_OF = {"float32": np.float32, "int16": np.int16, "int32": np.int32, "int8": np.int8}
QDTYPE = {"q15": "int16", "int8": "int8"}  # --quantize -> the tensors' C type


@dataclass(eq=False)
class Tensor:
    name: str
    dtype: str                              # "float32" | "int16" | "int8"
    shape: tuple[int, ...]
    scale: float | None = None              # q15 / int8: real = int * scale
    home: str = "arena"                     # "arena" | "in" | "out"
    io_offset: int = 0                      # element offset in the in/out buffer
    root: "Tensor | None" = None            # views share their root's storage

    @property
    def storage(self) -> "Tensor":
        return self.root.storage if self.root is not None else self

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return (self.size * np.dtype(NP_OF[self.dtype]).itemsize + 3) // 4 * 4  # word-padded (SMLAD reads pairs)


@dataclass(eq=False)
class Weight:
    symbol: str
    data: np.ndarray

    @property
    def dtype(self) -> str:
        return {np.dtype(np.float32): "float32", np.dtype(np.int16): "int16", np.dtype(np.int32): "int32",
                np.dtype(np.int8): "int8"}[self.data.dtype]


@dataclass(eq=False)
class Step:
    kernel: Kernel
    args: list                               # Tensor | Weight, in kernel.args order
    layers: list[str]
    op: str
    macs: int = 0
    format: str = "dense"                    # the weight kernel: dense, csr or simd_group (sparse.py)

    @property
    def outputs(self) -> list[Tensor]:
        return [a for a, spec in zip(self.args, self.kernel.args) if spec[2]]

    @property
    def inputs(self) -> list[Tensor]:
        return [a for a, spec in zip(self.args, self.kernel.args) if not spec[2] and isinstance(a, Tensor)]


@dataclass
class Program:
    inputs: list[Tensor]
    outputs: list[Tensor]
    steps: list[Step] = field(default_factory=list)
    kernels: dict[tuple, Kernel] = field(default_factory=dict)
    quant: str | None = None
    choices: list[dict] = field(default_factory=list)   # per compressed weight: kernel chosen and why
    warnings: list[str] = field(default_factory=list)

    @property
    def weights(self) -> list[Weight]:
        return [a for s in self.steps for a in s.args if isinstance(a, Weight)]


def lower(graph: Graph, quant: str | None = None, float_out: bool = False) -> Program:
    """Turn a verified, shape-inferred graph into a Program (quant: None, "q15" or "int8").
    `float_out` (int8, float outputs: not io=int8): the last dense and a softmax after it end
    the program in float32 (i8wide.float_tail) instead of an int8 result dequantized."""
    return _Lowering(graph, quant, float_out and quant == "int8").run()


def _cname(s: str) -> str:
    out = "".join(c if c.isalnum() else "_" for c in s)
    return out if out and not out[0].isdigit() else "v_" + out


class _Lowering:
    def __init__(self, graph: Graph, quant: str | None, float_out: bool = False):
        self.g, self.quant, self.float_out = graph, quant, float_out
        self.tail: set[int] = set()  # float_out: the layers that end the program in float32
        self.wide: dict[int, str] = {}  # int8: layers with an int16 input or output (i8wide.py)
        self.scales: dict[str, float] = {}
        if quant:
            q = graph.meta.get("quant") or {}
            if q.get("dtype") != quant:
                raise CococError(f"{quant} build needs a graph quantized for it: run the quantize pass "
                                 f"(-p 'quantize{{dtype={quant}}}' or --quantize {quant})")
            self.scales = {k: float(v) for k, v in q["scales"].items()}
        ins, off = [], 0
        for v in graph.inputs:
            ins.append(Tensor(_cname(v.name), "float32", v.type.shape, home="in", io_offset=off))
            off += v.type.size
        self.prog = Program(ins, [], quant=quant)
        self.in_float: dict[tuple[str, str], list[str]] = {}  # q15/int8: (op, why) -> its layers in float
        self.cur = {id(v): t for v, t in zip(graph.inputs, ins)}
        self.converted: dict[tuple[int, str], Tensor] = {}  # (id(tensor), dtype) -> its converted copy

    # -- helpers ---------------------------------------------------------------------------
    def kernel(self, key: tuple, build) -> Kernel:
        k = self.prog.kernels.get(key)
        if k is None:
            k = build(f"k{len(self.prog.kernels)}_{key[0]}")
            self.prog.kernels[key] = k
        return k

    def weight(self, layer: Layer, name: str, data: np.ndarray) -> Weight:
        return Weight(f"w_{_cname(layer.name)}_{name}", np.ascontiguousarray(data))

    def scale_of(self, vname: str) -> float:
        if vname not in self.scales:
            raise CococError(f"no {self.quant} scale for value %{vname}: re-run the quantize pass on this graph")
        return self.scales[vname]

    def as_dtype(self, t: Tensor, dtype: str, vname: str) -> Tensor:
        """t converted to dtype (inserting a quantize/dequantize call), or t itself."""
        if t.dtype == dtype:
            return t
        if (id(t), dtype) in self.converted:  # read twice (a residual, a concat): converted once
            return self.converted[id(t), dtype]
        from cococ.backends.mcu import i8ops as I, qkernels as Q  # local: they build on this module, a cycle at top
        if dtype != "float32":
            s = t.scale or self.scale_of(vname)
            out = Tensor(f"{t.name}_q", dtype, t.shape, scale=s)
            quantize = I.quantize if dtype == "int8" else Q.quantize  # int8: no libm (q15's C stays as it was)
            k = self.kernel(("quantize", dtype, t.size, s), lambda n: quantize(n, t.size, s, dtype))
        else:
            out = Tensor(f"{t.name}_f", "float32", t.shape)
            k = self.kernel(("dequantize", t.dtype, t.size, t.scale),
                            lambda n: Q.dequantize(n, t.size, t.scale, t.dtype))
        self.prog.steps.append(Step(k, [t, out], [], "quantize" if dtype != "float32" else "dequantize"))
        self.converted[id(t), dtype] = out
        return out

    def operand(self, layer: Layer, v, dtype: str) -> Tensor:
        """Input `v` of fixed-point `layer` as `dtype`; int8: an int16 window sum read by a dense as
        it is, the float graph input of an `i8wide.INPUT16` conv quantized to int16."""
        t = self.cur[id(v)]
        if self.quant == "int8" and layer.opdef.weighted and t.dtype == "int16":
            return t
        if self.wide.get(id(layer)) == "int16 input":
            from cococ.backends.mcu.i8wide import input16  # local: i8wide builds on this module
            return input16(self, t, v.name)
        return self.as_dtype(t, dtype, v.name)

    def fusable(self, layer: Layer, user: Layer) -> bool:
        """Whether `user` (the one reader of `layer`'s output) runs inside `layer`'s kernel: a ReLU
        after a conv/dense; in a q15/int8 build also a ReLU/Clip after an integer add or
        depthwise conv, and a Clip whose integer bounds a conv/dense kernel's clamp already is."""
        if layer.opdef.weighted and user.opdef is Relu:
            return True
        if not self.quant or not (layer.opdef.weighted or layer.opdef is Eltwise):
            return False
        if integer_reason(layer, self.quant) is not None:
            return False
        return fuses_clamp(layer, user, QDTYPE[self.quant], self.scale_of(user.output.name))

    def clamp(self, final: Layer) -> tuple[int, int]:
        """The integer bounds of a fused ReLU/Clip at its output's scale."""
        return bounds(final, QDTYPE[self.quant], self.scale_of(final.output.name))

    # -- the walk --------------------------------------------------------------------------
    def run(self) -> Program:
        g = self.g
        users = g.users_map()
        outputs = {id(v) for v in g.outputs}
        if self.float_out:
            from cococ.backends.mcu.i8wide import float_tail  # local: i8wide builds on this module
            self.tail = float_tail(g, users)
        if self.quant == "int8":
            from cococ.backends.mcu.i8wide import wide_layers  # local: i8wide builds on this module
            self.wide = wide_layers(g, users, self.scales, self.float_out)
        skip: set[int] = set()
        for layer in g.layers:
            if layer.op == "input" or id(layer) in skip:
                continue
            if layer.opdef.view or layer.opdef.alias:
                src = self.cur[id(layer.inputs[0])]
                self.cur[id(layer.output)] = Tensor(_cname(layer.output.name), src.dtype, layer.output.type.shape,
                                                    scale=src.scale, root=src)
                continue
            act, final = None, layer
            us = users.get(id(layer.output), [])
            if id(layer.output) not in outputs and len(us) == 1 and self.fusable(layer, us[0]):
                final = us[0]
                skip.add(id(final))
                act = Relu if final.opdef is Relu or (self.quant and self.clamp(final)[0] == 0) else None
            self.layer(layer, act, final)
        for (op, why), names in self.in_float.items():  # a fixed-point build not wholly fixed point: say so
            self.prog.warnings.append(f"{self.quant} build: {op} layers run in float32 ({why}), with "
                                      f"quantize/dequantize around them: {', '.join(names)}")
        for i, v in enumerate(g.outputs):
            self.prog.outputs.append(self.place_output(self.cur[id(v)], v.name))
        return self.prog

    def place_output(self, t: Tensor, vname: str) -> Tensor:
        t = self.as_dtype(t, "float32", vname)
        off = sum(o.size for o in self.prog.outputs)
        root = t.storage
        if root.home == "arena":
            root.home, root.io_offset = "out", off
            return t
        # the output is a graph input, or already another output: copy it
        out = Tensor(_cname(vname) + "_out", "float32", t.shape, home="out", io_offset=off)
        k = self.kernel(("copy", t.size), lambda n: K.copy(n, t.size))
        self.prog.steps.append(Step(k, [t, out], [], "copy"))
        return out

    def layer(self, layer: Layer, act: type[Op] | None, final: Layer) -> None:
        op = layer.op
        why = integer_reason(layer, self.quant) if self.quant is not None else "float build"
        q = why is None and (layer.opdef.weighted or id(layer) not in self.tail)  # a tail softmax: float
        if self.quant is not None and why is not None:
            self.in_float.setdefault((op, why), []).append(layer.name)
        dtype = QDTYPE[self.quant] if q else "float32"
        ins = [self.operand(layer, v, dtype) if q else self.as_dtype(self.cur[id(v)], dtype, v.name)
               for v in layer.inputs]
        xs = [v.type.shape for v in layer.inputs]
        yv = final.output
        if q and layer.opdef.keeps_scale:
            scale = ins[0].scale  # order-preserving: the output keeps the input's scale
        else:
            scale = self.scale_of(yv.name) if q else None
        if id(layer) in self.tail and q:  # the tail's dense: int8 in, float32 out (its sums dequantised)
            dtype, scale = "float32", None
        out = Tensor(_cname(yv.name), dtype, yv.type.shape, scale=scale)
        params = {k: p.dense() for k, p in layer.params.items()}
        names = [layer.name] + ([final.name] if final is not layer else [])
        cost = layer.opdef.cost(layer, [v.type for v in layer.inputs], [v.type for v in layer.outputs])
        sparse = None
        if layer.opdef.weighted and "weight" in layer.params and layer.params["weight"].format != "dense":
            from cococ.backends.mcu.sparse import lower_sparse  # local: sparse.py builds on this module
            sparse = lower_sparse(self, layer, ins, out, act)  # None: the dense kernel below
        if sparse:
            k, args = sparse[:2]
        elif self.wide.get(id(layer)) == "pool sum":  # int16 window sums for the dense after it (i8wide)
            from cococ.backends.mcu.i8wide import lower_pool_sum  # local: i8wide builds on this module
            k, args, out = lower_pool_sum(self, layer, ins[0], out)
        elif q and by_lower_integer(layer):
            from cococ.backends.mcu.qlower import lower_integer  # local: qlower builds on this module
            k, args = lower_integer(self, layer, ins, out, params, final)
        elif q and self.quant == "int8":
            from cococ.backends.mcu.i8kernels import lower_int8  # local: i8kernels builds on this module
            k, args = lower_int8(self, layer, ins, out, params, act)
        elif q:
            from cococ.backends.mcu.qkernels import lower_q15  # local: qkernels builds on this module
            k, args = lower_q15(self, layer, ins, out, params, act)
        else:
            k, args = self.lower_f32(layer, ins, out, params, act, xs)
        self.prog.steps.append(Step(k, args, names, op + (f"+{final.op}" if final is not layer else ""), cost.macs,
                                    sparse[2] if sparse else "dense"))
        self.cur[id(yv)] = out

    def lower_f32(self, layer, ins, out, params, act, xs):
        """(kernel, args) of a float layer: its op's TVM rule over the executor's buffer layout
        (`m4_shapes` of the input shapes `xs`), its constants from the op's tvm-params rule.
        (`params`, the layer's dense params, is what the fixed-point lowerings read; mcu/sparse.py
        calls this with the same arguments as lower_q15.)"""
        if rule_of(layer.op, "tvm") is None or len(layer.outputs) != 1:
            raise layer.error(f"the arm-m4 backend has no kernel for op '{layer.op}' yet")
        cs = {k: v.astype(np.float32) for k, v in consts(layer, K.M4).items()}
        shapes = m4_shapes(layer, xs)
        p_shapes = {k: v.shape for k, v in cs.items()}
        key = (layer.op, tuple(map(tuple, shapes)), frozen_attrs(layer.attrs), tuple(p_shapes.items()), act)
        doc = describe(layer, shapes, out.shape, act)
        k = self.kernel(key, lambda n: K.op_kernel(n, layer, shapes, p_shapes, act and _act_layer(act), doc=doc))
        return k, ins + [self.weight(layer, name, v) for name, v in cs.items()] + [out]


def _act_layer(act: type[Op]) -> Layer:
    """A stand-in layer of the fused activation, for its rule (a ReLU has no attributes)."""
    return Layer(act.name, act.name, [], [], {})


def m4_shapes(layer: Layer, shapes: list) -> list[tuple[int, ...]]:
    """The shapes the executor's kernel sees its inputs as: element-wise ops one flat buffer, the
    per-channel epilogues (batchnorm, scale, bias, prelu, mask) [outer, C, inner]; else as they are."""
    size = lambda s: int(np.prod(s, dtype=np.int64))  # noqa: E731
    if layer.opdef.elementwise:
        return [(size(s),) for s in shapes]
    if layer.opdef.epilogue:
        return [(s[0], s[1] if len(s) > 1 else 1, size(s[2:])) for s in shapes]
    return [tuple(s) for s in shapes]


def describe(layer: Layer, x_shapes: list, y_shape, act: type[Op] | None = None) -> str:
    """A kernel's comment in kernels.c: element-wise `op xSIZE`; per channel `op per channel
    [outer,C,inner]`; around an axis (softmax, concat) `op [outer,d,inner]`; else `op [in]->[out]`
    (and the window of a conv); then +bias, +activation."""
    x, a, size = x_shapes[0], layer.attrs, lambda s: int(np.prod(s, dtype=np.int64))  # noqa: E731
    if layer.opdef.elementwise:
        what = f"x{size(y_shape)}"
    elif layer.opdef.epilogue:
        what = f"per channel [{','.join(map(str, x))}]"
    elif "axis" in a:
        ax = a["axis"] % len(x)
        what = f"[{size(x[:ax])},{x[ax]},{size(x[ax + 1:])}]"
    else:
        what = f"{list(x)}->{list(y_shape)}"
        if layer.opdef.weighted and "kernel" in a:
            what += f" k{a['kernel'][0]}x{a['kernel'][1]}"
    return f"{layer.op} {what}" + (" +bias" if "bias" in layer.params else "") + (f" +{act.name}" if act else "")


def frozen_attrs(attrs: dict) -> tuple:
    """A layer's attributes as a hashable, order-independent tuple: part of a kernel's cache key
    (the kernels of layers with equal attributes and shapes are generated once)."""
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in attrs.items()))
