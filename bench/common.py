"""What the benchmark scripts share: their result rows and tables, and the wake-up
program (the same one on SQLite and PostgreSQL, so the two latencies compare)."""

from __future__ import annotations

import sqlite3
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
