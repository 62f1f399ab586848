"""Mutated Caffe text files (corpus and example nets and solvers) load or raise a one-line
CococError only: a seeded sample of benchmarks/fuzz_frontends.py's campaign, in-process
(the script runs >= 10,000 cases per format, each format in its own process)."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the benchmarks/ scripts
from benchmarks import fuzz_frontends as fuzz  # noqa: E402


@pytest.mark.parametrize("fmt,n", [("prototxt", 100), ("solver", 200)])
def test_mutated_caffe_text_gives_only_clean_errors(corpus, fmt, n):
    counts = fuzz.campaign(fmt, n, seed=0, timeout=10)
    assert counts["crash"] == counts["hang"] == 0, counts
    assert counts["ok"] and counts["clean"], counts  # the seeds load, and the mutations reach errors


def test_giant_input_dim_is_refused_before_allocating(tmp_path, monkeypatch):
    """`input_dim: 100000` with random weights: the size guard names the size, nothing is allocated."""
    from cococ.frontend.prototxt import load_prototxt_text
    from cococ.frontend.weights import init_weights
    from cococ.ir.core import CococError
    monkeypatch.setenv("COCOC_MAX_MEMORY", "256M")
    g = load_prototxt_text('input: "d" input_dim: 1 input_dim: 100000 input_dim: 28 input_dim: 28\n'
                           'layer { name: "fc" type: "InnerProduct" bottom: "d" top: "fc" '
                           'inner_product_param { num_output: 500 } }', path="t.prototxt")
    with pytest.raises(CococError, match=r"would need 146.0 GiB"):
        init_weights(g, "random")


def test_deep_nesting_is_an_error_not_a_recursion_error():
    """A training layer's `*_param` is kept as a dict (to_dict recurses): 20,000 nested unknown
    messages, accepted with --lenient, raised RecursionError; nesting is now limited at parse time."""
    from cococ.frontend.prototxt import load_prototxt_text
    from cococ.ir.core import CococError
    d = 20_000
    text = ('input: "d" input_dim: 1 input_dim: 3 input_dim: 8 input_dim: 8\n'
            'layer { name: "l" type: "SoftmaxWithLoss" bottom: "d" bottom: "d" top: "loss" '
            'loss_param { ' + "x { " * d + "}" * d + " } }")
    with pytest.raises(CococError, match=r"t.prototxt:2:.*: messages nested more than 100 deep"):
        load_prototxt_text(text, path="t.prototxt", lenient=True)


def test_bad_octal_number_is_a_clean_error():
    """solver case 978: `gamma: 099511627776` (a leading 0 is octal, as in protobuf) raised ValueError."""
    from cococ.frontend.solver import load_solver_text
    from cococ.ir.core import CococError
    with pytest.raises(CococError, match=r"s.prototxt:3:8: bad number '099511627776'"):
        load_solver_text('base_lr: 0.1\nmax_iter: 10\ngamma: 099511627776\n', "s.prototxt")
    with pytest.raises(CococError, match=r"1:11: bad number '09'"):
        load_solver_text("base_lr: -09", "s.prototxt")
