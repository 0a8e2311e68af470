"""The durable runtime on SQLite, measured against raw SQLite commits in the same run (not a test).

    .venv/bin/python bench/bench_runtime.py                  # all scenarios, table on stdout
    .venv/bin/python bench/bench_runtime.py --markdown       # also a Markdown table
    .venv/bin/python bench/bench_runtime.py --quick          # smaller sizes (a smoke run)
    .venv/bin/python bench/bench_runtime.py --profile        # + cProfile of the in-process scenarios
    .venv/bin/python bench/bench_runtime.py --dir /some/disk # where the databases go (default: a temp dir)

Everything runs on one disk (every database is a file in one temp directory),
with the store's own settings: WAL, `synchronous=FULL`, `BEGIN IMMEDIATE`.

0. raw: a loop of `BEGIN IMMEDIATE; INSERT one row; COMMIT` — commits/s. This
   disk's fsync time drifts by 10x and more within minutes (a shared virtual
   disk), so every ratio divides by raw commits measured *between the rounds
   of that scenario* (bursts on a separate database file in the same
   directory, about as much time as the scenario's own rounds); standalone
   samples at the start and end only show the drift.
1. ping-pong: two programs exchange N round trips with send/receive; every
   message is committed before the peer can see it. A hop is one message
   delivered (2 per round trip). One in-process Worker, concurrency 1 and 16.
2. 50 pairs at once, one Worker with concurrency 100 (group commit).
3. resume: a program with ~100 vs ~10,000 events of history waiting on
   `receive()`; after a `send`, the time for a fresh Runtime (fresh store
   connection, cold program cache) to load it and run the next slice
   (`run_slice`, no fsync; best of 3 per send, median over sends), the same
   with the program already compiled, and the whole worker round (claim +
   slice + commit). The two programs alternate so they share the noise.
4. wake-up latency: a `flowmetal worker` in another process; the program
   records `now()` as the first thing after `receive()` (the slice's start
   time, taken after claim and load). latency = that time - the time just
   before `store.send` (the client's send = `store.send` + notifier notify).
5. crash recovery: 100 programs that `sleep(0.1)` then finish; a `flowmetal
   worker` process is killed with SIGKILL mid-way (>= 30% done and programs
   claimed by it, i.e. inside a round); the time from starting a
   new worker process to all 100 completed (process start included), and
   each history checked for exactly-once (one timer_fired, one completed,
   contiguous event numbers). Worker processes get a bytecode cache (in the
   temp dir) as an installed package would; their start-up time with and
   without `.pyc` files is reported separately.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import os
import platform
import pstats
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import WAKE, Row, markdown, pct, print_table
from flowmetal.runtime.driver import Runtime
from flowmetal.runtime.worker import Worker
from flowmetal.store import open_store

PING_PONG = """\
from flowmetal import send, receive


def main(peer, n=1000, first=False):
    if first:
        for i in range(n):
            send(peer, i)
            receive()
    else:
        for i in range(n):
            send(peer, receive())
    return n
"""

HISTORY = """\
from flowmetal import now, receive


def main(n=50):
    x = 0.0
    for i in range(n):
        x = now()
    while True:
        m = receive()
        if m == "stop":
            return n
"""

NAP = """\
from flowmetal import sleep


def main(i=0):
    sleep(0.1)
    return i
"""

# targets
PINGPONG_RATIO = 0.5
PAIRS_RATIO = 1.5
RESUME_SPREAD = 0.20
WAKE_MEDIAN_MS = 5.0
RECOVERY_S = 0.5


class RawProbe:
    """The plainest durable write — one row per `BEGIN IMMEDIATE; INSERT; COMMIT`, WAL,
    synchronous=FULL — on its own database file in the same directory. Scenarios call it between
    their own rounds, so the baseline is measured in the same seconds as the figure it divides."""

    def __init__(self, path: str) -> None:
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, program_id TEXT, data TEXT, at REAL)")
        self.n = 0
        self.elapsed = 0.0
        self.times: list[float] = []
        for _ in range(10):  # warm up, not counted
            self._one()

    def _one(self) -> float:
        t0 = time.perf_counter()
        self.db.execute("BEGIN IMMEDIATE")
        self.db.execute("INSERT INTO t (program_id, data, at) VALUES (?, ?, ?)",
                        ("p", f'{{"v":1,"request":{self.n},"message":{self.n}}}', time.time()))
        self.db.execute("COMMIT")
        return time.perf_counter() - t0

    def commits(self, k: int) -> None:
        for _ in range(k):
            dt = self._one()
            self.n += 1
            self.elapsed += dt
            self.times.append(dt)

    @property
    def rate(self) -> float:
        return self.n / self.elapsed if self.elapsed else float("nan")

    def close(self) -> None:
        self.db.close()


class Bench:
    def __init__(self, root: Path, quick: bool, profile: bool) -> None:
        self.root = root
        self.quick = quick
        self.profile = profile
        self.raw_samples: list[float] = []
        self.rows: list[Row] = []
        self.notes: list[str] = []
        self.profiles: list[tuple[str, str]] = []
        self._n = 0

    # -- helpers ---------------------------------------------------------------------
    def fresh_db(self, name: str) -> tuple[str, str]:
        self._n += 1
        path = self.root / f"{self._n:02d}-{name}.db"
        return str(path), f"sqlite:///{path}"  # path is absolute: sqlite:////tmp/...

    def raw(self, commits: int) -> float:
        """A standalone sample of the raw commit rate (shows how the disk's fsync time drifts)."""
        probe = RawProbe(self.fresh_db("raw")[0])
        probe.commits(commits)
        probe.close()
        self.raw_samples.append(probe.rate)
        return probe.rate

    def profiled(self, label: str, fn: Callable[[], Any]) -> Any:
        if not self.profile:
            return fn()
        prof = cProfile.Profile()
        result = prof.runcall(fn)
        out = io.StringIO()
        st = pstats.Stats(prof, stream=out)
        st.sort_stats("tottime").print_stats(18)
        st.sort_stats("cumulative").print_stats(30)
        self.profiles.append((label, out.getvalue()))
        return result

    # -- 1 and 2: ping-pong ------------------------------------------------------------------
    def pairs(self, pairs: int, round_trips: int, concurrency: int) -> dict[str, Any]:
        """`pairs` ping-pong pairs in one Worker; raw commits interleaved between its rounds."""
        _, url = self.fresh_db(f"pingpong-{pairs}x{concurrency}")
        store = open_store(url)
        rt = Runtime(store, reuse_machines=True)  # as `flowmetal worker` runs
        ids = []
        for p in range(pairs):
            a, b = f"a{p}", f"b{p}"
            rt.start("pingpong.flow", {"peer": a, "n": round_trips}, program_id=b, source=PING_PONG)
            rt.start("pingpong.flow", {"peer": b, "n": round_trips, "first": True}, program_id=a, source=PING_PONG)
            ids += [a, b]
        w = Worker(rt, concurrency=concurrency)
        probe = RawProbe(self.fresh_db("raw-interleaved")[0])
        # about as much time on raw commits as on rounds: a round is ~1 hop with one pair, ~pairs hops with many
        every, burst = (10, 10) if pairs == 1 else (1, 10)
        elapsed = 0.0

        def drive() -> None:
            nonlocal elapsed
            steps = 0
            while True:
                t0 = time.perf_counter()
                did = w.step()
                elapsed += time.perf_counter() - t0
                if not did:
                    return
                steps += 1
                if steps % every == 0:
                    probe.commits(burst)

        self.profiled(f"{pairs} pair(s), concurrency {concurrency}", drive)
        probe.close()
        for pid in ids:
            row = store.get_program(pid)
            if row.status != "completed" or row.result != round_trips:
                raise SystemExit(f"ping-pong: {pid} ended {row.status} {row.result!r} {row.error}")
        if w.stats.errors:
            raise SystemExit("".join(w.stats.errors))
        store.close()
        hops = 2 * round_trips * pairs
        self.raw_samples.append(probe.rate)
        return {"hops_s": hops / elapsed, "elapsed": elapsed, "txns": w.stats.commits, "raw": probe.rate,
                "ratio": hops / elapsed / probe.rate, "slices_per_txn": w.stats.slices / max(1, w.stats.commits)}

    # -- 3: resume cost vs history length ---------------------------------------------------------
    def resume(self, sizes: tuple[int, ...], reps: int) -> dict[int, dict[str, Any]]:
        """Per number of `now()` calls: events, checkpoint bytes, and per-rep times (ms) of
        `cold` (fresh Runtime: compile + load + run the slice), `warm` (program already compiled:
        load + run) and `round` (a whole worker round: claim + load + run + commit)."""
        setups: dict[int, dict[str, Any]] = {}
        for n in sizes:
            _, url = self.fresh_db(f"history-{n}")
            store = open_store(url)
            rt = Runtime(store)
            pid = rt.start("history.flow", {"n": n}, program_id="h", source=HISTORY)
            w = Worker(rt, concurrency=1, notify=False)
            while w.step():
                pass
            ck = store.checkpoint(pid)
            setups[n] = {"url": url, "pid": pid, "events": store.get_program(pid).last_seq,
                         "checkpoint": len(ck[1]) if ck else 0, "cold": [], "warm": [], "round": [],
                         "warm_rt": Runtime(open_store(url))}
            store.close()
        for i in range(reps):
            for n in (sizes if i % 2 == 0 else tuple(reversed(sizes))):  # alternate: share the noise
                s = setups[n]
                url, pid = s["url"], s["pid"]
                store = open_store(url)
                store.send(pid, "inbox", i, time.time())
                store.close()
                fresh = open_store(url)  # a new connection: nothing cached but the OS page cache
                fresh.get_program(pid)
                claim = fresh.claim("bench", os.getpid(), "bench-host", 10.0, time.time(), 1)[0]
                # nothing is committed, so the same slice can be run again: best of k per rep
                # (damps other processes' noise), then the median over reps
                best = float("inf")
                for _ in range(3):
                    t0 = time.perf_counter()
                    res = Runtime(fresh).run_slice(claim)
                    best = min(best, (time.perf_counter() - t0) * 1000)
                    assert res.commit is not None and res.commit.consumed
                s["cold"].append(best)
                warm_rt = s["warm_rt"]
                best = float("inf")
                for _ in range(5):
                    t0 = time.perf_counter()
                    res = warm_rt.run_slice(claim)
                    best = min(best, (time.perf_counter() - t0) * 1000)
                    assert res.commit is not None and res.commit.consumed
                s["warm"].append(best)
                fresh.release("bench", pid, claim.fence)
                fresh.make_runnable(pid, time.time())  # the claim cleared `runnable`
                fresh.close()
                t0 = time.perf_counter()
                w = Worker(warm_rt, concurrency=1, notify=False)
                did = w.step()
                s["round"].append((time.perf_counter() - t0) * 1000)
                row = warm_rt.store.get_program(pid)
                assert did and w.stats.commits == 1 and row.status == "waiting", (did, w.stats, row.status)
        for s in setups.values():
            store = open_store(s["url"])
            store.send(s["pid"], "inbox", "stop", time.time())
            Worker(Runtime(store), concurrency=1, notify=False).step()
            assert store.get_program(s["pid"]).status == "completed"
            store.close()
            s["warm_rt"].store.close()
        return setups

    # -- 4: wake-up latency across processes --------------------------------------------------------
    def child_env(self, bytecode: bool = True) -> dict[str, str]:
        """Worker processes get a bytecode cache (in the temp dir) like any installed package has,
        even when this environment sets PYTHONDONTWRITEBYTECODE."""
        env = dict(os.environ)
        if bytecode:
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = str(self.root / "pycache")
        else:
            env["PYTHONDONTWRITEBYTECODE"] = "1"
            env.pop("PYTHONPYCACHEPREFIX", None)
        return env

    def worker_process(self, url: str, concurrency: int = 16, bytecode: bool = True) -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "flowmetal", "worker", "--store", url,
                                 "--concurrency", str(concurrency)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=self.child_env(bytecode))

    def startup(self, reps: int) -> tuple[float, float]:
        """Median s from spawning `flowmetal worker` to it listening, with and without .pyc files."""
        _, url = self.fresh_db("startup")
        open_store(url).close()
        times: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(reps):
            for bytecode in (True, False):
                proc = self.worker_process(url, bytecode=bytecode)
                try:
                    times[bytecode].append(self.wait_listening(url, proc))
                finally:
                    self.stop(proc)
        return statistics.median(times[True]), statistics.median(times[False])

    def wait_listening(self, url: str, proc: subprocess.Popen[bytes], timeout: float = 10.0) -> float:
        """Seconds until the worker process has bound its notifier socket (it is then in its loop)."""
        wake = Path(url[len("sqlite:///"):].partition("?")[0] + ".wake")  # the SQLite store's wake-up sockets
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < timeout:
            if wake.is_dir() and any(wake.glob(f"{proc.pid}-*.sock")):
                return time.perf_counter() - t0
            if proc.poll() is not None:
                raise SystemExit(f"worker exited: {proc.stderr.read().decode() if proc.stderr else ''}")
            time.sleep(0.001)
        raise SystemExit("worker did not start listening")

    @staticmethod
    def stop(proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def wake_latency(self, sends: int) -> tuple[list[float], list[float], list[float], list[float]]:
        """Per send, ms: from just before store.send to the program running again; from after
        send+notify returned to it; the send+notify call itself; raw commits between the sends."""
        _, url = self.fresh_db("wake")
        store = open_store(url)
        rt = Runtime(store)
        pid = rt.start("wake.flow", {"n": sends}, program_id="w", source=WAKE)
        probe = RawProbe(self.fresh_db("raw-interleaved")[0])
        proc = self.worker_process(url)
        try:
            self.wait_listening(url, proc)
            self._wait_until(lambda: store.get_program(pid).status == "waiting", 10.0)
            before, after = [], []
            for i in range(sends):
                seq = store.get_program(pid).last_seq
                probe.commits(2)  # the disk's commit time in the same seconds
                time.sleep(0.005)  # let the worker go idle on its notifier
                t0 = time.time()
                store.send(pid, "inbox", i, t0)
                store.notify()
                t1 = time.time()
                before.append(t0)
                after.append(t1)
                self._wait_until(lambda s=seq: store.get_program(pid).last_seq > s, 10.0, pause=0.0005)
            self._wait_until(lambda: store.get_program(pid).status == "completed", 10.0)
            woke = store.get_program(pid).result
        finally:
            self.stop(proc)
            store.close()
            probe.close()
        self.raw_samples.append(probe.rate)
        return ([(w - t) * 1000 for w, t in zip(woke, before, strict=True)],
                [(w - t) * 1000 for w, t in zip(woke, after, strict=True)],
                [(a - b) * 1000 for a, b in zip(after, before, strict=True)],
                [t * 1000 for t in probe.times])

    @staticmethod
    def _wait_until(cond: Callable[[], bool], timeout: float, pause: float = 0.002) -> None:
        end = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > end:
                raise SystemExit("timed out waiting")
            time.sleep(pause)

    # -- 5: recovery after kill -9 ---------------------------------------------------------------------
    def recovery(self, programs: int) -> dict[str, Any]:
        path, url = self.fresh_db("recovery")
        store = open_store(url)
        rt = Runtime(store)
        ids = [rt.start("nap.flow", {"i": i}, program_id=f"n{i:03d}", source=NAP) for i in range(programs)]
        watch = sqlite3.connect(path, isolation_level=None)

        def count(sql: str) -> int:
            return int(watch.execute(sql).fetchone()[0])

        done_sql = "SELECT COUNT(*) FROM programs WHERE status = 'completed'"
        first = self.worker_process(url)
        deadline = time.monotonic() + 30
        leased_sql = "SELECT COUNT(*) FROM programs WHERE lease_owner IS NOT NULL"
        # kill it mid-way *inside* a round: some programs done, some claimed by it (in doubt)
        while ((count(done_sql) < programs * 0.3 or count(leased_sql) == 0) and count(done_sql) < programs
               and time.monotonic() < deadline):
            time.sleep(0.0005)
        first.send_signal(signal.SIGKILL)
        first.wait()
        done_at_kill = count(done_sql)
        leased_at_kill = count(leased_sql)
        first_slice_done = count("SELECT COUNT(*) FROM programs WHERE last_seq > 1")
        t0 = time.perf_counter()
        second = self.worker_process(url)
        try:
            listening = self.wait_listening(url, second)
            while count(done_sql) < programs:
                if time.perf_counter() - t0 > 60:
                    raise SystemExit("recovery: programs did not finish")
                time.sleep(0.001)
            total = time.perf_counter() - t0
        finally:
            self.stop(second)
        watch.close()
        # exactly once: one timer_fired, one completed, contiguous sequence numbers, right result
        bad = []
        for i, pid in enumerate(ids):
            evs = store.events(pid)
            kinds = [e.type for e in evs]
            if ([e.seq for e in evs] != list(range(1, len(evs) + 1)) or kinds.count("timer_fired") != 1
                    or kinds.count("completed") != 1 or store.get_program(pid).result != i):
                bad.append(pid)
        store.close()
        return {"total": total, "listening": listening, "done_at_kill": done_at_kill,
                "leased_at_kill": leased_at_kill, "first_slice_done": first_slice_done, "bad": bad}

    # -- the run ----------------------------------------------------------------------------------------
    def run(self) -> None:
        q = self.quick
        raw_n = 200 if q else 500
        rt_n = 200 if q else 1000
        pair_rt = 20 if q else 100
        reps = 7 if q else 25
        sends = 50 if q else 200
        print(f"databases in {self.root}", flush=True)
        subprocess.run([sys.executable, "-c", "import flowmetal.cli, flowmetal.runtime.worker"], check=True,
                       env=self.child_env(True))  # fill the worker processes' bytecode cache

        r = self.raw(raw_n)
        print(f"raw commits/s (standalone): {r:,.0f}", flush=True)
        pp: dict[str, dict[str, Any]] = {}
        for key, (pairs, trips, conc) in {"c1": (1, rt_n, 1), "c16": (1, rt_n, 16),
                                          "pairs": (50, pair_rt, 100)}.items():
            m = pp[key] = self.pairs(pairs, trips, conc)
            print(f"{pairs} pair(s) x {trips} round trips, concurrency {conc}: {m['hops_s']:,.0f} hops/s "
                  f"({m['elapsed']:.2f} s, {m['txns']} commit txns, {m['slices_per_txn']:.1f} slices/txn); "
                  f"raw between rounds {m['raw']:,.0f} commits/s; ratio {m['ratio']:.2f}", flush=True)

        res = self.resume((50, 5000), reps)
        small, large = ({k: (statistics.median(v) if isinstance(v, list) else v) for k, v in res[n].items()}
                        for n in (50, 5000))
        for label, m in (("small", small), ("large", large)):
            print(f"resume {label}: {m['events']} events, cold run_slice {m['cold']:.2f} ms, warm "
                  f"{m['warm']:.2f} ms, round {m['round']:.2f} ms, checkpoint {m['checkpoint']} B", flush=True)

        lat, lat_after, send_ms, raw_ms = self.wake_latency(sends)
        print(f"wake-up: median {statistics.median(lat):.2f} ms, p95 {pct(lat, 95):.2f} ms "
              f"(after send returned: median {statistics.median(lat_after):.2f} ms; "
              f"send+notify {statistics.median(send_ms):.2f} ms; raw commit {statistics.median(raw_ms):.2f} ms)",
              flush=True)

        start_pyc, start_nopyc = self.startup(3 if q else 5)
        print(f"worker start -> listening: {start_pyc:.3f} s with .pyc, {start_nopyc:.3f} s without", flush=True)
        rec = self.recovery(100)
        print(f"recovery: {rec}", flush=True)
        r = self.raw(raw_n)
        print(f"raw commits/s (standalone): {r:,.0f}", flush=True)

        lo, hi = min(self.raw_samples), max(self.raw_samples)
        resume_spread = large["cold"] / small["cold"] - 1
        warm_spread = large["warm"] / small["warm"] - 1
        self.rows = [
            Row(f"raw SQLite commits/s, all {len(self.raw_samples)} samples of the run: min-max",
                f"{lo:,.0f}-{hi:,.0f}"),
        ]
        for key, label in (("c1", f"ping-pong, 1 pair x {rt_n} round trips, concurrency 1"),
                           ("c16", f"ping-pong, 1 pair x {rt_n} round trips, concurrency 16"),
                           ("pairs", f"50 pairs x {pair_rt} round trips, concurrency 100")):
            m = pp[key]
            target = PAIRS_RATIO if key == "pairs" else PINGPONG_RATIO
            extra = f" ({m['slices_per_txn']:.0f} slices per commit)" if key == "pairs" else ""
            self.rows += [
                Row(f"{label}: hops/s{extra}", f"{m['hops_s']:,.0f}"),
                Row("  raw commits/s measured between its rounds", f"{m['raw']:,.0f}"),
                Row("  ratio hops/s : raw commits/s", f"{m['ratio']:.2f}", f">= {target}", m["ratio"] >= target),
            ]
        self.rows += [
            Row(f"resume after send, {small['events']} events: fresh Runtime loads + runs the slice, ms "
                f"(median of {reps} best-of-3)", f"{small['cold']:.2f}"),
            Row(f"resume after send, {large['events']} events: fresh Runtime loads + runs the slice, ms",
                f"{large['cold']:.2f}"),
            Row("  large vs small", f"{resume_spread:+.0%}", f"within {RESUME_SPREAD:.0%}",
                abs(resume_spread) <= RESUME_SPREAD),
            Row(f"  program already compiled (load + run only, best-of-5), {small['events']} / {large['events']} events, ms",
                f"{small['warm']:.2f} / {large['warm']:.2f}", f"within {RESUME_SPREAD:.0%}",
                abs(warm_spread) <= RESUME_SPREAD),
            Row(f"  whole worker round (claim + slice + commit), {small['events']} / {large['events']} events, ms",
                f"{small['round']:.1f} / {large['round']:.1f}"),
            Row(f"  checkpoint size, {small['events']} / {large['events']} events, bytes",
                f"{small['checkpoint']} / {large['checkpoint']}"),
            Row(f"wake-up latency, worker in another process, {sends} sends: median ms",
                f"{statistics.median(lat):.2f}", f"<= {WAKE_MEDIAN_MS:g}",
                statistics.median(lat) <= WAKE_MEDIAN_MS),
            Row("  p95 ms", f"{pct(lat, 95):.2f}"),
            Row("  median ms from after send+notify returned", f"{statistics.median(lat_after):.2f}"),
            Row("  median ms of the send + notify call itself", f"{statistics.median(send_ms):.2f}"),
            Row("  median ms of a raw commit, measured between the sends", f"{statistics.median(raw_ms):.2f}"),
            Row(f"kill -9 mid-way ({rec['done_at_kill']} done, {rec['leased_at_kill']} leased by the dead worker): "
                "new worker start -> all 100 completed, s", f"{rec['total']:.3f}", f"<= {RECOVERY_S}",
                rec["total"] <= RECOVERY_S),
            Row("  of which process start until the worker listens, s", f"{rec['listening']:.3f}"),
            Row("  worker start -> listening, idle store, with / without .pyc files, s",
                f"{start_pyc:.3f} / {start_nopyc:.3f}"),
            Row("  histories exactly-once", "yes" if not rec["bad"] else f"NO: {rec['bad'][:5]}", "all", not rec["bad"]),
        ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", help="directory for the databases (default: a new temp dir, removed afterwards)")
    ap.add_argument("--quick", action="store_true", help="smaller sizes")
    ap.add_argument("--markdown", action="store_true", help="also print a Markdown table")
    ap.add_argument("--profile", action="store_true", help="cProfile the in-process scenarios (slower)")
    args = ap.parse_args()

    if args.dir:
        root = Path(args.dir).resolve()
        root.mkdir(parents=True, exist_ok=True)
        root = Path(tempfile.mkdtemp(prefix="flowmetal-bench-", dir=root))
    else:
        root = Path(tempfile.mkdtemp(prefix="flowmetal-bench-"))
    print(f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, {os.cpu_count()} CPUs, "
          f"{platform.machine()}")
    bench = Bench(root, args.quick, args.profile)
    load_before = os.getloadavg()[0]
    try:
        bench.run()
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(root)
    print(f"\nload average (1 min) before / after: {load_before:.2f} / {os.getloadavg()[0]:.2f} "
          f"on {os.cpu_count()} CPUs (other processes share the machine and the disk)")
    print_table(bench.rows)
    if args.markdown:
        print()
        print(markdown(bench.rows))
    for label, text in bench.profiles:
        print(f"\n=== profile: {label} ===\n{text}")


if __name__ == "__main__":
    main()
