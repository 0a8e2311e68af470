"""What a waiting program waits for, in its own words: `receive on "go"`, `call
billing.refund (attempt 2, next in 4 s)`, `callback http://.../callbacks/...`, and the
mistakes that make a program wait forever — a call to a function no server has served
lately, messages on a channel the program is not receiving on.

One place says it for `status`, `list`, `inspect`, the API and the worker's log.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from flowmetal.store.base import CallRow, InboxMessage, ProgramRow, Store, UnknownCall, iso

# A call pending this long to a function no worker or function server has registered for as
# long is named as a mistake (a typo, a missing --functions). Servers register every few
# seconds (their heartbeat), so a live one is never mistaken for a missing one.
UNSERVED_AFTER = 60.0


def _seconds(delta: float) -> str:
    delta = max(0.0, delta)
    if delta < 10:
        return f"{delta:.1f} s".replace(".0 s", " s")
    if delta < 120:
        return f"{delta:.0f} s"
    if delta < 7200:
        return f"{delta / 60:.0f} min"
    if delta < 172800:
        return f"{delta / 3600:.0f} h"
    return f"{delta / 86400:.0f} days"


def _attempts(call: CallRow | None, now: float) -> str:
    """`attempt 2, next in 4 s`, `attempt 1 running`, `not started` (None: nothing to say)."""
    if call is None:
        return ""
    if call.status == "claimed":
        return f"attempt {call.attempt} running"
    if call.status == "pending":
        if call.attempt == 0:
            return "not started" + (f", due in {_seconds(call.next_at - now)}"
                                    if call.next_at is not None and call.next_at > now else "")
        if call.next_at is not None and call.next_at > now:
            return f"attempt {call.attempt + 1}, next in {_seconds(call.next_at - now)}"
        return f"attempt {call.attempt + 1} due"
    return call.status


def describe_wait(w: dict[str, Any], now: float, call: CallRow | None = None,
                  served: dict[str, float] | None = None) -> str:
    """One wait (an entry of a program's `waiting_on`) in the program's words. With the call's
    row and `served` (Store.last_served), a call says how its attempts go and whether anyone
    serves its function."""
    kind = w.get("kind")
    due = w.get("due")
    if kind in ("sleep", "timer"):
        text = "sleep" if due is None else f"sleep until {iso(due)} (in {_seconds(due - now)})"
        return text if not w.get("by_deadline") else text + " (cut short by a timeout)"
    if kind == "receive":
        channel = str(w.get("channel", "inbox"))
        text = f"receive on {json.dumps(channel)}"
    elif kind == "child_result":
        text = f"the result of program {w.get('child')}"
    elif kind == "callback_wait":
        text = f"callback {w['url']}" if w.get("url") else "a callback"
    elif kind == "call":
        name = str(w.get("name", ""))
        state = _attempts(call, now)
        text = f"call {name}" + (f" ({state})" if state else "")
        if served is not None and call is not None and call.kind == "function":
            last = served.get(name)
            quiet = call.status == "pending" and now - call.created_at >= UNSERVED_AFTER
            if quiet and (last is None or now - last >= UNSERVED_AFTER):
                text += f": {unserved_message(name)}"
    elif kind == "http":
        state = _attempts(call, now)
        what = str(w.get("what", "http.request"))
        if what.startswith("http.request(") and what.endswith(")"):
            what = "HTTP " + what[len("http.request("):-1]
        text = what + (f" ({state})" if state else "")
    else:
        text = str(w.get("what") or kind)
    if due is not None:
        text += f", timeout in {_seconds(due - now)}"
    return text


def unserved_message(name: str) -> str:
    return f"no function server has served {json.dumps(name)} in {UNSERVED_AFTER:.0f} s"


def describe_waits(store: Store | None, row: ProgramRow, now: float) -> list[str]:
    """What `row` waits for, one line per wait (empty unless it is waiting). With a store, calls
    say how their attempts go and whether anyone serves their function (a few reads)."""
    if row.status != "waiting":
        return []
    waits = list((row.waiting_on or {}).get("waits") or [])
    calls: dict[str, CallRow] = {}
    served: dict[str, float] | None = None
    if store is not None:
        for w in waits:
            if w.get("call"):
                try:
                    calls[w["call"]] = store.get_call(w["call"])
                except UnknownCall:
                    pass
        names = sorted({c.name for c in calls.values() if c.kind == "function"})
        served = store.last_served(names) if names else {}
    return [describe_wait(w, now, calls.get(w.get("call") or ""), served) for w in waits]


def unread_messages(row: ProgramRow, inbox: list[InboxMessage]) -> list[str]:
    """Messages waiting on channels the program is not receiving on (a mistyped channel, or a
    message it will never read), one line per channel."""
    if row.status != "waiting":
        return []
    receiving = {str(w.get("channel")) for w in ((row.waiting_on or {}).get("waits") or [])
                 if w.get("kind") == "receive"}
    counts: dict[str, int] = {}
    for m in inbox:
        if not m.channel.startswith("__") and m.channel not in receiving:
            counts[m.channel] = counts.get(m.channel, 0) + 1
    where = (" (it receives on " + ", ".join(json.dumps(c) for c in sorted(receiving)) + ")") if receiving else ""
    return [f"{n} message{'s' if n != 1 else ''} on {json.dumps(channel)}, which it is not receiving on{where}"
            for channel, n in counts.items()]


class UnservedWatch:
    """Logs, from time to time, the calls waiting for a function no server has served lately
    (once per function name, again if it is still unserved ten minutes later)."""

    def __init__(self, store: Store, every: float = 30.0, repeat: float = 600.0) -> None:
        self.store = store
        self.every = every
        self.repeat = repeat
        self.last_check = float("-inf")
        self.logged: dict[str, float] = {}

    def check(self, now: float) -> None:
        if now - self.last_check < self.every:
            return
        self.last_check = now
        from flowmetal.observe import logs

        unserved = self.store.unserved_calls(now, UNSERVED_AFTER)
        for u in unserved:
            if now - self.logged.get(u.name, float("-inf")) < self.repeat:
                continue
            self.logged[u.name] = now
            calls = f"{u.count} call{'s' if u.count != 1 else ''} waiting"
            logs.event(logs.logger("calls"), logging.WARNING,
                       f"{unserved_message(u.name)} ({calls}, the oldest for {_seconds(now - u.oldest)}; "
                       f"is a --functions file or a function server missing?)",
                       function=u.name, waiting_calls=u.count, program=u.program_id)
        names = {u.name for u in unserved}
        for name in [n for n in self.logged if n not in names]:
            del self.logged[name]
