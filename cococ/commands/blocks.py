"""Find the tuning blocks of a promising subspace (Wootz §5) and optionally pre-train them.

    cococ blocks examples/resnet/resnet.prototxt --weights resnet.safetensors --sample 8
    cococ blocks net.prototxt --weights w.caffemodel --subspace promising.json --blocks modules
    cococ blocks net.prototxt --weights w.safetensors --sample 32 --pretrain --data digits --pretrain-steps 200

Prints the tuning blocks (name = module@rate runs, frequency in the subspace, pre-training
group), the groups of non-overlapping blocks, and each network's composite vector (which
block covers each module; `·` = the module is unpruned and keeps the teacher's weights).
`--pretrain` trains every block not yet in the store (teacher-student, Wootz §6.1) and saves
it under --store (default NET.blocks/), keyed by block and a hash of the teacher's weights.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

import cococ.passes
from cococ.commands.common import deprecated_alias, input_file, nonnegative_int, positive_int, writable_dir
from cococ.commands.show import add_load_arguments, load_graph
from cococ.frontend.subspace import load_subspace, sample_subspace
from cococ.ir.core import CococError
from cococ.passes.tuning_blocks import identify_tuning_blocks
from cococ.runtime.data import DATA_HELP


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="NET", help="network: .ir, .prototxt or .onnx (the trained full model)")
    add_load_arguments(parser)
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--subspace", metavar="FILE", help="the promising subspace: .json/.npy/.pkl list of rate lists")
    src.add_argument("--sample", type=positive_int, metavar="N", help="sample N configurations (ORNL §5.2)")
    parser.add_argument("--rates", default="0.3,0.5,0.7", help="pruning rates to sample from (default 0.3,0.5,0.7)")
    parser.add_argument("--sample-seed", type=int, default=0, help="seed of --sample (default 0)")
    parser.add_argument("--blocks", choices=["sequitur", "modules"], default="sequitur",
                        help="how tuning blocks are found: sequitur (Wootz §5) or modules (every (module, rate) "
                             "its own block)")
    deprecated_alias(parser, "--method", "--blocks", choices=["sequitur", "modules"])
    parser.add_argument("--show", type=nonnegative_int, default=20, metavar="K",
                        help="composite vectors to print (default 20; 0 for all)")
    parser.add_argument("--pretrain", action="store_true", help="pre-train the blocks into the store")
    parser.add_argument("--data", default="digits", help=f"training data for --pretrain (default digits): {DATA_HELP}")
    parser.add_argument("--pretrain-steps", type=positive_int, default=200, metavar="N",
                        help="pre-training iterations per group (default 200)")
    deprecated_alias(parser, "--steps", "--pretrain-steps", type=positive_int, metavar="N")
    parser.add_argument("--store", metavar="DIR", help="block store directory (default NET.blocks)")
    parser.add_argument("--pretrain-solver", metavar="FILE", help="solver prototxt for pre-training (default: "
                        "fixed lr 0.02, momentum 0.9, weight decay 1e-4, batch 32)")
    deprecated_alias(parser, "--solver", "--pretrain-solver", metavar="FILE")
    parser.add_argument("--lr", type=float, help="pre-training learning rate (overrides the default/solver's)")
    parser.add_argument("--batch-size", type=positive_int, metavar="N", help="pre-training batch size (default 32)")
    parser.add_argument("--threads", type=positive_int, default=1, metavar="N",
                        help="torch threads of pre-training in this process (default 1: the nets are small; with "
                             "torch's default, every core, 50 steps of the example ResNet's 18 blocks took 190 s "
                             "instead of 31 s on the shared 2-core machine at load 8-9)")
    parser.add_argument("--workers", type=positive_int, default=1, metavar="N",
                        help="pre-training processes, one torch thread each; the groups are split between them "
                             "(default 1)")
    parser.add_argument("--per-group", action="store_true",
                        help="one pre-training run per group, the teacher's forward repeated for each (Wootz as "
                             "published; for comparison). Default: the groups of a process in one run, one "
                             "teacher forward per batch; the blocks are the same")
    deprecated_alias(parser, "--batch", "--batch-size", type=positive_int, metavar="N")


def _configs(args, graph):
    n = len(graph.modules)
    if args.subspace:
        return load_subspace(input_file(args.subspace, "--subspace"), n)
    try:
        rates = [float(r) for r in args.rates.split(",") if r.strip()]
    except ValueError:
        raise CococError(f"--rates: expected numbers separated by commas, got '{args.rates}'") from None
    if not rates or any(not 0 <= r < 1 for r in rates):
        raise CococError(f"--rates: each rate must be in [0, 1), got '{args.rates}'")
    return sample_subspace(args.sample, n, rates, seed=args.sample_seed)


def with_modules(graph):
    """The graph with convolution modules (annotated, else found by identify-modules)."""
    if not graph.modules:
        graph = cococ.passes.run(graph, "identify-modules")
    if not graph.modules:
        raise CococError(f"{graph.name}: no convolution modules (annotate them with `module {{ }}` in the prototxt)")
    return graph


def print_plan(graph, configs, plan, show: int = 20, out=None) -> None:

    width = None if (out or sys.stdout).isatty() else 100  # a pipe or a file: 100 columns, long cells wrap
    console = Console(file=out, width=width, highlight=False)
    group_of = {bi: gi for gi, g in enumerate(plan.groups) for bi in g}
    t = Table(title=f"{len(plan.blocks)} tuning blocks for {len(configs)} networks over {len(graph.modules)} modules",
              title_justify="left")
    for col, j in (("#", "right"), ("block", "left"), ("modules", "left"), ("rates", "left"),
                   ("frequency", "right"), ("group", "right")):
        t.add_column(col, justify=j, no_wrap=col in ("#", "frequency", "group"))
    for i, b in enumerate(plan.blocks):
        t.add_row(f"B{i}", b.name(graph.modules), ",".join(graph.modules[b.start:b.stop]),
                  ",".join(f"{r:g}" for r in b.rates), str(b.frequency), str(group_of.get(i, "")))
    console.print(t)
    console.print(f"{len(plan.groups)} pre-training groups (blocks without common modules): " +
                  "; ".join(f"{gi}: " + " ".join(f"B{b}" for b in g) for gi, g in enumerate(plan.groups)))
    c = Table(title="composite vectors (block per module; · = no block: unpruned, or a run used once, default weights)", title_justify="left")
    c.add_column("net", justify="right")
    c.add_column("rates", justify="left", no_wrap=True)
    for m in graph.modules:
        c.add_column(m, justify="center", no_wrap=True)
    rows = list(enumerate(zip(configs, plan.composite)))
    for n, (cfg, comp) in rows[:show or None]:
        cells = [f"B{b}" if b is not None else "·" for b in comp]
        c.add_row(str(n), " ".join(f"{r:g}" for r in cfg), *cells)
    console.print(c)
    if show and len(rows) > show:
        console.print(f"... {len(rows) - show} more networks (--show 0 prints all)")
    covered = sum(sum(b is not None for b in comp) for comp in plan.composite)
    total = sum(sum(r > 0 for r in cfg) for cfg in configs)
    console.print(f"pruned modules covered by blocks: {covered} of {total}; "
                  f"blocks per network: {sum(len(set(x for x in comp if x is not None)) for comp in plan.composite) / max(1, len(configs)):.2f}")


def run(args: argparse.Namespace) -> int:
    if args.pretrain:  # what pre-training needs is checked before the load and the plan
        if args.weights is None and args.init is None and not str(args.file).endswith(".ir"):
            raise CococError("--pretrain needs the trained full model: give --weights")
        writable_dir(args.store or Path(args.file).with_suffix(".blocks"), "--store")
        if args.pretrain_solver:
            input_file(args.pretrain_solver, "--pretrain-solver")
    graph = with_modules(load_graph(args))
    configs = _configs(args, graph)
    plan = identify_tuning_blocks(configs, method=args.blocks)
    print_plan(graph, configs, plan, args.show)
    if not args.pretrain:
        return 0
    from cococ.runtime.blocks import BlockStore, pretrain, teacher_hash  # local: torch, only for --pretrain
    settings = {}
    if args.pretrain_solver:
        from cococ.frontend.solver import load_solver  # local: its lark grammar, only with --pretrain-solver
        settings = load_solver(args.pretrain_solver, lenient=args.lenient)
        if args.lr is not None:
            settings.base_lr = args.lr
        if args.batch_size:
            settings.batch_size = args.batch_size
    else:
        if args.lr is not None:
            settings["base_lr"] = args.lr
        if args.batch_size:
            settings["batch_size"] = args.batch_size
    store = BlockStore(args.store or Path(args.file).with_suffix(".blocks"), teacher_hash(graph))
    import torch  # local: see above
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    if args.workers > 1:
        rows = pretrain_parallel(graph, plan, args.data, settings, store, args)
    else:
        rows = pretrain(graph, plan, args.data, settings, store, steps=args.pretrain_steps,
                        progress=sys.stderr.isatty(), shared_teacher=not args.per_group)
    seconds = time.perf_counter() - t0
    t = Table(title=f"pre-training into {store.directory} (teacher {store.teacher_hash})", title_justify="left")
    for col in ("block", "group", "status", "MSE before", "MSE after"):
        t.add_column(col, justify="left" if col in ("block", "status") else "right", no_wrap=True)
    for r in rows:
        t.add_row(r["key"], str(r["group"]), r["status"],
                  f"{r['mse_before']:.4g}" if "mse_before" in r else "", f"{r['mse_after']:.4g}" if "mse_after" in r else "")
    Console(highlight=False, width=None if sys.stdout.isatty() else 100).print(t)
    print(f"{sum(r['status'] == 'trained' for r in rows)} blocks trained, "
          f"{sum(r['status'] == 'stored' for r in rows)} already stored; {store.directory} holds "
          f"{len(store.keys())} blocks; pre-training took {seconds:.1f} s "
          f"({'one run per group' if args.per_group else 'one teacher forward per batch'}, "
          f"{args.workers} process{'es' if args.workers > 1 else ''})")
    return 0


def pretrain_parallel(graph, plan, data, settings, store, args) -> list[dict]:
    """--workers N: the groups split over N processes (runtime/explore/blockstore.py), recorded in
    a run database beside the store; rows as `pretrain` gives them."""
    from cococ.passes.teacher_student import block_key  # local: torch, only for --pretrain
    from cococ.runtime.data import load_data
    from cococ.runtime.explore.blockstore import pretrain_groups
    from cococ.runtime.explore.records import RunDB
    before = set(store.keys())
    db = RunDB(store.directory / "pretrain.sqlite")
    try:
        pretrain_groups(graph, plan, load_data(data, graph.inputs[0].type.shape), settings, store, db,
                        steps=args.pretrain_steps, progress=sys.stderr.isatty(), workers=args.workers,
                        shared_teacher=not args.per_group)
    finally:
        db.close()
    rows = []
    for gi, group in enumerate(plan.groups):
        for bi in group:
            key = block_key(graph, plan.blocks[bi])
            status = "teacher" if not plan.blocks[bi].needs_training else "stored" if key in before else "trained"
            meta = store.meta(key) or {}
            rows.append({"key": key, "group": gi, "status": status,
                         **{k: float(meta[k]) for k in ("mse_before", "mse_after") if k in meta}})
    return rows
