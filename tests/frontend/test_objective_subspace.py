import json
import os
import pickle

import numpy as np
import pytest

from cococ.frontend.objective import parse_objective
from cococ.frontend.subspace import load_subspace, sample_subspace
from cococ.ir.core import CococError


def test_wootz_example_objective():
    o = parse_objective("min ModelSize constraint Accuracy > 0.8")
    assert o.direction == "min" and str(o.metric) == "ModelSize"
    assert o.satisfied({"Accuracy": 0.81, "ModelSize": 1}) and not o.satisfied({"Accuracy": 0.8, "ModelSize": 1})


def test_codesign_metrics_and_suffixes():
    o = parse_objective("min Cycles[arm-m4] constraint Accuracy >= 0.95 and ModelSize < 200K")
    assert o.metric.measured and o.metric.target == "arm-m4"
    assert o.constraints[1].value == 200_000
    assert [str(m) for m in o.metrics()] == ["Cycles[arm-m4]", "Accuracy", "ModelSize"]


@pytest.mark.parametrize("text", ["min Foo", "min Cycles", "min ModelSize[x86]", "minimize ModelSize",
                                  "min ModelSize constraint Accuracy ~ 3", ""])
def test_bad_objectives_are_clean_errors(text):
    with pytest.raises(CococError):
        parse_objective(text)


def test_subspace_formats(tmp_path):
    cfgs = [[0.3, 0, 0.3, 0], [0.5, 0, 0.3, 0]]   # Wootz Figure 3a
    (tmp_path / "s.json").write_text(json.dumps(cfgs))
    np.save(tmp_path / "s.npy", np.array(cfgs))
    with open(tmp_path / "s.pkl", "wb") as f:
        pickle.dump(cfgs, f)
    with open(tmp_path / "a.pkl", "wb") as f:
        pickle.dump(np.array(cfgs), f)
    want = [tuple(map(float, c)) for c in cfgs]
    for name in ("s.json", "s.npy", "s.pkl", "a.pkl"):
        assert load_subspace(tmp_path / name, n_modules=4) == want
    with pytest.raises(CococError, match="has 4 rates"):
        load_subspace(tmp_path / "s.json", n_modules=5)


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_malicious_pickle_is_refused_without_running(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps([[0.3, 0.5], _Evil()]))
    with pytest.raises(CococError, match="refusing to load"):
        load_subspace(tmp_path / "evil.pkl")
    assert not (tmp_path / "PWNED").exists()
    # an object pickle with no code is refused too, and a pickled object array
    (tmp_path / "obj.npy").write_bytes(b"")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(CococError):
        load_subspace(tmp_path / "obj.npy")


def test_sampling_includes_uniform_configs_and_spreads_sizes():
    s = sample_subspace(64, 8, [0.3, 0.5, 0.7], seed=1)
    assert len(s) == len(set(s)) == 64
    assert s[:3] == [(0.3,) * 8, (0.5,) * 8, (0.7,) * 8]
    sums = [round(sum(c), 6) for c in s]
    cap = int(np.ceil(1.5 * 64 / (8 * 2 + 1)))
    assert max(sums.count(v) for v in set(sums)) <= cap
    assert sample_subspace(64, 8, [0.3, 0.5, 0.7], seed=1) == s   # deterministic
    with pytest.raises(CococError):
        sample_subspace(100, 2, [0.3, 0.5])


def test_quantized_cycles_metric():
    o = parse_objective("min Cycles[arm-m4, int8] constraint Accuracy >= 0.9")
    assert (o.metric.name, o.metric.target, o.metric.quantize) == ("Cycles", "arm-m4", "int8")
    assert str(o.metric) == "Cycles[arm-m4, int8]" and "quantized int8" in o.metric.definition
    assert str(parse_objective("min Cycles[arm-m4,q15]").metric) == "Cycles[arm-m4, q15]"
    assert parse_objective("min Cycles[arm-m4]").metric.quantize is None


@pytest.mark.parametrize("text", ["min Latency[x86, int8]", "min Cycles[arm-m4, int4]", "min MACs[arm-m4, int8]"])
def test_bad_quantized_metrics_are_clean_errors(text):
    with pytest.raises(CococError):
        parse_objective(text)
