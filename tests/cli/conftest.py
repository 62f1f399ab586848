"""The in-process CLI runner every CLI test uses: `cli(*args) -> (status, stdout, stderr)`."""
from __future__ import annotations

import pytest

from cococ.cli import main


@pytest.fixture
def cli_call(capsys):
    """Run `cococ ARGS` in-process in the current folder; returns (status, stdout, stderr)."""
    def call(*args):
        try:
            rc = main([str(a) for a in args])
        except SystemExit as e:
            rc = e.code
        out, err = capsys.readouterr()
        return rc, out, err
    return call


@pytest.fixture
def cli(cli_call, tmp_path, monkeypatch):
    """`cli_call` in a scratch folder (tmp_path)."""
    monkeypatch.chdir(tmp_path)
    return cli_call
