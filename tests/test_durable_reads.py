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


RANDOMNESS = """
import random
import time
import uuid
from flowmetal import receive


def main():
    started = time.time()
    tick = time.monotonic()
    values = [random.random(), random.randint(1, 10**9), random.choice("abcdefgh"), str(uuid.uuid4())]
    fresh = random.Random()
    mine = [fresh.random(), fresh.getrandbits(64)]
    print("drawn", values, mine)
    time.sleep(30)
    values.append(random.random())
    print("after", time.time() - started, time.monotonic() - tick, time.strftime("%H:%M:%S"))
    message = receive()
    return {"values": values, "mine": mine, "message": message, "uuid": str(uuid.uuid4())}
"""


def test_module_randomness_and_the_time_module_replay_exactly(tmp_path: Path) -> None:
    env = Env(tmp_path / "store", checkpoint_every=10**9)
    pid = env.start("randomness", path=_program(tmp_path, "randomness", RANDOMNESS))
    row = env.drive(pid)
    assert row.status == "waiting"
    printed = env.output(pid)
    assert "after 30.0 30.0 13:47:10\n" in printed
    reads = [e.data["what"] for e in env.events(pid) if e.type == "read"]
    # one read of fresh randomness for the whole program (the module's generator, Random() and
    # uuid4 draw from it), and the clock each time it is read
    assert reads == ["time.time()", "time.monotonic()", "random.Random()", "time.time()", "time.monotonic()",
                     "time.strftime()"]
    assert [e.data["kind"] for e in env.events(pid) if e.type == "effect_requested"] == ["sleep", "receive"]
    # replayed from the start by a new runtime with another random source: the same numbers
    store2 = open_store(env.url)
    rt2 = Runtime(store2, clock=env.clock, rng=random.Random(99), checkpoint_every=10**9)
    env.send(pid, "go")
    row = env.drive(pid, env.new_worker(rt2))
    assert row.status == "completed", row.error
    assert env.output(pid) == printed
    assert str(row.result["values"][:4]) in printed.replace('"', "'")
    assert row.result["message"] == "go" and len(row.result["uuid"]) == 36
    store2.close()
    # and a second program gets other numbers (its own seed read)
    other = env.start("randomness", path=_program(tmp_path, "randomness", RANDOMNESS), pid="other")
    env.drive(other)
    assert env.output(other).splitlines()[0] != printed.splitlines()[0]


def test_a_seeded_module_generator_reads_nothing() -> None:
    from flowmetal.machine.api import run_source

    res = run_source("import random\nrandom.seed(7)\nprint(random.random(), random.Random(3).random())\n")
    import random as host

    assert res.error_line is None, res.error_line
    assert res.output == f"{host.Random(7).random()} {host.Random(3).random()}\n"


def test_time_sleep_is_the_durable_sleep_wherever_it_is_called() -> None:
    # the compiler's wait analysis knows time.sleep waits: a helper that calls it is resumable,
    # however it is named or passed
    from flowmetal.machine.api import compile_program, run_program

    source = ("import time\nfrom time import sleep as nap\n\ndef helper(n):\n    time.sleep(n)\n    return n\n\n"
              "def other(n):\n    nap(n)\n    return n\n\n"
              "print(helper(3), other(4), list(map(time.sleep, [1, 2])), max([5], key=time.sleep), min([6], key=nap))\n")
    asked: list[tuple[str, tuple[object, ...]]] = []

    def handle(req: object) -> None:
        asked.append((req.name, req.args))  # type: ignore[attr-defined]

    res = run_program(compile_program(source, "sleepy.flow"), handle_effect=handle)
    assert res.error_line is None, res.traceback
    assert res.output == "3 4 [None, None] 5 6\n"
    assert asked == [("sleep", (3,)), ("sleep", (4,)), ("sleep", (1,)), ("sleep", (2,)), ("sleep", (5,)),
                     ("sleep", (6,))]


def test_generators_and_entropy_kept_in_checkpoints_draw_what_a_replay_draws(tmp_path: Path) -> None:
    # every slice restored from a checkpoint in a new runtime (the module's generator, Random()
    # instances and the program's entropy come back from the snapshot) prints and returns what a
    # program kept in memory does, with the same runtime random source
    results = []
    for name, kw in (("kept", {}), ("checkpointed", {"fresh": True, "checkpoint_every": 1})):
        env = Env(tmp_path / name, **kw)
        pid = env.start("randomness", path=_program(tmp_path, "randomness", RANDOMNESS))
        assert env.drive(pid).status == "waiting"
        env.send(pid, "go")
        row = env.drive(pid)
        assert row.status == "completed", row.error
        results.append((env.output(pid), row.result))
        env.store.close()
    assert results[0] == results[1]


def test_time_sleep_checks_its_argument_as_cpython_does() -> None:
    from flowmetal.machine.api import compile_program, run_program

    source = ("import time\nfor bad in (-1, 'x', float('nan')):\n    try:\n        time.sleep(bad)\n"
              "    except (ValueError, TypeError) as e:\n        print(type(e).__name__, e)\n"
              "print(time.sleep)\ntime.sleep(1, 2)\n")
    res = run_program(compile_program(source, "bad_sleep.flow"), handle_effect=lambda req: None)
    assert res.output == ("ValueError sleep length must be non-negative\n"
                          "TypeError 'str' object cannot be interpreted as an integer\n"
                          "ValueError Invalid value NaN (not a number)\n<built-in function sleep>\n")
    assert res.error_line == "TypeError: time.sleep() takes exactly one argument (2 given)"


def test_methods_of_generators_and_dates_keep_a_function_plain() -> None:
    # `rng.randint()`, `rng.random()`, `moment.now()` are named like durable actions but never
    # wait, unless the program holds the flowmetal module itself (which could be the receiver)
    from flowmetal.lang.program import compile_program

    source = ("import random\nfrom datetime import date\n{extra}\n\ndef roll(rng):\n"
              "    return rng.randint(1, 6) + rng.random() + rng.choice([1, 2])\n\n"
              "def week(d):\n    return d.isocalendar().week + d.weekday() + len(d.strftime('%a'))\n")

    def resumable(extra: str) -> set[str]:
        program = compile_program(source.format(extra=extra), "plain.flow")
        return {u.qualname for u in program.units.values()}

    assert not {"roll", "week"} & resumable("")
    assert "roll" in resumable("import flowmetal") and "week" not in resumable("import flowmetal")


def test_the_read_of_fresh_randomness_is_named_by_what_asked_for_it() -> None:
    # (no process-wide flag: the name a replay checks is the program's own, whatever other
    # programs do in other threads)
    from flowmetal.machine.api import Machine, compile_program
    from flowmetal.machine.stdlib.context import FixedReads

    class Logged(FixedReads):
        def __init__(self) -> None:
            super().__init__(0.0, "ab" * 16)
            self.asked: list[str] = []

        def seed(self, what: str) -> str:
            self.asked.append(what)
            return super().seed(what)

    for source, asked in [("random.seed()\nrandom.seed()", ["random.seed()"]),
                          ("random.seed(a=None)", ["random.seed()"]), ("random.random()", ["random.Random()"]),
                          ("random.Random().random()", ["random.Random()"]), ("uuid.uuid4()", ["uuid.uuid4()"]),
                          ("random.seed(5)\nrandom.random()", [])]:
        machine = Machine(compile_program(f"import random, uuid\n{source}\n", "x.flow"))
        machine.reads = reads = Logged()
        machine.run()
        assert reads.asked == asked, source
