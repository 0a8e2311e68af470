"""Moving programs between stores (`flowmetal export` / `import`) and forking them
(`flowmetal fork`), end to end with real `flowmetal` processes on SQLite stores in
tmp_path — and, when FLOWMETAL_TEST_POSTGRES_URL is set and the PostgreSQL store is
available, through PostgreSQL and back."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from cli_checks import kill_all, one_clear_line, wait_for
from flowmetal.runtime.driver import Runtime
from flowmetal.runtime.worker import Worker
from flowmetal.store import open_store
from flowmetal.store.base import (
    FINISHED,
    Commit,
    Event,
    NewCall,
    ProgramDump,
    ProgramFinished,
    Store,
    StoreError,
)
from flowmetal.store.fmx import _CALL_FIELDS, _CALLBACK_FIELDS, FmxError, dump_fmx, load_fmx
from flowmetal.store.shared import CALL_COLUMNS, CALLBACK_COLUMNS

FLOWS = Path(__file__).parent / "flows"
FLOWMETAL = [sys.executable, "-m", "flowmetal"]


class Env:
    """Runs `flowmetal` in tmp_path; stores are named by URL."""

    def __init__(self, tmp_path: Path) -> None:
        self.cwd = tmp_path
        self.a = f"sqlite:///{tmp_path / 'a.db'}"  # sqlite:////abs/a.db
        self.b = f"sqlite:///{tmp_path / 'b.db'}"
        self.env = {k: v for k, v in os.environ.items() if k != "FLOWMETAL_STORE"}
        self.procs: list[subprocess.Popen[str]] = []

    def __call__(self, *args: str, store: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*FLOWMETAL, *args, "--store", store], capture_output=True, text=True, timeout=30,
                              cwd=self.cwd, env=self.env)

    def ok(self, *args: str, store: str) -> str:
        r = self(*args, store=store)
        assert r.returncode == 0, (args, r.stdout, r.stderr)
        return r.stdout

    def worker(self, store: str) -> subprocess.Popen[str]:
        p = subprocess.Popen([*FLOWMETAL, "worker", "--store", store], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, cwd=self.cwd, env=self.env)
        self.procs.append(p)
        return p

    # setup in process (each `flowmetal` process loads the runtime: slow); the commands under
    # test run as real processes
    def create(self, name: str, pid: str, store: str, args: dict[str, Any] | None = None) -> str:
        with _opened(store) as s:
            return Runtime(s).start(str(FLOWS / f"{name}.flow"), args, program_id=pid)

    def send(self, pid: str, message: Any, store: str) -> None:
        with _opened(store) as s:
            s.send(pid, "inbox", message, time.time())

    def settle(self, pid: str, store: str) -> str:
        """Run a program until it finishes or waits for the outside (like `flowmetal resume`)."""
        with _opened(store) as s:
            if s.get_program(pid).status not in FINISHED:
                s.make_runnable(pid, time.time())

            def done() -> bool:
                row = s.get_program(pid)
                return row.status in FINISHED or (row.status == "waiting" and not row.runnable
                                                  and row.wake_at is None)

            Worker(Runtime(s), only=pid, notify=False).run(until=done)
            return s.get_program(pid).status

    def row(self, pid: str, store: str) -> dict[str, Any]:
        with _opened(store) as s:
            return s.get_program(pid).to_json()

    def events(self, pid: str, store: str) -> list[Event]:
        with _opened(store) as s:
            return s.events(pid)

    def programs(self, store: str) -> list[str]:
        with _opened(store) as s:
            return [r.id for r in s.list_programs()]


class _opened:
    def __init__(self, url: str) -> None:
        self.store = open_store(url)

    def __enter__(self) -> Store:
        return self.store

    def __exit__(self, *exc: object) -> None:
        self.store.close()


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = Env(tmp_path)
    yield e
    kill_all(e.procs)  # only the processes this test started


def stop(p: subprocess.Popen[str]) -> None:
    p.send_signal(signal.SIGTERM)
    p.wait(timeout=20)
    assert p.returncode == 0, p.stderr.read() if p.stderr else ""


def one_slice(url: str, pid: str) -> None:
    """Run a single slice of a program in process (setup: leaves it in its first wait)."""
    with _opened(url) as s:
        assert Worker(Runtime(s), only=pid, notify=False).step()


def assert_continuous(events: list[Event], before: list[Event]) -> None:
    """The history is the one from before the move, then new events: numbered 1..N, no gap."""
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert [(e.seq, e.type, e.data, e.at) for e in events[:len(before)]] == \
        [(e.seq, e.type, e.data, e.at) for e in before]


def output(events: list[Event]) -> str:
    return "".join(e.data["text"] for e in events if e.type == "output")


# -- moving a live program --------------------------------------------------------------------

def test_detached_export_continues_in_another_store(env: Env, tmp_path: Path) -> None:
    pid = env.create("move_wait", "p1", env.a, {"tag": "t"})
    env.send(pid, "one", env.a)
    assert env.settle(pid, env.a) == "waiting"  # blocked in its 2nd receive()
    before = env.events(pid, env.a)
    fmx = tmp_path / "p1.fmx"
    assert env.ok("export", pid, "--detach", "-o", str(fmx), store=env.a) == ""
    doc = json.loads(fmx.read_text())
    assert doc["format"] == "flowmetal-export" and doc["version"] == 1 and doc["detached"] is True
    assert doc["origin"] == env.a and doc["program"]["status"] == "waiting"
    assert len(doc["events"]) == len(before)

    # the source lets go: status moved, sends refused, its workers never run it again
    src = env.row(pid, env.a)
    assert src["status"] == "moved" and src["error"] == f"moved to export file {fmx}"
    line = one_clear_line(env("send", pid, '"lost"', store=env.a))
    assert "no longer runs" in line and "moved to export file" in line
    line = one_clear_line(env("result", pid, store=env.a))
    assert "moved to export file" in line
    assert env.ok("list", "--status", "moved", store=env.a).splitlines()[1].split()[0] == pid
    source_worker = env.worker(env.a)

    assert env.ok("import", str(fmx), store=env.b).strip() == pid
    env.ok("send", pid, '"two"', store=env.b)
    dest_worker = env.worker(env.b)
    wait_for(lambda: env.row(pid, env.b)["status"] == "completed")
    stop(dest_worker)
    stop(source_worker)
    assert env.row(pid, env.b)["result"] == {"tag": "t", "got": ["one", "two"]}
    assert json.loads(env.ok("result", pid, store=env.b)) == {"tag": "t", "got": ["one", "two"]}
    after = env.events(pid, env.b)
    assert_continuous(after, before)
    assert [e.type for e in after[len(before):]] == ["message_received", "output", "completed"]
    assert output(after) == "start t\nfirst one\nsecond two\n"  # nothing printed twice
    # the source still holds the history up to the move, and nothing more
    assert env.events(pid, env.a) == before and env.row(pid, env.a)["status"] == "moved"

    # a moved program re-exported with --detach gives its frozen state again (a lost file)
    again = tmp_path / "again.fmx"
    env.ok("export", pid, "--detach", "-o", str(again), store=env.a)
    dump, meta = load_fmx(again.read_bytes())
    assert meta.detached and dump.row.status == "waiting" and dump.events == before
    # ... but not without: that file says the program had left its store
    plain = tmp_path / "plain.fmx"
    env.ok("export", pid, "-o", str(plain), store=env.a)
    line = one_clear_line(env("import", str(plain), store=env.b))
    assert "already been moved away" in line


def test_move_while_asleep_keeps_the_timer(env: Env, tmp_path: Path) -> None:
    pid = env.create("move_sleep", "s1", env.a)
    env.send(pid, "hi", env.a)
    one_slice(env.a, pid)  # received "hi", now in sleep(1)
    row = env.row(pid, env.a)
    assert row["status"] == "waiting" and row["wake_at"] is not None
    before = env.events(pid, env.a)
    # to standard output, as `flowmetal export ID --detach > FILE` would
    r = env("export", pid, "--detach", store=env.a)
    assert r.returncode == 0, r.stderr
    fmx = tmp_path / "s1.fmx"
    fmx.write_text(r.stdout)
    assert env.ok("import", str(fmx), store=env.b).strip() == pid
    assert env.row(pid, env.b)["wake_at"] == row["wake_at"]  # the timer is not restarted by the move
    env.ok("resume", pid, store=env.b)
    moved = env.row(pid, env.b)
    assert moved["status"] == "completed" and moved["result"] == "hi!"
    after = env.events(pid, env.b)
    assert_continuous(after, before)
    fired = [e for e in after if e.type == "timer_fired"]
    assert len(fired) == 1 and fired[0].at >= row["wake_at"]
    assert output(after) == "woke\n"


def test_import_refuses_a_program_still_live_elsewhere(env: Env, tmp_path: Path) -> None:
    pid = env.create("move_wait", "live", env.a)
    fmx = tmp_path / "live.fmx"
    env.ok("export", pid, "-o", str(fmx), store=env.a)
    assert json.loads(fmx.read_text())["detached"] is False
    r = env("import", str(fmx), store=env.b)
    line = one_clear_line(r)
    assert r.returncode == 2
    assert "refusing to import program live" in line and f"still running in {env.a}" in line and "--detach" in line
    assert env.programs(env.b) == []  # nothing written
    assert env.row(pid, env.a)["status"] == "running"  # and the source is untouched

    # a finished program is no longer live anywhere: a copy is just an archive
    done = env.create("move_choice", "done", env.a)
    env.send(done, "right", env.a)
    assert env.settle(done, env.a) == "completed"
    r = env("export", done, "--detach", store=env.a)
    assert r.returncode == 2 and "nothing to detach" in one_clear_line(r)
    archive = tmp_path / "done.fmx"
    env.ok("export", done, "-o", str(archive), store=env.a)
    assert env.ok("import", str(archive), store=env.b).strip() == done
    assert json.loads(env.ok("result", done, store=env.b)) == "only right"
    assert env.events(done, env.b) == env.events(done, env.a)
    # importing it twice: the id is taken
    line = one_clear_line(env("import", str(archive), store=env.b))
    assert "already exists" in line


def _corrupt(doc: dict[str, Any], how: str) -> bytes:
    d = json.loads(json.dumps(doc))
    if how == "future":
        d["version"] = 2
    elif how == "format":
        d["format"] = "something-else"
    elif how == "seq":
        d["events"][1]["seq"] = "2"
    elif how == "gap":
        del d["events"][1]
    elif how == "missing":
        del d["program"]["status"]
    elif how == "status":
        d["program"]["status"] = "sleeping"
    elif how == "base64":
        d["checkpoint"]["state"] = "not base64!"
    elif how == "source":
        d["source"] += "\n# tampered\n"
    elif how == "detached":
        d["detached"] = "yes"
    return json.dumps(d).encode()


@pytest.mark.parametrize("how, expected", [
    ("future", "format version 2; this Flowmetal reads up to version 1 — upgrade Flowmetal"),
    ("format", "not a Flowmetal export file"),
    ("seq", "events[1].seq: expected an integer, got a string \"2\""),
    ("gap", "events[1].seq: expected 2"),
    ("missing", "program.status is missing"),
    ("status", "program.status: expected one of running, waiting"),
    ("base64", "checkpoint.state: expected base64 data"),
    ("source", "does not match its hash"),
    ("detached", "detached: expected true or false, got a string"),
])
def test_load_fmx_rejects_malformed_documents(tmp_path: Path, how: str, expected: str) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    with _opened(url) as s:
        pid = Runtime(s).start(str(FLOWS / "move_wait.flow"), program_id="m")
        Worker(Runtime(s, checkpoint_every=1), only=pid, notify=False).step()  # so it has a checkpoint
        doc = json.loads(dump_fmx(s.export_program(pid), detached=True, origin=url))
    bad = _corrupt(doc, how)
    if how == "source":  # the document is well-formed; `import` checks the source against its hash
        load_fmx(bad)
        return
    with pytest.raises(FmxError) as e:
        load_fmx(bad)
    assert expected in str(e.value)


def test_import_of_a_malformed_file_is_one_clear_error_and_writes_nothing(env: Env, tmp_path: Path) -> None:
    with _opened(env.a) as s:
        pid = Runtime(s).start(str(FLOWS / "move_wait.flow"), program_id="m")
        doc = json.loads(dump_fmx(s.export_program(pid), detached=True, origin=env.a))
    cases = {
        "future.fmx": (_corrupt(doc, "future"), "upgrade Flowmetal"),
        "tampered.fmx": (_corrupt(doc, "source"), "does not match its hash"),
        "truncated.fmx": (json.dumps(doc).encode()[:200], "malformed JSON"),
        "binary.fmx": (b"\xff\xfe\x00garbage", "not UTF-8"),
        "list.fmx": (b"[1, 2]", "not a Flowmetal export file"),
    }
    for name, (data, expected) in cases.items():
        (tmp_path / name).write_bytes(data)
        r = env("import", str(tmp_path / name), store=env.b)
        assert r.returncode == 2 and expected in one_clear_line(r), (name, r.stderr)
    r = env("import", str(tmp_path / "absent.fmx"), store=env.b)
    assert "no such file" in one_clear_line(r)
    assert env.programs(env.b) == []


# -- the store level: calls and callbacks travel too ---------------------------------------------

def test_dump_round_trip_with_calls_and_callbacks(tmp_path: Path) -> None:
    # (callbacks' options and calls' lost attempts may be absent from older files: read beside the
    # checked fields)
    assert (*_CALL_FIELDS, "lost") == CALL_COLUMNS and (*_CALLBACK_FIELDS, "options") == CALLBACK_COLUMNS
    a, b = open_store(f"sqlite:///{tmp_path / 'a.db'}"), open_store(f"sqlite:///{tmp_path / 'b.db'}")
    try:
        pid = Runtime(a).start(str(FLOWS / "move_wait.flow"), program_id="c")
        claim = a.claim("w", os.getpid(), "h", 10.0, time.time(), 1)[0]
        call = NewCall("c:2", pid, "reply", "function", "double", {"x": [1, 2.5, None]},
                       {"max_attempts": 3}, attempt_timeout=5.0)
        a.commit([Commit(pid, claim.fence, 1, events=[("output", {"text": "hi\n"})], checkpoint=b"\x00state\xff",
                         waiting_on={"waits": []}, calls=[call], callbacks=[("tok", "hook", {"title": "Approve?"})])], time.time())
        a.send(pid, "inbox", {"n": float("inf")}, time.time())
        dump = a.export_program(pid)
        assert dump.checkpoint == (2, b"\x00state\xff")
        assert dump.calls[0]["payload"] == {"x": [1, 2.5, None]} and dump.calls[0]["status"] == "pending"
        assert dump.callbacks[0]["token"] == "tok" and dump.callbacks[0]["status"] == "open"
        assert json.loads(dump.callbacks[0]["options"]) == {"title": "Approve?"}
        doc = dump_fmx(dump, detached=True, origin=a.url)
        assert base64.b64decode(json.loads(doc)["checkpoint"]["state"]) == b"\x00state\xff"
        loaded, meta = load_fmx(doc)
        assert meta.origin == a.url and meta.detached and meta.version == 1
        assert _comparable(loaded) == _comparable(dump)

        a.mark_moved(pid, "elsewhere", time.time())
        with pytest.raises(ProgramFinished, match="moved to elsewhere"):
            a.send(pid, "inbox", 1, time.time())
        with pytest.raises(ProgramFinished):
            a.mark_moved(pid, "twice", time.time())
        assert a.get_call("c:2").status == "cancelled"
        assert a.deliver_callback("tok", {}, time.time()) == "closed"
        assert a.claim("w", os.getpid(), "h", 10.0, time.time() + 100, 10) == []

        b.import_program(loaded, time.time())
        got = b.export_program(pid)
        assert _comparable(got) == _comparable(dump)
        assert b.get_program(pid).runnable and b.get_program(pid).lease_owner is None
        assert b.get_call("c:2").status == "pending" and b.deliver_callback("tok", {"ok": 1}, time.time()) == "accepted"
        with pytest.raises(StoreError, match="already exists"):
            b.import_program(loaded, time.time())
    finally:
        a.close()
        b.close()


def _comparable(d: ProgramDump) -> Any:
    """A dump without what a store assigns on import (inbox message ids, the runnable flag)."""
    row = {k: v for k, v in vars(d.row).items() if k not in ("runnable", "lease_owner")}
    return (row, d.source, d.events, d.checkpoint, [(m.channel, repr(m.message)) for m in d.inbox], d.calls,
            d.callbacks)


# -- fork ------------------------------------------------------------------------------------------

def test_fork_at_an_earlier_event_takes_another_path(env: Env) -> None:
    pid = env.create("move_choice", "orig", env.a)
    env.send(pid, "right", env.a)
    assert env.settle(pid, env.a) == "completed"
    original = env.events(pid, env.a)
    # fork where it was waiting for its first message, and give it another one
    at = next(e.seq for e in original if e.type == "effect_requested")
    fork_id = env.ok("fork", pid, "--at", str(at), "--send", '"left"', "--send", "7", store=env.a).strip()
    assert fork_id.startswith("orig-fork-") and fork_id != pid
    assert env.settle(fork_id, env.a) == "completed"
    assert json.loads(env.ok("result", fork_id, store=env.a)) == "left then 7"
    forked = env.events(fork_id, env.a)
    assert [e.seq for e in forked] == list(range(1, len(forked) + 1))
    assert forked[0].data["forked_from"] == {"program": pid, "seq": at}
    assert [(e.type, e.data) for e in forked[1:at]] == [(e.type, e.data) for e in original[1:at]]
    assert output(forked) == "went left\n"
    # the original is untouched
    assert env.events(pid, env.a) == original
    assert json.loads(env.ok("result", pid, store=env.a)) == "only right"

    # a chosen id, messages on a channel
    named = env.ok("fork", pid, "--at", str(at), "--id", "mine", "--send", '"up"', "--channel", "inbox",
                   store=env.a).strip()
    assert named == "mine"
    env.settle(named, env.a)
    assert env.row(named, env.a)["result"] == "only up"
    with _opened(env.a) as s:  # its history, with the wait re-recorded after the fork point, replays
        row = s.get_program(named)
        for seq in range(1, row.last_seq + 1):
            assert Runtime(s).load(row, upto=seq)[1] == seq

    last = len(original)
    for args, expected in [
        (["--at", "0"], f"--at must be between 1 and {last}"),
        (["--at", str(last + 1)], f"--at must be between 1 and {last}"),
        (["--at", str(last)], "is its end (completed)"),
        (["--at", str(at), "--id", "mine"], "already exists"),
        (["--at", str(at), "--send", "{nope"], "malformed JSON"),
    ]:
        r = env("fork", pid, *args, store=env.a)
        assert r.returncode == 2 and expected in one_clear_line(r), (args, r.stderr)
    r = env("fork", "nobody", "--at", "1", store=env.a)
    assert "no program with id 'nobody'" in one_clear_line(r)
    assert sorted(env.programs(env.a)) == sorted([pid, fork_id, "mine"])


def test_fork_of_a_program_with_children_says_they_are_not_copied(env: Env) -> None:
    pid = env.create("parent", "par", env.a, {"x": 4})
    assert env.settle(pid, env.a) == "waiting"  # on its child's result
    at = len(env.events(pid, env.a))
    r = env("fork", pid, "--at", str(at), "--id", "par-fork", store=env.a)
    assert r.returncode == 0 and r.stdout.strip() == "par-fork"
    assert r.stderr.splitlines() == [
        f"flowmetal: warning: par started 1 child program(s) before event {at} (par.1); "
        "the fork does not copy them, so it never hears from them"]
    assert sorted(env.programs(env.a)) == ["par", "par-fork", "par.1"]  # no child of the fork
    # before the child was started, there is nothing to warn about
    quiet = env("fork", pid, "--at", "1", "--id", "early", store=env.a)
    assert quiet.returncode == 0 and quiet.stderr == ""


def test_fork_of_a_waiting_program_in_another_state(env: Env) -> None:
    pid = env.create("move_wait", "w", env.a)
    env.send(pid, "one", env.a)
    env.settle(pid, env.a)  # waiting in its 2nd receive()
    original = env.events(pid, env.a)
    fork_id = env.ok("fork", pid, "--at", str(len(original)), "--send", '"other"', store=env.a).strip()
    env.settle(fork_id, env.a)
    assert env.row(fork_id, env.a)["result"] == {"tag": "x", "got": ["one", "other"]}
    assert env.row(pid, env.a)["status"] == "waiting" and env.events(pid, env.a) == original


# -- through PostgreSQL ---------------------------------------------------------------------------

@pytest.fixture
def pg_url() -> Iterator[str]:
    base = os.environ.get("FLOWMETAL_TEST_POSTGRES_URL")
    if not base:
        pytest.skip("FLOWMETAL_TEST_POSTGRES_URL is not set")
    schema = f"fm_move_{uuid.uuid4().hex[:10]}"
    parts = urlsplit(base)
    url = urlunsplit(parts._replace(query="&".join(q for q in (parts.query, f"schema={schema}") if q)))
    try:
        store = open_store(url)
    except StoreError as e:
        if "not available" in str(e):
            pytest.skip(f"the PostgreSQL store is not available: {e}")
        raise
    store.close()
    try:
        yield url
    finally:
        import psycopg
        from psycopg import sql

        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def test_round_trip_through_postgres_mid_wait(env: Env, tmp_path: Path, pg_url: str) -> None:
    pid = env.create("move_wait", "pg", env.a, {"tag": "pg"})
    env.send(pid, "one", env.a)
    env.settle(pid, env.a)
    before = env.events(pid, env.a)
    to_pg = tmp_path / "to_pg.fmx"
    env.ok("export", pid, "--detach", "-o", str(to_pg), store=env.a)
    assert env.ok("import", str(to_pg), store=pg_url).strip() == pid
    assert env.row(pid, pg_url)["status"] == "waiting"
    back = tmp_path / "back.fmx"
    env.ok("export", pid, "--detach", "-o", str(back), store=pg_url)
    assert env.row(pid, pg_url)["status"] == "moved"
    assert env.ok("import", str(back), store=env.b).strip() == pid
    env.ok("send", pid, '"two"', store=env.b)
    env.settle(pid, env.b)
    assert env.row(pid, env.b)["result"] == {"tag": "pg", "got": ["one", "two"]}
    after = env.events(pid, env.b)
    assert_continuous(after, before)
    assert output(after) == "start pg\nfirst one\nsecond two\n"



def test_detach_notices_a_message_that_arrived_during_the_export(env: Env, tmp_path: Path) -> None:
    """A message sent between reading the program and marking it moved must not be lost: the
    document written is then stale, which `export` says; re-exporting gives the final state."""
    pid = env.create("move_wait", "race", env.a, {"tag": "x" * 300_000})  # more than a pipe holds
    env.settle(pid, env.a)
    p = subprocess.Popen([*FLOWMETAL, "export", pid, "--detach", "--store", env.a], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, cwd=env.cwd, env=env.env)
    assert p.stdout is not None and p.stderr is not None
    first = p.stdout.read(4096)  # the export has read the program and is blocked writing it out
    env.send(pid, "meanwhile", env.a)
    rest = p.stdout.read()
    err = p.stderr.read().decode()
    assert p.wait(timeout=20) == 1
    assert "changed while it was being exported" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert load_fmx(first + rest)[0].inbox == []  # the stale document lacks the message
    assert env.row(pid, env.a)["status"] == "moved"
    fmx = tmp_path / "final.fmx"
    env.ok("export", pid, "--detach", "-o", str(fmx), store=env.a)
    assert env.ok("import", str(fmx), store=env.b).strip() == pid
    assert env.settle(pid, env.b) == "waiting"
    assert env.row(pid, env.b)["waiting_on"]["waits"][0]["request"] == 2  # "meanwhile" was received
    assert [e.data["message"] for e in env.events(pid, env.b) if e.type == "message_received"] == ["meanwhile"]


def test_detach_does_not_let_go_when_the_file_is_not_fully_written(env: Env) -> None:
    pid = env.create("move_wait", "cut", env.a, {"tag": "x" * 300_000})  # more than a pipe holds
    p = subprocess.Popen([*FLOWMETAL, "export", pid, "--detach", "--store", env.a], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, cwd=env.cwd, env=env.env)
    assert p.stdout is not None and p.stderr is not None
    assert len(os.read(p.stdout.fileno(), 10)) == 10
    p.stdout.close()  # the reader goes away mid-document
    err = p.stderr.read().decode()
    assert p.wait(timeout=20) == 2
    assert err.strip() == "flowmetal: error: cannot write the export to standard output: Broken pipe"
    assert env.row(pid, env.a)["status"] == "running"  # still here, still runnable here


def test_the_origin_written_into_a_file_carries_no_password() -> None:
    from flowmetal.cli.move import _public_url

    assert _public_url("postgresql://fm:s3cret@db:5432/x?schema=a") == "postgresql://fm:***@db:5432/x?schema=a"
    assert _public_url("sqlite:////tmp/a.db") == "sqlite:////tmp/a.db"
