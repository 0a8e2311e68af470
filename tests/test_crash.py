"""Real crash tests: `flowmetal worker` processes killed with SIGKILL at random
moments while ~20 programs (timers, tasks, messages from outside, output) run
in one SQLite store; and two workers sharing a store.

Whatever happens to the workers, every program must end with the right result,
its history must be gap-free, no effect may be requested twice, and its output
must be exactly what an uninterrupted run prints — not a line more.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from flowmetal.runtime.driver import Runtime
from flowmetal.runtime.worker import Worker
from flowmetal.store import open_store
from flowmetal.store.base import FINISHED, Store

FLOWS = Path(__file__).parent / "flows"
JOB = FLOWS / "crash_job.flow"
STEPS = 12
WORK = 500  # a little CPU in every step, so kills often land inside a slice


def expected(n: int, message: Any, x: int) -> tuple[dict[str, Any], str]:
    squares = [0, 1, 4]
    result = {"n": n, "sum": sum(squares) + sum(range(STEPS)), "message": message, "x": x}
    out = [f"job {n} start", f"job {n} squares {squares}"]
    out += [f"job {n} step {k}" for k in range(STEPS)]
    out += [f"job {n} got {message}", f"job {n} rand {x}"]
    return result, "".join(line + "\n" for line in out)


def check_program(store: Store, pid: str, n: int, message: Any) -> None:
    row = store.get_program(pid)
    assert row.status == "completed", (pid, row.status, row.error)
    x = row.result["x"]
    assert 1 <= x <= 1000
    want_result, want_output = expected(n, message, x)
    assert row.result == want_result
    events = store.events(pid)
    assert [e.seq for e in events] == list(range(1, len(events) + 1)), pid
    assert events[0].type == "started" and events[-1].type == "completed"
    assert row.last_seq == len(events)
    requested = [e for e in events if e.type == "effect_requested"]
    keys = Counter(e.data["key"] for e in requested)
    assert max(keys.values()) == 1, [k for k, c in keys.items() if c > 1]
    requests = Counter(e.data["request"] for e in requested)
    assert max(requests.values()) == 1, [r for r, c in requests.items() if c > 1]
    answered = Counter(e.data["request"] for e in events
                       if e.type in ("effect_completed", "effect_failed", "timer_fired", "message_received"))
    assert max(answered.values()) == 1 and set(answered) <= set(requests)
    types = Counter(e.type for e in events)
    assert types["completed"] == 1 and types["message_received"] == 1
    assert types["task_spawned"] == 3 and types["task_finished"] == 3
    output = "".join(e.data["text"] for e in events if e.type == "output")
    assert output == want_output, pid
    assert store.inbox(pid) == []


def start_jobs(store: Store, count: int, seed: int) -> dict[str, tuple[int, float]]:
    rng = random.Random(seed)
    rt = Runtime(store)
    jobs = {}
    for n in range(count):
        delay = round(rng.uniform(0.05, 0.2), 3)
        pid = rt.start(str(JOB), {"n": n, "delay": delay, "steps": STEPS, "work": WORK},
                       program_id=f"job{n:02d}")
        jobs[pid] = (n, delay)
    return jobs


def message_for(n: int) -> dict[str, Any]:
    return {"from": "outside", "n": n}


# -- kill -9 -------------------------------------------------------------------------------

class Workers:
    """`flowmetal worker` processes started (and only ever killed) by this test."""

    def __init__(self, url: str, cwd: Path) -> None:
        self.url = url
        self.cwd = cwd
        self.live: list[subprocess.Popen[bytes]] = []
        self.killed = 0

    def spawn(self) -> None:
        env = {k: v for k, v in os.environ.items() if k != "FLOWMETAL_STORE"}
        p = subprocess.Popen([sys.executable, "-m", "flowmetal", "worker", "--store", self.url, "--concurrency", "8"],
                             cwd=self.cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.live.append(p)

    def kill_one(self, rng: random.Random, store: Store) -> int:
        """SIGKILL a random worker; how many leases it held just before (a racy, informative count)."""
        victim = rng.choice(self.live)
        self.live.remove(victim)
        held = store.db.execute("SELECT COUNT(*) FROM programs WHERE lease_pid = ? AND lease_owner IS NOT NULL",
                                (victim.pid,)).fetchone()[0]
        victim.send_signal(signal.SIGKILL)
        victim.wait()  # reap it: its pid is gone from this machine
        if victim.stderr:
            victim.stderr.close()
        self.killed += 1
        return held

    def stop_all(self) -> list[tuple[int, bytes]]:
        outcomes = []
        for p in self.live:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.live:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            err = p.stderr.read() if p.stderr else b""
            if p.stderr:
                p.stderr.close()
            outcomes.append((p.returncode, err))
        self.live.clear()
        return outcomes


def all_finished(store: Store, pids: list[str]) -> bool:
    return all(store.get_program(p).status in FINISHED for p in pids)


def test_kill_minus_9_workers_at_random_moments(tmp_path: Path) -> None:
    seed = 20240607
    rng = random.Random(seed)
    url = f"sqlite:///{tmp_path / 'crash.db'}"
    store = open_store(url)
    jobs = start_jobs(store, 20, seed)
    pids = sorted(jobs)
    half = pids[: len(pids) // 2]
    for pid in half:  # some messages are waiting before the programs ask for them
        store.send(pid, "inbox", message_for(jobs[pid][0]), time.time())

    workers = Workers(url, tmp_path)
    workers.spawn()
    workers.spawn()  # two at once: kills also hit a store shared with a live worker
    began = time.monotonic()
    held_at_kill: list[int] = []
    unfinished_at_kill: list[int] = []
    try:
        for k in range(5):
            time.sleep(rng.uniform(0.3, 0.9))
            unfinished_at_kill.append(sum(store.get_program(p).status not in FINISHED for p in pids))
            held_at_kill.append(workers.kill_one(rng, store))
            if k == 1:  # the rest of the messages arrive while workers are dying
                for pid in pids[len(half):]:
                    store.send(pid, "inbox", message_for(jobs[pid][0]), time.time())
            workers.spawn()
        deadline = began + 60
        while not all_finished(store, pids):
            assert time.monotonic() < deadline, [
                (p, store.get_program(p).status) for p in pids if store.get_program(p).status not in FINISHED]
            time.sleep(0.1)
    finally:
        outcomes = workers.stop_all()
    assert workers.killed == 5
    assert all(unfinished_at_kill), unfinished_at_kill  # every kill hit a store with work in progress
    for code, err in outcomes:
        assert code == 0, err.decode(errors="replace")
    for pid in pids:
        n, _ = jobs[pid]
        check_program(store, pid, n, message_for(n))
    assert store.db.execute("SELECT COUNT(*) FROM inbox").fetchone()[0] == 0
    print(f"programs unfinished at each kill: {unfinished_at_kill}; leases the victim held: {held_at_kill}")
    store.close()


# -- two workers on one store ------------------------------------------------------------------

class Exclusive:
    """Fails the test if two workers ever run a slice of the same program at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running: dict[str, str] = {}
        self.violations: list[tuple[str, str, str]] = []
        self.slices: Counter[str] = Counter()

    def wrap(self, rt: Runtime, worker_name: str) -> None:
        original = rt.run_slice

        def run_slice(claim: Any, outcomes: Any = None) -> Any:
            with self.lock:
                other = self.running.get(claim.program_id)
                if other is not None:
                    self.violations.append((claim.program_id, other, worker_name))
                self.running[claim.program_id] = worker_name
                self.slices[worker_name] += 1
            try:
                time.sleep(0.001)  # widen the window a double run would need
                return original(claim, outcomes)
            finally:
                with self.lock:
                    self.running.pop(claim.program_id, None)

        rt.run_slice = run_slice  # type: ignore[method-assign]


def test_two_workers_never_run_one_program_at_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'two.db'}"
    setup = open_store(url)
    jobs = start_jobs(setup, 16, seed=7)
    pids = sorted(jobs)
    for pid in pids:
        setup.send(pid, "inbox", message_for(jobs[pid][0]), time.time())

    exclusive = Exclusive()
    committed: list[tuple[str, int, str]] = []
    committed_lock = threading.Lock()
    workers: list[Worker] = []
    for name in ("A", "B"):
        store = open_store(url)
        rt = Runtime(store)
        exclusive.wrap(rt, name)

        def on_slice(r: Any, name: str = name) -> None:
            if r.commit is not None:
                with committed_lock:
                    committed.append((r.program_id, r.commit.fence, name))

        workers.append(Worker(rt, concurrency=3, lease=10.0, on_slice=on_slice))

    def done() -> bool:
        return all_finished(setup, pids)

    errors: list[BaseException] = []

    def run(w: Worker) -> None:
        try:
            w.run(until=done)
        except BaseException as e:  # reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=run, args=(w,), daemon=True) for w in workers]
    began = time.monotonic()
    for t in threads:
        t.start()
    while not done() and time.monotonic() - began < 60:
        time.sleep(0.05)
    for w in workers:
        w.stop()
    for t in threads:
        t.join(timeout=15)
    assert errors == []
    assert done(), [(p, setup.get_program(p).status) for p in pids]
    assert exclusive.violations == []
    for w in workers:
        assert w.stats.errors == []
        assert w.stats.lost == 0  # no commit was refused: nobody ever worked on a stolen program
    assert exclusive.slices["A"] > 0 and exclusive.slices["B"] > 0  # both really worked
    by_program: dict[str, list[int]] = {}
    for pid, fence, _ in committed:
        by_program.setdefault(pid, []).append(fence)
    for pid, fences in by_program.items():
        assert len(fences) == len(set(fences)), (pid, fences)  # one commit per claim
    for pid in pids:
        n, _ = jobs[pid]
        check_program(setup, pid, n, message_for(n))
    setup.close()


@pytest.mark.parametrize("lease", [0.5])
def test_a_hung_worker_loses_its_lease_and_cannot_commit(tmp_path: Path, lease: float) -> None:
    """A worker that stalls past its lease (no heartbeat) is overtaken; its late commit is refused."""
    url = f"sqlite:///{tmp_path / 'hung.db'}"
    store = open_store(url)
    jobs = start_jobs(store, 1, seed=3)
    (pid,) = jobs
    store.send(pid, "inbox", message_for(0), time.time())
    slow_rt = Runtime(open_store(url))
    claim = slow_rt.store.claim("slow", os.getpid(), "another-host", lease, time.time(), 1)[0]
    stale = slow_rt.run_slice(claim)  # runs, then "hangs" without committing
    time.sleep(lease + 0.1)
    fast = Worker(Runtime(open_store(url)), lease=10.0, notify=False)
    deadline = time.monotonic() + 30
    while store.get_program(pid).status not in FINISHED and time.monotonic() < deadline:
        if not fast.step():
            time.sleep(0.02)
    assert stale.commit is not None
    with pytest.raises(Exception, match="lease"):
        slow_rt.store.commit([stale.commit], time.time())
    check_program(store, pid, 0, message_for(0))
