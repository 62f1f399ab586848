"""Fixtures the backend tests share."""
import shutil

import pytest


@pytest.fixture(scope="module")
def host_cc():
    """The host C compiler: the q15 sparse kernels' C is also run natively to check it against numpy."""
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.skip("no host C compiler")
    return cc
