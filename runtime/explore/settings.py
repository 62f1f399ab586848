"""What a run's evaluations depend on, recorded so that `--resume` refuses other settings.

A resumed run takes every finished evaluation in the run database as it is. That is right only if
a fresh evaluation would give the same record, so the run records everything one depends on: the
network (structure) and the teacher's weights, the subspace, the data set (a hash of its train
and test arrays: content and split), the fine-tuning and pre-training steps, the seed, every
field of both solvers, the tuning-block method, and the definition of every metric the run has
measured. `--resume` with anything else is refused with the differing fields named, old and new.
The objective itself may change (a resume with another threshold replays the same records).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np

from cococ.frontend.objective import Objective
from cococ.ir.core import CococError, Graph
from cococ.runtime.blocks import teacher_hash
from cococ.runtime.data import Dataset

# Solver fields that change where it was read from, how strictly, and what is logged or
# snapshotted, never an evaluation's result
NOT_EVALUATED = {"path", "lenient", "snapshot", "snapshot_prefix", "display", "average_loss", "debug_info"}


def _sha(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def network_hash(g: Graph) -> str:
    """The structure: every layer's name, op, module, attributes and connections, the outputs."""
    return _sha([[l.name, l.op, l.module, l.attrs, [v.name for v in l.inputs], [v.name for v in l.outputs]]
                 for l in g.layers] + [[v.name for v in g.outputs]])


def data_hash(ds: Dataset) -> str:
    """The data set's content and split: its train and test arrays, classes, crop and mirror."""
    h = hashlib.sha256(f"{ds.num_classes}|{ds.crop}|{ds.mirror}\n".encode())
    for a in (ds.x_train, ds.y_train, ds.x_test, ds.y_test):
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype}|{list(a.shape)}\n".encode())
        h.update(a.tobytes())
    return f"sha256:{h.hexdigest()[:16]} ({len(ds.y_train)} train + {len(ds.y_test)} test)"


def solver_fields(solver, prefix: str) -> dict[str, object]:
    """Every field of a solver (frontend.solver.Solver, or any dataclass) as JSON-able values."""
    out = {}
    for f in dataclasses.fields(solver):
        if f.name in NOT_EVALUATED:
            continue
        v = getattr(solver, f.name)
        if f.name == "extra":
            out.update({f"{prefix}.{k}": x for k, x in sorted(v.items()) if k not in NOT_EVALUATED})
            continue
        out[f"{prefix}.{f.name}"] = v.to_dict() if hasattr(v, "to_dict") else v
    return json.loads(json.dumps(out, default=str))


def run_settings(full: Graph, configs, objective: Objective, solver, pretrain_solver, ds: Dataset, *,
                 steps: int, pretrain_steps: int, method: str, seed: int | None) -> dict[str, object]:
    """The settings one run's evaluations depend on, one entry per field a user can change."""
    s = {"network": network_hash(full), "teacher weights": teacher_hash(full),
         "subspace": f"{len(configs)} configurations, sha256:{_sha([list(c) for c in configs])}",
         "data": data_hash(ds), "steps": int(steps), "pretrain steps": int(pretrain_steps),
         "tuning blocks": method, "seed": seed}
    s.update(solver_fields(solver, "solver"))
    s.update(solver_fields(pretrain_solver or solver, "pretrain solver"))
    s.update({f"metric {m}": m.definition for m in objective.metrics()})
    return s


def differences(old: dict, new: dict) -> list[str]:
    """'field: old -> new' for each field that differs. Metrics count only where both runs
    measured them: a resume may add a metric (its values are computed then) or leave one out."""
    out = []
    for k in dict.fromkeys([*new, *old]):
        if k.startswith("metric ") and (k not in old or k not in new):
            continue
        a, b = old.get(k, "(not set)"), new.get(k, "(not set)")
        if a != b:
            out.append(f"{k}: {_short(a)} -> {_short(b)}")
    return out


def _short(v) -> str:
    s = json.dumps(v, sort_keys=True) if not isinstance(v, str) else repr(v)
    return s if len(s) <= 60 else s[:57] + "..."


def check_resume(run_dir, db, new: dict, data_name: str) -> None:
    """Refuse to resume the run in `db` with settings other than `new`; record them otherwise."""
    old = db.get_meta("settings")
    if old is None and db.get_meta("fingerprint") is not None:
        raise CococError(f"{run_dir}: the run there was started by an older cococ that did not record its "
                         "settings; start a new run (another -o)")
    if old is not None:
        diff = differences(old, new)
        if diff:
            old_name = db.get_meta("data name")
            if old_name != data_name and any(d.startswith("data:") for d in diff):
                diff.append(f"data name: {old_name!r} -> {data_name!r}")
            raise CococError(f"{run_dir}: --resume with other settings than the run there ({'; '.join(diff)}); "
                             "resume needs the same ones, or choose another -o")
    db.set_meta("settings", {**(old or {}), **new})
    db.set_meta("data name", data_name)
