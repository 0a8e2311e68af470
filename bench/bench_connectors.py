"""Connectors measured against their raw baselines in the same run (not a test).

    .venv/bin/python bench/bench_connectors.py [--quick] [--dir /some/disk]

1. foreign calls, one program: N sequential `call("echo", i)` served by an
   in-process FunctionWorker, one in-process Worker. Per call: the program's
   request commit, the connector's claim + finish commit, the program's
   resume commit. Baseline: raw SQLite single-row commits/s on the same disk,
   measured right before; ratio = (raw commit time x 3) / time per call, i.e.
   how close a call gets to the three commits it needs.
2. foreign calls, 50 programs x 20 calls at once (group commit on the
   program side, 8 calls performed at once): calls/s vs raw commits/s.
3. HTTP requests: one program doing N sequential `http.get` to a loopback
   server; baseline: the same N requests with a plain httpx.Client loop.
   Reported: overhead per request in ms (Flowmetal - raw).
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from flowmetal.connectors.functions import FunctionWorker
from flowmetal.connectors.http import HttpConnector
from flowmetal.runtime.driver import Runtime
from flowmetal.runtime.worker import Worker
from flowmetal.store import open_store
from flowmetal.store.base import FINISHED, Store

CALLS = """
from flowmetal import call
def main(n):
    total = 0
    for i in range(n):
        total += call("echo", i)
    return total
"""

GETS = """
from flowmetal import http
def main(url, n):
    ok = 0
    for i in range(n):
        ok += http.get(url).status == 200
    return ok
"""


def raw_commits(path: Path, seconds: float = 1.5) -> float:
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


class Services:
    def __init__(self, store: Store, http: bool = False) -> None:
        self.rt = Runtime(store, reuse_machines=True)
        self.worker = Worker(self.rt, concurrency=64)
        self.functions = FunctionWorker(store, concurrency=8)
        self.functions.function("echo")(lambda ctx, x: x)
        self.http = HttpConnector(store, concurrency=8) if http else None
        self.threads = [threading.Thread(target=self.worker.run, daemon=True)]
        if self.http is not None:
            self.threads.append(threading.Thread(target=self.http.run, daemon=True))

    def __enter__(self) -> Services:
        for t in self.threads:
            t.start()
        self.functions.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.worker.stop()
        if self.http is not None:
            self.http.stop()
        self.functions.stop()
        for t in self.threads:
            t.join(10)


def run_programs(store: Store, rt: Runtime, source: str, path: Path, args: list[dict[str, Any]]) -> float:
    path.write_text(source)
    start = time.perf_counter()
    pids = [rt.start(str(path), a) for a in args]
    store.notify()
    while True:
        rows = [store.get_program(p) for p in pids]
        if all(r.status in FINISHED for r in rows):
            break
        time.sleep(0.005)
    elapsed = time.perf_counter() - start
    bad = [r for r in rows if r.status != "completed"]
    assert not bad, bad[0].error
    return elapsed


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        body = b'{"ok": true}'
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--dir")
    opts = parser.parse_args()
    n_calls, n_programs, per_program, n_gets = (100, 10, 10, 100) if opts.quick else (300, 50, 20, 300)
    base = Path(opts.dir or tempfile.mkdtemp(prefix="fm-bench-conn-"))
    rows: list[tuple[str, str, str, str]] = []

    raw = statistics.median(raw_commits(base / f"raw{i}.db", 1.0) for i in range(3))
    store = open_store(f"sqlite:///{base / 'calls.db'}")
    with Services(store) as s:
        t = run_programs(store, s.rt, CALLS, base / "calls.flow", [{"n": n_calls}])
    per_call = t / n_calls
    rows.append(("sequential call() round trip", f"{per_call * 1000:.2f} ms/call",
                 f"raw commit {1000 / raw:.2f} ms", f"{(3 / raw) / per_call:.2f}× of 3 raw commits"))

    raw = statistics.median(raw_commits(base / f"raw2{i}.db", 1.0) for i in range(3))
    store = open_store(f"sqlite:///{base / 'many.db'}")
    with Services(store) as s:
        t = run_programs(store, s.rt, CALLS, base / "many.flow", [{"n": per_program}] * n_programs)
    rate = n_programs * per_program / t
    rows.append((f"{n_programs} programs x {per_program} calls", f"{rate:.0f} calls/s", f"raw {raw:.0f} commits/s",
                 f"{rate / raw:.2f}× raw commits/s"))

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/x"
    with httpx.Client() as client:
        start = time.perf_counter()
        for _ in range(n_gets):
            client.get(url)
        raw_get = (time.perf_counter() - start) / n_gets
    store = open_store(f"sqlite:///{base / 'http.db'}")
    with Services(store, http=True) as s:
        t = run_programs(store, s.rt, GETS, base / "gets.flow", [{"url": url, "n": n_gets}])
    per_get = t / n_gets
    rows.append(("sequential http.get (loopback)", f"{per_get * 1000:.2f} ms/request",
                 f"raw httpx {raw_get * 1000:.2f} ms", f"+{(per_get - raw_get) * 1000:.2f} ms overhead"))
    httpd.shutdown()

    print("| scenario | Flowmetal | baseline (same run) | ratio |")
    print("|---|---:|---:|---:|")
    for r in rows:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
