"""Every op has a rule for every backend, or declares that it has none (and why).

One parametrised test per backend, so a new op that forgets its torch lowering, TVM compute,
ONNX export or Caffe writer fails here with the op's name, not later in a user's build.
"""
import pytest

from cococ.ir.registry import BACKENDS, all_ops, rule_of


def _ops():
    return sorted(n for n in all_ops() if n != "input")


@pytest.mark.parametrize("backend", sorted(BACKENDS))
@pytest.mark.parametrize("op", _ops())
def test_op_has_rule_or_declares_none(op, backend):
    cls = all_ops()[op]
    fn = rule_of(op, backend)
    why = cls.no_rules.get(backend)
    assert fn is not None or why, f"op '{op}' has no {backend} rule and does not declare none (no_rules)"
    assert not (fn is not None and why), f"op '{op}' has a {backend} rule and also says it has none: {why}"
