"""The durable runtime on PostgreSQL, measured against raw PostgreSQL commits in the same run (not a test).

    .venv/bin/python bench/bench_postgres.py                       # $FLOWMETAL_TEST_POSTGRES_URL or local
    .venv/bin/python bench/bench_postgres.py --url postgresql://postgres@127.0.0.1:5432/test
    .venv/bin/python bench/bench_postgres.py --quick               # smaller sizes (a smoke run)

Everything runs in a fresh schema `fm_bench_<random>`, dropped at the end.

1. raw: a loop of single-row `INSERT` + `COMMIT` (autocommit, `synchronous_commit=on`
   as the server has it), on 1 connection, and on 8 connections at once (8
   threads, one connection each): commits/s.
2. steps: 100 programs x 20 steps, each step a `sleep()` of 0.1 ms — a wait
   the program cannot pass within its slice, so every step is one durable
   slice (claim, load, run, commit). `flowmetal worker` processes (1, then 4)
   run them; all 100 programs first wait on `receive()` and are released at
   once (one transaction sends them a message), so process start-up is not
   counted: steps/s = 2000 / (release .. last program completed). The target
   is 4 workers' steps/s >= 1.5 x the 8-connection raw commits/s: workers
   commit many programs' slices per transaction (group commit).
3. wake-up latency: one `flowmetal worker` process; a program loops
   `receive(); times.append(now())` — `now()` is taken when its slice starts,
   after claim and load. latency = that time - the time just before
   `store.send` (+ `store.notify`, as `flowmetal send` does); median over 50
   sends. Target <= 10 ms.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import sql

from common import WAKE, Row, markdown, pct
from flowmetal.runtime.driver import Runtime
from flowmetal.store import open_store
from flowmetal.store.postgres import PostgresStore

STEPS = """\
from flowmetal import receive, sleep


def main(steps=20):
    receive()
    for i in range(steps):
        sleep(0.0001)
    return steps
"""

RATIO_TARGET = 1.5
WAKE_MEDIAN_MS = 10.0


def with_schema(url: str, schema: str) -> str:
    parts = urlsplit(url)
    query = "&".join(x for x in (parts.query, urlencode({"schema": schema}, quote_via=quote)) if x)
    return urlunsplit(parts._replace(query=query))


class Bench:
    def __init__(self, base_url: str, quick: bool) -> None:
        self.base_url = base_url
        self.quick = quick
        self.schema = f"fm_bench_{uuid.uuid4().hex[:10]}"
        self.url = with_schema(base_url, self.schema)
        self.admin = psycopg.connect(base_url, autocommit=True)
        self.admin.execute(sql.SQL("SET search_path TO {}, public").format(sql.Identifier(self.schema)))
        self.rows: list[Row] = []
        self._n = 0

    def close(self) -> None:
        self.admin.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(self.schema)))
        self.admin.close()

    # -- 1: raw commits --------------------------------------------------------------------------
    def raw(self, connections: int, seconds: float) -> float:
        """Single-row INSERT + COMMIT from `connections` threads, each with its own connection."""
        ident = sql.Identifier(self.schema)
        self.admin.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(ident))
        self.admin.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {}.raw (id BIGSERIAL PRIMARY KEY, program_id TEXT,"
                                   " data TEXT, at DOUBLE PRECISION)").format(ident))
        insert = sql.SQL("INSERT INTO {}.raw (program_id, data, at) VALUES (%s, %s, %s)").format(ident)
        conns = [psycopg.connect(self.base_url, autocommit=True) for _ in range(connections)]
        counts = [0] * connections
        start = threading.Barrier(connections + 1)
        stop = threading.Event()

        def loop(k: int) -> None:
            conn = conns[k]
            for _ in range(10):  # warm up (prepared statement, caches), not counted
                conn.execute(insert, ("p", '{"v":1}', time.time()))
            start.wait()
            n = 0
            while not stop.is_set():
                conn.execute(insert, ("p", f'{{"v":1,"n":{n}}}', time.time()))
                n += 1
            counts[k] = n

        threads = [threading.Thread(target=loop, args=(k,)) for k in range(connections)]
        for t in threads:
            t.start()
        start.wait()
        t0 = time.perf_counter()
        time.sleep(seconds)
        stop.set()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - t0
        for c in conns:
            c.close()
        return sum(counts) / elapsed

    # -- worker processes ----------------------------------------------------------------------------
    def worker_process(self, concurrency: int = 16) -> subprocess.Popen[bytes]:
        env = dict(os.environ)
        env.pop("PYTHONDONTWRITEBYTECODE", None)  # as an installed package: with a bytecode cache
        return subprocess.Popen([sys.executable, "-m", "flowmetal", "worker", "--store", self.url,
                                 "--concurrency", str(concurrency)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)

    @staticmethod
    def stop(procs: list[subprocess.Popen[bytes]]) -> None:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def scalar(self, query: str, *params: Any) -> Any:
        row = self.admin.execute(query, params).fetchone()  # type: ignore[arg-type]
        return row[0] if row else None

    def wait_until(self, cond: Callable[[], bool], timeout: float, what: str,
                   procs: list[subprocess.Popen[bytes]], pause: float = 0.002) -> None:
        end = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > end:
                raise SystemExit(f"timed out waiting for {what}")
            for p in procs:
                if p.poll() is not None:
                    err = p.stderr.read().decode() if p.stderr else ""
                    raise SystemExit(f"a worker exited ({p.returncode}): {err}")
            time.sleep(pause)

    def wait_listening(self, procs: list[subprocess.Popen[bytes]]) -> None:
        """Until every worker process holds its LISTEN connection (it is then in its loop)."""
        name = f"flowmetal {self.schema}"[:63]
        self.wait_until(lambda: self.scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND query LIKE 'LISTEN%%'",
            name) >= len(procs), 30, "workers to listen", procs)

    # -- 2: steps/s with N worker processes ----------------------------------------------------------------
    def steps(self, workers: int, programs: int, steps: int) -> dict[str, Any]:
        self._n += 1
        prefix = f"r{self._n}-"
        store = open_store(self.url)
        rt = Runtime(store)
        procs = [self.worker_process() for _ in range(workers)]
        try:
            self.wait_listening(procs)
            ids = [rt.start("steps.flow", {"steps": steps}, program_id=f"{prefix}{i:03d}", source=STEPS)
                   for i in range(programs)]
            store.notify()
            # every program waits in receive() before the clock starts
            self.wait_until(lambda: self.scalar(
                "SELECT count(*) FROM programs WHERE id LIKE %s AND status = 'waiting' AND NOT runnable = 1"
                " AND lease_owner IS NULL", prefix + "%") == programs, 60, "programs to wait", procs)
            cpu0 = _cpu_seconds(procs)
            t0 = time.time()
            self.release(prefix, t0)
            # (polled slowly: the end time is the last commit's own timestamp, and a busy poll
            # would take CPU from the workers)
            self.wait_until(lambda: self.scalar(
                "SELECT count(*) FROM programs WHERE id LIKE %s AND status = 'completed'", prefix + "%") == programs,
                300, "programs to complete", procs, pause=0.05)
            t_end = self.scalar("SELECT max(updated_at) FROM programs WHERE id LIKE %s", prefix + "%")
            cpu = _cpu_seconds(procs) - cpu0
        finally:
            self.stop(procs)
        bad = [pid for pid in ids if store.get_program(pid).result != steps]
        if bad:
            raise SystemExit(f"steps: {bad[:5]} ended wrong")
        slices = self.scalar("SELECT count(*) FROM events WHERE program_id LIKE %s AND type = 'timer_fired'",
                             prefix + "%")
        store.close()
        elapsed = t_end - t0
        return {"steps_s": programs * steps / elapsed, "elapsed": elapsed, "timer_events": slices,
                "cpu_ms_per_step": cpu * 1000 / (programs * steps)}

    def release(self, prefix: str, now: float) -> None:
        """Send every waiting program of the round its message in ONE transaction (the same rows
        `store.send` writes), then wake the workers: all start at the same instant."""
        with self.admin.transaction():
            self.admin.execute("INSERT INTO inbox (program_id, channel, message, sent_at)"
                               " SELECT id, 'inbox', '1', %s FROM programs WHERE id LIKE %s ORDER BY id",
                               (now, prefix + "%"))
            self.admin.execute("UPDATE programs SET runnable = 1 WHERE id LIKE %s", (prefix + "%",))
        self.admin.execute(sql.SQL("NOTIFY {}").format(sql.Identifier(f"flowmetal_{self.schema}")))

    # -- 3: wake-up latency ----------------------------------------------------------------------------------
    def wake_latency(self, sends: int) -> tuple[list[float], list[float]]:
        store = open_store(self.url)
        assert isinstance(store, PostgresStore)
        rt = Runtime(store)
        pid = rt.start("wake.flow", {"n": sends}, program_id="wake", source=WAKE)
        procs = [self.worker_process()]
        before: list[float] = []
        send_ms: list[float] = []
        try:
            self.wait_listening(procs)
            store.notify()
            self.wait_until(lambda: store.get_program(pid).status == "waiting", 10, "the program to wait", procs)
            for i in range(sends):
                seq = store.get_program(pid).last_seq
                time.sleep(0.01)  # let the worker go idle on its listener
                t0 = time.time()
                store.send(pid, "inbox", i, t0)
                store.notify()
                send_ms.append((time.time() - t0) * 1000)
                before.append(t0)
                self.wait_until(lambda s=seq: store.get_program(pid).last_seq > s, 10, "a wake-up", procs)
            self.wait_until(lambda: store.get_program(pid).status == "completed", 10, "the end", procs)
            woke = store.get_program(pid).result
        finally:
            self.stop(procs)
            store.close()
        return [(w - t) * 1000 for w, t in zip(woke, before, strict=True)], send_ms

    # -- the run ------------------------------------------------------------------------------------------------
    def run(self) -> None:
        q = self.quick
        seconds = 1.0 if q else 3.0
        programs, steps = (30, 10) if q else (100, 20)
        sends = 20 if q else 50
        raw1 = self.raw(1, seconds)
        print(f"raw commits/s, 1 connection: {raw1:,.0f}", flush=True)
        raw8 = self.raw(8, seconds)
        print(f"raw commits/s, 8 connections: {raw8:,.0f}", flush=True)
        s1 = self.steps(1, programs, steps)
        print(f"steps/s, 1 worker: {s1['steps_s']:,.0f} ({s1['elapsed']:.2f} s)", flush=True)
        s4 = self.steps(4, programs, steps)
        print(f"steps/s, 4 workers: {s4['steps_s']:,.0f} ({s4['elapsed']:.2f} s)", flush=True)
        raw8_after = self.raw(8, seconds)
        print(f"raw commits/s, 8 connections (again, after): {raw8_after:,.0f}", flush=True)
        lat, send_ms = self.wake_latency(sends)
        print(f"wake-up: median {statistics.median(lat):.2f} ms, p95 {pct(lat, 95):.2f} ms; "
              f"send+notify {statistics.median(send_ms):.2f} ms", flush=True)
        baseline = (raw8 + raw8_after) / 2  # the disk and CPU drift: the mean of the two samples
        ratio = s4["steps_s"] / baseline
        med = statistics.median(lat)
        self.rows = [
            Row("raw single-row INSERT+COMMIT/s, 1 connection", f"{raw1:,.0f}"),
            Row("raw single-row INSERT+COMMIT/s, 8 connections (before / after the step runs)",
                f"{raw8:,.0f} / {raw8_after:,.0f}"),
            Row(f"Flowmetal steps/s, 1 worker process ({programs} programs x {steps} steps)",
                f"{s1['steps_s']:,.0f}"),
            Row(f"Flowmetal steps/s, 4 worker processes ({programs} programs x {steps} steps)",
                f"{s4['steps_s']:,.0f}"),
            Row("  worker CPU per step, ms, 1 / 4 workers (all of the worker processes' CPU time)",
                f"{s1['cpu_ms_per_step']:.2f} / {s4['cpu_ms_per_step']:.2f}"),
            Row("  ratio 1 worker steps/s : 1-connection raw commits/s", f"{s1['steps_s'] / raw1:.2f}"),
            Row("  ratio 4 workers steps/s : 8-connection raw commits/s (mean of both samples)",
                f"{ratio:.2f}", f">= {RATIO_TARGET}", ratio >= RATIO_TARGET),
            Row(f"wake-up latency send -> program resumed, 1 worker process, {sends} sends: median ms",
                f"{med:.2f}", f"<= {WAKE_MEDIAN_MS:g}", med <= WAKE_MEDIAN_MS),
            Row("  p95 ms", f"{pct(lat, 95):.2f}"),
            Row("  median ms of the send + notify calls themselves", f"{statistics.median(send_ms):.2f}"),
        ]


def _cpu_seconds(procs: list[subprocess.Popen[bytes]]) -> float:
    """User + system CPU time the processes used so far (Linux /proc; NaN elsewhere)."""
    total = 0.0
    for p in procs:
        try:
            with open(f"/proc/{p.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            return float("nan")
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default=os.environ.get("FLOWMETAL_TEST_POSTGRES_URL",
                                                    "postgresql://postgres@127.0.0.1:5432/test"),
                    help="the server (a fresh schema is created in its database, and dropped)")
    ap.add_argument("--quick", action="store_true", help="smaller sizes")
    args = ap.parse_args()
    bench = Bench(args.url, args.quick)
    server = bench.admin.execute("SHOW server_version").fetchone()
    print(f"Python {platform.python_version()}, PostgreSQL {server[0] if server else '?'}, "
          f"{os.cpu_count()} CPUs, {platform.machine()}; schema {bench.schema}")
    load_before = os.getloadavg()[0]
    try:
        bench.run()
    finally:
        bench.close()
    print(f"\nload average (1 min) before / after: {load_before:.2f} / {os.getloadavg()[0]:.2f} "
          f"on {os.cpu_count()} CPUs (other processes share the machine)\n")
    print(markdown(bench.rows))


if __name__ == "__main__":
    main()
