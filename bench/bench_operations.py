"""Running for months: what pruning, starting scheduled runs and computing tick times cost,
as ratios against baselines measured in the same run (raw commits of the same database,
croniter alone). Medians of several runs.

    python bench/bench_operations.py [--postgres URL] [--programs N]
"""

from __future__ import annotations

import argparse
import datetime as dt
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from croniter import croniter

from common import Row, markdown, print_table
from flowmetal.lang.program import source_hash
from flowmetal.runtime.schedules import Scheduler, make_spec, new_schedule, next_tick
from flowmetal.store import open_store
from flowmetal.store.base import Commit, NewProgram, Store
from flowmetal.store.operations import PruneRule

SOURCE = "def main(n=0):\n    return n\n"
EVENTS = 10  # per finished program
RUNS = 3


def median_of(fn: Callable[[], float], runs: int = RUNS) -> float:
    return statistics.median(fn() for _ in range(runs))


def fill(store: Store, n: int, now: float) -> None:
    """n finished programs of EVENTS events each, through the store's own API."""
    h = source_hash(SOURCE)
    for i in range(n):
        pid = f"p{i}-{uuid.uuid4().hex[:6]}"
        store.create_program(NewProgram(pid, "p.flow", SOURCE, h, {"n": i}), now)
        (claim,) = store.claim("bench", 1, "host", 60.0, now, 1, pid)
        events = [("output", {"text": f"line {j}\n"}) for j in range(EVENTS - 2)] + [("completed", {"result": i})]
        store.commit([Commit(pid, claim.fence, 1, events=events, checkpoint=b"x" * 200, status="completed",
                             result=i)], now)


def raw_commits_sqlite(path: Path, n: int) -> float:
    """Seconds for n one-row commits with the store's settings (WAL, synchronous=FULL)."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE IF NOT EXISTS t (k INTEGER PRIMARY KEY, v TEXT)")
    start = time.perf_counter()
    for i in range(n):
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO t (v) VALUES (?)", (str(i),))
        db.execute("COMMIT")
    elapsed = time.perf_counter() - start
    db.close()
    return elapsed


def raw_commits_pg(url: str, n: int) -> float:
    import psycopg

    with psycopg.connect(url.split("?")[0], autocommit=True) as conn:
        conn.execute("CREATE TEMP TABLE t (k SERIAL PRIMARY KEY, v TEXT)")
        start = time.perf_counter()
        for i in range(n):
            with conn.transaction():
                conn.execute("INSERT INTO t (v) VALUES (%s)", (str(i),))
        return time.perf_counter() - start


def bench_store(label: str, make_url: Callable[[], str], raw: Callable[[int], float], n: int) -> list[Row]:
    rows: list[Row] = []

    def prune_once() -> float:
        store = open_store(make_url())
        fill(store, n, 1000.0)
        start = time.perf_counter()
        report = store.prune_all(PruneRule(5000.0, older_than=60.0, batch=200))
        elapsed = time.perf_counter() - start
        assert report.programs == n, report.counts
        store.close()
        return elapsed

    prune = median_of(prune_once)
    batches = -(-n // 200)
    commit = median_of(lambda: raw(batches * 10)) / (batches * 10)
    rows.append(Row(f"{label}: prune, programs/s ({EVENTS} events + checkpoint each)", f"{n / prune:,.0f}"))
    rows.append(Row(f"{label}: prune, one batch of 200 programs", f"{prune / batches * 1000:.1f} ms",
                    "", None))
    rows.append(Row(f"{label}:   ... as raw one-row commits", f"{prune / batches / commit:.1f}x"))

    def fire_once() -> float:
        store = open_store(make_url())
        store.deploy("job", "job.flow", {"job.flow": (source_hash(SOURCE), SOURCE)}, 0.0)
        for i in range(100):
            store.create_schedule(new_schedule(f"s{i}", "job", {}, every=60.0, overlap="allow", now=0.0), 0.0)
        clock = [60.0]
        scheduler = Scheduler(store, clock=lambda: clock[0])
        start = time.perf_counter()
        started = scheduler.fire_once()
        elapsed = time.perf_counter() - start
        assert len(started) == 100, len(started)
        store.close()
        return elapsed

    fire = median_of(fire_once)
    rows.append(Row(f"{label}: 100 due schedules, runs started per second", f"{100 / fire:,.0f}"))
    rows.append(Row(f"{label}:   ... one run as raw one-row commits", f"{fire / 100 / commit:.1f}x"))
    return rows


def bench_ticks() -> list[Row]:
    spec = make_spec("30 2 * * *", None, "Europe/Paris")
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC).timestamp()

    def ours() -> float:
        t: float | None = t0
        start = time.perf_counter()
        for _ in range(365):
            assert t is not None
            t = next_tick(spec, t)
        return (time.perf_counter() - start) / 365

    def bare() -> float:
        it = croniter("30 2 * * *", dt.datetime(2026, 1, 1))
        start = time.perf_counter()
        for _ in range(365):
            it.get_next(dt.datetime)
        return (time.perf_counter() - start) / 365

    a, b = median_of(ours, 5), median_of(bare, 5)
    return [Row("next tick of '30 2 * * *' in Europe/Paris (a year of them)", f"{a * 1e6:.0f} µs"),
            Row("  ... as croniter's naive get_next alone", f"{a / b:.1f}x")]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--postgres", help="a PostgreSQL URL (a fresh schema is used and dropped)")
    parser.add_argument("--programs", type=int, default=1000)
    parser.add_argument("--markdown", action="store_true")
    opts = parser.parse_args()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        counter = iter(range(1 << 30))
        rows += bench_store("SQLite", lambda: f"sqlite:///{Path(tmp) / f's{next(counter)}.db'}",
                            lambda n: raw_commits_sqlite(Path(tmp) / "raw.db", n), opts.programs)
    if opts.postgres:
        schemas: list[str] = []

        def pg_url() -> str:
            schemas.append(f"fm_bench_{uuid.uuid4().hex[:10]}")
            sep = "&" if "?" in opts.postgres else "?"
            return f"{opts.postgres}{sep}schema={schemas[-1]}"

        try:
            rows += bench_store("PostgreSQL", pg_url, lambda n: raw_commits_pg(opts.postgres, n), opts.programs)
        finally:
            import psycopg

            with psycopg.connect(opts.postgres.split("?")[0], autocommit=True) as conn:
                for schema in schemas:
                    conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    rows += bench_ticks()
    print(markdown(rows) if opts.markdown else "", end="")
    if not opts.markdown:
        print_table(rows)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
