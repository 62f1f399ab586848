"""Fixtures the pass tests share."""
import pytest


@pytest.fixture(scope="module")
def digits():
    """sklearn's 8x8 digits as an NCHW data set (the small real data the pruning tests train on)."""
    from cococ.runtime.data import load_data
    return load_data("digits", (1, 1, 8, 8))
