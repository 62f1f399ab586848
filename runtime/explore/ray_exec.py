"""The Ray executor (`--executor ray --address auto|HOST:PORT`): pre-training groups and candidate
evaluations as Ray tasks on a cluster.

The driver (the `cococ prune` process) stays the only writer of the run database and of the block
store, as with local worker processes: a task returns its result, and the driver records it the
moment `ray.wait` hands it over. So a task that Ray retries after its worker or node died
(`max_retries`) is recorded once, and a killed driver loses only what was in flight (`--resume`).

Evaluation tasks read the pre-trained blocks from the run folder and write each network's
weights there (evaluate.evaluate_candidate): on a cluster of several machines the run folder must
be on a file system every node sees (NFS); a node that cannot see it fails with a clear error.
"""
from __future__ import annotations

import socket
from pathlib import Path

import torch

from cococ.ir.core import CococError
from cococ.runtime.blocks import pretrain_detached
from cococ.runtime.explore.evaluate import evaluate_candidate
from cococ.runtime.explore.executors import Collector, progress_bar
from cococ.runtime.explore.ray_cluster import keep_loopback

RETRIES = 3   # a task whose worker process or node dies is run again, elsewhere if need be


def _placer(ray, remote):
    """Wootz's assignment over the cluster's n nodes: the k-th task goes to node k mod n, i.e.
    node i takes tasks i, i + n, i + 2n, ... The affinity is soft: a task whose node has died
    runs on another. (Ray's own scheduling packs short tasks onto the driver's node.)"""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy  # local: ray is optional
    nodes = sorted(n["NodeID"] for n in ray.nodes() if n["Alive"] and n["Resources"].get("CPU", 0) >= 1)
    if not nodes:
        raise CococError("the Ray cluster has no node with a CPU")
    return lambda k: remote.options(scheduling_strategy=NodeAffinitySchedulingStrategy(nodes[k % len(nodes)],
                                                                                     soft=True))


def _listens(host: str, port: int) -> None:
    socket.create_connection((host, port), timeout=10).close()


def _reachable(address: str) -> None:
    """Refuse HOST:PORT where nothing listens, at once: `ray.init` would retry for minutes.
    Ray turns a 127.0.0.1 address into the machine's routable one; a head that listens on
    loopback only (ray_cluster.LocalCluster) is kept on loopback instead (keep_loopback)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise CococError(f"--address {address}: expected auto or HOST:PORT (the head's GCS port, e.g. 6379)")
    try:
        _listens(host, int(port))
    except OSError as e:
        raise CococError(f"no Ray cluster at {address} ({e.strerror or e}); start one with "
                         "`ray start --head --port=PORT` and pass --address HOST:PORT") from None
    if host in ("127.0.0.1", "localhost"):
        from ray._private.services import get_node_ip_address  # local: ray is optional (cococ[ray])
        try:
            _listens(get_node_ip_address(), int(port))
        except OSError:
            keep_loopback()


def connect(address: str | None):
    """The `ray` module, connected to `address` ("auto", HOST:PORT); an existing connection to
    another cluster is closed first (a process may search on two clusters one after the other)."""
    try:
        import ray  # local: ray is optional (cococ[ray])
    except ImportError:
        raise CococError("--executor ray needs the 'ray' package (pip install 'cococ[ray]')") from None
    if ray.is_initialized():
        current = ray.get_runtime_context().gcs_address
        # the name given may differ from the GCS address Ray resolved it to (127.0.0.1, a host name)
        if address in (None, "auto", current) or _connected.get(address) == current:
            return ray
        ray.shutdown()
    if address not in (None, "auto") and "://" not in address:
        _reachable(address)
    try:
        ray.init(address=address or "auto", log_to_driver=False)
    except ConnectionError as e:
        raise CococError(f"cannot reach the Ray cluster at {address or 'auto'} ({e}); start one with "
                         "`ray start --head` and pass --address HOST:PORT") from None
    if address:
        _connected[address] = ray.get_runtime_context().gcs_address
    return ray


_connected: dict[str, str] = {}    # --address as given -> the GCS address it connected to


def cluster_cpus(ray) -> int:
    """The cluster's CPUs: the default number of candidates evaluated at once."""
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def _node() -> str:
    import ray  # local: ray is optional (cococ[ray])
    return f"ray:{ray.get_runtime_context().get_node_id()[:8]}"


def _check_visible(path) -> None:
    """The run folder (blocks in, weights out) must be this node's too, not a fresh local one."""
    if path and not Path(path).exists():
        raise CococError(f"{_node()}: the run folder {path} is not visible on this node; Ray nodes need "
                         "the run folder on a shared file system")


def _evaluate(task, idx, cfg, comp, static, rule=None):
    """One candidate on a Ray worker (evaluate.evaluate_candidate), one thread as locally; `rule`:
    the early-stop rule's state when the task was submitted."""
    torch.set_num_threads(1)
    _check_visible(Path(task.weights_dir).parent if task.weights_dir else task.store_dir)
    return evaluate_candidate(task, idx, cfg, comp, static, _node(), rule)


def _pretrain(full, blocks, data, solver, steps):
    """One pre-training group on a Ray worker: the same `pretrain` call as locally, into a
    node-local store; the blocks (arrays and metadata) go back to the driver, which stores them."""
    torch.set_num_threads(1)
    return pretrain_detached(full, [list(blocks)], data, solver, steps=steps)


def pretrain_ray(full, todo, data, solver, store, db, *, steps: int, address=None, progress=True) -> float:
    """Pre-train the groups `todo` ([(group index, blocks)]) as Ray tasks, all at once; each group's
    blocks go into `store` and `db` as its task finishes. Returns the summed task seconds."""
    ray = connect(address)
    on_node = _placer(ray, ray.remote(max_retries=RETRIES, num_cpus=1)(_pretrain))
    full_ref, data_ref = ray.put(full), ray.put(data)
    pending = {on_node(k).remote(full_ref, blocks, data_ref, solver, steps): gi
               for k, (gi, blocks) in enumerate(todo)}
    bar = progress_bar(len(pending), progress, "pretrain")
    spent = 0.0
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                gi = pending.pop(ref)
                blocks, dt = ray.get(ref)
                for key, (arrays, meta) in blocks.items():
                    store.put(key, arrays, meta)
                    db.add_block(key, gi, dt / len(blocks))
                db.add_phase_seconds("pretrain", dt)
                spent += dt
                if bar is not None:
                    bar.update(1)
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
        if bar is not None:
            bar.close()
    return spent


def run_ray(task, jobs, todo, *, workers, db, objective, early, address=None, on_result=None, progress=True,
            stopper=None):
    """Evaluate the candidates at positions `todo` in exploration order, at most p at a time,
    position k on node k mod n (`_placer`); when a satisfying candidate at position k is found,
    tasks after k are cancelled."""
    ray = connect(address)
    on_node = _placer(ray, ray.remote(max_retries=RETRIES, num_cpus=1)(_evaluate))
    p = max(1, int(workers) or cluster_cpus(ray))
    bar = progress_bar(len(todo), progress, f"explore[{task.mode}]")
    col = Collector(db, objective, early, task.mode, on_result, bar, stopper)
    task_ref = ray.put(task)
    pending: dict = {}
    queue = list(todo)
    try:
        while queue or pending:
            while queue and len(pending) < p:
                pos = queue.pop(0)
                if not col.useful(pos):
                    continue
                _, idx, cfg, comp, static = jobs[pos]
                pending[on_node(pos).remote(task_ref, idx, cfg, comp, static, col.rule())] = pos
            if not pending:
                break
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                pos = pending.pop(ref)
                col.add(pos, ray.get(ref))
            if col.bound is not None:
                for ref, pos in list(pending.items()):
                    if pos >= col.bound:        # cannot beat the answer found: stop it
                        ray.cancel(ref, force=True)
                        pending.pop(ref)
                queue = [q for q in queue if q < col.bound]
    finally:
        for ref in pending:                     # an error or an abort: nothing left running
            ray.cancel(ref, force=True)
        if bar is not None:
            bar.close()
