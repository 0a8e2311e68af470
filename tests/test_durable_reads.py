"""The clock and fresh randomness read by the standard modules (`datetime.now()`, `date.today()`,
and more as they come) are durable reads: the slice answers them, records each as a `read` event,
and a replay — a restart without checkpoints, in a new runtime with another random source — gets
the recorded answers, so the program prints and returns what it did the first time."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

from flowmetal.runtime.driver import Runtime
from flowmetal.store import open_store
from test_runtime import T0, Env

CLOCK = """
from datetime import date, datetime, timezone
from zoneinfo import ZoneInfo
from flowmetal import receive, sleep


def main():
    first = datetime.now(timezone.utc)
    naive = datetime.utcnow()
    print("first", first.isoformat(), naive.isoformat(), date.today(), datetime.now(ZoneInfo("Asia/Tokyo")))
    sleep(3600)
    later = datetime.now()
    print("later", later, later - naive)
    message = receive()
    return {"first": first.timestamp(), "later": later.timestamp(), "message": message}
"""


def _program(tmp_path: Path, name: str, source: str) -> Path:
    path = tmp_path / f"{name}.flow"
    path.write_text(source)
    return path


def test_clock_reads_are_recorded_and_replayed(tmp_path: Path) -> None:
    env = Env(tmp_path / "store", checkpoint_every=10**9)  # no checkpoints: a resume replays everything
    pid = env.start("clock", path=_program(tmp_path, "clock", CLOCK))
    row = env.drive(pid)
    assert row.status == "waiting"
    printed = env.output(pid)
    assert printed == ("first 1970-01-12T13:46:40+00:00 1970-01-12T13:46:40 1970-01-12 1970-01-12 22:46:40+09:00\n"
                       "later 1970-01-12 14:46:40 1:00:00\n")
    reads = [{k: v for k, v in e.data.items() if k != "v"} for e in env.events(pid) if e.type == "read"]
    assert reads == [{"what": "datetime.now()", "value": T0}, {"what": "datetime.utcnow()", "value": T0},
                     {"what": "date.today()", "value": T0}, {"what": "datetime.now()", "value": T0},
                     {"what": "datetime.now()", "value": T0 + 3600}]
    # a new process, much later, with another random source and no checkpoint: it replays the
    # reads from the record (the clock says a day later; the program still saw T0)
    store2 = open_store(env.url)
    rt2 = Runtime(store2, clock=env.clock, rng=random.Random(7), checkpoint_every=10**9)
    env.clock.advance(86400)
    env.send(pid, "go")
    row = env.drive(pid, env.new_worker(rt2))
    assert row.status == "completed", row.error
    assert row.result == {"first": T0, "later": T0 + 3600, "message": "go"}
    assert env.output(pid) == printed  # nothing printed again
    store2.close()


def test_a_tampered_read_makes_the_replay_diverge(tmp_path: Path) -> None:
    env = Env(tmp_path / "store", checkpoint_every=10**9)
    pid = env.start("clock", path=_program(tmp_path, "clock", CLOCK))
    assert env.drive(pid).status == "waiting"
    conn = sqlite3.connect(env.db)
    with conn:
        cur = conn.execute("UPDATE events SET data = json_set(data, '$.what', 'time.time()') WHERE program_id = ?"
                           " AND type = 'read' AND seq = (SELECT MIN(seq) FROM events WHERE program_id = ? AND"
                           " type = 'read')", (pid, pid))
        assert cur.rowcount == 1
    conn.close()
    env.send(pid, "go")
    row = env.drive(pid, env.new_worker(env.restarted()))
    assert row.status == "failed"
    assert row.error is not None and "ReplayDiverged" in row.error and "time.time()" in row.error


def test_a_loop_reading_the_clock_fails_with_a_quota_not_forever(tmp_path: Path) -> None:
    source = ("from datetime import datetime\n\ndef main():\n    start = datetime.now()\n"
              "    while datetime.now() == start:\n        pass\n")
    env = Env(tmp_path / "store")
    pid = env.start("spin", path=_program(tmp_path, "spin", source))
    row = env.drive(pid)
    assert row.status == "failed"
    assert row.error is not None and "QuotaExceeded" in row.error and "clock does not move" in row.error


def test_without_the_durable_runtime_the_clock_cannot_be_read() -> None:
    from flowmetal.machine.api import run_source

    res = run_source("from datetime import date\nprint(date.today())\n")
    assert res.error_line is not None
    assert "date.today() reads the clock, which only the durable runtime can answer" in res.error_line
