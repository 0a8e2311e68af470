"""The HTTP API end to end: real `flowmetal serve` processes on loopback (uvicorn),
real httpx clients, real curl workers written in shell (tests/workers/*.sh), and
SQLite stores in temporary directories. No mocks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.routing import Route

from flowmetal.api import create_app
from flowmetal.runtime.driver import Runtime
from flowmetal.store import open_store
from flowmetal.store.base import Commit, NewCall, Store
from flowmetal.store.retry import normalize

WORKERS = Path(__file__).parent / "workers"
TOKEN = "s3cret-token"

WAIT_FOR_MESSAGE = '''from flowmetal import receive

def main(tag="x"):
    print("ready", tag)
    message = receive()
    return {"tag": tag, "message": message}
'''
SLEEPY = '''from flowmetal import sleep

def main(n=1):
    sleep(0.3)
    return n * 2
'''


class Server:
    """`python -m flowmetal serve --port 0` on a fresh store; `.http` is a client for it."""

    def __init__(self, directory: Path, *args: str, token: str | None = None) -> None:
        self.db = directory / "api.db"
        self.url_store = f"sqlite:///{self.db}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWMETAL_")}
        cmd = [sys.executable, "-m", "flowmetal", "serve", "--store", self.url_store, "--port", "0", *args]
        if token:
            cmd += ["--token", token]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     cwd=directory, env=env)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.startswith("flowmetal: serving on http://127.0.0.1:"), (line, self._stderr())
        assert f"({self.url_store})" in line
        self.url = line.split()[3]
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=30)
        deadline = time.monotonic() + 15
        while True:
            try:
                if self.http.get("/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and self.proc.poll() is None, self._stderr()
            time.sleep(0.02)
        self.store: Store = open_store(self.url_store)

    def _stderr(self) -> str:
        if self.proc.poll() is None:
            return ""
        assert self.proc.stderr is not None
        return self.proc.stderr.read()

    def stop(self) -> None:
        self.http.close()
        self.store.close()
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        assert self.proc.stderr is not None
        stderr = self.proc.stderr.read()
        assert rc == 0, stderr
        assert "Traceback" not in stderr, stderr

    # -- helpers ----------------------------------------------------------------------------
    def start(self, source: str, args: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
        r = self.http.post("/programs", json={"source": source, "args": args or {}, **extra})
        assert r.status_code == 201, r.text
        out: dict[str, Any] = r.json()
        return out

    def result(self, program_id: str, wait: float = 20) -> httpx.Response:
        return self.http.get(f"/programs/{program_id}/result", params={"wait": wait})

    def output(self, program_id: str, timeout: float = 10) -> str:
        """The program's printed output so far, waiting until there is some."""
        deadline = time.monotonic() + timeout
        while True:
            events = self.http.get(f"/programs/{program_id}/history").json()["events"]
            text = "".join(e["text"] for e in events if e["type"] == "output")
            if text or time.monotonic() > deadline:
                return text
            time.sleep(0.02)


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server that also runs programs (the in-process worker), without a token."""
    server = Server(tmp_path_factory.mktemp("srv"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def bare(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """API only (--no-worker: nothing changes unless a request changes it), with a token."""
    server = Server(tmp_path_factory.mktemp("bare"), "--no-worker", "--callback-max-body", "1000", token=TOKEN)
    yield server
    server.stop()


def assert_error(r: httpx.Response, status: int, type_: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json")
    error: dict[str, Any] = r.json()["error"]
    assert isinstance(error["type"], str) and isinstance(error["message"], str) and error["message"]
    assert "Traceback" not in r.text
    if type_ is not None:
        assert error["type"] == type_, error
    return error


# -- programs ----------------------------------------------------------------------------------
def test_start_from_source_list_status_and_result_long_poll(srv: Server) -> None:
    program = srv.start(SLEEPY, {"n": 21}, filename="sleepy.flow")
    pid = program["id"]
    assert program["status"] == "running" and program["file"] == "sleepy.flow" and program["args"] == {"n": 21}
    r = srv.result(pid, wait=0)
    assert r.status_code == 202 and r.json() == {"id": pid, "status": r.json()["status"]}
    assert r.json()["status"] in ("running", "waiting")
    started = time.monotonic()
    r = srv.result(pid, wait=20)
    assert r.status_code == 200, r.text
    assert r.json() == {"id": pid, "status": "completed", "result": 42}
    assert time.monotonic() - started < 5  # woken by the worker's notification, not by the timeout
    status = srv.http.get(f"/programs/{pid}").json()
    assert status["status"] == "completed" and status["result"] == 42
    listed = srv.http.get("/programs", params={"status": "completed"}).json()["programs"]
    assert pid in [p["id"] for p in listed]
    assert pid not in [p["id"] for p in srv.http.get("/programs", params={"status": "waiting"}).json()["programs"]]
    assert_error(srv.http.get("/programs", params={"status": "sleepy"}), 422, "ValidationError")


def test_list_pages_and_filters(srv: Server) -> None:
    ids = [srv.start(SLEEPY, {"n": i}, filename=f"paged-{i % 2}.flow")["id"] for i in range(5)]
    for pid in ids:
        assert srv.result(pid).json()["status"] == "completed"

    def walk(**params: Any) -> list[list[str]]:
        pages, cursor = [], None
        while True:
            r = srv.http.get("/programs", params={**params, **({"cursor": cursor} if cursor else {})})
            assert r.status_code == 200, r.text
            body = r.json()
            pages.append([p["id"] for p in body["programs"]])
            cursor = body["next_cursor"]
            if cursor is None:
                return pages

    assert walk(file="paged-", limit=2) == [ids[:2], ids[2:4], ids[4:]]
    assert walk(file="paged-1", order="desc") == [[ids[3], ids[1]]]
    assert walk(file="paged-", status=["completed", "failed"], limit=10) == [ids]
    assert walk(file="paged-", status=["waiting", "running"]) == [[]]
    first = srv.http.get("/programs", params={"file": "paged-", "limit": 1}).json()["programs"][0]
    assert first["created_at_iso"].endswith("Z") and first["updated_at_iso"] >= first["created_at_iso"]
    since = first["created_at_iso"]
    assert walk(file="paged-", created_since=since, limit=100)[0][0] == ids[0]
    assert walk(file="paged-", created_before=since) == [[]]
    naive = first["created_at_iso"].removesuffix("Z")  # no zone: UTC
    assert walk(file="paged-", created_since=naive)[0][0] == ids[0]
    for params in ({"limit": 0}, {"limit": 1001}, {"limit": "x"}, {"cursor": "nope"}, {"order": "up"},
                   {"created_since": "yesterday"}, {"created_since": "2026-01-01"}, {"status": "sleepy"}):
        assert_error(srv.http.get("/programs", params=params), 422, "ValidationError")


def test_start_from_path_idempotent_id_and_check_errors(srv: Server, tmp_path: Path) -> None:
    path = srv.db.parent / "doubler.flow"  # the server's program directory (its working directory)
    path.write_text(SLEEPY)
    body = {"path": "doubler.flow", "args": {"n": 5}, "id": "doubler-1"}
    first = srv.http.post("/programs", json=body)
    assert first.status_code == 201 and first.json()["file"] == "doubler.flow"
    again = srv.http.post("/programs", json=body)
    assert again.status_code == 200 and again.json()["id"] == "doubler-1"
    assert again.json()["created_at"] == first.json()["created_at"]
    assert_error(srv.http.post("/programs", json={**body, "args": {"n": 6}}), 409, "ProgramExists")
    assert srv.result("doubler-1").json()["result"] == 10
    # same source by value and the same id: still the same program
    assert srv.http.post("/programs", json={"source": SLEEPY, "args": {"n": 5}, "id": "doubler-1"}).status_code == 200

    error = assert_error(srv.http.post("/programs", json={"source": "def main(:\n", "filename": "bad.flow"}),
                         422, "CheckFailed")
    assert "bad.flow:1:" in error["message"] and error["diagnostics"][0]["line"] == 1
    error = assert_error(srv.http.post("/programs", json={"source": "import os\n"}), 422, "CheckFailed")
    assert "os" in error["message"]
    assert_error(srv.http.post("/programs", json={"path": "missing.flow"}), 422)


def test_start_from_path_only_inside_the_program_directories(srv: Server, tmp_path: Path) -> None:
    secret = tmp_path / "secret.flow"
    secret.write_text("sk = 'sk-live-123'\n")
    (srv.db.parent / "creds.json").write_text('{"token": "sk-live-456"}')
    for path, why in [("/etc/passwd", "absolute"), (str(secret), "absolute"), ("../x.flow", "'..'"),
                      ("sub/../../secret.flow", "'..'"), ("./creds.json", ".flow"), ("~root/x.flow", "absolute")]:
        error = assert_error(srv.http.post("/programs", json={"path": path}), 422, "ValidationError")
        assert why in error["message"], (path, error)
        assert "sk-live" not in str(error) and "root:" not in str(error)
    # a symlink inside the directory that leads out of it
    (srv.db.parent / "link.flow").symlink_to(secret)
    error = assert_error(srv.http.post("/programs", json={"path": "link.flow"}), 422, "ValidationError")
    assert "outside the program directories" in error["message"] and "sk-live" not in str(error)


def test_messages_history_state_and_cancel(srv: Server) -> None:
    pid = srv.start(WAIT_FOR_MESSAGE, {"tag": "m"})["id"]
    assert srv.output(pid) == "ready m\n"
    assert srv.result(pid, wait=0.2).status_code == 202
    state = srv.http.get(f"/programs/{pid}/state").json()
    main_task = state["tasks"][0]
    assert main_task["waiting_for"]["action"] == "receive"
    assert [f["function"] for f in main_task["stack"]] == ["main"] and main_task["stack"][0]["locals"]["tag"] == "'m'"
    first = srv.http.get(f"/programs/{pid}/state", params={"at": 1}).json()
    assert first["seq"] == 1
    assert_error(srv.http.get(f"/programs/{pid}/state", params={"at": 10_000}), 404, "UnknownEvent")
    assert_error(srv.http.get(f"/programs/{pid}/state", params={"at": "x"}), 422, "ValidationError")

    assert_error(srv.http.post(f"/programs/{pid}/messages", json={"message": 1, "channel": "__child__:x"}), 422)
    r = srv.http.post(f"/programs/{pid}/messages", json={"message": {"hello": [1, 2]}})
    assert r.status_code == 202, r.text
    r = srv.result(pid)
    assert r.status_code == 200 and r.json()["result"] == {"tag": "m", "message": {"hello": [1, 2]}}
    assert_error(srv.http.post(f"/programs/{pid}/messages", json={"message": 2}), 409, "ProgramFinished")

    history = srv.http.get(f"/programs/{pid}/history").json()
    types = [e["type"] for e in history["events"]]
    assert types[0] == "started" and types[-1] == "completed" and "message_received" in types
    assert history["last_seq"] == len(types) == history["events"][-1]["seq"]
    later = srv.http.get(f"/programs/{pid}/history", params={"after": 2}).json()["events"]
    assert [e["seq"] for e in later] == list(range(3, len(types) + 1))
    page = srv.http.get(f"/programs/{pid}/history", params={"after": 1, "limit": 1}).json()["events"]
    assert [e["seq"] for e in page] == [2]

    victim = srv.start(WAIT_FOR_MESSAGE)["id"]
    srv.output(victim)
    assert srv.http.post(f"/programs/{victim}/cancel").status_code == 202
    r = srv.result(victim)
    assert r.status_code == 200 and r.json()["status"] == "cancelled" and "Cancelled" in r.json()["error"]
    assert_error(srv.http.post(f"/programs/{victim}/cancel"), 409, "ProgramFinished")


# -- foreign functions served by shell workers ---------------------------------------------------
def _shell_worker(script: str, srv: Server) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHON": sys.executable}
    env.pop("FLOWMETAL_API_TOKEN", None)
    return subprocess.Popen(["bash", str(WORKERS / script), srv.url, "1"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def test_a_shell_worker_serves_a_call(srv: Server) -> None:
    worker = _shell_worker("add_worker.sh", srv)
    pid = srv.start('from flowmetal import call\n\ndef main(a=2, b=3):\n    return call("shell.add", a, b)\n')["id"]
    out, err = worker.communicate(timeout=20)
    assert worker.returncode == 0, err
    key = out.split()[0]
    assert key.startswith(f"{pid}:") and json.loads(out.split(maxsplit=1)[1]) == {"status": "done"}
    r = srv.result(pid)
    assert r.json() == {"id": pid, "status": "completed", "result": 5}
    calls = srv.http.get(f"/programs/{pid}/calls").json()["calls"]
    assert [(c["key"], c["name"], c["status"], c["payload"]) for c in calls] == [
        (key, "shell.add", "done", {"args": [2, 3], "kwargs": {}})]
    for spelled in (key, key.replace(":", "%3A")):
        call = srv.http.get(f"/functions/calls/{spelled}").json()
        assert call["outcome"]["result"] == 5 and call["attempts"] == 1


def test_a_shell_worker_fails_a_call(srv: Server) -> None:
    worker = _shell_worker("fail_worker.sh", srv)
    pid = srv.start('from flowmetal import call, CallError\n\n'
                    'def main():\n'
                    '    try:\n'
                    '        call("shell.fail", "apples")\n'
                    '    except CallError as e:\n'
                    '        return [e.type, e.message, e.attempts]\n'
                    '    return "not reached"\n')["id"]
    out, err = worker.communicate(timeout=20)
    assert worker.returncode == 0, err
    assert json.loads(out.split(maxsplit=1)[1]) == {"status": "done"}
    assert srv.result(pid).json()["result"] == ["OutOfStock", "no apples left", 1]


# -- callbacks -----------------------------------------------------------------------------------
def test_callbacks_deliver_once(srv: Server) -> None:
    pid = srv.start('from flowmetal import callback, receive\n\n'
                    'def main():\n'
                    '    cb = callback()\n'
                    '    print(cb.url)\n'
                    '    req = cb.wait()\n'
                    '    receive("end")  # still running when the second POST comes\n'
                    '    return {"method": req.method, "json": req.json(), "sig": req.headers["x-signature"]}\n')["id"]
    url = srv.output(pid).strip()
    assert url.startswith(f"{srv.url}/callbacks/") and len(url) > len(srv.url) + 30
    with httpx.Client(timeout=10) as outsider:  # no bearer token: the URL is the credential
        r = outsider.put(url, json={"approved": True}, headers={"X-Signature": "abc"})
        assert r.status_code == 202, r.text
        assert_error(outsider.post(url, json={"approved": False}), 409, "AlreadyDelivered")
        assert_error(outsider.post(f"{srv.url}/callbacks/not-a-token", content=b"x"), 404, "UnknownCallback")
    assert srv.http.post(f"/programs/{pid}/messages", json={"message": 1, "channel": "end"}).status_code == 202
    r = srv.result(pid)
    assert r.json()["result"] == {"method": "PUT", "json": {"approved": True}, "sig": "abc"}
    assert_error(httpx.post(url, json={"approved": False}), 410, "CallbackGone")  # its program has ended


# -- the call and callback protocol against calls created in the store ------------------------------
def _park(store: Store, pid: str, calls: list[NewCall], callbacks: list[tuple[str, str, Any]]) -> None:
    """Commit calls and callbacks for a program, as a slice of it would (no worker runs here)."""
    claims = store.claim("test", os.getpid(), "test-host", 60, time.time(), 1, only=pid)
    assert [c.program_id for c in claims] == [pid]
    row = store.get_program(pid)
    store.commit([Commit(pid, claims[0].fence, row.last_seq, status="waiting", calls=calls,
                         callbacks=callbacks)], time.time())
    store.notify()


def _call(pid: str, seq: int, name: str) -> NewCall:
    return NewCall(f"{pid}:{seq}", pid, f"__call__:{pid}:{seq}", "function", name, {"args": [seq], "kwargs": {}},
                   normalize({"attempts": 3, "initial": 0.0}))


def test_claim_heartbeat_retry_stale_and_complete(bare: Server) -> None:
    pid = bare.start(WAIT_FOR_MESSAGE)["id"]
    http = bare.http
    assert http.post("/functions/claim", json={"names": ["t.job"], "worker": "w1"}).json() == {"calls": []}

    # a long-poll is answered as soon as a call is committed (and the store notified)
    got: list[httpx.Response] = []
    poll = threading.Thread(target=lambda: got.append(
        http.post("/functions/claim", json={"names": ["t.job"], "worker": "w1", "wait": 10, "lease": 5})))
    poll.start()
    time.sleep(0.3)
    committed = time.monotonic()
    _park(bare.store, pid, [_call(pid, 2, "t.job")], [])
    poll.join(15)
    assert time.monotonic() - committed < 3
    [claim] = got[0].json()["calls"]
    key = f"{pid}:2"
    assert claim == {"key": key, "program": pid, "kind": "function", "name": "t.job",
                     "payload": {"args": [2], "kwargs": {}}, "attempt": 1, "deadline": None}

    beat = {"worker": "w1", "attempt": 1, "lease": 10}
    assert http.post(f"/functions/calls/{key}/heartbeat", json=beat).json() == {"ok": True}
    assert http.post(f"/functions/calls/{key}/heartbeat", json={**beat, "worker": "w2"}).json() == {"ok": False}
    assert_error(http.post(f"/functions/calls/{pid}:99/heartbeat", json=beat), 404, "UnknownCall")

    failure = {"worker": "w1", "attempt": 1, "error": {"type": "Flaky", "message": "try again"}, "retry_after": 0}
    assert http.post(f"/functions/calls/{key}/fail", json=failure).json() == {"status": "retrying"}
    [again] = http.post("/functions/claim", json={"names": ["t.job"], "worker": "w2", "wait": 5}).json()["calls"]
    assert again["attempt"] == 2
    late = {"worker": "w1", "attempt": 1, "result": "late"}
    assert http.post(f"/functions/calls/{key}/complete", json=late).json() == {"status": "stale"}
    done = {"worker": "w2", "attempt": 2, "result": {"ok": [1, 2]}}
    assert http.post(f"/functions/calls/{key.replace(':', '%3A')}/complete", json=done).json() == {"status": "done"}
    assert http.post(f"/functions/calls/{key}/complete", json=done).json() == {"status": "stale"}
    call = http.get(f"/functions/calls/{key}").json()
    assert call["status"] == "done" and call["attempts"] == 2 and call["last_error"]["type"] == "Flaky"
    [message] = bare.store.inbox(pid)
    assert message.message == {"ok": True, "result": {"ok": [1, 2]}, "attempts": 2}


def test_callback_requests_are_recorded_as_delivered(bare: Server) -> None:
    pid = bare.start(WAIT_FOR_MESSAGE)["id"]
    _park(bare.store, pid, [], [("tok-small", "__cb__:tok-small", None), ("tok-big", "__cb__:tok-big", None)])
    with httpx.Client(base_url=bare.url, timeout=10) as outsider:  # no token needed
        assert_error(outsider.post("/callbacks/tok-big", content=b"x" * 1001), 413, "PayloadTooLarge")
        r = outsider.patch("/callbacks/tok-small", content="ça va?".encode(),
                           headers={"Content-Type": "text/plain; charset=utf-8", "X-Twice": "a"})
        assert r.status_code == 202 and r.json() == {"status": "accepted"}
        assert_error(outsider.post("/callbacks/tok-small", content=b"again"), 409)
        assert outsider.post("/callbacks/tok-big", content=b"x" * 1000).status_code == 202
    first = next(m for m in bare.store.inbox(pid) if m.channel == "__cb__:tok-small").message
    assert first["method"] == "PATCH" and first["body"] == "ça va?"
    assert first["content_type"] == "text/plain; charset=utf-8" and first["headers"]["x-twice"] == "a"
    assert all(name == name.lower() for name in first["headers"])


# -- authentication --------------------------------------------------------------------------------
def test_bearer_token(bare: Server) -> None:
    with httpx.Client(base_url=bare.url, timeout=10) as anonymous:
        r = anonymous.get("/programs")
        assert_error(r, 401, "Unauthorized")
        assert r.headers["www-authenticate"] == "Bearer"
        assert_error(anonymous.get("/programs", headers={"Authorization": "Bearer wrong"}), 401)
        assert_error(anonymous.get("/programs", headers={"Authorization": TOKEN}), 401)
        assert_error(anonymous.post("/programs", json={"source": SLEEPY}), 401)
        assert_error(anonymous.get("/ready"), 401)
        assert_error(anonymous.get("/openapi.json"), 401)
        assert anonymous.get("/health").status_code == 200
        # callbacks never need the token: an unknown one is 404, not 401
        assert_error(anonymous.post("/callbacks/whatever", content=b"{}"), 404, "UnknownCallback")
        assert anonymous.get("/programs", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert bare.http.get("/programs").status_code == 200


# -- bad requests change nothing -------------------------------------------------------------------
def _snapshot(store: Store) -> Any:
    rows = store.list_programs()
    return ([r.to_json() for r in rows], {r.id: [e.to_json() for e in store.events(r.id)] for r in rows},
            {r.id: [(m.channel, m.message) for m in store.inbox(r.id)] for r in rows},
            [c.to_json() for c in store.list_calls()])


def test_bad_requests_are_json_errors_and_change_nothing(bare: Server) -> None:
    pid = bare.start(WAIT_FOR_MESSAGE)["id"]
    http = bare.http
    before = _snapshot(bare.store)
    big = b'{"source": "' + b"x" * 1_100_000 + b'"}'

    def chunks() -> Iterator[bytes]:
        for _ in range(40):
            yield b" " * 50_000

    cases: list[tuple[httpx.Response, int, str | None]] = [
        (http.post("/programs", content=b"{nope"), 400, "BadJSON"),
        (http.post("/programs", content=b""), 400, "BadJSON"),
        (http.post("/programs", content=b'{"source": NaN}'), 400, "BadJSON"),
        (http.post("/programs", content=b"\xff\xfe"), 400, "BadJSON"),
        (http.post("/programs", json=[1, 2]), 422, "ValidationError"),
        (http.post("/programs", json={}), 422, "ValidationError"),
        (http.post("/programs", json={"source": SLEEPY, "path": "x.flow"}), 422, "ValidationError"),
        (http.post("/programs", json={"source": 5}), 422, "ValidationError"),
        (http.post("/programs", json={"source": SLEEPY, "args": [1]}), 422, "ValidationError"),
        (http.post("/programs", json={"source": SLEEPY, "id": "a/b"}), 422, "ValidationError"),
        (http.post("/programs", json={"source": SLEEPY, "id": 7}), 422, "ValidationError"),
        (http.post("/programs", json={"source": "def main(:"}), 422, "CheckFailed"),
        (http.post("/programs", content=big), 413, "PayloadTooLarge"),
        (http.post("/programs", content=chunks()), 413, "PayloadTooLarge"),  # chunked: no Content-Length
        (http.get("/programs/nobody"), 404, "UnknownProgram"),
        (http.get("/programs/nobody/result", params={"wait": 1}), 404, "UnknownProgram"),
        (http.get(f"/programs/{pid}/result", params={"wait": -1}), 422, "ValidationError"),
        (http.get(f"/programs/{pid}/result", params={"wait": "soon"}), 422, "ValidationError"),
        (http.get("/programs/nobody/history"), 404, "UnknownProgram"),
        (http.get(f"/programs/{pid}/history", params={"after": -1}), 422, "ValidationError"),
        (http.get("/programs/nobody/state"), 404, "UnknownProgram"),
        (http.get("/programs/nobody/calls"), 404, "UnknownProgram"),
        (http.post("/programs/nobody/messages", json={"message": 1}), 404, "UnknownProgram"),
        (http.post(f"/programs/{pid}/messages", json={"channel": "inbox"}), 422, "ValidationError"),
        (http.post(f"/programs/{pid}/messages", json={"message": 1, "channel": 3}), 422, "ValidationError"),
        (http.post(f"/programs/{pid}/messages", content=b"[1"), 400, "BadJSON"),
        (http.post("/programs/nobody/cancel"), 404, "UnknownProgram"),
        (http.post("/functions/claim", json={"worker": "w"}), 422, "ValidationError"),
        (http.post("/functions/claim", json={"names": "t.job", "worker": "w"}), 422, "ValidationError"),
        (http.post("/functions/claim", json={"names": ["t.job"], "worker": "w", "limit": 0}), 422, None),
        (http.post("/functions/claim", json={"names": ["t.job"], "worker": "w", "wait": -1}), 422, None),
        (http.post("/functions/claim", json={"names": ["t.job"]}), 422, "ValidationError"),
        (http.get("/functions/calls/nobody:1"), 404, "UnknownCall"),
        (http.post("/functions/calls/nobody:1/complete", json={"worker": "w", "attempt": 1}), 404, "UnknownCall"),
        (http.post("/functions/calls/nobody:1/complete", json={"worker": "w", "attempt": True}), 422, None),
        (http.post("/functions/calls/nobody:1/fail", json={"worker": "w", "attempt": 1, "error": "x"}), 422, None),
        (http.post("/functions/calls/nobody:1/fail", json={"worker": "w", "attempt": 1, "error": {"type": "E"}}),
         422, None),
        (http.post("/functions/calls/nobody:1/heartbeat", json={"worker": "w", "attempt": 1}), 404, "UnknownCall"),
        (http.put("/callbacks/nobody", content=b"{}"), 404, "UnknownCallback"),
        (http.delete("/callbacks/nobody"), 405, "MethodNotAllowed"),  # (a GET shows a page: test_callback_links)
        (http.get("/no/such/route"), 404, "NotFound"),
        (http.delete(f"/programs/{pid}"), 405, "MethodNotAllowed"),
    ]
    for r, status, type_ in cases:
        assert_error(r, status, type_)
    assert _snapshot(bare.store) == before


# -- OpenAPI and readiness -------------------------------------------------------------------------
def test_openapi_describes_every_route(bare: Server, tmp_path: Path) -> None:
    doc = bare.http.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.1")
    store = open_store(f"sqlite:///{tmp_path / 'routes.db'}")
    try:
        app = create_app(store, Runtime(store))
    finally:
        store.close()
    routes = [(route.path, sorted(m.lower() for m in (route.methods or ()) if m != "HEAD"))
              for route in app.routes if isinstance(route, Route) and route.include_in_schema]
    # besides the API: the redirect from / and the web console's pages (HTML) under /ui
    assert len(routes) == len(app.routes) - 2 and any(getattr(r, "path", "") == "/ui" for r in app.routes)
    assert sum(len(ms) for _, ms in routes) == 34  # method-path pairs
    for path, methods in routes:
        assert path in doc["paths"], path
        for method in methods:
            op = doc["paths"][path].get(method)
            assert op is not None, (method, path)
            assert op["responses"] and any(code.startswith("2") for code in op["responses"]), (method, path)
            body = op.get("requestBody")
            if method == "post" and body is not None:
                assert body["content"], (method, path)
    described = {(p, m) for p, ops in doc["paths"].items() for m in ops}
    assert described == {(p, m) for p, ms in routes for m in ms}  # nothing described that does not exist

    def refs(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "$ref":
                    yield v
                else:
                    yield from refs(v)
        elif isinstance(node, list):
            for v in node:
                yield from refs(v)

    for ref in refs(doc):
        assert ref.removeprefix("#/components/schemas/") in doc["components"]["schemas"], ref


def test_readiness(srv: Server, tmp_path: Path) -> None:
    assert srv.http.get("/ready").json() == {"status": "ready", "store": srv.url_store}
    doomed = Server(tmp_path, "--no-worker")
    try:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{doomed.db}{suffix}").unlink(missing_ok=True)  # the store is gone
        error = assert_error(doomed.http.get("/ready"), 503, "StoreUnavailable")
        assert "programs" in error["message"]
        assert doomed.http.get("/health").status_code == 200  # the process itself is fine
    finally:
        doomed.stop()


def test_serve_refuses_a_taken_port(srv: Server) -> None:
    port = srv.url.rsplit(":", 1)[1]
    r = subprocess.run([sys.executable, "-m", "flowmetal", "serve", "--store", srv.url_store, "--port", port,
                        "--no-worker"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in r.stderr and "Traceback" not in r.stderr
