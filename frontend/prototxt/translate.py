"""Caffe NetParameter (message tree) -> layer IR Graph.

The walk follows Caffe's own Net::Init: net inputs first, then layers in file order, each
layer filtered by its include/exclude rules against the chosen phase, its bottoms looked up
by blob name. Blob names are not SSA (in-place layers reuse their bottom's name), so each
layer output becomes a fresh Value and the blob name is re-pointed at it. Shapes are inferred
layer by layer (converters need them: InnerProduct's flatten, Slice's even split), with
the op registry's own rules, so the finished graph is already shape-checked.

What is kept out of the inference graph, and where it goes:
  - training-only layers (losses, Accuracy): graph.meta["caffe_training_layers"];
  - the label top of data layers: not an input (kept in the input layer's meta);
  - `param { lr_mult decay_mult }` (and V1 blobs_lr/weight_decay): layer.meta["caffe_param"]
    (op attribute schemas are closed, so training hints live in meta).
"""
from __future__ import annotations

from pathlib import Path

from cococ.frontend.prototxt.data_layers import DATA_TYPES
from cococ.frontend.prototxt.layers import CONVERTERS, LayerCtx, is_training_type
from cococ.frontend.prototxt.schema import check_fields
from cococ.frontend.prototxt.textformat import INT32, Message, parse_file, parse_text
from cococ.frontend.prototxt.upgrade import upgrade_v1
from cococ.ir.core import CococError, Graph, Layer, Param, TensorType, Value
from cococ.ir.registry import get_op
from cococ.ir.verify import infer_shapes

PHASES = ("TRAIN", "TEST")


class NetBuilder:
    """Builds one Graph; converters (layers.py) call `emit` through their LayerCtx."""

    def __init__(self, path: str | None, phase: str, stages=(), input_shapes=None, lenient: bool = False,
                 input_shape=None):
        if phase not in PHASES:
            raise CococError(f"phase must be TRAIN or TEST, got {phase!r}")
        self.path, self.phase, self.stages, self.lenient = path, phase, set(stages), lenient
        self.input_shapes = {k: [int(d) for d in v] for k, v in (input_shapes or {}).items()}
        self.input_shape = None if input_shape is None else [int(d) for d in input_shape]  # the one input's
        self.graph = Graph()
        self.blobs: dict[str, Value] = {}        # blob name -> its current value
        self.unusable: dict[str, str] = {}       # blob name -> why it is not in the graph (label, loss)
        self.layer_names: set[str] = set()
        self.value_names: set[str] = set()
        self.training: list[dict] = []
        self.last_module: str | None = None

    # -- names -----------------------------------------------------------------------------------
    @staticmethod
    def _fresh(base: str, taken: set[str]) -> str:
        name, i = base, 1
        while name in taken:
            name, i = f"{base}_{i}", i + 1
        taken.add(name)
        return name

    def new_value(self, base: str) -> Value:
        return Value(self._fresh(base, self.value_names))

    # -- layers ----------------------------------------------------------------------------------
    def emit(self, op: str, name: str, inputs: list[Value], outputs: list[Value], attrs: dict,
             params=(), param_shapes: dict | None = None, loc=None, module=None) -> Layer:
        """Append a layer, check it against its op and infer its output types and param shapes.

        `params` names the params it carries (optional ones only when present, e.g. bias);
        their shapes come from the op's `param_shapes` unless given in `param_shapes`.
        """
        layer = Layer(op, self._fresh(name, self.layer_names), inputs, outputs, attrs, module=module, loc=loc)
        self._place(layer)
        opdef = get_op(op, layer=layer.name, loc=loc)
        opdef.check_arity(layer)
        opdef.check_attrs(layer)
        in_types = [v.type for v in inputs]
        opdef.verify(layer, in_types)
        for v, t in zip(outputs, opdef.infer(layer, in_types)):
            v.type = t
        for p, shape in (param_shapes or {}).items():
            layer.params[p] = Param(TensorType(shape))
        shapes = opdef.param_shapes(layer, in_types) if params else {}
        for p in params:
            if p not in layer.params:
                layer.params[p] = Param(TensorType(shapes[p]))
        return layer

    def _place(self, layer: Layer) -> None:
        """Append, keeping each module's layers contiguous (Graph's invariant)."""
        m = layer.module
        if m is not None and m != self.last_module and m in self.graph.modules:
            raise CococError(f"module '{m}' continues after other layers; a module's layers must be "
                             "contiguous", layer=layer.name, loc=layer.loc, path=self.path)
        if m is not None and m not in self.graph.modules:
            self.graph.modules.append(m)
        self.last_module = m
        self.graph.layers.append(layer)

    def given_shape(self, blob: str) -> list[int] | None:
        """The shape the caller set for input `blob` (by name, or as the net's one input), if any."""
        return self.input_shapes.get(blob, self.input_shape)

    def add_input(self, blob: str, shape: list[int], name: str, loc, module=None, guessed=False) -> Layer:
        shape = self.given_shape(blob) or shape
        for d in shape:
            if not 1 <= d <= INT32[1]:
                raise CococError(f"input '{blob}': dims must be in 1..{INT32[1]}, got {shape}", loc=loc, path=self.path)
        if not shape:
            raise CococError(f"input '{blob}' has no dims", loc=loc, path=self.path)
        v = self.new_value(blob)
        layer = self.emit("input", name, [], [v], {"shape": list(shape), "dtype": "f32"}, loc=loc, module=module)
        if guessed and self.given_shape(blob) is None:
            layer.meta["caffe_shape_guessed"] = True
        self.blobs[blob] = v
        self.unusable.pop(blob, None)
        return layer

    # -- the net ---------------------------------------------------------------------------------
    def build(self, net: Message) -> Graph:
        check_fields(net, "NetParameter", lenient=self.lenient)
        self.graph.name = net.get_str("name") or (Path(self.path).stem if self.path else "net")
        self._net_inputs(net)
        for f in net.fields:
            if f.name in ("layer", "layers"):
                self.add_layer(f.value, f.name, None, f.loc)
            elif f.name == "module":
                self._module(f)
        return self._finish()

    def _module(self, f) -> None:
        """Wootz: `module { name: "res2a" layer {...} ... }` marks one convolution module."""
        if not isinstance(f.value, Message):
            raise CococError("'module' at net level must be a block: module { name: \"...\" layer { ... } }",
                             loc=f.loc, path=self.path)
        m = f.value
        name = m.get_str("name")
        if not name:
            raise m.error("module needs a name: module { name: \"res2a\" ... }")
        if name in self.graph.modules:
            raise m.error(f"module '{name}' is defined twice")
        for g in m.fields:
            if g.name in ("layer", "layers"):
                self.add_layer(g.value, g.name, name, g.loc)
            elif g.name != "name":
                raise m.error(f"unexpected field '{g.name}' in module '{name}' (expected name, layer)", g.loc)

    def _net_inputs(self, net: Message) -> None:
        """Top-level `input:` with `input_dim:` x4 or `input_shape { dim }` per input."""
        names = net.get_strs("input")
        shapes = [s.get_ints("dim", (1, INT32[1])) for s in net.get_msgs("input_shape")]
        dims = net.get_ints("input_dim")
        if not names:
            if shapes or dims:
                raise net.error("input_dim/input_shape given without 'input:' names")
            return
        if shapes and dims:
            raise net.error("give either input_shape or input_dim, not both")
        if dims:
            if len(dims) != 4 * len(names):
                raise net.error(f"{len(names)} input(s) need {4 * len(names)} input_dim values, got {len(dims)}")
            shapes = [dims[4 * i:4 * i + 4] for i in range(len(names))]
        if len(shapes) != len(names) and not all(self.given_shape(n) is not None for n in names):
            raise net.error(f"{len(names)} input(s) but {len(shapes)} input_shape(s)")
        loc = net.field("input").loc
        for i, n in enumerate(names):
            self.add_input(n, shapes[i] if i < len(shapes) else [], n, loc)

    def add_layer(self, lp, kind: str, module: str | None, loc) -> None:
        if not isinstance(lp, Message):
            raise CococError(f"'{kind}' must be a block {{ ... }}", loc=loc, path=self.path)
        if kind == "layers":
            lp = upgrade_v1(lp)
        type_ = lp.get_str("type")
        if not type_:
            raise lp.error("layer has no type")
        name = lp.get_str("name") or f"{type_.lower()}{len(self.graph.layers)}"
        if not self._included(lp):
            return
        own = lp.get_str("module")
        if own is not None and module is not None and own != module:
            raise lp.error(f"layer '{name}' says module '{own}' inside module '{module}'", layer=name)
        module = own or module
        bottoms, tops = lp.get_strs("bottom"), lp.get_strs("top")
        try:
            if is_training_type(type_):
                self._training(lp, type_, name, bottoms, tops)
                return
            if type_ in DATA_TYPES:
                DATA_TYPES[type_](self, lp, name, tops, module)
                return
            conv = CONVERTERS.get(type_)
            if conv is None:
                raise lp.error(f"unsupported Caffe layer type '{type_}' (supported: "
                               f"{', '.join(sorted(set(CONVERTERS) | set(DATA_TYPES)))})", layer=name)
            inputs = [self._bottom(b, name, lp) for b in bottoms]
            ctx = LayerCtx(self, lp, name, type_, lp.loc, inputs, tops, module)
            outs = conv(ctx)
            if len(outs) != len(tops):
                raise lp.error(f"{type_} makes {len(outs)} output(s) but the layer lists {len(tops)} top(s)",
                               layer=name)
            for t, v in zip(tops, outs):
                self.blobs[t] = v
                self.unusable.pop(t, None)
        except CococError as e:
            if e.path is None or e.layer is None:  # name the layer and file in every error
                raise CococError(e.message, layer=e.layer or name, loc=e.loc or lp.loc,
                                 path=e.path or self.path) from None
            raise

    def _bottom(self, blob: str, layer: str, lp: Message) -> Value:
        v = self.blobs.get(blob)
        if v is None:
            why = self.unusable.get(blob, "no earlier layer or input produces it")
            raise lp.error(f"bottom blob '{blob}' is not available: {why}", layer=layer)
        return v

    def _included(self, lp: Message) -> bool:
        """Caffe's StateMeetsRule: any `include` rule met, or (no include and) no `exclude` rule met."""
        inc, exc = lp.get_msgs("include"), lp.get_msgs("exclude")
        if inc and exc:
            raise lp.error("a layer may give include or exclude rules, not both")
        if inc:
            return any(self._meets(r) for r in inc)
        return not any(self._meets(r) for r in exc)

    def _meets(self, rule: Message) -> bool:
        phase = rule.get_enum("phase", PHASES, numbers={0: "TRAIN", 1: "TEST"})
        if phase is not None and phase != self.phase:
            return False
        if rule.get_int("min_level", 0) > 0 or rule.get_int("max_level", 0) < 0:
            return False
        if any(s not in self.stages for s in rule.get_strs("stage")):
            return False
        return not any(s in self.stages for s in rule.get_strs("not_stage"))

    def _training(self, lp: Message, type_: str, name: str, bottoms, tops) -> None:
        rec = {"name": name, "type": type_, "bottom": bottoms, "top": tops,
               "loss_weight": lp.get_floats("loss_weight"), "line": lp.loc[0]}
        for f in lp.fields:
            if f.name.endswith("_param") and isinstance(f.value, Message):
                rec[f.name] = f.value.to_dict()
        self.training.append(rec)
        for t in tops:
            self.unusable[t] = f"it is made by the training-only layer '{name}' ({type_})"
            self.blobs.pop(t, None)

    def _finish(self) -> Graph:
        g = self.graph
        if self.input_shape is not None and len(g.inputs) != 1:
            raise CococError(f"{self.path}: --input-shape sets the shape of one input; the net has {len(g.inputs)} "
                             f"({', '.join(v.name for v in g.inputs)})")
        used = {id(v) for l in g.layers for v in l.inputs}
        current = {id(v) for v in self.blobs.values()}
        g.outputs = [v for l in g.layers if l.op != "input" for v in l.outputs
                     if id(v) not in used and id(v) in current]
        g.meta["caffe_training_layers"] = self.training
        g.meta["caffe_phase"] = self.phase
        g.source_path = self.path
        if not g.outputs:
            raise CococError("the net has no output (no layer result is left unconsumed)", path=self.path)
        infer_shapes(g)
        return g


def net_to_graph(net: Message, phase: str = "TEST", *, path: str | None = None, stages=(),
                 input_shapes: dict | None = None, lenient: bool = False, input_shape=None) -> Graph:
    """Translate a parsed NetParameter (e.g. a solver's inline `net_param`). A field caffe.proto
    does not define is an error, or with `lenient` a warning (schema.check_fields)."""
    return NetBuilder(path or net.path, phase, stages, input_shapes, lenient, input_shape).build(net)


def load_prototxt(path, phase: str = "TEST", *, stages=(), input_shapes: dict | None = None,
                  lenient: bool = False, input_shape=None) -> Graph:
    """Load a Caffe net prototxt. `phase` selects include/exclude rules (deploy nets: TEST);
    `input_shapes` ({blob: dims}) overrides declared or guessed input shapes (Data layers), and
    `input_shape` (dims) that of the net's one input, whatever its name (an error if it has more);
    `lenient` warns about unknown fields instead of refusing them."""
    path = str(path)
    return net_to_graph(parse_file(path), phase, path=path, stages=stages, input_shapes=input_shapes,
                        lenient=lenient, input_shape=input_shape)


def load_prototxt_text(text: str, phase: str = "TEST", *, path: str | None = None, stages=(),
                       input_shapes: dict | None = None, lenient: bool = False) -> Graph:
    return net_to_graph(parse_text(text, path), phase, path=path, stages=stages, input_shapes=input_shapes,
                        lenient=lenient)
