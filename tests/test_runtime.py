"""The durable runtime, in process, with a FAKE clock: every durable action,
restarts from the store, checkpoints, replay, inspection and the AMBROSIA rule.

Programs live in tests/flows. A day-long sleep takes milliseconds: the test
advances the clock to the store's next wake-up and runs another worker round.
"""

from __future__ import annotations

import random
import socket
import sqlite3
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from flowmetal.errors import CheckFailed
from flowmetal.runtime.driver import ReplayDiverged, Runtime
from flowmetal.runtime.inspect import describe, format_description
from flowmetal.runtime.worker import Worker
from flowmetal.store import open_store
from flowmetal.store.base import FINISHED, ProgramRow, Store

FLOWS = Path(__file__).parent / "flows"
T0 = 1_000_000.0


class Clock:
    """A mutable fake clock."""

    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


class Env:
    """A store in tmp_path, a fake clock, a runtime and a worker. With `fresh=True`, `drive` runs
    every round in a NEW runtime (as a restarted process would: nothing kept in memory), so each
    slice really resumes from the store — from a checkpoint, or by replaying events."""

    def __init__(self, tmp_path: Path, fresh: bool = False, **runtime_kw: Any) -> None:
        tmp_path.mkdir(parents=True, exist_ok=True)
        self.db = tmp_path / "store.db"
        self.url = f"sqlite:///{self.db}"
        self.store = open_store(self.url)
        self.clock = Clock()
        runtime_kw.setdefault("rng", random.Random(0))
        self.runtime_kw = runtime_kw
        self.fresh = fresh
        self.rt = Runtime(self.store, clock=self.clock, **runtime_kw)
        self.outputs: list[tuple[str, str]] = []
        self.errors: list[str] = []
        self.worker = self.new_worker()

    def restarted(self) -> Runtime:
        """A new runtime on the same store and clock (sharing the random generator)."""
        return Runtime(self.store, clock=self.clock, **self.runtime_kw)

    def new_worker(self, rt: Runtime | None = None, only: str | None = None) -> Worker:
        def on_slice(r: Any) -> None:
            self.outputs.extend((r.program_id, text) for text in r.output)

        return Worker(rt or self.rt, lease=30.0, only=only, on_slice=on_slice, notify=False)

    def start(self, name: str, args: dict[str, Any] | None = None, pid: str | None = None,
              path: Path | None = None) -> str:
        return self.rt.start(str(path or FLOWS / f"{name}.flow"), args, program_id=pid or name)

    def row(self, pid: str) -> ProgramRow:
        return self.store.get_program(pid)

    def drive(self, pid: str, worker: Worker | None = None, limit: int = 2000) -> ProgramRow:
        """Run rounds, jumping the clock to the next timer when idle, until `pid` finishes
        or waits for something only the outside can bring."""
        for _ in range(limit):
            row = self.row(pid)
            if row.status in FINISHED:
                return row
            w = worker or (self.new_worker(self.restarted()) if self.fresh else self.worker)
            did = w.step()
            self.errors.extend(w.stats.errors)
            w.stats.errors.clear()
            if did:
                continue
            nxt = self.store.next_wake()
            if nxt is None:
                return row
            self.clock.t = max(self.clock.t, nxt)
        raise AssertionError(f"{pid} did not settle in {limit} rounds")

    def send(self, pid: str, message: Any, channel: str = "inbox") -> None:
        self.store.send(pid, channel, message, self.clock())

    def events(self, pid: str) -> list[Any]:
        return self.store.events(pid)

    def output(self, pid: str) -> str:
        return "".join(e.data["text"] for e in self.events(pid) if e.type == "output")


@pytest.fixture
def env(tmp_path: Path) -> Env:
    e = Env(tmp_path)
    yield e
    e.store.close()


def assert_sound_history(store: Store, pid: str) -> None:
    events = store.events(pid)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert events[0].type == "started"
    requested = [e for e in events if e.type == "effect_requested"]
    keys = [e.data["key"] for e in requested]
    assert len(keys) == len(set(keys))
    ids = [e.data["request"] for e in requested]
    assert len(ids) == len(set(ids))
    assert store.get_program(pid).last_seq == len(events)


# -- timers and recorded values -------------------------------------------------------------

def test_one_day_sleep_completes_in_milliseconds(env: Env) -> None:
    import time

    began = time.monotonic()
    pid = env.start("sleep_day")
    assert env.worker.step()
    row = env.row(pid)
    assert row.status == "waiting"
    assert row.wake_at == T0 + 86400
    assert not env.worker.step()  # nothing due yet
    env.clock.advance(86399.0)
    assert not env.worker.step()
    env.clock.advance(1.0)
    assert env.worker.step()
    row = env.row(pid)
    assert (row.status, row.result) == ("completed", 86400.0)
    assert env.output(pid) == "going to sleep\nwoke up\n"
    assert [e.type for e in env.events(pid)].count("timer_fired") == 1
    assert time.monotonic() - began < 10  # no real waiting (generous bound)
    assert_sound_history(env.store, pid)


def test_now_is_recorded(env: Env) -> None:
    pid = env.start("sleep_day", {"days": 2})
    row = env.drive(pid)
    assert row.result == 2 * 86400.0
    nows = [e.data["result"] for e in env.events(pid)
            if e.type == "effect_completed" and isinstance(e.data.get("result"), float)]
    assert nows == [T0, T0 + 2 * 86400]


def test_random_values_recorded_and_identical_after_restart(env: Env) -> None:
    pid = env.start("recorded", pid="rec")
    row = env.drive(pid)
    assert row.status == "waiting"
    printed = env.output(pid)
    recorded = {e.data["kind"]: None for e in env.events(pid) if e.type == "effect_requested"}
    assert set(recorded) >= {"now", "random", "randint", "uuid4", "program_id", "receive"}

    # a new runtime on the same store, with a different random generator and NO checkpoints,
    # so it must replay the recorded values
    store2 = open_store(env.url)
    rt2 = Runtime(store2, clock=env.clock, rng=random.Random(12345), checkpoint_every=10**9)
    env.clock.advance(60)
    env.send(pid, {"hello": "world"})
    row = env.drive(pid, env.new_worker(rt2))
    assert row.status == "completed"
    values = row.result["values"]
    assert values["now"] == T0
    assert values["id"] == "rec"
    assert 0 <= values["random"] < 1
    assert 1 <= values["randint"] <= 1000000
    assert len(values["uuid"]) == 36 and values["uuid"][14] == "4"
    assert row.result["message"] == {"hello": "world"}
    assert row.result["later"] == T0 + 60
    assert printed == f"values {values['randint']} {values['uuid']}\n"
    assert env.output(pid) == printed  # not printed again by the replay
    # and the values are those of the first run's random generator
    expected = random.Random(0)
    assert values["random"] == expected.random()
    assert values["randint"] == expected.randint(1, 1000000)
    store2.close()


def test_restart_from_the_store_with_checkpoints(env: Env) -> None:
    pid = env.start("dice", {"rolls": 5})
    env.worker.step()
    env.clock.advance(1)
    env.worker.step()
    # a new process: new store handle, new runtime, new worker
    store2 = open_store(env.url)
    rt2 = Runtime(store2, clock=env.clock, rng=random.Random(99))
    row = env.drive(pid, env.new_worker(rt2))
    assert row.status == "completed"
    rolls = [int(line.split(": ")[1]) for line in env.output(pid).splitlines()]
    assert len(rolls) == 5 and sum(rolls) == row.result
    assert_sound_history(env.store, pid)
    store2.close()


# -- messages ------------------------------------------------------------------------------

def test_receive_channels_and_timeouts(env: Env) -> None:
    pid = env.start("channels")
    env.send(pid, "for b", "b")  # arrives first, but the program asks for "a" first
    row = env.drive(pid)
    assert row.status == "waiting"
    assert row.waiting_on["waits"][0]["channel"] == "a"
    env.send(pid, "for a", "a")
    env.send(pid, {"n": 1})
    row = env.drive(pid)
    assert row.status == "completed"
    assert row.result == ["for a", "for b", {"n": 1}, "timeout", "timeout: Timeout"]
    assert env.store.inbox(pid) == []
    kinds = [e.type for e in env.events(pid)]
    assert kinds.count("message_received") == 3
    assert [e.data["error"]["type"] for e in env.events(pid) if e.type == "effect_failed"] == ["Timeout"] * 2


def test_receive_timeout_only_after_the_time(env: Env) -> None:
    pid = env.start("channels")
    env.send(pid, 1, "a")
    env.send(pid, 2, "b")
    env.send(pid, 3)
    env.worker.step()
    row = env.row(pid)
    assert row.wake_at == T0 + 5
    env.clock.advance(4.9)
    assert not env.worker.step()
    env.send(pid, "just in time")
    env.worker.step()
    env.clock.advance(1)
    row = env.drive(pid)
    assert row.result == [1, 2, 3, "just in time", "timeout: Timeout"]


def test_ping_pong_between_programs(env: Env) -> None:
    pong = env.start("pong")
    ping = env.start("ping", {"peer": "pong", "rounds": 4})
    for _ in range(200):
        if env.row(ping).status in FINISHED and env.row(pong).status in FINISHED:
            break
        assert env.worker.step()
    assert env.row(ping).result == [1, 3, 5, 7]
    assert env.row(pong).result == 4
    for pid in (ping, pong):
        assert_sound_history(env.store, pid)
    sends = [e for e in env.events(ping) if e.type == "effect_requested" and e.data["kind"] == "send"]
    assert len(sends) == 5


def test_a_worker_that_keeps_machines_checkpoints_every_16_events_and_others_replay_the_rest(
        tmp_path: Path) -> None:
    """A worker keeping machines in memory snapshots only when a slice crosses a multiple of 16
    events; a new process resumes from that checkpoint by replaying the few events after it,
    and every event's state can still be inspected."""
    env = Env(tmp_path, reuse_machines=True)
    pong = env.start("pong")
    ping = env.start("ping", {"peer": "pong", "rounds": 30})
    while env.row(ping).last_seq < 40:  # well into the exchange, then "crash": drop this runtime
        assert env.worker.step()
    row = env.row(ping)
    seqs = [seq for (seq,) in sqlite3.connect(env.db).execute(
        "SELECT seq FROM checkpoints WHERE program_id = ? ORDER BY seq", (ping,))]
    assert seqs and len(seqs) <= row.last_seq // 16 + 1  # not one per slice (a slice is 3-4 events)
    assert all(b // 16 > a // 16 for a, b in pairwise(seqs))
    assert row.last_seq - seqs[-1] < 16 + 4  # at most a span (+ the slice that crossed it) to replay
    fresh = env.new_worker(env.restarted())  # nothing in memory: checkpoint + replay
    for _ in range(400):
        if env.row(ping).status in FINISHED and env.row(pong).status in FINISHED:
            break
        assert fresh.step()
    assert env.row(ping).result == list(range(1, 60, 2))
    assert env.row(pong).result == 30
    for pid in (ping, pong):
        assert_sound_history(env.store, pid)
    for seq in range(1, env.row(ping).last_seq + 1):  # the state at every event, from any checkpoint
        machine, at = env.restarted().load(env.row(ping), upto=seq)
        assert at == seq and machine is not None


def test_send_to_unknown_program_is_an_error_in_the_program(env: Env, tmp_path: Path) -> None:
    path = tmp_path / "bad_send.flow"
    path.write_text("from flowmetal import send\n\n\ndef main():\n    send('nobody', 1)\n")
    pid = env.start("bad_send", path=path)
    row = env.drive(pid)
    assert row.status == "failed"
    assert "nobody" in row.error


@pytest.mark.parametrize("checkpoint_every", [1, 10**9])
def test_failed_effect_raises_the_same_exception_live_and_in_replay(tmp_path: Path,
                                                                    checkpoint_every: int) -> None:
    env = Env(tmp_path, fresh=True, checkpoint_every=checkpoint_every)
    pid = env.start("effect_error")
    row = env.drive(pid)
    assert env.errors == []
    assert row.status == "completed", row.error
    assert len([e for e in env.events(pid) if e.type == "effect_failed"]) == 1
    # the exception class the program sees is one a replay can rebuild from the record
    assert env.output(pid) == "error: RuntimeError\n"


def test_send_non_json_message_is_an_error(env: Env, tmp_path: Path) -> None:
    path = tmp_path / "bad_msg.flow"
    path.write_text("from flowmetal import send, program_id\n\n\ndef main():\n"
                    "    try:\n        send(program_id(), {1, 2})\n    except TypeError as e:\n"
                    "        return str(e)\n")
    row = env.drive(env.start("bad_msg", path=path))
    assert row.status == "completed" and "JSON" in row.result


# -- tasks -------------------------------------------------------------------------------

def test_spawn_wait_wait_any_result_and_timeouts(env: Env) -> None:
    pid = env.start("tasks")
    row = env.drive(pid)
    assert row.status == "completed", row.error
    assert row.result == {
        "first": 20, "all": [10, 20], "boom": "ValueError: boom", "boom_result": "boom",
        "wait_timeout": "timeout", "wait_any_timeout": "timeout", "d": 30, "e": 40,
    }
    # d slept 100 s from its start at T0 + 6: the whole program took 106 s of fake time
    assert env.events(pid)[-1].at == T0 + 106
    kinds = [e.type for e in env.events(pid)]
    assert kinds.count("task_spawned") == 5
    assert kinds.count("task_finished") == 5
    assert_sound_history(env.store, pid)


def test_tasks_replay_without_checkpoints(tmp_path: Path) -> None:
    env = Env(tmp_path, fresh=True, checkpoint_every=10**9)
    row = env.drive(env.start("tasks"))
    assert row.status == "completed", (row.error, env.errors)
    assert row.result["d"] == 30
    assert env.store.checkpoint("tasks") is None or env.store.checkpoint("tasks")[0] == row.last_seq


# -- child programs ------------------------------------------------------------------------

def test_start_child_and_result(env: Env) -> None:
    pid = env.start("parent", {"x": 21})
    row = env.drive(pid)
    assert row.status == "completed", row.error
    assert row.result["value"] == 42
    assert row.result["child"] == f"{pid}.1"
    assert "negative: -1" in row.result["failed"]
    child = env.row(row.result["child"])
    assert (child.status, child.result, child.parent_id, child.args) == ("completed", 42, pid, {"x": 21})
    assert env.output(child.id) == f"child {child.id} done\n"
    assert env.output(pid) == f"started {child.id}\n"
    bad = [r for r in env.store.list_programs() if r.parent_id == pid and r.status == "failed"]
    assert len(bad) == 1 and "negative" in bad[0].error
    for r in env.store.list_programs():
        assert_sound_history(env.store, r.id)


def test_start_child_with_missing_file(env: Env, tmp_path: Path) -> None:
    path = tmp_path / "orphan.flow"
    path.write_text("from flowmetal import start\n\n\ndef main():\n"
                    "    try:\n        start('missing.flow')\n    except ValueError as e:\n"
                    "        return str(e)\n")
    row = env.drive(env.start("orphan", path=path))
    assert row.status == "completed" and "missing.flow" in row.result


# -- scoped deadlines, program_id, cancellation ------------------------------------------------

def test_timeout_scope_around_receive_and_sleep(env: Env) -> None:
    pid = env.start("scoped")
    env.send(pid, "late", "late")
    row = env.drive(pid)
    assert row.status == "completed", row.error
    assert row.result == ["receive timed out", "sleep timed out", "short sleep ok", "late", 9.0]
    deadlines = [e.data["deadline"] for e in env.events(pid)
                 if e.type == "effect_requested" and e.data["kind"] in ("receive", "sleep")]
    assert deadlines[:3] == [T0 + 5, T0 + 8, T0 + 18]


def test_program_id(env: Env) -> None:
    row = env.drive(env.start("recorded", pid="my-id"))
    env.send("my-id", 0)
    row = env.drive("my-id")
    assert row.result["values"]["id"] == "my-id"


def test_cancel_raises_cancelled_at_the_current_wait(env: Env) -> None:
    pid = env.start("cancel")
    assert env.drive(pid).status == "waiting"
    env.store.request_cancel(pid, env.clock())
    row = env.drive(pid)
    assert row.status == "cancelled"
    assert "Cancelled" in row.error
    assert env.output(pid) == "waiting\ncancelled\ncleanup\n"
    types = [e.type for e in env.events(pid)]
    assert types[-1] == "cancelled" and "cancel_requested" in types
    with pytest.raises(Exception, match="cancelled"):
        env.send(pid, "too late")


@pytest.mark.parametrize("checkpoint_every", [1, 10**9])
def test_cancel_with_tasks_and_durable_finally(tmp_path: Path, checkpoint_every: int) -> None:
    """Cancelled reaches every task; `finally` may still sleep; a replay reproduces it."""
    env = Env(tmp_path, fresh=True, checkpoint_every=checkpoint_every)
    pid = env.start("cancel_tasks")
    env.worker.step()
    env.clock.advance(50)  # the task sleeps 100 s
    assert not env.worker.step()
    assert env.row(pid).status == "waiting"
    env.store.request_cancel(pid, env.clock())
    row = env.drive(pid)
    assert env.errors == []
    assert row.status == "cancelled", row.error
    assert env.output(pid) == "sub cleanup\nmain cleanup\nafter sleep in finally\n"  # tasks first, then main
    assert_sound_history(env.store, pid)


def test_cancel_before_the_first_slice(env: Env) -> None:
    pid = env.start("cancel")
    env.store.request_cancel(pid, env.clock())
    row = env.drive(pid)
    assert row.status == "cancelled"


# -- output, results, pinning -----------------------------------------------------------------

def test_print_output_recorded_once_in_order(env: Env) -> None:
    pid = env.start("prints")
    # crash (discard) every other slice before it commits: the next worker redoes it
    crashed = 0
    for _ in range(200):
        row = env.row(pid)
        if row.status in FINISHED:
            break
        claims = env.store.claim("crashy", 1, "nowhere", 5.0, env.clock(), 1, pid) if crashed < 4 else []
        if claims:
            env.rt.run_slice(claims[0])  # runs, prints... and is never committed
            crashed += 1
            env.clock.advance(6.0)  # the lease expires
            continue
        if not env.worker.step():
            env.clock.t = max(env.clock.t, env.store.next_wake() or env.clock.t)
    row = env.row(pid)
    assert row.status == "completed", row.error
    expected = "begin\nline 0\nline 1\nline 2\nx 0\ny 0\nx 1\ny 1\ntasks: ['x', 'y']\nend"
    assert env.output(pid) == expected
    assert "".join(text for p, text in env.outputs if p == pid) == expected
    assert crashed == 4
    assert_sound_history(env.store, pid)


def test_non_json_result_fails_clearly(env: Env) -> None:
    row = env.drive(env.start("bad_result"))
    assert row.status == "failed"
    assert "JSON" in row.error and "main()" in row.error
    assert env.events("bad_result")[-1].type == "failed"


def test_uncaught_exception_fails_with_traceback(env: Env) -> None:
    row = env.drive(env.start("child", {"x": -5}, pid="neg"))
    assert row.status == "failed"
    assert "ValueError: negative: -5" in row.error
    last = env.events("neg")[-1]
    assert last.type == "failed" and "child.flow" in last.data["traceback"]


def test_invalid_program_is_refused_at_start(env: Env, tmp_path: Path) -> None:
    path = tmp_path / "bad.flow"
    path.write_text("import os\n\ndef main():\n    return 1\n")
    with pytest.raises(CheckFailed):
        env.rt.start(str(path))
    assert env.store.list_programs() == []


def test_start_is_idempotent_with_an_id(env: Env) -> None:
    a = env.start("sleep_day", pid="same")
    b = env.start("sleep_day", pid="same")
    assert a == b == "same"
    assert len(env.store.list_programs()) == 1
    generated = env.rt.start(str(FLOWS / "sleep_day.flow"))
    assert generated != "same" and env.row(generated).status == "running"


def test_code_is_pinned_at_start(env: Env, tmp_path: Path) -> None:
    path = tmp_path / "pinned.flow"
    path.write_text("from flowmetal import receive\n\n\ndef main():\n    return 'v1:' + receive()\n")
    first = env.start("pinned", pid="first", path=path)
    second = env.start("pinned", pid="second", path=path)
    env.drive(first)
    env.drive(second)
    path.write_text("from flowmetal import receive\n\n\ndef main():\n    return 'v2:' + receive()\n")
    env.send(first, "a")
    assert env.drive(first).result == "v1:a"
    # a fresh runtime (no compiled-program cache) loads the source from the store
    rt2 = Runtime(open_store(env.url), clock=env.clock)
    env.send(second, "b")
    assert env.drive(second, env.new_worker(rt2)).result == "v1:b"
    third = env.start("pinned", pid="third", path=path)
    env.send(third, "c")
    assert env.drive(third).result == "v2:c"


# -- checkpoints and replay --------------------------------------------------------------------

class CountingStore:
    """Counts the events a runtime reads through `store.events`."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.read = 0
        self.original = store.events

    def __enter__(self) -> CountingStore:
        def events(program_id: str, after: int = 0, upto: int | None = None) -> list[Any]:
            got = self.original(program_id, after, upto)
            self.read += len(got)
            return got

        self.store.events = events  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: Any) -> None:
        self.store.events = self.original  # type: ignore[method-assign]


def test_resume_cost_is_independent_of_history(env: Env) -> None:
    pid = env.start("many_events", {"n": 1000})
    env.worker.step()
    row = env.row(pid)
    assert row.status == "waiting" and row.last_seq >= 2000
    assert env.store.checkpoint(pid)[0] == row.last_seq
    env.send(pid, "go")
    with CountingStore(env.store) as counter:
        env.new_worker(env.restarted()).step()  # a new process: nothing in memory
    assert env.row(pid).result == {"n": 1000, "message": "go"}
    assert counter.read == 0  # resumed from the checkpoint: no event was read


def test_resume_without_checkpoint_reads_the_history(tmp_path: Path) -> None:
    env = Env(tmp_path, checkpoint_every=10**9)
    pid = env.start("many_events", {"n": 1000})
    env.worker.step()
    assert env.store.checkpoint(pid) is None
    env.send(pid, "go")
    with CountingStore(env.store) as counter:
        env.new_worker(env.restarted()).step()
    assert env.row(pid).result == {"n": 1000, "message": "go"}
    assert counter.read >= 2000


def test_checkpoint_every_50_completes_and_matches(tmp_path: Path) -> None:
    every = Env(tmp_path / "a", fresh=True, checkpoint_every=1)
    sparse = Env(tmp_path / "b", fresh=True, checkpoint_every=50)
    logs = []
    for env in (every, sparse):
        pid = env.start("dice", {"rolls": 40})
        row = env.drive(pid)
        assert row.status == "completed" and env.errors == []
        logs.append([(e.seq, e.type, e.data, e.at) for e in env.events(pid)])
        assert_sound_history(env.store, pid)
    assert logs[0] == logs[1]  # replaying from sparse checkpoints changes nothing
    n_sparse = sparse.store.db.execute("SELECT COUNT(*) FROM checkpoints").fetchone()[0]
    n_every = every.store.db.execute("SELECT COUNT(*) FROM checkpoints").fetchone()[0]
    assert n_sparse < n_every / 5


def test_tampered_event_makes_replay_diverge_loudly(tmp_path: Path) -> None:
    env = Env(tmp_path, checkpoint_every=10**9)
    pid = env.start("dice", {"rolls": 3})
    env.worker.step()
    env.clock.advance(1)
    env.worker.step()
    assert env.row(pid).status == "waiting"
    before = env.row(pid).last_seq
    conn = sqlite3.connect(env.db)
    with conn:
        cur = conn.execute("UPDATE events SET data = json_set(data, '$.args', json('[1, 7]')) WHERE program_id = ?"
                           " AND type = 'effect_requested' AND json_extract(data, '$.kind') = 'randint'"
                           " AND seq = (SELECT MIN(seq) FROM events WHERE program_id = ? AND type ="
                           " 'effect_requested')", (pid, pid))
        assert cur.rowcount == 1
    conn.close()
    env.clock.advance(1)
    (claim,) = env.store.claim("w", 1, socket.gethostname(), 30.0, env.clock(), 1, pid)
    # a new process resumes the program from the store: the divergence fails it loudly
    result = env.restarted().run_slice(claim)
    assert result.status == "failed" and result.commit is not None
    assert result.commit.error is not None and "ReplayDiverged" in result.commit.error
    assert "randint[1, 7]" in result.commit.error
    with pytest.raises(ReplayDiverged, match=r"randint\[1, 7\]"):
        env.restarted().load(env.row(pid))
    env.store.release("w", pid, claim.fence)
    # a worker records the failure (one `failed` event; the history before it is kept)
    worker = env.new_worker(env.restarted())
    worker.step()
    row = env.row(pid)
    assert row.status == "failed" and row.error is not None and "ReplayDiverged" in row.error
    assert row.last_seq == before + 1


def test_failing_slice_is_not_retried_in_a_hot_loop(tmp_path: Path) -> None:
    env = Env(tmp_path, checkpoint_every=10**9)
    pid = env.start("dice", {"rolls": 3})
    env.worker.step()
    conn = sqlite3.connect(env.db)
    with conn:
        conn.execute("UPDATE events SET data = json_set(data, '$.args', json('[1, 7]')) WHERE program_id = ?"
                     " AND type = 'effect_requested'", (pid,))
    conn.close()
    env.clock.advance(1)
    worker = env.new_worker(env.restarted())
    assert worker.step()  # fails the program for good ...
    assert env.row(pid).status == "failed"
    for _ in range(4):
        assert not worker.step()  # ... so no round picks it up again
    assert worker.stats.errors == []


def test_tampered_output_makes_replay_diverge(tmp_path: Path) -> None:
    env = Env(tmp_path, checkpoint_every=10**9)
    pid = env.start("dice", {"rolls": 3})
    env.worker.step()
    conn = sqlite3.connect(env.db)
    with conn:
        conn.execute("UPDATE events SET data = json_set(data, '$.text', 'roll 0: 9\n') WHERE program_id = ?"
                     " AND type = 'output'", (pid,))
    conn.close()
    env.clock.advance(1)
    (claim,) = env.store.claim("w", 1, socket.gethostname(), 30.0, env.clock(), 1, pid)
    result = env.restarted().run_slice(claim)
    assert result.commit is not None and result.commit.error is not None
    assert "ReplayDiverged" in result.commit.error and "printed" in result.commit.error


# -- inspection ------------------------------------------------------------------------------

@pytest.mark.parametrize("checkpoint_every", [1, 10**9])
def test_inspect_stack_and_locals_at_an_earlier_event(tmp_path: Path, checkpoint_every: int) -> None:
    env = Env(tmp_path, checkpoint_every=checkpoint_every)
    pid = env.start("inspect_me", {"a": 5})
    row = env.drive(pid)
    assert row.status == "completed" and row.result == ["hello", 11]
    source = (FLOWS / "inspect_me.flow").read_text().splitlines()
    line_sleep1 = source.index("    sleep(1)") + 1
    line_call = source.index("    x = helper(a)") + 1
    line_sleep2 = source.index("    sleep(2)") + 1
    sleeps = [e.seq for e in env.events(pid) if e.type == "effect_requested" and e.data["kind"] == "sleep"]

    machine, seq = env.rt.load(row, upto=sleeps[0])
    assert seq == sleeps[0]
    desc = describe(machine)
    (task,) = desc["tasks"]
    frames = [(Path(f["file"]).name, f["line"], f["function"]) for f in task["stack"]]
    assert frames == [("inspect_me.flow", line_call, "main"), ("inspect_me.flow", line_sleep1, "helper")]
    assert task["stack"][0]["locals"]["a"] == "5"
    assert task["stack"][0]["locals"]["word"] == "'hello'"
    assert task["stack"][1]["locals"] == {"k": "5", "total": "10"}
    assert task["waiting_for"]["action"] == "sleep"
    text = format_description(pid, seq, desc)
    assert f'inspect_me.flow", line {line_sleep1}, in helper' in text
    assert "total = 10" in text

    machine, seq = env.rt.load(row, upto=sleeps[1])
    (task,) = describe(machine)["tasks"]
    assert [(f["line"], f["function"]) for f in task["stack"]] == [(line_sleep2, "main")]
    assert task["stack"][0]["locals"]["x"] == "11"


# -- AMBROSIA ----------------------------------------------------------------------------------

def test_send_is_invisible_until_the_senders_slice_commits(env: Env) -> None:
    target = env.start("recorded", pid="target")
    env.drive(target)
    sender = env.start("sender", {"target": "target"}, pid="sender")
    (claim,) = env.store.claim("w", 1, socket.gethostname(), 10.0, env.clock(), 1, sender)
    result = env.rt.run_slice(claim)
    assert result.commit is not None and result.commit.sends
    assert env.store.inbox("target") == []  # ran, but not committed: nothing left the slice
    assert not env.row("target").runnable

    # the worker "crashes" here; after the lease expires another worker redoes the slice
    env.clock.advance(11.0)
    assert env.worker.step()
    assert [m.message for m in env.store.inbox("target")] == ["hello"]
    with pytest.raises(Exception, match="lease"):
        env.store.commit([result.commit], env.clock())  # the old slice can never commit now
    assert [m.message for m in env.store.inbox("target")] == ["hello"]
    row = env.drive(target)
    assert row.result["message"] == "hello"
    assert env.row("sender").status == "waiting"
    sends = [e for e in env.events("sender") if e.type == "effect_requested" and e.data["kind"] == "send"]
    assert len(sends) == 1


def test_child_start_is_invisible_until_commit(env: Env) -> None:
    pid = env.start("parent", {"x": 1})
    (claim,) = env.store.claim("w", 1, socket.gethostname(), 10.0, env.clock(), 1, pid)
    result = env.rt.run_slice(claim)
    assert result.commit is not None and result.commit.starts
    assert [r.id for r in env.store.list_programs()] == [pid]
    env.store.commit([result.commit], env.clock())
    assert sorted(r.id for r in env.store.list_programs()) == [pid, f"{pid}.1"]


def test_heartbeat_renews_leases_on_the_runtime_clock(env: Env) -> None:
    pid = env.start("sleep_day")
    w = Worker(env.rt, lease=0.3, notify=False)
    (claim,) = env.store.claim(w.id, w.pid, w.host, w.lease, env.clock(), 1)
    w._held[pid] = 0.0
    renewed: list[float] = []
    original = env.store.renew

    def renew(worker: str, ids: list[str], lease: float, now: float) -> list[str]:
        renewed.append(now)
        w.stop_requested.set()
        return original(worker, ids, lease, now)

    env.store.renew = renew  # type: ignore[method-assign]
    w._heartbeat()  # returns once stopped
    assert renewed == [T0]
    assert env.row(pid).lease_owner == w.id
    # the renewed lease is measured on the same (fake) clock as claims: it does expire
    env.clock.advance(1.0)
    assert [c.program_id for c in env.store.claim("other", 1, "elsewhere", 10.0, env.clock(), 1)] == [pid]
    assert claim.fence == 1


def test_worker_only_runs_its_program_and_children(env: Env) -> None:
    other = env.start("sleep_day", pid="other")
    pid = env.start("parent", {"x": 2})
    w = env.new_worker(only=pid)
    row = env.drive(pid, w)
    assert row.status == "completed"
    assert env.row(other).status == "running" and env.row(other).last_seq == 1



def test_replay_answers_everything_a_slice_answered_before_running_again(tmp_path: Path) -> None:
    env = Env(tmp_path, checkpoint_every=10**9)  # no checkpoints: loading replays from the start
    pid = env.start("replay_batches")
    row = env.drive(pid)
    assert row.status == "completed", row.error
    fired = [e for e in env.events(pid) if e.type == "timer_fired"]
    assert len(fired) == 12
    for seq in range(2, row.last_seq):  # the state at every event is rebuilt from the log alone
        _machine, at = env.restarted().load(row, upto=seq)
        assert at == seq
