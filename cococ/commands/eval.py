"""Evaluate trained weights on a data set's test split: accuracy, top-5, confusion matrix.

    cococ eval examples/lenet/lenet.prototxt --weights examples/lenet/lenet.safetensors --data digits
    cococ eval net.prototxt --weights w.caffemodel --data imgs/ --plot

Runs the network with the torch runtime (the same numbers as the reference interpreter).
Top-5 is shown where there are more than 5 classes; --plot writes the confusion matrix as a
PNG (--plot-file, default WEIGHTS.confusion.png).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.table import Table

import cococ
from cococ.commands.show import add_lenient_argument
from cococ.commands.train import add_data_arguments, dataset_for
from cococ.commands.common import input_file, positive_int, writable_file
from cococ.ir.core import CococError
from cococ.ir.memory import activation_bytes, check_memory


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="NET", help="network (.prototxt, .onnx, .ir)")
    parser.add_argument("--weights", metavar="FILE", help="weights (.caffemodel, .npz, .safetensors); "
                        "needed unless NET carries its own (.onnx, .ir with a side-car .npz)")
    add_data_arguments(parser)
    parser.add_argument("--split", choices=["test", "val", "train"], default="test",
                        help="which split (default test; val: the validation split, where the data set has one)")
    parser.add_argument("--batch-size", type=positive_int, default=256, metavar="N", help="evaluation batch (default 256)")
    parser.add_argument("--plot", action="store_true", help="write the confusion matrix as a PNG")
    parser.add_argument("--plot-file", metavar="FILE", help="where --plot writes (default WEIGHTS.confusion.png)")
    add_lenient_argument(parser)


def run(args) -> int:
    # local: torch loads only when the command runs, not for `cococ --help` (imports every command)
    from cococ.runtime.torch.module import to_torch
    from cococ.runtime.train import evaluate, logits_value

    input_file(args.file, "network")
    if args.weights:
        input_file(args.weights, "--weights")
    if args.plot:
        writable_file(plot_path(args), "--plot-file")
    try:
        graph = cococ.load(args.file, weights=args.weights, lenient=args.lenient)
    except OSError as e:
        raise CococError(f"{e.filename or args.file}: {e.strerror or e}") from None
    data = dataset_for(graph, args)
    if args.split == "val" and not data.has_validation:
        raise CococError(f"--split val: {data.name} has no validation split (mnist, fashion-mnist, idx:DIR and "
                         ".npz files with x_val have one)")
    x, y = {"test": data.test_arrays, "val": data.val_arrays,
            "train": lambda: (data.x_train, data.y_train)}[args.split]()
    batch = min(args.batch_size, max(1, len(y)))
    check_memory(activation_bytes(graph, batch), f"{graph.name}: evaluating with batch {batch}")
    module = to_torch(graph, outputs=[logits_value(graph)])
    r = evaluate(module, x, y, args.batch_size, data.num_classes)
    line = f"{Path(args.file).name} on {data.name} ({args.split}, {r['n']} images): accuracy {r['accuracy']:.4f}"
    if data.num_classes > 5:
        line += f", top-5 {r['top5']:.4f}"
    print(line + f", loss {r['loss']:.4f}")
    print_confusion(r["confusion"], data.class_names)
    if args.plot:
        path = plot_path(args)
        plot_confusion(r["confusion"], data.class_names, path, title=f"{Path(args.file).name}: {r['accuracy']:.4f}")
        print(f"confusion matrix: {path}")
    return 0


def plot_path(args) -> Path:
    return Path(args.plot_file or Path(args.weights or args.file).with_suffix("").name + ".confusion.png")


def print_confusion(conf, names=None) -> None:

    k = len(conf)
    names = names or [str(i) for i in range(k)]
    t = Table(title="confusion (rows: true, columns: predicted)", show_lines=False)
    t.add_column("true", justify="right")
    for n in names:
        t.add_column(n, justify="right")
    for i in range(k):
        t.add_row(names[i], *[(f"[bold]{v}[/bold]" if i == j else (str(v) if v else "·")) for j, v in enumerate(conf[i])])
    Console().print(t)


def plot_confusion(conf, names, path, title="") -> Path:
    import matplotlib  # local: loads only when a plot is drawn, and Agg must be chosen before pyplot
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    k = len(conf)
    names = names or [str(i) for i in range(k)]
    fig, ax = plt.subplots(figsize=(1 + 0.5 * k, 1 + 0.5 * k))
    ax.imshow(conf, cmap="Blues")
    for i in range(k):
        for j in range(k):
            if conf[i][j]:
                ax.text(j, i, str(conf[i][j]), ha="center", va="center", fontsize=8,
                        color="white" if conf[i][j] > conf.max() / 2 else "black")
    ax.set_xticks(range(k), names), ax.set_yticks(range(k), names)
    ax.set_xlabel("predicted"), ax.set_ylabel("true"), ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
