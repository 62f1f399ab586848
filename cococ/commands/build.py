"""Compile a network for a target: a C project + ELF for arm-m4, a TVM module for x86/cuda.

    cococ build --target=arm-m4 net.prototxt --weights net.caffemodel -o build/net-m4
    cococ build --target=arm-m4 net.prototxt --init random --quantize q15 --target-opt sram=192K
    cococ build --target=arm-m4 lenet.prototxt --weights lenet.safetensors --quantize int8 --quant-data digits
    cococ build --target=x86 net.onnx -p canonicalize --tune 64 -o build/net-x86
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cococ.commands.show import add_load_arguments, load_graph
from cococ.ir.core import CococError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", help="network: .ir, .prototxt or .onnx")
    parser.add_argument("--target", "-t", default="x86", help="arm-m4, x86 or cuda (`cococ targets` lists them)")
    parser.add_argument("--target-opt", default="", metavar="K=V,..",
                        help="target options, e.g. flash=1M,sram=192K (arm-m4), arch=sm_80 (cuda)")
    parser.add_argument("-o", "--output", metavar="DIR", help="artifact folder (default: build/<name>-<target>)")
    parser.add_argument("-p", "--pipeline", default="", metavar="PIPELINE",
                        help="passes to run before code generation, e.g. 'canonicalize,dce'")
    parser.add_argument("--dump-ir", action="store_true", help="print the IR that is compiled (after the pipeline)")
    parser.add_argument("--quantize", choices=["q15", "int8"], help="fixed point for arm-m4 (runs the quantize pass "
                        "unless the pipeline did), calibrated on random inputs or on --quant-data")
    parser.add_argument("--quant-data", metavar="DATA", help="--quantize: calibrate on 64 training images of DATA "
                        "(digits, .npz, image folder) and report top-1 accuracy, f32 vs the device, on its test split")
    parser.add_argument("--tune", type=int, default=0, metavar="N",
                        help="x86/cuda: MetaSchedule trials per task (0: untuned)")
    add_load_arguments(parser)
    # --- Scalpel pruning before the build (issue 6; passes/prune_for_target.py) ---
    parser.add_argument("--prune", choices=["none", "auto"], default="none",
                        help="auto: prune and retrain for the target's parallelism (Scalpel) before building")
    parser.add_argument("--data", default="digits", help="--prune: data set (digits, .npz, image folder)")
    parser.add_argument("--solver", metavar="S", help="--prune: retraining solver prototxt (default: short SGD)")
    parser.add_argument("--max-accuracy-drop", type=float, default=0.5, metavar="PTS",
                        help="--prune: tolerated accuracy drop, percentage points (default 0.5)")


def run(args: argparse.Namespace) -> int:
    import cococ
    from cococ.backends.build import build
    from cococ.backends.target import get_target, parse_target_options

    target = get_target(args.target, parse_target_options(args.target_opt))  # bad target: fail before loading
    graph = load_graph(args)
    if args.pipeline:
        graph = cococ.passes.run(graph, args.pipeline)
    if args.prune == "auto":  # --- Scalpel pruning (issue 6): passes/prune_for_target.py ---
        from cococ.passes.prune_for_target import cli_prune
        graph = cli_prune(graph, target, args)
    if args.dump_ir:
        from cococ.ir.printer import print_graph
        print(print_graph(graph), file=sys.stderr)
    out = Path(args.output or Path("build") / f"{Path(args.file).stem}-{target.name}")
    options = {"seed": args.seed}
    if args.tune:
        if target.is_mcu:
            raise CococError("--tune is for x86/cuda; arm-m4 kernels are not tuned")
        options["tune"] = args.tune
    if args.quant_data:
        if not args.quantize:
            raise CococError("--quant-data goes with --quantize q15|int8")
        from cococ.backends.mcu.qeval import calibration_samples
        options["calibration"] = calibration_samples(graph, args.quant_data, seed=args.seed)
    art = build(graph, target, out_dir=out, quantize=args.quantize, **options)
    print(f"built {graph.name} for {target.name} -> {art.dir or out}")
    if target.is_mcu:
        _print_mcu_summary(art, target)
        if args.quant_data:
            _print_accuracy(graph, art, args.quant_data)
    return 0


def _print_accuracy(graph, art, data: str) -> None:
    """What the fixed point costs: f32 vs the built ELF (emulated) on the test split."""
    import json

    from cococ.backends.mcu.qeval import accuracy
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
    print(f"  {r['macs']:,} MACs, {r['params']:,} params, {len(r['steps'])} kernel calls, "
          f"{len(r['kernels'])} kernels" + (f", {r['quantize']}" if r.get("quantize") else ""))
    print(f"  ELF: {art.dir / r['elf']}" if r.get("elf") else f"  {r.get('note', '')}")
