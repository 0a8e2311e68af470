"""A program's page: its source with the current (or failing) line marked, its event
timeline, the state at any event (every task's stack with each frame's line and local
variables, globals, pending waits), stepping through events, the variables that
changed between two events; and its actions: send a message, cancel, fork at the
selected event, its children, its callback links."""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from flowmetal.api.context import Api, api
from flowmetal.console.pages import form as read_form
from flowmetal.console.pages import page, rendered
from flowmetal.console.state import diff, marks, state_at
from flowmetal.errors import UsageError
from flowmetal.runtime.fork import fork_program
from flowmetal.runtime.timeline import ANSWERS, Entry, Timeline
from flowmetal.runtime.waits import describe_waits, unread_messages
from flowmetal.store.base import (
    FINISHED,
    AttemptRow,
    CallRow,
    ProgramFinished,
    ProgramQuery,
    ProgramRow,
    Store,
)

WINDOW = 500  # events shown at once in the timeline
LOOK_BACK = 1000  # events read at a time when looking further back for the requests shown answered


def _int(raw: str | None) -> int | None:
    try:
        return int(raw) if raw not in (None, "") else None
    except ValueError:
        return None


def program_url(program_id: str, **params: Any) -> str:
    from urllib.parse import quote

    shown = {k: v for k, v in params.items() if v not in (None, "")}
    return f"/ui/programs/{quote(program_id, safe='')}" + (f"?{urlencode(shown)}" if shown else "")


def _entries(store: Store, program_id: str, calls: list[CallRow], first: int, last: int) -> list[Entry]:
    """Summaries of events first..last, reading only those (and the one before, for the time
    since it), plus, further back, the requests answered among them: a page of a long
    history costs about the same as a short one."""
    events = store.events(program_id, max(0, first - 2), last)
    asked = {e.data.get("request") for e in events if e.type == "effect_requested"}
    missing = {e.data.get("request") for e in events if e.type in ANSWERS} - asked
    timeline = Timeline(calls)
    end = events[0].seq - 1 if events else 0
    while missing and end > 0:  # (usually answered soon after they were asked: a step or two back)
        earlier = store.events(program_id, max(0, end - LOOK_BACK), end)
        found = [e for e in earlier if e.type == "effect_requested" and e.data.get("request") in missing]
        timeline.learn(found)
        missing -= {e.data.get("request") for e in found}
        end -= LOOK_BACK
    entries = timeline.feed(events)
    return [e for e in entries if e.seq >= first]


def _callbacks(a: Api, row: ProgramRow, entries: list[Entry]) -> list[str]:
    """The callback URLs issued in the events shown, and those the program waits on now."""
    urls = [e.callback_url for e in entries if e.callback_url]
    for w in (row.waiting_on or {}).get("waits") or []:
        if w.get("kind") == "callback_wait" and row.status == "waiting":
            token = str(w.get("channel", "")).removeprefix("__cb__:")
            urls.append(str(w.get("url") or f"{a.runtime.public_url}/callbacks/{token}"))
    return list(dict.fromkeys(urls))


def _attempts(a: Api, program_id: str) -> dict[str, list[AttemptRow]]:
    """Each call's failed attempts (with their errors and a Python function's traceback)."""
    out: dict[str, list[AttemptRow]] = {}
    for attempt in a.store.list_attempts(program_id):
        out.setdefault(attempt.key, []).append(attempt)
    return out


def _children(a: Api, program_id: str) -> list[str]:
    """Programs this one started (their ids are ID.N)."""
    page = a.store.page_programs(ProgramQuery(text=f"{program_id}."), limit=200)
    return [r.id for r in page.programs if r.parent_id == program_id]


def _context(request: Request) -> dict[str, Any]:
    a = api(request)
    program_id = request.path_params["id"]
    params = request.query_params
    row = a.store.get_program(program_id)
    calls = a.store.list_calls(program_id)
    last = row.last_seq
    at = _int(params.get("at"))
    seq = min(max(at, 1), last) if at is not None else last
    state = state_at(a.runtime, row, seq)
    against = _int(params.get("against"))
    changes = None
    before = None
    if against is not None and 1 <= against <= last and against != seq:
        before = state_at(a.runtime, row, against)
        changes = diff(before, state) if before.error is None and state.error is None else None
    filename, source = a.store.source(row.source_hash)
    start = _int(params.get("from"))
    if start is None:
        start = max(1, seq - WINDOW // 2)
    start = min(max(1, start), max(1, last - WINDOW + 1))
    window = _entries(a.store, program_id, calls, start, min(last, start + WINDOW - 1))
    shown = {e.seq: e for e in window}
    selected = shown.get(seq) or next(iter(_entries(a.store, program_id, calls, seq, seq)), None)
    first = shown.get(1) or next(iter(_entries(a.store, program_id, calls, 1, 1)), None)
    last_event = a.store.events(program_id, last - 1, last)
    return {
        "row": row, "live": row.status not in FINISHED, "seq": seq, "last": last, "at_latest": seq == last,
        "state": state, "against": against if changes is not None or before is not None else None,
        "before": before, "changes": changes, "selected": selected,
        "source_lines": source.splitlines(),
        "marks": marks(state if state.error is None else None, filename, last_event[-1] if last_event else None, seq),
        "entries": window, "window_start": start, "window_end": start + len(window) - 1,
        "earlier": max(1, start - WINDOW) if start > 1 else None,
        "later": start + WINDOW if start + WINDOW <= last else None,
        "children": _children(a, program_id),
        "forked_from": first.link if first is not None else None,
        "callbacks": _callbacks(a, row, window),
        "calls": calls, "attempts": _attempts(a, program_id),
        "waits": describe_waits(a.store, row, time.time()),
        "unread": unread_messages(row, a.store.inbox(program_id)) if row.status == "waiting" else [],
        "notice": params.get("notice"), "error": params.get("error"),
        "url": lambda **kw: program_url(program_id, **kw),
    }


@page
async def program_page(request: Request) -> Response:
    return await rendered(request, "program.html", lambda: _context(request))


@page
async def program_seq(request: Request) -> Response:
    """Where the program is now, for the page's script to notice it moved on."""
    a = api(request)
    row = await a.run(a.store.get_program, request.path_params["id"])
    return JSONResponse({"last_seq": row.last_seq, "status": row.status})


def _back(program_id: str, **params: Any) -> RedirectResponse:
    return RedirectResponse(program_url(program_id, **params), status_code=303)


def _json_field(raw: object, what: str) -> Any:
    text = raw if isinstance(raw, str) else ""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise UsageError(f"{what}: not JSON ({e.msg} at line {e.lineno} column {e.colno})") from None


def _channel(raw: object) -> str:
    channel = (raw if isinstance(raw, str) else "").strip() or "inbox"
    if channel.startswith("__"):
        raise UsageError("channel: names starting with '__' are reserved")
    return channel[:256]


@page
async def send(request: Request) -> Response:
    a = api(request)
    program_id = request.path_params["id"]
    form = await read_form(request)
    at = form.get("at")
    try:
        message = _json_field(form.get("message"), "the message")
        channel = _channel(form.get("channel"))
    except UsageError as e:
        return _back(program_id, at=at, error=str(e))

    def deliver() -> None:
        a.store.send(program_id, channel, message, time.time())
        a.store.notify()

    try:
        await a.run(deliver)
    except ProgramFinished as e:
        return _back(program_id, at=at, error=str(e))
    return _back(program_id, notice=f"message sent on {channel}")


@page
async def cancel(request: Request) -> Response:
    a = api(request)
    program_id = request.path_params["id"]

    def request_cancel() -> None:
        a.store.request_cancel(program_id, time.time())
        a.store.notify()

    try:
        await a.run(request_cancel)
    except ProgramFinished as e:
        return _back(program_id, error=str(e))
    return _back(program_id, notice="cancellation requested")


@page
async def fork(request: Request) -> Response:
    a = api(request)
    program_id = request.path_params["id"]
    form = await read_form(request)
    at = _int(str(form.get("at") or ""))
    raw = form.get("message")
    try:
        if at is None:
            raise UsageError("fork: choose the event to fork at")
        messages = [_json_field(raw, "the message")] if isinstance(raw, str) and raw.strip() else []
        channel = _channel(form.get("channel"))
        forked = await a.run(fork_program, a.store, program_id, at, messages, channel)
    except UsageError as e:
        return _back(program_id, at=at, error=str(e))
    notice = f"forked from {program_id} at event {at}"
    if forked.children:
        notice += (f"; {program_id} had started {', '.join(forked.children[:5])}, which the fork does not copy "
                   "(it never hears from them)")
    return _back(forked.id, notice=notice)


routes = [
    Route("/programs/{id}", program_page, methods=["GET"]),
    Route("/programs/{id}/seq", program_seq, methods=["GET"]),
    Route("/programs/{id}/send", send, methods=["POST"]),
    Route("/programs/{id}/cancel", cancel, methods=["POST"]),
    Route("/programs/{id}/fork", fork, methods=["POST"]),
]
