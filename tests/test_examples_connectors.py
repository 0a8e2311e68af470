"""The connector examples run for real: examples/services.py (a fake payment provider,
warehouse, batch service and notification service) on a loopback port, and one
`flowmetal serve` process (API, callbacks, interpreter, HTTP connector and the
foreign functions of examples/example_functions.py) on another, with a SQLite store.
Programs are started with `flowmetal start` and awaited with `flowmetal result --wait`;
people answer approvals with real HTTP POSTs to their callback URLs. No mocks: every
assertion is on what the programs returned and what the outside world recorded."""

from __future__ import annotations

import importlib.util
import itertools
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).parent.parent
EXAMPLES = ROOT / "examples"
APPROVED, DECLINED, EXPIRED, SILENT = "4242424242424242", "4000000000000002", "4000000000000069", "4000000000000341"
PAYMENTS_API_KEY = "sk_test_flowmetal_example"  # the default of examples/services.py


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _eventually(what: str, probe: Callable[[], Any], timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


class Process:
    """A server subprocess on a loopback port; `.http` is a client for it."""

    def __init__(self, cmd: list[str], port: int, cwd: Path, env: dict[str, str], health: str) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.http = httpx.Client(base_url=self.url, timeout=30)

        def up() -> bool:
            assert self.proc.poll() is None, self.proc.communicate()
            try:
                return self.http.get(health).status_code == 200
            except httpx.TransportError:
                return False

        _eventually(f"{cmd[1:3]} to listen on {self.url}", up)

    def stop(self) -> str:
        self.http.close()
        self.proc.send_signal(signal.SIGTERM)
        try:
            _, stderr = self.proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        assert self.proc.returncode == 0, stderr
        assert "Traceback" not in stderr, stderr
        return stderr


class Flowmetal(Process):
    """`flowmetal serve` with the examples' functions, and the CLI on the same store."""

    def __init__(self, directory: Path, services: Process) -> None:
        self.store = f"sqlite:///{directory / 'examples.db'}"
        port = _free_port()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWMETAL_")}
        self.env.update(FLOWMETAL_STORE=self.store, FLOWMETAL_EXAMPLE_SERVICES=services.url,
                        FLOWMETAL_SECRET_PAYMENTS_API_KEY=PAYMENTS_API_KEY)
        super().__init__([sys.executable, "-m", "flowmetal", "serve", "--port", str(port), "--public-url",
                          f"http://127.0.0.1:{port}", "--functions", str(EXAMPLES / "example_functions.py"),
                          "--programs", str(EXAMPLES)],
                         port, directory, self.env, "/health")
        self.directory = directory

    def cli(self, *args: str) -> str:
        r = subprocess.run([sys.executable, "-m", "flowmetal", *args], cwd=self.directory, env=self.env,
                           capture_output=True, text=True, timeout=90)
        assert r.returncode == 0, r.stderr
        return r.stdout

    def start(self, example: str, **args: Any) -> str:
        """Start an example through the API (POST /programs); its id."""
        r = self.http.post("/programs", json={"path": example, "args": args})
        assert r.status_code == 201, r.text
        program_id: str = r.json()["id"]
        return program_id

    def start_cli(self, example: str, **args: Any) -> str:
        """Start an example with `flowmetal start FILE --args JSON`; its id."""
        return self.cli("start", str(EXAMPLES / example), "--args", json.dumps(args)).strip()

    def result(self, program_id: str) -> Any:
        return json.loads(self.cli("result", program_id, "--wait", "--timeout", "60"))

    def history(self, program_id: str) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = self.http.get(f"/programs/{program_id}/history").json()["events"]
        return events

    def output(self, program_id: str) -> str:
        return "".join(e["text"] for e in self.history(program_id) if e["type"] == "output")


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    port = _free_port()
    proc = Process([sys.executable, str(EXAMPLES / "services.py"), "--port", str(port), "--webhook-delay", "0.3"],
                   port, tmp_path_factory.mktemp("services"), dict(os.environ), "/health")
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def fm(tmp_path_factory: pytest.TempPathFactory, services: Process) -> Iterator[Flowmetal]:
    server = Flowmetal(tmp_path_factory.mktemp("flowmetal"), services)
    yield server
    server.stop()


def _charges(services: Process, order: str) -> list[dict[str, Any]]:
    return [c for c in services.http.get("/charges").json()["charges"] if c["reference"] == order]


def _holds(services: Process, order: str) -> list[dict[str, Any]]:
    return [h for h in services.http.get("/inventory").json()["holds"] if h["order"] == order]


def _requests(services: Process, path: str, method: str | None = None) -> list[dict[str, Any]]:
    return [r for r in services.http.get("/log").json()["requests"]
            if r["path"] == path and (method is None or r["method"] == method)]


# -- payment_saga.flow ----------------------------------------------------------------------
def test_saga_charges_once_and_ships(fm: Flowmetal, services: Process) -> None:
    pid = fm.start_cli("payment_saga.flow", order_id="OK-1", sku="WIDGET", qty=2, amount=1999, card=APPROVED,
                       provider=services.url)
    result = fm.result(pid)
    assert result["status"] == "shipped", result
    [charge] = _charges(services, "OK-1")  # charged exactly once
    assert (charge["charge_id"], charge["amount"], charge["status"]) == (result["charge"], 1999, "approved")
    assert charge["webhook_deliveries"] == [202]  # the webhook reached the program's callback URL
    assert charge["webhook"].startswith(f"{fm.url}/callbacks/")
    [hold] = _holds(services, "OK-1")
    assert (hold["status"], hold["qty"], hold["tracking"]) == ("shipped", 2, result["tracking"])

    # the provider saw one charge request; repeating it with the program's idempotency key
    # (as a retry would) gets the same charge and charges nothing more
    [request] = [r for r in _requests(services, "/charges", "POST") if r["idempotency_key"].startswith(f"{pid}:")]
    again = services.http.post("/charges", headers={"Idempotency-Key": request["idempotency_key"],
                                                    "Authorization": f"Bearer {PAYMENTS_API_KEY}"},
                               json={"amount": 1999, "card": APPROVED, "webhook": charge["webhook"]})
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["charge_id"] == charge["charge_id"]
    assert len(_charges(services, "OK-1")) == 1
    # the API key went to the provider (it charged), but nowhere into the program's records
    records = json.dumps(fm.history(pid)) + fm.cli("export", pid) + json.dumps(fm.http.get(f"/programs/{pid}/calls").json())
    assert PAYMENTS_API_KEY not in records and "<secret PAYMENTS_API_KEY>" in records


@pytest.mark.parametrize(("order", "card", "timeout", "status", "detail", "charge_status"), [
    ("NO-1", DECLINED, 30, "declined", "card_declined", "declined"),
    ("NO-2", SILENT, 1, "payment timed out", "no webhook for", "voided"),  # the webhook never comes
    ("NO-3", EXPIRED, 30, "payment failed", "returned HTTP 402", None),  # refused at once: nothing charged
])
def test_saga_compensates(fm: Flowmetal, services: Process, order: str, card: str, timeout: float, status: str,
                          detail: str, charge_status: str | None) -> None:
    stock_before = services.http.get("/inventory").json()["stock"]["GADGET"]
    pid = fm.start("payment_saga.flow", order_id=order, sku="GADGET", qty=3, amount=500, card=card,
                   payment_timeout=timeout, provider=services.url)
    result = fm.result(pid)
    assert (result["order"], result["status"]) == (order, status), result
    assert detail in result["detail"]
    [hold] = _holds(services, order)
    assert hold["status"] == "released"  # the stock came back
    assert services.http.get("/inventory").json()["stock"]["GADGET"] == stock_before
    assert [c["status"] for c in _charges(services, order)] == ([charge_status] if charge_status else [])
    refunds = [r for c in _charges(services, order) for r in _requests(services, f"/charges/{c['charge_id']}/refund")]
    assert len(refunds) == (1 if charge_status == "voided" else 0)  # only a live charge is voided
    assert "undo: release the stock" in fm.output(pid)


def test_saga_out_of_stock_fails_at_once(fm: Flowmetal, services: Process) -> None:
    pid = fm.start("payment_saga.flow", order_id="NO-4", sku="UNOBTAINIUM", qty=1, amount=5, provider=services.url)
    assert fm.result(pid) == {"order": "NO-4", "status": "out of stock", "detail": "only 0 of UNOBTAINIUM left"}
    assert _holds(services, "NO-4") == [] and _charges(services, "NO-4") == []
    [call] = [c for c in fm.http.get(f"/programs/{pid}/calls").json()["calls"] if c["name"] == "inventory.reserve"]
    assert (call["outcome"]["ok"], call["attempts"]) == (False, 1)  # NonRetryable: no retries


# -- batch_job.flow -------------------------------------------------------------------------
def test_batch_job_polls_with_growing_delays(fm: Flowmetal, services: Process) -> None:
    # 1800 rows at 1000 rows/s: done 1.8 s after submission
    pid = fm.start("batch_job.flow", dataset="sales-2024", rows=1800, first_delay=0.1, max_delay=0.8,
                   service=services.url)
    result = fm.result(pid)
    assert result["status"] == "done", result
    job = result["job"]
    assert result["output"] == {"dataset": "sales-2024", "rows": 1800, "report": f"/jobs/{job}/report.csv",
                                "checksum": 1800 * 7 % 1009}
    sleeps = [e["args"][0] for e in fm.history(pid) if e["type"] == "effect_requested" and e["kind"] == "sleep"]
    assert sleeps == [0.1, 0.2, 0.4, 0.8, 0.8]  # doubling, capped at max_delay
    assert result["polls"] == 5
    polls = [r["at"] for r in _requests(services, f"/jobs/{job}", "GET")]
    assert len(polls) == 5
    gaps = [b - a for a, b in itertools.pairwise(polls)]
    assert all(gap >= delay - 0.01 for gap, delay in zip(gaps, sleeps[1:])), gaps  # never early
    assert gaps[0] < gaps[1] < gaps[2], gaps  # and really further apart each time


def test_batch_job_deadline_cancels_the_job(fm: Flowmetal, services: Process) -> None:
    pid = fm.start("batch_job.flow", dataset="everything", rows=10**7, first_delay=0.1, deadline=1,
                   service=services.url)
    result = fm.result(pid)
    assert result["status"] == "timed out" and result["polls"] >= 2, result
    assert services.http.get(f"/jobs/{result['job']}").json()["state"] == "cancelled"


# -- approval.flow --------------------------------------------------------------------------
def _link(services: Process, to: str) -> str:
    def find() -> str | None:
        messages = services.http.get("/notify", params={"to": to}).json()["messages"]
        return messages[-1]["link"] if messages else None

    link: str = _eventually(f"a message to {to}", find)
    return link


def _people(tag: str) -> dict[str, str]:
    return {"requester": f"dev-{tag}@example.com", "approver": f"lead-{tag}@example.com",
            "manager": f"boss-{tag}@example.com"}


def test_approval_granted_in_time(fm: Flowmetal, services: Process) -> None:
    people = _people("a")
    pid = fm.start("approval.flow", title="new laptop", amount=1800, approval_timeout=30, escalation_timeout=30,
                   notify=services.url, **people)
    # the link is in the program's output (its history), and in the message the approver got
    asked = re.compile(rf"asked {re.escape(people['approver'])}: answer at (\S+)")
    link = _eventually("the approver's link", lambda: (m := asked.search(fm.output(pid))) and m[1])
    assert link.startswith(f"{fm.url}/callbacks/")
    assert _link(services, people["approver"]) == link
    # the approver opens the link: the question and one button per answer
    page = httpx.get(link)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert f"{people['requester']} asks for new laptop (1800): approve?" in page.text
    assert 'name="choice" value="approve"' in page.text and 'name="choice" value="reject"' in page.text
    # an answer that chooses neither is refused, and spends nothing
    r = httpx.post(link, json={"approved": True})
    assert r.status_code == 422 and r.json()["error"]["type"] == "BadChoice", r.text
    assert httpx.post(link, content=b"{not json", headers={"content-type": "application/json"}).status_code == 422
    # one click (the page's form): approve, with a comment
    r = httpx.post(link, data={"_flowmetal_page": "1", "comment": "go ahead", "choice": "approve"})
    assert r.status_code == 202 and "your answer was delivered" in r.text, r.text
    result = fm.result(pid)
    assert {k: result[k] for k in ("outcome", "escalated", "decided_by", "comment")} == {
        "outcome": "approved", "escalated": False, "decided_by": people["approver"], "comment": "go ahead"}
    assert result["waited_seconds"] < 30
    # single use; and the program has ended: gone
    assert httpx.post(link, json={"choice": "reject"}).status_code == 410
    assert httpx.get(link).status_code == 410
    [told] = services.http.get("/notify", params={"to": people["requester"]}).json()["messages"]
    assert told["subject"] == "new laptop: approved" and told["decision"] == result
    assert services.http.get("/notify", params={"to": people["manager"]}).json()["messages"] == []


def test_approval_escalates_to_the_manager_after_the_timeout(fm: Flowmetal, services: Process) -> None:
    people = _people("b")
    pid = fm.start("approval.flow", title="conference trip", amount=2400, approval_timeout=1,
                   escalation_timeout=30, notify=services.url, **people)
    first = _link(services, people["approver"])
    second = _link(services, people["manager"])  # comes only after approval_timeout
    [message] = services.http.get("/notify", params={"to": people["manager"]}).json()["messages"]
    assert f"escalated: {people['approver']} did not answer in 1 seconds" in message["subject"]
    assert httpx.post(second, json={"choice": "reject", "comment": "over budget"}).status_code == 202
    result = fm.result(pid)
    assert {k: result[k] for k in ("outcome", "escalated", "decided_by", "comment")} == {
        "outcome": "rejected", "escalated": True, "decided_by": people["manager"], "comment": "over budget"}
    assert result["waited_seconds"] >= 1
    assert f"{people['approver']} did not answer within 1 seconds" in fm.output(pid)
    assert httpx.post(first, json={"choice": "approve"}).status_code == 410  # gone: the program ended
    gone = httpx.get(first)
    assert gone.status_code == 410 and "the program that made it has ended" in gone.text


def test_approval_after_escalation_the_first_answer_decides(fm: Flowmetal, services: Process) -> None:
    people = _people("c")
    pid = fm.start("approval.flow", title="new hire", amount=90000, approval_timeout=0.5, escalation_timeout=30,
                   notify=services.url, **people)
    first = _link(services, people["approver"])
    _link(services, people["manager"])
    # the approver answers late, on their original link, before the manager does
    assert httpx.post(first, json={"choice": "approve"}).status_code == 202
    result = fm.result(pid)
    assert (result["outcome"], result["escalated"], result["decided_by"]) == ("approved", True, people["approver"])


def test_approval_expires_when_nobody_answers(fm: Flowmetal, services: Process) -> None:
    people = _people("d")
    pid = fm.start("approval.flow", title="parking spot", amount=50, approval_timeout=0.3, escalation_timeout=0.3,
                   notify=services.url, **people)
    result = fm.result(pid)
    assert (result["outcome"], result["escalated"], result["decided_by"]) == ("expired", True, None)
    [told] = services.http.get("/notify", params={"to": people["requester"]}).json()["messages"]
    assert told["subject"] == "parking spot: expired"


# -- fanout.flow ----------------------------------------------------------------------------
def _places() -> dict[str, tuple[float, float]]:
    spec = importlib.util.spec_from_file_location("example_functions", EXAMPLES / "example_functions.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    places: dict[str, tuple[float, float]] = module.PLACES
    return places


def _km(a: tuple[float, float], b: tuple[float, float]) -> float:
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * 6371 * math.asin(math.sqrt(h))


def test_fanout_aggregates_and_reports_the_failed_chunk(fm: Flowmetal) -> None:
    places = ["Paris", "Berlin", "Oslo", "Rome", "Atlantis", "Madrid", "Vienna", "Lisbon", "Prague", "Dublin"]
    pid = fm.start("fanout.flow", places=places, chunk_size=3, attempts=3, retry_delay=0.2)
    result = fm.result(pid)

    table, depot = _places(), (52.37, 4.90)
    located = [p for p in places if p not in ("Rome", "Atlantis", "Madrid")]  # chunk 2 fails for good
    distances = sorted((round(_km(depot, table[p]), 1), p) for p in located)
    assert result["stops"] == [{"place": p, "km": km} for km, p in distances]  # nearest first
    assert result["total_km"] == round(sum(km for km, _ in distances), 1)
    assert result["failed"] == [{"chunk": 2, "places": ["Rome", "Atlantis", "Madrid"], "attempts": 3,
                                 "error": "GeocoderError: no coordinates for Atlantis"}]

    calls = {tuple(c["payload"]["args"][0]): c for c in fm.http.get(f"/programs/{pid}/calls").json()["calls"]}
    assert len(calls) == 4  # one call per chunk, made concurrently
    assert {k: (c["outcome"]["ok"], c["attempts"]) for k, c in calls.items()} == {
        ("Paris", "Berlin", "Oslo"): (True, 2),  # rate-limited once, retried
        ("Rome", "Atlantis", "Madrid"): (False, 3),  # retried per the policy, then reported
        ("Vienna", "Lisbon", "Prague"): (True, 1),
        ("Dublin",): (True, 1),
    }
    output = fm.output(pid)
    assert "10 places in 4 chunks" in output and "located 7 of 10 places; 1 chunk(s) failed" in output
