"""What the benchmark scripts share: their result rows and tables, and the wake-up
program (the same one on SQLite and PostgreSQL, so the two latencies compare)."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

WAKE = """\
from flowmetal import now, receive


def main(n=200):
    times = []
    for i in range(n):
        receive()
        times.append(now())
    return times
"""


@dataclass
class Row:
    figure: str
    value: str
    target: str = ""
    met: bool | None = None


def pct(xs: list[float], p: float) -> float:
    """The p-th percentile (nearest rank)."""
    s = sorted(xs)
    return s[max(0, min(len(s) - 1, round(p / 100 * (len(s) - 1))))]


def _mark(met: bool | None) -> str:
    return "" if met is None else ("yes" if met else "NO")


def print_table(rows: list[Row]) -> None:
    w0 = max(len(r.figure) for r in rows)
    w1 = max(len(r.value) for r in rows)
    w2 = max(len(r.target) for r in rows)
    print()
    print(f"{'figure':<{w0}}  {'value':>{w1}}  {'target':<{w2}}  met?")
    print("-" * (w0 + w1 + w2 + 10))
    for r in rows:
        print(f"{r.figure:<{w0}}  {r.value:>{w1}}  {r.target:<{w2}}  {_mark(r.met)}")


def markdown(rows: list[Row]) -> str:
    out = ["| figure | value | target | met? |", "|---|---:|---|---|"]
    out += [f"| {r.figure.strip()} | {r.value} | {r.target} | {_mark(r.met)} |" for r in rows]
    return "\n".join(out)


def raw_commits(path: Path, seconds: float = 1.5) -> float:
    """Single-row commits/s on `path` as the store makes them (WAL, synchronous=FULL, BEGIN
    IMMEDIATE): the baseline the runtime's figures are read against."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE IF NOT EXISTS t (x INTEGER)")
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO t VALUES (?)", (n,))
        db.execute("COMMIT")
        n += 1
    db.close()
    return n / (time.perf_counter() - start)


class WorkerProc:
    """One `flowmetal worker --store URL --functions F` process with the `extra` options; its log
    is read on a thread (so it never blocks on a full pipe), `ready` is set when it logs
    `worker started`."""

    def __init__(self, url: str, functions: Path, cwd: Path, extra: list[str],
                 env: dict[str, str] | None = None) -> None:
        self.spawned = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "flowmetal", "worker", "--store", url, "--functions", str(functions),
             *extra, "--log-format", "json"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, cwd=cwd)
        self.ready = threading.Event()
        self.ready_at = 0.0
        self.tail: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            if not self.ready.is_set() and '"worker started"' in line:
                self.ready_at = time.perf_counter()
                self.ready.set()
            self.tail = [*self.tail, line][-20:]

    def wait_ready(self, timeout: float = 60) -> float:
        """Seconds from spawn until it logged `worker started`."""
        end = time.monotonic() + timeout
        while not self.ready.wait(0.05):
            if self.proc.poll() is not None or time.monotonic() > end:
                raise SystemExit(f"worker did not start ({self.proc.poll()}): {''.join(self.tail)}")
        return self.ready_at - self.spawned

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
