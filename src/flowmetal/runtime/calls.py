"""A program's calls as people read them (`flowmetal calls ID`, the API): each call with
every failed attempt's error and, for a Python function, its traceback (truncated by the
function server, see connectors/functions.py)."""

from __future__ import annotations

from typing import Any

from flowmetal.store.base import Store, iso


def call_report(store: Store, program_id: str) -> list[dict[str, Any]]:
    """Each call of the program (oldest first) as JSON, with `failed_attempts`."""
    attempts: dict[str, list[dict[str, Any]]] = {}
    for a in store.list_attempts(program_id):
        attempts.setdefault(a.key, []).append(a.to_json())
    return [dict(c.to_json(), failed_attempts=attempts.get(c.key, [])) for c in store.list_calls(program_id)]


def _label(call: dict[str, Any]) -> str:
    if call["kind"] == "http":
        payload = call.get("payload") or {}
        return f"HTTP {payload.get('method', '')} {payload.get('url', '')}"
    return f"call {call['name']}"


def format_calls(report: list[dict[str, Any]]) -> str:
    lines: list[str] = []
    for call in report:
        tries = f"{call['attempts']} attempt{'s' if call['attempts'] != 1 else ''}"
        if call.get("lost"):
            tries += f", {call['lost']} lost with its worker"
        when = (call.get("created_at_iso") or "")[:19].replace("T", " ")
        lines.append(f"{call['key']}  {_label(call)}  {call['status']} ({tries})  requested {when}")
        if call["status"] == "pending" and call.get("next_at_iso") and call["attempts"]:
            lines.append(f"  next attempt at {call['next_at_iso'][:19].replace('T', ' ')}")
        for a in call["failed_attempts"]:
            err = a["error"]
            at = (iso(a["at"]) or "")[11:19]
            lines.append(f"  attempt {a['attempt']} failed at {at}: {err.get('type', 'Error')}: "
                         f"{err.get('message', '')}")
            tb = err.get("traceback")
            if tb:
                lines.extend("      " + line for line in str(tb).rstrip("\n").splitlines())
    return "\n".join(lines)
