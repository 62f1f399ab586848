"""Composability-based pruning (Wootz): find the smallest (or best) pruned network meeting an objective.

    cococ prune examples/resnet/resnet.prototxt --weights resnet.safetensors --sample 64 \\
        --rates 0.3,0.5,0.7 --objective 'min ModelSize constraint Accuracy >= 0.95' \\
        --solver examples/resnet/resnet_solver.prototxt --data digits --baseline -o prune-run

Pre-trains the tuning blocks of the promising subspace, then evaluates candidates in the order
the objective implies, each assembled from pre-trained blocks, fine-tuned and tested, and stops
as soon as the answer is certain. `--baseline` runs the same search with default networks.
Both searches stop a candidate's fine-tuning early when it can no longer win (its accuracy at a
test plus the best recovery seen after that iteration, plus --early-stop-margin, stays below the
threshold: runtime/explore/earlystop.py); `--no-early-stop` trains every candidate to the end.
Everything finished goes into RUNDIR/run.sqlite as it finishes: `--resume` continues a killed
run. Writes the chosen network as RUNDIR/pruned.prototxt + pruned.safetensors (Caffe deploy net
and its weights: `cococ build RUNDIR/pruned.prototxt --weights RUNDIR/pruned.safetensors`),
pruned.ir (+ .npz) and pruned.onnx, and the report: report.{json,md,html} with Wootz Figure 6
(fine-tuning curves) and Figure 7 (accuracy vs size) as PNGs.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import cococ
from cococ.commands.common import deprecated_alias
from cococ.commands.show import add_lenient_argument
from cococ.frontend.subspace import load_subspace, sample_subspace
from cococ.ir.core import CococError
from cococ.ir.printer import save_ir
from cococ.ir.verify import infer_shapes
from cococ.runtime.data import DATA_HELP, load_data


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("net", metavar="NET", help="the trained network: .prototxt (with modules), .onnx or .ir")
    parser.add_argument("--weights", metavar="FILE", help="trained weights (.caffemodel, .npz, .safetensors)")
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--subspace", metavar="FILE", help="promising subspace: .json, .npy or Wootz .pkl (restricted loader)")
    src.add_argument("--sample", type=int, metavar="N", help="sample N configurations (ORNL §5.2)")
    parser.add_argument("--rates", default="0.3,0.5,0.7", help="pruning rates for --sample (default 0.3,0.5,0.7)")
    parser.add_argument("--sample-seed", type=int, default=0, metavar="N", help="seed of --sample (default 0)")
    deprecated_alias(parser, "--seed", "--sample-seed", type=int, metavar="N")
    parser.add_argument("--objective", required=True, help="e.g. 'min ModelSize constraint Accuracy >= 0.95'")
    parser.add_argument("--solver", required=True, metavar="FILE", help="fine-tuning solver (Caffe solver prototxt)")
    parser.add_argument("--pretrain-solver", metavar="FILE", help="solver for pre-training blocks (default: --solver)")
    parser.add_argument("--data", default="digits", help=f"data set: {DATA_HELP}")
    parser.add_argument("--baseline", action="store_true", help="also run the search with default networks")
    parser.add_argument("--no-comp", action="store_true", help="skip the composability search (with --baseline)")
    parser.add_argument("--executor", choices=("local", "ray"), default="local",
                        help="where candidates are fine-tuned: local processes or a Ray cluster (default local)")
    parser.add_argument("--address", default="auto", help="Ray cluster address (auto or HOST:PORT)")
    parser.add_argument("--workers", type=int, default=0,
                        help="candidates evaluated at once, one torch thread each (default: this machine's "
                             "cores; with --executor ray, the cluster's CPUs)")
    parser.add_argument("--pretrain-workers", type=int, default=1, metavar="N",
                        help="pre-training processes, the groups split between them, one torch thread each "
                             "(default 1: a process takes 5-10 s of CPU to start, more than it saves on small "
                             "nets; see docs/prune.md)")
    parser.add_argument("--no-early-stop", action="store_true",
                        help="train every candidate for all --steps (default: stop one that can no longer meet "
                             "the accuracy threshold, by the best recovery seen; the same rule in both searches)")
    parser.add_argument("--early-stop-margin", type=float, default=0.02, metavar="M",
                        help="accuracy a stopped candidate must miss the threshold by, beyond the best recovery "
                             "seen (default 0.02)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads of this process (pre-training, metrics); default 1: the nets are "
                             "small, and on a busy machine more threads are slower")
    parser.add_argument("--steps", type=int, help="fine-tuning iterations per candidate (default: solver max_iter)")
    parser.add_argument("--pretrain-steps", type=int, help="pre-training iterations per group (default: --steps)")
    parser.add_argument("--blocks", choices=("sequitur", "modules"), default="sequitur",
                        help="how tuning blocks are found: sequitur (Wootz §5) or modules (every (module, rate) "
                             "its own block)")
    parser.add_argument("-o", "--output", default="prune-run", metavar="RUNDIR", help="run folder (default prune-run)")
    parser.add_argument("--resume", action="store_true", help="continue the run in RUNDIR")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_lenient_argument(parser)


def load_inputs(args):
    # local, like every import below that `cococ --help` (which imports every command) need not
    # pay for: lark grammars here, torch and onnx further down
    from cococ.frontend.objective import parse_objective
    from cococ.frontend.solver import load_solver
    objective = parse_objective(args.objective)   # cheap checks first
    full = cococ.load(args.net, weights=args.weights, lenient=args.lenient)
    infer_shapes(full)
    if not full.modules:
        raise CococError(no_modules_message(full, args.net))
    if args.subspace:
        configs = load_subspace(args.subspace, len(full.modules))
    else:
        try:
            rates = [float(r) for r in args.rates.split(",") if r.strip()]
        except ValueError:
            rates = []
        if not rates or any(not (0.0 <= r < 1.0) for r in rates):
            raise CococError(f"--rates '{args.rates}': expected pruning rates in [0, 1), like 0.3,0.5,0.7")
        configs = sample_subspace(args.sample, len(full.modules), rates, seed=args.sample_seed)
    solver = load_solver(args.solver, lenient=args.lenient)
    pre = load_solver(args.pretrain_solver, lenient=args.lenient) if args.pretrain_solver else None
    return full, configs, objective, solver, pre


def run(args: argparse.Namespace) -> int:
    from cococ.runtime.explore import explore  # local: torch
    from cococ.runtime.explore.evaluate import trained_network
    from cococ.runtime.explore.report import print_table, table_row, write_report
    for flag, n in (("--sample", args.sample), ("--steps", args.steps), ("--pretrain-steps", args.pretrain_steps),
                    ("--threads", args.threads), ("--pretrain-workers", args.pretrain_workers)):
        if n is not None and n < 1:
            raise CococError(f"{flag} {n}: must be at least 1")
    if not args.early_stop_margin >= 0:
        raise CococError(f"--early-stop-margin {args.early_stop_margin}: must be at least 0")
    # Pre-training runs in this process. Measured on the shared 2-core machine (load ~8): 20
    # pre-training steps of one ResNet-example group took 13 s with 1 torch thread, 76 s with 2.
    import torch  # local: see load_inputs
    torch.set_num_threads(args.threads)
    if args.workers < 0:
        raise CococError(f"--workers {args.workers}: must be at least 1 (0: the default)")
    full, configs, objective, solver, pre = load_inputs(args)
    if args.no_comp and not args.baseline:
        raise CococError("--no-comp leaves nothing to run; add --baseline")
    steps = args.steps or int(solver.max_iter)
    out = Path(args.output)
    if args.executor == "ray":      # connect first: a missing cluster is refused before any training
        from cococ.runtime.explore.ray_exec import cluster_cpus, connect  # local: torch; ray is optional
        ray = connect(args.address)
        workers = args.workers or cluster_cpus(ray)
        nodes = sum(1 for n in ray.nodes() if n["Alive"])
        print(f"ray cluster {ray.get_runtime_context().gcs_address}: {nodes} node(s), {cluster_cpus(ray)} CPUs; "
              f"{workers} candidates at a time")
    else:
        workers = args.workers or max(1, min(os.cpu_count() or 1, len(configs)))
    res = explore(full, configs, objective, solver, args.data, out, steps=steps,
                  pretrain_steps=args.pretrain_steps or steps, pretrain_solver=pre, baseline=args.baseline,
                  comp=not args.no_comp, executor=args.executor, workers=workers,
                  address=args.address if args.executor == "ray" else None, resume=args.resume,
                  method=args.blocks, progress=not args.no_progress, early_stop=not args.no_early_stop,
                  stop_margin=args.early_stop_margin, pretrain_workers=args.pretrain_workers)
    res.full_accuracy = full_accuracy(full, args.data)
    paths = write_report(res, out)
    print_table([table_row(res)], title=f"cococ prune: {objective}")
    for s in (res.comp, res.base):
        if s is not None:
            print("early stop " + ("off" if args.no_early_stop else "on") + ": " + s.early_stop_summary())
    chosen = res.chosen
    if chosen.answer is None:
        print(f"no configuration meets '{objective}'; report: {paths['md']}")
        return 2
    g = trained_network(full, out / "networks", chosen.mode, chosen.answer)
    write_network(g, out / "pruned")
    a = chosen.answer
    if chosen is not res.comp and res.comp is not None:
        print("the composability search found no configuration meeting the objective; pruned.* hold the "
              "baseline's answer (a default network)")
    print(f"chosen ({chosen.mode}): rates {list(a['config'])}, {a['params']} params "
          f"({100 * a['params'] / res.full_size:.1f}% of full), {a['macs']} MACs, accuracy {a['accuracy']:.4f}")
    print(f"wrote {out / 'pruned.prototxt'} + {out / 'pruned.safetensors'}, {out / 'pruned.ir'}, "
          f"{out / 'pruned.onnx'}; report {paths['md']}, {paths['html']}")
    print(f"build it with: cococ build {out / 'pruned.prototxt'} --weights {out / 'pruned.safetensors'} "
          "--target arm-m4")
    return 0


def no_modules_message(graph, net) -> str:
    """Why `cococ prune` cannot run on a net without modules, and what can: a chain (no value
    read twice, no layer with two inputs) has nothing for identify-modules to find."""
    reads: dict[str, int] = {}
    for layer in graph.layers:
        for v in layer.inputs:
            reads[v.name] = reads.get(v.name, 0) + 1
    if any(n > 1 for n in reads.values()) or any(len(layer.inputs) > 1 for layer in graph.layers):
        return (f"{net}: no convolution modules; mark them with `module {{ name: ... }}` "
                "or run `cococ opt -p identify-modules` first")
    return (f"{net}: a chain network (no branches), so it has no modules for `cococ prune` (Wootz prunes "
            "modules of branching nets); prune a chain's filters with `cococ opt -p 'prune-filters{rate=0.5}'`, "
            "or prune for a target with Scalpel: `cococ build --target=arm-m4 --prune auto`")


def full_accuracy(full, data) -> float:
    """The unpruned model's accuracy (the reference line of the plot) on the split the candidates
    are tested on: validation where the data set has one (Dataset.for_decisions)."""
    from cococ.runtime.torch.module import to_torch  # local: torch
    from cococ.runtime.train import evaluate, logits_value
    ds = load_data(data, full.inputs[0].type.shape).for_decisions()
    x, y = ds.test_arrays()
    return float(evaluate(to_torch(full, outputs=[logits_value(full)]), x, y)["accuracy"])


def write_network(g, stem: Path) -> None:
    """The chosen network in every form a user takes further: Caffe (prototxt + safetensors
    weights, keys `layer/param`, which `--weights` reads), cococ IR (+ .npz) and ONNX."""
    import onnx  # local: onnx, lark and torch load only when a network is written

    from cococ.backends.onnx_export import to_onnx
    from cococ.frontend.prototxt.writer import save_prototxt
    from cococ.runtime.train import save_weights
    save_ir(g, stem.with_suffix(".ir"))
    save_weights(g, stem.with_suffix(".safetensors"))
    try:
        save_prototxt(g, stem.with_suffix(".prototxt"), weights=False)   # the weights: just above
    except CococError as e:      # an op Caffe cannot express (a graph that came from ONNX)
        print(f"skipped {stem.with_suffix('.prototxt')}: {e}")
    onnx.save(to_onnx(g), str(stem.with_suffix(".onnx")))
