"""Pre-trained tuning blocks (Wootz §6.1–§6.2): the block store and the pre-training driver.

A tuning block is pre-trained once, in a teacher-student graph (passes.teacher_student), and
reused by every network of the promising subspace whose composite vector names it. The
`BlockStore` keeps one safetensors file per block, keyed by the block's module span and rates
(`block_key`, e.g. `res2a@0.3+res2b@0.5`) *and* a hash of the teacher's weights
(`teacher_hash`): a store opened for a retrained or different teacher sees none of the old
blocks, so stale blocks are never reused. Arrays are keyed `layer/param` by the full model's
layer names, which is what `finetune_graph(..., store=...)` reads.

`pretrain(full, plan, data, solver, store, steps=N)` trains the blocks, the teacher frozen,
minimising Σ_pairs 1/|O|·‖O − O'‖² between each student's output and the teacher's value at the
block's exit. By default (`shared_teacher=True`) every group is trained in one run: the
teacher's block outputs are computed once per batch of the stream and feed the students of
every group (`shared_pretrain_graph`); each student's loss and update involve its own weights
only, so the blocks equal those of one run per group (`shared_teacher=False`, Wootz §6.2: one
teacher forward per group and batch) bit for bit (tests/runtime/test_blocks.py), at one teacher
forward per batch instead of one per group. Blocks already in the store are skipped (an
interrupted pre-training resumes), and so are blocks that prune nothing (`needs_training`
False: they are the teacher's own modules).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Mapping

import numpy as np
import torch
from safetensors import safe_open
from safetensors.numpy import save_file

from cococ.frontend.solver import Solver
from cococ.ir.core import CococError, Graph
from cococ.passes.teacher_student import block_key, pretrain_graph, student_params
from cococ.passes.tuning_blocks import BlockPlan, group_blocks
from cococ.runtime.data import Dataset, load_data
from cococ.runtime.torch.module import to_torch
from cococ.runtime.train import train

FORMAT = "cococ-block"

# Wootz §7.1 pre-trains ResNet blocks with a fixed lr 0.2, weight decay 1e-4, batch 32 (plain
# SGD on TF); with Caffe-style momentum 0.9 the same step size is lr 0.02.
DEFAULT_SETTINGS = {"base_lr": 0.02, "momentum": 0.9, "weight_decay": 1e-4, "lr_policy": "fixed",
                    "batch_size": 32, "random_seed": 0}


def teacher_hash(graph: Graph) -> str:
    """A hash of the teacher: its layers' names, ops, modules and every param's bytes."""
    h = hashlib.sha256()
    for layer in graph.layers:
        h.update(f"{layer.name}|{layer.op}|{layer.module}\n".encode())
        for pname, p in layer.params.items():
            a = np.ascontiguousarray(p.dense())
            h.update(f"{pname}|{a.dtype}|{list(a.shape)}\n".encode())
            h.update(a.tobytes())
    return h.hexdigest()[:16]


def _safe(key: str) -> str:
    """A file-name form of a block key; a digest keeps distinct keys distinct."""
    s = re.sub(r"[^A-Za-z0-9@+._-]", "_", key)
    if len(s) > 120:
        s = s[:120]
    return f"{s}-{hashlib.sha1(key.encode()).hexdigest()[:8]}"


class BlockStore:
    """Pre-trained blocks of one teacher, one safetensors file per block in `directory`.

    `get(key)` -> `{layer/param: array}` or None, `put(key, arrays, meta)`, `keys()`,
    `key in store`, `meta(key)`. Keys are `block_key(full, block)`; the file name adds the
    teacher hash, so blocks of another teacher never match.
    """

    def __init__(self, directory, teacher_hash: str):
        self.directory = Path(directory)
        self.teacher_hash = str(teacher_hash)
        self._cache: dict[str, dict[str, np.ndarray]] = {}

    def __repr__(self) -> str:
        return f"BlockStore({str(self.directory)!r}, teacher {self.teacher_hash})"

    def path(self, key: str) -> Path:
        """The file of block `key` for this store's teacher."""
        return self.directory / f"{_safe(key)}.{self.teacher_hash}.safetensors"

    def __contains__(self, key: str) -> bool:
        return key in self._cache or self.path(key).exists()

    def _read(self, path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
        try:
            with safe_open(str(path), framework="numpy") as f:
                return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
        except Exception as e:
            raise CococError(f"{path}: cannot read as a block file ({type(e).__name__}: {e})") from None

    def get(self, key: str) -> dict[str, np.ndarray] | None:
        if key in self._cache:
            return dict(self._cache[key])
        path = self.path(key)
        if not path.exists():
            return None
        arrays, meta = self._read(path)
        if meta.get("format") != FORMAT or meta.get("key") != key or meta.get("teacher") != self.teacher_hash:
            return None  # a name clash or a foreign file: never hand out a wrong block
        self._cache[key] = arrays
        return dict(arrays)

    def meta(self, key: str) -> dict[str, str] | None:
        path = self.path(key)
        if not path.exists():
            return None
        return self._read(path)[1]

    def put(self, key: str, arrays: Mapping[str, np.ndarray], meta: Mapping | None = None) -> Path:
        """Write block `key` atomically (a concurrent reader sees the old file or the new one)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        arrays = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
        md = {k: v if isinstance(v, str) else json.dumps(v) for k, v in (meta or {}).items()}
        md.update({"format": FORMAT, "key": key, "teacher": self.teacher_hash})
        path = self.path(key)
        fd, tmp = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
        os.close(fd)
        try:
            save_file(arrays, tmp, metadata=md)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        self._cache[key] = arrays
        return path

    def keys(self) -> list[str]:
        """The keys of this teacher's blocks in the store, sorted."""
        out = set(self._cache)
        if self.directory.is_dir():
            for p in self.directory.glob(f"*.{self.teacher_hash}.safetensors"):
                try:
                    meta = self._read(p)[1]
                except CococError:
                    continue
                if meta.get("format") == FORMAT and meta.get("teacher") == self.teacher_hash:
                    out.add(meta["key"])
        return sorted(out)


# ---- pre-training -------------------------------------------------------------------------------

def make_solver(solver_or_settings, steps: int):
    """A Solver for pre-training: the given one (or DEFAULT_SETTINGS updated by a dict), run for
    `steps` iterations with testing off (a pretrain graph has no logits to test)."""
    if solver_or_settings is None or isinstance(solver_or_settings, Mapping):
        settings = {**DEFAULT_SETTINGS, **(solver_or_settings or {})}
        batch = settings.pop("batch_size", None)
        fields = {f.name for f in dataclasses.fields(Solver)}
        unknown = set(settings) - fields
        if unknown:
            raise CococError(f"pretrain: unknown solver settings {', '.join(sorted(unknown))}")
        solver = Solver(**{**settings, "max_iter": int(steps)})
    else:
        solver, batch = solver_or_settings, getattr(solver_or_settings, "batch_size", None)
        if dataclasses.is_dataclass(solver):
            solver = dataclasses.replace(solver, max_iter=int(steps), test_interval=0, snapshot=0)
    solver.batch_size = batch or getattr(solver, "batch_size", None) or 32
    return solver


def block_mse(module, pairs: list[dict], x: np.ndarray, batch: int = 128) -> dict[str, float]:
    """Each block's 1/|O|·‖O − O'‖² on `x` (module in eval mode)."""
    was = module.training
    module.eval()
    sums = {p["block"]: 0.0 for p in pairs}
    with torch.no_grad():
        for i in range(0, len(x), batch):
            outs, taps = module(torch.from_numpy(x[i:i + batch]), taps=[p["teacher"] for p in pairs])
            outs = outs if isinstance(outs, tuple) else (outs,)
            for p, s in zip(pairs, outs):
                sums[p["block"]] += float(((s - taps[p["teacher"]]) ** 2).mean()) * len(s)
    module.train(was)
    return {k: v / len(x) for k, v in sums.items()}


def shared_pretrain_graph(full: Graph, groups) -> Graph:
    """One pretrain graph for several groups of blocks: one teacher, the students of every group
    (each group's built by pretrain_graph, its teacher values taken from the one teacher)."""
    g = pretrain_graph(full, list(groups[0]))
    teacher = {v.name: v for l in g.layers if "block" not in l.meta for v in l.outputs}
    for blocks in groups[1:]:
        h = pretrain_graph(full, list(blocks))
        for l in h.layers:
            if "block" in l.meta:
                l.inputs = [teacher.get(v.name, v) for v in l.inputs]
                g.layers.append(l)
        g.outputs.extend(h.outputs[len(full.outputs):])
        g.meta["teacher_student"] = g.meta["teacher_student"] + h.meta["teacher_student"]
    return g


def pretrain_group(full: Graph, blocks, data, solver, *, steps: int, progress: bool = False,
                   groups=None) -> tuple[Graph, dict]:
    """Pre-train one group of non-overlapping blocks (or with `groups`, a list of such groups,
    all of them in one run: shared_pretrain_graph); returns the trained pretrain graph and a
    report {block: {"mse_before", "mse_after"}} on the test images."""
    g = shared_pretrain_graph(full, groups) if groups else pretrain_graph(full, list(blocks))
    pairs = g.meta["teacher_student"]
    ds = data if isinstance(data, Dataset) else load_data(data, full.inputs[0].type.shape)
    module = to_torch(g, outputs=[p["student"] for p in pairs])
    teachers = [p["teacher"] for p in pairs]

    def loss(mod, x, y):
        outs, taps = mod(x, taps=teachers)
        outs = outs if isinstance(outs, tuple) else (outs,)
        total = sum(((s - taps[t].detach()) ** 2).mean() for s, t in zip(outs, teachers))
        return total, None

    x_eval = ds.test_arrays()[0][:128]
    before = block_mse(module, pairs, x_eval)
    solver = make_solver(solver, steps)
    threads = torch.get_num_threads()
    train(g, solver, ds, max_iter=steps, loss=loss, module=module, progress=progress,
          batch_size=solver.batch_size)
    torch.set_num_threads(threads)
    after = block_mse(module, pairs, x_eval)
    return g, {b: {"mse_before": before[b], "mse_after": after[b]} for b in before}


def pretrain(full: Graph, plan, data, solver_or_settings, store: BlockStore, *, steps: int,
             progress: bool = True, numbering: tuple[int, int, int] | None = None,
             shared_teacher: bool = True, group_ids: list[int] | None = None) -> list[dict]:
    """Pre-train every tuning block of `plan` (a BlockPlan) not yet in `store`: its groups in one
    run (`shared_teacher`, the default) or one run per group.

    `data`: a Dataset or a spec for runtime.data.load_data ("digits"); `solver_or_settings`: a
    Solver, or a dict overriding DEFAULT_SETTINGS (base_lr, momentum, weight_decay, batch_size, ...).
    `numbering`: (group id, position, count) when `plan` is one group of a larger plan that the
    caller runs a group at a time (runtime/explore), so that progress says "group 2 (3/3)", not
    "group 0 (1/1)" each time, and the store records the group's real id. `group_ids`: the real
    ids of `plan.groups` when the plan holds several groups of a larger one.
    `shared_teacher`: all groups in one run, one teacher forward per batch (see the module's
    docstring); False: one run per group.
    Returns one row per block: key, group, status ("trained", "stored", "teacher"), MSEs, seconds
    (of the run that trained it: with `shared_teacher`, the one run of every group).
    """
    if store.teacher_hash != teacher_hash(full):
        raise CococError(f"pretrain: the store is for teacher {store.teacher_hash}, this model is "
                         f"{teacher_hash(full)}; open BlockStore(dir, teacher_hash(full))")
    ds = data if isinstance(data, Dataset) else load_data(data, full.inputs[0].type.shape)
    rows: list[dict] = []
    todo_groups = []
    for gi, group in enumerate(plan.groups or group_blocks(plan.blocks)):
        gi = group_ids[gi] if group_ids else numbering[0] if numbering else gi
        todo = []
        for bi in group:
            b = plan.blocks[bi]
            key = block_key(full, b)
            if not b.needs_training:
                rows.append({"key": key, "group": gi, "status": "teacher"})
            elif key in store:
                rows.append({"key": key, "group": gi, "status": "stored"})
            else:
                todo.append(b)
        if todo:
            todo_groups.append((gi, todo))
    runs = [todo_groups] if shared_teacher and todo_groups else [[tg] for tg in todo_groups]
    for n, run in enumerate(runs):
        if progress:
            if len(run) == 1:
                gi, position, count = numbering or (run[0][0], n + 1, len(runs))
                print(f"pre-training group {gi} ({position}/{count}): "
                      f"{', '.join(block_key(full, b) for b in run[0][1])}", flush=True)
            else:
                print(f"pre-training groups {', '.join(str(gi) for gi, _ in run)} together (one teacher forward "
                      f"per batch): {sum(len(t) for _, t in run)} blocks", flush=True)
        t0 = time.perf_counter()
        g, report = pretrain_group(full, run[0][1], ds, solver_or_settings, steps=steps, progress=progress,
                                   groups=[t for _, t in run] if len(run) > 1 else None)
        secs = time.perf_counter() - t0
        for gi, b in [(gi, b) for gi, todo in run for b in todo]:
            key = block_key(full, b)
            r = report[key]
            store.put(key, student_params(g, key),
                      {"steps": steps, "group": gi, "mse_before": r["mse_before"], "mse_after": r["mse_after"],
                       "start": b.start, "rates": list(b.rates), "modules": full.modules[b.start:b.stop]})
            rows.append({"key": key, "group": gi, "status": "trained", **r, "seconds": secs})
    return rows


def group_plan(groups) -> BlockPlan:
    """A BlockPlan of the given groups (lists of blocks), in that order."""
    flat = [b for g in groups for b in g]
    bounds = np.cumsum([0] + [len(g) for g in groups]).tolist()
    return BlockPlan(flat, [], None, [list(range(a, b)) for a, b in zip(bounds[:-1], bounds[1:])])


def pretrain_detached(full: Graph, groups, data, solver_or_settings, *, steps: int, shared_teacher: bool = True,
                      group_ids: list[int] | None = None) -> tuple[dict[str, tuple[dict, dict]], float]:
    """Pre-train `groups` (lists of blocks) into a temporary store and hand the blocks back,
    ({key: (arrays, meta)}, seconds): for a worker process or a Ray task whose driver stores them."""
    plan = group_plan(groups)
    with tempfile.TemporaryDirectory(prefix="cococ-blocks-") as d:
        store = BlockStore(d, teacher_hash(full))
        t0 = time.perf_counter()
        pretrain(full, plan, data, solver_or_settings, store, steps=steps, progress=False,
                 shared_teacher=shared_teacher, group_ids=group_ids)
        dt = time.perf_counter() - t0
        return {k: (store.get(k), store.meta(k)) for k in (block_key(full, b) for b in plan.blocks)}, dt
