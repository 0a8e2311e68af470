"""Keep docs/actions.md honest: every durable action and exception of the `flowmetal`
module is documented, and every example runs on the durable runtime and does what its
trailing comment block says.

An example is a fence opened with `` ```python flow `` (a program run on a fresh SQLite
store with a fake clock starting at 2023-11-14T22:13:20Z, `random.Random(0)` for the random
actions, foreign functions and a loopback HTTP service of this module). Its comment block:

    # Args: {"n": 1}                        keyword arguments for main() (JSON; "$URL" is the service's address)
    # Send: {"at": 5, "channel": "go", "message": 1}    a message sent when the clock reaches `at`
    # Deliver: {"at": 2, "json": {"ok": true}}          a POST to the program's open callback link
    # Cancel: {"at": 3}                     the program is cancelled then
    # Output:                               the lines after it ("# text" or "#") are exactly what it prints
    # Result: 'HELLO'                       repr() of main()'s return value
    # Error: ValueError: bad                the program's final error line (failed or cancelled)
    # Events: effect_requested(sleep) timer_fired completed
                                            the event types of its log after `started` (the kind of
                                            each effect in parentheses), in order

A fence opened with `` ```python flow-file NAME `` is a file the examples may `start()`.
After each run the program's whole log is replayed from its first event (no checkpoint),
which must reproduce it.
"""

from __future__ import annotations

import json
import random
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from flowmetal.connectors.functions import FunctionWorker, NonRetryable
from flowmetal.connectors.http import HttpConnector
from flowmetal.connectors.secrets import SecretSource
from flowmetal.lang.surface import FLOWMETAL_MEMBERS, HTTP_MEMBERS, KINDS
from flowmetal.runtime.driver import Runtime
from flowmetal.runtime.worker import Worker
from flowmetal.store import open_store
from flowmetal.store.base import FINISHED, Store

DOC_PATH = Path(__file__).resolve().parent.parent / "docs" / "actions.md"
T0 = 1_700_000_000.0
_FENCE = re.compile(r"^```(?P<info>[^\n`]*)\n(?P<body>.*?)^```[ \t]*$", re.S | re.M)
_MARKERS = ("# Args:", "# Send:", "# Deliver:", "# Cancel:", "# Output:", "# Result:", "# Error:", "# Events:")


def _doc() -> str:
    return DOC_PATH.read_text(encoding="utf-8")


@dataclass
class Example:
    line: int
    source: str
    args: dict[str, Any] = field(default_factory=dict)
    inputs: list[tuple[float, str, dict[str, Any]]] = field(default_factory=list)
    output: list[str] | None = None
    result: str | None = None
    error: str | None = None
    events: list[str] | None = None

    def __str__(self) -> str:
        return f"docs/actions.md:{self.line}"


def _parse(line: int, body: str) -> Example:
    lines = body.splitlines()
    cut = next((i for i, ln in enumerate(lines) if ln.startswith(_MARKERS)), len(lines))
    ex = Example(line, "\n".join(lines[:cut]) + "\n")
    collecting = False
    for ln in lines[cut:]:
        marker, _, rest = ln.partition(":")
        if ln.startswith(_MARKERS):
            collecting = False
            name = marker[2:]
            if name == "Args":
                ex.args = json.loads(rest)
            elif name in ("Send", "Deliver", "Cancel"):
                spec = json.loads(rest)
                ex.inputs.append((float(spec.pop("at")), name, spec))
            elif name == "Output":
                ex.output, collecting = [], True
            elif name == "Result":
                ex.result = rest.strip()
            elif name == "Error":
                ex.error = rest.strip()
            elif name == "Events":
                ex.events = rest.split()
        elif collecting and (ln == "#" or ln.startswith("# ")):
            assert ex.output is not None
            ex.output.append(ln[2:])
        elif ex.events is not None and ln.startswith("#   "):  # a long list of events, continued
            ex.events += ln[1:].split()
        else:
            raise AssertionError(f"{ex}: unexpected line after the expectations: {ln!r}")
    return ex


def _fences(kind: str) -> list[tuple[int, list[str], str]]:
    if not DOC_PATH.exists():
        return []
    text = _doc()
    out = []
    for m in _FENCE.finditer(text):
        words = m.group("info").split()
        if len(words) >= 2 and words[0] == "python" and words[1] == kind:
            out.append((text.count("\n", 0, m.start()) + 1, words[2:], m.group("body")))
    return out


EXAMPLES = [_parse(line, body) for line, _, body in _fences("flow")]
FILES = {words[0]: body for _, words, body in _fences("flow-file")}


# -- the outside world the examples see ----------------------------------------------------------
def _functions(store: Store) -> FunctionWorker:
    fw = FunctionWorker(store, secrets=SecretSource(environ={"FLOWMETAL_SECRET_SHIPPING_KEY": "key-123456"}))
    stock = {"apples": 3}

    @fw.function("inventory.reserve")
    def reserve(ctx: Any, item: str, qty: int = 1) -> dict[str, Any]:
        if stock.get(item, 0) < qty:
            raise NonRetryable(f"only {stock.get(item, 0)} {item} left", type="OutOfStock")
        stock[item] -= qty
        return {"item": item, "qty": qty, "hold": f"hold-{ctx.attempt}"}

    @fw.function("billing.charge")
    def charge(ctx: Any, amount: int) -> str:
        if ctx.attempt < 3:
            raise ConnectionError("the payment gateway timed out")
        return f"charged {amount} on attempt {ctx.attempt}"

    @fw.function("shipping.label")
    def label(ctx: Any, order: str, api_key: str) -> str:
        return f"label for {order} (key of {len(api_key)} characters)"

    return fw


class _Service(BaseHTTPRequestHandler):
    """GET /hello -> {"hello": "world"}; POST /orders -> 201 the order back with an id;
    /missing -> 404; /flaky -> 503 twice, then 200."""

    flaky = 0

    def _reply(self, status: int, body: Any) -> None:
        out = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def do_GET(self) -> None:
        if self.path == "/hello":
            self._reply(200, {"hello": "world"})
        elif self.path == "/flaky":
            _Service.flaky += 1
            self._reply(503 if _Service.flaky % 3 else 200, {"try": _Service.flaky})
        else:
            self._reply(404, {"error": "no such thing"})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)) or b"null")
        authorized = self.headers.get("authorization") == "Bearer key-123456"
        self._reply(201, {"id": "ord-1", "order": body, "authorized": authorized})

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def service() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Service)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


class _Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> float:
        return self.t


def _describe(events: list[Any]) -> list[str]:
    return [f"{e.type}({e.data['kind']})" if e.type == "effect_requested" else e.type for e in events[1:]]


def run_example(tmp_path: Path, ex: Example, url: str) -> tuple[Any, str, list[str]]:
    """Run the example to its end; (its row, its output, its events described)."""
    for name, body in FILES.items():
        (tmp_path / name).write_text(body)
    (tmp_path / "example.flow").write_text(ex.source)
    store = open_store(f"sqlite:///{tmp_path / 'docs.db'}")
    clock = _Clock()
    rt = Runtime(store, clock=clock, rng=random.Random(0), public_url="https://flow.example.com")
    args = json.loads(json.dumps(ex.args).replace("$URL", url))
    pid = rt.start(str(tmp_path / "example.flow"), args, program_id="example")
    worker = Worker(rt, lease=3600.0, notify=False)
    fw, http = _functions(store), HttpConnector(store, secrets=SecretSource(
        environ={"FLOWMETAL_SECRET_SHIPPING_KEY": "key-123456"}))
    pending = sorted(ex.inputs, key=lambda x: x[0])
    try:
        for _ in range(5000):
            while pending and T0 + pending[0][0] <= clock.t:
                _, what, spec = pending.pop(0)
                _apply(store, pid, what, spec, clock.t)
            row = store.get_program(pid)
            if row.status in FINISHED:
                break
            if worker.step():
                assert worker.stats.errors == [], worker.stats.errors[-1]
                continue
            served = sorted(fw.functions)  # (a call to any other name waits: nobody serves it)
            claims = [(c, fw) for c in store.claim_calls("docs", "function", served, 60.0, clock.t, 10)]
            claims += [(c, http) for c in store.claim_calls("docs", "http", None, 60.0, clock.t, 10)]
            for claim, performer in claims:
                store.finish_call(claim.key, "docs", claim.attempt, performer.perform(claim), clock.t)
            if claims:
                continue
            due = [c.next_at for c in store.list_calls(pid) if c.status == "pending" and c.next_at is not None
                   and (c.kind == "http" or c.name in served)]
            times = [t for t in (store.next_wake(), min(due, default=None), T0 + pending[0][0] if pending else None)
                     if t is not None]
            assert times, f"{ex}: the program waits for something no input of the example brings"
            clock.t = max(clock.t, min(times))
        else:
            raise AssertionError(f"{ex}: did not finish")
        events = store.events(pid)
        output = "".join(e.data["text"] for e in events if e.type == "output")
        _replays(store, pid)
        return store.get_program(pid), output, _describe(events)
    finally:
        store.close()


def _apply(store: Store, pid: str, what: str, spec: dict[str, Any], now: float) -> None:
    if what == "Send":
        store.send(pid, spec.get("channel", "inbox"), spec["message"], now)
    elif what == "Cancel":
        store.request_cancel(pid, now)
    else:  # Deliver: to the program's (only) open callback
        (token,) = [c["token"] for c in store.export_program(pid).callbacks if c["status"] == "open"]
        body = json.dumps(spec["json"])
        status = store.deliver_callback(token, {"method": "POST", "headers": {"content-type": "application/json"},
                                                "body": body, "content_type": "application/json"}, now)
        assert status == "accepted", status


def _replays(store: Store, pid: str) -> None:
    """The whole log, replayed without a checkpoint, reproduces the run."""
    store.db.execute("DELETE FROM checkpoints WHERE program_id = ?", (pid,))  # type: ignore[attr-defined]
    row = store.get_program(pid)
    if row.run == 1:
        Runtime(store).load(row, row.last_seq)


# -- tests ------------------------------------------------------------------------------------------
def test_every_action_and_exception_is_documented() -> None:
    text = _doc()
    headings = re.findall(r"^#+ .*$", text, re.M)
    for name in sorted(FLOWMETAL_MEMBERS):
        assert any(f"`{name}" in h for h in headings), f"no section for flowmetal.{name}"
    for name in sorted(HTTP_MEMBERS - {"HttpError", "Response", "request"}):
        assert f"`http.{name}(" in text, f"http.{name} is not mentioned"
    for kind in KINDS.values():
        if kind.name.startswith("flowmetal."):
            for attr in kind.attributes - {"args", "__cause__", "__context__", "add_note", "with_traceback"}:
                assert f".{attr}" in text, f"{kind.name}.{attr} is not documented"
    assert len([e for e in EXAMPLES if e.output is not None or e.result is not None or e.error]) >= 20


def test_language_md_points_here() -> None:
    language = (DOC_PATH.parent / "language.md").read_text(encoding="utf-8")
    assert "(actions.md)" in language


@pytest.mark.parametrize("example", EXAMPLES, ids=str)
def test_example(example: Example, tmp_path: Path, service: str) -> None:
    row, output, events = run_example(tmp_path, example, service)
    if example.output is not None:
        assert output == "".join(line + "\n" for line in example.output), f"{example}: output"
    if example.error is not None:
        assert row.status in ("failed", "cancelled") and row.error == example.error, (example, row.error)
    else:
        assert row.status == "completed", (str(example), row.error)
    if example.result is not None:
        assert repr(row.result) == example.result, f"{example}: result"
    if example.events is not None:
        assert events == example.events, f"{example}: events"
