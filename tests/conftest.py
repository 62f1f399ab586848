"""Fixtures every test folder shares: the Caffe prototxt corpus.

The corpus (real Caffe nets and solvers) lives beside the checkout in ../shared/corpus; a test
that reads it asks for `corpus` (the folder), `corpus_net` or `corpus_solver` (one file each),
and skips, saying where the corpus was expected, when it is absent.
"""
from pathlib import Path

import pytest

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "prototxt"
ABSENT = f"the Caffe corpus is not present (expected at {CORPUS})"


def _corpus_files(keep) -> list:
    """One param per corpus prototxt that `keep(path)` selects, named by its path in the corpus
    (one skipped param when the corpus is absent, so the test reports why it did not run)."""
    if not CORPUS.is_dir():
        return [pytest.param(None, marks=pytest.mark.skip(reason=ABSENT))]
    return [pytest.param(p, id=str(p.relative_to(CORPUS))) for p in sorted(CORPUS.rglob("*.prototxt")) if keep(p)]


@pytest.fixture(scope="session")
def corpus() -> Path:
    """The corpus folder of Caffe prototxt files."""
    if not CORPUS.is_dir():
        pytest.skip(ABSENT)
    return CORPUS


@pytest.fixture(params=_corpus_files(lambda p: "solver" not in p.name))
def corpus_net(request) -> Path:
    """Each net prototxt of the corpus in turn."""
    return request.param


@pytest.fixture(params=_corpus_files(lambda p: "solver" in p.name))
def corpus_solver(request) -> Path:
    """Each solver prototxt of the corpus in turn."""
    return request.param
