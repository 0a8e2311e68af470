"""What a store keeps to explain a program's calls and callbacks to people, in SQL both
backends run (`?` placeholders, through ops_sql's `Tx`):

* every failed attempt of a call, with its error (and the function's traceback), so
  `flowmetal calls ID` shows each attempt, not only the last;
* the function names that workers and function servers say they serve, with the time
  each last said so (their heartbeat), so a call to a name nobody serves is named as such;
* a callback's options (what its link page shows; what a delivery must look like).
"""

from __future__ import annotations

import json
from abc import abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from flowmetal.store.base import AttemptRow, CallbackRow, CallOutcome, UnservedCall, dumps

T = TypeVar("T")

# schema version 5, as both backends create it (REAL becomes DOUBLE PRECISION in PostgreSQL)
MIGRATION = [
    """CREATE TABLE call_attempts (
        key TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        program_id TEXT NOT NULL,
        name TEXT NOT NULL,
        worker TEXT,
        error TEXT NOT NULL,
        at REAL NOT NULL,
        PRIMARY KEY (key, attempt)
    )""",
    "CREATE INDEX call_attempts_program ON call_attempts (program_id)",
    """CREATE TABLE served_functions (
        name TEXT NOT NULL,
        server TEXT NOT NULL,
        last_seen REAL NOT NULL,
        PRIMARY KEY (name, server)
    )""",
    "ALTER TABLE callbacks ADD COLUMN options TEXT",
]

# a registration older than this is forgotten when a server registers (servers come and go)
_FORGET_AFTER = 7 * 86400.0


def record_attempt(tx: Any, r: Any, outcome: CallOutcome, now: float) -> None:
    """Keep a failed attempt's error (inside the transaction that settles it)."""
    if outcome.ok:
        return
    error = dict(outcome.error or {"type": "Error", "message": "failed"})
    tx.run("INSERT INTO call_attempts (key, attempt, program_id, name, worker, error, at) VALUES (?, ?, ?, ?, ?, ?, ?)"
           " ON CONFLICT (key, attempt) DO NOTHING",
           (r["key"], r["attempt"], r["program_id"], r["name"], r["lease_owner"], dumps(error), now))


class CallRecords:
    """The store methods over these tables (mixed into both backends)."""

    @abstractmethod
    def _ops_write(self, fn: Callable[[Any], T]) -> T: ...

    @abstractmethod
    def _ops_read(self, fn: Callable[[Any], T]) -> T: ...

    def list_attempts(self, program_id: str) -> list[AttemptRow]:
        rows = self._ops_read(lambda tx: tx.all(
            "SELECT key, attempt, name, worker, error, at FROM call_attempts WHERE program_id = ?"
            " ORDER BY at, key, attempt", (program_id,)))
        return [AttemptRow(r["key"], r["attempt"], r["name"], r["worker"], json.loads(r["error"]), r["at"])
                for r in rows]

    def register_served(self, server: str, names: Sequence[str], now: float) -> None:
        def run(tx: Any) -> None:
            for name in sorted(set(names)):
                tx.run("INSERT INTO served_functions (name, server, last_seen) VALUES (?, ?, ?)"
                       " ON CONFLICT (name, server) DO UPDATE SET last_seen = excluded.last_seen",
                       (name, server, now))
            tx.run("DELETE FROM served_functions WHERE last_seen < ?", (now - _FORGET_AFTER,))

        if names:
            self._ops_write(run)

    def last_served(self, names: Sequence[str]) -> dict[str, float]:
        if not names:
            return {}
        marks = ", ".join("?" * len(names))
        rows = self._ops_read(lambda tx: tx.all(
            f"SELECT name, MAX(last_seen) AS seen FROM served_functions WHERE name IN ({marks}) GROUP BY name",
            list(names)))
        return {r["name"]: float(r["seen"]) for r in rows}

    def unserved_calls(self, now: float, quiet: float) -> list[UnservedCall]:
        rows = self._ops_read(lambda tx: tx.all(
            "SELECT name, COUNT(*) AS n, MIN(created_at) AS oldest, MIN(program_id) AS program FROM calls"
            " WHERE kind = 'function' AND status = 'pending' AND created_at <= ? AND name NOT IN"
            " (SELECT name FROM served_functions WHERE last_seen >= ?) GROUP BY name ORDER BY name",
            (now - quiet, now - quiet)))
        return [UnservedCall(r["name"], int(r["n"]), float(r["oldest"]), r["program"]) for r in rows]

    def get_callback(self, token: str) -> CallbackRow | None:
        r = self._ops_read(lambda tx: tx.one(
            "SELECT token, program_id, status, options, created_at, delivered_at FROM callbacks WHERE token = ?",
            (token,)))
        if r is None:
            return None
        return CallbackRow(r["token"], r["program_id"], r["status"],
                           json.loads(r["options"]) if r["options"] else {}, r["created_at"], r["delivered_at"])
