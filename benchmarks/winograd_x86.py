"""x86: Winograd F(2,3) / F(4,3) against the direct conv on 3x3 stride-1 convs (issue 17).

    .venv/bin/python benchmarks/winograd_x86.py [--rounds 7] [--threads 2] [--no-write]

Each shape is a 3x3 stride-1 conv as torch exports it (BatchNorm folded: conv + bias + relu, one
fused group), batch 1: ResNet-50's (64 -> 64 channels on 56x56, 128 on 28x28, 256 on 14x14, 512 on
7x7) and SqueezeNet 1.1's expand3x3 (16 -> 64 on 56x56, 32 -> 128 on 28x28, 48 -> 192 and 64 -> 256
on 14x14), as the corpus nets have them. The
group is built alone three times (backends/tvm/winograd_x86.py `group_timers`: the direct conv
cococ builds today, F(2,3), F(4,3)), then --rounds rounds, in each every variant timed in turn
(TVM's time evaluator, the minimum of 3 repeats of a ~2 ms batch of runs): the variants are
interleaved, so a busy spell of the shared machine hits all three. Per variant: the median and the
minimum over rounds, and the ratio to the direct conv per round (median and range). Load average
and CPU affinity are printed before and after. Error: each variant's output on one random input
against torch's float64 conv (max |y - ref| / (1 + |ref|), the tests' 1e-4 criterion); a variant
over 1e-4 is never chosen. Then the CPU time of one run at one thread (process CPU time over
a batch, minimum over interleaved rounds): on a shared machine other jobs stretch wall times
(2-thread ratios ranged 0.2-4x within one run at load 10) but barely change a run's own CPU time.
The chosen kernel per shape is the Winograd variant of least 1-thread CPU time among those under
the error bound (F(2,3) unless F(4,3) is 5% faster: less rounding error, 16/36 the transformed
weights), if that is below 0.9x the direct conv's (a margin) and its 2-thread minimum wall
time is below the direct conv's too; else the direct conv. The table printed at the end is
winograd_x86.TABLE.
--net also times the whole of ResNet-50 and SqueezeNet 1.1 (the corpus prototxts, random He weights, batch 1) built
with `winograd=off` and with the default `winograd=table`, both artifacts in this process,
interleaved rounds of --runs runs each, and compares their outputs.

Writes docs/performance.md's `winograd-x86` section and docs/benchmarks/winograd-x86.json.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import markdown_table, write_section  # noqa: E402

# (in channels, out channels, map size, net): ResNet-50's 3x3 stride-1 convs, then SqueezeNet 1.1's
# expand3x3 convs (the corpus nets; SqueezeNet is one of the x86 table's nets furthest from its goal)
SHAPES = [(64, 64, 56, "ResNet-50"), (128, 128, 28, "ResNet-50"), (256, 256, 14, "ResNet-50"), (512, 512, 7, "ResNet-50"),
          (16, 64, 56, "SqueezeNet 1.1"), (32, 128, 28, "SqueezeNet 1.1"), (48, 192, 14, "SqueezeNet 1.1"),
          (64, 256, 14, "SqueezeNet 1.1")]
VARIANTS = (0, 2, 4)
NAMES = {0: "direct", 2: "F(2,3)", 4: "F(4,3)"}
MARGIN = 0.9
TIE = 0.95  # F(2,3) is kept unless F(4,3) is 5% faster: smaller error, and its U is 16/36 of F(4,3)'s


def load() -> str:
    return " / ".join(f"{x:.1f}" for x in os.getloadavg())


def group_of(c: int, h: int, seed: int = 0, k: int | None = None):
    """conv 3x3 c -> k (default c), pad 1, bias, + relu on a 1 x c x h x h input (He weights), as a fused group."""
    k = k or c
    from cococ.ir.core import Graph, Layer, Param, TensorType, Value
    from cococ.ir.verify import infer_shapes
    rng = np.random.default_rng(seed)
    x, y, z = Value("x", TensorType((1, c, h, h))), Value("y"), Value("z")
    w = (rng.standard_normal((k, c, 3, 3)) * np.sqrt(2 / (9 * c))).astype(np.float32)
    b = (rng.standard_normal(k) * 0.1).astype(np.float32)
    conv = Layer("conv2d", "conv", [x], [y], {"out_channels": k, "kernel": [3, 3], "pad": [1, 1, 1, 1]},
                 {"weight": Param.from_array(w), "bias": Param.from_array(b)})
    relu = Layer("relu", "relu", [y], [z])
    g = Graph("g", [Layer("input", "x", [], [x], {"shape": [1, c, h, h]}), conv, relu], [z])
    infer_shapes(g)
    return [conv, relu], w, b


def reference(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    import torch
    y = torch.nn.functional.conv2d(torch.from_numpy(x).double(), torch.from_numpy(w).double(),
                                   torch.from_numpy(b).double(), padding=1)
    return torch.relu(y).numpy()


CORPUS = Path(__file__).resolve().parents[2] / "shared/corpus/prototxt"
NETS = {"ResNet-50": "deep-residual-networks/prototxt/ResNet-50-deploy.prototxt",
        "SqueezeNet 1.1": "SqueezeNet/SqueezeNet_v1.1/deploy.prototxt"}


def whole_net(net: str, rounds: int, runs: int, threads: int) -> tuple[list, dict]:
    """`net` built with winograd=off and =table, timed interleaved; (table rows, data)."""
    import cococ
    from cococ.backends.tvm import build_tvm
    from cococ.ir.target import get_target
    arts, builds = {}, {}
    for mode in ("off", "table"):
        graph = cococ.load(CORPUS / NETS[net], init="random")
        last = graph.layers[-1]  # random weights saturate the softmax: compare the logits too
        if last.op == "softmax" and last.inputs[0] not in graph.outputs:
            graph.outputs.append(last.inputs[0])
        t0 = time.perf_counter()
        arts[mode] = build_tvm(graph, get_target("x86", {"winograd": mode, "threads": str(threads)}))
        builds[mode] = time.perf_counter() - t0
        print(f"{net} winograd={mode}: built in {builds[mode]:.0f} s ({arts[mode].manifest['build_times']}); load {load()}",
              flush=True)
    x = arts["off"].random_inputs()
    outs = {m: a.run(x) for m, a in arts.items()}
    diff = max(float(np.abs(outs["table"][k] - o).max() / (1 + np.abs(o).max())) for k, o in outs["off"].items())
    times = {m: [] for m in arts}
    for r in range(rounds):
        for m in (("off", "table") if r % 2 == 0 else ("table", "off")):
            for _ in range(2):
                arts[m].run(x)  # warm-up
            ts = []
            for _ in range(runs):
                t0 = time.perf_counter()
                arts[m].run(x)
                ts.append(time.perf_counter() - t0)
            times[m].append(statistics.median(ts))
    ratio = [t / o for t, o in zip(times["table"], times["off"])]
    line = (f"{net}: off {statistics.median(times['off']) * 1e3:.1f} ms, table "
            f"{statistics.median(times['table']) * 1e3:.1f} ms, ratio {statistics.median(ratio):.2f} "
            f"({min(ratio):.2f}-{max(ratio):.2f}); outputs differ by {diff:.1e} of max |logit|; load {load()}")
    print(line, flush=True)
    row = [f"{net} (whole net)", f"{statistics.median(times['off']) * 1e3:.1f} / {min(times['off']) * 1e3:.1f}",
           f"{statistics.median(times['table']) * 1e3:.1f} / {min(times['table']) * 1e3:.1f}",
           f"**{statistics.median(ratio):.2f}** ({min(ratio):.2f}–{max(ratio):.2f})", f"{diff:.1e}",
           f"{builds['off']:.0f} / {builds['table']:.0f}"]
    return [row], {"times_s": times, "diff": diff, "build_s": builds}


def cpu_times(timers: dict, feeds: list, rounds: int, threads: int) -> dict[int, float]:
    """Per variant, the CPU time of one run at one thread (process CPU time over a batch of runs,
    the minimum over interleaved rounds): what the kernel itself costs, which the other jobs of a
    shared machine barely change, where they change its wall time a lot."""
    from cococ.backends.tvm.artifact import set_threads
    set_threads(1)
    best = {m: float("inf") for m in timers}
    try:
        for _ in range(rounds):
            for m, (vm, _) in timers.items():
                f = vm["main"]
                f(*feeds)
                k, c0 = 0, time.process_time()
                while k < 3 or time.process_time() - c0 < 0.02:
                    f(*feeds)
                    k += 1
                best[m] = min(best[m], (time.process_time() - c0) / k)
    finally:
        set_threads(threads)
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--net", action="store_true", help="also the whole nets, winograd=off vs table")
    ap.add_argument("--runs", type=int, default=10, help="--net: runs per round")
    args = ap.parse_args()
    from cococ.backends.kernels.compute import LowerCtx
    from cococ.backends.tvm import winograd_x86 as W
    from cococ.backends.tvm.artifact import set_threads
    from cococ.backends.tvm.build import f32_lanes
    from cococ.ir.target import get_target
    set_threads(args.threads)
    lanes = f32_lanes(get_target("x86"))
    ctx = LowerCtx(oc_block=lanes)
    t_start = time.time()
    before = f"load {load()}, affinity {sorted(os.sched_getaffinity(0))}"
    print(before, flush=True)
    rows, data, table = [], [], {}
    for c, k, h, net in SHAPES:
        group, w, b = group_of(c, h, k=k)
        t0 = time.perf_counter()
        timers, feeds = W.group_timers(group, ctx, VARIANTS)
        build_s = time.perf_counter() - t0
        ref = reference(feeds[0].numpy(), w, b)
        err = {}
        for m, (vm, _) in timers.items():
            y = vm["main"](*feeds).numpy()
            err[m] = float(np.max(np.abs(y - ref) / (1 + np.abs(ref))))
        times = {m: [] for m in timers}
        for _ in range(args.rounds):
            for m, (_, f) in timers.items():
                times[m].append(f(*feeds).min)
        ratio = {m: [t / d for t, d in zip(times[m], times[0])] for m in (2, 4)}
        cpu = cpu_times(timers, feeds, args.rounds, args.threads)
        ok = [m for m in (2, 4) if err[m] <= 1e-4]
        best = min(ok, key=lambda m: cpu[m] * (TIE if m == 2 else 1.0), default=0)  # F(2,3) on a near tie
        chosen = best if best and cpu[best] < MARGIN * cpu[0] and min(times[best]) < min(times[0]) else 0
        table[(c, k, h, h)] = chosen
        med = {m: statistics.median(times[m]) * 1e3 for m in times}
        mn = {m: min(times[m]) * 1e3 for m in times}
        line = (f"{c}->{k} {h}x{h}: direct {med[0]:.3f} ms | F(2,3) {med[2]:.3f} ms ({statistics.median(ratio[2]):.2f}x, "
                f"{min(ratio[2]):.2f}-{max(ratio[2]):.2f}) err {err[2]:.1e} | F(4,3) {med[4]:.3f} ms "
                f"({statistics.median(ratio[4]):.2f}x, {min(ratio[4]):.2f}-{max(ratio[4]):.2f}) err {err[4]:.1e} "
                f"| 1-thread CPU ms {cpu[0] * 1e3:.3f} / {cpu[2] * 1e3:.3f} / {cpu[4] * 1e3:.3f} "
                f"({cpu[2] / cpu[0]:.2f}x, {cpu[4] / cpu[0]:.2f}x) -> {NAMES[chosen]} (build {build_s:.0f} s; load {load()})")
        print(line, flush=True)
        rows.append([f"{net}: {c} → {k}, {h}x{h}", f"{med[0]:.3f} / {mn[0]:.3f}",
                     f"{med[2]:.3f} / {mn[2]:.3f}", f"**{statistics.median(ratio[2]):.2f}** ({min(ratio[2]):.2f}–{max(ratio[2]):.2f})",
                     f"{med[4]:.3f} / {mn[4]:.3f}", f"**{statistics.median(ratio[4]):.2f}** ({min(ratio[4]):.2f}–{max(ratio[4]):.2f})",
                     f"{cpu[0] * 1e3:.3f} / {cpu[2] * 1e3:.3f} / {cpu[4] * 1e3:.3f} (**{cpu[2] / cpu[0]:.2f}**, **{cpu[4] / cpu[0]:.2f}**)",
                     f"{err[0]:.1e} / {err[2]:.1e} / {err[4]:.1e}", NAMES[chosen]])
        data.append({"net": net, "shape": [c, k, h, h], "times_s": {NAMES[m]: times[m] for m in times}, "error": {NAMES[m]: err[m] for m in err},
                     "cpu_1thread_s": {NAMES[m]: cpu[m] for m in cpu},
                     "chosen": chosen, "build_s": build_s})
    if args.net:  # the whole net with the table just measured (what winograd_x86.TABLE is set to from it)
        W.TABLE.clear()
        W.TABLE.update(table)
    net_rows, net_data = [], {}
    for net in (NETS if args.net else ()):
        r, d = whole_net(net, args.rounds, args.runs, args.threads)
        net_rows += r
        net_data[net] = d
    after = f"load {load()}, affinity {sorted(os.sched_getaffinity(0))}"
    print(after)
    print("TABLE =", {k: v for k, v in table.items()})
    wall = time.time() - t_start
    if args.no_write:
        return
    body = f"""## Winograd on x86 (3x3 stride-1 convs)

`.venv/bin/python benchmarks/winograd_x86.py` ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(t_start))},
{wall:.0f} s). Each row is one of the corpus ResNet-50's or SqueezeNet 1.1's 3x3 stride-1 convs as torch exports it (BatchNorm
folded: conv + bias + relu, one fused kernel), batch 1, {args.threads} threads, {lanes} f32 lanes, built
alone three ways: the direct conv (`schedule_x86.py`, what every 3x3 conv ran before) and Winograd
F(2,3) / F(4,3) (`backends/tvm/winograd_x86.py`). {args.rounds} rounds, the three variants timed in turn in each
round (TVM's time evaluator, minimum of 3 repeats of a ~2 ms batch). ms: median / minimum over
rounds; ratio: Winograd / direct per round, median (range). Error: max |y − ref| / (1 + |ref|)
against torch's float64 conv, direct / F(2,3) / F(4,3) (the tests' bound is 1e-4). 1-thread CPU:
the CPU time of one run at one thread (minimum over rounds), robust to the other jobs of this
shared machine, which stretch the wall times. Chosen: the Winograd variant of least 1-thread CPU
time under the error bound (F(2,3) unless F(4,3) is 5% faster), when that is below {MARGIN}x the direct conv's and its 2-thread
minimum is below the direct conv's too; else the direct conv; this column is `winograd_x86.TABLE`, which `--target-opt winograd=table` (the
default) reads. Before: {before}; after: {after} (a shared 2-core machine: the ratios, measured
interleaved, are what holds).

{markdown_table(["conv", "direct ms", "F(2,3) ms", "F(2,3) / direct", "F(4,3) ms", "F(4,3) / direct",
                 "1-thread CPU ms: direct / F(2,3) / F(4,3) (ratios)", "error", "chosen"], rows)}
"""
    if net_rows:
        body += f"""
The whole nets (corpus prototxts, random He weights, batch 1, {args.threads} threads; their 3x3 stride-1
convs take the table's choice; ResNet-50's BatchNorm and Scale stay separate layers here, fused into
the kernel's epilogue), built with `winograd=off` and with the default `table`, both artifacts in this process,
{args.rounds} interleaved rounds of {args.runs} runs (`artifact.run`), ms median / minimum of the per-round medians;
difference: max |table − off| / (1 + max |off|) over the outputs (the logits and the softmax); build: seconds, off / table.

{markdown_table(["net", "winograd=off ms", "winograd=table ms", "table / off", "difference", "build s"], net_rows)}

At a load average of 10 or more on the 2 cores these whole-net wall times are mostly waiting:
each kernel's parallel region waits until both its threads get a time slice (SqueezeNet's 26
kernels took 5.7 ms in the quiet x86 run above, ResNet-50's 51 ms), so at such a load these rows
show that the outputs agree and what the builds cost, not the speed-up; the 1-thread CPU times
per kernel above are the measurement that holds.
"""
    write_section("winograd-x86", body, {"rounds": args.rounds, "threads": args.threads, "lanes": lanes,
                                          "before": before, "after": after, "shapes": data, "nets": net_data})


if __name__ == "__main__":
    main()
