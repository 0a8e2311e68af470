"""Golden event logs: the exact histories a few programs record.

For each program in GOLDEN, `tests/golden/events/NAME.jsonl` holds its full event
log (one event per line) and `NAME.slices.json` the state after each committed
slice. Both come from a deterministic run: a fake clock starting at T0, inputs
sent at fixed times (INPUTS), `rng=random.Random(0)`. The only volatile field,
the absolute path in the `started` event, is stored relative to the repository.

(a) Re-running each program must reproduce its golden log exactly — a change
    of the event format, of what gets recorded, or of the order of events shows
    up here (and needs EVENT_VERSION / a migration if it is intended).
(b) A store built from the golden log alone (rows inserted with SQL, NO
    checkpoint) must replay to the same state — at every slice boundary — and
    continue to the recorded end.

To regenerate after an intended change (review the diff!):

    FLOWMETAL_REGEN_GOLDEN=1 .venv/bin/python -m pytest tests/test_golden_events.py
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from flowmetal.lang.program import source_hash
from flowmetal.runtime.driver import Runtime
from flowmetal.runtime.inspect import describe
from flowmetal.runtime.worker import Worker
from flowmetal.store import open_store
from flowmetal.store.base import FINISHED, Store

ROOT = Path(__file__).parent.parent
FLOWS = Path(__file__).parent / "flows"
GOLDEN_DIR = Path(__file__).parent / "golden" / "events"
REGEN = os.environ.get("FLOWMETAL_REGEN_GOLDEN") == "1"
T0 = 1_700_000_000.0

GOLDEN = ["golden_basic", "golden_tasks", "golden_messages", "golden_cancel"]
ARGS: dict[str, dict[str, Any]] = {"golden_basic": {"name": "world"}}
# (seconds after T0, channel, message): sent when the fake clock reaches that time
INPUTS: dict[str, list[tuple[float, str, Any]]] = {
    "golden_messages": [
        (0.0, "control", {"cmd": "go"}),
        (10.0, "inbox", "first"),
        (20.0, "inbox", {"last": [1, 2.5, None, True]}),
    ],
}


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def relative(path: str) -> str:
    p = Path(path)
    return p.relative_to(ROOT).as_posix() if p.is_absolute() and p.is_relative_to(ROOT) else path


def normalize(events: list[Any]) -> list[dict[str, Any]]:
    out = []
    for e in events:
        data = dict(e.data)
        if e.type == "started":
            data["file"] = relative(data["file"])
        out.append({"seq": e.seq, "type": e.type, "at": e.at, "data": data})
    return out


def drive(store: Store, rt: Runtime, clock: Clock, pid: str, inputs: list[tuple[float, str, Any]],
          slices: list[dict[str, Any]] | None = None) -> None:
    """Run `pid` to its end: send inputs when due, jump the clock to the next timer or input."""
    pending = sorted(inputs, key=lambda x: x[0])
    worker = Worker(rt, lease=60.0, only=pid, notify=False)
    for _ in range(10_000):
        while pending and T0 + pending[0][0] <= clock.t:
            _, channel, message = pending.pop(0)
            store.send(pid, channel, message, clock.t)
        row = store.get_program(pid)
        if row.status in FINISHED:
            assert worker.stats.errors == []
            return
        before = row.last_seq
        if worker.step():
            assert worker.stats.errors == [], worker.stats.errors[-1]
            row = store.get_program(pid)
            if slices is not None and row.last_seq != before:
                slices.append({"seq": row.last_seq, "clock": clock.t, "status": row.status,
                               "waiting_on": row.waiting_on, "wake_at": row.wake_at, "runnable": row.runnable})
            continue
        times = [t for t in (store.next_wake(), T0 + pending[0][0] if pending else None) if t is not None]
        assert times, f"{pid} waits for something no input brings"
        clock.t = max(clock.t, min(times))
    raise AssertionError(f"{pid} did not finish")


def fresh_run(tmp_path: Path, name: str) -> tuple[Store, Runtime, list[dict[str, Any]], list[dict[str, Any]]]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    store = open_store(f"sqlite:///{tmp_path / f'{name}.db'}")
    clock = Clock(T0)
    rt = Runtime(store, clock=clock, rng=random.Random(0))
    pid = rt.start(str(FLOWS / f"{name}.flow"), ARGS.get(name, {}), program_id=name)
    slices: list[dict[str, Any]] = []
    drive(store, rt, clock, pid, INPUTS.get(name, []), slices)
    return store, rt, normalize(store.events(pid)), slices


def golden_paths(name: str) -> tuple[Path, Path]:
    return GOLDEN_DIR / f"{name}.jsonl", GOLDEN_DIR / f"{name}.slices.json"


def load_golden(name: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    events_path, slices_path = golden_paths(name)
    if not events_path.exists():
        pytest.fail(f"no golden log {events_path}: generate it with FLOWMETAL_REGEN_GOLDEN=1")
    events = [json.loads(line) for line in events_path.read_text().splitlines() if line.strip()]
    return events, json.loads(slices_path.read_text())


# -- (a) a fresh run reproduces the golden log -----------------------------------------------------

@pytest.mark.parametrize("name", GOLDEN)
def test_fresh_run_matches_golden_log(tmp_path: Path, name: str) -> None:
    store, _, events, slices = fresh_run(tmp_path, name)
    row = store.get_program(name)
    assert row.status == "completed", row.error
    events_path, slices_path = golden_paths(name)
    if REGEN:
        GOLDEN_DIR.mkdir(parents=True, exist_ok=True)
        events_path.write_text("".join(json.dumps(e, sort_keys=True) + "\n" for e in events))
        slices_path.write_text(json.dumps(slices, indent=1, sort_keys=True) + "\n")
    golden_events, golden_slices = load_golden(name)
    assert golden_events[0]["data"]["source_hash"] == source_hash((FLOWS / f"{name}.flow").read_text()), (
        f"{name}.flow changed since its golden log was made: regenerate it (see this module's docstring)")
    for got, want in zip(events, golden_events):
        assert got == want, f"event {want['seq']} differs"
    assert len(events) == len(golden_events)
    assert slices == golden_slices
    store.close()


# -- (b) a store built from the golden log replays to the same state -------------------------------

def build_store(path: Path, name: str, events: list[dict[str, Any]], cut: dict[str, Any]) -> Store:
    """A store holding the golden log up to the slice boundary `cut` — rows written with plain SQL,
    no checkpoint — and the messages sent by then (from outside, or by the program to itself)
    but not yet received."""
    store = open_store(f"sqlite:///{path}")
    started = events[0]["data"]
    source = (FLOWS / f"{name}.flow").read_text()
    upto = [e for e in events if e["seq"] <= cut["seq"]]
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN")
    conn.execute("INSERT INTO sources VALUES (?, ?, ?)", (started["source_hash"], str(FLOWS / f"{name}.flow"),
                                                          source))
    conn.execute(
        "INSERT INTO programs (id, filename, source_hash, args, status, runnable, wake_at, waiting_on, last_seq,"
        " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (name, str(FLOWS / f"{name}.flow"), started["source_hash"], json.dumps(started["args"]), cut["status"],
         int(cut["runnable"]), cut["wake_at"], json.dumps(cut["waiting_on"]) if cut["waiting_on"] else None,
         cut["seq"], events[0]["at"], cut["clock"]))
    conn.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?)",
                     [(name, e["seq"], e["type"], json.dumps(e["data"]), e["at"]) for e in upto])
    received: dict[str, int] = {}
    for e in upto:
        if e["type"] == "message_received":
            received[e["data"]["channel"]] = received.get(e["data"]["channel"], 0) + 1
    sent = [(T0 + at, channel, message) for at, channel, message in INPUTS.get(name, [])
            if T0 + at <= cut["clock"]]
    for e in upto:  # messages the program sent to itself
        d = e["data"]
        if e["type"] == "effect_requested" and d["kind"] == "send" and d["args"][0] == name:
            channel = d["args"][2] if len(d["args"]) > 2 else d["kwargs"].get("channel", "inbox")
            sent.append((e["at"], channel, d["args"][1]))
    for at, channel, message in sorted(sent, key=lambda x: x[0]):
        if received.get(channel, 0) > 0:
            received[channel] -= 1  # already received before the cut
            continue
        conn.execute("INSERT INTO inbox (program_id, channel, message, sent_at) VALUES (?, ?, ?, ?)",
                     (name, channel, json.dumps(message), at))
    conn.execute("COMMIT")
    conn.close()
    return store


def rng_after(events: list[dict[str, Any]]) -> random.Random:
    """Random(0) advanced by exactly the draws recorded up to the cut."""
    rng = random.Random(0)
    for e in events:
        if e["type"] != "effect_requested":
            continue
        kind, args = e["data"]["kind"], e["data"]["args"]
        if kind == "random":
            rng.random()
        elif kind == "randint":
            rng.randint(*args)
        elif kind == "uuid4":
            rng.getrandbits(128)
    return rng


def comparable(desc: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(desc))


@pytest.mark.parametrize("name", GOLDEN)
def test_store_built_from_golden_log_replays(tmp_path: Path, name: str) -> None:
    golden_events, golden_slices = load_golden(name)
    final = golden_events[-1]
    assert final["type"] == "completed"
    # the same program with a checkpoint after every slice: the reference state at each boundary
    ref_store, ref_rt, _, _ = fresh_run(tmp_path / "reference", name)
    ref_row = ref_store.get_program(name)

    cuts = [s for s in golden_slices if s["status"] not in FINISHED]
    assert cuts, "a golden program must wait at least once"
    for i, cut in enumerate(cuts):
        db = tmp_path / f"cut{i}.db"
        store = build_store(db, name, golden_events, cut)
        assert store.checkpoint(name) is None
        clock = Clock(cut["clock"])
        rt = Runtime(store, clock=clock, rng=rng_after([e for e in golden_events if e["seq"] <= cut["seq"]]))
        row = store.get_program(name)

        machine, seq = rt.load(row)  # replays every event: there is no checkpoint
        assert seq == cut["seq"]
        ref_machine, ref_seq = ref_rt.load(ref_row, upto=cut["seq"])  # from the checkpoint at the cut
        assert ref_seq == cut["seq"]
        assert comparable(describe(machine, cut["waiting_on"]["waits"])) == comparable(
            describe(ref_machine, cut["waiting_on"]["waits"])), f"state differs at event {cut['seq']}"
        assert sorted(machine.pending) == sorted(ref_machine.pending)

        later = [x for x in INPUTS.get(name, []) if T0 + x[0] > cut["clock"]]
        drive(store, rt, clock, name, later)
        row = store.get_program(name)
        assert (row.status, row.result) == ("completed", final["data"]["result"])
        assert normalize(store.events(name)) == golden_events
        store.close()
    ref_store.close()


def test_golden_files_are_one_json_object_per_line() -> None:
    for name in GOLDEN:
        events_path, _ = golden_paths(name)
        lines = events_path.read_text().splitlines()
        records = [json.loads(line) for line in lines]
        assert [r["seq"] for r in records] == list(range(1, len(records) + 1))
        assert records[0]["data"]["file"] == f"tests/flows/{name}.flow"
        assert records[-1]["type"] == "completed"
