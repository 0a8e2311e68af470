"""Cancelling tasks against a real `flowmetal serve`: `task.cancel()` and
`wait_any(..., cancel_rest=True)` abandon the cancelled task's call or HTTP request (the
call row is cancelled, a call not yet started never starts), and cancelling the program
reaches every task. (Replay of cancellations: tests/golden/events/golden_cancel.jsonl.)"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from cli_checks import wait_for
from test_api import Server

FUNCTIONS = '''import flowmetal

@flowmetal.function("quick")
def quick(ctx, x):
    return x * 2
'''

RACE = '''from flowmetal import spawn, wait_any, call, http, Cancelled

def fetch(url):
    try:
        return http.get(url).text
    except Cancelled:
        print("fetch cancelled")
        raise

def lookup():
    try:
        return call("nobody.serves.this", 1)
    finally:
        print("lookup stops")

def main(url):
    slow = spawn(fetch, url)
    never = spawn(lookup)
    fast = spawn(call, "quick", 21)
    first = wait_any(slow, never, fast, cancel_rest=True)
    for loser in (slow, never):
        try:
            loser.result()
        except Cancelled:
            print("a loser was cancelled")
    return first.result()
'''

CANCEL_ALL = '''from flowmetal import spawn, wait, call, sleep

def lookup():
    try:
        return call("nobody.serves.this", 1)
    finally:
        print("lookup stops")

def nap():
    try:
        sleep(3600)
    finally:
        print("nap stops")

def main():
    a = spawn(lookup)
    b = spawn(nap)
    print("started")
    wait(a, b)
'''


class SlowHandler(BaseHTTPRequestHandler):
    hits: list[str] = []
    release = threading.Event()

    def do_GET(self) -> None:
        SlowHandler.hits.append(self.path)
        SlowHandler.release.wait(20)
        body = b"slow answer"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def slow_server() -> Iterator[str]:
    SlowHandler.hits, SlowHandler.release = [], threading.Event()
    server = ThreadingHTTPServer(("127.0.0.1", 0), SlowHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/slow"
    SlowHandler.release.set()
    server.shutdown()
    server.server_close()
    thread.join()


def test_wait_any_cancel_rest_abandons_the_losers_requests(tmp_path: Path, slow_server: str) -> None:
    (tmp_path / "fns.py").write_text(FUNCTIONS)
    srv = Server(tmp_path, "--functions", str(tmp_path / "fns.py"))
    try:
        pid = srv.start(RACE, {"url": slow_server})["id"]
        # the HTTP request is in flight when the fast call wins
        r = srv.result(pid)
        assert r.json()["result"] == 42, r.text
        assert srv.output(pid) == "fetch cancelled\nlookup stops\n" + "a loser was cancelled\n" * 2
        calls = {c.name if c.kind == "function" else "http": c for c in srv.store.list_calls(pid)}
        assert calls["quick"].status == "done"
        assert calls["http"].status == "cancelled"
        # never served, so never started: cancelled with no attempt made
        assert (calls["nobody.serves.this"].status, calls["nobody.serves.this"].attempt) == ("cancelled", 0)
        events = srv.store.events(pid)
        finished = {e.data["task"]: e.data["status"] for e in events if e.type == "task_finished"}
        assert finished == {2: "failed", 3: "failed", 4: "done"}
        SlowHandler.release.set()
        time.sleep(0.2)
        assert srv.store.get_call(calls["http"].key).status == "cancelled"  # its late answer is not recorded
        assert srv.store.inbox(pid) == []
    finally:
        srv.stop()


def test_cancelling_the_program_reaches_every_task(tmp_path: Path) -> None:
    srv = Server(tmp_path)
    try:
        pid = srv.start(CANCEL_ALL)["id"]
        wait_for(lambda: srv.http.get(f"/programs/{pid}").json()["status"] == "waiting")
        assert srv.http.post(f"/programs/{pid}/cancel").status_code == 202
        r = srv.result(pid).json()
        assert r["status"] == "cancelled" and "Cancelled" in r["error"]
        assert srv.output(pid) == "started\nlookup stops\nnap stops\n"
        (call,) = srv.store.list_calls(pid)
        assert call.status == "cancelled"
    finally:
        srv.stop()
