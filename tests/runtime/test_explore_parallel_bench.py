"""benchmarks/explore_parallel.py runs end to end at tiny scale (--quick, nothing written): the
pre-training ways give identical blocks (the script checks and fails otherwise), both searches'
replays with and without the early-stop rule agree. Slow: ~20 separate cococ processes and
worker processes, each importing torch; ~3 min at load 10 on the shared 2-core machine."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "explore_parallel.py"


@pytest.mark.slow
@pytest.mark.parametrize("part", [[], ["--early-stop"]], ids=["pretrain-and-workers", "early-stop"])
def test_quick_run(part):
    out = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--no-write", *part], capture_output=True,
                         text=True, cwd=ROOT, timeout=1200)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    if part:
        assert "comp s, early stop" in out.stdout and "| NO |" not in out.stdout
    else:
        assert "blocks identical in every way and round: True" in out.stdout
        assert "--workers 2" in out.stdout
