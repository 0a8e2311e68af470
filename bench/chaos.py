"""Chaos: workers killed with SIGKILL over and over while programs make calls, HTTP requests,
sleep, print and talk to each other. With the default retry policy nothing may be lost and
nothing duplicated.

    .venv/bin/python bench/chaos.py --store sqlite [--kills 1000] [--workers 3] [--life 0.4]
    .venv/bin/python bench/chaos.py --store postgres [--url postgresql://postgres@127.0.0.1:5432/test]

`--workers` `flowmetal worker --functions` processes run at once; each is killed with
SIGKILL a random 0.5x-1.5x `--life` seconds after it is ready (logged `worker started`) and
replaced by a fresh one, until `--kills` kills. Meanwhile pairs of programs are started so
that about `--pairs` pairs are unfinished at any time. Each program (PROGRAM, default retry
policies throughout) makes 3 in-process foreign calls (`chaos.add`, served by the workers,
which append every attempt to a ledger file), one HTTP request to a loopback server here
that records every request with its Idempotency-Key, sleeps, prints after each step, sends
its total to its partner and receives the partner's. After the last kill the surviving
workers finish everything.

Checked (tests/test_chaos.py runs a short version on each store):
- lost: every program completed, with the right result (its partner's total included);
- duplicated: each program's output is exactly its steps once each; each of its calls ran
  under one idempotency key per step (the function ledger and the HTTP server saw 3 and 1
  distinct keys for it, every attempt of a key with the same arguments);
- counted: no call's attempt was counted as failed because its worker died (failed attempts
  recorded with `LeaseExpired`), and how many attempts were lost with their workers.
Exit status 1 if anything was lost or duplicated.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import common
from flowmetal.runtime.driver import Runtime
from flowmetal.store import open_store
from flowmetal.store.base import FINISHED, Store

PROGRAM = """\
from flowmetal import call, http, sleep, send, receive


def main(i, partner, base):
    total = 0
    for k in range(3):
        total += call("chaos.add", i, k)
        print(f"{i} add {k} {total}")
    r = http.post(f"{base}/effect", json={"i": i})
    print(f"{i} http {r.status}")
    sleep(0.05)
    send(partner, total, channel="pair")
    other = receive("pair")
    print(f"{i} got {other}")
    return [total, r.json()["v"], other]
"""

FUNCTIONS = """\
import os

import flowmetal

LEDGER = os.environ["FLOWMETAL_CHAOS_LEDGER"]


@flowmetal.function("chaos.add")
def add(ctx, i, k):
    with open(LEDGER, "a") as f:  # one short append per attempt
        f.write(f"{ctx.idempotency_key} {ctx.attempt} {i} {k}\\n")
    return i * 10 + k
"""


def total(i: int) -> int:
    return sum(i * 10 + k for k in range(3))


def expected_output(i: int, partner: int) -> list[str]:
    lines = [f"{i} add {k} {sum(i * 10 + j for j in range(k + 1))}" for k in range(3)]
    return [*lines, f"{i} http 200", f"{i} got {total(partner)}"]


class WorkerProc(common.WorkerProc):
    """A worker of the chaos run: one executor (three of them share two cores)."""

    def __init__(self, url: str, functions: Path, cwd: Path) -> None:
        super().__init__(url, functions, cwd, ["--concurrency", "32", "--executors", "1"])


class Recorder(ThreadingHTTPServer):
    """A loopback server that records every request: (Idempotency-Key, body)."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.seen: list[tuple[str, Any]] = []
        self.incomplete: list[str] = []  # keys of requests cut off by a kill
        self.lock = threading.Lock()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: Recorder

    def do_POST(self) -> None:
        size = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(size)
        key = self.headers.get("Idempotency-Key", "")
        if len(raw) < size or not raw:  # its sender was killed halfway through: nobody reads an answer
            with self.server.lock:
                self.server.incomplete.append(key)
            return
        body = json.loads(raw)
        with self.server.lock:
            self.server.seen.append((key, body))
        out = json.dumps({"v": body["i"] * 7}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class Report:
    store: str
    kills: int = 0
    programs: int = 0
    seconds: float = 0.0
    unfinished: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)  # failed, or completed with the wrong result
    repeated_output: list[str] = field(default_factory=list)
    duplicated_keys: list[str] = field(default_factory=list)
    counted_as_failed: int = 0  # attempts recorded as failed because their worker died
    lost_attempts: int = 0  # attempts lost with their worker (run again, not counted)
    max_lost: int = 0  # of one call
    function_attempts: int = 0
    http_requests: int = 0

    @property
    def clean(self) -> bool:
        return not (self.unfinished or self.wrong or self.repeated_output or self.duplicated_keys
                    or self.counted_as_failed)

    def summary(self) -> str:
        return (f"{self.store}: {self.kills} kills, {self.programs} programs in {self.seconds:.0f} s:"
                f" {len(self.unfinished)} unfinished, {len(self.wrong)} wrong or failed,"
                f" {len(self.repeated_output)} with repeated output, {len(self.duplicated_keys)} with a step"
                f" run under two keys, {self.counted_as_failed} attempts counted as failed because their"
                f" worker died; {self.lost_attempts} attempts lost with their worker and run again (at most"
                f" {self.max_lost} of one call); {self.function_attempts} function attempts,"
                f" {self.http_requests} HTTP requests seen")


def run(url: str, kills: int, *, workers: int = 3, life: float = 0.4, pairs: int = 10, seed: int = 1,
        finish_timeout: float = 120.0, max_seconds: float | None = None, log: Any = None) -> Report:
    """Kill workers `kills` times (or for `max_seconds`) while programs run; then let the last
    ones finish and check."""
    rng = random.Random(seed)
    work = Path(tempfile.mkdtemp(prefix="fmchaos"))
    program = work / "chaos.flow"
    program.write_text(PROGRAM)
    functions = work / "chaos_functions.py"
    functions.write_text(FUNCTIONS)
    ledger = work / "ledger.txt"
    os.environ["FLOWMETAL_CHAOS_LEDGER"] = str(ledger)  # the workers inherit it
    server = Recorder()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    store = open_store(url)
    rt = Runtime(store)
    report = Report(store="sqlite" if url.startswith("sqlite") else "postgres")
    started: dict[str, tuple[int, int]] = {}  # program id -> (i, partner's i)
    procs: list[tuple[WorkerProc, float]] = []

    def spawn() -> None:
        procs.append((WorkerProc(url, functions, work), rng.uniform(0.5, 1.5) * life))

    def feed() -> None:
        counts = store.count_programs()
        live = counts.get("running", 0) + counts.get("waiting", 0)
        while live < 2 * pairs:
            n = len(started)
            a, b = f"chaos{n}", f"chaos{n + 1}"
            started[b], started[a] = (n + 1, n), (n, n + 1)
            rt.start(str(program), {"i": n + 1, "partner": a, "base": server.base}, program_id=b)
            rt.start(str(program), {"i": n, "partner": b, "base": server.base}, program_id=a)
            live += 2

    t0 = time.perf_counter()
    try:
        for _ in range(workers):
            spawn()
        last_feed = 0.0
        while report.kills < kills:
            now = time.perf_counter()
            if max_seconds is not None and now - t0 > max_seconds:
                break
            if now - last_feed > 0.1:
                feed()
                last_feed = now
            for proc, lifetime in list(procs):
                if proc.proc.poll() is not None:
                    raise SystemExit(f"a worker exited by itself: {''.join(proc.tail)}")
                if report.kills < kills and proc.ready.is_set() and now - proc.ready_at > lifetime:
                    proc.kill()
                    report.kills += 1
                    procs.remove((proc, lifetime))
                    spawn()
                    if log is not None and report.kills % 50 == 0:
                        print(f"  {report.kills} kills, {len(started)} programs started", file=log, flush=True)
            time.sleep(0.005)
        end = time.monotonic() + finish_timeout
        while time.monotonic() < end:
            if all(store.get_program(pid).status in FINISHED for pid in started):
                break
            time.sleep(0.1)
        report.seconds = time.perf_counter() - t0
        _check(store, started, ledger, server, report)
    finally:
        for proc, _ in procs:
            proc.stop()
        server.shutdown()
        store.close()
        shutil.rmtree(work, ignore_errors=True)
    return report


def _check(store: Store, started: dict[str, tuple[int, int]], ledger: Path, server: Recorder,
           report: Report) -> None:
    report.programs = len(started)
    fn_keys: dict[int, set[str]] = defaultdict(set)
    fn_args: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for line in ledger.read_text().splitlines():
        key, _attempt, i, k = line.split()
        fn_keys[int(i)].add(key)
        fn_args[key].add((i, k))
        report.function_attempts += 1
    http_keys: dict[int, set[str]] = defaultdict(set)
    http_args: dict[str, set[str]] = defaultdict(set)
    for key, body in server.seen:
        http_keys[body["i"]].add(key)
        http_args[key].add(json.dumps(body))
        report.http_requests += 1
    for pid, (i, partner) in started.items():
        row = store.get_program(pid)
        if row.status not in FINISHED:
            report.unfinished.append(pid)
            continue
        if row.status != "completed" or row.result != [total(i), 7 * i, total(partner)]:
            report.wrong.append(f"{pid}: {row.status} {row.result!r} {row.error or ''}"[:300])
        text = "".join(e.data.get("text", "") for e in store.events(pid) if e.type == "output")
        if text.splitlines() != expected_output(i, partner):
            report.repeated_output.append(f"{pid}: {text!r}"[:300])
        if (len(fn_keys[i]) != 3 or len(http_keys[i]) != 1
                or any(len(fn_args[k]) != 1 for k in fn_keys[i]) or any(len(http_args[k]) != 1 for k in http_keys[i])):
            report.duplicated_keys.append(f"{pid}: calls {sorted(fn_keys[i])}, requests {sorted(http_keys[i])}")
        for call in store.list_calls(pid):
            report.lost_attempts += call.lost
            report.max_lost = max(report.max_lost, call.lost)
        report.counted_as_failed += sum(1 for a in store.list_attempts(pid)
                                        if a.error.get("type") == "LeaseExpired")


def _pg_url(base: str) -> tuple[str, str]:
    from bench_postgres import with_schema

    schema = f"fm_chaos_{uuid.uuid4().hex[:10]}"
    return with_schema(base, schema), schema


def _drop(base: str, schema: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    ap.add_argument("--url", default=os.environ.get("FLOWMETAL_BENCH_POSTGRES_URL",
                                                    "postgresql://postgres@127.0.0.1:5432/test"))
    ap.add_argument("--kills", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=3)
    ap.add_argument("--life", type=float, default=0.4)
    ap.add_argument("--pairs", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--max-seconds", type=float, help="stop killing after this long (the kills done are reported)")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="fmc"))  # short: the wake-up sockets go next to the file
    schema = None
    if a.store == "sqlite":
        url = f"sqlite:///{tmp / 'chaos.db'}"
    else:
        url, schema = _pg_url(a.url)
    try:
        report = run(url, a.kills, workers=a.workers, life=a.life, pairs=a.pairs, seed=a.seed,
                     max_seconds=a.max_seconds, log=sys.stdout)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if schema is not None:
            _drop(a.url, schema)
    print(report.summary())
    for name in ("unfinished", "wrong", "repeated_output", "duplicated_keys"):
        for line in getattr(report, name)[:10]:
            print(f"  {name}: {line}")
    sys.exit(0 if report.clean else 1)


if __name__ == "__main__":
    main()
