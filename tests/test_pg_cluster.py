"""A cluster on one store: 4 `flowmetal worker` processes (each also serving the
foreign functions, `--functions`), a separate `flowmetal functions --lease 1`
process and `flowmetal serve --no-worker` for the HTTP callbacks, running 200
programs (tests/flows/cluster_job.flow: a timer, foreign calls, a message from
outside, an HTTP callback, output between the steps) on PostgreSQL — and two of
the workers killed with `kill -9` at random moments, preferably while they are
performing a call.

Every program must complete with the right result; its history must be gap-free;
no effect may be requested twice; each call's result and each callback's request
must be recorded once (the second POST to a callback URL gets 409); its output
must be exactly what an uninterrupted run prints. A smaller SQLite variant runs
the same checks.

The harness (`Cluster`, `Driver`, `check_program`) is shared with
test_pg_restart.py.
"""

from __future__ import annotations

import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import drop_schema, pg_url
from flowmetal.lang.program import compile_cached
from flowmetal.store import open_store
from flowmetal.store.base import FINISHED, NewProgram, Store, StoreUnavailable

HERE = Path(__file__).parent
JOB = HERE / "flows" / "cluster_job.flow"
FUNCTIONS = HERE / "workers" / "cluster_functions.py"
DELAY = 0.05  # each program's timers
CALL_TIMEOUT = 3  # bounds each call attempt: a killed worker's calls are retried after it
STARTUP = 5.0  # seconds a `flowmetal` process is given to start before a SIGTERM
PG_PARAMS = {"pool_size": "4"}  # ~10 processes share the server's connections with other test runs


# -- what a program must end with --------------------------------------------------------------

def message_for(n: int) -> dict[str, Any]:
    return {"from": "outside", "n": n}


def body_for(n: int) -> dict[str, Any]:
    return {"k": n % 7 + 2, "n": n}


def expected(n: int, url: str) -> tuple[dict[str, Any], str]:
    a = n + 1000
    body = body_for(n)
    b = a * body["k"]
    result = {"n": n, "a": a, "b": b, "message": message_for(n), "body": body}
    lines = [f"job {n} start", f"job {n} add {a}", f"job {n} callback {url}", f"job {n} got {message_for(n)}",
             f"job {n} callback body {body}", f"job {n} mul {b}"]
    return result, "".join(line + "\n" for line in lines)


# what each program asks for, once each
REQUESTS = Counter({"sleep": 2, "call": 2, "callback": 1, "receive": 1, "callback_wait": 1})


def check_program(store: Store, pid: str, n: int, posts: list[int]) -> list[str]:
    """Every way the program's record differs from one exactly-once run ([] if none)."""
    problems: list[str] = []

    def expect(ok: bool, check: str, detail: str = "") -> None:
        if not ok:
            problems.append(f"{pid}: {check}" + (f": {detail}" if detail else ""))

    row = store.get_program(pid)
    if row.status != "completed":
        return [f"{pid}: not completed: {row.status} ({row.error})"]
    events = store.events(pid)
    expect([e.seq for e in events] == list(range(1, len(events) + 1)), "gap-free history", str([e.seq for e in events]))
    expect(row.last_seq == len(events), "last_seq", f"{row.last_seq} != {len(events)} events")
    expect(events[0].type == "started" and events[-1].type == "completed", "starts and ends", f"{events[0].type} ... {events[-1].type}")
    requested = [e for e in events if e.type == "effect_requested"]
    keys = Counter(e.data["key"] for e in requested)
    expect(max(keys.values()) == 1, "effect requested once", str([k for k, c in keys.items() if c > 1]))
    requests = Counter(e.data["request"] for e in requested)
    expect(max(requests.values()) == 1, "request numbered once", str([r for r, c in requests.items() if c > 1]))
    kinds = Counter(e.data["kind"] for e in requested)
    expect(kinds == REQUESTS, "effects requested", f"{dict(kinds)}, expected {dict(REQUESTS)}")
    answered = Counter(e.data["request"] for e in events
                       if e.type in ("effect_completed", "effect_failed", "timer_fired", "message_received"))
    expect(set(answered) == set(requests) and max(answered.values()) == 1,
           "one answer per request", f"{dict(answered)} for requests {sorted(requests)}")
    failed = [e.data for e in events if e.type == "effect_failed"]
    expect(not failed, "no effect failed", str(failed))
    types = Counter(e.type for e in events)
    expect(types["completed"] == 1 and types["message_received"] == 1, "event types", str(dict(types)))
    # the callback URL the program was given (recorded when issued), hence its expected output
    kind_of = {e.data["request"]: e.data["kind"] for e in requested}
    urls = [e.data["result"]["url"] for e in events
            if e.type == "effect_completed" and kind_of.get(e.data["request"]) == "callback"]
    expect(len(urls) == 1, "one callback URL", str(urls))
    if urls:
        want_result, want_output = expected(n, urls[0])
        expect(row.result == want_result, "result", f"{row.result!r}, expected {want_result!r}")
        output = "".join(e.data["text"] for e in events if e.type == "output")
        expect(output == want_output, "output", f"{output!r}, expected {want_output!r}")
    # each foreign call's result recorded once, and it is the call's outcome in the store
    call_keys = [e.data["key"] for e in requested if e.data["kind"] == "call"]
    calls = store.list_calls(pid)
    expect(sorted(c.key for c in calls) == sorted(call_keys), "calls in the store", f"{[c.key for c in calls]} for {call_keys}")
    expect(all(c.status == "done" for c in calls), "calls done", str([(c.key, c.status) for c in calls]))
    completed = Counter(e.data["request"] for e in events if e.type == "effect_completed"
                        and kind_of.get(e.data["request"]) in ("call", "callback_wait"))
    expect(sorted(completed.values()) == [1, 1, 1], "each call/callback result recorded once", str(dict(completed)))
    # the callback took one delivery: 202, then 409 (or 410 if the program had ended by then)
    expect(posts in ([202, 409], [202, 410]), "callback POSTs answered 202 then 409 or 410", str(posts))
    expect(store.inbox(pid) == [], "inbox emptied", str(store.inbox(pid)))
    return problems


def assert_clean_end(problems: list[str], codes: dict[int, int | None], cluster: Cluster) -> None:
    """No program went wrong, every process stopped cleanly on SIGTERM, none logged a traceback."""
    assert not problems, summarize(problems)
    bad_exits = {pid: code for pid, code in codes.items() if code != 0}
    assert not bad_exits, f"processes did not stop cleanly on SIGTERM: {bad_exits}\n{cluster.logs()}"
    assert not cluster.tracebacks(), "\n".join(cluster.tracebacks())


def summarize(problems: list[str], show: int = 40) -> str:
    """How many programs/calls failed each check, then the first problems in full."""
    checks = Counter(p.split(": ")[1] for p in problems)
    lines = [f"{len(problems)} problems; failed checks: {dict(checks)}", *problems[:show]]
    if len(problems) > show:
        lines.append(f"... and {len(problems) - show} more")
    return "\n".join(lines)


# -- the processes -------------------------------------------------------------------------------

class Cluster:
    """The `flowmetal` processes of one test: started here, only ever stopped or killed here."""

    def __init__(self, url: str, tmp: Path) -> None:
        self.url = url
        self.tmp = tmp
        self.ledger = tmp / "ledger.txt"
        self.env = {k: v for k, v in os.environ.items() if k not in ("FLOWMETAL_STORE", "FLOWMETAL_PUBLIC_URL")}
        self.env["FLOWMETAL_TEST_LEDGER"] = str(self.ledger)
        self.procs: dict[int, tuple[str, subprocess.Popen[bytes], Path]] = {}  # every one ever started
        self.born: dict[int, float] = {}
        self.workers: list[subprocess.Popen[bytes]] = []  # live interpreters
        self.public_url = ""
        self.serve_proc: subprocess.Popen[bytes] | None = None

    def _spawn(self, role: str, *args: str) -> subprocess.Popen[bytes]:
        log = self.tmp / f"{role}-{len(self.procs)}.log"
        with open(log, "wb") as out:
            p = subprocess.Popen([sys.executable, "-m", "flowmetal", *args, "--store", self.url], cwd=self.tmp,
                                 env=self.env, stdout=out, stderr=subprocess.STDOUT)
        self.procs[p.pid] = (role, p, log)
        self.born[p.pid] = time.monotonic()
        return p

    def serve(self, timeout: float = 20) -> str:
        """`flowmetal serve --no-worker` on a free loopback port; its base URL."""
        p = self._spawn("serve", "serve", "--no-worker", "--port", "0")
        self.serve_proc = p
        log = self.procs[p.pid][2]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in log.read_text(errors="replace").splitlines():
                if line.startswith("flowmetal: serving on "):
                    self.public_url = line.split()[3]
                    return self.public_url
            assert p.poll() is None, f"flowmetal serve exited {p.returncode}:\n{self.tail(p.pid)}"
            time.sleep(0.05)
        raise AssertionError(f"flowmetal serve did not start in {timeout} s:\n{self.tail(p.pid)}")

    def spawn_worker(self) -> subprocess.Popen[bytes]:
        assert self.public_url, "serve() first: the workers build callback URLs from its address"
        p = self._spawn("worker", "worker", "--concurrency", "8", "--functions", str(FUNCTIONS), "--no-http",
                        "--public-url", self.public_url)
        self.workers.append(p)
        return p

    def spawn_functions(self) -> subprocess.Popen[bytes]:
        return self._spawn("functions", "functions", str(FUNCTIONS), "--lease", "1", "--concurrency", "4")

    def kill(self, victim: subprocess.Popen[bytes]) -> None:
        victim.send_signal(signal.SIGKILL)
        victim.wait()  # reaped: its pid is gone from this machine
        self.workers.remove(victim)

    def in_flight(self, pid: int) -> set[str]:
        """Keys of the calls the process `pid` has started and not finished (per the ledger)."""
        open_calls: set[str] = set()
        for line in self.ledger.read_text().splitlines() if self.ledger.exists() else []:
            parts = line.split()
            if len(parts) != 4 or int(parts[3]) != pid:
                continue
            (open_calls.add if parts[0] == "start" else open_calls.discard)(parts[1])
        return open_calls

    def starts(self) -> list[tuple[str, int]]:
        """(key, attempt) of every call attempt that began, per the ledger."""
        lines = self.ledger.read_text().splitlines() if self.ledger.exists() else []
        return [(line.split()[1], int(line.split()[2])) for line in lines if line.startswith("start ")]

    def attempts(self) -> Counter[str]:
        return Counter(key for key, _ in self.starts())

    def tail(self, pid: int, lines: int = 30) -> str:
        role, _, log = self.procs[pid]
        text = log.read_text(errors="replace").splitlines()[-lines:] if log.exists() else []
        return f"--- {role} {pid} ({log.name}) ---\n" + "\n".join(text)

    def logs(self) -> str:
        return "\n".join(self.tail(pid) for pid in self.procs)

    def stop_all(self) -> dict[int, int | None]:
        """SIGTERM every process still running; their exit codes (None: had to be killed)."""
        live = [(pid, p) for pid, (_, p, _) in self.procs.items() if p.poll() is None]
        # a process that is still importing has no SIGTERM handler yet (and would die of it)
        youngest = max((self.born[pid] for pid, _ in live), default=0.0)
        time.sleep(max(0.0, youngest + STARTUP - time.monotonic()))
        for _, p in live:
            p.send_signal(signal.SIGTERM)
        codes: dict[int, int | None] = {}
        for pid, p in live:
            try:
                codes[pid] = p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                codes[pid] = None
        self.workers.clear()
        return codes

    def tracebacks(self) -> list[str]:
        """Processes whose logs hold a Python traceback (a crash or a slice that failed)."""
        return [self.tail(pid, 60) for pid, (_, _, log) in self.procs.items()
                if log.exists() and "Traceback" in log.read_text(errors="replace")]


# -- the outside world: messages and callback requests ------------------------------------------

@dataclass
class Job:
    n: int
    seen: int = 0  # events read so far
    url: str | None = None
    messaged: bool = False
    message_first: bool = False  # send the message before POSTing to the callback
    posting: Future[None] | None = None
    posts: list[int] = field(default_factory=list)  # the answers to the POSTs to its callback URL
    status: str = "running"
    release: float = 0.0  # seconds after the first program asks for its callback: no answer sooner


class Driver:
    """Plays the outside for every program: sends its message, POSTs to its callback URL
    (twice: 202, then 409; on a few threads, as many clients would) once the program has printed
    it, and tracks who finished. Only the calling thread uses the store."""

    def __init__(self, store: Store, jobs: dict[str, Job]) -> None:
        self.store = store
        self.jobs = jobs
        self.http = httpx.Client(timeout=10)
        self.posters = ThreadPoolExecutor(4, thread_name_prefix="post")
        self.retried_posts = 0
        self.began: float | None = None  # when the first program asked for its callback

    @classmethod
    def start(cls, store: Store, count: int, seed: int, spread: float) -> Driver:
        """Start `count` programs; the outside answers each at a random moment in the first
        `spread` seconds after the first asks for its callback, so programs finish all along
        the run (not in one burst once the workers are up)."""
        rng = random.Random(seed)
        # what Runtime.start does, with the program compiled once: start() compiles it every
        # time (~0.15 s here), which would make starting 200 programs half the test
        source = JOB.read_text()
        program = compile_cached(source, str(JOB))
        jobs: dict[str, Job] = {}
        for n in range(count):
            pid = f"job{n:03d}"
            args = {"n": n, "delay": DELAY, "timeout": CALL_TIMEOUT}
            store.create_program(NewProgram(pid, str(JOB), source, program.source_hash, args), time.time())
            jobs[pid] = Job(n, message_first=rng.random() < 0.5, release=rng.uniform(0, spread))
        store.notify()
        driver = cls(store, jobs)
        for pid, job in jobs.items():  # a third of the messages wait in the inbox before they are asked for
            if rng.random() < 1 / 3:
                driver.send(pid, job)
        return driver

    def send(self, pid: str, job: Job) -> None:
        self.store.send(pid, "inbox", message_for(job.n), time.time())
        self.store.notify()
        job.messaged = True

    def post(self, job: Job) -> None:
        """POST to the job's callback twice (on a poster thread); a 5xx or a failed connection
        (the store behind the server unavailable for now) is retried, as a client would."""
        assert job.url is not None
        for _ in range(2):
            status = -1
            for attempt in range(20):
                try:
                    status = self.http.post(job.url, json=body_for(job.n)).status_code
                except httpx.TransportError:
                    status = -1
                if 0 < status < 500:
                    break
                self.retried_posts += 1
                time.sleep(0.25 * (attempt + 1))
            job.posts.append(status)

    def quiesce(self, timeout: float = 60) -> None:
        """Wait for the POSTs in flight."""
        for job in self.jobs.values():
            if job.posting is not None:
                job.posting.result(timeout)

    def round(self) -> None:
        """One look at the store, and whatever the outside does in answer."""
        rows = {row.id: row for row in self.store.list_programs()}
        for pid, job in self.jobs.items():
            row = rows[pid]
            job.status = row.status
            if job.url is None and row.last_seq > job.seen:
                for e in self.store.events(pid, after=job.seen):
                    job.seen = e.seq
                    text = e.data.get("text", "") if e.type == "output" else ""
                    if text.startswith(f"job {job.n} callback http"):
                        job.url = text.split()[3]
                        if self.began is None:
                            self.began = time.monotonic()
            if (job.url is None or row.status in FINISHED or self.began is None
                    or time.monotonic() - self.began < job.release):
                continue
            if not job.messaged and job.message_first:
                self.send(pid, job)
            if job.posting is None:
                job.posting = self.posters.submit(self.post, job)
            elif not job.messaged and job.posting.done():
                self.send(pid, job)

    def round_tolerant(self, until: float) -> None:
        """`round()`, retried while the store is unavailable (its server restarting) until `until`."""
        while True:
            try:
                self.round()
                return
            except StoreUnavailable as e:
                if time.monotonic() > until:
                    raise
                print(f"driver: {type(e).__name__}: {e}; retrying")
                time.sleep(0.5)

    def finished(self) -> int:
        return sum(job.status in FINISHED for job in self.jobs.values())

    def unfinished(self) -> list[str]:
        return [f"{pid}: {job.status} (url={'yes' if job.url else 'no'}, messaged={job.messaged}, "
                f"posts={job.posts})" for pid, job in self.jobs.items() if job.status not in FINISHED]

    def check_all(self) -> list[str]:
        problems = []
        for pid, job in self.jobs.items():
            problems += check_program(self.store, pid, job.n, job.posts)
        return problems

    def close(self) -> None:
        self.posters.shutdown(wait=True, cancel_futures=True)
        self.http.close()


def run_until_done(driver: Driver, cluster: Cluster, deadline: float,
                   on_round: Callable[[int], bool | None] = lambda finished: None) -> int:
    """Play the outside until every program has finished (or `on_round(finished)` returns
    True); how many have finished."""
    while True:
        driver.round_tolerant(deadline)
        finished = driver.finished()
        if finished == len(driver.jobs) or on_round(finished):
            return finished
        if time.monotonic() > deadline:
            unfinished = driver.unfinished()
            raise AssertionError(f"{len(unfinished)} programs unfinished at the deadline:\n"
                                 + "\n".join(unfinished[:40]) + "\n" + cluster.logs())
        time.sleep(0.1)


class Killer(threading.Thread):
    """`kill -9` of a random live worker on request: the moment is the caller's; within it the
    killer waits (1.5 s at most) for the victim to be performing a call, and kills it then."""

    def __init__(self, cluster: Cluster, rng: random.Random) -> None:
        super().__init__(name="killer", daemon=True)
        self.cluster = cluster
        self.rng = rng
        self.requests: queue.Queue[tuple[int, bool] | None] = queue.Queue()
        self.kills: list[dict[str, Any]] = []
        self.errors: list[BaseException] = []

    def request(self, finished: int, replace: bool) -> None:
        self.requests.put((finished, replace))

    def close(self) -> None:
        if self.is_alive():
            self.requests.put(None)
            self.join(30)

    def run(self) -> None:
        try:
            while (item := self.requests.get()) is not None:
                finished, replace = item
                victim = self.rng.choice(self.cluster.workers)
                until = time.monotonic() + 1.5
                while not self.cluster.in_flight(victim.pid) and time.monotonic() < until:
                    time.sleep(0.005)
                self.cluster.kill(victim)
                self.kills.append({"pid": victim.pid, "finished": finished, "at": time.monotonic(),
                                   "in_flight": sorted(self.cluster.in_flight(victim.pid))})
                if replace:
                    self.cluster.spawn_worker()
        except BaseException as e:  # reported by the test
            self.errors.append(e)


# -- the test ----------------------------------------------------------------------------------

@pytest.fixture(params=[pytest.param(("postgres", 200, 15.0), id="postgres-200"),
                        pytest.param(("sqlite", 40, 8.0), id="sqlite-40")])
def setup(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Store, int, float]]:
    """(store URL, the store, programs, seconds over which the outside answers them)."""
    backend, count, spread = request.param
    # (pg_url skips when FLOWMETAL_TEST_POSTGRES_URL is unset)
    url = f"sqlite:///{tmp_path / 'cluster.db'}" if backend == "sqlite" else pg_url(**PG_PARAMS)
    store = open_store(url)
    yield url, store, count, spread
    store.close()
    if backend == "postgres":
        drop_schema(url)


def test_cluster_survives_kill_minus_9_of_two_workers(setup: tuple[str, Store, int, float],
                                                      tmp_path: Path) -> None:
    url, store, count, spread = setup
    seed = 20240611
    rng = random.Random(seed)
    began = time.monotonic()
    driver = Driver.start(store, count, seed, spread)
    cluster = Cluster(url, tmp_path)
    killer = Killer(cluster, rng)
    # kill once a random 15-35% of the programs have finished, and again at 40-60%
    thresholds = [rng.uniform(0.15, 0.35) * count, rng.uniform(0.40, 0.60) * count]
    try:
        cluster.serve()
        for _ in range(4):
            cluster.spawn_worker()
        cluster.spawn_functions()
        killer.start()

        def on_round(finished: int) -> None:
            if thresholds and finished >= thresholds[0]:
                thresholds.pop(0)
                killer.request(finished, replace=not thresholds)  # a replacement after the second

        run_until_done(driver, cluster, deadline=time.monotonic() + 80, on_round=on_round)
        done = time.monotonic()
        killer.close()
        assert not killer.errors, killer.errors
        assert [k["at"] < done for k in killer.kills] == [True, True], (
            f"2 kills while programs ran expected; kills: {killer.kills}, all done {done - began:.1f} s "
            "after the start")
        died = [p.pid for p in cluster.workers if p.poll() is not None]
        assert not died, f"workers died on their own: {died}\n{cluster.logs()}"
    finally:
        killer.close()
        codes = cluster.stop_all()
        driver.close()

    problems = driver.check_all()
    # an attempt number is a lease on the call: two performances of one attempt are two holders
    problems += [f"{key}: each attempt performed once: attempt {attempt} began {c} times"
                 for (key, attempt), c in Counter(cluster.starts()).items() if c > 1]
    # the calls a killed worker was performing were retried elsewhere (and recorded once: above)
    attempts = cluster.attempts()
    for kill in killer.kills:
        for key in kill["in_flight"]:
            call = store.get_call(key)
            if not (call.status == "done" and call.attempt >= 2 and attempts[key] >= 2):
                problems.append(f"{key}: retried after its worker was killed: {call.status}, "
                                f"attempt {call.attempt}, {attempts[key]} began")
    retried = sum(c > 1 for c in attempts.values())
    print(f"\n{count} programs on {url.split(':')[0]}: done {done - began:.1f} s after the start "
          f"(checked at {time.monotonic() - began:.1f} s); kills at {[k['finished'] for k in killer.kills]} "
          f"finished, calls in flight at each kill {[len(k['in_flight']) for k in killer.kills]}; "
          f"{sum(attempts.values())} call attempts for {len(attempts)} calls ({retried} retried); "
          f"callback POSTs retried after 5xx: {driver.retried_posts}")
    assert_clean_end(problems, codes, cluster)
