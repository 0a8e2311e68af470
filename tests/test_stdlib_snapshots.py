"""Values of the standard modules survive a snapshot restored in another process.

Every `tests/suspension/std_*.flow` program (each suspends while iterating or holding the
stateful values of a module: itertools iterators, deques, Counters, lru_cache'd functions,
Fractions, ...) is run here up to one of its waits; the snapshot is then restored in a fresh
Python process, with another hash seed, which answers the remaining waits (snapshotting and
restoring again at each one) and finishes the program. The output must be CPython's.
(`test_suspension.py` runs the same programs restored at every wait within one process.)
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from flowmetal.machine.api import Blocked, Machine, compile_program
from test_suspension import HOST, PROGRAM_DIR, Run, answer, run_in_cpython

PROGRAMS = sorted(PROGRAM_DIR.glob("std_*.flow"))

_CHILD = r"""
import base64, json, sys
sys.path.insert(0, sys.argv[1])
from test_suspension import HOST, answer, Run
from flowmetal.machine.api import Blocked, Completed, Machine

out = []
for item in json.loads(sys.stdin.read()):
    machine = Machine.restore(base64.b64decode(item["snapshot"]), host_module=HOST)
    run = Run()
    for req in list(machine.pending.values()):  # the wait it was snapshotted at
        answer(machine, req, run)
    while True:
        outcome = machine.run()
        run.output += machine.take_output()
        if not isinstance(outcome, Blocked):
            break
        machine = Machine.restore(machine.snapshot(), host_module=HOST)
        for req in outcome.requests:
            answer(machine, req, run)
    error = None if isinstance(outcome, Completed) else outcome.error_line
    result = repr(outcome.value) if isinstance(outcome, Completed) else None
    out.append([run.output, error, result])
sys.stdout.write(json.dumps(out))
"""


def _run_to_wait(source: str, filename: str, stop_at: int) -> tuple[str, bytes] | None:
    """Run to the `stop_at`-th wait (answering the earlier ones): the output so far and a snapshot
    taken while it waits; None if the program has fewer waits."""
    machine = Machine(compile_program(source, filename), host_module=HOST)
    run = Run()
    waits = 0
    while True:
        outcome = machine.run()
        run.output += machine.take_output()
        if not isinstance(outcome, Blocked):
            return None
        waits += 1
        if waits == stop_at:
            return run.output, machine.snapshot()
        for req in outcome.requests:
            answer(machine, req, run)


def _count_waits(source: str, filename: str) -> int:
    machine = Machine(compile_program(source, filename), host_module=HOST)
    run = Run()
    waits = 0
    while isinstance(outcome := machine.run(), Blocked):
        waits += 1
        for req in outcome.requests:
            answer(machine, req, run)
    return waits


@pytest.fixture(scope="module")
def cpython() -> dict[str, Any]:
    return run_in_cpython(PROGRAMS)


def test_there_are_programs() -> None:
    assert len(PROGRAMS) >= 1


def test_restored_in_another_process(cpython: dict[str, Any]) -> None:
    items: list[dict[str, Any]] = []
    expected: list[tuple[str, int, str, str, str | None]] = []
    for path in PROGRAMS:
        source = path.read_text(encoding="utf-8")
        n = _count_waits(source, str(path))
        for stop_at in sorted({1, max(1, n // 3), max(1, n // 2), max(1, n - 1)}):
            got = _run_to_wait(source, str(path), stop_at)
            assert got is not None
            before, snapshot = got
            items.append({"snapshot": base64.b64encode(snapshot).decode()})
            out, error, _result, _calls = cpython[str(path)]
            expected.append((path.name, stop_at, before, out, error))
    env = dict(os.environ, PYTHONHASHSEED="12345")
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(Path(__file__).parent)], input=json.dumps(items),
                          capture_output=True, text=True, env=env, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)
    for (name, stop_at, before, out, error), (rest, got_error, _) in zip(expected, results, strict=True):
        assert before + rest == out, f"{name}, restored at wait {stop_at}"
        assert got_error == error, f"{name}, restored at wait {stop_at}"
