"""Executors: where candidates are evaluated. Both use Wootz's assignment (§6.2): with p workers
(processes here, nodes on Ray), worker i takes the i + p·j-th candidate of the exploration order.

`run_local`: one process (workers=1, in this process) or p worker processes on this machine. The
parent is the only writer of the run database; a worker reports each result as it finishes.
When a satisfying candidate at position k is found, candidates after k cannot beat it: workers
skip them, and a worker busy with one after k is stopped (its later ones are after k too).
Workers end with the driver, however it ends (`die_with_parent`). Each worker process runs one
torch thread. With `stopper` (earlystop.EarlyStop) a candidate's fine-tuning stops when it can no
longer win: in-process the rule is recomputed before each candidate; worker processes get the
rule's new state in their inbox after every result, and read it at each test.
`run_ray` (ray_exec.py): one Ray task per candidate on a cluster (`address` "auto" or
HOST:PORT), the k-th on node k mod n, same stopping rule (later tasks cancelled), a task whose
worker or node dies retried by Ray.
"""
from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import queue as queue_mod
import signal
import socket
import sys
import threading
import time

import torch
from tqdm import tqdm

from cococ.ir.core import CococError
from cococ.runtime.explore.evaluate import evaluate_candidate


def progress_bar(total: int, on: bool, desc: str):
    """A tqdm bar over `total` candidates (or groups) for either executor; None when `on` is false."""
    if not on:
        return None
    return tqdm(total=total, desc=desc, unit="cfg", dynamic_ncols=True, leave=True)


class Collector:
    """Stores results as they arrive and keeps the stopping bound (position of the first answer).
    Both executors (run_local here, run_ray in ray_exec.py) feed their results through one."""

    def __init__(self, db, objective, early, mode, on_result, bar, stopper=None):
        self.db, self.objective, self.early, self.mode = db, objective, early, mode
        self.on_result, self.bar, self.stopper = on_result, bar, stopper
        self.bound = None

    def rule(self):
        """The early-stop rule's state after every evaluation of this mode so far (None: off)."""
        if self.stopper is None or not self.stopper.enabled:
            return None
        return self.stopper.rule(list(self.db.done(self.mode).values()))

    def add(self, pos: int, rec: dict) -> None:
        self.db.add_evaluation(self.mode, rec)
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(acc=f"{rec['accuracy']:.4f}", size=rec["params"], refresh=False)
        if self.early and self.objective.satisfied(rec["metrics"]) and (self.bound is None or pos < self.bound):
            self.bound = pos
        if self.on_result is not None:
            self.on_result(rec)

    def useful(self, pos: int) -> bool:
        return self.bound is None or pos < self.bound


def _worker_name(i: int) -> str:
    return f"{socket.gethostname()}:{os.getpid()}:w{i}"


def run_local(task, jobs, todo, *, workers, db, objective, early, on_result=None, progress=True, stopper=None,
              **_):
    bar = progress_bar(len(todo), progress, f"explore[{task.mode}]")
    col = Collector(db, objective, early, task.mode, on_result, bar, stopper)
    p = max(1, min(int(workers), len(todo)))
    try:
        if p == 1:
            for pos in todo:
                if not col.useful(pos):
                    break
                _, idx, cfg, comp, static = jobs[pos]
                col.add(pos, evaluate_candidate(task, idx, cfg, comp, static, _worker_name(0), col.rule()))
            return
        _run_processes(task, jobs, todo, p, col)
    finally:
        if bar is not None:
            bar.close()


PR_SET_PDEATHSIG = 1     # linux/prctl.h
START_WAIT = 120         # seconds a worker waits for the others to have started


def die_with_parent(parent: int) -> None:
    """Make this worker end when its driver does, even by `kill -9` (which runs no clean-up in the
    driver): otherwise it keeps training at full CPU and writing into the run folder. On Linux
    the kernel kills it (prctl PR_SET_PDEATHSIG); elsewhere a thread polls the parent's pid."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:      # the driver died before prctl took effect
            os._exit(1)
        return

    def watch():
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="die-with-parent", daemon=True).start()


class Inbox:
    """A worker's view of the early-stop rule: the latest state the driver sent (StopRule's API)."""

    def __init__(self, rule, queue):
        self.current, self.queue = rule, queue

    def latest(self):
        while True:
            try:
                self.current = self.queue.get_nowait()
            except queue_mod.Empty:
                return self.current

    @property
    def target(self):
        return self.current.target

    def hopeless(self, it, acc) -> bool:
        rule = self.latest()
        return rule is not None and rule.hopeless(it, acc)

    def reason(self, it, acc) -> str:
        return self.current.reason(it, acc)


def _proc_main(wid, parent, task, jobs, positions, bound, results, rule, inbox, ready):
    die_with_parent(parent)
    torch.set_num_threads(1)
    rules = Inbox(rule, inbox)
    try:        # start together: a worker slower to start (imports on a busy machine) would
        ready.wait(START_WAIT)    # otherwise find the other's share done, with nothing overlapping
    except threading.BrokenBarrierError:
        pass    # a worker died before its start: the others go on (the driver reports it)
    for pos in positions:
        if bound.value >= 0 and pos >= bound.value:
            break
        _, idx, cfg, comp, static = jobs[pos]
        results.put(("start", wid, pos, None))
        rec = evaluate_candidate(task, idx, cfg, comp, static, _worker_name(wid), rules)
        results.put(("done", wid, pos, rec))
    results.put(("exit", wid, None, None))


def _run_processes(task, jobs, todo, p, col):
    ctx = mp.get_context("spawn")
    bound = ctx.Value("i", -1)
    results = ctx.Queue()
    procs = []
    inboxes = [ctx.Queue() for _ in range(p)]
    ready = ctx.Barrier(p)
    rule = col.rule()
    for w in range(p):
        mine = todo[w::p]               # Wootz: worker w takes the w + p·j-th candidate
        pr = ctx.Process(target=_proc_main, args=(w, os.getpid(), task, jobs, mine, bound, results, rule,
                                                  inboxes[w], ready), daemon=True)
        pr.start()
        procs.append(pr)
    running: dict[int, int] = {}
    alive = set(range(p))
    try:
        while alive:
            try:
                kind, wid, pos, rec = results.get(timeout=1.0)
            except queue_mod.Empty:
                for w in list(alive):
                    if not procs[w].is_alive():
                        alive.discard(w)
                        if procs[w].exitcode not in (0, None) and running.get(w) is not None \
                                and col.useful(running[w]):
                            raise CococError(f"explore worker {w} died (exit code {procs[w].exitcode}) "
                                             f"on candidate at position {running[w]}; rerun with --resume")
                continue
            if kind == "start":
                running[wid] = pos
            elif kind == "done":
                running[wid] = None
                col.add(pos, rec)
                if rule is not None:
                    rule = col.rule()
                    for w in alive:
                        inboxes[w].put(rule)
                if col.bound is not None:
                    bound.value = col.bound
                    for w, r in running.items():   # busy with a candidate that cannot win: stop it
                        if r is not None and r >= col.bound and w in alive:
                            procs[w].terminate()
                            alive.discard(w)
            else:
                alive.discard(wid)
    finally:
        for pr in procs:
            if pr.is_alive():
                pr.terminate()
            pr.join(timeout=5)
        for q in inboxes:          # rules sent to a worker that has ended must not hold the driver
            q.cancel_join_thread()
