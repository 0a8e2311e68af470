"""Connectors measured against their raw baselines in the same run (not a test).

    .venv/bin/python bench/bench_connectors.py [--quick] [--dir /some/disk]

Baseline: raw SQLite single-row commits/s (WAL, synchronous=FULL, BEGIN
IMMEDIATE) on the same disk, measured right before each scenario.

1. sequential foreign calls, in process (`--functions`): one program doing N
   `call("echo", i)`; the worker performs them itself (one commit per call).
   Ratio = calls/s ÷ raw commits/s (target >= 0.5).
2. the same with the function in a separate worker process (`flowmetal
   functions FILE`): request commit, the connector's claim and finish,
   the program's next slice.
3. 50 programs x 20 calls at once, in process: calls/s vs raw commits/s.
4. HTTP requests: one program doing N sequential `http.get` to a loopback
   server; baseline: the same N requests with a plain httpx.Client loop;
   and 20 programs x 10 requests at once (connector throughput).
5. callback delivery -> program resumed: a real `flowmetal serve` process;
   the time from just before the HTTP POST (http.client, connection open) to the callback URL to the
   program's `now()` right after `cb.wait()` returns (median; target <= 5 ms).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from common import raw_commits
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


class Services:
    def __init__(self, store: Store, http: bool = False, functions: bool = True) -> None:
        self.rt = Runtime(store, reuse_machines=True)
        self.functions = FunctionWorker(store, concurrency=8)
        self.functions.function("echo")(lambda ctx, x: x)
        self.http = HttpConnector(store, concurrency=8) if http else None
        # as `flowmetal worker/serve` do: the worker performs its programs' calls and requests itself
        self.worker = Worker(self.rt, concurrency=64, functions=self.functions if functions else None,
                             http=self.http)
        self.serve_functions = functions
        self.threads = [threading.Thread(target=self.worker.run, daemon=True)]
        if self.http is not None:
            self.threads.append(threading.Thread(target=self.http.run, daemon=True))

    def __enter__(self) -> Services:
        for t in self.threads:
            t.start()
        if self.serve_functions:
            self.functions.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.worker.stop()
        if self.http is not None:
            self.http.stop()
        if self.serve_functions:
            self.functions.stop()
        for t in self.threads:
            t.join(10)


def run_programs(store: Store, rt: Runtime, source: str, path: Path, args: list[dict[str, Any]]) -> float:
    """Seconds to run the programs to their end (after a warm-up run: a node compiles its
    built-in prelude and opens its connections once, not per call)."""
    path.write_text(source)
    warm = dict(args[0])
    warm["n"] = 2
    _run(store, rt, path, [warm])
    return _run(store, rt, path, args)


def _run(store: Store, rt: Runtime, path: Path, args: list[dict[str, Any]]) -> float:
    start = time.perf_counter()
    pids = [rt.start(str(path), a) for a in args]
    store.notify()
    while True:
        rows = [store.get_program(p) for p in pids]
        if all(r.status in FINISHED for r in rows):
            break
        time.sleep(0.05)
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


FUNCTIONS_FILE = """
import flowmetal

@flowmetal.function("echo")
def echo(ctx, x):
    return x
"""

CALLBACK = """
from flowmetal import callback, now
def main(rounds):
    out = []
    for i in range(rounds):
        cb = callback()
        print(cb.url)
        cb.wait()
        out.append(now())
    return out
"""


def row(rows: list[tuple[str, str, str, str]], *cells: str) -> None:
    rows.append(cells)  # type: ignore[arg-type]
    print(" | ".join(cells), flush=True)


def calls_in_process(base: Path, rows: list[Any], n: int) -> None:
    raw = statistics.median(raw_commits(base / f"raw-a{i}.db", 1.0) for i in range(3))
    store = open_store(f"sqlite:///{base / 'calls.db'}")
    with Services(store) as s:
        t = run_programs(store, s.rt, CALLS, base / "calls.flow", [{"n": n}])
    rate = n / t
    row(rows, "sequential call(), in process (--functions)", f"{rate:.0f} calls/s ({1000 / rate:.2f} ms)",
        f"raw {raw:.0f} commits/s", f"{rate / raw:.2f}x raw (target >= 0.5)")


def calls_other_process(base: Path, rows: list[Any], n: int) -> None:
    raw = statistics.median(raw_commits(base / f"raw-b{i}.db", 1.0) for i in range(3))
    url = f"sqlite:///{base / 'calls2.db'}"
    store = open_store(url)
    (base / "echo.py").write_text(FUNCTIONS_FILE)
    proc = subprocess.Popen([sys.executable, "-m", "flowmetal", "functions", str(base / "echo.py"), "--store", url],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.0)  # let it start listening
        with Services(store, functions=False) as s:
            t = run_programs(store, s.rt, CALLS, base / "calls2.flow", [{"n": n}])
    finally:
        proc.terminate()
        proc.wait(10)
    rate = n / t
    row(rows, "sequential call(), separate function worker process", f"{rate:.0f} calls/s ({1000 / rate:.2f} ms)",
        f"raw {raw:.0f} commits/s", f"{rate / raw:.2f}x raw")


def calls_many(base: Path, rows: list[Any], programs: int, per: int) -> None:
    raw = statistics.median(raw_commits(base / f"raw-c{i}.db", 1.0) for i in range(3))
    store = open_store(f"sqlite:///{base / 'many.db'}")
    with Services(store) as s:
        t = run_programs(store, s.rt, CALLS, base / "many.flow", [{"n": per}] * programs)
    rate = programs * per / t
    row(rows, f"{programs} programs x {per} calls at once, in process", f"{rate:.0f} calls/s",
        f"raw {raw:.0f} commits/s", f"{rate / raw:.2f}x raw")


def http_requests(base: Path, rows: list[Any], n: int, programs: int, per: int) -> None:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/x"
    try:
        with httpx.Client() as client:
            start = time.perf_counter()
            for _ in range(n):
                client.get(url)
            raw_get = (time.perf_counter() - start) / n
        store = open_store(f"sqlite:///{base / 'http.db'}")
        with Services(store, http=True, functions=False) as s:
            t = run_programs(store, s.rt, GETS, base / "gets.flow", [{"url": url, "n": n}])
            t_many = run_programs(store, s.rt, GETS, base / "gets.flow", [{"url": url, "n": per}] * programs)
    finally:
        httpd.shutdown()
    per_get = t / n
    row(rows, "sequential http.get (loopback)", f"{per_get * 1000:.2f} ms/request",
        f"raw httpx {raw_get * 1000:.2f} ms", f"+{(per_get - raw_get) * 1000:.2f} ms per request")
    row(rows, f"{programs} programs x {per} http.get at once", f"{programs * per / t_many:.0f} requests/s",
        f"raw httpx {1 / raw_get:.0f} requests/s (one client, sequential)", "")


def callback_latency(base: Path, rows: list[Any], rounds: int) -> None:
    url = f"sqlite:///{base / 'cb.db'}"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "flowmetal", "serve", "--store", url, "--port", str(port),
                               "--public-url", f"http://127.0.0.1:{port}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    latencies = []
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            for _ in range(100):
                try:
                    if client.get("/health").status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            (base / "cb.flow").write_text(CALLBACK)
            pid = client.post("/programs", json={"path": str(base / "cb.flow"), "args": {"rounds": rounds}}).json()["id"]
            sent: list[float] = []
            seen = 0
            while len(sent) < rounds:
                events = client.get(f"/programs/{pid}/history").json()["events"]
                urls = [e["text"].strip() for e in events if e["type"] == "output"]
                if len(urls) > seen:
                    time.sleep(0.02)  # let the program settle into its wait
                    # a lean client (http.client): httpx alone spends ~2 ms per request here
                    sender = http.client.HTTPConnection("127.0.0.1", port)
                    sender.connect()
                    sent.append(time.time())
                    sender.request("POST", urlsplit(urls[-1]).path, body=json.dumps({"i": seen}),
                                   headers={"content-type": "application/json"})
                    assert sender.getresponse().status == 202
                    sender.close()
                    seen += 1
                    time.sleep(0.05)  # stay off the node while the program resumes (it is being timed)
                else:
                    time.sleep(0.01)
            result = client.get(f"/programs/{pid}/result", params={"wait": 30}).json()["result"]
            latencies = [(r - s) * 1000 for r, s in zip(result, sent)]
    finally:
        server.terminate()
        server.wait(10)
    med = statistics.median(latencies)
    row(rows, f"callback POST -> program resumed ({rounds} rounds, flowmetal serve)",
        f"median {med:.2f} ms, p90 {sorted(latencies)[int(len(latencies) * 0.9)]:.2f} ms", "",
        "target <= 5 ms median")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--dir")
    opts = parser.parse_args()
    quick = opts.quick
    base = Path(opts.dir or tempfile.mkdtemp(prefix="fm-bench-conn-"))
    rows: list[Any] = []
    print(f"# bench_connectors on {platform.node()} ({os.cpu_count()} CPUs), python {platform.python_version()}")
    calls_in_process(base, rows, 200 if quick else 1000)
    calls_other_process(base, rows, 100 if quick else 300)
    calls_many(base, rows, 10 if quick else 50, 10 if quick else 20)
    http_requests(base, rows, 100 if quick else 300, 10 if quick else 20, 10)
    callback_latency(base, rows, 10 if quick else 40)
    print()
    print("| scenario | Flowmetal | baseline (same run) | ratio |")
    print("|---|---:|---:|---:|")
    for r in rows:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
