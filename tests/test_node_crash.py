"""A whole node (`flowmetal serve`) killed with SIGKILL while HTTP requests and
callbacks are in flight, then restarted: every program ends with the right
result; every outside request was sent with one idempotency key however often
it was retried; every accepted callback survived the crash (a redelivery is
refused with 409); every result is recorded once.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from flowmetal.store import open_store
from flowmetal.store.base import FINISHED

PROGRAMS = 8
FLOW = """
from flowmetal import http, callback

def main(base, n):
    charge = http.post(base + "/charge", json={"n": n}, timeout=5).json()
    cb = callback()
    print(cb.url)
    answer = cb.wait(timeout=120).json()
    confirm = http.post(base + "/confirm", json={"n": n, "answer": answer["ok"]}, timeout=5).json()
    return [charge["n"], answer["ok"], confirm["n"]]
"""


class Outside:
    """The outside world: answers slowly so kills land while requests are in flight."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []  # (path, idempotency key)
        self.lock = threading.Lock()
        outside = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                with outside.lock:
                    outside.seen.append((self.path, self.headers.get("idempotency-key", "")))
                time.sleep(0.3)
                payload = json.dumps({"n": body["n"] * 10}).encode()
                try:
                    self.send_response(200)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def count(self, path: str) -> int:
        with self.lock:
            return sum(1 for p, _ in self.seen if p == path)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Node:
    def __init__(self, store_url: str, port: int, log: Path) -> None:
        self.cmd = [sys.executable, "-m", "flowmetal", "serve", "--store", store_url, "--port", str(port),
                    "--public-url", f"http://127.0.0.1:{port}", "--programs", str(log.parent)]
        self.base = f"http://127.0.0.1:{port}"
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(self.cmd, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.base + "/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise AssertionError(f"the node did not start: {self.log.read_text()}")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def _wait_until(cond: Any, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def test_node_killed_with_requests_and_callbacks_in_flight(tmp_path: Path) -> None:
    outside = Outside()
    url = f"sqlite:///{tmp_path / 'node.db'}"
    store = open_store(url)
    node = Node(url, _free_port(), tmp_path / "node.log")
    (tmp_path / "job.flow").write_text(FLOW)
    node.start()
    try:
        pids = []
        for n in range(PROGRAMS):
            r = httpx.post(node.base + "/programs", json={"path": "job.flow", "id": f"job{n}",
                                                          "args": {"base": outside.url, "n": n}})
            assert r.status_code == 201, r.text
            pids.append(f"job{n}")

        # 1. kill it while charges are being sent (some answered, some not)
        _wait_until(lambda: outside.count("/charge") >= PROGRAMS // 2, "charges in flight")
        node.kill()
        node.start()

        def links() -> dict[str, str]:
            out = {}
            for pid in pids:
                for e in store.events(pid):
                    if e.type == "output" and "/callbacks/" in e.data["text"]:
                        out[pid] = e.data["text"].strip()
            return out

        _wait_until(lambda: len(links()) == PROGRAMS, "every program to wait on its callback")
        cb = links()

        # 2. deliver half the callbacks, then kill it right after one was accepted
        for pid in pids[: PROGRAMS // 2]:
            assert httpx.post(cb[pid], json={"ok": pid}).status_code == 202
        node.kill()
        node.start()
        for pid in pids[: PROGRAMS // 2]:  # accepted before the crash: persisted, so refused now
            # (409: delivered already; 410: its program has even ended since, recovery being quick)
            assert httpx.post(cb[pid], json={"ok": "again"}).status_code in (409, 410)
        for pid in pids[PROGRAMS // 2:]:
            assert httpx.post(cb[pid], json={"ok": pid}).status_code == 202

        # 3. kill it again while the confirmations are in flight
        _wait_until(lambda: outside.count("/confirm") >= 2, "confirmations in flight")
        node.kill()
        node.start()
        _wait_until(lambda: all(store.get_program(p).status in FINISHED for p in pids), "all programs", 90)
    finally:
        node.stop()
        outside.httpd.shutdown()

    keys_by_effect: dict[str, str] = {}
    for n, pid in enumerate(pids):
        row = store.get_program(pid)
        assert row.status == "completed", (pid, row.status, row.error)
        assert row.result == [n * 10, pid, n * 10]
        events = store.events(pid)
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        requested = [e for e in events if e.type == "effect_requested"]
        assert len({e.data["key"] for e in requested}) == len(requested)  # no effect requested twice
        completed = Counter(e.data["request"] for e in events if e.type == "effect_completed")
        assert set(completed.values()) == {1}  # each result recorded once
        assert len([e for e in events if e.type == "output"]) == 1  # the link printed once
        for e in requested:
            if e.data["kind"] == "http":
                keys_by_effect[e.data["key"]] = e.data["args"][1]
    # every request the outside saw carried the key of one recorded effect, and to its URL
    for path, key in outside.seen:
        assert key in keys_by_effect, (path, key)
        assert keys_by_effect[key].endswith(path)
    assert {k for _, k in outside.seen} == set(keys_by_effect)  # and every effect reached it
    # the kills cut requests off mid-flight: those were sent again, with the same key
    assert max(Counter(k for _, k in outside.seen).values()) >= 2
