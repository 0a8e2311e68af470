"""`secret("NAME")` end to end, on both stores: a real `flowmetal serve` with a secrets file
sends the values to a loopback service (headers, bearer and basic auth, JSON fields) and to a
foreign function's arguments, while the stored bytes — the SQLite file, every PostgreSQL
row — history, export and the API hold only `<secret NAME>`, even when the service and the
function echo the values back or put them in an error."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import drop_schema, pg_url, schema_of

TOKEN = "tok-Zq8Y3-live-9x1"
PASSWORD = "pw-Hunter2-Q7"
VALUES = (TOKEN, PASSWORD)

PROGRAM = '''from flowmetal import secret, http, call, Retry

def main(url):
    tok = secret("API_TOKEN")
    print("using", tok, f"{tok!r}")
    r = http.post(url, headers={"X-Api-Key": tok}, json={"password": secret("DB_PASSWORD"), "n": 1}, auth=tok)
    basic = http.get(url, auth=("svc", secret("DB_PASSWORD")))
    got = call("use_secret", tok, opts={"pw": secret("DB_PASSWORD", format="pw:{}")},
               retry=Retry(attempts=2, initial=0.05))
    return {"echo": r.json(), "basic": basic.json()["headers"]["Authorization"], "call": got}
'''

FUNCTIONS = '''import flowmetal

@flowmetal.function("use_secret")
def use_secret(ctx, tok, opts):
    if ctx.attempt == 1:
        raise ValueError(f"the service rejected {tok} with {opts['pw']}")
    return {"tok": tok, "pw": opts["pw"], "len": len(tok)}
'''


class Echo(BaseHTTPRequestHandler):
    """Answers every request with what it received (as a careless service might)."""

    received: list[dict[str, Any]] = []

    def _echo(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0)).decode()
        seen = {"method": self.command, "headers": dict(self.headers), "body": body}
        Echo.received.append(seen)
        out = json.dumps(seen).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_POST = _echo

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def echo() -> Iterator[str]:
    Echo.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/echo"
    server.shutdown()
    server.server_close()
    thread.join()


def _serve(directory: Path, store: str) -> tuple[subprocess.Popen[str], httpx.Client]:
    (directory / "fns.py").write_text(FUNCTIONS)
    (directory / "secrets.env").write_text(f"# the node's secrets\nAPI_TOKEN={TOKEN}\nDB_PASSWORD = {PASSWORD}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWMETAL_")}
    proc = subprocess.Popen([sys.executable, "-m", "flowmetal", "serve", "--store", store, "--port", "0",
                             "--functions", str(directory / "fns.py"), "--secrets", str(directory / "secrets.env")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=directory, env=env)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("flowmetal: serving on "), line
    http = httpx.Client(base_url=line.split()[3], timeout=30)
    deadline = time.monotonic() + 15
    while True:
        try:
            if http.get("/health").status_code == 200:
                return proc, http
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline
        time.sleep(0.02)


def _stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 0, stderr
    return stderr


def _cli(store: str, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWMETAL_")}
    r = subprocess.run([sys.executable, "-m", "flowmetal", *args, "--store", store], capture_output=True, text=True,
                       timeout=60, env=env)
    assert r.returncode == 0, r.stderr
    return r.stdout


def _run_program(directory: Path, store: str, url: str) -> tuple[str, str]:
    """Run the program on a node; (its id, everything people and clients can read about it)."""
    proc, http = _serve(directory, store)
    try:
        r = http.post("/programs", json={"source": PROGRAM, "args": {"url": url}})
        assert r.status_code == 201, r.text
        pid = r.json()["id"]
        outcome = http.get(f"/programs/{pid}/result", params={"wait": 30}).json()
        assert outcome["status"] == "completed", outcome
        result = outcome["result"]
        # the service and the function got the real values
        posted, fetched = Echo.received
        assert posted["headers"]["X-Api-Key"] == TOKEN and posted["headers"]["Authorization"] == f"Bearer {TOKEN}"
        assert json.loads(posted["body"]) == {"password": PASSWORD, "n": 1}
        assert fetched["headers"]["Authorization"] == "Basic " + base64.b64encode(f"svc:{PASSWORD}".encode()).decode()
        assert result["call"] == {"tok": "<secret API_TOKEN>", "pw": "pw:<secret DB_PASSWORD>", "len": len(TOKEN)}
        # ... and what came back was cleaned of them before it was recorded
        assert result["echo"]["headers"]["Authorization"] == "Bearer <secret API_TOKEN>"
        assert json.loads(result["echo"]["body"]) == {"password": "<secret DB_PASSWORD>", "n": 1}
        assert result["basic"] == "Basic <secret basic auth>"
        readable = [json.dumps(http.get(path).json()) for path in (
            f"/programs/{pid}", f"/programs/{pid}/history", f"/programs/{pid}/calls", f"/programs/{pid}/state")]
        assert "using <secret API_TOKEN> <secret API_TOKEN>" in readable[1]
        calls = json.loads(readable[2])["calls"]
        (failed,) = [a for c in calls for a in c["failed_attempts"]]
        assert failed["error"]["message"] == "the service rejected <secret API_TOKEN> with pw:<secret DB_PASSWORD>"
        assert "<secret API_TOKEN>" in failed["error"]["traceback"]
        http.close()
    finally:
        logs = _stop(proc)
    readable += [_cli(store, "history", pid), _cli(store, "history", pid, "--json"), _cli(store, "export", pid),
                 _cli(store, "calls", pid), _cli(store, "inspect", pid), logs]
    return pid, "\n".join(readable)


def test_secrets_reach_the_service_and_never_the_sqlite_store(tmp_path: Path, echo: str) -> None:
    store = f"sqlite:///{tmp_path / 'node.db'}"
    _, readable = _run_program(tmp_path, store, echo)
    for value in VALUES:
        assert value not in readable
    stored = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("node.db") and p.is_file())
    assert b"<secret API_TOKEN>" in stored
    for value in VALUES:
        assert value.encode() not in stored


def test_secrets_never_reach_postgresql_rows(tmp_path: Path, echo: str) -> None:
    import psycopg
    from psycopg import sql

    store = pg_url()
    try:
        _, readable = _run_program(tmp_path, store, echo)
        for value in VALUES:
            assert value not in readable
        schema = schema_of(store)
        dump = []
        with psycopg.connect(os.environ["FLOWMETAL_TEST_POSTGRES_URL"]) as conn:
            tables = [r[0] for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (schema,))]
            assert {"events", "calls", "call_attempts", "checkpoints", "programs", "inbox"} <= set(tables)
            for table in tables:
                rows = conn.execute(sql.SQL("SELECT t::text FROM {}.{} AS t").format(
                    sql.Identifier(schema), sql.Identifier(table))).fetchall()
                dump += [r[0] for r in rows]
        text = "\n".join(dump)
        assert "<secret API_TOKEN>" in text
        for value in VALUES:
            assert value not in text and value.encode().hex() not in text  # (bytea columns print as hex)
    finally:
        drop_schema(store)


def test_a_secret_the_node_does_not_have_fails_the_request_and_says_which(tmp_path: Path) -> None:
    program = '''from flowmetal import secret, http, HttpError

def main():
    try:
        http.get("http://127.0.0.1:9/", headers={"X-Key": secret("NOT_CONFIGURED")})
    except HttpError as e:
        return str(e)
'''
    store = f"sqlite:///{tmp_path / 'node.db'}"
    proc, http = _serve(tmp_path, store)
    try:
        pid = http.post("/programs", json={"source": program}).json()["id"]
        outcome = http.get(f"/programs/{pid}/result", params={"wait": 30}).json()
        assert outcome["result"] == (
            "http.request(GET http://127.0.0.1:9/) failed after 1 attempt(s): SecretMissing: secret 'NOT_CONFIGURED' "
            f"is not configured on this node: set FLOWMETAL_SECRET_NOT_CONFIGURED or in {tmp_path / 'secrets.env'}")
        http.close()
    finally:
        _stop(proc)


def test_a_bad_secrets_file_is_refused_at_start(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text('{"A": 1}')
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWMETAL_")}
    for args in (["worker", "--secrets", str(tmp_path / "bad.json")],
                 ["worker", "--secrets", str(tmp_path / "missing")]):
        r = subprocess.run([sys.executable, "-m", "flowmetal", *args, "--store", f"sqlite:///{tmp_path / 's.db'}"],
                           capture_output=True, text=True, timeout=60, env=env)
        assert r.returncode == 2 and "--secrets" in r.stderr and "Traceback" not in r.stderr, r.stderr
