"""Webhook starts against a real `flowmetal serve` (with a bearer token, which hooks do not
need): a GitHub-style signed push delivered twice with one delivery id starts one program;
a wrong or missing signature is 401 and stores nothing; Stripe-style signatures with a replay
window; a hook that messages a program; and the operator's `flowmetal hook` commands."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cli_checks import one_clear_line, wait_for
from flowmetal.store import open_store
from flowmetal.store.base import Store
from test_api import TOKEN, Server

SECRET = "It's a Secret to Everybody"
PUSH = {"ref": "refs/heads/main", "after": "a1b2c3", "repository": {"full_name": "octo/hello"}}
CI = '''from flowmetal import program_id

def main(body=None, headers=None, team="none"):
    return {"id": program_id(), "ref": body["ref"], "event": headers.get("x-github-event"),
            "seen": sorted(headers), "team": team}
'''
WAITER = "from flowmetal import receive\n\ndef main():\n    return receive(\"hooks\")\n"


def github_signature(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def stripe_signature(body: bytes, at: int, secret: str = SECRET) -> str:
    return f"t={at},v1=" + hmac.new(secret.encode(), f"{at}.".encode() + body, hashlib.sha256).hexdigest()


def everything(store: Store) -> list[Any]:
    """Every program with its events and inbox: to prove a refused request stored nothing."""
    return [(r.id, r.last_seq, [e.type for e in store.events(r.id)], len(store.inbox(r.id)))
            for r in store.list_programs()]


@pytest.fixture
def node(tmp_path: Path) -> Iterator[tuple[Server, Store, Any]]:
    (tmp_path / "ci.flow").write_text(CI)
    (tmp_path / "waiter.flow").write_text(WAITER)
    url = f"sqlite:///{tmp_path / 'api.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWMETAL_")}

    def fm(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "flowmetal", *args, "--store", url], capture_output=True,
                              text=True, cwd=tmp_path, env=env, timeout=60)

    assert fm("deploy", "ci.flow").returncode == 0
    r = fm("hook", "create", "github", "ci", "--secret", SECRET, "--header", "X-GitHub-Event",
           "--id-header", "X-GitHub-Delivery", "--args", '{"team": "core"}')
    assert r.returncode == 0 and r.stdout.startswith("hook github: POST /hooks/github starts ci"), r.stderr
    server = Server(tmp_path, token=TOKEN)  # the same store (api.db): hooks read their configuration from it
    store = open_store(server.url_store)
    try:
        yield server, store, fm
    finally:
        server.stop()
        store.close()


def post(server: Server, path: str, body: bytes, **headers: str) -> httpx.Response:
    # no bearer token: a hook's signature is its credential
    return httpx.post(f"{server.url}{path}", content=body, headers=headers, timeout=30)


def test_a_signed_push_delivered_twice_starts_one_program(node: tuple[Server, Store, Any]) -> None:
    server, store, _ = node
    body = json.dumps(PUSH).encode()
    headers = {"X-GitHub-Event": "push", "X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
               "X-Hub-Signature-256": github_signature(body), "Content-Type": "application/json",
               "User-Agent": "GitHub-Hookshot/abc"}
    first = post(server, "/hooks/github", body, **headers)
    assert first.status_code == 202, first.text
    pid = first.json()["id"]
    assert first.json() == {"id": "github@72d3162e-cc78-11e3-81ab-4c9367dc0958", "status": "started"}
    again = post(server, "/hooks/github", body, **headers)  # GitHub's redelivery: same id, same body
    assert (again.status_code, again.json()) == (200, {"id": pid, "status": "duplicate"})
    assert [r.id for r in store.list_programs()] == [pid]
    wait_for(lambda: store.get_program(pid).status == "completed", timeout=30)
    # the body and only the named headers are the program's arguments, with the hook's fixed ones
    assert store.get_program(pid).result == {"id": pid, "ref": "refs/heads/main", "event": "push",
                                             "seen": ["x-github-delivery", "x-github-event"], "team": "core"}
    assert store.get_program(pid).deployment == "ci@1"


def test_a_wrong_or_missing_signature_is_401_and_stores_nothing(node: tuple[Server, Store, Any]) -> None:
    server, store, _ = node
    body = json.dumps(PUSH).encode()
    before = everything(store)
    cases = [
        {"X-Hub-Signature-256": github_signature(body, "not the secret")},
        {"X-Hub-Signature-256": github_signature(body + b" ")},  # signed another body
        {"X-Hub-Signature-256": "sha256=" + "0" * 64},
        {},
    ]
    for signature in cases:
        r = post(server, "/hooks/github", body, **{"X-GitHub-Delivery": "d-1", "X-GitHub-Event": "push",
                                                     **signature})
        assert (r.status_code, r.json()["error"]["type"]) == (401, "BadSignature"), r.text
    assert everything(store) == before == []
    r = post(server, "/hooks/nope", body)
    assert (r.status_code, r.json()["error"]["type"]) == (404, "UnknownHook")
    # signed, but without the delivery id the hook needs: refused before anything is stored
    r = post(server, "/hooks/github", body, **{"X-Hub-Signature-256": github_signature(body)})
    assert (r.status_code, r.json()["error"]["type"]) == (400, "BadDelivery")
    assert everything(store) == []


def test_stripe_signatures_have_a_replay_window(node: tuple[Server, Store, Any]) -> None:
    server, store, fm = node
    r = fm("hook", "create", "pay", "ci", "--style", "stripe", "--secret", SECRET, "--tolerance", "5m")
    assert r.returncode == 0, r.stderr
    body = json.dumps({"ref": "evt_1"}).encode()
    now = int(time.time())
    stale = post(server, "/hooks/pay", body, **{"Stripe-Signature": stripe_signature(body, now - 600)})
    assert (stale.status_code, stale.json()["error"]["type"]) == (401, "BadSignature")
    assert "replay window" in stale.json()["error"]["message"]
    forged = post(server, "/hooks/pay", body, **{"Stripe-Signature": stripe_signature(body, now, "wrong")})
    assert forged.status_code == 401
    assert everything(store) == []
    ok = post(server, "/hooks/pay", body,
              **{"Stripe-Signature": stripe_signature(body, now) + ",v0=ignored", "Content-Type": "application/json"})
    assert (ok.status_code, ok.json()["status"]) == (202, "started"), ok.text
    assert [r.id for r in store.list_programs()] == [ok.json()["id"]]


def test_a_hook_can_message_a_program_and_the_operator_manages_hooks(node: tuple[Server, Store, Any],
                                                                     tmp_path: Path) -> None:
    server, store, fm = node
    waiter = server.http.post("/programs", json={"path": "waiter.flow", "id": "waiter"})
    assert waiter.status_code == 201, waiter.text
    r = fm("hook", "create", "notify", "--send-to-header", "X-Target", "--channel", "hooks", "--secret-env",
           "FM_TEST_HOOK_SECRET", "--header", "X-Kind")
    assert r.returncode == 0, r.stderr
    body = b'{"n": 1}'
    # the serving process has no such variable: the hook cannot check signatures, and says so
    r = post(server, "/hooks/notify", body, **{"X-Hub-Signature-256": github_signature(body), "X-Target": "waiter"})
    assert (r.status_code, r.json()["error"]["type"]) == (503, "HookMisconfigured")
    fm("hook", "create", "notify", "--send-to-header", "X-Target", "--channel", "hooks", "--secret", SECRET,
       "--header", "X-Kind")
    r = post(server, "/hooks/notify", body,
             **{"X-Hub-Signature-256": github_signature(body), "X-Target": "waiter", "X-Kind": "ping"})
    assert (r.status_code, r.json()) == (202, {"id": "waiter", "status": "queued"})
    wait_for(lambda: store.get_program("waiter").status == "completed", timeout=30)
    assert store.get_program("waiter").result == {"body": {"n": 1}, "headers": {"x-kind": "ping"}}
    listing = json.loads(fm("hook", "list", "--json").stdout)
    assert [(h["name"], h["action"], h["secret"]) for h in listing] == [("github", "start", "***"),
                                                                        ("notify", "send", "***")]
    assert SECRET not in fm("hook", "list").stdout + fm("hook", "list", "--json").stdout
    assert "needs --secret" in one_clear_line(fm("hook", "create", "x", "ci"))
    assert "no deployment named 'nope'" in one_clear_line(fm("hook", "create", "x", "nope", "--secret", "s"))
    assert fm("hook", "delete", "notify").returncode == 0
    assert post(server, "/hooks/notify", body).status_code == 404
