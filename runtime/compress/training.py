"""What both pruning methods do between their steps: retrain with masks, measure accuracy (on the
split that `decision_dataset` puts in the test split's place: validation where there is one)."""
from __future__ import annotations

import numpy as np

from cococ.ir.core import Graph
from cococ.runtime.data import Dataset, load_data
from cococ.runtime.torch.module import param_key, to_torch
from cococ.runtime.train import evaluate, logits_value, train


def accuracy(graph: Graph, ds, module=None) -> float:
    m = module if module is not None else to_torch(graph, outputs=[logits_value(graph)])
    x, y = ds.test_arrays()
    return float(evaluate(m, x, y, 256, ds.num_classes)["accuracy"])


def retrain(graph: Graph, solver, ds, masks: dict[str, np.ndarray], iters: int, seed: int) -> float:
    """Train `iters` iterations with every `layer/weight` in `masks` masked; return test accuracy."""
    module = to_torch(graph, outputs=[logits_value(graph)])
    for lname, m in masks.items():
        module.set_mask(param_key(lname, "weight"), m)
    if iters > 0:
        train(graph, solver, ds, max_iter=iters, seed=seed, module=module, progress=False)
    return accuracy(graph, ds, module)


def load_dataset(graph: Graph, data):
    """`data` as a Dataset shaped for the graph's input (a name, a path, or a Dataset already)."""
    if isinstance(data, Dataset):
        return data
    return load_data(data, graph.inputs[0].type.shape)


def decision_dataset(graph: Graph, data):
    """What the accept/undo decisions of a pruning loop read: `data` with its validation split
    in the test split's place (Dataset.for_decisions), so `accuracy` and `retrain` never see
    the test set; the test set stays for the reported final accuracy."""
    return load_dataset(graph, data).for_decisions()
