"""Graph -> Program: the ordered kernel calls of the AOT executor, over tensors and weights.

This is where layers become calls: conv/dense absorb a following ReLU (the kernel applies it
in its output loop), views (flatten, reshape, identity, dropout) become aliases that share
their input's storage, batchnorm/scale/bias become one per-channel affine whose two vectors
are folded here, and in q15 (int8) mode conv/dense/pools/relu run on int16 (int8) tensors with
quantize/dequantize calls inserted where a float layer meets a fixed-point one. Kernels with the same
configuration are generated once and called from every layer that needs them.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cococ.backends.mcu import kernels as K
from cococ.backends.mcu.codegen import Kernel
from cococ.ir.core import CococError, Graph, Layer

ALIASES = {"flatten", "reshape", "identity", "dropout"}
Q15_OPS = {"conv2d", "dense", "max_pool", "relu", "global_max_pool"}
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


def lower(graph: Graph, quant: str | None = None) -> Program:
    """Turn a verified, shape-inferred graph into a Program (quant: None, "q15" or "int8")."""
    return _Lowering(graph, quant).run()


def _cname(s: str) -> str:
    out = "".join(c if c.isalnum() else "_" for c in s)
    return out if out and not out[0].isdigit() else "v_" + out


class _Lowering:
    def __init__(self, graph: Graph, quant: str | None):
        self.g, self.quant = graph, quant
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
        self.cur = {id(v): t for v, t in zip(graph.inputs, ins)}

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
        from cococ.backends.mcu import qkernels as Q
        if dtype != "float32":
            s = t.scale or self.scale_of(vname)
            out = Tensor(f"{t.name}_q", dtype, t.shape, scale=s)
            k = self.kernel(("quantize", dtype, t.size, s), lambda n: Q.quantize(n, t.size, s, dtype))
        else:
            out = Tensor(f"{t.name}_f", "float32", t.shape)
            k = self.kernel(("dequantize", t.dtype, t.size, t.scale),
                            lambda n: Q.dequantize(n, t.size, t.scale, t.dtype))
        self.prog.steps.append(Step(k, [t, out], [], "quantize" if dtype != "float32" else "dequantize"))
        return out

    # -- the walk --------------------------------------------------------------------------
    def run(self) -> Program:
        g = self.g
        users = g.users_map()
        outputs = {id(v) for v in g.outputs}
        skip: set[int] = set()
        for layer in g.layers:
            if layer.op == "input" or id(layer) in skip:
                continue
            if layer.op in ALIASES:
                src = self.cur[id(layer.inputs[0])]
                self.cur[id(layer.output)] = Tensor(_cname(layer.output.name), src.dtype, layer.output.type.shape,
                                                    scale=src.scale, root=src)
                continue
            act, final = None, layer
            if layer.op in ("conv2d", "dense") and id(layer.output) not in outputs:
                us = users.get(id(layer.output), [])
                if len(us) == 1 and us[0].op == "relu":
                    act, final = "relu", us[0]
                    skip.add(id(final))
            self.layer(layer, act, final)
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
        k = self.kernel(("copy", t.size), lambda n: K.elementwise(n, "copy", t.size, {}))
        self.prog.steps.append(Step(k, [t, out], [], "copy"))
        return out

    def layer(self, layer: Layer, act: str | None, final: Layer) -> None:
        op, a = layer.op, layer.attrs
        q = self.quant is not None and op in Q15_OPS and not (op == "conv2d" and a["groups"] != 1)
        dtype = QDTYPE[self.quant] if q else "float32"
        ins = [self.as_dtype(self.cur[id(v)], dtype, v.name) for v in layer.inputs]
        xs = [v.type.shape for v in layer.inputs]
        yv = final.output
        if q and op in ("max_pool", "relu", "global_max_pool"):
            scale = ins[0].scale  # order-preserving: the output keeps the input's scale
        else:
            scale = self.scale_of(yv.name) if q else None
        out = Tensor(_cname(yv.name), dtype, yv.type.shape, scale=scale)
        params = {k: p.dense() for k, p in layer.params.items()}
        names = [layer.name] + ([final.name] if final is not layer else [])
        cost = layer.opdef.cost(layer, [v.type for v in layer.inputs], [v.type for v in layer.outputs])
        sparse = None
        if op in ("conv2d", "dense") and "weight" in layer.params and layer.params["weight"].format != "dense":
            from cococ.backends.mcu.sparse import lower_sparse
            sparse = lower_sparse(self, layer, ins, out, act)  # None: the dense kernel below
        if sparse:
            k, args = sparse[:2]
        elif q and self.quant == "int8":
            from cococ.backends.mcu.i8kernels import lower_int8
            k, args = lower_int8(self, layer, ins, out, params, act)
        elif q:
            from cococ.backends.mcu.qkernels import lower_q15
            k, args = lower_q15(self, layer, ins, out, params, act)
        else:
            k, args = self.lower_f32(layer, ins, out, params, act, xs)
        self.prog.steps.append(Step(k, args, names, op + (f"+{act}" if act else ""), cost.macs,
                                    sparse[2] if sparse else "dense"))
        self.cur[id(yv)] = out

    def lower_f32(self, layer, ins, out, params, act, xs):
        op, a, ys = layer.op, layer.attrs, out.shape
        W = lambda n, d: self.weight(layer, n, d.astype(np.float32))  # noqa: E731
        if op == "conv2d":
            bias = "bias" in params
            key = ("conv2d", xs[0], params["weight"].shape, ys, _frz(a), bias, act)
            k = self.kernel(key, lambda n: K.conv2d(n, xs[0], params["weight"].shape, ys, a, bias, act))
            return k, [ins[0], W("weight", params["weight"])] + ([W("bias", params["bias"])] if bias else []) + [out]
        if op == "dense":
            bias = "bias" in params
            key = ("dense", xs[0], params["weight"].shape, bias, act)
            k = self.kernel(key, lambda n: K.dense(n, xs[0], params["weight"].shape, bias, act))
            return k, [ins[0], W("weight", params["weight"])] + ([W("bias", params["bias"])] if bias else []) + [out]
        if op in ("max_pool", "avg_pool", "global_avg_pool", "global_max_pool"):
            k = self.kernel((op, xs[0], ys, _frz(a)), lambda n: K.pool2d(n, op, xs[0], ys, a))
            return k, [ins[0], out]
        if op in ("relu", "leaky_relu", "sigmoid", "tanh", "clip", "power", "eltwise"):
            size = out.size
            k = self.kernel((op, size, _frz(a), len(ins)), lambda n: K.elementwise(n, op, size, a, len(ins)))
            return k, ins + [out]
        if op in ("batchnorm", "scale", "bias", "prelu"):
            shape = xs[0]
            c = shape[1] if len(shape) > 1 else 1
            outer, inner = shape[0], int(np.prod(shape[2:], dtype=np.int64))
            if op == "prelu":
                slope = np.broadcast_to(params["slope"].reshape(-1), (c,)).astype(np.float32)
                k = self.kernel(("prelu", outer, c, inner), lambda n: K.channel_affine(n, outer, c, inner, "prelu"))
                return k, [ins[0], W("slope", slope), out]
            mul, add = _fold_affine(op, params, c, a)
            k = self.kernel(("affine", outer, c, inner), lambda n: K.channel_affine(n, outer, c, inner))
            return k, [ins[0], W("a", mul), W("b", add), out]
        if op == "softmax":
            ax = a["axis"] % len(xs[0])
            outer = int(np.prod(xs[0][:ax], dtype=np.int64))
            inner = int(np.prod(xs[0][ax + 1:], dtype=np.int64))
            d = xs[0][ax]
            k = self.kernel(("softmax", outer, d, inner), lambda n: K.softmax(n, outer, d, inner))
            return k, [ins[0], out]
        if op == "concat":
            ax = a["axis"] % len(xs[0])
            outer = int(np.prod(xs[0][:ax], dtype=np.int64))
            widths = [int(np.prod(s[ax:], dtype=np.int64)) for s in xs]
            k = self.kernel(("concat", outer, tuple(widths)), lambda n: K.concat(n, outer, widths))
            return k, ins + [out]
        raise layer.error(f"the arm-m4 backend has no kernel for op '{op}' yet")


def _frz(attrs: dict) -> tuple:
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in attrs.items()))


def _fold_affine(op: str, p: dict, c: int, attrs: dict) -> tuple[np.ndarray, np.ndarray]:
    """batchnorm/scale/bias as y = x * mul[c] + add[c] (computed in float64, stored f32)."""
    one, zero = np.ones(c), np.zeros(c)
    if op == "batchnorm":
        inv = 1.0 / np.sqrt(p["var"].astype(np.float64) + attrs["eps"])
        mul = inv * p.get("scale", one)
        add = -p["mean"] * mul + p.get("bias", zero)
    elif op == "scale":
        mul, add = p["scale"].astype(np.float64), p.get("bias", zero)
    else:
        mul, add = one, p["bias"].astype(np.float64)
    return mul.astype(np.float32), np.asarray(add, dtype=np.float32)
