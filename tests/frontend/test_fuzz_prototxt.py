"""Mutated corpus prototxt (byte flips, truncation, token edits) must load or raise CococError only.

Small scale (hypothesis); benchmarks/fuzz_frontends.py runs the same mutators at >= 10,000 inputs.
"""
import importlib.util
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cococ.ir.core import CococError

ROOT = Path(__file__).parents[2]
CORPUS = ROOT / "../shared/corpus/prototxt"
pytestmark = pytest.mark.skipif(not CORPUS.is_dir(), reason="corpus ../shared/corpus not present")

_spec = importlib.util.spec_from_file_location("fuzz_frontends", ROOT / "benchmarks/fuzz_frontends.py")
fuzz = importlib.util.module_from_spec(_spec)
sys.modules["fuzz_frontends"] = fuzz  # dataclasses look their module up there
_spec.loader.exec_module(fuzz)

# the small and medium nets keep the test fast; the script fuzzes every file
SEEDS = [p for p in sorted(CORPUS.rglob("*.prototxt")) if p.stat().st_size < 40_000] if CORPUS.is_dir() else []
TEXTS = {p: p.read_bytes() for p in SEEDS}


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(i=st.integers(0, max(len(SEEDS) - 1, 0)), rng=st.randoms(use_true_random=False))
def test_mutated_prototxt_gives_only_clean_errors(i, rng, tmp_path_factory):
    from cococ.frontend.prototxt import load_prototxt
    from cococ.frontend.solver import load_solver
    seed = SEEDS[i]
    data = fuzz.mutate_text(TEXTS[seed], rng)
    path = tmp_path_factory.getbasetemp() / "fuzz.prototxt"
    path.write_bytes(data)
    try:
        (load_solver if "solver" in seed.name else load_prototxt)(path)
    except CococError as e:
        assert "\n" not in str(e)
