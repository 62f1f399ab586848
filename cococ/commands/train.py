"""Train a network with a Caffe solver on digits, an .npz file or an image folder.

    cococ train examples/lenet/lenet.prototxt --solver examples/lenet/lenet_solver.prototxt --data digits
    cococ train net.prototxt --solver solver.prototxt --data imgs/ --weights pre.caffemodel -o tuned.safetensors
    cococ train net.prototxt --solver solver.prototxt --data d.npz --resume snap_iter_1000.solverstate.safetensors

Params without weights are initialised randomly (He init, from --seed or the solver's
random_seed). Writes the trained weights (-o, safetensors, keys layer/param), the curves as
OUT.log.csv and OUT.log.json, and with --plot OUT.log.png. Snapshots go to the solver's
snapshot_prefix (relative to the solver file) every `snapshot` iterations.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cococ
from cococ.commands.show import add_lenient_argument
from cococ.commands.common import input_file, positive_int, writable_file
from cococ.ir.core import CococError
from cococ.ir.memory import activation_bytes, check_memory
from cococ.runtime.data import DATA_HELP, load_data


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="NET", nargs="?", help="network (.prototxt, .onnx, .ir); default: the solver's net")
    parser.add_argument("--solver", required=True, metavar="FILE", help="Caffe solver prototxt")
    add_data_arguments(parser)
    parser.add_argument("-o", "--output", metavar="FILE", help="trained weights (default NET.trained.safetensors)")
    parser.add_argument("--weights", metavar="FILE", help="start from these weights (.caffemodel, .npz, .safetensors)")
    parser.add_argument("--resume", metavar="SNAPSHOT", help="continue from a snapshot (<prefix>_iter_N[.solverstate].safetensors)")
    parser.add_argument("--max-iter", type=positive_int, metavar="N", help="override the solver's max_iter")
    parser.add_argument("--seed", type=int, help="override the solver's random_seed (init, batches, dropout)")
    parser.add_argument("--batch-size", type=positive_int, metavar="N", help="training batch size (default: the net's input batch if > 1, else 64)")
    parser.add_argument("--snapshot-prefix", metavar="PREFIX", help="override the solver's snapshot_prefix")
    parser.add_argument("--freeze", metavar="LAYERS", help="comma-separated layers to keep fixed")
    parser.add_argument("--plot", action="store_true", help="write the loss/accuracy curves as OUT.log.png")
    parser.add_argument("--threads", type=positive_int, metavar="N", help="torch CPU threads (default: torch's)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_lenient_argument(parser)


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """--data and the Caffe transform_param options, shared with `cococ eval`."""
    parser.add_argument("--data", default="digits", help=DATA_HELP)
    parser.add_argument("--scale", type=float, help="image folders: multiply pixels by this (after the mean)")
    parser.add_argument("--mean-value", metavar="B,G,R", help="image folders: per-channel mean to subtract")
    parser.add_argument("--crop-size", type=positive_int, help="image folders: random (train) / centre (test) crop")
    parser.add_argument("--mirror", action="store_true", help="image folders: random horizontal flips in training")


def transform_of(args) -> dict:
    t = {}
    if args.scale is not None:
        t["scale"] = args.scale
    if args.mean_value:
        try:
            t["mean_value"] = [float(v) for v in args.mean_value.split(",")]
        except ValueError:
            raise CococError(f"--mean-value: expected numbers separated by commas, got '{args.mean_value}'") from None
    if args.crop_size:
        t["crop_size"] = args.crop_size
    if args.mirror:
        t["mirror"] = True
    return t


def dataset_for(graph, args):
    if not graph.inputs:
        raise CococError("the network has no input")
    out = graph.outputs[0].type
    classes = out.shape[-1] if out is not None and out.rank == 2 else None
    return load_data(args.data, graph.inputs[0].type.shape, num_classes=classes, transform=transform_of(args))


def run(args) -> int:
    # local: lark and torch load only when the command runs, not for `cococ --help` (imports every command)
    from cococ.frontend.solver import load_solver
    from cococ.runtime.train import save_weights, train
    solver = load_solver(input_file(args.solver, "--solver"), lenient=args.lenient)
    net = args.file
    if net is None:
        if not solver.net:
            raise CococError(f"{args.solver}: the solver names no net; give NET")
        p = Path(solver.net)
        net = p if p.is_absolute() or p.exists() else Path(args.solver).parent / p
    seed = args.seed if args.seed is not None else (solver.random_seed if solver.random_seed >= 0 else 0)
    # every file the run writes or reads is checked before the load, the data and the training
    out = writable_file(args.output or Path(net).with_suffix("").name + ".trained.safetensors", "-o",
                        make_parents=True)
    input_file(net, "network")
    for flag in ("weights", "resume"):
        if getattr(args, flag):
            input_file(getattr(args, flag), f"--{flag}")
    prefix = args.snapshot_prefix
    if prefix is None and solver.snapshot_prefix:
        p = Path(solver.snapshot_prefix)
        prefix = str(p if p.is_absolute() else Path(args.solver).parent / p)
    if prefix:
        writable_file(prefix + "_iter_0.safetensors", "snapshot_prefix", make_parents=True)
    try:
        graph = cococ.load(net, weights=args.weights, init="random", seed=seed, lenient=args.lenient)
    except OSError as e:
        raise CococError(f"{e.filename or net}: {e.strerror or e}") from None
    batch = args.batch_size or (graph.inputs[0].type.shape[0] if graph.inputs[0].type.shape[0] > 1 else 64)
    check_memory(3 * activation_bytes(graph, batch), f"{graph.name}: training with batch {batch}")
    data = dataset_for(graph, args)
    print(f"cococ train: {Path(net).name} on {data.describe()}; {solver.type}, base_lr {solver.base_lr}, "
          f"{args.max_iter or solver.max_iter} iterations of batch {batch}, seed {seed}")
    frozen = [s.strip() for s in args.freeze.split(",") if s.strip()] if args.freeze else ()
    log = out.with_name(out.name.removesuffix(".safetensors") + ".log")
    r = train(graph, solver, data, max_iter=args.max_iter, seed=seed, batch_size=batch, resume=args.resume,
              snapshot_prefix=prefix, log_prefix=log, plot=args.plot, progress=not args.no_progress,
              frozen=frozen, threads=args.threads)
    save_weights(graph, out, {"iter": r.train_log[-1]["iter"] + 1 if r.train_log else 0,
                              "test_accuracy": f"{r.accuracy:.6f}"})
    t = r.test_log[-1] if r.test_log else {}
    print(f"test accuracy {t.get('accuracy', float('nan')):.4f}, loss {t.get('loss', float('nan')):.4f} "
          f"({r.seconds:.1f} s); weights: {out}; log: {log}.csv" + (f", {log}.png" if args.plot else ""))
    for s in r.snapshots:
        print(f"snapshot: {s}")
    return 0
