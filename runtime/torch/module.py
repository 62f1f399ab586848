"""IR graph -> torch.nn.Module, and trained values back into the IR.

Training is how every pruning method recovers accuracy (Scalpel retrains after each step,
Wootz pre-trains blocks and fine-tunes), so the module keeps the IR's names: every param is
an `nn.Parameter` named `layer/param` (batchnorm's running `mean`/`var` are buffers of the
same names, since they are statistics, not trained by gradients), and `copy_back` writes
them into the IR's Params by those names. Besides plain forward it gives what pruning needs:

- frozen layers (`layer.meta["frozen"]` or `frozen=`): requires_grad False, and a frozen
  batchnorm keeps its statistics (a Wootz teacher must not drift);
- masks: an element mask (same shape as the param) or a channel mask (a vector along one
  axis) per param; masked entries get zero gradients and are zeroed again by `apply_masks()`
  (the trainer calls it after every optimizer step), so pruned weights stay pruned through
  momentum and weight decay;
- taps: `forward(x, taps=["conv1"])` also returns the named values (teacher-student losses);
- attributes: `layer_names(op)`, `attrs(layer)`, `set_attrs(layer, ratio=...)` read and change
  a lowered layer's attributes between iterations without touching the IR (node pruning scales
  dropout ratios while it trains, Scalpel eq. 8).

Each op's torch code is its torch rule, beside the op in ir/ops (`lowering.lowering_of`); an op
without one is an error naming the layer.
"""
from __future__ import annotations

import copy
from typing import Iterable, Mapping

import numpy as np
import torch
from torch import nn

from cococ.ir.core import CococError, Graph, Param
from cococ.ir.ops.norm import BatchNorm
from cococ.runtime.torch.lowering import Ctx, lowered_ops, lowering_of

# params that are running statistics (buffers, never trained by gradient)
STATS = {(BatchNorm.name, "mean"), (BatchNorm.name, "var")}


def param_key(layer: str, param: str) -> str:
    """`layer/param`, the name used in the module, the weights files and the snapshots.

    torch forbids '.' in parameter names, so a '.' in a layer name is stored as '%2E'.
    """
    return f"{layer.replace('.', '%2E')}/{param}"


def split_key(key: str) -> tuple[str, str]:
    layer, _, param = key.rpartition("/")
    return layer.replace("%2E", "."), param


class GraphModule(nn.Module):
    """Runs an IR graph with torch; see the module docstring."""

    def __init__(self, graph: Graph, *, frozen: Iterable[str] = (), outputs: Iterable[str] | None = None,
                 mask_zeros: bool = False, bn_momentum: float = 0.1):
        super().__init__()
        self.graph_name = graph.name
        self.bn_momentum = bn_momentum
        frozen = set(frozen)
        by_name = {v.name: v for v in graph.values()}
        self._inputs = [v.name for v in graph.inputs]
        self._outputs = [v.name for v in graph.outputs] if outputs is None else [
            _resolve(by_name, o).name for o in outputs]
        self._steps = []     # (layer with defaults filled, lowering, [(param name, key)], frozen)
        self._masks: dict[str, str] = {}   # param key -> mask buffer name
        self._hooks: dict[str, object] = {}
        for layer in graph.layers:
            if layer.op == "input":
                continue
            fn = lowering_of(layer.op)
            if fn is None:
                raise layer.error(f"no torch lowering for op '{layer.op}' (lowered: {', '.join(lowered_ops())})")
            filled = copy.copy(layer)
            filled.attrs = dict(layer.attrs)
            layer.opdef.check_attrs(filled)
            is_frozen = bool(layer.meta.get("frozen")) or layer.name in frozen
            names = []
            for pname, param in layer.params.items():
                key = param_key(layer.name, pname)
                t = torch.from_numpy(np.array(_dense(layer, pname, param), dtype=np.float32))
                if (layer.op, pname) in STATS:
                    self.register_buffer(key, t)
                else:
                    self.register_parameter(key, nn.Parameter(t, requires_grad=not is_frozen))
                names.append((pname, key))
            self._steps.append((filled, fn, names, is_frozen))
        self._last_use = self._plan()
        if mask_zeros:
            for key, p in self.ir_parameters().items():
                if not bool((p != 0).all()):
                    self.set_mask(key, (p != 0).to(p.dtype))

    # ---- names ------------------------------------------------------------------------------
    def ir_parameters(self) -> dict[str, nn.Parameter]:
        """Trainable-kind params by `layer/param` (masks excluded)."""
        return dict(self._parameters)

    def ir_tensors(self) -> dict[str, torch.Tensor]:
        """Every IR param (parameters and statistics buffers) by `layer/param`."""
        out = dict(self._parameters)
        out.update({k: b for k, b in self._buffers.items() if not k.startswith("mask:")})
        return out

    # ---- freezing ---------------------------------------------------------------------------
    def freeze(self, layers: Iterable[str], frozen: bool = True) -> None:
        """(Un)freeze the named layers: their params stop (start) taking gradients."""
        layers = set(layers)
        unknown = layers - {s[0].name for s in self._steps}
        if unknown:
            raise CococError(f"cannot freeze {', '.join(sorted(unknown))}: no such layer")
        for i, (layer, fn, names, was) in enumerate(self._steps):
            if layer.name in layers:
                self._steps[i] = (layer, fn, names, frozen)
                for _, key in names:
                    if key in self._parameters:
                        self._parameters[key].requires_grad_(not frozen)

    def frozen_layers(self) -> list[str]:
        return [s[0].name for s in self._steps if s[3]]

    # ---- attributes -------------------------------------------------------------------------
    def layer_names(self, op: str | None = None) -> list[str]:
        """The lowered layers (all, or those of IR op `op`), in execution order."""
        return [s[0].name for s in self._steps if op is None or s[0].op == op]

    def attrs(self, layer: str) -> dict:
        """A copy of `layer`'s attributes as the module runs them (defaults filled)."""
        return dict(self._step(layer)[0].attrs)

    def set_attrs(self, layer: str, **attrs) -> None:
        """Change attributes of a lowered layer for the following forward passes, e.g. a
        dropout ratio that node pruning scales during training (Scalpel eq. 8). The IR graph is
        untouched: the module runs a copy of each layer."""
        filled = self._step(layer)[0]
        unknown = [k for k in attrs if k not in filled.opdef.attrs]
        if unknown:
            raise filled.error(f"unknown attribute '{unknown[0]}' for {filled.op} "
                               f"(known: {', '.join(filled.opdef.attrs) or 'none'})")
        filled.attrs.update(attrs)

    def _step(self, layer: str):
        for s in self._steps:
            if s[0].name == layer:
                return s
        raise CococError(f"no layer '{layer}' in the module (layers: {', '.join(self.layer_names())})")

    # ---- masks ------------------------------------------------------------------------------
    def set_mask(self, key: str, mask, axis: int | None = None) -> None:
        """Mask param `key`: `mask` has the param's shape (element mask), or, with `axis`, one
        entry per index along that axis (channel mask: axis 0 of a conv weight = filters)."""
        p = self._parameters.get(key)
        if p is None:
            raise CococError(f"cannot mask '{key}': no such trainable param")
        m = torch.as_tensor(np.asarray(mask), dtype=p.dtype).clone()
        if axis is not None:
            if m.dim() != 1 or m.numel() != p.shape[axis]:
                raise CococError(f"channel mask for '{key}' along axis {axis} needs {p.shape[axis]} "
                                 f"entries, got shape {list(m.shape)}")
            m = m.reshape([-1 if i == axis else 1 for i in range(p.dim())])
        elif tuple(m.shape) != tuple(p.shape):
            raise CococError(f"mask for '{key}' has shape {list(m.shape)}, the param is {list(p.shape)}")
        name = "mask:" + key
        self.register_buffer(name, m)
        self._masks[key] = name
        if key not in self._hooks:  # gradients of masked entries are zero
            self._hooks[key] = p.register_hook(lambda g, key=key: g * self._buffers[self._masks[key]])
        with torch.no_grad():
            p.mul_(m)

    def set_channel_mask(self, layer: str, keep, axis: int = 0) -> None:
        """Mask the output channels of `layer` (weight and bias along `axis`): Scalpel node pruning."""
        keys = [param_key(layer, n) for n in ("weight", "bias") if param_key(layer, n) in self._parameters]
        if not keys:
            raise CococError(f"cannot mask channels of '{layer}': it has no weight/bias params")
        for key in keys:
            self.set_mask(key, keep, axis=axis if key.endswith("/weight") else 0)

    def clear_mask(self, key: str) -> None:
        name = self._masks.pop(key, None)
        if name is not None:
            del self._buffers[name]
            self._hooks.pop(key).remove()

    def masks(self) -> dict[str, torch.Tensor]:
        return {k: self._buffers[n] for k, n in self._masks.items()}

    @torch.no_grad()
    def apply_masks(self) -> None:
        """Zero the masked entries again (after an optimizer step moved them)."""
        for key, name in self._masks.items():
            self._parameters[key].mul_(self._buffers[name])

    # ---- running ----------------------------------------------------------------------------
    def _plan(self) -> dict[str, int]:
        last: dict[str, int] = {}
        for i, (layer, *_rest) in enumerate(self._steps):
            for v in layer.inputs:
                last[v.name] = i
        return last

    def forward(self, *inputs, taps: Iterable[str] | None = None):
        """Run the graph. Inputs: tensors in graph-input order, or one dict name -> tensor.

        Returns the output (a tuple if the graph has several); with `taps`, returns
        `(outputs, {name: tensor})` with the tapped values as well.
        """
        env = self._bind(inputs)
        tap_names = [str(t).lstrip("%") for t in (taps or ())]
        keep = set(self._outputs) | set(tap_names)
        ctx = Ctx(training=self.training, bn_momentum=self.bn_momentum)
        for i, (layer, fn, names, frozen) in enumerate(self._steps):
            try:
                xs = [env[v.name] for v in layer.inputs]
            except KeyError as e:
                raise layer.error(f"reads %{e.args[0]}, which no earlier layer computes") from None
            p = {pn: self._parameters[k] if k in self._parameters else self._buffers[k] for pn, k in names}
            ctx.frozen = frozen
            ys = fn(layer, xs, p, ctx)
            for v, y in zip(layer.outputs, ys):
                env[v.name] = y
            for v in layer.inputs:
                if self._last_use.get(v.name) == i and v.name not in keep:
                    env.pop(v.name, None)
        missing = [n for n in keep if n not in env]
        if missing:
            raise CococError(f"cannot read %{missing[0]}: the graph has no such value")
        outs = [env[n] for n in self._outputs]
        out = outs[0] if len(outs) == 1 else tuple(outs)
        if taps is None:
            return out
        return out, {n: env[n] for n in tap_names}

    def _bind(self, inputs) -> dict[str, torch.Tensor]:
        if len(inputs) == 1 and isinstance(inputs[0], Mapping):
            given = {str(k).lstrip("%"): v for k, v in inputs[0].items()}
            missing = [n for n in self._inputs if n not in given]
            if missing:
                raise CococError(f"graph input %{missing[0]} not given (inputs: {', '.join(self._inputs)})")
            return {n: torch.as_tensor(given[n]) for n in self._inputs}
        if len(inputs) != len(self._inputs):
            raise CococError(f"the graph has {len(self._inputs)} inputs, got {len(inputs)} tensors")
        return {n: torch.as_tensor(x) for n, x in zip(self._inputs, inputs)}


def _dense(layer, pname: str, param: Param) -> np.ndarray:
    try:
        return param.dense()
    except CococError as e:
        raise layer.error(f"param '{pname}': {e.message}") from None


def _resolve(by_name, name):
    name = str(name).lstrip("%")
    if name not in by_name:
        raise CococError(f"no value named %{name} in the graph")
    return by_name[name]


def to_torch(graph: Graph, *, frozen: Iterable[str] = (), outputs: Iterable[str] | None = None,
             mask_zeros: bool = False, bn_momentum: float = 0.1) -> GraphModule:
    """A `GraphModule` running `graph` (in eval mode; call `.train()` to train).

    `frozen`: layer names to freeze (besides `layer.meta["frozen"]`); `outputs`: value names
    to return instead of the graph's outputs (the trainer takes the logits before a softmax);
    `mask_zeros`: mask every param's exact zeros (retraining keeps already pruned weights at zero).
    """
    return GraphModule(graph, frozen=frozen, outputs=outputs, mask_zeros=mask_zeros,
                       bn_momentum=bn_momentum).eval()


def state_arrays(module: GraphModule) -> dict[str, np.ndarray]:
    """Every IR param of the module as a numpy array, by `layer/param` (what weights files hold)."""
    return {k: t.detach().cpu().numpy().copy() for k, t in module.ir_tensors().items()}


def copy_back(module: GraphModule, graph: Graph) -> Graph:
    """Write the module's (trained) values into `graph`'s Params, by layer and param name.

    A compressed param (e.g. simd_group) comes back dense: re-run the compression pass after
    training. Returns `graph`.
    """
    for key, arr in state_arrays(module).items():
        lname, pname = split_key(key)
        layer = graph.layer(lname)
        old = layer.params.get(pname)
        if old is None:
            raise layer.error(f"has no param '{pname}' to copy back into")
        if tuple(old.shape) != arr.shape:
            raise layer.error(f"param '{pname}' is {list(old.shape)} in the graph, {list(arr.shape)} in the module")
        dtype = old.type.np_dtype if old.format == "dense" else np.float32
        layer.params[pname] = Param(old.type, arr.astype(dtype), attrs=old.attrs)
    return graph
