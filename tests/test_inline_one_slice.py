"""A call performed in the worker's process that finishes while its program's slice (after
another of its calls) still runs must wait for that slice, not start a second slice of the
same program: the second was refused, and the call's outcome was lost until its lease ran out
(10 s) and the call ran again, counted as lost with its worker although nothing had died."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from flowmetal.store import open_store

PROGRAM = '''\
from flowmetal import call, spawn, wait


def busy(n):
    t = 0
    for i in range(n):
        t += i % 7
    return t


def fetch(name):
    v = call(name)
    busy(3000000)  # the slice after one call runs while the other calls finish
    return v


def main():
    tasks = [spawn(fetch, "quick"), spawn(fetch, "slow"), spawn(fetch, "slower")]
    return [wait(t) for t in tasks]
'''

FUNCTIONS = '''\
import time

import flowmetal


@flowmetal.function("quick")
def quick(ctx):
    return 1


@flowmetal.function("slow")
def slow(ctx):
    time.sleep(0.1)
    return 2


@flowmetal.function("slower")
def slower(ctx):
    time.sleep(0.2)
    return 3
'''


def test_calls_finishing_during_their_programs_slice_are_not_lost(tmp_path: Path) -> None:
    (tmp_path / "p.flow").write_text(PROGRAM)
    (tmp_path / "fns.py").write_text(FUNCTIONS)
    url = f"sqlite:///{tmp_path / 's.db'}"
    env = dict(os.environ, FLOWMETAL_STORE=url)
    started = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "flowmetal", "run", "p.flow", "--functions", "fns.py", "--id", "x"],
                       cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120)
    took = time.monotonic() - started
    assert r.returncode == 0, r.stderr
    calls = open_store(url).list_calls("x")
    assert [(c.name, c.attempt, c.lost) for c in calls] == [("quick", 1, 0), ("slow", 1, 0), ("slower", 1, 0)], took
