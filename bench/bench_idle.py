"""What a worker costs while nothing is due, as the number of sleeping programs grows.

    .venv/bin/python bench/bench_idle.py [--sizes 1000,20000,100000] [--seconds 20] [--stores sqlite,postgres]
                                         [--markdown]

For each store and size: N programs in `sleep(3600)` (one real program run by a worker until
it sleeps, then copied N - 1 times by direct inserts of its rows — program row, events,
checkpoint — under new ids: real programs, each resumable, created fast), then a `flowmetal
worker` process started on the store with nothing due. After it settles, its CPU (user +
system, its executor processes included) is sampled over `--seconds` as a percentage of one
core, with its memory (RSS of the worker process; executors apart), from 3 s after it logged
`worker started` (its executors are up then). On PostgreSQL the CPU
the server's backends spend on the worker's connections is shown too (found by their
application_name, which names the store's schema).

Target (issue 14): under 1% of a core on both stores with 100,000 sleeping programs, and
no more than with 1,000.

PostgreSQL: FLOWMETAL_BENCH_POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/test);
each size uses a schema of its own, dropped first.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import Row, markdown, print_table
from flowmetal.runtime.driver import Runtime
from flowmetal.runtime.worker import Worker
from flowmetal.store import open_store

SLEEPER = """
from flowmetal import sleep
def main(n):
    sleep(3600)
    return n
"""
PG_URL = os.environ.get("FLOWMETAL_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
TICK = os.sysconf("SC_CLK_TCK")


def _seed(url: str, n: int, workdir: Path) -> None:
    """N sleeping programs: one run until it sleeps, then copied by direct inserts."""
    store = open_store(url)
    rt = Runtime(store)
    path = workdir / "sleeper.flow"
    path.write_text(SLEEPER)
    rt.start(str(path), {"n": 0}, program_id="p0")
    Worker(rt, notify=False).run(idle_exit=True)
    row = store.get_program("p0")
    assert row.status == "waiting" and row.wake_at is not None, row
    if url.startswith("sqlite"):
        _copy_sqlite(store, n)
    else:
        _copy_postgres(store, n)
    store.close()


def _copy_sqlite(store: Any, n: int) -> None:
    db = store.db
    db.execute("BEGIN IMMEDIATE")
    for table, key in (("programs", "id"), ("events", "program_id"), ("checkpoints", "program_id")):
        cols = [r[1] for r in db.execute(f"PRAGMA table_info({table})")]
        rows = db.execute(f"SELECT * FROM {table} WHERE {key} = 'p0'").fetchall()
        at = cols.index(key)
        marks = ", ".join("?" * len(cols))
        db.executemany(f"INSERT INTO {table} VALUES ({marks})",
                       ([*r[:at], f"p{i}", *r[at + 1:]] for i in range(1, n) for r in rows))
    db.execute("COMMIT")


def _copy_postgres(store: Any, n: int) -> None:
    with store.pool.connection() as conn:
        for table, key in (("programs", "id"), ("events", "program_id"), ("checkpoints", "program_id")):
            cols = [r[0] for r in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema()"
                " AND table_name = %s ORDER BY ordinal_position", (table,))]
            others = ", ".join(c for c in cols if c != key)
            conn.execute(f"INSERT INTO {table} ({key}, {others}) SELECT 'p' || g, {others}"
                         f" FROM {table}, generate_series(1, %s) AS g WHERE {key} = 'p0'", (n - 1,))
        conn.execute("ANALYZE programs")


def _cpu_ticks(pid: int) -> int:
    """User + system ticks of `pid` and its living children (executors)."""
    total = 0
    for p in [pid, *_children(pid)]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _backends(schema: str) -> list[int]:
    import psycopg

    with psycopg.connect(PG_URL, autocommit=True) as conn:
        return [r[0] for r in conn.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s",
                                           (f"flowmetal {schema}"[:63],))]


def _pg_url(schema: str) -> str:
    import psycopg
    from psycopg import sql

    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    sep = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{sep}schema={schema}"


def measure(store: str, n: int, seconds: float, workdir: Path) -> dict[str, float]:
    schema = f"bench_idle_{n}"
    url = f"sqlite:///{workdir / f'idle{n}.db'}" if store == "sqlite" else _pg_url(schema)
    t0 = time.perf_counter()
    _seed(url, n, workdir)
    seeded = time.perf_counter() - t0
    log = open(workdir / f"worker-{store}-{n}.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "flowmetal", "worker", "--store", url], cwd=workdir,
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        # imports, executors up (on a busy machine that takes a while), then the first rounds
        started = time.monotonic()
        while "worker started" not in (workdir / f"worker-{store}-{n}.log").read_text():
            if time.monotonic() - started > 120 or proc.poll() is not None:
                raise SystemExit((workdir / f"worker-{store}-{n}.log").read_text())
            time.sleep(0.1)
        time.sleep(3.0)
        backends = _backends(schema) if store == "postgres" else []
        b0 = sum(_cpu_ticks(b) for b in backends)
        c0, w0 = _cpu_ticks(proc.pid), time.perf_counter()
        time.sleep(seconds)
        c1, w1 = _cpu_ticks(proc.pid), time.perf_counter()
        b1 = sum(_cpu_ticks(b) for b in backends)
        rss = _rss_mb(proc.pid)
        executors_rss = sum(_rss_mb(c) for c in _children(proc.pid))
        assert proc.poll() is None, (workdir / f"worker-{store}-{n}.log").read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        log.close()
    wall = (w1 - w0) * TICK
    return {"cpu": 100 * (c1 - c0) / wall, "server": 100 * (b1 - b0) / wall, "rss": rss,
            "executors_rss": executors_rss, "seeded": seeded}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000,20000,100000")
    ap.add_argument("--stores", default="sqlite,postgres")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--markdown", action="store_true")
    a = ap.parse_args()
    sizes = [int(s) for s in a.sizes.split(",")]
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        for store in a.stores.split(","):
            base: float | None = None
            for n in sizes:
                m = measure(store, n, a.seconds, Path(tmp))
                base = m["cpu"] if base is None else base
                label = f"{store}, {n:,} sleeping"
                print(f"{label}: worker {m['cpu']:.2f}% of a core, RSS {m['rss']:.0f} MB (executors"
                      f" {m['executors_rss']:.0f} MB), server {m['server']:.2f}%  (seeded in {m['seeded']:.1f} s)",
                      flush=True)
                rows.append(Row(f"{label}: worker CPU % of a core", f"{m['cpu']:.2f}",
                                "< 1%, <= the 1,000 figure + 0.2", m["cpu"] < 1.0 and m["cpu"] <= base + 0.2))
                rows.append(Row(f"{label}: worker RSS MB (executors apart)",
                                f"{m['rss']:.0f} (+{m['executors_rss']:.0f})"))
                if store == "postgres":
                    rows.append(Row(f"{label}: server backends CPU %", f"{m['server']:.2f}"))
    print_table(rows)
    if a.markdown:
        print()
        print(markdown(rows))


if __name__ == "__main__":
    main()
