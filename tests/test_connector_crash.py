"""A function worker killed with SIGKILL in the middle of calls: its calls are run
again at once by another function worker (on this machine its death is seen
without waiting out the lease), the lost attempts are not counted as failures,
and every program gets each result exactly once — no step lost, none recorded
twice.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from flowmetal.runtime.driver import Runtime
from flowmetal.store import open_store
from flowmetal.store.base import FINISHED

HERE = Path(__file__).parent
JOB = HERE / "flows" / "ledger_job.flow"
FUNCTIONS = HERE / "workers" / "ledger_functions.py"
PROGRAMS = 6
STEPS = 5
KILLS = 3


def _spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    log = open(Path(env["FLOWMETAL_TEST_LEDGER"]).with_name(f"{args[0]}-{time.monotonic_ns()}.log"), "wb")  # noqa: SIM115
    return subprocess.Popen([sys.executable, "-m", "flowmetal", *args], env=env,
                            stdout=log, stderr=subprocess.STDOUT)


def _ledger(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


def _mid_call(path: Path, pid: int) -> bool:
    """True when the worker `pid` has started a call it has not finished."""
    open_calls: set[str] = set()
    for kind, key, _attempt, who in _ledger(path):
        if int(who) != pid:
            continue
        if kind == "start":
            open_calls.add(key)
        else:
            open_calls.discard(key)
    return bool(open_calls)


def test_killed_function_worker_calls_are_retried_and_recorded_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    ledger = tmp_path / "ledger.txt"
    env = dict(os.environ, FLOWMETAL_STORE=url, FLOWMETAL_TEST_LEDGER=str(ledger))
    store = open_store(url)
    rt = Runtime(store)
    pids = [rt.start(str(JOB), {"n": n, "steps": STEPS}, program_id=f"job{n}") for n in range(PROGRAMS)]

    interpreter = _spawn(["worker", "--no-http"], env)
    functions = _spawn(["functions", str(FUNCTIONS), "--lease", "1.0", "--concurrency", "4"], env)
    killed: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while len(killed) < KILLS and time.monotonic() < deadline:
            if _mid_call(ledger, functions.pid):
                functions.send_signal(signal.SIGKILL)
                functions.wait()
                killed.append(functions.pid)
                functions = _spawn(["functions", str(FUNCTIONS), "--lease", "1.0", "--concurrency", "4"], env)
            time.sleep(0.05)
        assert len(killed) == KILLS, "the function worker was never caught mid-call"
        while time.monotonic() < deadline:
            if all(store.get_program(p).status in FINISHED for p in pids):
                break
            time.sleep(0.1)
    finally:
        for proc in (interpreter, functions):
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()

    for n, pid in enumerate(pids):
        row = store.get_program(pid)
        assert row.status == "completed", (pid, row.status, row.error)
        assert row.result == sum(n * 10 + k for k in range(STEPS))
        events = store.events(pid)
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        requested = [e.data["key"] for e in events if e.type == "effect_requested"]
        assert len(requested) == STEPS and len(set(requested)) == STEPS  # no call requested twice
        completed = Counter(e.data["request"] for e in events if e.type == "effect_completed")
        assert sorted(completed.values()) == [1] * STEPS  # each result recorded once
        output = "".join(e.data["text"] for e in events if e.type == "output")
        total, lines = 0, []
        for k in range(STEPS):
            total += n * 10 + k
            lines.append(f"job {n} step {k} total {total}\n")
        assert output == "".join(lines)

    # the killed workers' calls really were retried elsewhere (at least once each)
    attempts = Counter(key for kind, key, _a, _w in _ledger(ledger) if kind == "start")
    retried = [key for key, c in attempts.items() if c > 1]
    assert len(retried) >= KILLS
    for key in retried:
        assert store.get_call(key).attempt >= 2
        assert store.get_call(key).lost >= 1  # lost with its worker...
    assert all(store.list_attempts(pid) == [] for pid in pids)  # ...and not counted as a failed attempt
