"""Chaos, the short version of bench/chaos.py (which runs 1,000 kills): three `flowmetal worker`
processes killed with SIGKILL over and over (each a fraction of a second after it is up) while
pairs of programs make in-process foreign calls, HTTP requests to a loopback server that
records them, sleep, print and exchange messages — all with the default retry policy. Nothing
may be lost (every program completes with the right result, its partner's total included) or
duplicated (each step's output once, each effect under one idempotency key), and no attempt may
be counted as failed because its worker died."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import chaos

KILLS = 100
# seconds of killing at most, so the test stays under 90 s per store: on a busy machine workers
# take longer to start and fewer kills fit (the kills done are printed with the outcome)
BUDGET = 45.0


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_workers_killed_over_and_over_lose_and_duplicate_nothing(
        backend: str, store_url_factory: Callable[[str], str], tmp_path_factory: pytest.TempPathFactory) -> None:
    url = store_url_factory(backend)
    if backend == "sqlite":  # a short path: the wake-up sockets go next to the file
        url = f"sqlite:///{tmp_path_factory.mktemp('c') / 'chaos.db'}"
    report = chaos.run(url, KILLS, workers=3, life=0.4, pairs=4, max_seconds=BUDGET, finish_timeout=60.0)
    print(report.summary())
    assert report.kills >= 1, report.summary()
    assert report.unfinished == []
    assert report.wrong == []
    assert report.repeated_output == []
    assert report.duplicated_keys == []
    assert report.counted_as_failed == 0
