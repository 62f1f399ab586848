"""One lowered group timed on the host, built alone: the helper behind every x86 kernel choice
that is measured rather than read from a table (sparse vs dense in sparse.py, Winograd vs the
direct conv in winograd_x86.py). Both build the same Relax function around the group (its
external inputs as parameters, random feeds of seed 0), schedule it as the build does and take
TVM's time evaluator, with a call count sized so one repeat lasts about `budget_s`."""
from __future__ import annotations

from typing import Callable

import numpy as np
import tvm
from tvm import relax

from cococ.ir.core import Layer


def group_feeds(ext: list) -> list:
    """Random inputs (seed 0) for the group's external input values, on the host."""
    from cococ.backends.tvm.lower import TVM_DTYPES
    rng = np.random.default_rng(0)
    return [tvm.runtime.tensor(rng.standard_normal(v.type.shape).astype(TVM_DTYPES[v.type.dtype]), tvm.cpu())
            for v in ext]


def group_timer(group: list[Layer], ext: list, feeds: list, lanes: int, lower: Callable,
                budget_s: float = 1e-3, repeat: int = 5):
    """(vm, time evaluator) of the group built alone; `lower(bb, env)` emits the group's layers
    (env maps id(value) -> Relax var, as the build's emitters take it)."""
    from cococ.backends.tvm.build import tvm_target
    from cococ.backends.tvm.lower import TVM_DTYPES
    from cococ.backends.tvm.schedule_x86 import schedule_module
    from cococ.ir.target import get_target
    dev = tvm.cpu()
    bb = relax.BlockBuilder()
    params = [relax.Var(f"x{i}", relax.TensorType(list(v.type.shape), TVM_DTYPES[v.type.dtype]))
              for i, v in enumerate(ext)]
    with bb.function("main", params):
        with bb.dataflow():
            env = {id(v): q for v, q in zip(ext, params)}
            lower(bb, env)
            out = bb.emit_output(env[id(group[-1].outputs[0])])
        bb.emit_func_output(out)
    vm = relax.VirtualMachine(relax.build(schedule_module(bb.get(), lanes), tvm_target(get_target("x86"))), dev)
    t0 = vm.time_evaluator("main", dev, number=1, repeat=3)(*feeds).min  # also the warm-up
    calls = max(1, min(1000, int(budget_s / max(t0, 1e-7))))
    return vm, vm.time_evaluator("main", dev, number=calls, repeat=repeat)
