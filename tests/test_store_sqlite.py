"""The SQLite event store's contract: schema versioning, idempotent creation,
gap-free logs, fenced and optimistic commits, leases, outside inputs, pragmas
and atomic group commits. Everything runs against a fresh store in tmp_path.
"""

from __future__ import annotations

import hashlib
import os
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from flowmetal.store import open_store
from flowmetal.store.base import (
    Commit,
    Conflict,
    LeaseLost,
    NewProgram,
    ProgramExists,
    ProgramFinished,
    StoreError,
    UnknownProgram,
)
from flowmetal.store.sqlite import SCHEMA_VERSION, SQLiteStore

HOST = socket.gethostname()
ME = os.getpid()
SOURCE = "def main(x=1):\n    return x\n"


def new(pid: str = "p1", args: dict | None = None, source: str = SOURCE, parent: str | None = None) -> NewProgram:
    return NewProgram(pid, "prog.flow", source, hashlib.sha256(source.encode()).hexdigest(), args if args is not None else {"x": 1},
                      parent_id=parent)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "store.db"


@pytest.fixture
def store(db_path: Path) -> SQLiteStore:
    s = open_store(f"sqlite:///{db_path}")
    assert isinstance(s, SQLiteStore)
    yield s
    s.close()


def raw(db_path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.row_factory = sqlite3.Row
    return conn


def snapshot(db_path: Path) -> dict[str, list[tuple]]:
    """Every row of every table, to prove that a failed operation changed nothing."""
    conn = raw(db_path)
    try:
        return {t: sorted((tuple(r) for r in conn.execute(f"SELECT * FROM {t}")), key=repr)
                for t in ("programs", "events", "checkpoints", "inbox", "sources", "schema_version")}
    finally:
        conn.close()


def claim_one(store: SQLiteStore, worker: str = "w1", now: float = 100.0, lease: float = 10.0,
              pid: int = ME, host: str = HOST, only: str | None = None):
    claims = store.claim(worker, pid, host, lease, now, 10, only)
    assert len(claims) == 1, claims
    return claims[0]


# -- schema -------------------------------------------------------------------------------

def test_schema_version_table(store: SQLiteStore, db_path: Path) -> None:
    rows = raw(db_path).execute("SELECT version FROM schema_version").fetchall()
    assert [r[0] for r in rows] == [SCHEMA_VERSION]
    tables = {r[0] for r in raw(db_path).execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"programs", "events", "checkpoints", "inbox", "sources", "schema_version"} <= tables


def test_reopening_keeps_data_and_version(store: SQLiteStore, db_path: Path) -> None:
    store.create_program(new(), 1.0)
    store.close()
    again = open_store(f"sqlite:///{db_path}")
    assert again.get_program("p1").status == "running"
    assert [r[0] for r in raw(db_path).execute("SELECT version FROM schema_version")] == [SCHEMA_VERSION]
    again.close()


def test_a_schema_6_store_gets_the_timer_indexes_and_keeps_its_sleepers(store: SQLiteStore, db_path: Path) -> None:
    """Schema 7 finds timers, leases and runnable programs through indexes: a store of version 6
    (its old indexes, a sleeping and a runnable program) is migrated on open and works the same."""
    store.create_program(new("sleeper"), 1.0)
    store.create_program(new("ready"), 2.0)
    (c, _) = store.claim("w", 1, "h", 10.0, 3.0, 2)
    store.commit([Commit("sleeper", c.fence, 1, wake_at=50.0)], 4.0)
    store.close()
    conn = raw(db_path)
    for name in ("programs_ready", "programs_timer", "programs_leased"):
        conn.execute(f"DROP INDEX {name}")
    conn.execute("CREATE INDEX programs_wake ON programs (wake_at)")
    conn.execute("CREATE INDEX programs_runnable ON programs (runnable, status)")
    conn.execute("UPDATE schema_version SET version = 6")
    conn.close()
    again = open_store(f"sqlite:///{db_path}")
    indexes = {r[0] for r in raw(db_path).execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"programs_ready", "programs_timer", "programs_leased"} <= indexes
    assert not {"programs_wake", "programs_runnable"} & indexes
    assert again.next_wake() == 50.0
    assert again.claim("w", 1, "h", 10.0, 12.0, 5) == []  # "ready" is still leased, "sleeper" not due
    # (oldest first: "ready" was last updated when it was created; its lease lapsed, its slice never committed)
    assert [c.program_id for c in again.claim("w", 1, "h", 10.0, 60.0, 5)] == ["ready", "sleeper"]
    again.close()


def test_newer_schema_is_refused(store: SQLiteStore, db_path: Path) -> None:
    store.close()
    conn = raw(db_path)
    conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    conn.close()
    with pytest.raises(StoreError, match="schema version"):
        open_store(f"sqlite:///{db_path}")


def test_bad_urls() -> None:
    with pytest.raises(StoreError):
        open_store("mysql://nope")
    with pytest.raises(StoreError):
        open_store("sqlite://")


def test_pragmas_wal_and_synchronous_full(store: SQLiteStore) -> None:
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal"
    assert store.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert store.db.execute("PRAGMA busy_timeout").fetchone()[0] > 0


def test_synchronous_can_be_chosen_in_the_url(db_path: Path) -> None:
    s = open_store(f"sqlite:///{db_path}?synchronous=normal")
    assert s.db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    s.close()


# -- programs ----------------------------------------------------------------------------

def test_create_program_writes_started_event(store: SQLiteStore) -> None:
    assert store.create_program(new(), 5.0) is True
    row = store.get_program("p1")
    assert (row.status, row.last_seq, row.runnable, row.args, row.fence) == ("running", 1, True, {"x": 1}, 0)
    events = store.events("p1")
    assert [(e.seq, e.type) for e in events] == [(1, "started")]
    assert events[0].data["args"] == {"x": 1}
    assert events[0].at == 5.0
    assert store.source(row.source_hash) == ("prog.flow", SOURCE)


def test_create_program_is_idempotent(store: SQLiteStore, db_path: Path) -> None:
    assert store.create_program(new(), 5.0) is True
    before = snapshot(db_path)
    assert store.create_program(new(), 6.0) is False
    assert snapshot(db_path) == before
    with pytest.raises(ProgramExists):
        store.create_program(new(args={"x": 2}), 7.0)
    with pytest.raises(ProgramExists):
        store.create_program(new(source=SOURCE + "# changed\n"), 7.0)
    assert snapshot(db_path) == before


def test_unknown_program(store: SQLiteStore) -> None:
    with pytest.raises(UnknownProgram):
        store.get_program("nope")
    assert store.events("nope") == []


def test_list_programs_by_status(store: SQLiteStore) -> None:
    store.create_program(new("a"), 1.0)
    store.create_program(new("b"), 2.0)
    c = claim_one(store, only="b")
    store.commit([Commit("b", c.fence, 1, events=[("completed", {"result": 1})], status="completed", result=1)],
                 3.0)
    assert [r.id for r in store.list_programs()] == ["a", "b"]
    assert [r.id for r in store.list_programs("completed")] == ["b"]
    assert [r.id for r in store.list_programs("running")] == ["a"]
    assert store.get_program("b").result == 1


# -- commits -----------------------------------------------------------------------------

def test_events_are_gap_free_from_one(store: SQLiteStore) -> None:
    store.create_program(new(), 1.0)
    base = 1
    for i in range(5):
        c = claim_one(store, now=10.0 + i)
        evs = [("output", {"text": f"{i}-{j}"}) for j in range(i + 1)]
        store.commit([Commit("p1", c.fence, base, events=evs, checkpoint=b"ck", runnable=True)], 10.0 + i)
        base += len(evs)
    events = store.events("p1")
    assert [e.seq for e in events] == list(range(1, base + 1))
    assert events[0].type == "started"
    assert store.get_program("p1").last_seq == base
    assert all(e.data["v"] == 1 for e in events)
    assert [e.seq for e in store.events("p1", after=3, upto=6)] == [4, 5, 6]
    assert store.checkpoint("p1") == (base, b"ck")
    assert store.checkpoint("p1", at_or_before=3) == (2, b"ck")


def test_commit_with_old_fence_raises_lease_lost(store: SQLiteStore, db_path: Path) -> None:
    store.create_program(new(), 1.0)
    first = claim_one(store, "w1", now=100.0, lease=10.0)
    store.make_runnable("p1", 101.0)
    second = claim_one(store, "w2", now=200.0)  # w1's lease has expired
    assert second.fence > first.fence
    before = snapshot(db_path)
    with pytest.raises(LeaseLost):
        store.commit([Commit("p1", first.fence, 1, events=[("output", {"text": "stale"})])], 201.0)
    assert snapshot(db_path) == before
    store.commit([Commit("p1", second.fence, 1, events=[("output", {"text": "fresh"})])], 202.0)
    assert [e.data.get("text") for e in store.events("p1")] == [None, "fresh"]


def test_commit_after_release_raises_lease_lost(store: SQLiteStore) -> None:
    store.create_program(new(), 1.0)
    c = claim_one(store)
    store.release("w1", "p1", c.fence)
    with pytest.raises(LeaseLost):
        store.commit([Commit("p1", c.fence, 1, events=[("output", {"text": "x"})])], 2.0)
    assert store.get_program("p1").last_seq == 1


def test_commit_at_stale_base_seq_raises_conflict_and_writes_nothing(store: SQLiteStore, db_path: Path) -> None:
    store.create_program(new(), 1.0)
    store.create_program(new("other"), 1.0)
    c = claim_one(store, only="p1")
    store.commit([Commit("p1", c.fence, 1, events=[("output", {"text": "a"})], keep_lease=True)], 2.0)
    before = snapshot(db_path)
    stale = Commit("p1", c.fence, 1, events=[("output", {"text": "b"})], checkpoint=b"state", status="completed",
                   result=3, sends=[("other", "inbox", "hi")])
    with pytest.raises(Conflict):
        store.commit([stale], 3.0)
    assert snapshot(db_path) == before
    assert store.inbox("other") == []


def test_commit_applies_sends_starts_and_consumed(store: SQLiteStore) -> None:
    store.create_program(new("a"), 1.0)
    store.create_program(new("b"), 1.0)
    store.send("a", "inbox", {"m": 1}, 2.0)
    (msg,) = store.inbox("a")
    c = claim_one(store, only="a")
    child = NewProgram("a.1", "child.flow", "def main():\n    return 2\n", "child-hash", {"y": 1}, parent_id="a")
    store.commit([Commit("a", c.fence, 1, events=[("message_received", {"request": 1, "message": {"m": 1}})],
                         consumed=[msg.id], sends=[("b", "ch", [1, 2])], starts=[child])], 3.0)
    assert store.inbox("a") == []
    assert [(m.channel, m.message) for m in store.inbox("b")] == [("ch", [1, 2])]
    assert store.get_program("b").runnable
    kid = store.get_program("a.1")
    assert (kid.parent_id, kid.args, kid.status) == ("a", {"y": 1}, "running")
    assert store.get_program("a").lease_owner is None  # the commit released the lease


def test_group_commit_is_atomic(store: SQLiteStore, db_path: Path) -> None:
    for pid in ("a", "b", "c"):
        store.create_program(new(pid), 1.0)
    claims = {c.program_id: c for c in store.claim("w1", ME, HOST, 10.0, 100.0, 10)}
    assert set(claims) == {"a", "b", "c"}
    before = snapshot(db_path)
    good_a = Commit("a", claims["a"].fence, 1, events=[("output", {"text": "a"})], checkpoint=b"a",
                    sends=[("c", "inbox", "from a")])
    bad_b = Commit("b", claims["b"].fence - 1, 1, events=[("output", {"text": "b"})])
    good_c = Commit("c", claims["c"].fence, 1, events=[("output", {"text": "c"})], status="completed", result=1)
    with pytest.raises(LeaseLost):
        store.commit([good_a, bad_b, good_c], 101.0)
    assert snapshot(db_path) == before
    conflicting_b = Commit("b", claims["b"].fence, 0, events=[("output", {"text": "b"})])
    with pytest.raises(Conflict):
        store.commit([good_a, good_c, conflicting_b], 101.0)
    assert snapshot(db_path) == before
    store.commit([good_a, good_c], 102.0)
    assert store.get_program("a").last_seq == 2
    assert store.get_program("c").status == "completed"
    assert store.get_program("b").last_seq == 1


# -- leases ------------------------------------------------------------------------------

def test_claim_only_runnable_or_due(store: SQLiteStore) -> None:
    store.create_program(new(), 1.0)
    c = claim_one(store)
    store.commit([Commit("p1", c.fence, 1, events=[("effect_requested", {"request": 1})], wake_at=150.0)], 101.0)
    assert store.claim("w1", ME, HOST, 10.0, 120.0, 10) == []  # waiting, timer not due
    assert store.next_wake() == 150.0
    assert [x.program_id for x in store.claim("w1", ME, HOST, 10.0, 150.0, 10)] == ["p1"]


def test_claim_lease_excludes_a_second_claimer_until_expiry(store: SQLiteStore) -> None:
    store.create_program(new(), 1.0)
    first = claim_one(store, "w1", now=100.0, lease=10.0)
    assert first.fence == 1
    store.send("p1", "inbox", "wake up", 101.0)  # runnable again while leased
    assert store.claim("w2", ME, HOST, 10.0, 105.0, 10) == []
    assert store.claim("w2", ME, HOST, 10.0, 109.9, 10) == []
    # a live holder can renew
    assert store.renew("w1", ["p1"], 10.0, 109.0) == ["p1"]
    assert store.claim("w2", ME, HOST, 10.0, 115.0, 10) == []
    second = claim_one(store, "w2", now=119.5)
    assert second.fence > first.fence
    assert store.get_program("p1").lease_owner == "w2"
    assert store.renew("w1", ["p1"], 10.0, 120.0) == []  # w1 no longer holds it


def test_expired_lease_of_an_unfinished_slice_is_reclaimed(store: SQLiteStore) -> None:
    """A worker (on another machine, or hung) claimed and never committed: once its lease
    expires the program must be claimable again even though nothing new arrived."""
    store.create_program(new(), 1.0)
    first = claim_one(store, "w1", now=100.0, lease=10.0, host="another-machine")
    assert store.claim("w2", ME, HOST, 10.0, 105.0, 10) == []
    second = claim_one(store, "w2", now=111.0)
    assert second.fence == first.fence + 1


def test_dead_holder_on_this_host_is_taken_over_at_once(store: SQLiteStore) -> None:
    store.create_program(new(), 1.0)
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    dead_pid = proc.pid
    first = claim_one(store, "dead-worker", now=100.0, lease=1000.0, pid=dead_pid)
    # the lease has 999 s left, but its holder's process is gone
    second = claim_one(store, "w2", now=101.0)
    assert second.fence == first.fence + 1
    assert store.get_program("p1").lease_owner == "w2"
    with pytest.raises(LeaseLost):
        store.commit([Commit("p1", first.fence, 1, events=[("output", {"text": "zombie"})])], 102.0)


def test_live_holder_on_another_host_is_not_taken_over(store: SQLiteStore) -> None:
    store.create_program(new(), 1.0)
    claim_one(store, "far", now=100.0, lease=1000.0, pid=999_999_999, host="elsewhere")
    store.make_runnable("p1", 100.0)
    assert store.claim("w2", ME, HOST, 10.0, 101.0, 10) == []


def test_claim_only_and_children(store: SQLiteStore) -> None:
    for pid in ("p", "p.1", "p2", "q"):
        store.create_program(new(pid), 1.0)
    got = sorted(c.program_id for c in store.claim("w1", ME, HOST, 10.0, 100.0, 10, "p"))
    assert got == ["p", "p.1"]


def test_claim_only_is_not_a_pattern(store: SQLiteStore) -> None:
    for pid in ("a_b", "a_b.1", "a_b.1.2", "axb", "axb.1", "a%", "ab.1"):
        store.create_program(new(pid), 1.0)
    got = sorted(c.program_id for c in store.claim("w1", ME, HOST, 10.0, 100.0, 10, "a_b"))
    assert got == ["a_b", "a_b.1", "a_b.1.2"]
    got = sorted(c.program_id for c in store.claim("w1", ME, HOST, 10.0, 100.0, 10, "a%"))
    assert got == ["a%"]


def test_claim_respects_limit(store: SQLiteStore) -> None:
    for i in range(5):
        store.create_program(new(f"p{i}"), float(i))
    assert len(store.claim("w1", ME, HOST, 10.0, 100.0, 2)) == 2
    assert len(store.claim("w1", ME, HOST, 10.0, 100.0, 10)) == 3


# -- outside inputs ----------------------------------------------------------------------

def test_send_queues_and_makes_runnable(store: SQLiteStore) -> None:
    store.create_program(new(), 1.0)
    claim_one(store)
    store.commit([Commit("p1", 1, 1, events=[("effect_requested", {"request": 1})])], 2.0)
    assert not store.get_program("p1").runnable
    store.send("p1", "inbox", {"a": [1, 2]}, 3.0)
    store.send("p1", "other", "x", 3.0)
    assert store.get_program("p1").runnable
    assert [(m.channel, m.message) for m in store.inbox("p1")] == [("inbox", {"a": [1, 2]}), ("other", "x")]


def test_send_to_unknown_or_finished_changes_nothing(store: SQLiteStore, db_path: Path) -> None:
    store.create_program(new(), 1.0)
    c = claim_one(store)
    store.commit([Commit("p1", c.fence, 1, events=[("completed", {"result": 1})], status="completed", result=1)],
                 2.0)
    before = snapshot(db_path)
    with pytest.raises(UnknownProgram):
        store.send("nope", "inbox", 1, 3.0)
    with pytest.raises(ProgramFinished):
        store.send("p1", "inbox", 1, 3.0)
    with pytest.raises(ProgramFinished):
        store.request_cancel("p1", 3.0)
    with pytest.raises(UnknownProgram):
        store.request_cancel("nope", 3.0)
    with pytest.raises(ProgramFinished):
        store.make_runnable("p1", 3.0)
    assert snapshot(db_path) == before


def test_request_cancel_marks_and_wakes(store: SQLiteStore) -> None:
    store.create_program(new(), 1.0)
    claim_one(store)
    store.commit([Commit("p1", 1, 1, events=[("effect_requested", {"request": 1})])], 2.0)
    store.request_cancel("p1", 3.0)
    row = store.get_program("p1")
    assert row.cancel_requested and row.runnable


def test_finished_program_is_never_claimed(store: SQLiteStore) -> None:
    store.create_program(new(), 1.0)
    c = claim_one(store)
    store.commit([Commit("p1", c.fence, 1, events=[("failed", {"error": "x"})], status="failed", error="x",
                         runnable=True)], 2.0)
    row = store.get_program("p1")
    assert (row.status, row.error, row.runnable) == ("failed", "x", False)
    assert store.claim("w1", ME, HOST, 10.0, 1e9, 10) == []
