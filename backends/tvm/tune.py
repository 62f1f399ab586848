"""`--tune N`: MetaSchedule (tvm.s_tir.meta_schedule) over cococ's kernels, N trials per kernel.

Tasks are the module's PrimFuncs before any schedule (what MetaSchedule's own search space
starts from), less the kernels that come scheduled from the lowering (Winograd's: `tuning_tasks`).
Records go to MetaSchedule's JSON database in the tuning folder (OUT/tuning by default:
database_workload.json, database_tuning_record.json, logs/); a rebuild pointing at the
same folder tunes only the kernels that have no record yet, so rebuilding is cheap and repeatable.

Why the pieces are what they are:
  - cococ's own schedule of each kernel is measured too and committed to the database as one
    more record, so "best record" means the faster of MetaSchedule's best and cococ's, as
    measured (a few trials rarely beat a hand-written register-blocked conv, and must not
    replace it). A kernel whose best is cococ's keeps today's hand schedule at build time.
    `apply_database` counts only kernels where MetaSchedule's schedule won.
  - Candidates are built and timed in this process (InProcessBuilder / InProcessRunner), not in
    MetaSchedule's popen worker pools: each worker imports TVM and gets every module pickled to
    it, which on a loaded 2-core machine took over the LocalBuilder's 30 s timeout, so every
    trial failed to build.
  - On x86 only TVM's x86 tensor intrinsics are registered (`_x86_tensor_intrin`): MetaSchedule
    imports `tvm.s_tir.tensor_intrin`, whose __init__ parses every target's intrinsics (CUDA,
    ROCm, Hexagon, ...) from TVMScript: 31 s of a 38 s one-kernel tuning run here.
  - The cost model is XGBoost when `xgboost` is installed, else random (evolutionary search
    still measures real candidates; with tens of trials the model matters little).
  - Serializing TVM IR (the JSON database, pickling) segfaults in `tvm::ffi::ToJSONGraph` with
    apache-tvm-ffi 0.1.15.post2 under apache-tvm 0.27.0.post1 (which only asks for
    >=0.1.14.post0) and works with 0.1.14.post1, which pyproject pins.
    `check_serialization` turns a broken install into a CococError instead of a crash.
  - MetaSchedule logs every task's trials to stdout (hundreds of lines for `--tune 4`) as well as
    to files in the tuning folder's logs/: its console handler takes `sys.stdout` when the loggers
    are made (`extracted_tasks_to_tune_contexts`), so unless `verbose` that is a sink and the
    files alone keep the logs.
"""
from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import io
import itertools
import logging
import subprocess
import sys
import types
import warnings
from pathlib import Path

import tvm
import tvm_ffi
from tvm import tirx
from tvm.ir.utils import derived_object
from tvm.s_tir import meta_schedule as ms
from tvm.s_tir.meta_schedule.builder import BuilderResult, PyBuilder
from tvm.s_tir.meta_schedule.builder.local_builder import default_build
from tvm.s_tir.meta_schedule.runner import PyRunner
from tvm.s_tir.meta_schedule.runner.local_runner import (LocalRunnerFuture, default_alloc_argument,
                                                         default_run_evaluator)

from cococ.backends.tvm.artifact import usable_cores
from cococ.ir.core import CococError

_MODULES: dict[str, tvm.runtime.Module] = {}  # built candidates, by fake artifact path
_IDS = itertools.count()
EVALUATOR = dict(number=5, repeat=1, min_repeat_ms=20)


def tuning_target(target: tvm.target.Target) -> tvm.target.Target:
    """MetaSchedule needs the CPU core count in an llvm target: the cores this process may run on,
    as the runtime pool is sized (`usable_cores`), not the machine's (a restricted affinity)."""
    if target.kind.name == "llvm" and "num-cores" not in target.attrs:
        d = dict(target.export())
        d["num-cores"] = usable_cores()
        return tvm.target.Target(d)
    return target


@functools.cache
def check_serialization() -> None:
    """Serialize one TVM IR node in a child process: with a broken apache-tvm-ffi this segfaults
    (see the module doc), which would otherwise kill the build with no message. The known-good
    0.1.14 line skips the 5 s child process."""
    if getattr(tvm_ffi, "__version__", "").startswith("0.1.14"):
        return
    code = "import tvm; tvm.ir.save_json(tvm.tirx.Var('x', 'int32'))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=300)
    if r.returncode != 0:
        raise CococError(
            f"--tune needs TVM IR serialization, which crashes in this install (apache-tvm-ffi "
            f"{getattr(tvm_ffi, '__version__', '?')} with apache-tvm {tvm.__version__}); "
            "install apache-tvm-ffi==0.1.14.post1")


def _x86_tensor_intrin() -> None:
    """Register the x86 tensor intrinsics without running tvm.s_tir.tensor_intrin's __init__
    (see the module doc): the package goes into sys.modules as an empty package, so later
    `import tvm.s_tir.tensor_intrin.<target>` still works. No-op once the package is imported."""
    name = "tvm.s_tir.tensor_intrin"
    if name not in sys.modules:
        spec = importlib.util.find_spec(name)
        pkg = types.ModuleType(name)
        pkg.__path__, pkg.__spec__, pkg.__file__, pkg.__package__ = \
            list(spec.submodule_search_locations), spec, spec.origin, name
        sys.modules[name] = pkg
    importlib.import_module(name + ".x86")


def open_database(work_dir: Path):
    work_dir.mkdir(parents=True, exist_ok=True)
    return ms.database.JSONDatabase(work_dir=str(work_dir), module_equality="structural")


def workload(func: tirx.PrimFunc) -> tvm.IRModule:
    """The module a kernel is tuned and looked up as (what extract_tasks makes of it)."""
    func = func.with_attr("global_symbol", "main")
    if "s_tir" not in (func.attrs or {}):
        func = func.with_attr("s_tir", True)
    return tvm.IRModule({"main": func})


@derived_object
class InProcessBuilder(PyBuilder):
    """Builds candidates with MetaSchedule's default build function, in this process."""

    def build(self, build_inputs):
        out = []
        for bi in build_inputs:
            try:
                key = f"cococ-inprocess/{next(_IDS)}"
                with warnings.catch_warnings():  # default_build calls the deprecated tvm.build
                    warnings.simplefilter("ignore", DeprecationWarning)
                    _MODULES[key] = default_build(bi.mod, bi.target, None)
                out.append(BuilderResult(key, None))
            except Exception as e:  # noqa: BLE001  (a candidate that does not build is a failed trial)
                out.append(BuilderResult(None, f"build failed: {type(e).__name__}: {e}"))
        return out


@derived_object
class InProcessRunner(PyRunner):
    """Times built candidates on random inputs with MetaSchedule's evaluator, in this process."""

    def run(self, runner_inputs):
        cfg = ms.runner.EvaluatorConfig(**EVALUATOR)
        out = []
        for ri in runner_inputs:
            rt = _MODULES.pop(str(ri.artifact_path), None)
            try:
                if rt is None:
                    raise RuntimeError("candidate was not built")
                dev = tvm.runtime.device(str(ri.device_type), 0)
                args = default_alloc_argument(dev, tuple(a.as_json() for a in ri.args_info), 1)
                out.append(LocalRunnerFuture(res=default_run_evaluator(rt, dev, cfg, args)))
            except Exception as e:  # noqa: BLE001
                out.append(LocalRunnerFuture(error_message=f"run failed: {type(e).__name__}: {e}"))
        return out


def search_strategy(trials: int):
    """Evolutionary search with a population sized to the trial budget: MetaSchedule's default
    (512 candidates evolved per round) costs seconds per kernel and round even for 4 trials."""
    pop = min(512, max(32, 8 * trials))
    return ms.search_strategy.EvolutionarySearch(population_size=pop, init_min_unmeasured=min(50, pop // 2))


def _time_schedule(sch, target) -> list[float] | None:
    """cococ's schedule of a kernel, built and timed exactly as MetaSchedule's candidates are."""
    b = InProcessBuilder().build([ms.builder.BuilderInput(sch.mod, target)])[0]
    if b.error_msg:
        return None
    args = ms.arg_info.ArgInfo.from_prim_func(sch.mod["main"])
    res = InProcessRunner().run([ms.runner.RunnerInput(b.artifact_path, "cpu", args)])[0].result()
    return None if res.error_msg else [float(s) for s in res.run_secs]


def _commit_hand_schedule(db, mod: tvm.IRModule, target, hand_schedule) -> None:
    """cococ's own schedule as a tuning record, so the database's best is never worse than it."""
    sch = hand_schedule(mod)
    if sch is None:
        return
    secs = _time_schedule(sch, target)
    if secs:
        db.commit_tuning_record(ms.database.TuningRecord(
            sch.trace, db.commit_workload(mod), secs, target, ms.arg_info.ArgInfo.from_prim_func(mod["main"])))


@contextlib.contextmanager
def _nameless_handlers_hidden():
    """MetaSchedule's logging set-up (`create_loggers`) lists the handlers already on its logger
    by name and formats each name: a handler the host attached with no name (pytest's log capture,
    an application's own) made the second tuning run in a process fail with "'NoneType' object
    has no attribute 'format'". Those handlers are taken off for the set-up and put back after."""
    logger = logging.getLogger("tvm.s_tir.meta_schedule")
    hidden = [h for h in logger.handlers if h.get_name() is None]
    for h in hidden:
        logger.removeHandler(h)
    try:
        yield
    finally:
        for h in hidden:
            logger.addHandler(h)


def tune_module(mod: tvm.IRModule, target: tvm.target.Target, work_dir: Path, trials: int,
                hand_schedule=None, verbose: bool = False) -> tuple[object, int]:
    """Tune every kernel without a record for `trials` trials. `hand_schedule(workload) ->
    s_tir.Schedule | None` gives cococ's schedule, measured and recorded alongside. MetaSchedule's
    logs go to `work_dir`/logs/, and to stdout too when `verbose`. Returns (database, number of
    kernels tuned now: 0 when the folder already had them all)."""
    check_serialization()
    target = tuning_target(target)
    if target.kind.name == "llvm":
        _x86_tensor_intrin()
    db = open_database(work_dir)
    if trials <= 0:
        return db, 0
    tasks = tuning_tasks(mod, target)
    todo = [t for t in tasks if db.query_tuning_record(t.dispatched[0], target, "main") is None]
    if not todo:
        return db, 0
    console = contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO())
    with console, _nameless_handlers_hidden():  # the loggers made here write "stdout" to what sys.stdout is now
        ctxs, weights = ms.relax_integration.extracted_tasks_to_tune_contexts(
            todo, str(work_dir), strategy=search_strategy(trials), seed=0)
    cost = "xgb" if importlib.util.find_spec("xgboost") else "random"
    callbacks = [ms.measure_callback.AddToDatabase(), ms.measure_callback.UpdateCostModel()]
    ms.tune_tasks(tasks=ctxs, task_weights=weights, work_dir=str(work_dir),
                  max_trials_global=trials * len(ctxs), max_trials_per_task=trials,
                  num_trials_per_iter=min(64, max(1, trials)), database=db,
                  builder=InProcessBuilder(), runner=InProcessRunner(), cost_model=cost,
                  measure_callbacks=callbacks)
    if hand_schedule is not None:
        for t in todo:
            _commit_hand_schedule(db, t.dispatched[0], target, hand_schedule)
    _MODULES.clear()
    return db, len(todo)


def tuning_tasks(mod: tvm.IRModule, target: tvm.target.Target) -> list:
    """MetaSchedule's tasks for the module's kernels, less those cococ schedules itself outside
    s_tir's reach (marked `tirx.is_scheduled` at lowering: the Winograd kernels): their records
    would never be used (`apply_database` and `build.schedule` leave such kernels as they are),
    so trials on them were time spent for nothing."""
    return [t for t in ms.relax_integration.extract_tasks(mod, target)
            if not t.dispatched[0]["main"].attrs.get("tirx.is_scheduled", False)]


def _from_metaschedule(trace) -> bool:
    """MetaSchedule's schedule rules annotate blocks with meta_schedule.*; cococ's never do."""
    return "meta_schedule." in str(trace)


def apply_database(mod: tvm.IRModule, target: tvm.target.Target, db) -> tuple[tvm.IRModule, int]:
    """Kernels whose best record is MetaSchedule's take its schedule (marked scheduled); the
    others keep cococ's schedule (build.schedule). Returns the module and how many were replaced."""
    target = tuning_target(target)
    mod = mod.clone()
    n = 0
    for gv, func in list(mod.functions.items()):
        if not isinstance(func, tirx.PrimFunc) or func.attrs.get("tirx.is_scheduled", False):
            continue
        wl = workload(func)
        rec = db.query_tuning_record(wl, target, "main")
        if rec is None or not _from_metaschedule(rec.trace):
            continue  # cococ's own schedule is best: today's, not the recorded trace of an older one
        sch = db.query_schedule(wl, target, workload_name="main")
        if sch is None:
            continue
        new = sch.mod["main"].with_attr("tirx.is_scheduled", True)
        mod[gv] = new.with_attr("global_symbol", func.attrs["global_symbol"]) \
            if func.attrs and "global_symbol" in func.attrs else new.without_attr("global_symbol")
        n += 1
    return mod, n
