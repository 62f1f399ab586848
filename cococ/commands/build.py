"""Compile a network for a target: a C project + ELF for arm-m4, a TVM module for x86/cuda.

    cococ build --target=arm-m4 net.prototxt --weights net.caffemodel -o build/net-m4
    cococ build --target=arm-m4 net.prototxt --init random --quantize q15 --target-opt sram=192K
    cococ build --target=arm-m4 lenet.prototxt --weights lenet.safetensors --quantize int8 --quant-data digits
    cococ build --target=x86 net.onnx -p canonicalize --tune 64 -o build/net-x86
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cococ.backends.build import build
from cococ.commands.common import input_file, nonnegative_int, writable_dir
from cococ.commands.show import add_load_arguments, load_graph
from cococ.ir.core import CococError
from cococ.ir.printer import print_graph
from cococ.ir.target import get_target, parse_target_options
from cococ.passes import get_pass, run as run_passes
from cococ.passes.pipeline import default_pipeline, parse_pipeline
from cococ.runtime.data import DATA_HELP


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", help="network: .ir, .prototxt or .onnx")
    parser.add_argument("--target", "-t", default="x86", help="arm-m4, x86 or cuda (`cococ targets` lists them)")
    parser.add_argument("--target-opt", default="", metavar="K=V,..",
                        help="target options, e.g. flash=1M,sram=192K,flash-ws=5 (arm-m4; io=int8: the model "
                        "takes and returns int8, with --quantize int8), arch=sm_80 (cuda)")
    parser.add_argument("-o", "--output", metavar="DIR", help="artifact folder (default: build/<name>-<target>)")
    parser.add_argument("-p", "--pipeline", default="", metavar="PIPELINE",
                        help="passes to run before code generation, e.g. 'canonicalize,dce' "
                        "(default: canonicalize)")
    parser.add_argument("--dump-ir", action="store_true", help="print the IR that is compiled (after the pipeline)")
    parser.add_argument("--quantize", choices=["q15", "int8"], help="fixed point for arm-m4 (runs the quantize pass "
                        "unless the pipeline did), calibrated on random inputs or on --quant-data")
    parser.add_argument("--quant-data", metavar="DATA", help="--quantize: calibrate on 64 training images of DATA "
                        "(digits, .npz, image folder) and report top-1 accuracy, f32 vs the device, on its test split")
    parser.add_argument("--tune", type=nonnegative_int, default=0, metavar="N",
                        help="x86/cuda: MetaSchedule trials per task (0: untuned); its logs go to OUT/tuning/logs/")
    parser.add_argument("--verbose", action="store_true", help="--tune: print MetaSchedule's logs too")
    add_load_arguments(parser)
    # --- Scalpel pruning before the build (issue 6; the pass prune-for-target, runtime/compress/) ---
    parser.add_argument("--prune", choices=["none", "auto"], default="none",
                        help="auto: prune and retrain for the target's parallelism (Scalpel) before building")
    parser.add_argument("--data", default="digits", help=f"--prune: data set: {DATA_HELP}")
    parser.add_argument("--solver", metavar="FILE", help="--prune: retraining solver prototxt (default: short SGD)")
    parser.add_argument("--max-accuracy-drop", type=float, default=0.5, metavar="PTS",
                        help="--prune: tolerated accuracy drop, percentage points (default 0.5)")


def run(args: argparse.Namespace) -> int:
    target = get_target(args.target, parse_target_options(args.target_opt))  # bad target: fail before loading
    # the output folder, and files the options name, are checked before the (slow) load, prune and compile
    out = writable_dir(args.output or Path("build") / f"{Path(args.file).stem}-{target.name}", "-o")
    if args.tune and target.is_mcu:
        raise CococError("--tune is for x86/cuda; arm-m4 kernels are not tuned")
    if args.quant_data and not args.quantize:
        raise CococError("--quant-data goes with --quantize q15|int8")
    if args.solver:
        input_file(args.solver, "--solver")
    passes = parse_pipeline(args.pipeline or default_pipeline(target))
    quantize = _quantize_dtype(args, passes, target)
    if target.is_mcu and target.io == "int8" and quantize != "int8":  # before the load (backends/mcu/io.py)
        raise CococError(f"--target-opt io=int8 goes with --quantize int8 (this build: "
                         f"{'--quantize ' + quantize if quantize else 'float'})")
    if quantize and args.prune == "auto" and not target.is_mcu:  # refused before the (minutes-long) pruning
        raise CococError(f"--quantize {quantize} is for arm-m4; target {target.name} runs float")
    graph = load_graph(args)
    # --prune auto retrains every weight: a quantize pass of -p (and the passes after it) runs
    # after the pruning, so that its scales are the pruned net's, as --quantize's are; the default
    # pipeline (canonicalize) runs after it too: retraining wants its batchnorm and dropout
    if args.prune != "auto":
        cut = len(passes)
    elif not args.pipeline:
        cut = 0
    else:
        cut = next((i for i, p in enumerate(passes) if p.name == "quantize"), len(passes))
    if passes[:cut]:
        graph = run_passes(graph, passes[:cut])
    if args.prune == "auto":  # --- Scalpel pruning (issue 6): the pass prune-for-target ---
        graph = _prune_for_target(graph, target, args, quantize)
    if passes[cut:]:
        graph = run_passes(graph, passes[cut:])
    if args.dump_ir:
        print(print_graph(graph), file=sys.stderr)
    options = {"seed": args.seed}
    if args.tune:
        options["tune"] = args.tune
        options["verbose"] = args.verbose
    if args.quant_data:
        from cococ.runtime.mcu.qeval import calibration_samples  # local: see _print_accuracy
        options["calibration"] = calibration_samples(graph, args.quant_data, seed=args.seed)
    art = build(graph, target, out_dir=out, quantize=quantize, **options)
    print(f"built {graph.name} for {target.name} -> {art.dir or out}")
    if target.is_mcu:
        _print_mcu_summary(art, target)
        if args.quant_data:
            _print_accuracy(graph, art, args.quant_data)
    return 0


def _quantize_dtype(args, passes, target) -> str | None:
    """The fixed point of the build: --quantize, or on arm-m4 the dtype of a quantize pass in -p
    (so `-p 'quantize{dtype=q15}'` builds the same integer kernels as `--quantize q15`)."""
    piped = [p.dtype for p in passes if p.name == "quantize"]
    if piped and args.quantize and piped[-1] != args.quantize:
        raise CococError(f"--quantize {args.quantize} and -p 'quantize{{dtype={piped[-1]}}}' disagree: give one")
    return args.quantize or (piped[-1] if piped and target.is_mcu else None)


def _prune_for_target(graph, target, args, quantize=None):
    """`--prune auto`: run prune-for-target for `target` (retraining steps to stderr), print its report.
    An int8 build prunes against the int8 sparse kernels (their break-even table and group width),
    any other against q15's."""
    # the pass class by name: its module (runtime/compress) imports torch only when --prune asks for it
    prune = get_pass("prune-for-target")(
        target=target.name, max_accuracy_drop=args.max_accuracy_drop, data=args.data, solver=args.solver or "",
        dtype="int8" if quantize == "int8" else "q15")
    graph = run_passes(graph, [prune], log=lambda s: print(s, file=sys.stderr))
    report = graph.meta["prune_for_target"]
    print(f"prune-for-target {report['target']} ({report['parallelism']} parallelism): "
          f"{' then '.join(report['methods'])}")
    if "node" in report:
        n = report["node"]
        print(f"  node pruning: channels {n['channels']}, MACs {n['macs_before']:,} -> {n['macs_after']:,}, "
              f"accuracy {n['accuracy_before']:.2%} -> {n['accuracy_after']:.2%}")
    if "table" in report:
        print("  " + report["table"].replace("\n", "\n  "))
    if "test_accuracy" in report:
        before, after = report["test_accuracy"]
        print(f"  test accuracy {before:.2%} -> {after:.2%} (the accuracies above are on the validation "
              "split, which the pruning decisions read)")
    for w in report.get("simd_group", {}).get("warnings", []):
        print(f"warning: {w}", file=sys.stderr)
    return graph


def _print_accuracy(graph, art, data: str) -> None:
    """What the fixed point costs: f32 vs the built ELF (emulated) on the test split."""
    # local: the emulator (unicorn, capstone) and the data sets load only for --quant-data, not
    # for every build nor for `cococ --help`, which imports every command module
    from cococ.runtime.mcu.qeval import accuracy
    a = accuracy(graph, art, data)
    q = art.report["quantize"]
    print(f"  accuracy on {data} ({a['n']} test images): f32 {100 * a['f32']:.2f}%, {q} on the device "
          f"{100 * a['device']:.2f}% (drop {100 * (a['f32'] - a['device']):.2f} points), "
          f"top-1 agreement {100 * a['agreement']:.1f}%")
    (art.dir / "accuracy.json").write_text(json.dumps(a, indent=2) + "\n")


def _print_mcu_summary(art, target) -> None:
    r = art.report
    kib = lambda n: f"{n / 1024:.1f} KiB"  # noqa: E731
    print(f"  flash {kib(r['flash'])} of {kib(target.flash)}   SRAM {kib(r['sram'])} of {kib(target.sram)}"
          f"   (arena {kib(r['arena_bytes'])}, weights {kib(r['weight_bytes'])})")
    if "memory" in r:  # the linked image, split (backends/mcu/memory.py)
        m = r["memory"]
        harness = "stack; the int8 I/O is in the arena" if r.get("io") else "I/O buffers, stack"
        print(f"  model flash {kib(m['model']['flash'])}, SRAM {kib(m['model']['sram'])} (arena lower bound "
              f"{kib(r['arena_peak_live_bytes'])}); board harness flash {kib(m['harness']['flash'])}, SRAM "
              f"{kib(m['harness']['sram'])} ({harness}); "
              f"libraries {kib(m['libraries']['flash'])}")
    if r.get("io"):  # io=int8: what a caller needs to quantize its data (backends/mcu/io.py)
        (x,), (y,) = r["io"]["inputs"], r["io"]["outputs"]
        print(f"  int8 I/O: input scale {x['scale']:.6g}, output scale {y['scale']:.6g}, zero point 0 "
              "(q = clamp(rint(x / scale), -128, 127); report.json `io`)")
    print(f"  {r['macs']:,} MACs, {r['params']:,} stored weights, {len(r['steps'])} kernel calls, "
          f"{len(r['kernels'])} kernels" + (f", {r['quantize']}" if r.get("quantize") else ""))
    print(f"  ELF: {art.dir / r['elf']}" if r.get("elf") else f"  {r.get('note', '')}")
