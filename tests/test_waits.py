"""What a waiting program waits for, in its words, and the mistakes that would make it wait
forever: `status`, `list`, `inspect` and the API against real processes (`flowmetal serve`,
`flowmetal functions`, `flowmetal worker`)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from cli_checks import kill_all, wait_for
from flowmetal.runtime.driver import Runtime
from flowmetal.runtime.worker import Worker
from flowmetal.store import open_store
from test_api import Server

FLOWMETAL = [sys.executable, "-m", "flowmetal"]

TYPO = '''from flowmetal import call

def main():
    return call("billing.refnud", 10)
'''

FUNCTIONS = '''import flowmetal

@flowmetal.function("billing.refund")
def refund(ctx, amount):
    if ctx.attempt == 1:
        raise ConnectionError("gateway down")
    return amount
'''

RETRYING = '''from flowmetal import call, Retry

def main():
    return call("billing.refund", 7, retry=Retry(attempts=3, initial=600, max_delay=600))
'''

MANY = '''from flowmetal import callback, receive, spawn, sleep, wait

def main():
    cb = callback()
    t = spawn(cb.wait)
    s = spawn(sleep, 3600)
    return receive("go", timeout=7200)
'''


def fm(store_url: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWMETAL_")}
    return subprocess.run([*FLOWMETAL, *args, "--store", store_url], capture_output=True, text=True, timeout=60,
                          env=env, cwd=cwd)


def started_long_ago(store_url: str, source: str, seconds_ago: float) -> str:
    """A program that requested its call `seconds_ago` (a clock set back; then nothing runs it)."""
    store = open_store(store_url)
    try:
        rt = Runtime(store, clock=lambda: time.time() - seconds_ago)
        pid = rt.start("typo.flow", source=source)
        Worker(rt, only=pid, notify=False).run(idle_exit=True)
        assert store.get_program(pid).status == "waiting"
        return pid
    finally:
        store.close()


def test_a_call_nobody_serves_is_named_in_status_and_the_workers_log(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    pid = started_long_ago(url, TYPO, 120)
    fresh = started_long_ago(url, TYPO, 0)  # not pending long enough to be called a mistake
    (tmp_path / "fns.py").write_text(FUNCTIONS)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWMETAL_")}
    procs: list[subprocess.Popen[str]] = []
    try:
        # a function server is up, but it serves billing.refund, not the program's billing.refnud
        server = subprocess.Popen([*FLOWMETAL, "functions", str(tmp_path / "fns.py"), "--store", url],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        procs.append(server)
        store = open_store(url)
        wait_for(lambda: store.last_served(["billing.refund"]) != {})
        r = fm(url, "status", pid)
        assert r.returncode == 0, r.stderr
        assert r.stdout.splitlines() == [
            "waiting",
            '  waiting for call billing.refnud (not started): no function server has served "billing.refnud" '
            "in 60 s"]
        st = json.loads(fm(url, "status", pid, "--json").stdout)
        assert st["waiting_for"] == [r.stdout.splitlines()[1].strip()[len("waiting for "):]]
        assert fm(url, "status", fresh).stdout.splitlines()[1] == "  waiting for call billing.refnud (not started)"
        listing = fm(url, "list").stdout.splitlines()
        assert listing[1].endswith("typo.flow  call billing.refnud")  # (list reads no call rows)
        # a worker says so in its log
        worker = subprocess.Popen([*FLOWMETAL, "worker", "--store", url, "--log-format", "json"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        procs.append(worker)
        assert worker.stderr is not None
        deadline = time.monotonic() + 30
        record: dict[str, Any] = {}
        while time.monotonic() < deadline:
            line = worker.stderr.readline()
            if '"billing.refnud"' in line:
                record = json.loads(line)
                break
        assert record["level"] == "warning"
        assert record["message"].startswith('no function server has served "billing.refnud" in 60 s (1 call waiting')
        assert record["function"] == "billing.refnud" and record["program"] == pid
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0
        store.close()
    finally:
        kill_all(procs)


def test_call_attempts_callbacks_receives_and_unread_messages_in_the_api(tmp_path: Path) -> None:
    (tmp_path / "fns.py").write_text(FUNCTIONS)
    srv = Server(tmp_path, "--functions", str(tmp_path / "fns.py"))
    try:
        pid = srv.start(RETRYING)["id"]

        def waiting_for(program: str) -> list[str]:
            body = srv.http.get(f"/programs/{program}").json()
            return list(body.get("waiting_for") or [])

        # the first attempt failed; the second is due in about ten minutes
        wait_for(lambda: any("attempt 2" in w for w in waiting_for(pid)))
        (line,) = waiting_for(pid)
        assert line.startswith("call billing.refund (attempt 2, next in ") and line.endswith(" min)"), line
        other = srv.start(MANY)["id"]
        wait_for(lambda: len(waiting_for(other)) == 3)
        receive_line, cb_line, sleep_line = waiting_for(other)  # in the order they were asked for
        assert cb_line.startswith(f"callback {srv.url}/callbacks/")
        assert sleep_line.startswith("sleep until ") and sleep_line.endswith(" (in 60 min)")
        assert receive_line.startswith('receive on "go", timeout in ')
        assert srv.http.post(f"/programs/{other}/messages", json={"message": 1, "channel": "og"}).status_code == 202
        body = srv.http.get(f"/programs/{other}").json()
        assert body["unread"] == ['1 message on "og", which it is not receiving on (it receives on "go")']
        listed = {p["id"]: p for p in srv.http.get("/programs").json()["programs"]}
        assert listed[other]["waiting_for"][1] == cb_line and len(listed[other]["waiting_for"]) == 3
        assert listed[pid]["waiting_for"] == ["call billing.refund"]  # (a listing reads no call rows)
        assert "unread" not in listed[other]
        # the CLI's send says so too
        r = fm(srv.url_store, "send", other, "2", "--channel", "og", cwd=tmp_path)
        assert r.returncode == 0 and r.stderr.startswith(f'note: program {other} is not receiving on "og" now')
        state = srv.http.get(f"/programs/{other}/state").json()
        descriptions = [t["waiting_for"].get("description") for t in state["tasks"] if t["waiting_for"]]
        assert 'receive on "go", timeout in' in descriptions[0] and descriptions[1].startswith("callback ")
    finally:
        srv.stop()
