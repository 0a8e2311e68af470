"""Quotas a slice enforces itself, program directories and the HTTP egress policy.

Slices run in the test's own process here (the quotas are the same code in an
executor); the HTTP tests use a real loopback server.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from flowmetal.connectors.egress import EgressPolicy, EgressRefused, PolicyError
from flowmetal.connectors.http import HttpConnector
from flowmetal.runtime.driver import Runtime
from flowmetal.runtime.programdirs import ProgramDirs, ProgramPathError
from flowmetal.runtime.slice import Quotas
from flowmetal.runtime.worker import Worker
from flowmetal.store import open_store
from flowmetal.store.base import FINISHED, CallClaim


def _run(tmp_path: Path, source: str, quotas: Quotas, **args: Any) -> tuple[Runtime, str]:
    store = open_store(f"sqlite:///{tmp_path / 'q.db'}")
    rt = Runtime(store, quotas=quotas, programs=ProgramDirs([tmp_path]))
    path = tmp_path / "main.flow"
    path.write_text(source)
    pid = rt.start(str(path), args, program_id="main")
    Worker(rt, notify=False).run(until=lambda: store.get_program(pid).status in FINISHED)
    return rt, pid


CHILD = "def main():\n    return 1\n"


@pytest.mark.parametrize(("source", "quotas", "error"), [
    ("def main():\n    for i in range(50):\n        print('x' * 100)\n", Quotas(output_per_slice=1000),
     "OutputLimitExceeded: the program printed more than 1000 characters in one slice"),
    ("from flowmetal import now\n\ndef main():\n    for i in range(100):\n        now()\n",
     Quotas(events_per_slice=50), "QuotaExceeded: the program recorded more than 50 events in one slice"),
    ("from flowmetal import send, program_id\n\ndef main():\n    me = program_id()\n"
     "    for i in range(20):\n        send(me, i)\n", Quotas(messages_per_slice=10),
     "QuotaExceeded: the program sent more than 10 messages in one slice"),
    ("from flowmetal import start\n\ndef main():\n    for i in range(20):\n        start('child.flow')\n",
     Quotas(children_per_slice=5), "QuotaExceeded: the program started more than 5 child programs in one slice"),
    ("from flowmetal import start\n\ndef main():\n    for i in range(20):\n        start('child.flow').result()\n",
     Quotas(children_per_program=5), "QuotaExceeded: the program started more than 5 child programs"),
    ("from flowmetal import sleep\n\ndef main():\n    for i in range(100):\n        sleep(0)\n",
     Quotas(history_events=60), "QuotaExceeded: the program's history reached 60 events"),
])
def test_a_program_over_a_quota_fails_and_keeps_nothing_of_that_slice(tmp_path: Path, source: str, quotas: Quotas,
                                                                       error: str) -> None:
    (tmp_path / "child.flow").write_text(CHILD)
    rt, pid = _run(tmp_path, source, quotas)
    row = rt.store.get_program(pid)
    assert row.status == "failed" and row.error is not None and row.error.startswith(error), row.error
    events = rt.store.events(pid)
    assert events[-1].type == "failed" and len(events) <= quotas.history_events + 1
    # the slice that went over left no effects: no child of it, no message of it
    started_children = [r for r in rt.store.list_programs() if r.parent_id == pid]
    assert len(started_children) <= quotas.children_per_program
    assert [m for m in rt.store.inbox(pid) if not m.channel.startswith("__child__")] == []


def test_within_the_quotas_nothing_changes(tmp_path: Path) -> None:
    (tmp_path / "child.flow").write_text(CHILD)
    source = ("from flowmetal import start, send, program_id, receive\n\ndef main():\n"
              "    kids = [start('child.flow') for _ in range(5)]\n    send(program_id(), 'hi')\n"
              "    print('x' * 500)\n    return [k.result() for k in kids] + [receive()]\n")
    rt, pid = _run(tmp_path, source, Quotas(output_per_slice=1000, children_per_slice=5, children_per_program=5,
                                            messages_per_slice=1))
    row = rt.store.get_program(pid)
    assert row.status == "completed" and row.result == [1, 1, 1, 1, 1, "hi"], row.error


def test_program_paths(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "p.flow").write_text(CHILD)
    (tmp_path / "a" / "q.flow").write_text(CHILD)
    (tmp_path / "b.flow").write_text(CHILD)
    dirs = ProgramDirs([tmp_path])
    assert dirs.read("a/p.flow")[0] == str(tmp_path / "a" / "p.flow")
    assert dirs.read("q.flow", relative_to=str(tmp_path / "a" / "p.flow"))[0] == str(tmp_path / "a" / "q.flow")
    assert dirs.read("b.flow", relative_to=str(tmp_path / "a" / "p.flow"))[0] == str(tmp_path / "b.flow")
    for bad in ["/etc/passwd", "../b.flow", "a/../b.flow", "", "a\\p.flow", "b.json", "~/b.flow"]:
        with pytest.raises(ProgramPathError):
            dirs.read(bad)
    with pytest.raises(ProgramPathError, match="no program"):
        dirs.read("missing.flow")


# -- egress ------------------------------------------------------------------------------------

def test_the_default_policy_refuses_link_local_and_metadata_addresses() -> None:
    policy = EgressPolicy()
    for host in ("169.254.169.254", "169.254.1.1", "fe80::1", "::ffff:169.254.169.254", "fd00:ec2::254"):
        with pytest.raises(EgressRefused):
            policy.addresses(host, 80)
    assert policy.addresses("127.0.0.1", 80) == ["127.0.0.1"]


def test_allow_and_deny_lists() -> None:
    policy = EgressPolicy(allow=["10.0.0.0/8,localhost"], deny=["link-local", "10.9.0.0/16"])
    assert policy.addresses("10.1.2.3", 80) == ["10.1.2.3"]
    assert "127.0.0.1" in policy.addresses("localhost", 80)
    for host in ("10.9.1.1", "192.168.1.1", "127.0.0.2"):
        with pytest.raises(EgressRefused):
            policy.addresses(host, 80)
    with pytest.raises(EgressRefused, match="--deny-hosts"):
        EgressPolicy(deny=["*.internal"]).addresses("db.internal", 80)
    assert EgressPolicy(deny=["none"]).addresses("169.254.169.254", 80) == ["169.254.169.254"]
    with pytest.raises(PolicyError):
        EgressPolicy(deny=["not a host!"])


class _Ok(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        target = self.path.split("?to=", 1)[1] if "?to=" in self.path else None
        if target:
            self.send_response(302)
            self.send_header("Location", target)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def _get(connector: HttpConnector, url: str) -> Any:
    claim = CallClaim("p:1", "p", "http", "http", {"method": "GET", "url": url, "timeout": 5}, 1, None)
    return connector.perform(claim)


def test_the_connector_checks_every_connection_and_redirect(tmp_path: Path, server: str) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'h.db'}")
    connector = HttpConnector(store)
    assert _get(connector, server).ok
    refused = _get(connector, "http://169.254.169.254/latest/meta-data/")
    assert not refused.ok and not refused.retryable and refused.error["type"] == "EgressRefused"
    redirected = _get(connector, f"{server}/?to=http://169.254.169.254/")
    assert not redirected.ok and redirected.error["type"] == "EgressRefused"
    strict = HttpConnector(store, egress=EgressPolicy(deny=["link-local", "loopback"]))
    blocked = _get(strict, server)
    assert not blocked.ok and "loopback" in blocked.error["message"]
