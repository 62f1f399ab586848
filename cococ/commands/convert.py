"""Convert a network between formats: .ir, .prototxt, .onnx in; .ir, .prototxt, .onnx, .dot out.

    cococ convert net.prototxt --weights net.caffemodel -o net.ir   # net.ir + side-car net.npz
    cococ convert net.ir -o net.prototxt                            # + net.safetensors if it has weights
    cococ convert net.ir -o net.onnx
    cococ convert net.ir -o net.dot
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cococ.commands.common import writable_file
from cococ.commands.show import add_load_arguments, load_graph
from cococ.ir.core import CococError, Graph
from cococ.ir.dot import to_dot
from cococ.ir.printer import print_graph, save_ir

WRITERS = (".ir", ".prototxt", ".onnx", ".dot")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="IN", help="network: .ir, .prototxt or .onnx")
    parser.add_argument("-o", "--output", metavar="OUT", required=True,
                        help="output file; its suffix picks the format: .ir (weights in a side-car .npz), "
                             ".prototxt (Caffe deploy net; weights in a side-car .safetensors), .onnx, .dot; "
                             "'-' prints the IR to stdout")
    parser.add_argument("--inline-weights", action="store_true",
                        help="write weights inside the .ir text instead of a side-car .npz")
    add_load_arguments(parser)


def check_output(out: str) -> None:
    """Refuse an output whose format or place cannot be written, before the load and the passes."""
    if out == "-":
        return
    path = Path(out)
    suffix = path.suffix.lower()
    if suffix not in WRITERS:
        raise CococError(f"{out}: cannot write '{suffix or path.name}' files; "
                         f"output formats: {', '.join(WRITERS)}")
    writable_file(path, "-o")


def write_graph(graph: Graph, out: str, inline_weights: bool = False) -> tuple[Graph, list[Path]]:
    """Write `graph` to `out` in the format its suffix names ('-' = IR text on stdout); returns
    the graph as written (a prototxt splits affine batchnorms into BatchNorm + Scale, so its
    layers are counted from that) and the files written (with the side-car of weights)."""
    if out == "-":
        sys.stdout.write(print_graph(graph, "inline" if inline_weights else "hash"))
        return graph, []
    check_output(out)
    path = Path(out)
    suffix = path.suffix.lower()
    try:
        if suffix == ".ir":
            save_ir(graph, path, weights="inline" if inline_weights else "npz")
            side = path.with_suffix(".npz")  # save_ir removes a stale one when the graph has no weights
            return graph, [path, side] if not inline_weights and side.exists() else [path]
        elif suffix == ".prototxt":
            from cococ.frontend.prototxt.writer import save_prototxt, split_affine_batchnorm  # local: lark
            graph = split_affine_batchnorm(graph)
            return graph, list(save_prototxt(graph, path).values())
        elif suffix == ".dot":
            path.write_text(to_dot(graph), encoding="utf-8")
        else:
            import onnx  # local: ~0.7 s to load, only for this format

            from cococ.backends.onnx_export import to_onnx
            onnx.save(to_onnx(graph), str(path))
    except OSError as e:
        raise CococError(f"{out}: cannot write: {e.strerror or e}") from None
    return graph, [path]


def print_written(graph: Graph, paths: list[Path]) -> None:
    """The success line of a command that wrote `graph` to files (none: it went to stdout)."""
    if paths:
        print(f"wrote {graph.name} ({len(graph.layers)} layers) to {' + '.join(map(str, paths))}")


def run(args: argparse.Namespace) -> int:
    check_output(args.output)
    graph = load_graph(args)
    print_written(*write_graph(graph, args.output, args.inline_weights))
    return 0
