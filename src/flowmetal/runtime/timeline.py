"""A program's events as a readable timeline: one short summary per event (prints,
calls with their attempts and errors, HTTP requests with status and duration,
messages, timers, children, callbacks), for `flowmetal logs` and the console.

Every value shown comes from the program and is untrusted: this module only
shortens it; whoever renders it escapes it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from flowmetal.store.base import CallRow, Event

MAX_VALUE = 160  # characters of a value shown in a summary

ANSWERS = ("effect_completed", "effect_failed", "timer_fired", "message_received")  # each names its request
# immediate actions answered in the slice that asked: shown as `name() = value`
_IMMEDIATE = ("now", "random", "randint", "uuid4", "program_id", "deadline", "send")


@dataclass
class Entry:
    seq: int
    at: float
    type: str
    summary: str
    since_previous: float  # seconds since the previous event (0 for the first)
    took: float | None = None  # for an answer: seconds since its request
    task: int | None = None
    request: int | None = None
    error: bool = False  # a failure worth marking
    link: str | None = None  # a program this event names (a child, the original of a fork)
    callback_url: str | None = None


def short(value: Any, limit: int = MAX_VALUE) -> str:
    """A JSON-ish rendering of a recorded value, cut to `limit` characters."""
    if isinstance(value, dict) and set(value) == {"$repr"}:
        text = str(value["$repr"])
    else:
        try:
            text = json.dumps(value, ensure_ascii=False, allow_nan=True)
        except (TypeError, ValueError):
            text = repr(value)
    return _cut(text, limit)


def _cut(text: str, limit: int = MAX_VALUE) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _call_text(kind: str, args: list[Any], kwargs: dict[str, Any]) -> str:
    if kind == "call" and args:
        rest = [short(a, 60) for a in args[1:]] + [f"{k}={short(v, 60)}" for k, v in kwargs.items()
                                                     if k not in ("retry", "timeout")]
        return f"call({short(args[0], 60)}{', ' if rest else ''}{', '.join(rest)})"
    if kind == "http" and len(args) >= 2:
        return f"http {args[0]} {short(args[1], 120).strip(chr(34))}"
    if kind == "start" and args:
        return f"start({short(args[0], 80)})"
    if kind == "callback_wait":
        return "callback.wait()"
    shown = [short(a, 60) for a in args] + [f"{k}={short(v, 60)}" for k, v in kwargs.items()]
    return f"{kind}({', '.join(shown)})"


class Timeline:
    """Summaries of a program's events, fed in order (in one go or as they come), so an
    answer can name the request it answers. `calls`: the program's call rows, for
    attempts and errors."""

    def __init__(self, calls: list[CallRow] | None = None) -> None:
        self.by_key = {c.key: c for c in calls or []}
        self.asked: dict[int, tuple[str, str, float, str | None]] = {}  # request -> (kind, text, at, key)
        self.last_at: float | None = None

    def feed(self, events: list[Event]) -> list[Entry]:
        return [self.entry(e) for e in events]

    def learn(self, events: list[Event]) -> None:
        """Note the requests among earlier `events` (not summarized), so answers to them fed
        later can name them."""
        last_at = self.last_at
        for e in events:
            if e.type == "effect_requested":
                self.entry(e)
        self.last_at = last_at

    def entry(self, e: Event) -> Entry:
        d = e.data
        entry = Entry(e.seq, e.at, e.type, "", max(0.0, e.at - self.last_at) if self.last_at is not None else 0.0)
        self.last_at = e.at
        req = d.get("request")
        entry.request = int(req) if isinstance(req, int) else None
        t = e.type
        asked = self.asked
        if t == "started":
            entry.summary = f"started {d.get('file', '')} with {short(d.get('args') or {})}"
            forked = d.get("forked_from")
            if isinstance(forked, dict):
                entry.summary += f", forked from {forked.get('program')} at event {forked.get('seq')}"
                entry.link = str(forked.get("program"))
        elif t == "output":
            entry.summary = str(d.get("text", "")).rstrip("\n")
        elif t == "effect_requested":
            kind = str(d.get("kind", ""))
            text = _call_text(kind, list(d.get("args") or []), dict(d.get("kwargs") or {}))
            asked[entry.request or 0] = (kind, text, e.at, d.get("key"))
            entry.task = d.get("task")
            entry.summary = f"task {entry.task}: {text}" if entry.task and entry.task != 1 else text
        elif t in ANSWERS:
            kind, text, at, key = asked.get(entry.request or 0, ("", f"request {entry.request}", e.at, None))
            entry.took = max(0.0, e.at - at) if (entry.request or 0) in asked else None
            call = self.by_key.get(key) if key else None
            attempts = f" after {call.attempt} attempts" if call is not None and call.attempt > 1 else ""
            if t == "timer_fired":
                entry.summary = f"{text} ended"
            elif t == "message_received":
                entry.summary = f"received on {short(d.get('channel', 'inbox'))}: {short(d.get('message'))}"
            elif t == "effect_failed":
                err = d.get("error") or {}
                entry.error = err.get("type") != "Cancelled"
                entry.summary = f"{text} failed{attempts}: {err.get('type', 'Error')}: {_cut(str(err.get('message', '')))}"
            else:
                entry.summary = _answer(entry, kind, text, d.get("result"), attempts)
        elif t == "read":
            entry.summary = f"{d.get('what')} read {short(d.get('value'))}"
        elif t == "task_spawned":
            entry.summary = f"task {d.get('task')} spawned"
        elif t == "task_finished":
            entry.summary = f"task {d.get('task')} {d.get('status')}"
            entry.error = d.get("status") == "failed"
        elif t == "cancel_requested":
            entry.summary = "cancellation requested: Cancelled is raised at every wait"
        elif t == "completed":
            entry.summary = f"completed with {short(d.get('result'))}"
        elif t in ("failed", "cancelled"):
            entry.summary = f"{t}: {d.get('error') or ''}"
            entry.error = t == "failed"
        else:
            entry.summary = short({k: v for k, v in d.items() if k != "v"})
        return entry


def timeline(events: list[Event], calls: list[CallRow] | None = None) -> list[Entry]:
    """Summaries of a program's events, from its first."""
    return Timeline(calls).feed(events)


def _answer(entry: Entry, kind: str, text: str, result: Any, attempts: str) -> str:
    if kind == "http" and isinstance(result, dict):
        took = f" in {entry.took:.3f} s" if entry.took is not None else ""
        entry.error = int(result.get("status") or 0) >= 400
        return f"{text} → HTTP {result.get('status')}{took}{attempts}"
    if kind == "start" and isinstance(result, dict):
        entry.link = str(result.get("id"))
        return f"started child program {result.get('id')}"
    if kind == "callback" and isinstance(result, dict):
        entry.callback_url = str(result.get("url"))
        return f"callback URL issued: {result.get('url')}"
    if kind == "callback_wait" and isinstance(result, dict):
        return f"callback delivered: {result.get('method', 'POST')} {short(result.get('body', ''))}"
    if kind == "child_result":
        return f"child program finished: {short(result)}"
    if kind == "call":
        took = f" in {entry.took:.3f} s" if entry.took is not None else ""
        return f"{text} returned {short(result)}{took}{attempts}"
    if kind in _IMMEDIATE:
        return f"{text} = {short(result)}"
    return f"{text} → {short(result)}"
