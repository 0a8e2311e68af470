"""The event store interface. The store knows nothing of the language: it keeps
programs, their append-only event logs, checkpoints (opaque bytes), inboxes
and leases, and guarantees that a commit is atomic and fenced.

Every backend (SQLite now, PostgreSQL later) implements `Store` with the same
semantics; one contract test suite runs against all of them.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from flowmetal.errors import FlowmetalError

EVENT_VERSION = 1

STATUSES = ("running", "waiting", "completed", "failed", "cancelled")
FINISHED = ("completed", "failed", "cancelled")


class StoreError(FlowmetalError):
    exit_code = 2


class UnknownProgram(StoreError):
    pass


class ProgramExists(StoreError):
    pass


class ProgramFinished(StoreError):
    pass


class LeaseLost(StoreError):
    """The lease was taken over (or expired): this worker may no longer append."""


class Conflict(StoreError):
    """Optimistic concurrency: someone else appended at this sequence number."""


@dataclass
class Event:
    program_id: str
    seq: int
    type: str
    data: dict[str, Any]
    at: float

    def to_json(self) -> dict[str, Any]:
        return {"program": self.program_id, "seq": self.seq, "type": self.type, "at": self.at, **self.data}


@dataclass
class ProgramRow:
    id: str
    filename: str
    source_hash: str
    status: str
    args: dict[str, Any]
    last_seq: int
    created_at: float
    updated_at: float
    result: Any = None
    error: str | None = None
    waiting_on: Any = None
    wake_at: float | None = None
    runnable: bool = False
    cancel_requested: bool = False
    parent_id: str | None = None
    lease_owner: str | None = None
    fence: int = 0

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "status": self.status,
            "file": self.filename,
            "source_hash": self.source_hash,
            "args": self.args,
            "events": self.last_seq,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "waiting_on": self.waiting_on,
            "wake_at": self.wake_at,
            "parent": self.parent_id,
        }
        if self.status == "completed":
            out["result"] = self.result
        if self.error is not None:
            out["error"] = self.error
        return out


@dataclass
class Claim:
    program_id: str
    fence: int


@dataclass
class InboxMessage:
    id: int
    channel: str
    message: Any


@dataclass
class NewProgram:
    """A program to create in a commit (e.g. a child started by another program)."""

    id: str
    filename: str
    source: str
    source_hash: str
    args: dict[str, Any]
    parent_id: str | None = None


@dataclass
class Commit:
    """Everything one slice of one program changes, applied atomically."""

    program_id: str
    fence: int
    base_seq: int  # the program's last_seq when the slice began (optimistic concurrency)
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    checkpoint: bytes | None = None
    status: str = "waiting"
    result: Any = None
    error: str | None = None
    waiting_on: Any = None
    wake_at: float | None = None
    runnable: bool = False
    consumed: list[int] = field(default_factory=list)  # inbox message ids now recorded as events
    sends: list[tuple[str, str, Any]] = field(default_factory=list)  # (program, channel, message)
    starts: list[NewProgram] = field(default_factory=list)
    keep_lease: bool = False


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), allow_nan=True)


class Store(ABC):
    url: str

    # -- programs -------------------------------------------------------------
    @abstractmethod
    def create_program(self, new: NewProgram, now: float) -> bool:
        """Create a runnable program with its `started` event. False if the id exists with the
        same source and arguments (idempotent start); ProgramExists if it differs."""

    @abstractmethod
    def get_program(self, program_id: str) -> ProgramRow: ...

    @abstractmethod
    def list_programs(self, status: str | None = None) -> list[ProgramRow]: ...

    @abstractmethod
    def source(self, source_hash: str) -> tuple[str, str]:
        """(filename, source text) of a stored program source."""

    @abstractmethod
    def events(self, program_id: str, after: int = 0, upto: int | None = None) -> list[Event]: ...

    @abstractmethod
    def checkpoint(self, program_id: str, at_or_before: int | None = None) -> tuple[int, bytes] | None: ...

    # -- outside inputs ---------------------------------------------------------
    @abstractmethod
    def send(self, program_id: str, channel: str, message: Any, now: float) -> None:
        """Queue a message for a live program and make it runnable."""

    @abstractmethod
    def inbox(self, program_id: str) -> list[InboxMessage]: ...

    @abstractmethod
    def request_cancel(self, program_id: str, now: float) -> None: ...

    @abstractmethod
    def make_runnable(self, program_id: str, now: float) -> None: ...

    # -- workers ------------------------------------------------------------------
    @abstractmethod
    def claim(self, worker: str, pid: int, host: str, lease: float, now: float, limit: int,
              only: str | None = None) -> list[Claim]:
        """Lease up to `limit` programs that have something to do."""

    @abstractmethod
    def renew(self, worker: str, program_ids: list[str], lease: float, now: float) -> list[str]:
        """Extend leases; returns the ids whose lease this worker still holds."""

    @abstractmethod
    def release(self, worker: str, program_id: str, fence: int) -> None: ...

    @abstractmethod
    def commit(self, commits: list[Commit], now: float) -> None:
        """Apply the commits of one or more programs in one transaction (group commit)."""

    @abstractmethod
    def next_wake(self) -> float | None:
        """The earliest timer among waiting programs."""

    @abstractmethod
    def close(self) -> None: ...
