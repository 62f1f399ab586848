"""Mutated corpus prototxt (byte flips, truncation, token edits) must load or raise CococError only.

Small scale (hypothesis); benchmarks/fuzz_frontends.py runs the same mutators at >= 10,000 inputs.
"""
import functools
import importlib.util
import sys
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cococ.ir.core import CococError

ROOT = Path(__file__).parents[2]

_spec = importlib.util.spec_from_file_location("fuzz_frontends", ROOT / "benchmarks/fuzz_frontends.py")
fuzz = importlib.util.module_from_spec(_spec)
sys.modules["fuzz_frontends"] = fuzz  # dataclasses look their module up there
_spec.loader.exec_module(fuzz)


@functools.cache
def seeds(corpus: Path) -> list[tuple[str, bytes]]:
    """(file name, text) of the corpus files to mutate: the small and medium ones keep the test
    fast; the script fuzzes every file."""
    return [(p.name, p.read_bytes()) for p in sorted(corpus.rglob("*.prototxt")) if p.stat().st_size < 40_000]


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data(), rng=st.randoms(use_true_random=False))
def test_mutated_prototxt_gives_only_clean_errors(corpus, data, rng, tmp_path_factory):
    from cococ.frontend.prototxt import load_prototxt
    from cococ.frontend.solver import load_solver
    name, text = data.draw(st.sampled_from(seeds(corpus)))
    path = tmp_path_factory.getbasetemp() / "fuzz.prototxt"
    path.write_bytes(fuzz.mutate_text(text, rng))
    try:
        (load_solver if "solver" in name else load_prototxt)(path)
    except CococError as e:
        assert "\n" not in str(e)
