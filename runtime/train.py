"""Training with Caffe's solver semantics: one engine for every pruning method's retraining.

`train(graph, solver, data)` runs Caffe's loop (caffe/src/caffe/solver.cpp): at iteration
`it` test if `it % test_interval == 0` (iteration 0 included), compute the loss on one batch,
update with `lr_at(it)`, then count the iteration and snapshot when `it % snapshot == 0`. The
loss is softmax cross-entropy on the graph's logits (the input of a final softmax); pass
`loss=` for others (teacher-student).

Reproducibility is by construction: the batch of iteration `it` is a pure function of
(seed, it) (per-epoch permutations of the training set), and a snapshot holds the weights,
the optimizer history and torch's RNG state (dropout), so a resumed run continues bit for bit
where the uninterrupted one would be. Snapshots are two safetensors files, as Caffe's
.caffemodel/.solverstate pair: `<prefix>_iter_N.safetensors` (weights, keys `layer/param`,
what `--weights` reads) and `<prefix>_iter_N.solverstate.safetensors` (history and RNG; the
iteration, solver type and seed in its metadata).
"""
from __future__ import annotations

import csv
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import safetensors
import safetensors.numpy
import safetensors.torch
import torch
import torch.nn.functional as F
from tqdm import tqdm

from cococ.ir.core import CococError, Graph
from cococ.runtime.data import Dataset, load_data
from cococ.runtime.torch.module import GraphModule, copy_back, state_arrays, to_torch
from cococ.runtime.torch.optim import CaffeOptimizer, caffe_mults, lr_at

WEIGHTS_FORMAT = "cococ-weights"
STATE_FORMAT = "cococ-solverstate"


@dataclass
class TrainResult:
    graph: Graph                     # the graph, with the trained params copied back
    module: GraphModule
    train_log: list[dict] = field(default_factory=list)   # one row per iteration
    test_log: list[dict] = field(default_factory=list)    # one row per test
    seconds: float = 0.0
    snapshots: list[str] = field(default_factory=list)
    stopped_at: int | None = None    # the iteration `stop` ended training at (None: ran to max_iter)

    @property
    def accuracy(self) -> float:
        return self.test_log[-1]["accuracy"] if self.test_log else float("nan")

    @property
    def losses(self) -> list[float]:
        return [r["loss"] for r in self.train_log]


# ---- logits, evaluation -----------------------------------------------------------------------

def logits_value(graph: Graph) -> str:
    """The value to train on: the graph's output, or the input of a final softmax over classes."""
    if len(graph.outputs) != 1:
        raise CococError(f"training needs a graph with one output, this one has {len(graph.outputs)}")
    out = graph.outputs[0]
    p = out.producer
    if p is not None and p.op == "softmax" and p.attrs.get("axis", 1) in (1, -1):
        return p.inputs[0].name
    return out.name


@torch.no_grad()
def evaluate(module: GraphModule, x: np.ndarray, y: np.ndarray, batch_size: int = 256,
             num_classes: int | None = None) -> dict:
    """Loss, top-1 and top-5 accuracy and the confusion matrix (rows: true, columns: predicted)."""
    was = module.training
    module.eval()
    logits = []
    for i in range(0, len(x), batch_size):
        logits.append(_logits(module(torch.from_numpy(x[i:i + batch_size]))))
    module.train(was)
    z = torch.cat(logits)
    if z.dim() != 2:
        raise CococError(f"the network's output is {list(z.shape)}, expected [N, classes] logits")
    t = torch.from_numpy(y)
    k = max(z.shape[1], num_classes or 0)
    if int(t.max()) >= z.shape[1]:
        raise CococError(f"labels go up to {int(t.max())}, the network has {z.shape[1]} outputs")
    pred = z.argmax(1)
    conf = np.zeros((k, k), np.int64)
    np.add.at(conf, (y, pred.numpy()), 1)
    top5 = z.topk(min(5, z.shape[1]), 1).indices.eq(t[:, None]).any(1).double().mean().item()
    return {"loss": F.cross_entropy(z, t).item(), "accuracy": pred.eq(t).double().mean().item(),
            "top5": top5, "confusion": conf, "n": len(y)}


def _logits(out):
    return out[0] if isinstance(out, tuple) else out


def batch_indices(n: int, batch: int, it: int, seed: int) -> np.ndarray:
    """Indices of iteration `it`'s batch: a stream of per-epoch permutations, cut every `batch`."""
    start, idx = it * batch, []
    while len(idx) < batch:
        epoch, off = divmod(start, n)
        perm = np.random.default_rng([seed, epoch]).permutation(n)
        take = perm[off:off + batch - len(idx)]
        idx.extend(take.tolist())
        start += len(take)
    return np.asarray(idx)


# ---- weights and snapshots --------------------------------------------------------------------

def save_weights(source: GraphModule | Graph, path, metadata: dict | None = None) -> Path:
    """Write params as safetensors, keys `layer/param` (frontend.weights.load_weights reads it)."""
    if isinstance(source, Graph):
        arrays = {f"{l.name}/{k}": np.ascontiguousarray(p.dense()) for l in source.layers for k, p in l.params.items()}
    else:
        arrays = {k.replace("%2E", "."): v for k, v in state_arrays(source).items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"format": WEIGHTS_FORMAT, **{k: str(v) for k, v in (metadata or {}).items()}}
    safetensors.numpy.save_file(arrays, str(path), metadata=meta)
    return path


def _read_safetensors(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    try:
        with safetensors.safe_open(str(path), framework="numpy") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
    except Exception as e:
        raise CococError(f"{path}: cannot read as safetensors ({type(e).__name__}: {e})") from None


def snapshot_paths(prefix, it: int) -> tuple[Path, Path]:
    base = f"{prefix}_iter_{it}"
    return Path(base + ".safetensors"), Path(base + ".solverstate.safetensors")


def save_snapshot(prefix, it: int, module: GraphModule, opt: CaffeOptimizer, seed: int) -> Path:
    wpath, spath = snapshot_paths(prefix, it)
    save_weights(module, wpath, {"iter": it})
    state = {k: t.detach().contiguous() for k, t in opt.state_tensors().items()}
    state["rng/torch"] = torch.get_rng_state()
    meta = {"format": STATE_FORMAT, "iter": str(it), "type": opt.type, "seed": str(seed), "weights": wpath.name}
    safetensors.torch.save_file(state, str(spath), metadata=meta)
    return spath


def load_snapshot(path, module: GraphModule, opt: CaffeOptimizer) -> int:
    """Restore weights, optimizer history and RNG from a snapshot (either file of the pair);
    returns the iteration to continue from."""
    path = Path(path)
    spath = path if path.name.endswith(".solverstate.safetensors") else Path(
        str(path).removesuffix(".safetensors") + ".solverstate.safetensors")
    if not spath.exists():
        raise CococError(f"{spath}: no such solver state (resume takes <prefix>_iter_N[.solverstate].safetensors)")
    state, meta = _read_safetensors(spath)
    if meta.get("format") != STATE_FORMAT:
        raise CococError(f"{spath}: not a cococ solver state (format {meta.get('format')!r})")
    if meta.get("type") != opt.type:
        raise CococError(f"{spath}: saved by a {meta.get('type')} solver, resuming with {opt.type}")
    wpath = spath.with_name(meta.get("weights", ""))
    weights, _ = _read_safetensors(wpath)
    tensors = module.ir_tensors()
    for key, t in tensors.items():
        name = key.replace("%2E", ".")
        if name not in weights or tuple(weights[name].shape) != tuple(t.shape):
            raise CococError(f"{wpath}: no {name} of shape {list(t.shape)} (a snapshot of another net?)")
        with torch.no_grad():
            t.copy_(torch.from_numpy(weights[name]))
    opt.load_state_tensors({k: torch.from_numpy(v) for k, v in state.items()}, where=str(spath))
    torch.set_rng_state(torch.from_numpy(state["rng/torch"]))
    module.apply_masks()
    return int(meta["iter"])


# ---- the loop ---------------------------------------------------------------------------------

def train(graph: Graph, solver, data: Dataset | str, *, max_iter: int | None = None, seed: int | None = None,
          batch_size: int | None = None, test_batch_size: int | None = None, resume=None,
          snapshot_prefix=None, log_prefix=None, plot: bool = False, progress: bool = True,
          frozen=(), module: GraphModule | None = None,
          loss: Callable[[GraphModule, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None,
          threads: int | None = None, stop: Callable[[int, float], bool] | None = None) -> TrainResult:
    """Train `graph` with `solver` (frontend.solver.Solver) on `data`; copy the result back into it.

    `max_iter`/`seed`/`snapshot_prefix` override the solver's. `resume`: a snapshot to continue.
    `log_prefix`: write `<prefix>.csv`, `<prefix>.json` (and `<prefix>.png` with `plot`).
    `loss(module, x, y) -> (loss, logits)` replaces softmax cross-entropy. `module`: train
    this module (masks, freezing already set) instead of a fresh one. `stop(it, accuracy)`, called
    after each test before `max_iter`, ends training there when it returns True (the search's early
    stop: runtime/explore/earlystop.py); that test is then the last row of `test_log`.
    """
    t0 = time.perf_counter()
    seed = _seed(solver, seed)
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    max_iter = int(solver.max_iter if max_iter is None else max_iter)
    batch = int(batch_size or getattr(solver, "batch_size", None) or 64)
    test_batch = int(test_batch_size or getattr(solver, "test_batch_size", None) or 100)
    in_shape = graph.inputs[0].type.shape if graph.inputs[0].type else graph.layers[0].attrs["shape"]
    ds = data if isinstance(data, Dataset) else load_data(data, in_shape)
    if module is None:
        module = to_torch(graph, frozen=frozen, outputs=None if loss else [logits_value(graph)])
    opt = CaffeOptimizer(module.ir_parameters(), solver, caffe_mults(graph, module))
    start = load_snapshot(resume, module, opt) if resume else 0
    prefix = snapshot_prefix if snapshot_prefix is not None else getattr(solver, "snapshot_prefix", None)
    snap_every = int(getattr(solver, "snapshot", 0) or 0)
    test_interval = int(getattr(solver, "test_interval", 0) or 0)
    iter_size = int(getattr(solver, "iter_size", 1) or 1)
    x_test, y_test = ds.test_arrays()
    n_test = len(y_test)
    if getattr(solver, "test_iter", None):  # Caffe: test_iter batches; never more than the test set
        n_test = min(n_test, int(_first(solver.test_iter)) * test_batch)
    result = TrainResult(graph, module)

    def run_test(it):
        r = evaluate(module, x_test[:n_test], y_test[:n_test], test_batch, ds.num_classes)
        result.test_log.append({"iter": it, "loss": r["loss"], "accuracy": r["accuracy"], "top5": r["top5"]})
        return r

    module.train()
    bar = _progress(range(start, max_iter), progress, initial=start, total=max_iter)
    acc = float("nan")
    for it in bar:
        if test_interval and it % test_interval == 0 and (it > 0 or _flag(solver, "test_initialization", True)):
            acc = run_test(it)["accuracy"]
            module.train()
            if stop is not None and stop(it, acc):
                result.stopped_at = it
                break
        lr = lr_at(solver, it)
        opt.zero_grad()
        total = 0.0
        for k in range(iter_size):  # Caffe's iter_size: gradients of several batches, averaged
            idx = batch_indices(len(ds.y_train), batch, it * iter_size + k, seed)
            xb, yb = ds.train_batch(idx, np.random.default_rng([seed, it, k]))
            x, y = torch.from_numpy(xb), torch.from_numpy(yb)
            if loss is None:
                z = _logits(module(x))
                value = F.cross_entropy(z, y)
            else:
                value, z = loss(module, x, y)
            if not torch.isfinite(value):
                raise CococError(f"training diverged at iteration {it}: loss is {value.item()} (lower base_lr?)")
            (value / iter_size).backward()
            total += value.item() / iter_size
        opt.step(it, lr)
        module.apply_masks()
        row = {"iter": it, "lr": lr, "loss": total}
        if z is not None and z.dim() == 2:
            row["accuracy"] = (z.argmax(1) == y).float().mean().item()
        result.train_log.append(row)
        if snap_every and prefix and (it + 1) % snap_every == 0:
            result.snapshots.append(str(save_snapshot(prefix, it + 1, module, opt, seed)))
        if hasattr(bar, "set_postfix") and (it % 10 == 0 or it + 1 == max_iter):
            bar.set_postfix(loss=f"{row['loss']:.4f}", acc=f"{acc:.4f}", lr=f"{lr:.3g}", refresh=False)
    if loss is None and result.stopped_at is None:
        run_test(max_iter)
    if prefix and getattr(solver, "snapshot_after_train", True) and snap_every and max_iter % snap_every \
            and max_iter > start and result.stopped_at is None:
        result.snapshots.append(str(save_snapshot(prefix, max_iter, module, opt, seed)))
    module.eval()
    copy_back(module, graph)
    result.seconds = time.perf_counter() - t0
    if log_prefix:
        write_logs(result, log_prefix, solver, seed, plot)
    return result


def _seed(solver, seed) -> int:
    if seed is not None:
        return int(seed)
    s = getattr(solver, "random_seed", None)
    return int(s) if s is not None and int(s) >= 0 else 0  # Caffe's -1 (unseeded) -> 0: runs repeat


def _flag(solver, name: str, default: bool) -> bool:
    """A boolean solver option, as an attribute or in the parsed Solver's `extra` (true/false)."""
    v = getattr(solver, name, None)
    if v is None:
        v = (getattr(solver, "extra", None) or {}).get(name)
    return default if v is None else str(v).lower() not in ("false", "0")


def _first(v):
    return v[0] if isinstance(v, (list, tuple)) else v


def _progress(it, on: bool, **kw):
    if not on:
        return it
    return tqdm(it, desc="train", unit="it", dynamic_ncols=True, leave=True, mininterval=0.5, **kw)


# ---- logs and plots ---------------------------------------------------------------------------

def write_logs(result: TrainResult, prefix, solver=None, seed: int | None = None, plot: bool = False) -> list[Path]:
    """`<prefix>.csv` (one row per iteration, test columns where a test ran), `<prefix>.json`,
    and with `plot` `<prefix>.png` (loss and accuracy against iterations)."""
    prefix = Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    tests = {r["iter"]: r for r in result.test_log}
    csv_path, json_path = prefix.with_name(prefix.name + ".csv"), prefix.with_name(prefix.name + ".json")
    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["iter", "lr", "loss", "accuracy", "test_loss", "test_accuracy"])
        rows = {r["iter"]: r for r in result.train_log}
        for it in sorted(set(rows) | set(tests)):
            r, t = rows.get(it, {}), tests.get(it, {})
            w.writerow([it, r.get("lr", ""), r.get("loss", ""), r.get("accuracy", ""), t.get("loss", ""),
                        t.get("accuracy", "")])
    solver_d = {k: v for k, v in vars(solver).items() if isinstance(v, (int, float, str, list, type(None)))} \
        if solver is not None and hasattr(solver, "__dict__") else {}
    json_path.write_text(json.dumps({"seed": seed, "seconds": result.seconds, "solver": solver_d,
                                     "train": result.train_log, "test": result.test_log}, indent=1))
    paths = [csv_path, json_path]
    if plot:
        paths.append(plot_curves(result, prefix.with_name(prefix.name + ".png")))
    return paths


def plot_curves(result: TrainResult, path) -> Path:
    import matplotlib  # local: loads only when a plot is drawn, and Agg must be chosen before pyplot
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    tr = result.train_log
    a1.plot([r["iter"] for r in tr], [r["loss"] for r in tr], lw=0.6, label="train loss")
    if result.test_log:
        a1.plot([r["iter"] for r in result.test_log], [r["loss"] for r in result.test_log], "o-", label="test loss")
        a2.plot([r["iter"] for r in result.test_log], [r["accuracy"] for r in result.test_log], "o-", label="test accuracy")
    a1.set_xlabel("iteration"), a1.set_ylabel("loss"), a1.set_yscale("log"), a1.legend()
    a2.set_xlabel("iteration"), a2.set_ylabel("accuracy"), a2.set_ylim(0, 1), a2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
