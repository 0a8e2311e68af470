"""Callback links for people and machines, against a real `flowmetal serve`: the page a GET
shows, deliveries checked before they spend a link, a program refusing a delivery and
waiting for another (`cb.reject`), and 410 Gone once the program has ended."""

from __future__ import annotations

from pathlib import Path

import httpx

from cli_checks import wait_for
from test_api import Server

REFUND = '''from flowmetal import callback

def main():
    cb = callback(title="How much should we refund? <b>not bold</b>", json=True)
    print(cb.url)
    while True:
        req = cb.wait()
        amount = req.json().get("amount")
        if type(amount) is int and amount > 0:
            return {"amount": amount, "content_type": req.headers.get("content-type"), "choice": req.choice}
        print("refused", amount)
        cb.reject("the amount must be a positive whole number")
'''

PLAIN = '''from flowmetal import callback

def main():
    cb = callback()
    print(cb.url)
    req = cb.wait()
    return {"text": req.text, "form": req.form(), "choice": req.choice}
'''


def _url(srv: Server, pid: str) -> str:
    return srv.output(pid).splitlines()[0]


def test_a_program_refuses_a_delivery_and_takes_another(tmp_path: Path) -> None:
    srv = Server(tmp_path)
    try:
        pid = srv.start(REFUND)["id"]
        link = _url(srv, pid)
        page = httpx.get(link)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "How much should we refund? &lt;b&gt;not bold&lt;/b&gt;" in page.text and "<b>" not in page.text
        assert "Your answer (JSON)" in page.text and page.headers["cache-control"] == "no-store"
        # not JSON: refused, the link stays open
        r = httpx.post(link, content=b"fifty", headers={"content-type": "text/plain"})
        assert r.status_code == 422 and r.json()["error"]["type"] == "MalformedBody"
        # JSON the program does not like: delivered, then refused by the program, which waits again
        assert httpx.post(link, json={"amount": -5}).status_code == 202

        def reopened() -> bool:
            return "The last answer was not accepted: the amount must be a positive whole number" in httpx.get(
                link).text

        wait_for(reopened)
        assert srv.http.get(f"/programs/{pid}").json()["waiting_for"] == [f"callback {link}"]
        # a person answers on the page (a typo first: the page says so and keeps the link open)
        typo = httpx.post(link, data={"_flowmetal_page": "1", "text": "{amount: 7}"})
        assert typo.status_code == 422 and "the body is not JSON" in typo.text and "<form" in typo.text
        done = httpx.post(link, data={"_flowmetal_page": "1", "text": '{"amount": 7}'})
        assert done.status_code == 202 and "your answer was delivered" in done.text
        result = srv.result(pid).json()["result"]
        assert result == {"amount": 7, "content_type": "application/json", "choice": None}
        assert srv.output(pid).splitlines()[1:] == ["refused -5"]
        # the program has ended: the link is gone, for people and machines
        assert httpx.get(link).status_code == 410
        r = httpx.post(link, json={"amount": 1})
        assert r.status_code == 410 and r.json()["error"]["type"] == "CallbackGone"
    finally:
        srv.stop()


def test_a_plain_link_takes_any_body_but_not_malformed_json(tmp_path: Path) -> None:
    srv = Server(tmp_path)
    try:
        pid = srv.start(PLAIN)["id"]
        link = _url(srv, pid)
        r = httpx.post(link, content=b'{"a": ', headers={"content-type": "application/json"})
        assert r.status_code == 422 and "still open" in r.json()["error"]["message"]
        assert httpx.post(link, data={"name": "Ada", "note": ""}).status_code == 202
        result = srv.result(pid).json()["result"]
        assert result == {"text": "name=Ada&note=", "form": {"name": "Ada", "note": ""}, "choice": None}
        assert httpx.get(link).status_code == 410
        unknown = httpx.get(link.rsplit("/", 1)[0] + "/no-such-token")
        assert unknown.status_code == 404 and "Unknown link" in unknown.text
    finally:
        srv.stop()
