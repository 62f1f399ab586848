"""The layer IR: TensorType, Value, Param, Layer, Graph.

A layer is what a pruning method talks about (a conv and its filters), so the IR is a
graph of layers, not of scalar ops. Values are SSA: each is produced by exactly one layer
(graph inputs are produced by `input` layers), and Caffe's in-place layers get fresh values
on import. Analyses put their results in the free-form `meta` dicts (as torch.fx does).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

import numpy as np

DTYPES = {
    "f32": np.float32, "f16": np.float16, "f64": np.float64,
    "i64": np.int64, "i32": np.int32, "i16": np.int16, "i8": np.int8, "u8": np.uint8,
    "bool": np.bool_,
}
NP_TO_DTYPE = {np.dtype(v): k for k, v in DTYPES.items()}


class CococError(Exception):
    """A user-facing error: names the file, line:col and layer where known.

    Every error cococ shows a user without a traceback is a CococError (or a subclass); the
    CLI prints it on one line and exits with status 1.
    """

    def __init__(self, message: str, *, layer: str | None = None, loc: tuple[int, int] | None = None,
                 path: str | None = None):
        self.message, self.layer, self.loc, self.path = message, layer, loc, path
        super().__init__(self.__str__())

    def __str__(self) -> str:
        where = []
        if self.path:
            where.append(self.path + (f":{self.loc[0]}:{self.loc[1]}" if self.loc else ""))
        elif self.loc:
            where.append(f"line {self.loc[0]}:{self.loc[1]}")
        if self.layer:
            where.append(f"layer '{self.layer}'")
        return (": ".join(where) + ": " if where else "") + self.message




def dtype_name(dtype: Any) -> str:
    try:
        return NP_TO_DTYPE[np.dtype(dtype)]
    except (KeyError, TypeError):
        raise CococError(f"unsupported dtype {dtype!r}; known: {', '.join(DTYPES)}") from None


@dataclass(frozen=True)
class TensorType:
    shape: tuple[int, ...]
    dtype: str = "f32"

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))
        if self.dtype not in DTYPES:
            raise CococError(f"unknown dtype '{self.dtype}'; known: {', '.join(DTYPES)}")

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def np_dtype(self):
        return DTYPES[self.dtype]

    def __str__(self) -> str:
        return f"{self.dtype}[{','.join(map(str, self.shape))}]"


def digest(arrays: Iterable[np.ndarray]) -> str:
    """Short content hash of one or more arrays (dtype, shape and bytes)."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:8]


class Param:
    """A weight of a layer.

    `format` is "dense" (one array, `data`) or a compressed form whose arrays live in
    `arrays` (e.g. "simd_group": values/indptr/indices, Scalpel's modified CSR) and whose
    logical dense shape is `type.shape`. `attrs` carries format options (width) and
    quantization (scale, zero point, qformat). `data` is None when the IR came from text
    without weights: the graph still verifies and prints, but cannot run.
    """

    def __init__(self, type: TensorType, data: np.ndarray | None = None, *, format: str = "dense",
                 arrays: dict[str, np.ndarray] | None = None, attrs: dict[str, Any] | None = None,
                 hash: str | None = None):
        self.type = type
        self.format = format
        self.data = data
        self.arrays = dict(arrays or {})
        self.attrs = dict(attrs or {})
        self._hash = hash
        # compressed params read from text without weights: array name -> (type, hash),
        # kept so the text prints back the same and a side-car can be checked against it
        self.array_stubs: dict[str, tuple[TensorType, str]] = {}

    @classmethod
    def from_array(cls, a: np.ndarray, **kw) -> "Param":
        a = np.asarray(a)
        return cls(TensorType(a.shape, dtype_name(a.dtype)), a, **kw)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.type.shape

    @property
    def has_data(self) -> bool:
        return self.data is not None if self.format == "dense" else bool(self.arrays)

    @property
    def hash(self) -> str:
        if self.has_data:
            return digest([self.data] if self.format == "dense" else
                          [self.arrays[k] for k in sorted(self.arrays)])
        return self._hash or "????????"

    @property
    def nbytes(self) -> int:
        """Bytes this param takes in its storage format (what lands in flash)."""
        if self.format == "dense":
            return self.type.size * np.dtype(self.type.np_dtype).itemsize
        return int(sum(a.nbytes for a in self.arrays.values()))

    def dense(self) -> np.ndarray:
        """The param as a dense array (decompressing if needed)."""
        if not self.has_data:
            raise CococError(f"param has no data ({self.type}, #{self.hash}); load weights "
                             "(a side-car .npz, --weights FILE, or --init random)")
        if self.format == "dense":
            return self.data
        from cococ.ir.formats import decompress  # local: formats builds on core (Param), a cycle at top
        return decompress(self)

    def copy(self) -> "Param":
        p = Param(self.type, None if self.data is None else self.data.copy(), format=self.format,
                  arrays={k: v.copy() for k, v in self.arrays.items()}, attrs=dict(self.attrs),
                  hash=self._hash)
        p.array_stubs = dict(self.array_stubs)
        return p

    def __repr__(self) -> str:
        return f"Param({self.format}, {self.type}, #{self.hash})"


class Value:
    """An SSA value: a named tensor produced by one layer."""

    def __init__(self, name: str, type: TensorType | None = None):
        self.name = name
        self.type = type
        self.producer: Layer | None = None

    def __repr__(self) -> str:
        return f"%{self.name}:{self.type}"


class Layer:
    def __init__(self, op: str, name: str, inputs: list[Value], outputs: list[Value],
                 attrs: dict[str, Any] | None = None, params: dict[str, Param] | None = None,
                 module: str | None = None, loc: tuple[int, int] | None = None):
        self.op = op
        self.name = name
        self.inputs = list(inputs)
        self.outputs = list(outputs)
        self.attrs = dict(attrs or {})
        self.params = dict(params or {})
        self.module = module
        self.loc = loc  # (line, col) in the source text, when parsed
        self.meta: dict[str, Any] = {}
        for v in self.outputs:
            v.producer = self

    @property
    def opdef(self):
        from cococ.ir.registry import get_op  # local: the registry builds on core (Layer), a cycle at top
        return get_op(self.op, layer=self.name)

    @property
    def output(self) -> Value:
        if len(self.outputs) != 1:
            raise CococError(f"has {len(self.outputs)} outputs, expected one", layer=self.name)
        return self.outputs[0]

    def error(self, message: str) -> CococError:
        return CococError(message, layer=self.name, loc=self.loc)

    def __repr__(self) -> str:
        return f"Layer({self.op} '{self.name}')"


class Graph:
    """Layers in topological order; inputs are values of `input` layers.

    `modules` is the ordered list of convolution-module names; a layer's membership is its
    `module` field, and the layers of one module are contiguous in `layers`.
    """

    def __init__(self, name: str = "main", layers: list[Layer] | None = None,
                 outputs: list[Value] | None = None, modules: list[str] | None = None):
        self.name = name
        self.layers: list[Layer] = list(layers or [])
        self.outputs: list[Value] = list(outputs or [])
        self.modules: list[str] = list(modules or [])
        self.meta: dict[str, Any] = {}
        self.source_path: str | None = None

    # -- queries ---------------------------------------------------------------------------
    @property
    def inputs(self) -> list[Value]:
        return [l.outputs[0] for l in self.layers if l.op == "input"]

    def values(self) -> Iterator[Value]:
        for layer in self.layers:
            yield from layer.outputs

    def value(self, name: str) -> Value:
        for v in self.values():
            if v.name == name:
                return v
        raise CococError(f"no value named '%{name}'")

    def layer(self, name: str) -> Layer:
        for l in self.layers:
            if l.name == name:
                return l
        raise CococError(f"no layer named '{name}'")

    def users(self, value: Value) -> list[Layer]:
        """Layers that read `value`, in order."""
        return [l for l in self.layers if any(i is value for i in l.inputs)]

    def users_map(self) -> dict[int, list[Layer]]:
        """id(value) -> reading layers, for passes that need many lookups."""
        m: dict[int, list[Layer]] = {}
        for l in self.layers:
            for v in l.inputs:
                m.setdefault(id(v), []).append(l)
        return m

    def module_layers(self, module: str) -> list[Layer]:
        return [l for l in self.layers if l.module == module]

    # -- edits -----------------------------------------------------------------------------
    def replace_all_uses(self, old: Value, new: Value) -> None:
        for l in self.layers:
            l.inputs = [new if v is old else v for v in l.inputs]
        self.outputs = [new if v is old else v for v in self.outputs]

    def remove_layer(self, layer: Layer) -> None:
        self.layers = [l for l in self.layers if l is not layer]

    def insert_after(self, anchor: Layer, layer: Layer) -> None:
        i = next(i for i, l in enumerate(self.layers) if l is anchor)
        self.layers.insert(i + 1, layer)

    def unique_name(self, base: str) -> str:
        taken = {l.name for l in self.layers} | {v.name for v in self.values()}
        if base not in taken:
            return base
        i = 1
        while f"{base}_{i}" in taken:
            i += 1
        return f"{base}_{i}"

    def clone(self) -> "Graph":
        """Deep copy: new Values/Layers, params copied."""
        vmap: dict[int, Value] = {}

        def cv(v: Value) -> Value:
            if id(v) not in vmap:
                vmap[id(v)] = Value(v.name, v.type)
            return vmap[id(v)]

        layers = []
        for l in self.layers:
            nl = Layer(l.op, l.name, [cv(v) for v in l.inputs], [cv(v) for v in l.outputs],
                       _copy_attrs(l.attrs), {k: p.copy() for k, p in l.params.items()}, l.module, l.loc)
            nl.meta = dict(l.meta)
            layers.append(nl)
        g = Graph(self.name, layers, [cv(v) for v in self.outputs], list(self.modules))
        g.meta = dict(self.meta)
        g.source_path = self.source_path
        return g

    def subgraph(self, inputs: list[Value], outputs: list[Value], name: str | None = None) -> "Graph":
        """Extract the layers computing `outputs` from `inputs` as a new graph.

        Each given input becomes an `input` layer of the same name and type; layers are copied.
        """
        g = self.clone()   # work on copies: the new input layers become the producers of their values
        vmap = {id(a): b for a, b in zip(self.values(), g.values())}
        try:
            ins, outs = [vmap[id(v)] for v in inputs], [vmap[id(v)] for v in outputs]
        except KeyError:
            raise CococError("subgraph inputs and outputs must be values of this graph") from None
        stop = {id(v) for v in ins}
        needed: set[int] = set()
        producers = {id(v): l for l in g.layers for v in l.outputs}
        work = list(outs)
        while work:
            v = work.pop()
            p = producers.get(id(v))
            if id(v) in stop or p is None or id(p) in needed:
                continue
            if p.op == "input":
                raise CococError(f"value '%{v.name}' depends on graph input '%{p.outputs[0].name}' "
                                 "which is not among the subgraph inputs")
            needed.add(id(p))
            work.extend(p.inputs)
        layers = [l for l in g.layers if id(l) in needed]
        return Graph(name or self.name,
                     [Layer("input", v.name, [], [v], {"shape": list(v.type.shape), "dtype": v.type.dtype})
                      for v in ins] + layers, outs,
                     [m for m in g.modules if any(l.module == m for l in layers)])

    def __iter__(self) -> Iterator[Layer]:
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    def __str__(self) -> str:
        from cococ.ir.printer import print_graph  # local: the printer builds on core, a cycle at top
        return print_graph(self)


def _copy_attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, list) else v for k, v in attrs.items()}
