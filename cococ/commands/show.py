"""Show a network's layers: op, module, output shape, params, MACs, and totals (or --dot).

    cococ show net.prototxt --weights net.caffemodel
    cococ show net.ir --dot | dot -Tsvg > net.svg
"""
from __future__ import annotations

import argparse
import shutil
import sys

from rich.console import Console
from rich.table import Table

import cococ
from cococ.commands.common import input_file
from cococ.ir.core import CococError, Graph
from cococ.ir.dot import to_dot
from cococ.ir.verify import infer_shapes


def add_load_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of cococ.load, shared by show, opt and convert."""
    parser.add_argument("--weights", metavar="FILE", help="weights to load (.caffemodel, .npz, .safetensors)")
    parser.add_argument("--init", choices=["random"], help="initialise missing weights (He init)")
    parser.add_argument("--seed", type=int, default=0, help="seed for --init random (default 0)")
    parser.add_argument("--phase", default="TEST", choices=["TEST", "TRAIN"],
                        help="Caffe phase for .prototxt include/exclude rules (default TEST)")
    parser.add_argument("--input-shape", type=input_shape, metavar="N,C,H,W",
                        help=".prototxt: the input's shape (a train_val net's Data layer has it in its database)")
    add_lenient_argument(parser)


def add_lenient_argument(parser: argparse.ArgumentParser) -> None:
    """--lenient, for every command that reads a prototxt (net or solver)."""
    parser.add_argument("--lenient", action="store_true",
                        help="warn about prototxt fields caffe.proto does not define instead of failing")


def input_shape(text: str) -> list[int]:
    """argparse type of --input-shape: comma-separated positive dims, e.g. 100,3,32,32."""
    try:
        dims = [int(d) for d in text.split(",")]
    except ValueError:
        dims = []
    if not dims or min(dims) < 1:
        raise argparse.ArgumentTypeError(f"expected positive dims separated by commas (N,C,H,W), got '{text}'")
    return dims


def load_graph(args: argparse.Namespace, path=None) -> Graph:
    """cococ.load with the command's options; OS errors become one-line CococErrors."""
    path = input_file(args.file if path is None else path, "network")
    if args.weights is not None:
        input_file(args.weights, "--weights")
    try:
        return cococ.load(path, weights=args.weights, init=args.init, seed=args.seed, phase=args.phase,
                          lenient=args.lenient, input_shape=args.input_shape)
    except OSError as e:
        raise CococError(f"{e.filename or path}: {e.strerror or e}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", help="network: .ir, .prototxt or .onnx")
    add_load_arguments(parser)
    parser.add_argument("--dot", action="store_true", help="print Graphviz dot text instead of the table")


def layer_rows(graph: Graph) -> list[dict]:
    """One dict per layer: name, op, module, shapes, params, bytes, macs (of an infer_shapes'd graph)."""
    rows = []
    for layer in graph.layers:
        in_types = [v.type for v in layer.inputs]
        out_types = [v.type for v in layer.outputs]
        if any(t is None for t in in_types + out_types):
            raise layer.error("has untyped values; run `cococ opt FILE -p infer-shapes` first")
        cost = layer.opdef.cost(layer, in_types, out_types)
        rows.append({"name": layer.name, "op": layer.op, "module": layer.module or "",
                     "shape": ", ".join(str(t) for t in out_types), "params": cost.params,
                     "bytes": sum(p.nbytes for p in layer.params.values()), "macs": cost.macs})
    return rows


def _n(x: int) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if x >= div:
            return f"{x / div:.2f}{unit}"
    return str(x)


def run(args: argparse.Namespace) -> int:
    graph = load_graph(args)
    if args.dot:
        sys.stdout.write(to_dot(graph))
        return 0

    rows = layer_rows(infer_shapes(graph))  # checks it, types untyped values, fills attr defaults
    table = Table(title=f"graph @{graph.name}: {len(rows)} layers, {len(graph.modules)} module{'' if len(graph.modules) == 1 else 's'}",
                  title_justify="left")
    for col, justify in (("layer", "left"), ("op", "left"), ("module", "left"), ("output", "left"),
                         ("params", "right"), ("bytes", "right"), ("MACs", "right")):
        table.add_column(col, justify=justify, no_wrap=col != "layer")
    for r in rows:
        table.add_row(r["name"], r["op"], r["module"], r["shape"], _n(r["params"]), _n(r["bytes"]), _n(r["macs"]))
    params, nbytes, macs = (sum(r[k] for r in rows) for k in ("params", "bytes", "macs"))
    table.add_row("total", "", "", "", _n(params), _n(nbytes), _n(macs), style="bold", end_section=True)
    width = None if sys.stdout.isatty() else max(shutil.get_terminal_size((160, 24)).columns, 160)
    Console(width=width, highlight=False).print(table)
    print(f"inputs: {', '.join(f'%{v.name}: {v.type}' for v in graph.inputs)}; "
          f"outputs: {', '.join(f'%{v.name}: {v.type}' for v in graph.outputs)}; "
          f"params {params} ({nbytes} bytes), MACs {macs}")
    return 0
