"""What both store backends compute the same way, whatever their SQL: the columns of the
call and callback rows, a new call's first attempt, reading a call row, and whether a lease
holder on this machine is still alive."""

from __future__ import annotations

import json
import os
import socket
import uuid
from collections.abc import Mapping
from typing import Any

from flowmetal.store.base import CallRow, NewCall

CALL_COLUMNS = ("key", "program_id", "channel", "kind", "name", "payload", "policy", "attempt_timeout",
                "deadline", "status", "attempt", "next_at", "lease_owner", "lease_expires",
                "attempt_deadline", "outcome", "last_error", "created_at", "updated_at")
CALLBACK_COLUMNS = ("token", "program_id", "channel", "status", "created_at", "delivered_at", "options")

HOST = socket.gethostname()  # what workers of this process record as their lease's host


def ended_status(message: dict[str, Any]) -> str:
    """A settled call's status, from the outcome message the program gets."""
    return "done" if message.get("ok") else "failed"


def first_attempt(call: NewCall, now: float) -> tuple[Any, ...]:
    """(status, attempt, next_at, lease_owner, lease_expires, attempt_deadline) of a new call:
    pending, or already claimed by the worker that performs it in process."""
    if call.owner is None:
        return ("pending", 0, now, None, None, None)
    attempt_deadline = now + call.attempt_timeout if call.attempt_timeout is not None else None
    return ("claimed", 1, now, call.owner, lease_end(now, call.lease, attempt_deadline), attempt_deadline)


def lease_end(now: float, lease: float, attempt_deadline: float | None) -> float:
    """An attempt's lease never outlives its timeout."""
    end = now + lease
    return end if attempt_deadline is None else min(end, attempt_deadline)


def call_row(r: Mapping[str, Any]) -> CallRow:
    return CallRow(
        key=r["key"], program_id=r["program_id"], kind=r["kind"], name=r["name"], payload=json.loads(r["payload"]),
        status=r["status"], attempt=r["attempt"], next_at=r["next_at"],
        outcome=json.loads(r["outcome"]) if r["outcome"] else None,
        last_error=json.loads(r["last_error"]) if r["last_error"] else None,
        created_at=r["created_at"], updated_at=r["updated_at"],
    )


def holder_id(label: str) -> str:
    """The id a worker or connector of this process claims with: `LABEL:HOST:PID:NONCE`, so the
    store can tell when its process is gone (`local_owner_alive`)."""
    return f"{label}:{HOST}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def local_owner_alive(owner: str | None) -> bool:
    """False only when `owner` (a worker or connector id `LABEL:HOST:PID:NONCE`) is a process of
    this machine that no longer exists."""
    parts = (owner or "").split(":")
    if len(parts) < 4 or parts[-3] != HOST or not parts[-2].isdigit():
        return True
    return pid_alive(int(parts[-2]))


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def holder_died(program_id: str, pid: int) -> None:
    """Report a lease given up because its holder's process is gone (its program is claimed anew)."""
    import logging

    from flowmetal.observe import logs, metrics

    metrics.LEASE_TAKEOVERS.inc()
    logs.event(logs.logger("store"), logging.INFO, "lease taken over: its holder process is gone",
               program=program_id, holder_pid=pid)
