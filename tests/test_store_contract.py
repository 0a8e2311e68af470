"""The store contract, run against every backend (`any_store`: SQLite and PostgreSQL).

Whatever a backend does inside, these are the semantics the runtime relies on:
idempotent creation, gap-free logs, fenced and optimistic commits, atomic group
commits, leases, outside inputs, connector calls with attempts and retries,
single-use callbacks, wake-ups and moving a program between stores. Times are
passed explicitly, so nothing here waits for a clock.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from flowmetal.store import open_store, retry
from flowmetal.store.base import (
    BadCursor,
    CallOutcome,
    Claim,
    Commit,
    Conflict,
    LeaseLost,
    NewCall,
    NewProgram,
    ProgramExists,
    ProgramFinished,
    ProgramQuery,
    Store,
    UnknownCall,
    UnknownProgram,
)
from flowmetal.store.retry import normalize

HOST = socket.gethostname()
ME = os.getpid()
SOURCE = "def main(x=1):\n    return x\n"


def new(pid: str = "p1", args: dict[str, Any] | None = None, source: str = SOURCE,
        parent: str | None = None) -> NewProgram:
    return NewProgram(pid, "prog.flow", source, hashlib.sha256(source.encode()).hexdigest(),
                      args if args is not None else {"x": 1}, parent_id=parent)


def claim_one(store: Store, worker: str = "w1", now: float = 100.0, lease: float = 10.0, pid: int = ME,
              host: str = HOST, only: str | None = None) -> Claim:
    claims = store.claim(worker, pid, host, lease, now, 10, only)
    assert len(claims) == 1, claims
    return claims[0]


def snapshot(store: Store, ids: list[str]) -> dict[str, Any]:
    """Everything the API shows about some programs, to prove a failed operation changed nothing."""
    out: dict[str, Any] = {"programs": [dataclasses.asdict(r) for r in store.list_programs()],
                           "calls": [c.to_json() for c in store.list_calls()]}
    for pid in ids:
        out[pid] = (store.events(pid), store.inbox(pid), store.checkpoint(pid))
    return out


def finish(store: Store, pid: str, now: float, status: str = "completed") -> None:
    c = claim_one(store, only=pid, now=now)
    base = store.get_program(pid).last_seq
    store.commit([Commit(pid, c.fence, base, events=[(status, {"result": 1})], status=status, result=1)], now)


# -- programs ---------------------------------------------------------------------------------

def test_create_program_writes_started_event(any_store: Store) -> None:
    assert any_store.create_program(new(), 5.0) is True
    row = any_store.get_program("p1")
    assert (row.status, row.last_seq, row.runnable, row.args, row.fence) == ("running", 1, True, {"x": 1}, 0)
    events = any_store.events("p1")
    assert [(e.seq, e.type, e.at) for e in events] == [(1, "started", 5.0)]
    assert events[0].data["args"] == {"x": 1}
    assert any_store.source(row.source_hash) == ("prog.flow", SOURCE)


def test_create_program_is_idempotent(any_store: Store) -> None:
    assert any_store.create_program(new(), 5.0) is True
    before = snapshot(any_store, ["p1"])
    assert any_store.create_program(new(), 6.0) is False
    assert snapshot(any_store, ["p1"]) == before
    with pytest.raises(ProgramExists):
        any_store.create_program(new(args={"x": 2}), 7.0)
    with pytest.raises(ProgramExists):
        any_store.create_program(new(source=SOURCE + "# changed\n"), 7.0)
    assert snapshot(any_store, ["p1"]) == before


def test_unknown_program(any_store: Store) -> None:
    with pytest.raises(UnknownProgram):
        any_store.get_program("nope")
    assert any_store.events("nope") == []
    assert any_store.checkpoint("nope") is None


def test_list_programs_by_status(any_store: Store) -> None:
    any_store.create_program(new("a"), 1.0)
    any_store.create_program(new("b"), 2.0)
    finish(any_store, "b", 3.0)
    assert [r.id for r in any_store.list_programs()] == ["a", "b"]
    assert [r.id for r in any_store.list_programs("completed")] == ["b"]
    assert [r.id for r in any_store.list_programs("running")] == ["a"]
    assert any_store.get_program("b").result == 1


def test_page_programs_pages_and_filters(any_store: Store) -> None:
    # ten programs, two of them created at the same instant (the id breaks the tie)
    for i in range(10):
        src = SOURCE + f"# {i}\n"
        filename = "jobs/export.flow" if i % 3 == 0 else "deploy.flow"
        any_store.create_program(NewProgram(f"p{i}", filename, src, hashlib.sha256(src.encode()).hexdigest(),
                                            {}), 100.0 + min(i, 8))
    finish(any_store, "p4", 200.0)
    everyone = [f"p{i}" for i in range(10)]

    def walk(query: ProgramQuery, limit: int) -> list[list[str]]:
        pages, cursor = [], None
        while True:
            page = any_store.page_programs(query, limit, cursor)
            pages.append([r.id for r in page.programs])
            if page.next_cursor is None:
                return pages
            cursor = page.next_cursor

    assert walk(ProgramQuery(), 4) == [everyone[:4], everyone[4:8], everyone[8:]]
    assert walk(ProgramQuery(), 5) == [everyone[:5], everyone[5:]]  # no empty last page
    assert walk(ProgramQuery(newest_first=True), 3) == [
        ["p9", "p8", "p7"], ["p6", "p5", "p4"], ["p3", "p2", "p1"], ["p0"]]
    assert any_store.page_programs(limit=None).programs == any_store.list_programs()
    assert [r.id for r in any_store.page_programs(ProgramQuery(status="completed")).programs] == ["p4"]
    assert walk(ProgramQuery(status=("running", "completed")), 6) == [everyone[:6], everyone[6:]]
    assert walk(ProgramQuery(file="export"), 2) == [["p0", "p3"], ["p6", "p9"]]
    assert walk(ProgramQuery(file="EXPORT"), 2) == [[]]
    assert walk(ProgramQuery(created_since=102.0, created_before=105.0), 10) == [["p2", "p3", "p4"]]
    assert walk(ProgramQuery(file="deploy", created_since=107.0, status="running"), 1) == [["p7"], ["p8"]]

    # a cursor resumes after its row even when programs are created meanwhile
    first = any_store.page_programs(ProgramQuery(), 2)
    any_store.create_program(new("a-late", source=SOURCE + "# late\n"), 50.0)  # sorts first, before the cursor
    any_store.create_program(new("z-late", source=SOURCE + "# later\n"), 300.0)
    rest = any_store.page_programs(ProgramQuery(), 100, first.next_cursor)
    assert [r.id for r in rest.programs] == [*everyone[2:], "z-late"] and rest.next_cursor is None

    for bad in ("nope", "", "W10", first.next_cursor + "x"):
        with pytest.raises(BadCursor):
            any_store.page_programs(ProgramQuery(), 2, bad)
    with pytest.raises(BadCursor):  # a cursor of the other order
        any_store.page_programs(ProgramQuery(newest_first=True), 2, first.next_cursor)


def test_iso_times_beside_epoch_times(any_store: Store) -> None:
    any_store.create_program(new(), 1767225600.25)  # 2026-01-01 00:00:00.250 UTC
    row = any_store.get_program("p1").to_json()
    assert row["created_at"] == 1767225600.25 and row["created_at_iso"] == "2026-01-01T00:00:00.250Z"
    assert row["wake_at"] is None and row["wake_at_iso"] is None
    [event] = [e.to_json() for e in any_store.events("p1")]
    assert event["at_iso"] == "2026-01-01T00:00:00.250Z"


# -- commits ------------------------------------------------------------------------------------

def test_events_are_gap_free_and_ordered(any_store: Store) -> None:
    any_store.create_program(new(), 1.0)
    base = 1
    for i in range(5):
        c = claim_one(any_store, now=10.0 + i)
        evs = [("output", {"text": f"{i}-{j}"}) for j in range(i + 1)]
        any_store.commit([Commit("p1", c.fence, base, events=evs, checkpoint=f"ck{base}".encode(), runnable=True)],
                         10.0 + i)
        base += len(evs)
    events = any_store.events("p1")
    assert [e.seq for e in events] == list(range(1, base + 1))
    assert [e.data.get("text") for e in events[1:4]] == ["0-0", "1-0", "1-1"]
    assert all(e.data["v"] == 1 for e in events)
    assert any_store.get_program("p1").last_seq == base
    assert [e.seq for e in any_store.events("p1", after=3, upto=6)] == [4, 5, 6]


def test_checkpoints_at_or_before(any_store: Store) -> None:
    any_store.create_program(new(), 1.0)
    base = 1
    for i in range(3):  # checkpoints at 3, 5, 7
        c = claim_one(any_store, now=10.0 + i)
        any_store.commit([Commit("p1", c.fence, base, events=[("output", {"text": "a"}), ("output", {"text": "b"})],
                                 checkpoint=bytes([0, i, 255]), runnable=True)], 10.0 + i)
        base += 2
    assert any_store.checkpoint("p1") == (7, bytes([0, 2, 255]))
    assert any_store.checkpoint("p1", at_or_before=6) == (5, bytes([0, 1, 255]))
    assert any_store.checkpoint("p1", at_or_before=3) == (3, bytes([0, 0, 255]))
    assert any_store.checkpoint("p1", at_or_before=2) is None


def test_commit_with_old_fence_raises_lease_lost(any_store: Store) -> None:
    any_store.create_program(new(), 1.0)
    first = claim_one(any_store, "w1", now=100.0, lease=10.0)
    any_store.make_runnable("p1", 101.0)
    second = claim_one(any_store, "w2", now=200.0)  # w1's lease has expired
    assert second.fence > first.fence
    before = snapshot(any_store, ["p1"])
    with pytest.raises(LeaseLost):
        any_store.commit([Commit("p1", first.fence, 1, events=[("output", {"text": "stale"})])], 201.0)
    assert snapshot(any_store, ["p1"]) == before
    any_store.commit([Commit("p1", second.fence, 1, events=[("output", {"text": "fresh"})])], 202.0)
    assert [e.data.get("text") for e in any_store.events("p1")] == [None, "fresh"]


def test_commit_after_release_raises_lease_lost(any_store: Store) -> None:
    any_store.create_program(new(), 1.0)
    c = claim_one(any_store)
    any_store.release("w1", "p1", c.fence)
    with pytest.raises(LeaseLost):
        any_store.commit([Commit("p1", c.fence, 1, events=[("output", {"text": "x"})])], 2.0)
    assert any_store.get_program("p1").last_seq == 1


def test_commit_at_stale_base_seq_raises_conflict_and_writes_nothing(any_store: Store) -> None:
    any_store.create_program(new(), 1.0)
    any_store.create_program(new("other"), 1.0)
    c = claim_one(any_store, only="p1")
    any_store.commit([Commit("p1", c.fence, 1, events=[("output", {"text": "a"})], keep_lease=True)], 2.0)
    before = snapshot(any_store, ["p1", "other"])
    stale = Commit("p1", c.fence, 1, events=[("output", {"text": "b"})], checkpoint=b"state", status="completed",
                   result=3, sends=[("other", "inbox", "hi")])
    with pytest.raises(Conflict):
        any_store.commit([stale], 3.0)
    assert snapshot(any_store, ["p1", "other"]) == before


def test_commit_applies_sends_starts_and_consumed(any_store: Store) -> None:
    any_store.create_program(new("a"), 1.0)
    any_store.create_program(new("b"), 1.0)
    any_store.send("a", "inbox", {"m": 1}, 2.0)
    (msg,) = any_store.inbox("a")
    c = claim_one(any_store, only="a")
    claim_one(any_store, only="b")  # b is leased (not runnable) until a's send makes it runnable
    child = NewProgram("a.1", "child.flow", "def main():\n    return 2\n", "child-hash", {"y": 1}, parent_id="a")
    any_store.commit([Commit("a", c.fence, 1, events=[("message_received", {"request": 1, "message": {"m": 1}})],
                             consumed=[msg.id], sends=[("b", "ch", [1, 2]), ("b", "ch", 3)], starts=[child])], 3.0)
    assert any_store.inbox("a") == []
    assert [(m.channel, m.message) for m in any_store.inbox("b")] == [("ch", [1, 2]), ("ch", 3)]
    assert any_store.get_program("b").runnable
    kid = any_store.get_program("a.1")
    assert (kid.parent_id, kid.args, kid.status, kid.runnable) == ("a", {"y": 1}, "running", True)
    assert [e.type for e in any_store.events("a.1")] == ["started"]
    assert any_store.get_program("a").lease_owner is None  # the commit released the lease


def test_group_commit_is_atomic(any_store: Store) -> None:
    for pid in ("a", "b", "c"):
        any_store.create_program(new(pid), 1.0)
    claims = {c.program_id: c for c in any_store.claim("w1", ME, HOST, 10.0, 100.0, 10)}
    assert set(claims) == {"a", "b", "c"}
    before = snapshot(any_store, ["a", "b", "c"])
    good_a = Commit("a", claims["a"].fence, 1, events=[("output", {"text": "a"})], checkpoint=b"a",
                    sends=[("c", "inbox", "from a")])
    bad_b = Commit("b", claims["b"].fence - 1, 1, events=[("output", {"text": "b"})])
    good_c = Commit("c", claims["c"].fence, 1, events=[("output", {"text": "c"})], status="completed", result=1)
    with pytest.raises(LeaseLost):
        any_store.commit([good_a, bad_b, good_c], 101.0)
    assert snapshot(any_store, ["a", "b", "c"]) == before
    conflicting_b = Commit("b", claims["b"].fence, 0, events=[("output", {"text": "b"})])
    with pytest.raises(Conflict):
        any_store.commit([good_a, good_c, conflicting_b], 101.0)
    assert snapshot(any_store, ["a", "b", "c"]) == before
    any_store.commit([good_a, good_c], 102.0)
    assert any_store.get_program("a").last_seq == 2
    assert any_store.get_program("c").status == "completed"
    assert any_store.get_program("b").last_seq == 1
    assert [m.message for m in any_store.inbox("c")] == ["from a"]


def test_group_commit_of_two_slices_of_one_program(any_store: Store) -> None:
    any_store.create_program(new(), 1.0)
    c = claim_one(any_store)
    first = Commit("p1", c.fence, 1, events=[("output", {"text": "1"})], keep_lease=True, checkpoint=b"1")
    second = Commit("p1", c.fence, 2, events=[("output", {"text": "2"})], checkpoint=b"2", runnable=True)
    any_store.commit([first, second], 2.0)
    assert [e.data.get("text") for e in any_store.events("p1")] == [None, "1", "2"]
    assert any_store.checkpoint("p1") == (3, b"2")
    row = any_store.get_program("p1")
    assert (row.last_seq, row.lease_owner, row.runnable) == (3, None, True)


# -- leases ---------------------------------------------------------------------------------------

def test_claim_only_runnable_or_due(any_store: Store) -> None:
    any_store.create_program(new(), 1.0)
    c = claim_one(any_store)
    any_store.commit([Commit("p1", c.fence, 1, events=[("effect_requested", {"request": 1})], wake_at=150.0)],
                     101.0)
    assert any_store.claim("w1", ME, HOST, 10.0, 120.0, 10) == []  # waiting, timer not due
    assert any_store.next_wake() == 150.0
    assert [x.program_id for x in any_store.claim("w1", ME, HOST, 10.0, 150.0, 10)] == ["p1"]


def test_lease_excludes_a_second_claimer_until_expiry(any_store: Store) -> None:
    any_store.create_program(new(), 1.0)
    first = claim_one(any_store, "w1", now=100.0, lease=10.0)
    assert first.fence == 1
    any_store.send("p1", "inbox", "wake up", 101.0)  # runnable again while leased
    assert any_store.claim("w2", ME, HOST, 10.0, 105.0, 10) == []
    assert any_store.renew("w1", ["p1"], 10.0, 109.0) == ["p1"]  # a live holder renews
    assert any_store.claim("w2", ME, HOST, 10.0, 115.0, 10) == []
    second = claim_one(any_store, "w2", now=119.5)
    assert second.fence > first.fence
    assert any_store.get_program("p1").lease_owner == "w2"
    assert any_store.renew("w1", ["p1"], 10.0, 120.0) == []  # w1 no longer holds it
    with pytest.raises(LeaseLost):
        any_store.commit([Commit("p1", first.fence, 1, events=[("output", {"text": "late"})])], 121.0)


def test_expired_lease_of_an_unfinished_slice_is_reclaimed(any_store: Store) -> None:
    any_store.create_program(new(), 1.0)
    first = claim_one(any_store, "w1", now=100.0, lease=10.0, host="another-machine")
    assert any_store.claim("w2", ME, HOST, 10.0, 105.0, 10) == []
    second = claim_one(any_store, "w2", now=111.0)
    assert second.fence == first.fence + 1


def test_dead_holder_on_this_host_is_taken_over_at_once(any_store: Store) -> None:
    any_store.create_program(new(), 1.0)
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    first = claim_one(any_store, "dead-worker", now=100.0, lease=1000.0, pid=proc.pid)
    second = claim_one(any_store, "w2", now=101.0)  # 999 s of lease left, but its process is gone
    assert second.fence == first.fence + 1
    with pytest.raises(LeaseLost):
        any_store.commit([Commit("p1", first.fence, 1, events=[("output", {"text": "zombie"})])], 102.0)


def test_a_waiting_program_of_a_dead_holder_runs_again_only_with_something_to_do(any_store: Store) -> None:
    """Its lease is let go at once, but a slice of a program that waits (say, for a call whose
    attempt died with the same process) would find nothing new: it is claimed again when a
    message arrives (the call run again), its timer is due, or it is cancelled."""
    any_store.create_program(new(), 1.0)
    c = claim_one(any_store, "w1", now=10.0)
    any_store.commit([Commit("p1", c.fence, 1, events=[("output", {"text": "waits"})], wake_at=500.0)], 11.0)
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    first = claim_one(any_store, "dead-worker", now=600.0, lease=1000.0, pid=proc.pid)  # (its timer was due)
    any_store.commit([Commit("p1", first.fence, 2, events=[("output", {"text": "waits on"})], keep_lease=True)],
                     601.0)
    assert any_store.claim("w2", ME, HOST, 10.0, 700.0, 10) == []  # its lease is gone, and it has nothing to do
    assert any_store.get_program("p1").lease_owner is None
    any_store.send("p1", "inbox", "news", 701.0)
    second = claim_one(any_store, "w2", now=702.0)
    assert second.fence == first.fence + 1


def test_a_holder_whose_pid_was_reused_is_taken_over_at_once(any_store: Store) -> None:
    """The holder's id says when its process started (and on which boot of the machine): a live
    process that got the same pid later is not it."""
    from flowmetal.store.shared import BOOT, holder_id

    any_store.create_program(new(), 1.0)
    mine = holder_id("worker")  # this process, alive
    earlier = mine.rsplit(":", 1)[0] + f":{BOOT}.1.abcdef"  # a process with this pid, started at tick 1
    claim_one(any_store, mine, now=100.0, lease=1000.0)
    assert any_store.claim("w2", ME, HOST, 10.0, 101.0, 10) == []  # alive: not taken over
    any_store.create_program(new("p2"), 1.0)
    first = claim_one(any_store, earlier, now=102.0, lease=1000.0)
    second = claim_one(any_store, "w2", now=103.0)
    assert (second.program_id, second.fence) == ("p2", first.fence + 1)


def test_live_holder_on_another_host_is_not_taken_over(any_store: Store) -> None:
    any_store.create_program(new(), 1.0)
    claim_one(any_store, "far", now=100.0, lease=1000.0, pid=999_999_999, host="elsewhere")
    any_store.make_runnable("p1", 100.0)
    assert any_store.claim("w2", ME, HOST, 10.0, 101.0, 10) == []


def test_release_makes_a_leased_program_claimable(any_store: Store) -> None:
    any_store.create_program(new(), 1.0)
    c = claim_one(any_store)
    any_store.release("w2", "p1", c.fence)  # not the holder: no effect
    assert any_store.get_program("p1").lease_owner == "w1"
    any_store.release("w1", "p1", c.fence)
    assert any_store.get_program("p1").lease_owner is None
    any_store.make_runnable("p1", 101.0)
    assert claim_one(any_store, "w2", now=101.0).fence == c.fence + 1


def test_release_of_a_slice_that_did_not_commit_leaves_its_program_runnable(any_store: Store) -> None:
    # (a claim clears `runnable`: a slice that failed or was abandoned must not take it along,
    # or nobody claims the program again)
    any_store.create_program(new(), 1.0)
    c = claim_one(any_store)
    any_store.release("w1", "p1", c.fence, runnable=True)
    row = any_store.get_program("p1")
    assert row.lease_owner is None and row.runnable
    assert claim_one(any_store, "w2", now=101.0).fence == c.fence + 1


def test_infinite_times_are_stored(any_store: Store) -> None:
    # (a program may sleep for ever, or give a call an infinite timeout)
    any_store.create_program(new(), 1.0)
    c = claim_one(any_store)
    call = NewCall("p1:2", "p1", "__call__:p1:2", "function", "f", {"args": []}, {}, attempt_timeout=math.inf,
                   deadline=math.inf, owner="w1", lease=10.0)
    any_store.commit([Commit("p1", c.fence, 1, events=[("effect_requested", {"t": 1.5})], status="waiting",
                             wake_at=math.inf, calls=[call], keep_lease=True)], 101.0)
    assert any_store.get_program("p1").wake_at == math.inf
    assert [(r.key, r.status) for r in any_store.list_calls("p1")] == [("p1:2", "claimed")]


def test_claim_only_a_program_and_its_children_not_a_pattern(any_store: Store) -> None:
    for pid in ("a_b", "a_b.1", "a_b.1.2", "axb", "axb.1", "a%", "ab.1", "a_bc"):
        any_store.create_program(new(pid), 1.0)
    got = sorted(c.program_id for c in any_store.claim("w1", ME, HOST, 10.0, 100.0, 10, "a_b"))
    assert got == ["a_b", "a_b.1", "a_b.1.2"]
    assert [c.program_id for c in any_store.claim("w1", ME, HOST, 10.0, 100.0, 10, "a%")] == ["a%"]


def test_claim_respects_limit_oldest_first(any_store: Store) -> None:
    for i in range(5):
        any_store.create_program(new(f"p{i}"), float(i))
    assert [c.program_id for c in any_store.claim("w1", ME, HOST, 10.0, 100.0, 2)] == ["p0", "p1"]
    assert len(any_store.claim("w1", ME, HOST, 10.0, 100.0, 10)) == 3


def test_finished_program_is_never_claimed(any_store: Store) -> None:
    any_store.create_program(new(), 1.0)
    c = claim_one(any_store)
    any_store.commit([Commit("p1", c.fence, 1, events=[("failed", {"error": "x"})], status="failed", error="x",
                             runnable=True)], 2.0)
    row = any_store.get_program("p1")
    assert (row.status, row.error, row.runnable) == ("failed", "x", False)
    assert any_store.claim("w1", ME, HOST, 10.0, 1e9, 10) == []


# -- outside inputs -------------------------------------------------------------------------------

def test_send_queues_and_makes_runnable(any_store: Store) -> None:
    any_store.create_program(new(), 1.0)
    c = claim_one(any_store)
    any_store.commit([Commit("p1", c.fence, 1, events=[("effect_requested", {"request": 1})])], 2.0)
    assert not any_store.get_program("p1").runnable
    any_store.send("p1", "inbox", {"a": [1, 2]}, 3.0)
    any_store.send("p1", "other", "x", 3.0)
    assert any_store.get_program("p1").runnable
    msgs = any_store.inbox("p1")
    assert [(m.channel, m.message) for m in msgs] == [("inbox", {"a": [1, 2]}), ("other", "x")]
    assert msgs[0].id < msgs[1].id
    # consuming a message (recording it as an event) removes it from the inbox
    c = claim_one(any_store, now=4.0)
    any_store.commit([Commit("p1", c.fence, 2, events=[("message_received", {"request": 1, "message": "x"})],
                             consumed=[msgs[1].id])], 4.0)
    assert [m.message for m in any_store.inbox("p1")] == [{"a": [1, 2]}]


def test_inputs_to_unknown_or_finished_programs_change_nothing(any_store: Store) -> None:
    any_store.create_program(new(), 1.0)
    finish(any_store, "p1", 2.0)
    before = snapshot(any_store, ["p1"])
    with pytest.raises(UnknownProgram):
        any_store.send("nope", "inbox", 1, 3.0)
    with pytest.raises(ProgramFinished):
        any_store.send("p1", "inbox", 1, 3.0)
    with pytest.raises(ProgramFinished):
        any_store.request_cancel("p1", 3.0)
    with pytest.raises(UnknownProgram):
        any_store.request_cancel("nope", 3.0)
    with pytest.raises(ProgramFinished):
        any_store.make_runnable("p1", 3.0)
    with pytest.raises(UnknownProgram):
        any_store.make_runnable("nope", 3.0)
    assert snapshot(any_store, ["p1"]) == before


def test_request_cancel_marks_and_wakes(any_store: Store) -> None:
    any_store.create_program(new(), 1.0)
    c = claim_one(any_store)
    any_store.commit([Commit("p1", c.fence, 1, events=[("effect_requested", {"request": 1})])], 2.0)
    any_store.request_cancel("p1", 3.0)
    row = any_store.get_program("p1")
    assert row.cancel_requested and row.runnable


def test_make_runnable(any_store: Store) -> None:
    any_store.create_program(new(), 1.0)
    c = claim_one(any_store)
    any_store.commit([Commit("p1", c.fence, 1, events=[("effect_requested", {"request": 1})])], 2.0)
    assert any_store.claim("w1", ME, HOST, 10.0, 3.0, 10) == []
    any_store.make_runnable("p1", 3.0)
    assert claim_one(any_store, now=3.0).program_id == "p1"


# -- connectors: calls ----------------------------------------------------------------------------

def start_calls(store: Store, *calls: tuple[str, str], pid: str = "p1", policy: dict[str, Any] | None = None,
                timeout: float | None = None, deadline: float | None = None, now: float = 2.0) -> list[str]:
    """A waiting program that requested calls of (kind, name); returns their keys."""
    store.create_program(new(pid), 1.0)
    c = claim_one(store, only=pid, now=now)
    new_calls = [NewCall(f"{pid}:{i}", pid, f"call:{i}", kind, name, {"n": i}, normalize(policy), timeout, deadline)
                 for i, (kind, name) in enumerate(calls, start=2)]
    store.commit([Commit(pid, c.fence, 1, events=[("effect_requested", {"request": i}) for i in range(len(calls))],
                         calls=new_calls, waiting_on={"waits": []})], now)
    return [call.key for call in new_calls]


def test_calls_are_claimed_by_kind_and_name(any_store: Store) -> None:
    f, h = start_calls(any_store, ("function", "f"), ("http", "http"))
    assert any_store.claim_calls("c1", "function", ["g"], 10.0, 5.0, 10) == []
    assert any_store.claim_calls("c1", "function", [], 10.0, 5.0, 10) == []
    (got,) = any_store.claim_calls("c1", "function", ["f", "g"], 10.0, 5.0, 10)
    assert (got.key, got.program_id, got.kind, got.name, got.payload, got.attempt, got.deadline) == (
        f, "p1", "function", "f", {"n": 2}, 1, None)
    assert any_store.claim_calls("c2", "function", None, 10.0, 5.0, 10) == []  # leased
    assert [c.key for c in any_store.claim_calls("c2", "http", None, 10.0, 5.0, 10)] == [h]
    assert {c.key: c.status for c in any_store.list_calls("p1")} == {f: "claimed", h: "claimed"}
    assert any_store.get_call(f).attempt == 1
    with pytest.raises(UnknownCall):
        any_store.get_call("nope")
    assert any_store.next_call_due("function") == 15.0  # the lease's end


def test_outcomes_of_several_attempts_are_recorded_together(any_store: Store) -> None:
    """finish_calls: one transaction for many outcomes (a connector's group commit), each
    judged as finish_call would: done, retrying, stale (twice the same attempt, another
    worker's), unknown."""
    a, b, c = start_calls(any_store, ("function", "f"), ("function", "f"), ("function", "f"))
    claims = {cl.key: cl for cl in any_store.claim_calls("c1", "function", None, 10.0, 5.0, 10)}
    ok, failed = CallOutcome(ok=True, result=1), CallOutcome(ok=False, error={"type": "E", "message": "m"})
    got = any_store.finish_calls([(a, "c1", claims[a].attempt, ok), (b, "c1", claims[b].attempt, failed),
                                  (a, "c1", claims[a].attempt, ok), (c, "c2", claims[c].attempt, ok),
                                  ("nope", "c1", 1, ok)], 6.0)
    assert got == ["done", "retrying", "stale", "stale", "unknown"]
    assert [m.channel for m in any_store.inbox("p1")] == ["call:2"]
    assert {k: any_store.get_call(k).status for k in (a, b, c)} == {a: "done", b: "pending", c: "claimed"}


def test_successful_call_is_delivered_and_wakes_the_program(any_store: Store) -> None:
    (key,) = start_calls(any_store, ("function", "f"))
    assert any_store.next_call_due("function") == 2.0
    (claim,) = any_store.claim_calls("c1", "function", None, 10.0, 5.0, 10)
    assert not any_store.get_program("p1").runnable
    assert any_store.finish_call(key, "c1", claim.attempt, CallOutcome(ok=True, result={"r": 7}), 6.0) == "done"
    (msg,) = any_store.inbox("p1")
    assert (msg.channel, msg.message) == ("call:2", {"ok": True, "result": {"r": 7}, "attempts": 1})
    assert any_store.get_program("p1").runnable
    row = any_store.get_call(key)
    assert (row.status, row.outcome["ok"], row.attempt) == ("done", True, 1)
    assert any_store.list_calls(status="done")[0].key == key
    assert any_store.next_call_due("function") is None
    # a second report of the same attempt changes nothing
    assert any_store.finish_call(key, "c1", claim.attempt, CallOutcome(ok=True, result=0), 7.0) == "stale"
    assert len(any_store.inbox("p1")) == 1
    with pytest.raises(UnknownCall):
        any_store.finish_call("nope", "c1", 1, CallOutcome(ok=True), 7.0)


def test_retryable_errors_back_off_then_fail_for_good(any_store: Store) -> None:
    (key,) = start_calls(any_store, ("function", "f"), policy={"attempts": 3, "initial": 1.0, "backoff": 2.0})
    boom = {"type": "IOError", "message": "boom"}
    now = 10.0
    for attempt, delay in ((1, 1.0), (2, 2.0)):
        (c,) = any_store.claim_calls("c1", "function", None, 10.0, now, 10)
        assert c.attempt == attempt
        assert any_store.finish_call(key, "c1", attempt, CallOutcome(ok=False, error=boom), now) == "retrying"
        row = any_store.get_call(key)
        assert (row.status, row.next_at, row.last_error) == ("pending", now + delay, boom)
        assert any_store.claim_calls("c1", "function", None, 10.0, now + delay - 0.01, 10) == []
        now += delay
    assert any_store.inbox("p1") == []
    (c,) = any_store.claim_calls("c1", "function", None, 10.0, now, 10)
    assert any_store.finish_call(key, "c1", 3, CallOutcome(ok=False, error=boom), now) == "done"
    (msg,) = any_store.inbox("p1")
    assert msg.message == {"ok": False, "error": boom, "attempts": 3}
    assert any_store.get_call(key).status == "failed"  # settled: delivered to the program as a failure
    # every failed attempt is kept, not only the last
    attempts = any_store.list_attempts("p1")
    assert [(a.key, a.attempt, a.name, a.worker, a.error) for a in attempts] == [
        (key, 1, "f", "c1", boom), (key, 2, "f", "c1", boom), (key, 3, "f", "c1", boom)]
    assert attempts[0].to_json()["at_iso"] is not None


def test_attempt_records_keep_tracebacks_but_not_lost_attempts(any_store: Store) -> None:
    (key,) = start_calls(any_store, ("function", "f"), policy={"attempts": 3, "initial": 1.0})
    any_store.claim_calls("c1", "function", None, 5.0, 10.0, 10)  # c1 goes quiet: attempt 1 is lost
    (second,) = any_store.claim_calls("c2", "function", None, 5.0, 20.0, 10)
    err = {"type": "ValueError", "message": "bad", "traceback": 'File "fns.py", line 3, in f\nValueError: bad\n'}
    assert any_store.finish_call(key, "c2", second.attempt, CallOutcome(ok=False, error=err), 22.0) == "retrying"
    (c,) = any_store.claim_calls("c2", "function", None, 5.0, 30.0, 10)
    assert any_store.finish_call(key, "c2", c.attempt, CallOutcome(ok=True, result=1), 30.0) == "done"
    got = [(a.attempt, a.worker, a.error["type"], a.error.get("traceback")) for a in any_store.list_attempts("p1")]
    assert got == [(2, "c2", "ValueError", err["traceback"])]
    row = any_store.get_call(key)
    assert (row.attempt, row.lost, row.to_json()["lost"]) == (3, 1, 1)
    assert any_store.list_attempts("nobody") == []


def test_an_attempt_lost_with_its_worker_is_run_again_at_once_and_not_counted(any_store: Store) -> None:
    """The holder stopped renewing its lease (it died): the function did not fail, so the call is
    claimable at once (no backoff) and the retry policy's count is untouched — even a policy of
    one attempt still gets its result."""
    (key,) = start_calls(any_store, ("function", "f"), policy={"attempts": 1, "initial": 60.0})
    for n, now in enumerate((10.0, 20.0, 30.0), start=1):
        (c,) = any_store.claim_calls(f"c{n}", "function", None, 5.0, now, 10)  # the one before went quiet
        assert c.attempt == n
    assert any_store.list_attempts("p1") == []
    assert any_store.get_call(key).lost == 2
    assert any_store.finish_call(key, "c3", 3, CallOutcome(ok=False, error={"type": "E", "message": "x"}),
                                 31.0) == "done"  # a real failure counts: the policy allows one
    (msg,) = any_store.inbox("p1")
    assert msg.message == {"ok": False, "error": {"type": "E", "message": "x"}, "attempts": 1}


def test_a_call_that_keeps_losing_its_workers_fails_in_the_end(any_store: Store,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A call whose every attempt kills its worker is not run forever: past retry.MAX_LOST lost
    attempts, a loss counts as a failed attempt (LeaseExpired)."""
    monkeypatch.setattr(retry, "MAX_LOST", 2)
    (key,) = start_calls(any_store, ("function", "f"), policy={"attempts": 2, "initial": 1.0})
    any_store.claim_calls("c1", "function", None, 5.0, 10.0, 10)
    any_store.claim_calls("c2", "function", None, 5.0, 20.0, 10)  # attempt 1 lost
    assert any_store.claim_calls("c3", "function", None, 5.0, 30.0, 10)[0].attempt == 3  # attempt 2 lost
    assert any_store.claim_calls("c4", "function", None, 5.0, 40.0, 10) == []  # attempt 3 failed: backoff
    row = any_store.get_call(key)
    assert (row.status, row.next_at, row.lost, row.last_error["type"]) == ("pending", 41.0, 2, "LeaseExpired")
    assert [a.attempt for a in any_store.list_attempts("p1")] == [3]


def test_served_function_names_and_unserved_calls(any_store: Store) -> None:
    start_calls(any_store, ("function", "billing.refund"), ("function", "inventory.reserve"), ("http", "http"))
    assert any_store.last_served(["billing.refund"]) == {}
    any_store.register_served("fw1", ["inventory.reserve", "other"], 50.0)
    any_store.register_served("fw1", ["inventory.reserve"], 70.0)  # its heartbeat
    any_store.register_served("fw2", ["inventory.reserve"], 60.0)
    any_store.register_served("fw2", [], 60.0)
    assert any_store.last_served(["inventory.reserve", "billing.refund", "other"]) == {
        "inventory.reserve": 70.0, "other": 50.0}
    # pending 60 s or more, and nobody registered the name in the last 60 s
    assert any_store.unserved_calls(now=61.0, quiet=60.0) == []  # requested at 2.0: not quiet long enough
    (un,) = any_store.unserved_calls(now=100.0, quiet=60.0)
    assert (un.name, un.count, un.oldest, un.program_id) == ("billing.refund", 1, 2.0, "p1")
    assert [u.name for u in any_store.unserved_calls(now=200.0, quiet=60.0)] == ["billing.refund",
                                                                               "inventory.reserve"]


def test_non_retryable_errors_fail_at_once(any_store: Store) -> None:
    a, b = start_calls(any_store, ("function", "f"), ("function", "g"),
                       policy={"attempts": 5, "non_retryable": ["ValueError"]})
    claims = {c.key: c for c in any_store.claim_calls("c1", "function", None, 10.0, 5.0, 10)}
    bad = {"type": "ValueError", "message": "no"}
    assert any_store.finish_call(a, "c1", claims[a].attempt, CallOutcome(ok=False, error=bad), 6.0) == "done"
    other = {"type": "Other", "message": "said so"}
    assert any_store.finish_call(b, "c1", claims[b].attempt, CallOutcome(ok=False, error=other, retryable=False),
                                 6.0) == "done"
    assert [m.message["ok"] for m in any_store.inbox("p1")] == [False, False]


def test_final_result_is_delivered_when_retries_run_out(any_store: Store) -> None:
    (key,) = start_calls(any_store, ("http", "http"), policy={"attempts": 1})
    (c,) = any_store.claim_calls("c1", "http", None, 10.0, 5.0, 10)
    outcome = CallOutcome(ok=False, error={"type": "HTTPError", "message": "503"}, final_result={"status": 503},
                          has_final_result=True)
    assert any_store.finish_call(key, "c1", c.attempt, outcome, 6.0) == "done"
    assert any_store.inbox("p1")[0].message == {"ok": True, "result": {"status": 503}, "attempts": 1}


def test_no_retry_past_the_deadline(any_store: Store) -> None:
    (key,) = start_calls(any_store, ("function", "f"), policy={"attempts": 5, "initial": 10.0}, deadline=12.0)
    (c,) = any_store.claim_calls("c1", "function", None, 10.0, 5.0, 10)
    err = {"type": "IOError", "message": "x"}
    assert any_store.finish_call(key, "c1", c.attempt, CallOutcome(ok=False, error=err), 6.0) == "done"
    assert any_store.inbox("p1")[0].message["ok"] is False


def test_heartbeat_extends_only_the_holders_lease(any_store: Store) -> None:
    (key,) = start_calls(any_store, ("function", "f"))
    (c,) = any_store.claim_calls("c1", "function", None, 5.0, 10.0, 10)  # lease until 15
    assert any_store.heartbeat_call(key, "c1", 1, 5.0, 14.0) is True  # until 19
    assert any_store.heartbeat_call(key, "c2", 1, 5.0, 14.0) is False
    assert any_store.heartbeat_call(key, "c1", 2, 5.0, 14.0) is False
    assert any_store.claim_calls("c2", "function", None, 5.0, 17.0, 10) == []
    assert any_store.get_call(key).status == "claimed"
    assert any_store.finish_call(key, "c1", c.attempt, CallOutcome(ok=True, result=1), 18.0) == "done"


def test_abandoned_attempt_is_retried_and_its_late_result_ignored(any_store: Store) -> None:
    (key,) = start_calls(any_store, ("function", "f"), policy={"attempts": 3, "initial": 1.0})
    (first,) = any_store.claim_calls("c1", "function", None, 5.0, 10.0, 10)  # lease until 15
    # c1 goes quiet; at 20 its attempt counts as lost and is run again at once
    (second,) = any_store.claim_calls("c2", "function", None, 5.0, 20.0, 10)
    assert second.attempt == 2
    assert any_store.finish_call(key, "c1", first.attempt, CallOutcome(ok=True, result="late"), 22.0) == "stale"
    assert any_store.heartbeat_call(key, "c1", first.attempt, 5.0, 22.0) is False
    assert any_store.finish_call(key, "c2", second.attempt, CallOutcome(ok=True, result="on time"), 22.0) == "done"
    assert any_store.finish_call(key, "c1", first.attempt, CallOutcome(ok=True, result="later"), 23.0) == "stale"
    assert [m.message for m in any_store.inbox("p1")] == [{"ok": True, "result": "on time", "attempts": 1}]


def test_attempt_timeout_expires_the_attempt(any_store: Store) -> None:
    (key,) = start_calls(any_store, ("function", "f"), policy={"attempts": 1}, timeout=3.0)
    (c,) = any_store.claim_calls("c1", "function", None, 30.0, 10.0, 10)
    assert c.deadline == 13.0
    assert any_store.heartbeat_call(key, "c1", 1, 30.0, 12.0) is True
    assert any_store.next_call_due("function") == 13.0  # the lease never outlives the timeout
    assert any_store.claim_calls("c2", "function", None, 30.0, 14.0, 10) == []
    (msg,) = any_store.inbox("p1")
    assert msg.message["ok"] is False and msg.message["error"]["type"] == "TimeoutError"
    assert any_store.finish_call(key, "c1", 1, CallOutcome(ok=True, result=1), 14.5) == "stale"


def test_calls_are_cancelled_when_the_program_stops_waiting_or_finishes(any_store: Store) -> None:
    a, b = start_calls(any_store, ("function", "f"), ("function", "g"))
    (ca,) = any_store.claim_calls("c1", "function", ["f"], 10.0, 5.0, 10)
    any_store.make_runnable("p1", 6.0)
    c = claim_one(any_store, now=6.0)
    any_store.commit([Commit("p1", c.fence, 3, events=[("output", {"text": "x"})], cancel_calls=[b],
                             runnable=True)], 6.0)
    assert any_store.get_call(b).status == "cancelled"
    assert any_store.get_call(a).status == "claimed"
    finish(any_store, "p1", 7.0)
    assert any_store.get_call(a).status == "cancelled"
    assert any_store.finish_call(a, "c1", ca.attempt, CallOutcome(ok=True, result=1), 8.0) == "stale"
    assert any_store.claim_calls("c1", "function", None, 10.0, 9.0, 10) == []


def test_calls_performed_in_process_are_claimed_at_commit_and_recorded_by_a_later_one(any_store: Store) -> None:
    """A worker that serves the function itself inserts the call claimed (attempt 1), keeps the
    program's lease, and records the outcome in its next commit instead of through the inbox."""
    owner = f"inline:{HOST}:{ME}:abc"
    any_store.create_program(new(), 1.0)
    c = claim_one(any_store)
    call = NewCall("p1:2", "p1", "call:2", "function", "f", {"n": 1}, normalize(None), None, None,
                   owner=owner, lease=5.0)
    any_store.commit([Commit("p1", c.fence, 1, events=[("effect_requested", {"request": 1})], calls=[call],
                             keep_lease=True, call_owner=owner)], 2.0)
    row = any_store.get_call("p1:2")
    assert (row.status, row.attempt) == ("claimed", 1)
    assert any_store.claim_calls("c1", "function", None, 5.0, 3.0, 10) == []  # not for connectors
    assert any_store.heartbeat_call("p1:2", owner, 1, 5.0, 3.0) is True
    done = {"ok": True, "result": 3, "attempts": 1}
    before = snapshot(any_store, ["p1"])
    with pytest.raises(Conflict):  # not claimed by this owner
        any_store.commit([Commit("p1", c.fence, 2, events=[("effect_completed", {"request": 1})],
                                 done_calls=[("p1:2", done)], call_owner="someone-else")], 4.0)
    assert snapshot(any_store, ["p1"]) == before
    any_store.commit([Commit("p1", c.fence, 2, events=[("effect_completed", {"request": 1, "result": 3})],
                             done_calls=[("p1:2", done)], call_owner=owner)], 4.0)
    row = any_store.get_call("p1:2")
    assert (row.status, row.outcome) == ("done", done)
    assert any_store.inbox("p1") == []
    assert any_store.finish_call("p1:2", owner, 1, CallOutcome(ok=True, result=0), 5.0) == "stale"


def test_calls_of_a_dead_local_connector_are_retried_without_waiting_out_the_lease(any_store: Store) -> None:
    (key,) = start_calls(any_store, ("function", "f"), policy={"attempts": 3, "initial": 1.0})
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    dead = f"functions:{HOST}:{proc.pid}:abc"
    (first,) = any_store.claim_calls(dead, "function", None, 1000.0, 10.0, 10)
    # 989 s of lease left, but its process is gone: the attempt is lost, and run again at once
    (second,) = any_store.claim_calls("c2", "function", None, 30.0, 11.0, 10)
    assert second.attempt == first.attempt + 1
    assert (any_store.get_call(key).lost, any_store.list_attempts("p1")) == (1, [])
    # a live holder on this machine (this process) keeps its attempt
    assert any_store.finish_call(key, "c2", second.attempt, CallOutcome(ok=False, error={"type": "E"}), 13.0) \
        == "retrying"
    live = f"functions:{HOST}:{ME}:abc"
    assert len(any_store.claim_calls(live, "function", None, 1000.0, 15.0, 10)) == 1  # 2 s after failure 2
    assert any_store.claim_calls("c2", "function", None, 30.0, 20.0, 10) == []
    assert any_store.get_call(key).status == "claimed"


def test_a_batch_of_http_attempts_lost_with_their_worker_burns_no_attempt(any_store: Store) -> None:
    """HTTP requests like foreign calls: a worker killed holding a batch of attempts (claims take
    several at once) costs none of those calls an attempt of its policy — each is run again at
    once and keeps its whole budget, however many kills in a row (below retry.MAX_LOST)."""
    keys = start_calls(any_store, ("http", "http"), ("http", "http"), ("http", "http"),
                       policy={"attempts": 2, "initial": 1.0})
    now = 10.0
    for _ in range(5):  # five workers in a row die holding the whole batch
        proc = subprocess.Popen([sys.executable, "-c", "pass"])
        proc.wait()
        dead = f"worker:{HOST}:{proc.pid}:abc"
        assert {c.key for c in any_store.claim_calls(dead, "http", None, 1000.0, now, 10)} == set(keys)
        now += 1.0
    claims = any_store.claim_calls("c2", "http", None, 30.0, now, 10)
    assert sorted(c.key for c in claims) == sorted(keys)
    assert {any_store.get_call(k).lost for k in keys} == {5}
    assert any_store.list_attempts("p1") == []
    failed = CallOutcome(ok=False, error={"type": "ConnectError", "message": "refused"})
    # the first real failure is attempt 1 of 2 for each: retried, not given up
    assert [any_store.finish_call(c.key, "c2", c.attempt, failed, now) for c in claims] == ["retrying"] * 3


# -- connectors: callbacks ----------------------------------------------------------------------

def test_callbacks_accept_one_delivery(any_store: Store) -> None:
    any_store.create_program(new(), 1.0)
    c = claim_one(any_store)
    any_store.commit([Commit("p1", c.fence, 1, events=[("effect_requested", {"request": 1})],
                             callbacks=[("tok-1", "cb:1", None), ("tok-2", "cb:2", {"title": "two"})])], 2.0)
    assert any_store.deliver_callback("nope", {}, 3.0) == "unknown"
    assert any_store.deliver_callback("tok-1", {"body": "hi"}, 3.0) == "accepted"
    assert any_store.deliver_callback("tok-1", {"body": "again"}, 3.0) == "duplicate"
    assert [(m.channel, m.message) for m in any_store.inbox("p1")] == [("cb:1", {"body": "hi"})]
    assert any_store.get_program("p1").runnable
    assert any_store.get_callback("nope") is None
    cb = any_store.get_callback("tok-2")
    assert cb is not None
    assert (cb.program_id, cb.status, cb.options, cb.created_at, cb.delivered_at) == ("p1", "open", {"title": "two"},
                                                                                     2.0, None)
    one = any_store.get_callback("tok-1")
    assert one is not None and (one.status, one.options, one.delivered_at) == ("delivered", {}, 3.0)
    # the program refused the delivery: the link takes another one
    c = claim_one(any_store, now=3.5)
    any_store.commit([Commit("p1", c.fence, 2, events=[("effect_requested", {"request": 2})],
                             callbacks=[("tok-1", "cb:1", {"rejected": "not a number"})])], 3.5)
    reopened = any_store.get_callback("tok-1")
    assert reopened is not None and (reopened.status, reopened.options) == ("open", {"rejected": "not a number"})
    assert any_store.deliver_callback("tok-1", {"body": "42"}, 3.6) == "accepted"
    finish(any_store, "p1", 4.0)
    assert any_store.deliver_callback("tok-2", {"body": "too late"}, 5.0) == "closed"
    assert any_store.deliver_callback("tok-1", {"body": "too late"}, 5.0) == "duplicate"


# -- wake-ups -------------------------------------------------------------------------------------

def test_listener_is_woken_by_another_connection(any_store: Store) -> None:
    other = open_store(any_store.url)
    listener = any_store.listener()
    try:
        assert listener.wait(0.05) is False
        timer = threading.Timer(0.05, other.notify)
        timer.start()
        t0 = time.monotonic()
        assert listener.wait(10.0) is True
        assert time.monotonic() - t0 < 5.0
        timer.join()
        assert listener.wait(0.05) is False  # one notification, one wake-up
        threading.Timer(0.05, listener.interrupt).start()
        assert listener.wait(10.0) is True
    finally:
        listener.close()
        other.close()


def test_wake_ups_stay_within_their_store(any_store: Store, backend: str,
                                          store_url_factory: Callable[[str], str]) -> None:
    elsewhere = open_store(store_url_factory(backend))
    listener = elsewhere.listener()
    try:
        any_store.notify()
        assert listener.wait(0.2) is False
    finally:
        listener.close()
        elsewhere.close()


# -- moving programs --------------------------------------------------------------------------------

def exported(store: Store, pid: str) -> Any:
    try:
        return store.export_program(pid)
    except NotImplementedError:
        pytest.skip(f"{type(store).__name__}.export_program is not implemented yet")


def populated(store: Store) -> str:
    """A waiting program with history, a checkpoint, an unread message, a pending call and an open callback."""
    (key,) = start_calls(store, ("function", "f"), pid="m", policy={"attempts": 2})
    assert not store.get_program("m").runnable
    store.make_runnable("m", 3.0)
    c = claim_one(store, now=3.0, only="m")
    store.commit([Commit("m", c.fence, 2, events=[("output", {"text": "hello"})], checkpoint=b"\x00state",
                         callbacks=[("tok-m", "cb:m", None)], waiting_on={"waits": [{"request": 2}]}, wake_at=500.0)], 4.0)
    store.send("m", "inbox", {"unread": True}, 5.0)
    return key


@pytest.mark.parametrize("target", ["sqlite", "postgres"])
def test_export_import_round_trip(any_store: Store, target: str, store_url_factory: Callable[[str], str]) -> None:
    key = populated(any_store)
    dump = exported(any_store, "m")
    dest = open_store(store_url_factory(target))
    try:
        try:
            dest.import_program(dump, 10.0)
        except NotImplementedError:
            pytest.skip(f"{type(dest).__name__}.import_program is not implemented yet")
        src_row, row = any_store.get_program("m"), dest.get_program("m")
        same = ("id", "filename", "source_hash", "status", "args", "last_seq", "created_at", "waiting_on", "wake_at",
                "cancel_requested", "parent_id", "fence")
        assert {k: getattr(row, k) for k in same} == {k: getattr(src_row, k) for k in same}
        assert (row.runnable, row.lease_owner) == (True, None)
        assert dest.events("m") == any_store.events("m")
        assert dest.checkpoint("m") == any_store.checkpoint("m") == (3, b"\x00state")
        assert dest.source(row.source_hash) == any_store.source(row.source_hash)
        assert [(m.channel, m.message) for m in dest.inbox("m")] == [("inbox", {"unread": True})]
        assert [c.to_json() for c in dest.list_calls("m")] == [c.to_json() for c in any_store.list_calls("m")]
        with pytest.raises(ProgramExists):
            dest.import_program(dump, 11.0)
        # the copy carries on: its fence continues, its call and callback work there
        c = claim_one(dest, now=20.0)
        assert c.fence == src_row.fence + 1
        (call,) = dest.claim_calls("c1", "function", None, 10.0, 20.0, 10)
        assert call.key == key
        assert dest.deliver_callback("tok-m", {"x": 1}, 21.0) == "accepted"
        dest.commit([Commit("m", c.fence, 3, events=[("output", {"text": "there"})])], 21.0)
        assert dest.get_program("m").last_seq == 4
    finally:
        dest.close()


def test_mark_moved_detaches_the_program(any_store: Store) -> None:
    key = populated(any_store)
    exported(any_store, "m")
    c = claim_one(any_store, now=10.0)  # a slice in progress when the program moves
    any_store.mark_moved("m", "postgresql://elsewhere/db", 11.0)
    row = any_store.get_program("m")
    assert (row.status, row.error, row.runnable) == ("moved", "moved to postgresql://elsewhere/db", False)
    with pytest.raises(LeaseLost):
        any_store.commit([Commit("m", c.fence, 3, events=[("output", {"text": "x"})])], 12.0)
    assert any_store.claim("w1", ME, HOST, 10.0, 1e9, 10) == []
    with pytest.raises(ProgramFinished):
        any_store.send("m", "inbox", 1, 12.0)
    with pytest.raises(ProgramFinished):
        any_store.mark_moved("m", "again", 12.0)
    with pytest.raises(UnknownProgram):
        any_store.mark_moved("nope", "again", 12.0)
    assert any_store.get_call(key).status == "cancelled"
    assert any_store.deliver_callback("tok-m", {}, 12.0) == "closed"
    assert any_store.next_wake() is None
