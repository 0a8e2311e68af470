"""Outcomes of calls, HTTP requests, child programs and callbacks reach a program on channels
only the runtime writes (`__call__:...`, `__child__:...`, `__cb__:...`). No sender can use
them: not a program's `send()`, nor the API, the CLI, the Python client or the store itself.
Each door is tried here against real processes, and the victim's call is shown to keep
waiting for its real outcome."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli_checks import one_clear_line
from flowmetal.client import Client
from flowmetal.errors import FlowmetalError
from flowmetal.store.base import ReservedChannel
from test_api import Server

VICTIM = """
from flowmetal import call

def main():
    return call("billing.charge", 42)
"""


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = Server(tmp_path_factory.mktemp("forge"))
    yield server
    server.stop()


def _victim(node: Server) -> tuple[str, str]:
    """A program waiting for a foreign call nobody serves, and the channel its outcome would use."""
    pid = node.start(VICTIM)["id"]
    deadline = time.monotonic() + 20
    while True:
        calls = node.store.list_calls(pid)
        if calls:
            return pid, f"__call__:{calls[0].key}"  # (the runtime's own name for its outcome)
        assert time.monotonic() < deadline, "the call was never made"
        time.sleep(0.05)


def _still_waiting(node: Server, pid: str) -> None:
    time.sleep(0.3)
    row = node.store.get_program(pid)
    assert row.status == "waiting", row
    assert not any(m.channel.startswith("__") for m in node.store.inbox(pid))


def test_a_program_cannot_send_on_a_reserved_channel(node: Server) -> None:
    victim, channel = _victim(node)
    assert channel.startswith("__call__:")
    forger = node.start(f"""
from flowmetal import send, receive

def main():
    try:
        send({victim!r}, {{"ok": True, "result": {{"paid": True}}}}, {channel!r})
    except ValueError as e:
        print("refused:", e)
    try:
        receive({channel!r}, timeout=0)
    except ValueError as e:
        print("refused:", e)
""")["id"]
    assert node.result(forger).json()["status"] == "completed"
    out = node.output(forger)
    assert out.count("refused: send(): channel '__call__:") == 1, out
    assert out.count("refused: receive(): channel '__call__:") == 1, out
    _still_waiting(node, victim)


def test_the_api_refuses_reserved_channels(node: Server) -> None:
    victim, channel = _victim(node)
    for forged in (channel, f"__child__:{victim}", "__cb__:sometoken", "__anything"):
        r = node.http.post(f"/programs/{victim}/messages", json={"message": {"ok": True}, "channel": forged})
        assert r.status_code == 422, r.text
        assert "channel" in r.json()["error"]["message"], r.text  # refused by the request's declared type
    _still_waiting(node, victim)


def test_the_cli_refuses_reserved_channels(node: Server, tmp_path: Path) -> None:
    victim, channel = _victim(node)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWMETAL_")}
    r = subprocess.run([sys.executable, "-m", "flowmetal", "send", victim, json.dumps({"ok": True}), "--channel",
                        channel, "--store", node.url_store], capture_output=True, text=True, env=env,
                       cwd=tmp_path, timeout=60)
    assert r.returncode == 2
    assert "is reserved" in one_clear_line(r)
    _still_waiting(node, victim)


def test_the_clients_and_the_store_refuse_reserved_channels(node: Server) -> None:
    victim, channel = _victim(node)
    with pytest.raises(ReservedChannel):
        node.store.send(victim, channel, {"ok": True}, time.time())
    local = Client(node.url_store)
    with pytest.raises(FlowmetalError, match="reserved"):
        local.send(victim, {"ok": True}, channel)
    remote = Client(node.url)
    with pytest.raises(FlowmetalError, match="reserved"):
        remote.send(victim, {"ok": True}, channel)
    _still_waiting(node, victim)
