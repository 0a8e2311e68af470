"""The store contract for running Flowmetal for months, run against every backend: deployments
and their versions, webhook configurations, pruning finished programs (counted per table),
starting a program over (continue_as_new) and the schedules' atomic firing. Times are passed
explicitly, so nothing here waits for a clock."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from flowmetal.store.base import CallOutcome, Commit, NewCall, NewProgram, Store
from flowmetal.store.operations import (
    PROGRAM_TABLES,
    OperationsError,
    PruneRule,
    ScheduleExists,
    ScheduleRow,
    TickPlan,
    UnknownDeployment,
    UnknownHook,
    UnknownSchedule,
)
from flowmetal.store.retry import normalize
from test_store_contract import claim_one, finish, new

MAIN = "from flowmetal import start\n\ndef main(n=1):\n    return start('lib/child.flow').result()\n"
CHILD = "def main():\n    return 1\n"


def h(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def bundle(main: str = MAIN, child: str = CHILD) -> dict[str, tuple[str, str]]:
    return {"main.flow": (h(main), main), "lib/child.flow": (h(child), child)}


def rows_of(store: Store, program_id: str) -> dict[str, int]:
    """How many rows of each table belong to the program."""
    dump = store.export_program(program_id)
    return {"events": len(dump.events), "checkpoints": int(dump.checkpoint is not None), "inbox": len(dump.inbox),
            "calls": len(dump.calls), "call_attempts": len(store.list_attempts(program_id)),
            "callbacks": len(dump.callbacks), "programs": 1}


# -- deployments ---------------------------------------------------------------------------------

def test_deploy_versions_only_changed_sources(any_store: Store) -> None:
    dep, created = any_store.deploy("job", "main.flow", bundle(), 10.0)
    assert (dep.name, dep.version, dep.latest, dep.main, created) == ("job", 1, 1, "main.flow", True)
    assert dep.files == {"main.flow": h(MAIN), "lib/child.flow": h(CHILD)}
    assert dep.source_hash == h(MAIN) and dep.ref == "job@1"
    assert any_store.source(h(CHILD)) == ("lib/child.flow", CHILD)
    again, created = any_store.deploy("job", "main.flow", bundle(), 11.0)
    assert (again.version, created) == (1, False)
    v2, created = any_store.deploy("job", "main.flow", bundle(child=CHILD + "# v2\n"), 12.0, retain=60.0,
                                   set_retain=True)
    assert (v2.version, v2.latest, created, v2.retain) == (2, 2, True, 60.0)
    # old versions stay as they were (running programs are pinned to them)
    v1 = any_store.get_deployment("job", 1)
    assert (v1.version, v1.latest, v1.files["lib/child.flow"]) == (1, 2, h(CHILD))
    assert any_store.get_deployment("job").version == 2
    any_store.deploy("other", "main.flow", bundle(), 13.0)
    assert [(d.name, d.version) for d in any_store.list_deployments()] == [("job", 2), ("other", 1)]
    assert [d.version for d in any_store.list_deployments("job")] == [1, 2]


def test_unknown_deployments_and_bad_bundles(any_store: Store) -> None:
    with pytest.raises(UnknownDeployment):
        any_store.get_deployment("nope")
    with pytest.raises(UnknownDeployment):
        any_store.list_deployments("nope")
    any_store.deploy("job", "main.flow", bundle(), 1.0)
    with pytest.raises(UnknownDeployment, match="no version 7"):
        any_store.get_deployment("job", 7)
    with pytest.raises(OperationsError, match="not among the files"):
        any_store.deploy("job", "missing.flow", bundle(), 2.0)
    assert any_store.get_deployment("job").version == 1


def test_programs_carry_their_deployment_and_retention(any_store: Store) -> None:
    src = "def main():\n    return 1\n"
    any_store.create_program(NewProgram("p", "main.flow", src, h(src), {}, deployment="job@3", retain=5.0), 1.0)
    row = any_store.get_program("p")
    assert (row.deployment, row.retain, row.run) == ("job@3", 5.0, 1)
    assert any_store.events("p")[0].data["deployment"] == "job@3"
    assert row.to_json()["deployment"] == "job@3"


# -- hooks ---------------------------------------------------------------------------------------

def test_hooks_are_stored_replaced_and_deleted(any_store: Store) -> None:
    any_store.put_hook("gh", {"deployment": "job", "style": "github"}, 1.0)
    any_store.put_hook("st", {"deployment": "pay"}, 2.0)
    any_store.put_hook("gh", {"deployment": "job2"}, 3.0)
    hook = any_store.get_hook("gh")
    assert (hook.config, hook.created_at, hook.updated_at) == ({"deployment": "job2"}, 1.0, 3.0)
    assert [x.name for x in any_store.list_hooks()] == ["gh", "st"]
    any_store.delete_hook("gh")
    with pytest.raises(UnknownHook):
        any_store.get_hook("gh")
    with pytest.raises(UnknownHook):
        any_store.delete_hook("gh")


# -- pruning -------------------------------------------------------------------------------------

def _busy_program(store: Store, pid: str, now: float, status: str | None = "completed") -> None:
    """A program with rows in every table: events, a checkpoint, an inbox message, a call and a failed
    attempt of it, a callback."""
    store.create_program(new(pid), now)
    c = claim_one(store, only=pid, now=now)
    call = NewCall(f"{pid}:2", pid, f"__call__:{pid}:2", "function", f"f-{pid}", {"args": []}, normalize(None))
    store.commit([Commit(pid, c.fence, 1, events=[("effect_requested", {"request": 1})], checkpoint=b"ck",
                         calls=[call], callbacks=[(f"tok-{pid}", "__cb__:x", None)])], now)
    (attempt,) = store.claim_calls("fw", "function", [f"f-{pid}"], 10.0, now, 1)
    store.finish_call(attempt.key, "fw", 1, CallOutcome(ok=False, error={"type": "E", "message": "m"}), now)
    store.send(pid, "inbox", {"hello": pid}, now)
    if status is not None:
        finish(store, pid, now + 1, status)


def test_prune_deletes_everything_of_old_finished_programs_and_nothing_else(any_store: Store) -> None:
    for i in range(5):
        _busy_program(any_store, f"old{i}", 10.0 + i)
    _busy_program(any_store, "failed", 10.0, status="failed")
    _busy_program(any_store, "young", 500.0)
    _busy_program(any_store, "live", 10.0, status=None)
    keep = {pid: rows_of(any_store, pid) for pid in ("failed", "young", "live")}
    doomed = {f"old{i}": rows_of(any_store, f"old{i}") for i in range(5)}
    total = PruneRule(1000.0, older_than=600.0, statuses=("completed",), batch=2)
    first = any_store.prune(total)
    assert first.programs == 2  # one bounded batch
    report = any_store.prune_all(total)
    report.add(first)
    expected = {t: sum(rows[t] for rows in doomed.values()) for t in PROGRAM_TABLES}
    assert report.counts == expected
    assert expected["events"] >= 15 and expected["calls"] == 5 and expected["callbacks"] == 5
    assert expected["call_attempts"] == 5
    for pid in doomed:
        with pytest.raises(Exception, match="no program"):
            any_store.get_program(pid)
        assert any_store.events(pid) == [] and any_store.inbox(pid) == [] and any_store.checkpoint(pid) is None
        assert any_store.list_calls(pid) == []
    assert {pid: rows_of(any_store, pid) for pid in keep} == keep
    assert any_store.deliver_callback("tok-old1", {"body": "late"}, 1001.0) == "unknown"
    # nothing else is old enough; then every finished status goes
    assert any_store.prune_all(total).programs == 0
    assert any_store.prune_all(PruneRule(1000.0, older_than=600.0)).programs == 1  # "failed"
    assert sorted(r.id for r in any_store.list_programs()) == ["live", "young"]


def test_prune_applies_each_programs_retention_and_the_default(any_store: Store) -> None:
    src = "def main():\n    return 1\n"
    for pid, retain in (("short", 10.0), ("long", 1000.0), ("plain", None)):
        any_store.create_program(NewProgram(pid, "p.flow", src, h(src), {}, retain=retain), 1.0)
        finish(any_store, pid, 2.0)
    assert any_store.prune_all(PruneRule(100.0)).programs == 1  # only "short": the others have no rule
    assert any_store.prune_all(PruneRule(100.0, default_retain=50.0)).programs == 1  # "plain"
    assert [r.id for r in any_store.list_programs()] == ["long"]
    assert any_store.prune_all(PruneRule(2000.0, default_retain=5000.0)).programs == 1


def test_prune_keeps_a_finished_parent_until_its_children_end(any_store: Store) -> None:
    any_store.create_program(new("parent"), 1.0)
    c = claim_one(any_store, only="parent")
    child = NewProgram("parent.1", "child.flow", "def main():\n    return 2\n", "ch", {}, parent_id="parent")
    any_store.commit([Commit("parent", c.fence, 1, events=[("completed", {"result": 1})], status="completed",
                             result=1, starts=[child])], 2.0)
    assert any_store.prune_all(PruneRule(100.0, older_than=1.0)).programs == 0
    finish(any_store, "parent.1", 3.0)
    assert any_store.prune_all(PruneRule(100.0, older_than=1.0)).programs == 2


# -- continue_as_new -------------------------------------------------------------------------------

def test_restart_commit_starts_the_program_over_under_its_id(any_store: Store) -> None:
    _busy_program(any_store, "loop", 10.0, status=None)
    any_store.create_program(new("friend"), 10.0)
    # an internal message (a callback's request, on a channel only the runtime delivers on)
    assert any_store.deliver_callback("tok-loop", {"internal": True}, 11.0) == "accepted"
    c = claim_one(any_store, only="loop", now=12.0)
    base = any_store.get_program("loop").last_seq
    child = NewProgram("kid", "child.flow", "def main():\n    return 2\n", "ch", {}, parent_id="loop")
    any_store.commit([Commit("loop", c.fence, base, events=[("output", {"text": "dropped"})],
                             sends=[("friend", "inbox", "bye")], starts=[child], restart_args={"n": 2})], 13.0)
    row = any_store.get_program("loop")
    assert (row.status, row.run, row.last_seq, row.args, row.runnable, row.result) == (
        "running", 2, 1, {"n": 2}, True, None)
    (started,) = any_store.events("loop")
    assert (started.type, started.data["args"], started.data["run"]) == ("started", {"n": 2}, 2)
    assert any_store.checkpoint("loop") is None and any_store.list_calls("loop") == []
    # the user's message waits for the new run; the old run's internal ones are gone
    assert [(m.channel, m.message) for m in any_store.inbox("loop")] == [("inbox", {"hello": "loop"})]
    assert any_store.deliver_callback("tok-loop", {}, 14.0) == "unknown"
    assert [m.message for m in any_store.inbox("friend")] == ["bye"]
    assert any_store.get_program("kid").parent_id == "loop"
    # and it runs on: claimed and committed from event 1
    c = claim_one(any_store, only="loop", now=15.0)
    any_store.commit([Commit("loop", c.fence, 1, events=[("completed", {"result": 2})], status="completed",
                             result=2)], 16.0)
    assert [e.seq for e in any_store.events("loop")] == [1, 2]


def test_a_call_of_a_restarted_program_finishes_as_unknown(any_store: Store) -> None:
    _busy_program(any_store, "loop", 10.0, status=None)
    (claim,) = any_store.claim_calls("conn", "function", None, 30.0, 11.0, 5)
    c = claim_one(any_store, only="loop", now=12.0)
    any_store.commit([Commit("loop", c.fence, any_store.get_program("loop").last_seq, restart_args={})], 13.0)
    with pytest.raises(Exception, match="no call"):
        any_store.finish_call(claim.key, "conn", claim.attempt, CallOutcome(ok=True, result=1), 14.0)
    assert [m.channel for m in any_store.inbox("loop")] == ["inbox"]


# -- schedules -------------------------------------------------------------------------------------

def schedule(name: str = "nightly", **kw: Any) -> ScheduleRow:
    values: dict[str, Any] = {"program": "job", "args": {"n": 1}, "tz": "UTC", "every": 10.0, "next_tick": 100.0,
                              "due_at": 100.0}
    values.update(kw)
    return ScheduleRow(name=name, **values)


def test_schedules_are_created_listed_updated_and_deleted(any_store: Store) -> None:
    with pytest.raises(UnknownDeployment):
        any_store.create_schedule(schedule(), 1.0)
    any_store.deploy("job", "main.flow", bundle(), 1.0)
    any_store.create_schedule(schedule(), 2.0)
    with pytest.raises(ScheduleExists):
        any_store.create_schedule(schedule(), 3.0)
    any_store.create_schedule(schedule("later", next_tick=500.0, due_at=505.0), 3.0)
    assert [s.name for s in any_store.list_schedules()] == ["later", "nightly"]
    assert any_store.next_schedule_due() == 100.0
    s = any_store.update_schedule("nightly", {"paused": True}, 4.0)
    assert (s.paused, s.updated_at, s.created_at, s.args) == (True, 4.0, 2.0, {"n": 1})
    assert any_store.next_schedule_due() == 505.0
    with pytest.raises(OperationsError):
        any_store.update_schedule("nightly", {"runs": 5}, 5.0)
    any_store.delete_schedule("later")
    with pytest.raises(UnknownSchedule):
        any_store.get_schedule("later")
    with pytest.raises(UnknownSchedule):
        any_store.delete_schedule("later")


def test_firing_applies_the_plan_with_its_programs_atomically(any_store: Store) -> None:
    any_store.deploy("job", "main.flow", bundle(), 1.0, retain=99.0, set_retain=True)
    any_store.create_schedule(schedule(retain=None), 2.0)
    seen: list[tuple[str, bool, float]] = []

    def plan(s: ScheduleRow, live: bool, now: float) -> TickPlan:
        seen.append((s.name, live, now))
        assert s.next_tick is not None
        return TickPlan(runs=[(f"nightly@{s.next_tick:g}", s.next_tick)], next_tick=s.next_tick + 10,
                        due_at=s.next_tick + 10)

    assert any_store.fire_schedules(plan, 99.0) == []  # not due yet
    assert any_store.fire_schedules(plan, 100.5) == ["nightly@100"]
    row = any_store.get_program("nightly@100")
    assert (row.deployment, row.retain, row.args, row.filename) == ("job@1", 99.0, {"n": 1}, "main.flow")
    s = any_store.get_schedule("nightly")
    assert (s.next_tick, s.due_at, s.last_run, s.runs) == (110.0, 110.0, "nightly@100", 1)
    assert any_store.fire_schedules(plan, 110.0) == ["nightly@110"]
    assert seen == [("nightly", False, 100.5), ("nightly", True, 110.0)]
    # a run whose id exists already is not started again, nor counted
    any_store.update_schedule("nightly", {"next_tick": 100.0, "due_at": 100.0}, 111.0)
    assert any_store.fire_schedules(plan, 111.0) == []
    assert any_store.get_schedule("nightly").runs == 2


def test_firing_cancels_buffers_and_records_a_missing_deployment(any_store: Store) -> None:
    any_store.deploy("job", "main.flow", bundle(), 1.0)
    any_store.create_schedule(schedule(), 2.0)

    def first(s: ScheduleRow, live: bool, now: float) -> TickPlan:
        return TickPlan(runs=[("nightly@a", 100.0)], next_tick=110.0, due_at=110.0)

    any_store.fire_schedules(first, 100.0)

    def cancel_and_buffer(s: ScheduleRow, live: bool, now: float) -> TickPlan:
        assert live
        return TickPlan(cancel_last=True, next_tick=120.0, due_at=120.0, buffered=110.0, skipped=1)

    assert any_store.fire_schedules(cancel_and_buffer, 110.0) == []
    assert any_store.get_program("nightly@a").cancel_requested
    s = any_store.get_schedule("nightly")
    assert (s.buffered, s.skipped, s.last_run) == (110.0, 1, "nightly@a")
    # a buffered tick is due once the last run has ended, not before
    calls: list[bool] = []

    def start_buffered(s: ScheduleRow, live: bool, now: float) -> TickPlan:
        calls.append(live)
        return TickPlan(runs=[("nightly@b", 110.0)], next_tick=s.next_tick, due_at=s.due_at)

    assert any_store.fire_schedules(start_buffered, 111.0) == []
    finish(any_store, "nightly@a", 112.0, "cancelled")
    assert any_store.fire_schedules(start_buffered, 113.0) == ["nightly@b"]
    assert calls == [False]
    assert any_store.get_schedule("nightly").buffered is None
    # a deployment that disappeared (a store restored without it) is recorded, the tick moves on
    any_store.create_schedule(schedule("ghost", program="job"), 114.0)
    any_store.update_schedule("ghost", {"program": "gone"}, 115.0)
    assert any_store.fire_schedules(lambda s, live, now: TickPlan(runs=[("ghost@1", 1.0)], next_tick=200.0,
                                                                   due_at=200.0), 116.0) == []
    ghost = any_store.get_schedule("ghost")
    assert "no deployment named 'gone'" in (ghost.last_error or "") and ghost.next_tick == 200.0


def test_start_scheduled_ignores_taken_ids(any_store: Store) -> None:
    any_store.deploy("job", "main.flow", bundle(), 1.0)
    any_store.create_schedule(schedule(), 2.0)
    any_store.create_program(new("nightly@x"), 3.0)  # someone else's program took this id
    created = any_store.start_scheduled("nightly", [("nightly@x", 1.0), ("nightly@y", 2.0)], 4.0)
    assert created == ["nightly@y"]
    assert any_store.start_scheduled("nightly", [("nightly@y", 2.0)], 5.0) == []
    s = any_store.get_schedule("nightly")
    assert (s.runs, s.last_run) == (1, "nightly@y")
    assert any_store.get_program("nightly@x").deployment is None  # left alone
