"""Caffe solver prototxt: every corpus solver parses; Caffe's lr policies; validation errors."""
import pytest

from cococ.frontend.solver import load_solver, load_solver_text
from cococ.ir.core import CococError


def test_corpus_solvers_parse(corpus_solver):
    s = load_solver(corpus_solver)
    assert s.base_lr > 0 and s.max_iter > 0 and s.lr_at(0) == pytest.approx(s.base_lr)


def test_corpus_solver_details(corpus):
    s = load_solver(corpus / "bvlc_caffe/examples/mnist/lenet_multistep_solver.prototxt")
    assert s.lr_policy == "multistep" and s.stepvalue == [5000, 7000, 8000, 9000, 9500]
    adam = load_solver(corpus / "bvlc_caffe/examples/mnist/lenet_solver_adam.prototxt")
    assert adam.type == "Adam" and adam.momentum2 == 0.999
    c = load_solver(corpus / "bvlc_caffe/examples/mnist/lenet_consolidated_solver.prototxt")
    assert c.random_seed == 1701 and c.batch_sizes == {"mnist/TRAIN": 64, "mnist/TEST": 100}
    assert c.test_stages == [["test-on-test-set"], ["test-on-train-set"]]
    g = c.net_graph("TEST", stages=c.test_stages[0])
    assert g.inputs[0].type.shape[0] == 100
    assert [r["type"] for r in g.meta["caffe_training_layers"]] == ["Accuracy", "SoftmaxWithLoss"]


def _solver(policy_lines: str):
    return load_solver_text(f"base_lr: 0.1\nmax_iter: 100\n{policy_lines}", "s.prototxt")


def test_lr_policies():
    assert _solver('lr_policy: "step" gamma: 0.1 stepsize: 10').lr_at(25) == pytest.approx(0.1 * 0.01)
    assert _solver('lr_policy: "exp" gamma: 0.9').lr_at(2) == pytest.approx(0.1 * 0.81)
    assert _solver('lr_policy: "inv" gamma: 0.1 power: 1').lr_at(10) == pytest.approx(0.05)
    ms = _solver('lr_policy: "multistep" gamma: 0.5 stepvalue: 10 stepvalue: 20')
    assert [ms.lr_at(i) for i in (9, 10, 20)] == pytest.approx([0.1, 0.05, 0.025])
    assert _solver('lr_policy: "poly" power: 2').lr_at(50) == pytest.approx(0.025)
    assert _solver('lr_policy: "fixed" solver_type: NESTEROV').type == "Nesterov"


@pytest.mark.parametrize("text,match", [
    ('lr_policy: "cosine"', r"s.prototxt:3:1: field 'lr_policy' must be one of"),
    ('lr_policy: "step" gamma: 0.1', r"field 'stepsize' must be a positive integer"),
    ('lr_policy: "inv" gamma: 0.1', r"field 'power' is required"),
    ('momentum: 1.5', r"s.prototxt:3:1: field 'momentum' must be in \[0, 1\)"),
    ('type: "Adamw"', r"field 'type' must be one of"),
    ('max_iter: "x"', r"field 'max_iter' must be an integer"),
    ('learning_rate: 0.1', r"s.prototxt:3:1: unknown solver field 'learning_rate'"),
])
def test_validation_names_field_and_line(text, match):
    with pytest.raises(CococError, match=match):
        _solver(text)
