"""Run a pass pipeline on a network and print (or write) the result, like mlir-opt.

    cococ opt net.ir -p 'infer-shapes,canonicalize,dce' --dump-ir
    cococ opt net.prototxt --weights net.caffemodel -p 'canonicalize,prune-filters{rate=0.5}' -o small.ir
"""
from __future__ import annotations

import argparse

from cococ.commands.common import writable_dir
from cococ.commands.convert import check_output, print_written, write_graph
from cococ.commands.show import add_load_arguments, load_graph
from cococ.ir.core import CococError
from cococ.passes import DumpIR, PassTiming, run as run_passes
from cococ.passes.pipeline import parse_pipeline


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", help="network: .ir, .prototxt or .onnx")
    parser.add_argument("-p", "--pipeline", default="", metavar="PIPELINE",
                        help="passes to run, e.g. 'canonicalize,prune-filters{rates=[0.3,0.5]},dce' "
                             "(docs/passes.md lists them)")
    parser.add_argument("-o", "--output", metavar="OUT",
                        help="write the result: .ir (weights in a side-car .npz), .prototxt (+ .safetensors), "
                             ".onnx, .dot; default: print the IR to stdout")
    parser.add_argument("--dump-ir", nargs="?", const="after-all", action="append", metavar="WHEN",
                        help="print the IR around passes: after-all (the default), before-all, after-change, "
                             "before:PASS, after:PASS; repeatable, or comma-separated")
    parser.add_argument("--dump-ir-dir", metavar="DIR",
                        help="write the dumps as numbered files (001_after_PASS.ir) into DIR instead of stderr")
    parser.add_argument("--pass-timing", action="store_true", help="print a table of the time each pass took")
    parser.add_argument("--no-verify", action="store_true", help="do not verify the graph after every pass")
    parser.add_argument("--inline-weights", action="store_true",
                        help="print weights in the IR text (and write them inside -o OUT.ir)")
    parser.add_argument("--reproducer-dir", default=".", metavar="DIR",
                        help="where a crashing pass leaves its reproducer (default: the current folder)")
    add_load_arguments(parser)


def run(args: argparse.Namespace) -> int:

    passes = parse_pipeline(args.pipeline)  # a bad pipeline fails before the (slow) load
    check_output(args.output or "-")
    if args.dump_ir_dir:
        writable_dir(args.dump_ir_dir, "--dump-ir-dir")
    instruments = []
    if args.dump_ir or args.dump_ir_dir:
        specs = [s for spec in (args.dump_ir or ["after-all"]) for s in spec.split(",") if s.strip()]
        instruments.append(DumpIR(specs, directory=args.dump_ir_dir))
    if args.pass_timing:
        instruments.append(PassTiming())
    graph = load_graph(args)
    try:
        graph = run_passes(graph, passes, instruments=instruments, verify=not args.no_verify,
                           reproducer=args.reproducer_dir)
    except OSError as e:  # a dump folder that cannot be written
        raise CococError(f"{e.filename or ''}: {e.strerror or e}") from None
    print_written(*write_graph(graph, args.output or "-", args.inline_weights))
    return 0
