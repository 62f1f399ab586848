"""Retrain the shipped examples from their solvers and write examples/<name>/<name>.safetensors.

    .venv/bin/python examples/train_all.py            # the three digits examples
    .venv/bin/python examples/train_all.py lenet      # one
    .venv/bin/python examples/train_all.py lenet300_mnist lenet_mnist   # the MNIST ones (minutes)

Reproducible: weights are initialised from the solver's random_seed (He init), batches and
dropout follow the same seed, and torch runs on one thread with deterministic algorithms, so
a rerun on the same machine writes the same files. The weights (keys `layer/param`) load with
`cococ.load(net, weights=...)`; `cococ build` and the pruning commands start from them.
The curves go to runs/examples/<name>.{csv,json,png} (not shipped).
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

import cococ
from cococ.frontend.solver import load_solver
from cococ.runtime.compress.training import accuracy
from cococ.runtime.data import load_data
from cococ.runtime.train import save_weights, train

HERE = Path(__file__).resolve().parent
EXAMPLES = {  # name -> (net, solver, data); weights go to the net's folder as <name>.safetensors
    "lenet": ("lenet/lenet.prototxt", "lenet/lenet_solver.prototxt", "digits"),
    "lenet300": ("lenet300/lenet300.prototxt", "lenet300/lenet300_solver.prototxt", "digits"),
    "resnet": ("resnet/resnet.prototxt", "resnet/resnet_solver.prototxt", "digits"),
    "lenet300_mnist": ("lenet300/lenet300.prototxt", "lenet300/lenet300_mnist_solver.prototxt", "mnist"),
    "lenet_mnist": ("lenet/lenet.prototxt", "lenet/lenet_mnist_solver.prototxt", "mnist"),
}
DEFAULT = ["lenet", "lenet300", "resnet"]   # seconds each; the MNIST ones take minutes, by name


def train_example(name: str, progress: bool = True, threads: int = 1) -> dict:
    net, solver_file = (HERE / p for p in EXAMPLES[name][:2])
    solver = load_solver(solver_file)
    seed = max(solver.random_seed, 0)
    torch.set_num_threads(threads)
    graph = cococ.load(net, init="random", seed=seed)
    data = load_data(EXAMPLES[name][2], graph.inputs[0].type.shape)
    r = train(graph, solver, data, seed=seed, batch_size=64, progress=progress,
              log_prefix=HERE.parent / "runs" / "examples" / name, plot=True)
    meta = {"iter": solver.max_iter, "test_accuracy": f"{r.accuracy:.6f}", "data": data.name}
    val = None
    if data.has_validation:
        val = accuracy(graph, data.for_decisions())  # the validation split
        meta["validation_accuracy"] = f"{val:.6f}"
    out = save_weights(graph, net.parent / f"{name}.safetensors", meta)
    return {"name": name, "data": data.name, "accuracy": r.accuracy, "validation_accuracy": val,
            "top5": r.test_log[-1]["top5"], "seconds": r.seconds, "iterations": solver.max_iter,
            "threads": threads, "weights": str(out.relative_to(HERE.parent)), "bytes": out.stat().st_size}


def main(argv: list[str]) -> int:
    names = argv or DEFAULT
    unknown = [n for n in names if n not in EXAMPLES]
    if unknown:
        print(f"unknown example(s) {', '.join(unknown)}; known: {', '.join(EXAMPLES)}", file=sys.stderr)
        return 2
    results = []
    for n in names:
        t = time.perf_counter()
        r = train_example(n)
        results.append(r)
        print(f"{n}: test accuracy {r['accuracy']:.4f} in {time.perf_counter() - t:.1f} s -> {r['weights']}")
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
