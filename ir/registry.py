"""The op registry: each op is one class with everything about it side by side.

An op class gives:
  - `name`                 the op's name in the IR text ("conv2d")
  - `attrs`                schema: attribute name -> Attr(kind, default, ...)
  - `num_inputs`           an int, or (min, max) with max None for variadic
  - `num_outputs`          an int, or a callable(layer) -> int
  - `param_shapes(layer, in_types)`  params the layer must carry -> shape (optional ones: `optional_params`)
  - `infer(layer, in_types)`         output types (shape inference)
  - `compute(layer, inputs, params)` numpy reference semantics -> list of arrays
  - `cost(layer, in_types, out_types)` -> Cost(params, macs)
  - `channels(layer, in_types)`      -> ChannelRule: how output channels couple to inputs and params
  - `verify(layer, in_types)`        extra checks beyond the schema (optional)
  - declared properties (class attributes, below in `Op`): what backends and passes used to test
    with string sets of op names (`layer.op in {...}`): element-wise, view, alias, fusable
    epilogue, keeps the input's quantisation scale, weighted, activation, Caffe blob order.
  - backend rules, registered beside the op with `@rule(OpClass, "backend")` (JAX-style): one
    file shows an op whole. `BACKENDS` lists the rule kinds and the signature each is called
    with; an op with no rule for a backend says so in `no_rules = {"backend": "why"}`, and
    tests/ir/test_rule_coverage.py fails, naming the op, when it does neither.

Register with the `@register` decorator; families live in `ir/ops/<family>.py`.
Rule functions take the backend's library through their `ctx` argument (ctx.F, ctx.te, ...),
so importing cococ.ir never imports torch, TVM or onnx.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import numpy as np

from cococ.ir.core import CococError, Layer, TensorType

# ---- attribute schema -------------------------------------------------------------------------

_KINDS = {
    "int": lambda v: isinstance(v, (int, np.integer)) and not isinstance(v, bool),
    "float": lambda v: isinstance(v, (int, float, np.number)) and not isinstance(v, bool),
    "bool": lambda v: isinstance(v, bool),
    "str": lambda v: isinstance(v, str),
    "ints": lambda v: isinstance(v, list) and all(_KINDS["int"](x) for x in v),
    "floats": lambda v: isinstance(v, list) and all(_KINDS["float"](x) for x in v),
    "strs": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
}


@dataclass(frozen=True)
class Attr:
    kind: str                      # int float bool str ints floats strs
    default: Any = None            # None = required (unless optional=True)
    optional: bool = False         # may be absent with no default
    choices: tuple | None = None   # allowed values (for str / int)
    length: int | None = None      # exact list length
    doc: str = ""

    def check(self, op: str, name: str, value: Any, layer: Layer) -> None:
        if not _KINDS[self.kind](value):
            raise layer.error(f"attribute '{name}' of {op} must be {self.kind}, got {value!r}")
        if self.choices is not None and value not in self.choices:
            raise layer.error(f"attribute '{name}' of {op} must be one of {list(self.choices)}, got {value!r}")
        if self.length is not None and len(value) != self.length:
            raise layer.error(f"attribute '{name}' of {op} must have {self.length} elements, got {value!r}")


@dataclass(frozen=True)
class Cost:
    params: int = 0
    macs: int = 0


# ---- channel coupling -------------------------------------------------------------------------

@dataclass(frozen=True)
class ChannelRule:
    """How the channel axis (axis 1, NCHW) of a layer's output relates to its inputs.

    kind:
      "source"      the layer makes new channels (conv, dense): removing output channel c slices
                    `out_params` at their axis; removing input channel c slices `in_params`
                    (dense after flatten: `in_params` is indexed by flattened features; the
                    flatten layer expands the channel set, see "flatten").
      "passthrough" output channel c is input channel c (bn, scale, relu, pool, depthwise conv):
                    removal flows through and slices `params` at their axis.
      "tie"         every input and the output share one channel set (eltwise add/mul/max).
      "concat"      output channels are the inputs' channels, in input order.
      "split"       each output is a contiguous range of the input's channels (slice/split).
      "flatten"     output feature f comes from input channel f // (H*W).
      "opaque"      channels do not propagate (softmax over channels, reshape): pruning stops.
    """
    kind: str
    out_params: dict[str, int] = field(default_factory=dict)
    in_params: dict[str, int] = field(default_factory=dict)
    params: dict[str, int] = field(default_factory=dict)


PASSTHROUGH = ChannelRule("passthrough")
OPAQUE = ChannelRule("opaque")


# ---- op base class and registry ---------------------------------------------------------------

class Op:
    name: ClassVar[str]
    attrs: ClassVar[dict[str, Attr]] = {}
    num_inputs: ClassVar[int | tuple[int, int | None]] = 1
    num_outputs: ClassVar[int | Callable[[Layer], int]] = 1
    optional_params: ClassVar[frozenset[str]] = frozenset()
    doc: ClassVar[str] = ""

    # -- declared properties (read by passes and backends instead of sets of op names) ------------
    elementwise: ClassVar[bool] = False   # y[i] = f(x[i]) (or of same-shape inputs): runs on a flat buffer
    epilogue: ClassVar[bool] = False      # may be fused after its producer, in the producer's kernel
    view: ClassVar[bool] = False          # the output is the input's storage, reshaped (no kernel)
    alias: ClassVar[bool] = False         # at inference the output is the input itself (no kernel)
    keeps_scale: ClassVar[bool] = False   # order-preserving: a quantised output keeps the input's scale
    weighted: ClassVar[bool] = False      # learned weights that pruning and quantisation act on
    activation: ClassVar[bool] = False    # a per-element nonlinearity that trails a conv in a module
    caffe_blobs: ClassVar[tuple[str, ...]] = ()   # the params in Caffe's blob order
    no_rules: ClassVar[dict[str, str]] = {}       # backend -> why this op has no rule for it
    onnx_import: ClassVar[tuple[str, ...]] = ()   # ONNX op types imported 1:1 as this op (the ONNX
    #   frontend finds them here; attributes through the op's onnx-import rule)

    @staticmethod
    def param_shapes(layer: Layer, in_types: list[TensorType]) -> dict[str, tuple[int, ...]]:
        return {}

    @staticmethod
    def infer(layer: Layer, in_types: list[TensorType]) -> list[TensorType]:
        return [in_types[0]]

    @staticmethod
    def compute(layer: Layer, inputs: list[np.ndarray], params: dict[str, np.ndarray]) -> list[np.ndarray]:
        raise NotImplementedError

    @staticmethod
    def cost(layer: Layer, in_types: list[TensorType], out_types: list[TensorType]) -> Cost:
        return Cost(params=sum(p.type.size for p in layer.params.values()))

    @staticmethod
    def channels(layer: Layer, in_types: list[TensorType]) -> ChannelRule:
        return OPAQUE

    @staticmethod
    def verify(layer: Layer, in_types: list[TensorType]) -> None:
        pass

    # -- helpers shared by every op ------------------------------------------------------------
    @classmethod
    def attr(cls, layer: Layer, name: str) -> Any:
        """`layer`'s attribute `name`, or its schema default: parsed IR text keeps only the
        attributes written, and analyses (channel rules) may run before verify fills the rest."""
        if name in layer.attrs:
            return layer.attrs[name]
        return cls.attrs[name].default
    @classmethod
    def expected_outputs(cls, layer: Layer) -> int:
        return cls.num_outputs(layer) if callable(cls.num_outputs) else cls.num_outputs

    @classmethod
    def check_arity(cls, layer: Layer) -> None:
        lo, hi = (cls.num_inputs, cls.num_inputs) if isinstance(cls.num_inputs, int) else cls.num_inputs
        n = len(layer.inputs)
        if n < lo or (hi is not None and n > hi):
            want = str(lo) if lo == hi else f"{lo}..{hi if hi is not None else 'n'}"
            raise layer.error(f"{cls.name} takes {want} inputs, got {n}")
        want_out = cls.expected_outputs(layer)
        if len(layer.outputs) != want_out:
            raise layer.error(f"{cls.name} has {want_out} outputs, got {len(layer.outputs)}")

    @classmethod
    def check_attrs(cls, layer: Layer) -> None:
        """Check attrs against the schema and fill defaults in place."""
        for k in layer.attrs:
            if k not in cls.attrs:
                known = ", ".join(cls.attrs) or "none"
                raise layer.error(f"unknown attribute '{k}' for {cls.name} (known: {known})")
        for k, spec in cls.attrs.items():
            if k not in layer.attrs:
                if spec.default is not None:
                    layer.attrs[k] = list(spec.default) if isinstance(spec.default, (list, tuple)) else spec.default
                    continue
                if spec.optional:
                    continue
                raise layer.error(f"{cls.name} requires attribute '{k}'")
            spec.check(cls.name, k, layer.attrs[k], layer)


OPS: dict[str, type[Op]] = {}

# ---- backend rules --------------------------------------------------------------------------------

# rule kind -> how it is called (the contract each backend relies on; docs/CONTRACTS.md)
BACKENDS: dict[str, str] = {
    "torch": "fn(layer, xs, params, ctx) -> list[torch.Tensor]; ctx.F is torch.nn.functional, "
             "ctx.torch is torch (runtime/torch/lowering.py)",
    "tvm": "fn(layer, xs, ps, ctx) -> list[te.Tensor]; ctx.te / ctx.tirx / ctx.topi are TVM's modules, "
           "ps the op's constants as TE tensors (see tvm-params); padding goes through ctx.pad (a padded "
           "copy on x86/cuda, implicit on arm-m4); one compute for x86, cuda and arm-m4 (backends/tvm, "
           "backends/mcu/kernels.py)",
    "onnx": "fn(b, layer, xs, ys) -> None; b is the export builder (backends/onnx_export.py)",
    "caffe": "fn(layer, w) -> (caffe type, fields); w is the writer's helper namespace "
             "(frontend/prototxt/writer.py)",
}

# rule kinds an op registers only where it departs from the backend's default (so the coverage
# test does not ask every op for one): kind -> contract and default
OPTIONAL_RULES: dict[str, str] = {
    "tvm-params": "fn(layer, ctx) -> dict[str, np.ndarray]: the constants the op's tvm rule reads as `ps`, "
                  "prepared once at compile time (batchnorm folding, weight packing via ctx.pack_oc); "
                  "default: each of the layer's params, dense (backends/kernels/compute.py)",
    "onnx-import": "fn(attrs, ctx) -> dict: the op's attrs for an ONNX node of one of its `onnx_import` "
                   "types, from the node's attributes `attrs` (as written: ONNX defaults not filled); ctx is "
                   "the importer's (ctx.opset; raise ctx.unsupported(msg) for what the op cannot express); "
                   "default: no attrs, the node's attributes ignored (frontend/onnx/context.py)",
}

RULES: dict[tuple[str, str], Callable] = {}


def rule(ops: "type[Op] | tuple[type[Op], ...]", backend: str):
    """Decorator: `fn` is `backend`'s rule for the op class(es) `ops` (one per op and backend)."""
    if backend not in BACKENDS and backend not in OPTIONAL_RULES:
        raise RuntimeError(f"unknown rule kind {backend!r} (known: {', '.join([*BACKENDS, *OPTIONAL_RULES])})")
    classes = ops if isinstance(ops, tuple) else (ops,)

    def deco(fn: Callable) -> Callable:
        for cls in classes:
            key = (cls.name, backend)
            if key in RULES:
                raise RuntimeError(f"{backend} rule of op {cls.name} registered twice")
            RULES[key] = fn
        return fn
    return deco


def rule_of(op: "str | type[Op]", backend: str) -> Callable | None:
    """The `backend` rule of `op` (a name or an Op class), or None when it has none."""
    _load_ops()
    return RULES.get((op if isinstance(op, str) else op.name, backend))


def register(cls: type[Op]) -> type[Op]:
    if cls.name in OPS:
        raise RuntimeError(f"op {cls.name} registered twice")
    OPS[cls.name] = cls
    return cls


def get_op(name: str, layer: str | None = None, loc=None) -> type[Op]:
    _load_ops()
    try:
        return OPS[name]
    except KeyError:
        raise CococError(f"unknown op '{name}' (known ops: {', '.join(sorted(OPS))})", layer=layer, loc=loc) from None


def all_ops() -> dict[str, type[Op]]:
    _load_ops()
    return dict(OPS)


def _load_ops() -> None:
    import cococ.ir.ops  # noqa: F401  (registers every family; local: the ops import this module)
