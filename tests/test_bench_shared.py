"""bench/bench_shared.py --quick runs end to end (its figures are not judged here: speed
targets live in the benchmark, never in tests)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import PG_ENV, pg_base_url

BENCH = Path(__file__).resolve().parent.parent / "bench" / "bench_shared.py"


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_quick_run(store: str) -> None:
    # (its SQLite files in a short temporary directory: wake-up sockets go next to them)
    args = [sys.executable, str(BENCH), "--quick", "--stores", store]
    if store == "postgres":
        args += ["--url", pg_base_url()]
    env = {k: v for k, v in os.environ.items() if k != PG_ENV}
    out = subprocess.run(args, capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "sequential: ms per step" in out.stdout
    assert "100 at once: steps/s" in out.stdout
    assert "after it was ready" in out.stdout
