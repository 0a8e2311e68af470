"""The `.fmx` file: one program moved out of a store (`flowmetal export` / `import`).

A versioned JSON document, readable by any backend and by people:

    {"format": "flowmetal-export", "version": 1,
     "program": {...the program row...}, "source": "...program text...",
     "events": [{"seq", "type", "data", "at"}, ...],
     "checkpoint": {"seq": N, "state": "<base64 snapshot>"} | null,
     "inbox": [{"id", "channel", "message"}, ...],
     "calls": [{...calls columns...}], "callbacks": [{...callbacks columns...}],
     "exported_at": 1700000000.0, "detached": true, "origin": "sqlite:///..."}

The checkpoint is the machine's own versioned snapshot (never pickle), so a
document holds no executable data; `load_fmx` checks the type of every field
before anything reaches a store, and refuses versions newer than it knows.
Non-finite floats a program produced are written as `NaN`/`Infinity`, as the
store's own JSON columns hold them.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flowmetal.store.base import STATUSES, Event, InboxMessage, ProgramDump, ProgramRow, StoreError

FORMAT = "flowmetal-export"
VERSION = 1

# the columns of calls and callbacks rows (as `ProgramDump` carries them) and what each holds
_ANY = "any JSON value"
_CALL_FIELDS: dict[str, str] = {
    "key": "str", "program_id": "str", "channel": "str", "kind": "str", "name": "str", "payload": _ANY,
    "policy": _ANY, "attempt_timeout": "number?", "deadline": "number?", "status": "str", "attempt": "int",
    "next_at": "number?", "lease_owner": "str?", "lease_expires": "number?", "attempt_deadline": "number?",
    "outcome": _ANY, "last_error": _ANY, "created_at": "number", "updated_at": "number",
}
_CALLBACK_FIELDS: dict[str, str] = {
    "token": "str", "program_id": "str", "channel": "str", "status": "str", "created_at": "number",
    "delivered_at": "number?",
}  # and "options" (JSON text or null), absent from files written before callbacks had options
# the program row: ProgramRow's fields (the lease is never exported: it belongs to a worker of the origin)
_PROGRAM_FIELDS: dict[str, str] = {
    "id": "str", "filename": "str", "source_hash": "str", "status": "str", "args": "object", "last_seq": "int",
    "created_at": "number", "updated_at": "number", "result": _ANY, "error": "str?", "waiting_on": _ANY,
    "wake_at": "number?", "runnable": "bool", "cancel_requested": "bool", "parent_id": "str?", "fence": "int",
}


# written since the deployments (schema 4); a file without them is a program of no deployment,
# kept forever, in its first run
_PROGRAM_LATER_FIELDS: dict[str, tuple[str, Any]] = {"deployment": ("str?", None), "retain": ("number?", None),
                                                     "run": ("int", 1)}


class FmxError(StoreError):
    """A malformed, foreign or too-new export file."""


@dataclass
class FmxMeta:
    version: int
    exported_at: float
    detached: bool  # the origin store no longer runs the program (it was marked moved)
    origin: str  # the URL of the store it came from


def dump_fmx(dump: ProgramDump, detached: bool, origin: str, exported_at: float | None = None) -> bytes:
    row = dump.row
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "program": {name: getattr(row, name) for name in (*_PROGRAM_FIELDS, *_PROGRAM_LATER_FIELDS)},
        "source": dump.source,
        "events": [{"seq": e.seq, "type": e.type, "data": e.data, "at": e.at} for e in dump.events],
        "checkpoint": None if dump.checkpoint is None else {
            "seq": dump.checkpoint[0], "state": base64.b64encode(dump.checkpoint[1]).decode("ascii")},
        "inbox": [{"id": m.id, "channel": m.channel, "message": m.message} for m in dump.inbox],
        "calls": dump.calls,
        "callbacks": dump.callbacks,
        "exported_at": time.time() if exported_at is None else exported_at,
        "detached": detached,
        "origin": origin,
    }
    return (json.dumps(doc, ensure_ascii=False, allow_nan=True) + "\n").encode("utf-8")


def load_fmx(data: bytes) -> tuple[ProgramDump, FmxMeta]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise FmxError(f"not a Flowmetal export file: not UTF-8 text ({e.reason} at byte {e.start})") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise FmxError(f"not a Flowmetal export file: malformed JSON ({e.msg} at line {e.lineno} "
                       f"column {e.colno})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise FmxError(f"not a Flowmetal export file (expected \"format\": \"{FORMAT}\")")
    version = doc.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise FmxError(f"malformed export file: version: expected a positive integer, got {_show(version)}")
    if version > VERSION:
        raise FmxError(f"the export file has format version {version}; this Flowmetal reads up to version "
                       f"{VERSION} — upgrade Flowmetal to import it")
    return _Reader().read(doc)


class _Reader:
    """Checks a version-1 document field by field; errors name the field's path."""

    def fail(self, path: str, expected: str, value: Any) -> FmxError:
        return FmxError(f"malformed export file: {path}: expected {expected}, got {_show(value)}")

    def get(self, obj: dict[str, Any], key: str, kind: str, path: str) -> Any:
        if key not in obj:
            raise FmxError(f"malformed export file: {path}{key} is missing")
        value = obj[key]
        optional = kind.endswith("?")
        base = kind.rstrip("?")
        if optional and value is None:
            return None
        check: dict[str, tuple[Callable[[Any], bool], str]] = {
            "str": (lambda v: isinstance(v, str), "a string"),
            "int": (_is_int, "an integer"),
            "number": (_is_number, "a number"),
            "bool": (lambda v: isinstance(v, bool), "true or false"),
            "object": (lambda v: isinstance(v, dict), "an object"),
            "list": (lambda v: isinstance(v, list), "a list"),
            _ANY: (lambda v: True, _ANY),
        }
        test, expected = check[base]
        if not test(value):
            raise self.fail(path + key, expected + (" or null" if optional else ""), value)
        return value

    def record(self, obj: Any, fields: dict[str, str], path: str) -> dict[str, Any]:
        if not isinstance(obj, dict):
            raise self.fail(path.rstrip("."), "an object", obj)
        return {name: self.get(obj, name, kind, path) for name, kind in fields.items()}

    def read(self, doc: dict[str, Any]) -> tuple[ProgramDump, FmxMeta]:
        raw = self.get(doc, "program", "object", "")
        p = self.record(raw, _PROGRAM_FIELDS, "program.")
        for name, (kind, default) in _PROGRAM_LATER_FIELDS.items():
            p[name] = self.get(raw, name, kind, "program.") if name in raw else default
        if p["status"] not in STATUSES:
            raise self.fail("program.status", "one of " + ", ".join(STATUSES), p["status"])
        row = ProgramRow(lease_owner=None, **p)
        source = self.get(doc, "source", "str", "")

        events = []
        for i, e in enumerate(self.get(doc, "events", "list", "")):
            ev = self.record(e, {"seq": "int", "type": "str", "data": "object", "at": "number"}, f"events[{i}].")
            # the log must be whole: 1..last_seq, no gap, starting with `started`
            if ev["seq"] != i + 1:
                raise self.fail(f"events[{i}].seq", f"{i + 1} (events are numbered 1, 2, ... without gaps)",
                                ev["seq"])
            events.append(Event(row.id, ev["seq"], ev["type"], ev["data"], ev["at"]))
        if not events or events[0].type != "started":
            raise FmxError("malformed export file: events: the log must begin with the `started` event")
        if len(events) != row.last_seq:
            raise FmxError(f"malformed export file: program.last_seq is {row.last_seq} but the file holds "
                           f"{len(events)} events")

        checkpoint = None
        ck = self.get(doc, "checkpoint", "object?", "")
        if ck is not None:
            c = self.record(ck, {"seq": "int", "state": "str"}, "checkpoint.")
            if not 1 <= c["seq"] <= row.last_seq:
                raise self.fail("checkpoint.seq", f"an event number from 1 to {row.last_seq}", c["seq"])
            try:
                state = base64.b64decode(c["state"], validate=True)
            except (binascii.Error, ValueError):
                raise FmxError("malformed export file: checkpoint.state: expected base64 data") from None
            checkpoint = (c["seq"], state)

        inbox = []
        for i, m in enumerate(self.get(doc, "inbox", "list", "")):
            msg = self.record(m, {"id": "int", "channel": "str", "message": _ANY}, f"inbox[{i}].")
            inbox.append(InboxMessage(msg["id"], msg["channel"], msg["message"]))
        calls = [self.owned(self.record(c, _CALL_FIELDS, f"calls[{i}]."), row.id, f"calls[{i}]")
                 for i, c in enumerate(self.get(doc, "calls", "list", ""))]
        callbacks = [self.owned(self.record(c, _CALLBACK_FIELDS, f"callbacks[{i}]."), row.id, f"callbacks[{i}]")
                     for i, c in enumerate(self.get(doc, "callbacks", "list", ""))]
        for call, raw in zip(calls, self.get(doc, "calls", "list", "")):
            # (attempts lost with their worker: absent from files written before schema 6)
            call["lost"] = self.get(raw, "lost", "int", "calls[].") if "lost" in raw else 0
        for cb, raw in zip(callbacks, self.get(doc, "callbacks", "list", "")):
            # (what the link page shows: JSON text; absent from files written before it existed)
            options = raw.get("options")
            if options is not None and not isinstance(options, str):
                raise self.fail("callbacks[].options", "a string or null", options)
            cb["options"] = options

        meta = FmxMeta(version=doc["version"], exported_at=self.get(doc, "exported_at", "number", ""),
                       detached=self.get(doc, "detached", "bool", ""), origin=self.get(doc, "origin", "str", ""))
        return ProgramDump(row, source, events, checkpoint, inbox, calls, callbacks), meta

    def owned(self, rec: dict[str, Any], program_id: str, path: str) -> dict[str, Any]:
        if rec["program_id"] != program_id:
            raise self.fail(f"{path}.program_id", f"{program_id!r} (the exported program)", rec["program_id"])
        return rec


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _show(value: Any) -> str:
    kind = {str: "a string", bool: "a boolean", int: "an integer", float: "a number", list: "a list",
            dict: "an object", type(None): "null"}.get(type(value), type(value).__name__)
    if isinstance(value, str | int | float | bool) and len(repr(value)) <= 40:
        return f"{kind} {json.dumps(value)}"
    return kind


__all__ = ["FORMAT", "VERSION", "FmxError", "FmxMeta", "dump_fmx", "load_fmx"]
