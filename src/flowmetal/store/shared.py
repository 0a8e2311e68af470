"""What both store backends compute the same way, whatever their SQL: the columns of the
call and callback rows, a new call's first attempt, reading a call row, and whether a lease
holder on this machine is still alive."""

from __future__ import annotations

import json
import os
import socket
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

from flowmetal.store.base import (
    CallOutcome,
    CallRow,
    Commit,
    Conflict,
    LeaseLost,
    NewCall,
    UnknownProgram,
)

CALL_COLUMNS = ("key", "program_id", "channel", "kind", "name", "payload", "policy", "attempt_timeout",
                "deadline", "status", "attempt", "next_at", "lease_owner", "lease_expires",
                "attempt_deadline", "outcome", "last_error", "created_at", "updated_at", "lost")
LOST_MIGRATION = "ALTER TABLE calls ADD COLUMN lost INTEGER NOT NULL DEFAULT 0"  # schema version 6
# (absent from export files written before schema 6: such a call had lost none)
CALL_DEFAULTS: dict[str, Any] = {"lost": 0}
# schema version 7: what a worker looks for comes from indexes, whatever the number of sleeping
# programs: the runnable programs (oldest first), the timers (by due time), the leases (by expiry;
# few: the programs being run) — instead of scans of every live program on every idle round
READY_CLAUSE = "runnable = 1 AND lease_owner IS NULL AND status IN ('running', 'waiting')"
TIMER_CLAUSE = "wake_at IS NOT NULL AND status IN ('running', 'waiting')"
LEASED_CLAUSE = "lease_owner IS NOT NULL"
TIMER_MIGRATION = [
    f"CREATE INDEX programs_ready ON programs (updated_at) WHERE {READY_CLAUSE}",
    f"CREATE INDEX programs_timer ON programs (wake_at) WHERE {TIMER_CLAUSE}",
    f"CREATE INDEX programs_leased ON programs (lease_expires) WHERE {LEASED_CLAUSE}",
    # (served by those three)
    "DROP INDEX programs_wake",
    "DROP INDEX programs_runnable",
]


def claim_candidates(mark: str, sqlite: bool = False) -> str:
    """The ids a claim chooses among, each kind read from its index (at most a few times the
    claim's size of each): runnable, timer due, lease lapsed (its slice never committed).
    Parameters: branch size, now, branch size, now, branch size. The claim's own conditions
    still apply to them. (SQLite is told which index to use: without statistics it would rather
    search by status, i.e. read every live program.)"""
    def by(index: str) -> str:
        return f" INDEXED BY {index}" if sqlite else ""

    return (f"SELECT id FROM (SELECT id FROM programs{by('programs_ready')} WHERE {READY_CLAUSE}"
            f" ORDER BY updated_at LIMIT {mark}) AS ready"
            f" UNION ALL SELECT id FROM (SELECT id FROM programs{by('programs_timer')} WHERE {TIMER_CLAUSE}"
            f" AND lease_owner IS NULL AND wake_at <= {mark} ORDER BY wake_at LIMIT {mark}) AS due"
            f" UNION ALL SELECT id FROM (SELECT id FROM programs{by('programs_leased')} WHERE {LEASED_CLAUSE}"
            f" AND lease_expires < {mark} ORDER BY lease_expires LIMIT {mark}) AS lapsed")


def runnable_after_holder_died(mark: str) -> str:
    """A program's `runnable` once the process that held its lease is gone: runnable if it has
    something to do (a message, a due timer, a cancel request, or it never waited yet), else
    as it was. Its slice was lost, but a waiting program's slice only runs for one of those; a
    program waiting for a call whose attempt died with the same process is woken when the call
    is run again — restoring it before would be a slice with nothing to do. Parameter: now."""
    return ("CASE WHEN runnable = 1 OR status <> 'waiting' OR cancel_requested = 1"
            f" OR (wake_at IS NOT NULL AND wake_at <= {mark})"
            " OR EXISTS (SELECT 1 FROM inbox WHERE inbox.program_id = programs.id) THEN 1 ELSE 0 END")


def branch_size(limit: int) -> int:
    """How many of each kind a claim of `limit` programs considers: enough that claimers racing
    for the same oldest programs (each skips rows another has locked) still find `limit`."""
    return 2 * limit + 8


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
        created_at=r["created_at"], updated_at=r["updated_at"], lost=r["lost"],
    )


def expired_attempt(tx: Any, r: Mapping[str, Any], now: float) -> CallOutcome | None:
    """An attempt whose holder went quiet (its lease ran out) or is gone (a process of this
    machine that died), or that overran its timeout. A lost attempt is put back at once, not
    counted against the retry policy, and None is returned (see retry.MAX_LOST); otherwise the
    failed outcome to settle it with. `tx` is ops_sql's Tx (`?` placeholders)."""
    from flowmetal.store.retry import counts_as_failure

    timed_out = r["attempt_deadline"] is not None and r["attempt_deadline"] <= now
    if timed_out:
        return CallOutcome(ok=False, retryable=True, error={
            "type": "TimeoutError", "message": f"attempt {r['attempt']} timed out after {r['attempt_timeout']} s"})
    if counts_as_failure(r["lost"]):
        return CallOutcome(ok=False, retryable=True, error={
            "type": "LeaseExpired", "message": f"attempt {r['attempt']} was abandoned (its worker stopped renewing"
                                               f" the lease), after {r['lost']} attempts lost the same way"})
    tx.run("UPDATE calls SET status = 'pending', next_at = ?, lease_owner = NULL, lease_expires = NULL,"
           " attempt_deadline = NULL, lost = lost + 1, updated_at = ? WHERE key = ?", (now, now, r["key"]))
    attempt_lost(r["key"], r["program_id"], r["attempt"], r["lease_owner"])
    return None


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip().replace("-", "")[:12]
    except OSError:
        return ""


def process_start(pid: int) -> str | None:
    """When process `pid` started (clock ticks since boot, from /proc), None if unknown."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


BOOT = _boot_id()  # this boot of this machine


def holder_id(label: str) -> str:
    """The id a worker or connector of this process claims with: `LABEL:HOST:PID:NONCE`, NONCE
    being `BOOT.START.RANDOM` (this machine's boot, when the process started): with them the store
    tells a process that is gone from a new one that got its pid (`local_owner_alive`)."""
    return f"{label}:{HOST}:{os.getpid()}:{BOOT}.{process_start(os.getpid()) or ''}.{uuid.uuid4().hex[:6]}"


def local_owner_alive(owner: str | None) -> bool:
    """False only when `owner` (a worker or connector id `LABEL:HOST:PID:NONCE`) is a process of
    this machine that no longer exists: its pid is free, or taken by a process that started
    later, or the machine rebooted since."""
    parts = (owner or "").split(":")
    if len(parts) < 4 or parts[-3] != HOST or not parts[-2].isdigit():
        return True
    pid = int(parts[-2])
    if not pid_alive(pid):
        return False
    boot, start, *_ = [*parts[-1].split("."), "", ""]
    if not (boot and start):  # an id of an older Flowmetal: the pid is all there is
        return True
    if BOOT and boot != BOOT:
        return False
    now_start = process_start(pid)
    return now_start is None or now_start == start


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


def attempt_lost(key: str, program_id: str, attempt: int, holder: str | None) -> None:
    """Report an attempt lost with its worker (run again at once, not counted as a failure)."""
    import logging

    from flowmetal.observe import logs, metrics

    metrics.ATTEMPTS_LOST.inc()
    logs.event(logs.logger("store"), logging.INFO, "a call's attempt was lost with its worker: run again",
               key=key, program=program_id, attempt=attempt, holder=holder)


def check(c: Commit, current: tuple[int, int, str | None] | None) -> None:
    """The fence and optimistic-concurrency checks of one commit, against the locked row."""
    if current is None:
        raise UnknownProgram(f"no program with id {c.program_id!r}")
    fence, last_seq, owner = current
    if fence != c.fence or owner is None:
        raise LeaseLost(f"lease on {c.program_id!r} was lost (fence {c.fence}, now {fence})")
    if last_seq != c.base_seq:
        raise Conflict(f"{c.program_id!r}: expected last event {c.base_seq}, found {last_seq}")


def check_group(commits: list[Commit]) -> None:
    """The checks of a group's later commits of a program against its earlier ones (the first
    is checked against the store, in SQL): each must follow on from the one before."""
    state: dict[str, tuple[int, int, str | None]] = {}
    for c in commits:
        current = state.get(c.program_id)
        if current is not None:
            check(c, current)
        last_seq = 1 if c.restart_args is not None else c.base_seq + len(c.events)
        state[c.program_id] = (c.fence, last_seq, "held" if c.keep_lease and c.restart_args is None else None)


def rounds(commits: list[Commit]) -> Iterator[list[Commit]]:
    """Split a group into batches of distinct programs, in order: the n-th commit of a program
    goes in the n-th batch, so each batch can be applied set-wise."""
    batches: list[list[Commit]] = []
    seen: dict[str, int] = {}
    for c in commits:
        n = seen.get(c.program_id, 0)
        seen[c.program_id] = n + 1
        if n == len(batches):
            batches.append([])
        batches[n].append(c)
    return iter(batches)
