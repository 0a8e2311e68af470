"""Connectors end to end, in process: foreign functions served by the Python SDK,
HTTP requests performed by the HTTP connector against a real loopback server,
callbacks delivered through the store — with retries, timeouts, size caps and
replay. Real SQLite stores, real threads, a real HTTP server; no mocks.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from flowmetal.connectors.functions import FunctionWorker, NonRetryable
from flowmetal.connectors.http import HttpConnector
from flowmetal.machine.api import Completed
from flowmetal.runtime.driver import Runtime
from flowmetal.runtime.worker import Worker
from flowmetal.store import open_store
from flowmetal.store.base import FINISHED, ProgramRow, Store


class Env:
    """A store, a runtime with a worker, the HTTP connector and a function worker, on threads."""

    def __init__(self, tmp_path: Path, inline: bool = False, **runtime_kw: Any) -> None:
        self.inline = inline  # the worker performs the functions itself (runtime/inline.py)
        self.dir = tmp_path
        self.store: Store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
        self.rt = Runtime(self.store, **runtime_kw)
        self.functions = FunctionWorker(self.store, lease=5.0)
        self.threads: list[tuple[Any, threading.Thread]] = []

    def serve(self, http: bool = True, functions: bool = True, worker: bool = True) -> None:
        h = HttpConnector(self.store, max_bytes=1000) if http else None
        if worker:
            w = Worker(self.rt, lease=5.0, functions=self.functions if self.inline else None,
                       http=h if self.inline else None)
            self._thread(w, w.run)
        if h is not None:
            self._thread(h, h.run)
        if functions and self.functions.functions:
            self.functions.start()

    def _thread(self, owner: Any, target: Callable[[], None]) -> None:
        t = threading.Thread(target=target, daemon=True)
        t.start()
        self.threads.append((owner, t))

    def stop(self) -> None:
        self.functions.stop()
        for owner, t in self.threads:
            owner.stop()
            t.join(10)

    def run(self, source: str, args: dict[str, Any] | None = None, timeout: float = 30.0) -> ProgramRow:
        path = self.dir / f"p{len(self.store.list_programs())}.flow"
        path.write_text(source)
        pid = self.rt.start(str(path), args)
        self.store.notify()
        return self.wait(pid, timeout)

    def wait(self, pid: str, timeout: float = 30.0) -> ProgramRow:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            row = self.store.get_program(pid)
            if row.status in FINISHED:
                return row
            time.sleep(0.02)
        raise AssertionError(f"{pid} did not finish: {self.store.get_program(pid)}")

    def events(self, pid: str, etype: str | None = None) -> list[dict[str, Any]]:
        return [e.data for e in self.store.events(pid) if etype is None or e.type == etype]

    def output(self, pid: str) -> str:
        return "".join(d["text"] for d in self.events(pid, "output"))


@pytest.fixture(params=["connector", "inline"])
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Env]:
    """Every test runs twice: functions and HTTP requests performed by connector loops (through
    the store), and by the worker itself at one commit per call (with the loops as backup)."""
    e = Env(tmp_path, inline=request.param == "inline")
    yield e
    e.stop()


# -- a real HTTP server on loopback -----------------------------------------------------------

class Server:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.script: dict[str, list[tuple[int, dict[str, str], bytes]]] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                server.requests.append({"method": self.command, "path": self.path, "at": time.time(),
                                        "headers": {k.lower(): v for k, v in self.headers.items()},
                                        "body": body.decode()})
                route = self.path.split("?")[0]
                queue = server.script.get(route)
                if route == "/hang":  # a server that never answers in time
                    time.sleep(2.0)
                if queue:
                    status, headers, payload = queue.pop(0) if len(queue) > 1 else queue[0]
                else:
                    status, headers, payload = 200, {"content-type": "application/json"}, json.dumps(
                        {"path": self.path, "method": self.command, "body": body.decode()}).encode()
                try:
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("content-length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

            do_GET = do_POST = do_PUT = do_DELETE = _serve

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    yield s
    s.close()


# -- foreign functions ----------------------------------------------------------------------

def test_call_returns_the_function_result_with_its_context(env: Env) -> None:
    seen: list[Any] = []

    @env.functions.function("inventory.reserve")
    def reserve(ctx: Any, sku: str, qty: int = 1) -> dict[str, Any]:
        seen.append((ctx.idempotency_key, ctx.attempt, ctx.program_id, ctx.name))
        return {"sku": sku, "reserved": qty}

    env.serve()
    row = env.run('from flowmetal import call\n'
                  'def main():\n'
                  '    a = call("inventory.reserve", "apple", qty=3)\n'
                  '    b = call("inventory.reserve", "pear")\n'
                  '    return [a, b]\n')
    assert row.status == "completed", row.error
    assert row.result == [{"sku": "apple", "reserved": 3}, {"sku": "pear", "reserved": 1}]
    requested = env.events(row.id, "effect_requested")
    assert [s[0] for s in seen] == [r["key"] for r in requested]  # the key is PROGRAM:SEQ of the request
    assert all(key == f"{row.id}:{seq}" for key, seq in
               ((r["key"], e.seq) for r, e in zip(requested, [e for e in env.store.events(row.id)
                                                               if e.type == "effect_requested"])))
    assert [s[1:] for s in seen] == [(1, row.id, "inventory.reserve")] * 2


def test_async_functions_and_retries_until_success(env: Env) -> None:
    attempts: list[float] = []

    @env.functions.function("flaky")
    async def flaky(ctx: Any, x: int) -> int:
        await asyncio.sleep(0)
        attempts.append(time.monotonic())
        if ctx.attempt < 3:
            raise ConnectionError(f"try again ({ctx.attempt})")
        return x * 2

    env.serve()
    row = env.run('from flowmetal import call\n'
                  'def main():\n'
                  '    return call("flaky", 21, retry={"attempts": 5, "initial": 0.1, "backoff": 2.0})\n')
    assert row.status == "completed", row.error
    assert row.result == 42
    assert len(attempts) == 3
    # exponential backoff: about 0.1 s then 0.2 s between attempts
    assert attempts[1] - attempts[0] >= 0.09 and attempts[2] - attempts[1] >= 0.19
    call = env.store.list_calls(row.id)[0]
    assert call.status == "done" and call.attempt == 3 and call.last_error["type"] == "ConnectionError"


def test_call_error_after_the_retries_run_out(env: Env) -> None:
    count = {"boom": 0, "fatal": 0, "listed": 0}

    @env.functions.function("boom")
    def boom(ctx: Any) -> None:
        count["boom"] += 1
        raise ValueError(f"out of stock (attempt {ctx.attempt})")

    @env.functions.function("fatal")
    def fatal(ctx: Any) -> None:
        count["fatal"] += 1
        raise NonRetryable("card declined")

    @env.functions.function("listed")
    def listed(ctx: Any) -> None:
        count["listed"] += 1
        raise KeyError("no such customer")

    env.serve()
    row = env.run('from flowmetal import call, CallError, Retry\n'
                  'def attempt(name, retry):\n'
                  '    try:\n'
                  '        call(name, retry=retry)\n'
                  '    except CallError as e:\n'
                  '        return [e.type, e.message, e.attempts, str(e)]\n'
                  'def main():\n'
                  '    return [attempt("boom", Retry(attempts=3, initial=0.01)),\n'
                  '            attempt("fatal", {"attempts": 3, "initial": 0.01}),\n'
                  '            attempt("listed", {"attempts": 3, "initial": 0.01, "non_retryable": ["KeyError"]})]\n')
    assert row.status == "completed", row.error
    assert row.result == [
        ["ValueError", "out of stock (attempt 3)", 3, "ValueError: out of stock (attempt 3)"],
        ["NonRetryable", "card declined", 1, "NonRetryable: card declined"],
        ["KeyError", "'no such customer'", 1, "KeyError: 'no such customer'"],
    ]
    assert count == {"boom": 3, "fatal": 1, "listed": 1}
    # failed for good: the calls table says so (with the error the program got)
    calls = env.store.list_calls(row.id)
    assert [(c.name, c.status, c.outcome["ok"], c.outcome["error"]["type"]) for c in calls] == [
        ("boom", "failed", False, "ValueError"), ("fatal", "failed", False, "NonRetryable"),
        ("listed", "failed", False, "KeyError")]


def test_an_attempt_that_overruns_its_timeout_is_retried_and_its_late_result_ignored(env: Env) -> None:
    calls: list[int] = []

    @env.functions.function("slow")
    def slow(ctx: Any) -> str:
        calls.append(ctx.attempt)
        if ctx.attempt == 1:
            time.sleep(1.2)  # past its 0.4 s timeout: this result must not count
            return "late"
        return "on time"

    env.serve()
    row = env.run('from flowmetal import call\n'
                  'def main():\n'
                  '    return call("slow", timeout=0.4, retry={"attempts": 3, "initial": 0.05})\n')
    assert row.status == "completed", row.error
    assert row.result == "on time"
    assert calls[:2] == [1, 2]
    time.sleep(1.0)  # let the late attempt finish: its result is refused as stale
    call = env.store.list_calls(row.id)[0]
    assert call.outcome["result"] == "on time" and call.last_error["type"] == "TimeoutError"
    assert len(env.events(row.id, "effect_completed")) == 1


def test_a_scoped_timeout_abandons_the_call(env: Env) -> None:
    env.serve(functions=False)  # nobody serves "never.answered"
    row = env.run('from flowmetal import call, timeout, Timeout\n'
                  'def main():\n'
                  '    try:\n'
                  '        with timeout(0.3):\n'
                  '            call("never.answered", 1)\n'
                  '    except Timeout as e:\n'
                  '        return str(e)\n')
    assert row.status == "completed", row.error
    assert row.result == "call('never.answered') timed out"
    assert [c.status for c in env.store.list_calls(row.id)] == ["cancelled"]


def test_bad_call_arguments_are_errors_in_the_program(env: Env) -> None:
    env.serve()
    row = env.run('from flowmetal import call\n'
                  'def main():\n'
                  '    out = []\n'
                  '    for args, kw in [((), {}), (("f", {1, 2}), {}), (("f",), {"retry": {"tries": 2}}),\n'
                  '                     (("f",), {"timeout": -1})]:\n'
                  '        try:\n'
                  '            call(*args, **kw)\n'
                  '        except (TypeError, ValueError) as e:\n'
                  '            out.append(type(e).__name__ + ": " + str(e))\n'
                  '    return out\n')
    assert row.status == "completed", row.error
    assert row.result[0] == "TypeError: call() needs the function's name (a non-empty str) first"
    assert row.result[1].startswith("TypeError: call('f'): the arguments must be JSON-representable")
    assert row.result[2] == "ValueError: retry: unknown option(s) tries (known: attempts, backoff, initial, max_delay, non_retryable)"
    assert row.result[3] == "ValueError: call(): timeout must be a positive number of seconds, not -1"
    assert env.store.list_calls(row.id) == []


# -- HTTP requests ----------------------------------------------------------------------------

def test_http_requests_and_responses(env: Env, server: Server) -> None:
    server.script["/missing"] = [(404, {"content-type": "text/plain"}, b"not here")]
    env.serve()
    row = env.run('from flowmetal import http, HttpError\n'
                  'def main(base):\n'
                  '    r = http.post(base + "/orders", json={"sku": "apple"}, headers={"X-Trace": "t1"},\n'
                  '                  params={"q": "1"})\n'
                  '    got = r.json()\n'
                  '    m = http.get(base + "/missing")\n'
                  '    try:\n'
                  '        m.raise_for_status()\n'
                  '    except HttpError as e:\n'
                  '        err = [e.status, str(e)]\n'
                  '    return [r.status, r.ok, got["method"], got["path"], got["body"], r.headers["content-type"],\n'
                  '            m.status, m.ok, m.text, err]\n', {"base": server.url})
    assert row.status == "completed", row.error
    assert row.result == [200, True, "POST", "/orders?q=1", '{"sku":"apple"}', "application/json",
                          404, False, "not here", [404, f"GET {server.url}/missing returned HTTP 404"]]
    posted = server.requests[0]
    assert posted["headers"]["x-trace"] == "t1"
    requested = [e for e in env.store.events(row.id) if e.type == "effect_requested"]
    assert [r["headers"]["idempotency-key"] for r in server.requests] == [f"{row.id}:{e.seq}" for e in requested]
    assert len(server.requests) == 2  # 4xx is an answer, never retried


def test_http_5xx_and_429_are_retried_honouring_retry_after(env: Env, server: Server) -> None:
    server.script["/busy"] = [(503, {}, b"down"), (429, {"retry-after": "1"}, b"slow down"), (200, {}, b"ok")]
    server.script["/down"] = [(500, {}, b"still down")]
    env.serve()
    row = env.run('from flowmetal import http\n'
                  'def main(base):\n'
                  '    a = http.get(base + "/busy", retry={"attempts": 5, "initial": 0.05})\n'
                  '    b = http.get(base + "/down", retry={"attempts": 2, "initial": 0.05})\n'
                  '    return [a.status, a.text, b.status, b.text]\n', {"base": server.url})
    assert row.status == "completed", row.error
    assert row.result == [200, "ok", 500, "still down"]  # the last 5xx is returned when retries run out
    busy = [r for r in server.requests if r["path"] == "/busy"]
    assert len(busy) == 3
    assert busy[2]["at"] - busy[1]["at"] >= 0.95  # Retry-After: 1 beat the 0.1 s backoff
    assert len({r["headers"]["idempotency-key"] for r in busy}) == 1  # the same key on every attempt
    assert len([r for r in server.requests if r["path"] == "/down"]) == 2


def test_http_connection_errors_and_oversized_responses(env: Env, server: Server) -> None:
    server.script["/big"] = [(200, {}, b"x" * 5000)]
    env.serve()
    row = env.run('from flowmetal import http, HttpError\n'
                  'def main(base):\n'
                  '    out = []\n'
                  '    for url in ["http://127.0.0.1:9/refused", base + "/big"]:\n'
                  '        try:\n'
                  '            http.get(url, retry={"attempts": 2, "initial": 0.01})\n'
                  '        except HttpError as e:\n'
                  '            out.append([e.status, str(e)])\n'
                  '    try:\n'
                  '        http.request("BREW", base)\n'
                  '    except ValueError as e:\n'
                  '        out.append(str(e))\n'
                  '    return out\n', {"base": server.url})
    assert row.status == "completed", row.error
    refused, big, bad = row.result
    assert refused[0] is None and "failed after 2 attempt(s): ConnectError" in refused[1]
    assert big[0] is None and "ResponseTooLarge" in big[1] and "limit of 1000 bytes" in big[1]
    assert bad.startswith("http.request(): unknown method 'BREW'")
    assert len([r for r in server.requests if r["path"] == "/big"]) == 1  # too large is not retried


def test_http_timeouts_against_a_hanging_server_are_retried_then_fail(env: Env, server: Server) -> None:
    env.serve()
    row = env.run('from flowmetal import http, HttpError\n'
                  'def main(base):\n'
                  '    try:\n'
                  '        http.get(base + "/hang", timeout=0.3, retry={"attempts": 2, "initial": 0.05})\n'
                  '    except HttpError as e:\n'
                  '        return [e.status, str(e)]\n', {"base": server.url})
    assert row.status == "completed", row.error
    status, message = row.result
    assert status is None and "failed after 2 attempt(s): TimeoutError" in message
    hung = [r for r in server.requests if r["path"] == "/hang"]
    assert len(hung) == 2 and len({r["headers"]["idempotency-key"] for r in hung}) == 1


# -- callbacks --------------------------------------------------------------------------------

def test_callbacks_deliver_once(env: Env, tmp_path: Path) -> None:
    env.rt.public_url = "https://flows.example.com"
    env.serve()
    path = tmp_path / "cb.flow"
    path.write_text('from flowmetal import callback, send\n'
                    'def main():\n'
                    '    cb = callback()\n'
                    '    print(cb.url)\n'
                    '    req = cb.wait(timeout=30)\n'
                    '    return [req.method, req.json(), req.headers["x-sig"]]\n')
    pid = env.rt.start(str(path))
    env.store.notify()
    end = time.monotonic() + 10
    while not env.output(pid) and time.monotonic() < end:
        time.sleep(0.02)
    url = env.output(pid).strip()
    prefix = "https://flows.example.com/callbacks/"
    assert url.startswith(prefix) and len(url) - len(prefix) >= 32
    token = url[len(prefix):]
    request = {"method": "POST", "headers": {"x-sig": "abc"}, "body": '{"approved": true}'}
    assert env.store.deliver_callback("nope", request, time.time()) == "unknown"
    assert env.store.deliver_callback(token, request, time.time()) == "accepted"
    assert env.store.deliver_callback(token, request, time.time()) == "duplicate"
    env.store.notify()
    row = env.wait(pid)
    assert row.status == "completed", row.error
    assert row.result == ["POST", {"approved": True}, "abc"]


# -- replay gives the program the same values -------------------------------------------------

def test_replayed_connector_results_are_the_same_values(tmp_path: Path, server: Server) -> None:
    env = Env(tmp_path, checkpoint_every=1000)  # one checkpoint at most: later slices replay
    try:
        @env.functions.function("double")
        def double(ctx: Any, x: int) -> int:
            return 2 * x

        env.serve()
        row = env.run('from flowmetal import http, call, callback, start\n'
                      'def main(base):\n'
                      '    r = http.get(base + "/x")\n'
                      '    cb = callback()\n'
                      '    n = call("double", r.status)\n'
                      '    again = http.get(base + "/y")\n'
                      '    return [r.status, r.json()["path"], n, cb.url == cb.url, again.json()["path"]]\n',
                      {"base": server.url})
        assert row.status == "completed", row.error
        assert row.result == [200, "/x", 400, True, "/y"]
        # a fresh runtime rebuilds the program from the log alone and sees the same values
        machine, seq = Runtime(env.store).load(row, upto=row.last_seq - 1)
        assert seq == row.last_seq - 1
        assert not env.store.checkpoint(row.id, seq)  # so all of it really was replayed
        outcome = machine.run()  # the replayed machine finishes with the recorded result
        assert isinstance(outcome, Completed) and outcome.value == row.result
    finally:
        env.stop()


# -- one process does everything: `flowmetal run --functions` ---------------------------------

def _cli(tmp_path: Path, *args: str) -> Any:
    import os
    import subprocess
    import sys

    env = dict(os.environ, FLOWMETAL_STORE=f"sqlite:///{tmp_path / 'cli.db'}")
    return subprocess.run([sys.executable, "-m", "flowmetal", *args], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=60)


def test_run_serves_functions_from_a_file(tmp_path: Path) -> None:
    (tmp_path / "fns.py").write_text(
        "import flowmetal\n\n"
        "@flowmetal.function('greet')\n"
        "def greet(ctx, name):\n"
        "    return f'hello {name} ({ctx.attempt})'\n")
    (tmp_path / "hi.flow").write_text(
        "from flowmetal import call\n"
        "def main(who):\n"
        "    print(call('greet', who))\n"
        "    return call('greet', who + '!')\n")
    r = _cli(tmp_path, "run", "hi.flow", "--args", '{"who": "ada"}', "--functions", "fns.py")
    assert r.returncode == 0, r.stderr
    assert r.stdout == 'hello ada (1)\n"hello ada! (1)"\n'


def test_bad_functions_files_are_clear_errors_and_store_nothing(tmp_path: Path) -> None:
    (tmp_path / "hi.flow").write_text("def main():\n    return 1\n")
    (tmp_path / "broken.py").write_text("import flowmetal\nraise RuntimeError('no config')\n")
    (tmp_path / "empty.py").write_text("x = 1\n")
    cases = [("missing.py", "--functions: no such file 'missing.py'"),
             ("broken.py", "--functions broken.py: RuntimeError: no config"),
             ("empty.py", "--functions empty.py: no function is marked with @flowmetal.function")]
    for file, message in cases:
        r = _cli(tmp_path, "run", "hi.flow", "--functions", file)
        assert r.returncode == 2, r
        assert message in r.stderr and "Traceback" not in r.stderr
    assert _cli(tmp_path, "list").stdout == ""


def test_a_long_in_process_call_does_not_hold_up_the_rest_of_its_program(tmp_path: Path) -> None:
    env = Env(tmp_path, inline=True)
    try:
        @env.functions.function("slow")
        def slow(ctx: Any) -> str:
            time.sleep(3.0)
            return "done"

        env.serve()
        path = tmp_path / "long.flow"
        path.write_text('from flowmetal import call, receive, spawn, wait\n'
                        'def main():\n'
                        '    t = spawn(call, "slow")\n'
                        '    got = receive()\n'
                        '    return [got, wait(t)[0]]\n')
        pid = env.rt.start(str(path))
        env.store.notify()
        time.sleep(0.5)
        env.store.send(pid, "inbox", "hello", time.time())
        env.store.notify()
        row = env.wait(pid)
        assert row.status == "completed", row.error
        assert row.result == ["hello", "done"]
        kinds = [e.type for e in env.store.events(pid)]
        # the worker let go of the program while the call ran, so the message got in first
        assert kinds.index("message_received") < kinds.index("effect_completed")
        assert [c.status for c in env.store.list_calls(pid)] == ["done"]
    finally:
        env.stop()
