"""The shared workload (issue 14), on SQLite and PostgreSQL, against raw commits measured in the same run.

    .venv/bin/python bench/bench_shared.py                    # both stores, 3 rounds
    .venv/bin/python bench/bench_shared.py --stores sqlite --rounds 5 --workers 2
    .venv/bin/python bench/bench_shared.py --quick            # a smoke run (1 round, small sizes)

A workload other durable-execution systems are measured with too: a program makes 10
sequential foreign calls (`step(i, j)` returns `i*10+j`, served in process by the worker
through `--functions`) and returns their sum. `flowmetal.Client` (opened on the store)
starts programs and waits for their results; `flowmetal worker --functions F
--concurrency 128` processes (`--workers`, default 1) run them.

1. sequential: latency of one program, `Client.start` until `result()` returns, with 10
   steps and with 0 (alternating, median of each); ms per step = (L10 - L0) / 10.
2. 100 at once: 100 programs started one after the other by the client, then every
   result awaited; steps/s = 1000 / (first start .. last result).
3. kill -9: 100 programs, the worker killed once half of the calls have finished, a
   fresh worker process spawned: seconds from its spawn until all 100 completed, and of
   those its start-up until it logged `worker started` (imports, store, executors).

Baselines, measured in the same round: raw SQLite single-row commits/s (WAL,
synchronous=FULL, on the same disk as the store); raw PostgreSQL single-row
INSERT+COMMIT/s on 1 connection and on 8. Each figure is the median of `--rounds`
rounds; every round uses a fresh store (SQLite file or PostgreSQL schema).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import psycopg
from psycopg import sql

import common
from bench_postgres import Bench as PgBench
from bench_postgres import with_schema
from common import raw_commits
from flowmetal import Client

PROGRAM = """\
from flowmetal import call


def main(i=0, n=10):
    total = 0
    for j in range(n):
        total += call("step", i, j)
    return total
"""

FUNCTIONS = """\
import flowmetal


@flowmetal.function("step")
def step(ctx, i, j):
    return i * 10 + j
"""

PROGRAMS = 100
STEPS = 10
# the targets (same-run ratios)
PG_SEQ_MS, PG_SEQ_RAW = 1.0, 4.0  # ms per step, or x the raw 1-connection commit latency
PG_PAR_RAW8 = 0.4  # x the raw 8-connection commits/s
SQ_SEQ_RAW = 0.4  # steps/s x the raw commits/s
SQ_PAR_RAW = 1.0
RECOVERY_S = 0.5  # all complete this long after the new worker is ready


def expected(i: int, n: int) -> int:
    return sum(i * 10 + j for j in range(n))


class WorkerProc(common.WorkerProc):
    """A worker of this benchmark: 128 programs at once, with a bytecode cache as an installed
    package has."""

    def __init__(self, url: str, functions: Path, cwd: Path) -> None:
        env = dict(os.environ)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        super().__init__(url, functions, cwd, ["--concurrency", "128"], env)


class Store:
    """One fresh store per round: its URL, a raw SQL count, and the same-run baselines."""

    name = ""
    url = ""

    def count(self, query: str) -> int:
        raise NotImplementedError

    def baselines(self, seconds: float) -> dict[str, float]:
        raise NotImplementedError

    def close(self) -> None:
        pass


class SqliteStore(Store):
    name = "sqlite"

    def __init__(self, base: Path, n: int) -> None:
        self.base = base
        self.path = base / f"shared-{n}.db"
        self.url = f"sqlite:///{self.path}"

    def count(self, query: str) -> int:
        import sqlite3

        db = sqlite3.connect(self.path, timeout=30)
        try:
            return int(db.execute(query).fetchone()[0])
        finally:
            db.close()

    def baselines(self, seconds: float) -> dict[str, float]:
        return {"raw": raw_commits(self.base / "raw.db", seconds)}


class PgStore(Store):
    name = "postgres"

    def __init__(self, base_url: str, quick: bool) -> None:
        self.bench = PgBench(base_url, quick)
        self.url = with_schema(base_url, self.bench.schema)

    def count(self, query: str) -> int:
        with psycopg.connect(self.bench.base_url, autocommit=True) as conn:
            conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(self.bench.schema)))
            row = conn.execute(query).fetchone()  # type: ignore[arg-type]
            return int(row[0]) if row else 0

    def baselines(self, seconds: float) -> dict[str, float]:
        return {"raw1": self.bench.raw(1, seconds), "raw8": self.bench.raw(8, seconds)}

    def close(self) -> None:
        self.bench.close()


class Runner:
    def __init__(self, base: Path, workers: int, quick: bool) -> None:
        self.base = base
        self.workers = workers
        self.quick = quick
        self.program = base / "shared.flow"
        self.program.write_text(PROGRAM)
        self.functions = base / "shared_functions.py"
        self.functions.write_text(FUNCTIONS)

    def spawn(self, store: Store, n: int | None = None) -> list[WorkerProc]:
        procs = [WorkerProc(store.url, self.functions, self.base) for _ in range(n or self.workers)]
        for p in procs:
            p.wait_ready()
        return procs

    def run_one(self, client: Client, i: int, n: int) -> float:
        t0 = time.perf_counter()
        h = client.start(str(self.program), {"i": i, "n": n})
        got = h.result(timeout=60)
        took = time.perf_counter() - t0
        if got != expected(i, n):
            raise SystemExit(f"program {h.id} returned {got!r}, not {expected(i, n)}")
        return took

    def sequential(self, client: Client, reps: int) -> float:
        for k in range(3):  # warm: the program compiled and cached, executors busy once
            self.run_one(client, k, STEPS)
        l10: list[float] = []
        l0: list[float] = []
        for k in range(reps):
            l10.append(self.run_one(client, k, STEPS))
            l0.append(self.run_one(client, k, 0))
        return (statistics.median(l10) - statistics.median(l0)) * 1000 / STEPS

    def at_once(self, client: Client, programs: int) -> float:
        t0 = time.perf_counter()
        handles = [client.start(str(self.program), {"i": i, "n": STEPS}) for i in range(programs)]
        for i, h in enumerate(handles):
            got = h.result(timeout=120)
            if got != expected(i, STEPS):
                raise SystemExit(f"program {h.id} returned {got!r}, not {expected(i, STEPS)}")
        return programs * STEPS / (time.perf_counter() - t0)

    def killed(self, store: Store, client: Client, procs: list[WorkerProc], programs: int) -> tuple[float, float]:
        """(seconds from the fresh worker's spawn until all complete, its start-up until ready)."""
        done_before = store.count("SELECT count(*) FROM calls WHERE status = 'done'")
        handles = [client.start(str(self.program), {"i": i, "n": STEPS}) for i in range(programs)]
        half = done_before + programs * STEPS // 2
        end = time.monotonic() + 120
        while store.count("SELECT count(*) FROM calls WHERE status = 'done'") < half:
            if time.monotonic() > end:
                raise SystemExit("kill -9: half of the steps never finished")
            time.sleep(0.002)
        for p in procs:
            p.kill()
        fresh = WorkerProc(store.url, self.functions, self.base)
        procs[:] = [fresh]
        for i, h in enumerate(handles):
            got = h.result(timeout=120)
            if got != expected(i, STEPS):
                raise SystemExit(f"program {h.id} returned {got!r}, not {expected(i, STEPS)}")
        took = time.perf_counter() - fresh.spawned
        ready = fresh.wait_ready()
        if self.workers > 1:
            procs.extend(self.spawn(store, self.workers - 1))
        return took, ready

    def round(self, store: Store) -> dict[str, float]:
        quick = self.quick
        out = store.baselines(0.5 if quick else 1.5)
        procs = self.spawn(store)
        client = Client(store.url)
        try:
            out["seq_ms"] = self.sequential(client, 5 if quick else 15)
            out["par_steps_s"] = self.at_once(client, 30 if quick else PROGRAMS)
            out["kill_s"], out["kill_ready_s"] = self.killed(store, client, procs, 30 if quick else PROGRAMS)
        finally:
            client.close()
            for p in procs:
                p.stop()
        out.update({f"{k}_after": v for k, v in store.baselines(0.5 if quick else 1.5).items()})
        return out


def judge(name: str, f: dict[str, float]) -> list[tuple[str, str, str, bool | None]]:
    """Rows (figure, value, target, met) from one store's medians."""
    rows: list[tuple[str, str, str, bool | None]] = []
    seq, par = f["seq_ms"], f["par_steps_s"]
    after = f["kill_s"] - f["kill_ready_s"]
    if name == "sqlite":
        raw = (f["raw"] + f["raw_after"]) / 2
        rows.append(("raw SQLite WAL FULL single-row commits/s (mean of before/after)", f"{raw:,.0f}", "", None))
        rows.append(("sequential: ms per step", f"{seq:.2f}", "", None))
        r = (1000 / seq) / raw if seq > 0 else float("inf")
        rows.append(("  steps/s : raw commits/s", f"{r:.2f}", f">= {SQ_SEQ_RAW}", r >= SQ_SEQ_RAW))
        rows.append(("100 at once: steps/s", f"{par:,.0f}", "", None))
        r = par / raw
        rows.append(("  steps/s : raw commits/s", f"{r:.2f}", f">= {SQ_PAR_RAW}", r >= SQ_PAR_RAW))
    else:
        raw1 = (f["raw1"] + f["raw1_after"]) / 2
        raw8 = (f["raw8"] + f["raw8_after"]) / 2
        rows.append(("raw PostgreSQL INSERT+COMMIT/s, 1 connection (mean of before/after)", f"{raw1:,.0f}", "", None))
        rows.append(("raw PostgreSQL INSERT+COMMIT/s, 8 connections (mean of before/after)", f"{raw8:,.0f}", "", None))
        r = seq / (1000 / raw1)
        rows.append(("sequential: ms per step", f"{seq:.2f}", f"<= {PG_SEQ_MS}", seq <= PG_SEQ_MS))
        rows.append(("  ms per step : raw 1-connection commit latency", f"{r:.2f}", f"<= {PG_SEQ_RAW} (or the above)",
                     seq <= PG_SEQ_MS or r <= PG_SEQ_RAW))
        rows.append(("100 at once: steps/s", f"{par:,.0f}", "", None))
        r = par / raw8
        rows.append(("  steps/s : raw 8-connection commits/s", f"{r:.2f}", f">= {PG_PAR_RAW8}", r >= PG_PAR_RAW8))
    rows.append(("kill -9 of 100: s from the fresh worker's spawn until all complete", f"{f['kill_s']:.2f}", "", None))
    rows.append(("  of which its start-up until `worker started`", f"{f['kill_ready_s']:.2f}", "", None))
    rows.append(("  after it was ready", f"{after:.2f}", f"<= {RECOVERY_S}", after <= RECOVERY_S))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stores", default="sqlite,postgres", help="comma-separated: sqlite, postgres")
    ap.add_argument("--url", default=os.environ.get("FLOWMETAL_TEST_POSTGRES_URL",
                                                    "postgresql://postgres@127.0.0.1:5432/test"),
                    help="the PostgreSQL server (a fresh schema per round is created in its database, and dropped)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workers", type=int, default=1, help="worker processes")
    ap.add_argument("--quick", action="store_true", help="one round, 30 programs (a smoke run)")
    ap.add_argument("--dir", default=None, help="where the SQLite files go (default: a temporary directory)")
    ap.add_argument("--json", action="store_true", help="also print every round's figures as JSON")
    args = ap.parse_args()
    rounds = 1 if args.quick else args.rounds
    stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    for s in stores:
        if s not in ("sqlite", "postgres"):
            raise SystemExit(f"--stores: unknown store {s!r} (sqlite, postgres)")
    base = Path(tempfile.mkdtemp(prefix="fm-bench-shared-", dir=args.dir))
    runner = Runner(base, args.workers, args.quick)
    print(f"Python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.machine()}; "
          f"{args.workers} worker process(es); {rounds} round(s)", flush=True)
    load_before = os.getloadavg()[0]
    results: dict[str, list[dict[str, float]]] = {s: [] for s in stores}
    try:
        for r in range(rounds):
            for name in stores:
                store: Store = SqliteStore(base, r) if name == "sqlite" else PgStore(args.url, args.quick)
                try:
                    fig = runner.round(store)
                finally:
                    store.close()
                results[name].append(fig)
                print(f"round {r + 1} {name}: " + ", ".join(f"{k} {v:,.3g}" for k, v in fig.items()), flush=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(f"\nload average (1 min) before / after: {load_before:.2f} / {os.getloadavg()[0]:.2f} "
          f"on {os.cpu_count()} CPUs (other processes share the machine)")
    for name in stores:
        keys = results[name][0].keys()
        med = {k: statistics.median(x[k] for x in results[name]) for k in keys}
        spread = {k: (min(x[k] for x in results[name]), max(x[k] for x in results[name])) for k in keys}
        print(f"\n{name}, median of {rounds} round(s), {args.workers} worker process(es)\n")
        print("| figure | value | target | met? |\n|---|---:|---|---|")
        for figure, value, target, met in judge(name, med):
            mark = "" if met is None else ("yes" if met else "NO")
            print(f"| {figure} | {value} | {target} | {mark} |")
        print("\nrange over the rounds: " + ", ".join(f"{k} {lo:,.3g}-{hi:,.3g}" for k, (lo, hi) in spread.items()))
        if args.json:
            print(json.dumps(results[name]))


if __name__ == "__main__":
    main()
