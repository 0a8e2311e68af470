"""The console in a real headless Chromium against a real `flowmetal serve --token`:
log in, see a waiting program in the list (and a new one appear without a reload),
open it, read its timeline, go back to an earlier event and see a local variable's
earlier value, diff two events, and send, fork and cancel from the page. A program
that prints `<script>` injects nothing. Screenshots land in the test's directory, or
in FLOWMETAL_SCREENSHOTS (how docs/console-*.png are made)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from browser import browser
from cli_checks import kill_all, wait_for
from flowmetal.store import open_store

TOKEN = "console-token"
DEMO = '''from flowmetal import receive, sleep, callback

def main(customer="ada", items=3):
    step = "checking stock"
    print("<script>window.injected = 1</script><img src=x onerror='window.injected = 2'>")
    total = 0
    for i in range(items):
        total = total + 10 * (i + 1)
    sleep(0.01)
    step = "waiting for approval"
    cb = callback()
    print("approve at", cb.url)
    decision = receive()
    step = "approved by " + decision["by"]
    extra = receive(channel="notes")
    return {"customer": customer, "total": total, "decision": decision, "notes": extra}
'''


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("console")
    (tmp / "order.flow").write_text(DEMO)
    store = f"sqlite:///{tmp / 'console.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOWMETAL_", "OTEL_"))}
    proc = subprocess.Popen([sys.executable, "-m", "flowmetal", "serve", "--store", store, "--port", "0",
                             "--token", TOKEN], cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().split()[3]
        api = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
        wait_for(lambda: _up(api))
        db = open_store(store)
        yield {"url": url, "api": api, "store": db, "tmp": tmp}
        db.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=30)
        finally:
            kill_all([proc])
    assert "Traceback" not in err, err


def _up(api: httpx.Client) -> bool:
    try:
        return api.get("/health").status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    yield from browser(tmp_path_factory.mktemp("chromium-profile"))


def _start(node: dict[str, Any], program_id: str, **args: Any) -> None:
    r = node["api"].post("/programs", json={"path": "order.flow", "id": program_id, "args": args})
    assert r.status_code == 201, r.text


def _waiting_on_receive(node: dict[str, Any], program_id: str, events: int | None = None) -> bool:
    row = node["store"].get_program(program_id)
    waits = (row.waiting_on or {}).get("waits") or []
    return row.status == "waiting" and [w["kind"] for w in waits] == ["receive"] and (
        events is None or row.last_seq >= events)


def _until(web: Any, predicate: Any, timeout: float = 20.0) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(web, timeout, poll_frequency=0.1).until(lambda d: predicate(d))


def _shot(web: Any, name: str, tmp: Path) -> None:
    target = Path(os.environ.get("FLOWMETAL_SCREENSHOTS") or tmp)
    target.mkdir(parents=True, exist_ok=True)
    web.save_screenshot(str(target / name))


def _var(web: Any, task: int, name: str) -> str:
    from selenium.webdriver.common.by import By

    cell = web.find_element(By.CSS_SELECTOR, f'.task[data-task="{task}"] tr[data-var="{name}"] td')
    return str(cell.text)


def test_console_time_travel_and_actions(node: dict[str, Any], web: Any) -> None:
    from selenium.webdriver.common.by import By

    _start(node, "order-1", customer="ada", items=3)
    wait_for(lambda: _waiting_on_receive(node, "order-1"))
    base = node["url"]

    # the console wants the token: the login form sets it as a cookie, then the list shows the program
    web.get(f"{base}/ui/")
    _until(web, lambda d: "/ui/login" in d.current_url)
    web.find_element(By.ID, "token").send_keys("wrong")
    web.find_element(By.ID, "login").click()
    error = _until(web, lambda d: d.find_elements(By.ID, "login-error"))
    assert "not this server's token" in error[0].text
    web.find_element(By.ID, "token").send_keys(TOKEN)
    web.find_element(By.ID, "login").click()
    _until(web, lambda d: d.current_url.rstrip("/").endswith("/ui"))
    row = web.find_element(By.CSS_SELECTOR, 'tr[data-id="order-1"]')
    assert "waiting" in row.text and "order.flow" in row.text and 'receive on "inbox"' in row.text
    assert "waiting 1" in web.find_element(By.ID, "counts").text
    # live updates: a program started now shows up without a reload
    _start(node, "order-2", customer="bob", items=1)
    _until(web, lambda d: d.find_elements(By.CSS_SELECTOR, 'tr[data-id="order-2"]'))
    _until(web, lambda d: "waiting 2" in d.find_element(By.ID, "counts").text)
    _shot(web, "console-programs.png", node["tmp"])

    # the program's page: its timeline, and the state at its latest event
    web.find_element(By.LINK_TEXT, "order-1").click()
    _until(web, lambda d: d.find_elements(By.ID, "timeline"))
    events = node["store"].events("order-1")
    rows = web.find_elements(By.CSS_SELECTOR, "#timeline tbody tr")
    assert [int(r.get_attribute("data-seq")) for r in rows] == [e.seq for e in events]
    summaries = [r.find_element(By.CSS_SELECTOR, "td.summary").text for r in rows]
    assert summaries[0] == 'started order.flow with {"customer": "ada", "items": 3}'
    assert "sleep(0.01) ended" in summaries and "receive()" in summaries
    assert any(s.startswith("callback URL issued: ") for s in summaries)
    assert _var(web, 1, "step") == "'waiting for approval'"
    assert _var(web, 1, "total") == "60"
    assert "current" in web.find_element(By.ID, "L13").get_attribute("class")  # decision = receive()
    # nothing the program printed became markup
    assert web.execute_script("return window.injected") is None
    assert "<script>window.injected = 1</script>" in summaries[1]
    web.set_window_size(1400, 1700)
    _shot(web, "console-program.png", node["tmp"])
    web.set_window_size(1400, 1000)

    # back in time: at the sleep's request, `step` still had its first value; then step forward
    sleep_seq = next(e.seq for e in events if e.type == "effect_requested" and e.data["kind"] == "sleep")
    web.find_element(By.CSS_SELECTOR, f'#e{sleep_seq} td.num a').click()
    _until(web, lambda d: f"State at event {sleep_seq}" in d.find_element(By.CSS_SELECTOR, "#state h2").text)
    assert _var(web, 1, "step") == "'checking stock'"
    assert "selected" in web.find_element(By.ID, f"e{sleep_seq}").get_attribute("class")
    web.find_element(By.ID, "step-forward").click()
    _until(web, lambda d: f"event {sleep_seq + 1} of" in d.find_element(By.CSS_SELECTOR, ".stepper").text)
    web.find_element(By.ID, "step-back").click()
    _until(web, lambda d: f"event {sleep_seq} of" in d.find_element(By.CSS_SELECTOR, ".stepper").text)
    # what changed from here to the latest event
    last = events[-1].seq
    web.get(f"{base}/ui/programs/order-1?at={last}&against={sleep_seq}")
    diff = {r.find_elements(By.TAG_NAME, "td")[0].text: [c.text for c in r.find_elements(By.TAG_NAME, "td")[1:]]
            for r in web.find_elements(By.CSS_SELECTOR, "#diff tbody tr")}
    assert diff["task 1 › main › step"] == ["'checking stock'", "'waiting for approval'"]
    assert diff["task 1 › main › cb"][0] == "—"  # not assigned yet at the earlier event

    # fork at the earlier event, with a message for its receive()
    web.get(f"{base}/ui/programs/order-1?at={sleep_seq}")
    web.find_element(By.ID, "fork-message").send_keys('{"by": "the fork"}')
    web.find_element(By.ID, "fork").click()
    _until(web, lambda d: "/ui/programs/order-1-fork-" in d.current_url)
    assert f"forked from order-1 at event {sleep_seq}" in web.find_element(By.ID, "notice").text
    fork_id = web.current_url.split("/ui/programs/")[1].split("?")[0]
    wait_for(lambda: _waiting_on_receive(node, fork_id) and any(
        e.type == "message_received" for e in node["store"].events(fork_id)))
    assert node["store"].get_program(fork_id).status == "waiting"

    # send the original its decision from the page; the page follows the program
    web.get(f"{base}/ui/programs/order-1")
    box = web.find_element(By.ID, "send-message")
    box.clear()
    box.send_keys('{"by": "grace"}')
    web.find_element(By.ID, "send").click()
    _until(web, lambda d: "message sent on inbox" in d.find_element(By.ID, "notice").text)
    wait_for(lambda: _waiting_on_receive(node, "order-1", last + 2))
    web.get(f"{base}/ui/programs/order-1")
    assert _var(web, 1, "step") == "'approved by grace'"

    # cancel it from the page (after confirming)
    web.find_element(By.ID, "cancel").click()
    _until(web, lambda d: d.switch_to.alert).accept()
    _until(web, lambda d: "cancellation requested" in d.find_element(By.ID, "notice").text)
    wait_for(lambda: node["store"].get_program("order-1").status == "cancelled")
    web.get(f"{base}/ui/programs/order-1")
    assert web.find_element(By.ID, "status").text == "cancelled"
    assert not web.find_elements(By.ID, "send")  # no actions for a finished program
    started = time.monotonic()
    assert web.execute_script("return window.injected") is None and time.monotonic() - started < 5
