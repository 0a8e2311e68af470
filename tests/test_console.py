"""The console's pages over HTTP (Starlette's TestClient on the real app, a real SQLite
store, programs run by a real in-process worker): login and its cookie, CSRF, the list's
filters, paging and counts, a program's timeline, state, marks and diffs, the calls
page, children links, escaping of everything a program controls, and clear errors."""

from __future__ import annotations

import re
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

with warnings.catch_warnings():  # (starlette would rather have httpx2; httpx is what the project uses)
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from flowmetal.api import create_app
from flowmetal.connectors.functions import FunctionWorker
from flowmetal.runtime.driver import Runtime
from flowmetal.runtime.worker import Worker
from flowmetal.store import open_store

TOKEN = "t0ken"
HOSTILE = '''from flowmetal import receive

def main(tag="<b>bold</b>"):
    note = "<script>alert('x')</script>"
    print("</td></tr><script>alert(1)</script>")
    got = receive(channel="<img src=x onerror=alert(2)>")
    return got
'''
FAILING = '''from flowmetal import call, Retry

def main():
    print("about to fail")
    return call("charge", 5, retry=Retry(attempts=1))
'''
PARENT = '''from flowmetal import start, wait

def main():
    child = start("child.flow", n=2)
    return wait(child)
'''
CHILD = '''def main(n=1):
    return n + 1
'''
LONG = '''from flowmetal import now, receive, sleep, spawn, wait

def busy(n):
    for i in range(n):
        now()
        if i % 100 == 0:
            sleep(0)
    return n

def main(n=700):
    worker = spawn(busy, n)
    got = receive()
    wait(worker)
    return got
'''
COUNTER = '''from flowmetal import receive

def main():
    count = 0
    while count < 3:
        got = receive()
        count = count + got
    return count
'''


class Node:
    def __init__(self, tmp: Path) -> None:
        for name, text in (("hostile.flow", HOSTILE), ("failing.flow", FAILING), ("parent.flow", PARENT),
                           ("child.flow", CHILD), ("counter.flow", COUNTER),
                           ("long.flow", LONG)):
            (tmp / name).write_text(text)
        self.tmp = tmp
        self.store = open_store(f"sqlite:///{tmp / 'console.db'}")
        self.rt = Runtime(self.store)
        fw = FunctionWorker(self.store)

        @fw.function("charge")
        def charge(ctx: Any, amount: int) -> None:
            raise ValueError("card <declined>")

        self.functions = fw

    def start(self, name: str, program_id: str, **args: Any) -> str:
        return self.rt.start(str(self.tmp / name), args, program_id=program_id)

    def run(self) -> None:
        """Run every runnable program until nothing is left to do right now (a failed call's
        outcome is recorded by the worker as it stops, and makes its program runnable again)."""
        for _ in range(20):
            Worker(self.rt, functions=self.functions, notify=False).run(idle_exit=True)
            if not any(r.runnable for r in self.store.list_programs() if r.status in ("running", "waiting")):
                return
        raise AssertionError("programs still runnable after 20 rounds")


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    n = Node(tmp_path)
    yield n
    n.store.close()


def _client(node: Node, token: str | None = TOKEN) -> TestClient:
    return TestClient(create_app(node.store, Runtime(node.store), token=token), follow_redirects=False)


def _login(client: TestClient) -> None:
    r = client.post("/ui/login", data={"token": TOKEN, "next": "/ui/"})
    assert r.status_code == 303 and r.headers["location"] == "/ui/"


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert match
    return match.group(1)


def test_login_sets_a_strict_cookie_that_opens_the_console_only(node: Node) -> None:
    with _client(node) as client:
        r = client.get("/ui/calls?status=failed")
        assert r.status_code == 303 and r.headers["location"] == "/ui/login?next=%2Fui%2Fcalls%3Fstatus%3Dfailed"
        assert client.post("/ui/programs/x/cancel").status_code == 401
        assert client.get("/ui/login").status_code == 200
        assert client.get("/").headers["location"] == "/ui/"
        bad = client.post("/ui/login", data={"token": "nope", "next": "/ui/"})
        assert bad.status_code == 401 and "not this server&#39;s token" in bad.text
        # `next` never leaves the console
        off = client.post("/ui/login", data={"token": TOKEN, "next": "https://evil.example/"})
        assert off.headers["location"] == "/ui/"
        cookie = off.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/ui" in cookie
        assert client.get("/ui/").status_code == 200
        assert client.get("/programs").status_code == 401  # the cookie is not an API credential
        assert client.get("/programs", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        out = client.post("/ui/logout", data={"csrf": _csrf(client.get("/ui/").text)})
        assert out.status_code == 303
        assert client.get("/ui/").status_code == 303
    with _client(node, token=None) as open_client:  # no --token: open, like the API
        assert open_client.get("/ui/").status_code == 200


def test_program_text_is_escaped_everywhere(node: Node) -> None:
    node.start("hostile.flow", "h<1>", tag="<i>x</i>")
    node.run()
    with _client(node, token=None) as client:
        pages = [client.get("/ui/"), client.get("/ui/programs/h%3C1%3E"), client.get("/ui/programs/h%3C1%3E?at=2"),
                 client.get("/ui/programs/h%3C1%3E?at=4&against=2"), client.get("/ui/?q=%3Cscript%3E")]
        for page in pages:
            assert page.status_code == 200
            body = page.text
            assert "<script>alert" not in body and "<img src=x" not in body and "<b>bold" not in body
            assert "<i>x</i>" not in body and "h<1>" not in body
        program = pages[1].text
        assert "&lt;/td&gt;&lt;/tr&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in program  # shown, as text
        assert "&#39;&lt;script&gt;alert(\\&#39;x\\&#39;)&lt;/script&gt;&#39;" in program or \
               "&lt;script&gt;alert(" in program
        assert len(re.findall(r"<script", program)) == 1  # only the console's own script tag


def test_list_filters_pages_and_counts(node: Node) -> None:
    for i in range(55):
        node.start("child.flow", f"c-{i:02d}", n=i)
    node.start("counter.flow", "counter-1")
    node.start("failing.flow", "pay-1")
    node.run()
    with _client(node, token=None) as client:
        page = client.get("/ui/").text
        assert re.search(r"completed <b>55</b>", page) and re.search(r"waiting <b>1</b>", page)
        assert re.search(r"failed <b>1</b>", page) and re.search(r"all <b>57</b>", page)
        ids = re.findall(r'data-id="([^"]+)"', page)
        assert len(ids) == 50 and ids[:2] == ["pay-1", "counter-1"]  # newest first
        older = re.search(r'id="next-page" href="([^"]+)"', page)
        assert older
        rest = re.findall(r'data-id="([^"]+)"', client.get(older.group(1).replace("&amp;", "&")).text)
        assert len(rest) == 7 and not set(rest) & set(ids)
        waiting = client.get("/ui/?status=waiting").text
        assert re.findall(r'data-id="([^"]+)"', waiting) == ["counter-1"]
        assert "receive on &#34;inbox&#34;" in waiting
        assert re.findall(r'data-id="([^"]+)"', client.get("/ui/?q=pay").text) == ["pay-1"]
        assert len(re.findall(r'data-id="', client.get("/ui/?q=child.flow").text)) == 50
        part = client.get("/ui/programs.part?status=failed").json()
        assert 'data-id="pay-1"' in part["rows"] and "failed <b>1</b>" in part["counts"]
        assert "No programs match" in client.get("/ui/?q=nothing-like-this").text


def test_program_page_timeline_state_marks_and_diff(node: Node) -> None:
    node.start("counter.flow", "counter-1")
    node.run()
    for n in (1, 1):
        node.store.send("counter-1", "inbox", n, time.time())
        node.run()
    with _client(node, token=None) as client:
        last = node.store.get_program("counter-1").last_seq
        page = client.get("/ui/programs/counter-1").text
        assert page.count('<tr id="e') == last
        assert f"State at event {last} (the latest)" in page
        assert re.search(r'data-var="count"><th class="mono">count</th><td class="mono">2</td>', page)
        assert '<li id="L6" class="current"' in page  # got = receive()
        received = [e.seq for e in node.store.events("counter-1") if e.type == "message_received"]
        earlier = client.get(f"/ui/programs/counter-1?at={received[0]}").text
        assert re.search(r'data-var="count"><th class="mono">count</th><td class="mono">0</td>', earlier)
        assert f'id="e{received[0]}" class="ev-message_received selected' in earlier
        diff = client.get(f"/ui/programs/counter-1?at={last}&against={received[0]}").text
        assert re.search(r"task 1 › main › count</td><td class=\"mono\">0</td><td class=\"mono\">2</td>", diff)
        same = client.get(f"/ui/programs/counter-1?at={last}&against={last - 1}").text
        assert "No variable changed." in same or "<table class=\"diff\"" in same
        assert client.get("/ui/programs/counter-1?at=999").status_code == 200  # clamped to the last event
        assert client.get("/ui/programs/counter-1/seq").json() == {"last_seq": last, "status": "waiting"}
        assert re.search(r'id="waits"><div>receive on &#34;inbox&#34;</div>', page)
        node.store.send("counter-1", "inbox ", 1, time.time())  # a mistyped channel
        unread = client.get("/ui/programs/counter-1").text
        assert "1 message on &#34;inbox &#34;, which it is not receiving on" in unread


def test_failing_line_calls_page_and_children(node: Node) -> None:
    node.start("failing.flow", "pay-1")
    node.start("parent.flow", "par")
    node.run()
    node.run()
    with _client(node, token=None) as client:
        page = client.get("/ui/programs/pay-1").text
        assert '<li id="L5" class="failing"' in page
        assert "failed: CallError: ValueError: card &lt;declined&gt;" in page
        # the call with its failed attempt: the function's own traceback, escaped
        call = page.split('<tr data-key="pay-1:3">')[1].split("</tr>")[0]
        assert "attempt 1 at" in call and "ValueError: card &lt;declined&gt;" in call
        assert "in charge" in call and '<pre class="traceback">' in call
        calls = client.get("/ui/calls?status=failed").text
        assert "pay-1:3" in calls and "ValueError: card &lt;declined&gt;" in calls
        parent = client.get("/ui/programs/par").text
        assert '<a class="child" href="/ui/programs/par.1">par.1</a>' in parent
        child = client.get("/ui/programs/par.1").text
        assert 'Parent</dt><dd><a href="/ui/programs/par">par</a>' in child
        missing = client.get("/ui/programs/nope")
        assert missing.status_code == 404 and "no program with id" in missing.text


def test_actions_need_the_csrf_token_and_say_what_went_wrong(node: Node) -> None:
    node.start("counter.flow", "counter-1")
    node.run()
    with _client(node) as client:
        _login(client)
        page = client.get("/ui/programs/counter-1").text
        csrf = _csrf(page)
        forged = client.post("/ui/programs/counter-1/cancel", data={"csrf": "0" * 64})
        assert forged.status_code == 403 and not node.store.get_program("counter-1").cancel_requested
        bad = client.post("/ui/programs/counter-1/send", data={"csrf": csrf, "message": "{nope", "channel": "inbox"})
        assert bad.status_code == 303 and "error=the+message%3A+not+JSON" in bad.headers["location"]
        reserved = client.post("/ui/programs/counter-1/send", data={"csrf": csrf, "message": "1",
                                                                    "channel": "__call__:x"})
        assert "reserved" in reserved.headers["location"]
        ok = client.post("/ui/programs/counter-1/send", data={"csrf": csrf, "message": "2", "channel": "inbox"})
        assert ok.status_code == 303 and "notice=message+sent" in ok.headers["location"]
        assert [m.message for m in node.store.inbox("counter-1")] == [2]
        fork = client.post("/ui/programs/counter-1/fork", data={"csrf": csrf, "at": "2", "message": "3"})
        assert fork.status_code == 303 and fork.headers["location"].startswith("/ui/programs/counter-1-fork-")
        fork_id = fork.headers["location"].split("/ui/programs/")[1].split("?")[0]
        node.run()
        assert node.store.get_program(fork_id).status == "completed"
        assert node.store.get_program(fork_id).result == 3
        end = client.post(f"/ui/programs/{fork_id}/fork", data={"csrf": csrf,
                                                                "at": str(node.store.get_program(fork_id).last_seq)})
        assert "is+its+end" in end.headers["location"]
        assert client.post("/ui/programs/counter-1/cancel", data={"csrf": csrf}).status_code == 303
        node.run()
        assert node.store.get_program("counter-1").status in ("cancelled", "completed")
        again = client.post(f"/ui/programs/{fork_id}/cancel", data={"csrf": csrf})
        assert "error=" in again.headers["location"] and "completed" in again.headers["location"]


def test_a_long_history_is_shown_a_window_at_a_time(node: Node) -> None:
    node.start("long.flow", "long")
    node.run()
    node.store.send("long", "inbox", {"late": True}, time.time())
    node.run()
    events = node.store.events("long")
    last = events[-1].seq
    assert node.store.get_program("long").status == "completed" and last > 1400
    asked = next(e for e in events if e.type == "effect_requested" and e.data["kind"] == "receive")
    answered = next(e for e in events if e.type == "message_received")
    assert asked.seq < 10 and answered.seq > 1000  # asked at the start, answered 1,000 events later
    with _client(node, token=None) as client:
        page = client.get(f"/ui/programs/long?at={answered.seq}").text
        rows = re.findall(r'<tr id="e(\d+)"', page)
        assert len(rows) == 500 and int(rows[0]) <= answered.seq <= int(rows[-1]) and int(rows[0]) > asked.seq
        # the answer names its request, asked long before the events shown
        row = page.split(f'<tr id="e{answered.seq}"')[1].split("</tr>")[0]
        assert 'received on &#34;inbox&#34;: {&#34;late&#34;: true}' in row
        assert re.search(r'<td class="num">[0-9.]+ (ms|s)</td>\s*$', row)  # how long it waited
        earlier = re.search(r'href="([^"]+)">« earlier events', page)
        assert earlier
        before = client.get(earlier.group(1).replace("&amp;", "&")).text
        first_rows = re.findall(r'<tr id="e(\d+)"', before)
        assert int(first_rows[-1]) == int(rows[0]) - 1
        assert f"State at event {answered.seq}" in before  # the selection stays
        start = client.get("/ui/programs/long?at=1").text
        assert re.findall(r'<tr id="e(\d+)"', start)[0] == "1"
        assert "started" in start and "later events »" in start
