"""Scalpel's iterative SIMD-aware weight pruning (seed 004 §3.3): prune, retrain, re-measure.

A driver, not a single rewrite: it trains. `simd_prune(graph, solver, data, target=...)`

1. estimates each FC/conv layer's time on the target (cost.py: dense cycles from its MACs
   and the measured dense kernel, sparse cycles from the measured sparse/dense ratio at the
   layer's sparsity — both read from the package data backends/kernels/data/sparse-breakeven-
   <target>.json (backends/kernels/choice.py), written by benchmarks/sparse_breakeven.py);
2. visits the layers slowest first; for each it raises the group-pruning threshold (the RMS of
   the `width`-groups, width = the target's SIMD lanes, under int8 the width the int8
   break-even table chooses: cost.simd_width) step by step — each step is the RMS
   quantile that removes the next fraction of `steps` — and after every step retrains with
   element masks keeping all removed groups at zero (runtime/train.train on a GraphModule
   whose masks are set: training.retrain) and re-measures the test accuracy;
3. a step whose retrained accuracy falls more than `max_drop` (percentage points) below the
   unpruned model's gets a second chance (`StepPolicy`: retrained again from where it stands,
   2× the iterations — one short retraining moves a small test set's accuracy by about as much
   as the tolerance); if it still fails it is undone and the sparsity half-way to the last
   accepted step is tried, then the failed step again (at most 2 such back-offs per layer);
   the first failure with no back-off left finishes the layer and the next slowest follows;
4. a layer whose kernel never breaks even at any measured sparsity (the int8 conv kernels
   on the M4: sparse-breakeven-mm-int8-m4.json) is not pruned at all, with a warning naming
   it (`cannot_pay`); one whose accepted sparsity stays under the kernel's measured break-even is reverted
   to its state before its turn (it would be slower compressed: the report says so, and
   `warnings` names it) — cococ never stores a weight in a format that is slower than dense;
5. during retraining a dropout after a pruned layer runs at D_r = D_o·sqrt(C_ir/C_io)
   (Han et al., as Scalpel), C = the layer's connections (retained / original).

The result: the graph with `simd_group` weights for the layers that gained, and a `Report`
(`graph.meta["scalpel"]`) with accuracy before/after, per-layer sparsity, threshold and
estimated cycles dense vs sparse.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from cococ.ir.core import Graph, Layer
from cococ.ir.formats import compress, matrix_shape, sparsity as param_sparsity
from cococ.ir.verify import infer_shapes
from cococ.passes.simd_group import group_rms, weight_layers
from cococ.runtime.compress.cost import kernel_model, layer_macs, simd_width
from cococ.runtime.compress.training import accuracy, decision_dataset, retrain

DEFAULT_STEPS = (0.5, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97)


# ---- report -----------------------------------------------------------------------------------

@dataclass
class LayerReport:
    layer: str
    macs: int
    dense_time: float
    sparse_time: float              # at the final sparsity (== dense_time when kept dense)
    sparsity: float = 0.0           # of the stored weight (0 when kept dense)
    threshold: float = 0.0          # RMS threshold of the last accepted step
    tried: float = 0.0              # the highest sparsity accepted by retraining
    format: str = "dense"
    note: str = ""
    bytes_dense: int = 0            # the weight as stored dense
    bytes_stored: int = 0           # as stored after pruning (values + indices)


@dataclass
class Report:
    target: str
    width: int
    accuracy_before: float
    accuracy_after: float = float("nan")
    max_drop: float = 0.5
    layers: list[LayerReport] = field(default_factory=list)
    breakeven: float = 0.0
    cost_source: str = ""
    unit: str = "cycles"
    warnings: list[str] = field(default_factory=list)
    steps: list[dict] = field(default_factory=list)

    @property
    def dense_time(self) -> float:
        return sum(l.dense_time for l in self.layers)

    @property
    def sparse_time(self) -> float:
        return sum(l.sparse_time for l in self.layers)

    @property
    def size_ratio(self) -> float:
        """Stored weight bytes (values + indices) over dense, FC/conv weights only."""
        d = sum(l.bytes_dense for l in self.layers)
        return sum(l.bytes_stored for l in self.layers) / d if d else float("nan")

    @property
    def speedup(self) -> float:
        return self.dense_time / self.sparse_time if self.sparse_time else float("nan")

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(dense_time=self.dense_time, sparse_time=self.sparse_time, speedup=self.speedup,
                 size_ratio=self.size_ratio)
        return d

    def table(self) -> str:
        u = self.unit
        lines = [f"{'layer':<12}{'MACs':>10}{'sparsity':>10}{'dense ' + u:>16}{'sparse ' + u:>16}  format  note"]
        for l in self.layers:
            lines.append(f"{l.layer:<12}{l.macs:>10,}{l.sparsity:>10.1%}{l.dense_time:>16,.0f}"
                         f"{l.sparse_time:>16,.0f}  {l.format:<6}  {l.note}")
        lines.append(f"accuracy {self.accuracy_before:.2%} -> {self.accuracy_after:.2%}; estimated speedup "
                     f"{self.speedup:.2f}x on {self.target}, weights {self.size_ratio:.1%} of dense ({self.cost_source})")
        return "\n".join(lines)


# ---- masks, dropout ---------------------------------------------------------------------------

def element_mask(shape, keep: np.ndarray, width: int) -> np.ndarray:
    """The [shape] 0/1 mask of the weights in the kept groups (`keep`: [rows, ngroups])."""
    rows, cols = matrix_shape(tuple(shape))
    return np.repeat(keep, width, axis=1)[:, :cols].reshape(shape).astype(np.float32)


def dropouts_after(graph: Graph, layer: Layer) -> list[Layer]:
    """Dropout layers fed by `layer` through activations and inference aliases (the dropout of its output)."""
    users = graph.users_map()
    out, frontier = [], [layer.output]
    while frontier:
        v = frontier.pop()
        for u in users.get(id(v), []):
            if u.op == "dropout":
                out.append(u)
            elif u.opdef.activation or u.opdef.alias:
                frontier.append(u.output)
    return out


def adjust_dropout(graph: Graph, layer: Layer, kept_fraction: float) -> None:
    """D_r = D_o·sqrt(C_ir/C_io) on the dropouts after `layer` (D_o kept in meta)."""
    for d in dropouts_after(graph, layer):
        d_o = d.meta.setdefault("dropout_original", float(d.attrs.get("ratio", 0.5)))
        d.attrs["ratio"] = d_o * math.sqrt(max(kept_fraction, 0.0))


# ---- one layer's steps: retrain, judge, retry, back off -----------------------------------------

@dataclass
class StepPolicy:
    """What a failed step gets before it ends the layer's turn.

    Measured on LeNet-5 / digits (360 test images, the floor one image under the unpruned
    model): after 100 retraining iterations the same step lands anywhere in about ±2 images
    by the retraining seed, after 300 higher and tighter (ip1 at 90%, 4 seeds: 349–353 of 360
    images after 100 iterations, 352–354 after 300). A single unlucky retraining used to end
    the layer (LeNet-5's ip1 stayed dense at its first step, 50%), so a failed step is
    (1) retrained `retries` more times from where it stands, each `retry_factor` × the
    iterations (the accuracy a step can reach is what is judged, not one short run's luck), and
    (2) if it still fails, it is undone and the sparsity half-way between the last accepted and
    the failed one is tried; once that holds, the schedule resumes at the failed step (the net
    is now adapted to a sparsity closer to it) — as node pruning shrinks its share after a
    failure and goes on. `backoffs` bounds the half-way steps per layer (none when the half-way
    step would be closer than `min_gap` to either end); the layer ends at the first failure with
    none left. Every accepted state
    was measured as it is adopted, so the final accuracy is within the floor by construction.
    """
    retries: int = 1
    retry_factor: int = 2
    backoffs: int = 2
    min_gap: float = 0.02


def prune_layer(graph: Graph, name: str, steps, mask_for, masks: dict, solver, ds, floor: float,
                retrain_iter: int, seed: int, policy: StepPolicy, record, say, label: str = "scalpel"):
    """Raise layer `name`'s pruned fraction through `steps`; `mask_for(s) -> (mask, info) | None`
    gives the element mask removing fraction `s` (of the weights before the layer's turn). Each
    step is applied to a clone, retrained with `masks` + its own mask and judged against `floor`
    (test accuracy); a failed step gets `policy`'s retries and back-offs; the clone of an accepted
    step is adopted into `graph` (weights, dropout ratio), a failed one is dropped, so an undo
    restores exactly the last accepted weights and masks. `record(dict)` gets every step tried.
    Returns (graph, seed, accepted fraction, its mask or None, its info)."""
    queue, last, best, backoffs = list(steps), 0.0, (None, None), policy.backoffs
    while queue:
        s = queue.pop(0)
        if s <= last:
            continue
        got = mask_for(s)
        if got is None:
            break
        m, info = got
        trial = graph.clone()
        tl = trial.layer(name)
        tl.params["weight"] = type(tl.params["weight"]).from_array(tl.params["weight"].dense() * m)
        adjust_dropout(trial, tl, float(m.mean()))
        its, tries = retrain_iter, 0
        while True:
            seed += 1
            acc = retrain(trial, solver, ds, {**masks, name: m}, its, seed)
            ok = acc >= floor
            rec = {"layer": name, "sparsity": float(1 - m.mean()), "step": float(s), "retry": tries,
                   "iterations": its, "accuracy": acc, "accepted": ok, **info}
            record(rec)
            say(f"{label}: {name} {rec['sparsity']:.1%} pruned, {its} its{' (retry)' if tries else ''}, "
                f"accuracy {acc:.2%} ({'kept' if ok else 'below floor'})")
            if ok or tries >= policy.retries:
                break
            tries, its = tries + 1, retrain_iter * policy.retry_factor
        if ok:
            graph = _adopt(graph, trial)
            last, best = s, (m, info)
            continue
        if backoffs > 0 and s - last >= 2 * policy.min_gap:
            backoffs -= 1
            queue = [last + (s - last) / 2, s] + queue   # half-way, then the failed step again
            continue
        break
    return graph, seed, last, best[0], best[1]


# ---- the loop ---------------------------------------------------------------------------------

def simd_prune(graph: Graph, solver, data, *, target: str = "arm-m4", dtype: str = "q15", width: int = 0,
               max_drop: float = 0.5, steps=DEFAULT_STEPS, retrain_iter: int = 100, layers=(),
               seed: int = 0, log=None, policy: StepPolicy | None = None) -> tuple[Graph, Report]:
    """Scalpel §3.3 on `graph` (trained, dense weights): see the module docstring.

    `max_drop`: tolerated accuracy drop in percentage points; `steps`: the increasing group
    sparsities each layer's threshold is raised to; `retrain_iter`: iterations per retraining;
    `policy`: retries and back-offs of a failed step (`StepPolicy()`; `StepPolicy(0, 1, 0)` is
    the first-failure-ends-the-layer loop); `layers`: restrict to these names. Changes `graph`
    in place and returns it with the report.
    """
    infer_shapes(graph)
    ds = decision_dataset(graph, data)   # accuracies here are on the validation split where there is one
    width = int(width) or simd_width(target, dtype)
    # FC; a conv reads its own (models below); int8 FC layers the int8 table at `width`
    model = kernel_model(target, quant=dtype, width=width)
    models: dict = {}   # (op, output channels) -> model: an int8 conv reads the shape nearest its channels

    def model_of(l: Layer):
        if l.op not in ("dense", "conv2d"):
            return model
        key = (l.op, int(l.params["weight"].shape[0]) if l.op == "conv2d" else None)
        if key not in models:
            models[key] = kernel_model(target, l.op, dtype, width, key[1])
        return models[key]
    policy = policy or StepPolicy()
    say = log or (lambda s: None)
    base = accuracy(graph, ds)
    floor = base - max_drop / 100.0
    rep = Report(target, width, base, max_drop=max_drop, breakeven=model.breakeven,
                 cost_source=model.source, unit=model.unit)
    cand = weight_layers(graph, list(layers))
    est = {l.name: layer_macs(l) * model_of(l).dense_per_mac for l in cand}
    order = sorted(cand, key=lambda l: -est[l.name])
    masks: dict[str, np.ndarray] = {}        # layer -> element mask of what is pruned so far
    keeps: dict[str, np.ndarray] = {}        # layer -> kept groups [rows, ngroups]
    results: dict[str, LayerReport] = {}
    it_seed = seed
    for layer in order:
        name = layer.name
        lr = LayerReport(name, layer_macs(layer), est[name], est[name])
        lr.bytes_dense = lr.bytes_stored = int(layer.params["weight"].nbytes)
        never = cannot_pay(model_of(layer), width, target)
        if never:   # no step of the schedule could make it faster: spend no retraining nor accuracy on it
            lr.note = f"not pruned: {never}"
            rep.warnings.append(f"{name}: {lr.note}")
            say(f"scalpel: {name} {lr.note}")
            results[name] = lr
            continue
        saved = graph.clone()
        w0 = layer.params["weight"].dense()
        rows, cols = matrix_shape(w0.shape)
        rms = group_rms(w0.reshape(rows, cols), width)

        def mask_for(s, rms=rms, w0=w0):
            thr = float(np.quantile(rms, s))
            keep = rms > thr
            return None if keep.sum() == 0 else (element_mask(w0.shape, keep, width), {"threshold": thr})

        graph, it_seed, _, m, info = prune_layer(graph, name, steps, mask_for, masks, solver, ds, floor,
                                                 retrain_iter, it_seed, policy, rep.steps.append, say)
        accepted = 0.0
        if m is not None:
            accepted, lr.threshold = float(1 - m.mean()), info["threshold"]
            masks[name], keeps[name] = m, rms > info["threshold"]
        lr.tried = accepted
        be = model_of(layer).breakeven
        if name in masks and accepted < be:
            lr.note = (f"kept dense: {accepted:.0%} pruned is under the simd_group break-even "
                       f"{be:.0%} on {target} (slower compressed)")
            rep.warnings.append(f"{name}: {lr.note}")
            graph = _adopt(graph, saved)
            masks.pop(name), keeps.pop(name)
        elif name not in masks:
            lr.note = "no pruning step held the accuracy"
        results[name] = lr
    # the final graph: compress what gained, report it
    for name, keep in keeps.items():
        l = graph.layer(name)
        l.params["weight"] = compress(l.params["weight"], "simd_group", width=width, keep=keep)
        sp = param_sparsity(l.params["weight"])
        l.meta["sparsity"] = sp
        r = results[name]
        r.sparsity, r.format = sp, "simd_group"
        r.bytes_stored = int(l.params["weight"].nbytes)
        r.sparse_time = model_of(l).sparse_time(r.dense_time, sp)
    for d in graph.layers:      # inference: dropout is identity, restore the declared ratio
        if d.op == "dropout" and "dropout_original" in d.meta:
            d.attrs["ratio"] = d.meta.pop("dropout_original")
    rep.layers = [results[l.name] for l in cand]
    rep.accuracy_after = accuracy(graph, ds)
    graph.meta["scalpel"] = rep.to_dict()
    return graph, rep


def cannot_pay(m, width: int, target: str) -> str:
    """Why no sparsity can make the layer's simd_group kernel (model `m`) faster than its dense
    one ("" when one can): the measured kernel never breaks even within its table (int8 conv on
    the M4). A break-even above the schedule's last step is left to the revert of point 4."""
    if m.breakeven is None:
        return (f"the simd_group width-{width} kernel is slower than dense on {target} at every measured "
                f"sparsity up to {m.measured_to:.0%} ({m.source})")
    return ""


def _adopt(graph: Graph, other: Graph) -> Graph:
    """Make `graph` hold `other`'s params and attrs (same structure), keeping the object."""
    for l in graph.layers:
        o = other.layer(l.name)
        l.params = dict(o.params)
        l.attrs = dict(o.attrs)
        l.meta = dict(o.meta)
    return graph
