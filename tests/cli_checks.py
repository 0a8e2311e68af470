"""Checks shared by the tests that drive `flowmetal` as a user does, in subprocesses."""

from __future__ import annotations

import subprocess
import time
from typing import Any


def one_clear_line(r: subprocess.CompletedProcess[str]) -> str:
    """A failed command said what went wrong in one line, without a traceback."""
    assert r.returncode != 0
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    return lines[0]


def wait_for(predicate: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting")


def kill_all(procs: list[subprocess.Popen[str]]) -> None:
    """Kill (and reap) the processes a test started that are still running."""
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()
