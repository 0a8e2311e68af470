"""The durable-program CLI end to end: real `flowmetal` processes on a SQLite
store in tmp_path (`--store sqlite:////abs/path`)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cli_checks import kill_all, one_clear_line, wait_for
from flowmetal.runtime.driver import Runtime
from flowmetal.runtime.worker import Worker
from flowmetal.store import open_store
from flowmetal.store.base import FINISHED

FLOWS = Path(__file__).parent / "flows"
FLOWMETAL = [sys.executable, "-m", "flowmetal"]


class CLI:
    def __init__(self, tmp_path: Path) -> None:
        self.db = tmp_path / "cli.db"
        self.url = f"sqlite:///{self.db}"  # sqlite:////abs/path.db
        assert self.url.startswith("sqlite:////")
        self.cwd = tmp_path
        self.env = {k: v for k, v in os.environ.items() if k != "FLOWMETAL_STORE"}
        self.procs: list[subprocess.Popen[str]] = []

    def __call__(self, *args: str, timeout: float = 30, store: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [*FLOWMETAL, *args] + (["--store", self.url] if store else [])
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=self.cwd, env=self.env)

    def ok(self, *args: str, timeout: float = 30) -> str:
        r = self(*args, timeout=timeout)
        assert r.returncode == 0, (args, r.stdout, r.stderr)
        return r.stdout

    def popen(self, *args: str) -> subprocess.Popen[str]:
        p = subprocess.Popen([*FLOWMETAL, *args, "--store", self.url], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, cwd=self.cwd, env=self.env)
        self.procs.append(p)
        return p

    def start(self, name: str, args: dict[str, Any] | None = None, pid: str | None = None) -> str:
        cmd = ["start", str(FLOWS / f"{name}.flow")]
        if args is not None:
            cmd += ["--args", json.dumps(args)]
        if pid is not None:
            cmd += ["--id", pid]
        return self.ok(*cmd).strip()

    def resume(self, pid: str) -> str:
        """`flowmetal resume`: streams the program's output, then prints its status."""
        return self.ok("resume", pid).splitlines()[-1]

    def create(self, name: str, args: dict[str, Any] | None = None, pid: str | None = None) -> str:
        """Start a program in process (setup for tests of other commands)."""
        store = open_store(self.url)
        try:
            return Runtime(store).start(str(FLOWS / f"{name}.flow"), args, program_id=pid)
        finally:
            store.close()

    def status(self, pid: str) -> dict[str, Any]:
        """Read in process (machine load makes every extra subprocess slow)."""
        store = open_store(self.url)
        try:
            return store.get_program(pid).to_json()
        finally:
            store.close()

    def settle(self, pid: str) -> str:
        """Run a program in process until it finishes or waits for the outside (like `resume`)."""
        store = open_store(self.url)
        try:
            rt = Runtime(store)
            if store.get_program(pid).status not in FINISHED:
                store.make_runnable(pid, time.time())

            def done() -> bool:
                row = store.get_program(pid)
                return row.status in FINISHED or (row.status == "waiting" and not row.runnable
                                                  and row.wake_at is None)

            Worker(rt, only=pid, notify=False).run(until=done)
            return store.get_program(pid).status
        finally:
            store.close()

    def send(self, pid: str, message: Any) -> None:
        store = open_store(self.url)
        try:
            store.send(pid, "inbox", message, time.time())
        finally:
            store.close()

    def history(self, pid: str) -> list[Any]:
        store = open_store(self.url)
        try:
            return store.events(pid)
        finally:
            store.close()

    def table(self, sql: str, *params: Any) -> list[tuple]:
        store = open_store(self.url)
        try:
            return [tuple(r) for r in store.db.execute(sql, params).fetchall()]
        finally:
            store.close()


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[CLI]:
    c = CLI(tmp_path)
    yield c
    kill_all(c.procs)  # only the processes this test started


# -- start, status, list --------------------------------------------------------------------

def test_start_prints_an_id_and_status(cli: CLI) -> None:
    pid = cli.start("cli_wait", {"tag": "a"})
    assert pid and " " not in pid and "\n" not in pid
    st = json.loads(cli.ok("status", pid, "--json"))
    assert st["id"] == pid
    assert st["status"] == "running"
    assert st["args"] == {"tag": "a"}
    assert cli.ok("status", pid).strip() == "running"
    chosen = cli.start("cli_wait", pid="my-id")
    assert chosen == "my-id"
    assert cli.start("cli_wait", pid="my-id") == "my-id"  # idempotent
    r = cli("start", str(FLOWS / "cli_wait.flow"), "--id", "my-id", "--args", '{"tag": "other"}')
    assert "already exists" in one_clear_line(r)


def test_start_bad_args_and_bad_program(cli: CLI, tmp_path: Path) -> None:
    r = cli("start", str(FLOWS / "cli_wait.flow"), "--args", "{nope")
    assert r.returncode == 2 and "malformed JSON" in one_clear_line(r)
    r = cli("start", str(FLOWS / "cli_wait.flow"), "--args", "[1]")
    assert r.returncode == 2 and "JSON object" in one_clear_line(r)
    bad = tmp_path / "bad.flow"
    bad.write_text("import os\n\n\ndef main():\n    return 1\n")
    r = cli("start", str(bad))
    assert r.returncode == 2 and "bad.flow:1:" in r.stderr and "Traceback" not in r.stderr
    r = cli("start", str(tmp_path / "missing.flow"))
    assert r.returncode == 2 and "missing.flow" in one_clear_line(r)
    assert cli.ok("list") == ""  # (and "no programs" on stderr)


def test_read_only_commands_do_not_create_a_store(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "FLOWMETAL_STORE"}
    for args in (["list"], ["status", "x"], ["result", "x"], ["history", "x"]):
        r = subprocess.run([*FLOWMETAL, *args], capture_output=True, text=True, timeout=30, cwd=elsewhere, env=env)
        assert r.returncode == 2, (args, r.stderr)
        assert "no store at flowmetal.db" in one_clear_line(r) and "--store" in r.stderr
    assert list(elsewhere.iterdir()) == []


def test_list_and_status_filter(cli: CLI) -> None:
    a = cli.create("cli_wait", pid="a")
    b = cli.create("cli_steps", {"n": 1, "delay": 0}, pid="b")
    assert cli.settle(b) == "completed"
    header, *lines = cli.ok("list").splitlines()
    assert header.split() == ["ID", "STATUS", "CREATED", "UPDATED", "EVENTS", "FILE", "WAITING", "FOR"]
    assert [line.split()[0] for line in lines] == [a, b]
    created = " ".join(lines[0].split()[2:4])
    assert time.strptime(created, "%Y-%m-%d %H:%M:%S")  # a readable UTC time
    assert lines[1].split()[-1].endswith("cli_steps.flow")

    def ids(*args: str) -> list[str]:
        return [line.split()[0] for line in cli.ok("list", *args).splitlines()[1:]]

    assert ids("--status", "completed") == [b]
    assert ids("--status", "running") == [a]
    assert ids("--status", "running", "--status", "completed") == [a, b]
    assert ids("--newest-first") == [b, a]
    assert ids("--file", "steps") == [b]
    assert ids("--since", "2000-01-01") == [a, b] and ids("--before", "2000-01-01T00:00:00Z") == []
    r = cli("list", "--status", "failed")
    assert r.returncode == 0 and r.stdout == "" and "no programs" in r.stderr
    r = cli("list", "--limit", "1")
    assert [line.split()[0] for line in r.stdout.splitlines()[1:]] == [a]
    cursor = r.stderr.split("--cursor ")[1].split()[0]
    assert ids("--limit", "1", "--cursor", cursor) == [b]
    rows = json.loads(cli.ok("list", "--json"))
    assert {r["id"]: r["status"] for r in rows} == {"a": "running", "b": "completed"}
    assert rows[0]["created_at_iso"].endswith("Z")
    # what a waiting program waits for, in its words
    assert cli.settle(a) == "waiting"
    assert cli.ok("list", "--status", "waiting").splitlines()[1].endswith('cli_wait.flow  receive on "inbox"')
    assert json.loads(cli.ok("list", "--json"))[0]["waiting_for"] == ['receive on "inbox"']
    assert cli("list", "--status", "bogus").returncode == 2
    for bad in (("--since", "yesterday"), ("--cursor", "nope"), ("--limit", "0")):
        r = cli("list", *bad)
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr


# -- messages ------------------------------------------------------------------------------

def test_send_malformed_json_changes_nothing(cli: CLI) -> None:
    pid = cli.create("cli_wait")
    before = cli.table("SELECT * FROM inbox"), cli.table("SELECT * FROM events"), cli.table("SELECT * FROM programs")
    r = cli("send", pid, "{not json")
    assert r.returncode == 2
    assert "malformed JSON" in one_clear_line(r)
    after = cli.table("SELECT * FROM inbox"), cli.table("SELECT * FROM events"), cli.table("SELECT * FROM programs")
    assert after == before


def test_send_delivers_and_finished_program_refuses(cli: CLI) -> None:
    pid = cli.create("cli_wait", {"tag": "t"})
    assert cli.settle(pid) == "waiting"
    assert 'waiting for receive on "inbox"' in cli.ok("status", pid)
    cli.ok("send", pid, '{"hello": [1, 2]}')
    assert cli.table("SELECT channel, message FROM inbox") == [("inbox", '{"hello":[1,2]}')]
    assert cli.settle(pid) == "completed"
    assert json.loads(cli.ok("result", pid)) == {"tag": "t", "message": {"hello": [1, 2]}}
    r = cli("send", pid, '"late"')
    line = one_clear_line(r)
    assert "already completed" in line and pid in line
    assert cli.table("SELECT * FROM inbox") == []


def test_send_to_a_channel(cli: CLI) -> None:
    pid = cli.create("cli_wait")
    cli.ok("send", pid, "1", "--channel", "side")
    assert cli.table("SELECT channel, message FROM inbox") == [("side", "1")]


# -- results -----------------------------------------------------------------------------

def test_result_wait_timeout_and_unfinished(cli: CLI) -> None:
    pid = cli.create("cli_wait")
    r = cli("result", pid)
    assert r.returncode == 1 and "has not finished" in one_clear_line(r)
    began = time.monotonic()
    r = cli("result", pid, "--wait", "--timeout", "0.5")
    assert r.returncode == 1 and "has not finished" in one_clear_line(r)
    assert time.monotonic() - began < 10


def test_result_wait_with_a_worker(cli: CLI) -> None:
    worker = cli.popen("worker")
    pid = cli.start("cli_steps", {"n": 2, "delay": 0.1})
    r = cli("result", pid, "--wait", "--timeout", "20")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"steps": 2}
    failing = cli.create("cli_steps", {"n": 1, "delay": 0, "fail": True})
    r = cli("result", failing, "--wait", "--timeout", "20")
    assert r.returncode == 1
    assert "asked to fail" in one_clear_line(r)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=10) == 0


# -- history and inspect ------------------------------------------------------------------------

def test_history_text_and_json(cli: CLI) -> None:
    pid = cli.create("cli_steps", {"n": 2, "delay": 0})
    cli.settle(pid)
    text = cli.ok("history", pid).splitlines()
    records = [json.loads(line) for line in cli.ok("history", pid, "--json").splitlines()]
    assert len(text) == len(records) == cli.status(pid)["events"]
    assert [r["seq"] for r in records] == list(range(1, len(records) + 1))
    assert records[0]["type"] == "started" and records[-1]["type"] == "completed"
    assert all(r["program"] == pid for r in records)
    assert "".join(r["text"] for r in records if r["type"] == "output") == "step 0\nstep 1\n"
    assert text[0].split()[0] == "1" and "started" in text[0]
    assert "completed" in text[-1]


def test_inspect_now_and_at_an_event(cli: CLI) -> None:
    pid = cli.create("cli_wait", {"tag": "zz"})
    cli.settle(pid)
    now = cli.ok("inspect", pid)
    assert f"program {pid} at event" in now
    assert "in helper" in now and "in main" in now
    assert "tag = 'zz'" in now and "note = 'waiting for zz'" in now
    assert 'waiting for receive on "inbox"' in now
    data = json.loads(cli.ok("inspect", pid, "--json"))
    assert data["id"] == pid
    assert [f["function"] for f in data["tasks"][0]["stack"]] == ["main", "helper"]
    cli.send(pid, "m")
    assert cli.settle(pid) == "completed"
    (receive,) = [e.seq for e in cli.history(pid) if e.type == "effect_requested"]
    earlier = cli.ok("inspect", pid, "--at", str(receive))
    assert f"at event {receive}" in earlier
    assert "in helper" in earlier and "note = 'waiting for zz'" in earlier
    assert 'waiting for receive on "inbox"' in earlier
    at_start = cli.ok("inspect", pid, "--at", "1")
    assert "in helper" not in at_start
    r = cli("inspect", pid, "--at", "9999")
    assert r.returncode == 2 and "--at" in one_clear_line(r)


# -- cancel and resume --------------------------------------------------------------------------

def test_cancel(cli: CLI) -> None:
    pid = cli.create("cancel")
    assert cli.settle(pid) == "waiting"
    cli.ok("cancel", pid)
    r = cli("resume", pid)  # as `run` ends: exit 1, the error on stderr
    assert r.returncode == 1 and "Cancelled" in r.stderr and r.stdout == "cancelled\ncleanup\n"
    st = cli.status(pid)
    assert st["status"] == "cancelled" and "Cancelled" in st["error"]
    r = cli("result", pid)
    assert r.returncode == 1 and "cancelled" in one_clear_line(r)
    outputs = "".join(e.data["text"] for e in cli.history(pid) if e.type == "output")
    assert outputs == "waiting\ncancelled\ncleanup\n"
    r = cli("cancel", pid)
    assert "already cancelled" in one_clear_line(r)


def test_resume_runs_until_waiting_then_finishes(cli: CLI) -> None:
    pid = cli.create("cli_wait")
    r = cli("resume", pid)
    assert r.returncode == 0 and r.stdout == "ready\nwaiting\n"
    began = time.monotonic()
    assert cli.ok("resume", pid) == "waiting\n"  # nothing new: returns at once, prints nothing again
    assert time.monotonic() - began < 10
    cli.ok("send", pid, "42")
    # it ends: the result is printed, as `run` prints it
    assert cli.ok("resume", pid) == 'got 42\n{"tag": "x", "message": 42}\n'
    assert cli.ok("resume", pid) == '{"tag": "x", "message": 42}\n'
    assert json.loads(cli.ok("result", pid)) == {"tag": "x", "message": 42}


def test_resume_waits_for_timers(cli: CLI) -> None:
    pid = cli.create("cli_steps", {"n": 3, "delay": 0.1})
    assert cli.ok("resume", pid) == 'step 0\nstep 1\nstep 2\n{"steps": 3}\n'
    assert json.loads(cli.ok("result", pid)) == {"steps": 3}


# -- the worker -------------------------------------------------------------------------------

def test_worker_runs_programs_and_stops_on_sigterm(cli: CLI) -> None:
    worker = cli.popen("worker")
    ids = [cli.start("cli_steps", {"n": 2, "delay": 0.05}) for _ in range(2)]
    waiter = cli.create("cli_wait")
    assert cli("result", ids[0], "--wait", "--timeout", "20").returncode == 0
    wait_for(lambda: cli.status(ids[1])["status"] == "completed")
    wait_for(lambda: cli.status(waiter)["status"] == "waiting")
    cli.ok("send", waiter, '"via worker"')
    assert json.loads(cli.ok("result", waiter, "--wait", "--timeout", "20"))["message"] == "via worker"
    assert worker.poll() is None
    began = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    code = worker.wait(timeout=10)
    assert code == 0, worker.stderr.read() if worker.stderr else ""
    assert time.monotonic() - began < 5
    assert "Traceback" not in (worker.stderr.read() if worker.stderr else "")
    # its leases are gone: nothing stays held by a stopped worker
    assert cli.table("SELECT id FROM programs WHERE lease_owner IS NOT NULL") == []


def listening(cli: CLI, worker: subprocess.Popen[str]) -> bool:
    """The worker has started up: its wake-up socket exists next to the database."""
    return any(Path(f"{cli.db}.wake").glob(f"{worker.pid}-*.sock"))


def test_idle_worker_stops_promptly(cli: CLI) -> None:
    worker = cli.popen("worker")
    wait_for(lambda: listening(cli, worker))
    time.sleep(0.2)
    assert worker.poll() is None
    began = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=10) == 0
    assert time.monotonic() - began < 3
    assert not listening(cli, worker)  # it removed its socket on the way out


# -- unknown ids ------------------------------------------------------------------------------

@pytest.mark.parametrize("command", [
    ["status", "nope"], ["status", "nope", "--json"], ["result", "nope"], ["result", "nope", "--wait"],
    ["send", "nope", "1"], ["history", "nope"], ["inspect", "nope"], ["cancel", "nope"], ["resume", "nope"],
])
def test_unknown_id_is_one_clear_line(cli: CLI, command: list[str]) -> None:
    cli.ok("db", "migrate")  # the store exists (without one, read-only commands say so instead)
    r = cli(*command, timeout=20)
    line = one_clear_line(r)
    assert "nope" in line and line.startswith("flowmetal: error:")
    assert r.stdout == ""


# -- run -----------------------------------------------------------------------------------

def test_run_exit_0_streams_output_and_prints_result(cli: CLI) -> None:
    r = cli("run", str(FLOWS / "cli_steps.flow"), "--args", '{"n": 3, "delay": 0.05}', "--id", "r0")
    assert r.returncode == 0, r.stderr
    assert r.stdout == 'step 0\nstep 1\nstep 2\n{"steps": 3}\n'
    assert cli.status("r0")["status"] == "completed"


def test_run_streams_before_the_end(cli: CLI) -> None:
    p = cli.popen("run", str(FLOWS / "cli_slow.flow"), "--args", '{"seconds": 1.5}')
    assert p.stdout is not None
    first = p.stdout.readline()
    assert first == "first\n"
    assert p.poll() is None  # still sleeping: the line was streamed, not printed at the end
    rest, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    assert rest == 'second\n"done"\n'


def test_run_exit_1_on_an_uncaught_exception(cli: CLI) -> None:
    r = cli("run", str(FLOWS / "cli_steps.flow"), "--args", '{"n": 1, "delay": 0, "fail": true}', "--id", "r1")
    assert r.returncode == 1
    assert r.stdout == "step 0\n"
    assert "Traceback" in r.stderr and "RuntimeError: asked to fail" in r.stderr
    assert "cli_steps.flow" in r.stderr
    assert cli.status("r1")["status"] == "failed"


def test_run_exit_2_on_an_invalid_program_or_usage(cli: CLI, tmp_path: Path) -> None:
    bad = tmp_path / "bad.flow"
    bad.write_text("def main():\n    import os\n    return 1\n")
    r = cli("run", str(bad))
    assert r.returncode == 2 and "bad.flow:2:" in r.stderr and "Traceback" not in r.stderr
    r = cli("run", str(FLOWS / "cli_steps.flow"), "--args", "nope")
    assert r.returncode == 2 and "--args" in one_clear_line(r)
    assert cli.ok("list") == ""


def test_run_non_json_result_exits_1(cli: CLI) -> None:
    r = cli("run", str(FLOWS / "bad_result.flow"))
    assert r.returncode == 1
    assert "JSON" in r.stderr


def test_store_from_the_environment(cli: CLI) -> None:
    env = dict(cli.env, FLOWMETAL_STORE=cli.url)
    r = subprocess.run([*FLOWMETAL, "start", str(FLOWS / "cli_wait.flow"), "--id", "env-id"],
                       capture_output=True, text=True, env=env, cwd=cli.cwd, timeout=30)
    assert r.returncode == 0, r.stderr
    assert cli.status("env-id")["status"] == "running"


def test_bad_store_url_is_one_clear_line(cli: CLI) -> None:
    r = subprocess.run([*FLOWMETAL, "list", "--store", "mysql://x"], capture_output=True, text=True,
                       env=cli.env, cwd=cli.cwd, timeout=30)
    assert r.returncode == 2
    assert "store URL" in one_clear_line(r)
