"""The event store interface. The store knows nothing of the language: it keeps
programs, their append-only event logs, checkpoints (opaque bytes), inboxes
and leases, and guarantees that a commit is atomic and fenced.

Every backend (SQLite now, PostgreSQL later) implements `Store` with the same
semantics; one contract test suite runs against all of them.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from flowmetal.errors import FlowmetalError, UsageError
from flowmetal.store.operations import OperationsStore

EVENT_VERSION = 1

STATUSES = ("running", "waiting", "completed", "failed", "cancelled", "moved")
# no longer runs here; "moved" = exported with --detach and continued in another store
FINISHED = ("completed", "failed", "cancelled", "moved")


class StoreError(FlowmetalError):
    exit_code = 2


class UnknownCall(StoreError):
    pass


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


class StoreUnavailable(StoreError):
    """The store's server cannot be reached right now (e.g. PostgreSQL is restarting).
    Nothing is known to be lost: trying again later may succeed."""


class ReservedChannel(UsageError):
    """A message addressed to a channel only the runtime delivers on (see `user_channel`)."""


RESERVED_CHANNEL_PREFIX = "__"


def user_channel(channel: str) -> str:
    """`channel`, if senders may use it. Outcomes of calls, HTTP requests, child programs and
    callbacks reach a program on channels starting with `__` (`__call__:...`, `__child__:...`,
    `__cb__:...`); refusing them at every door (the API, the CLI, the client, programs' own
    `send`) means no one can forge another program's results."""
    if not isinstance(channel, str) or not channel:
        raise ReservedChannel("a channel is a non-empty string")
    if channel.startswith(RESERVED_CHANNEL_PREFIX):
        raise ReservedChannel(f"channel {channel!r} is reserved: channels starting with "
                              f"{RESERVED_CHANNEL_PREFIX!r} carry the outcomes of calls, child programs and "
                              "callbacks, which only the runtime delivers")
    return channel


class BadCursor(UsageError):
    """A listing cursor that this store did not hand out (or for another order)."""


def iso(at: float | None) -> str | None:
    """An epoch time as ISO-8601 in UTC with milliseconds (`2026-12-01T09:30:00.250Z`)."""
    if at is None:
        return None
    stamp = datetime.datetime.fromtimestamp(at, tz=datetime.UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def parse_time(text: str) -> float:
    """An epoch time from epoch seconds (`1767225600.5`) or ISO-8601 (`2026-01-01`,
    `2026-01-01T09:30:00Z`, `...+02:00`; no zone means UTC). ValueError if it is neither."""
    text = text.strip()
    try:
        value = float(text)
    except ValueError:
        pass
    else:
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"not a time: {text!r}")
        return value
    try:
        when = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"not a time: {text!r} (use ISO-8601 such as 2026-01-31T09:30:00Z, or epoch seconds)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return when.timestamp()


@dataclass
class Event:
    program_id: str
    seq: int
    type: str
    data: dict[str, Any]
    at: float

    def to_json(self) -> dict[str, Any]:
        return {"program": self.program_id, "seq": self.seq, "type": self.type, "at": self.at,
                "at_iso": iso(self.at), **self.data}


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
    deployment: str | None = None  # "NAME@VERSION" when started from a deployment
    retain: float | None = None  # seconds it is kept once finished (None: the node's default)
    run: int = 1  # 1, then one more at each continue_as_new


    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "status": self.status,
            "file": self.filename,
            "source_hash": self.source_hash,
            "args": self.args,
            "events": self.last_seq,
            "created_at": self.created_at,
            "created_at_iso": iso(self.created_at),
            "updated_at": self.updated_at,
            "updated_at_iso": iso(self.updated_at),
            "waiting_on": self.waiting_on,
            "wake_at": self.wake_at,
            "wake_at_iso": iso(self.wake_at),
            "parent": self.parent_id,
            "deployment": self.deployment,
            "run": self.run,
        }
        if self.status == "completed":
            out["result"] = self.result
        if self.error is not None:
            out["error"] = self.error
        return out


@dataclass(frozen=True)
class ProgramQuery:
    """Which programs `Store.page_programs` lists; every field given narrows the list.

    status          any of these statuses (one string or several)
    file            the program's file name contains this text (case-sensitive)
    text            the program's id or file name contains this text (case-sensitive)
    created_since   created at or after this epoch time
    created_before  created before this epoch time
    newest_first    order by creation time, newest first (default: oldest first)
    """

    status: str | Sequence[str] | None = None
    file: str | None = None
    text: str | None = None
    created_since: float | None = None
    created_before: float | None = None
    newest_first: bool = False

    @property
    def statuses(self) -> tuple[str, ...]:
        if self.status is None:
            return ()
        return (self.status,) if isinstance(self.status, str) else tuple(self.status)


@dataclass
class ProgramPage:
    """One page of a listing: `next_cursor` fetches the next page (None: this is the last)."""

    programs: list[ProgramRow]
    next_cursor: str | None


def page_clause(query: ProgramQuery, limit: int | None, cursor: str | None,
                ph: str) -> tuple[str, list[Any]]:
    """The WHERE/ORDER BY/LIMIT of a page of programs, with `ph` as the placeholder (both
    backends list alike). The order is (created_at, id), a total order, so a cursor (the last
    row's created_at and id) resumes exactly where the page ended, however many programs were
    created meanwhile. One row more than `limit` is asked for, to know whether a page follows."""
    where: list[str] = []
    params: list[Any] = []
    if query.statuses:
        where.append(f"status IN ({', '.join([ph] * len(query.statuses))})")
        params.extend(query.statuses)
    if query.file:
        where.append(f"{'instr(filename, ?)' if ph == '?' else 'strpos(filename, %s)'} > 0")
        params.append(query.file)
    if query.text:
        find = "instr({}, ?)" if ph == "?" else "strpos({}, %s)"
        where.append(f"({find.format('filename')} > 0 OR {find.format('id')} > 0)")
        params.extend([query.text, query.text])
    if query.created_since is not None:
        where.append(f"created_at >= {ph}")
        params.append(float(query.created_since))
    if query.created_before is not None:
        where.append(f"created_at < {ph}")
        params.append(float(query.created_before))
    direction = "DESC" if query.newest_first else "ASC"
    if cursor is not None:
        after_at, after_id = decode_cursor(cursor, query.newest_first)
        where.append(f"(created_at, id) {'<' if query.newest_first else '>'} ({ph}, {ph})")
        params.extend([after_at, after_id])
    clause = (" WHERE " + " AND ".join(where)) if where else ""
    clause += f" ORDER BY created_at {direction}, id {direction}"
    if limit is not None:
        clause += f" LIMIT {ph}"
        params.append(limit + 1)
    return clause, params


def finish_page(rows: list[ProgramRow], limit: int | None, newest_first: bool) -> ProgramPage:
    if limit is None or len(rows) <= limit:
        return ProgramPage(rows, None)
    rows = rows[:limit]
    last = rows[-1]
    raw = json.dumps(["d" if newest_first else "a", last.created_at, last.id], separators=(",", ":"))
    return ProgramPage(rows, base64.urlsafe_b64encode(raw.encode()).decode().rstrip("="))


def decode_cursor(cursor: str, newest_first: bool) -> tuple[float, str]:
    try:
        raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        order, at, pid = raw
        if order not in ("a", "d") or not isinstance(at, int | float) or not isinstance(pid, str):
            raise ValueError
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise BadCursor(f"not a listing cursor: {cursor[:40]!r}") from None
    if (order == "d") != newest_first:
        raise BadCursor("this cursor belongs to a listing in the other order")
    return float(at), pid


@dataclass
class Claim:
    program_id: str
    fence: int
    took_over: bool = False  # its previous holder's lease had run out (that slice never committed)
    # What the claim read about the program (stores that read it in the same round trip), for its
    # first slice: taken once by `Store.program_and_inbox`, which reads it from the store otherwise.
    row: ProgramRow | None = field(default=None, compare=False, repr=False)
    inbox: list[InboxMessage] | None = field(default=None, compare=False, repr=False)
    # The worker's bookkeeping for programs it continues without reading them again (see
    # Worker._carry_forward): `row`/`inbox` above were derived from its last commit, and when
    # (time.monotonic()) what they derive from was last read from the store.
    derived: bool = field(default=False, compare=False, repr=False)
    read_at: float = field(default=0.0, compare=False, repr=False)


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
    deployment: str | None = None  # "NAME@VERSION": start() inside it resolves paths in that version
    retain: float | None = None


@dataclass
class NewCall:
    """An effect performed outside the interpreter by a connector (a foreign function, an
    HTTP request). Its outcome comes back as an inbox message on `channel`:
    `{"ok": true, "result": ...}` or `{"ok": false, "error": {"type", "message", ...}}`."""

    key: str  # the idempotency key PROGRAM:SEQ
    program_id: str
    channel: str
    kind: str  # "function" or "http": which connectors may take it
    name: str  # the function name (for "http": "http")
    payload: Any  # JSON: the arguments
    retry: dict[str, Any]  # a normalized retry policy (see flowmetal.store.retry)
    attempt_timeout: float | None = None  # bounds each attempt
    deadline: float | None = None  # no attempt starts after this (the program stopped waiting)
    owner: str | None = None  # set: inserted already claimed (attempt 1) by this worker, which runs it in process
    lease: float = 0.0  # with owner: the attempt's lease


@dataclass
class CallClaim:
    """One attempt at a call, leased to one connector."""

    key: str
    program_id: str
    kind: str
    name: str
    payload: Any
    attempt: int  # 1 for the first attempt; also the attempt's fencing token
    deadline: float | None  # when this attempt is given up (its timeout), wall-clock seconds

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "program": self.program_id, "kind": self.kind, "name": self.name,
                "payload": self.payload, "attempt": self.attempt, "deadline": self.deadline}


@dataclass
class CallRow:
    key: str
    program_id: str
    kind: str
    name: str
    payload: Any
    status: str  # pending | claimed | done (succeeded) | failed (for good) | cancelled
    attempt: int
    next_at: float | None
    outcome: Any
    last_error: Any
    created_at: float
    updated_at: float
    lost: int = 0  # of its attempts, those lost with their worker (not counted against the retry policy)

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "program": self.program_id, "kind": self.kind, "name": self.name,
                "payload": self.payload, "status": self.status, "attempts": self.attempt, "lost": self.lost,
                "next_at": self.next_at, "next_at_iso": iso(self.next_at), "outcome": self.outcome,
                "last_error": self.last_error, "created_at": self.created_at, "created_at_iso": iso(self.created_at),
                "updated_at": self.updated_at, "updated_at_iso": iso(self.updated_at)}


@dataclass
class AttemptRow:
    """One failed attempt of a call: its error as the connector reported it (`type`, `message`,
    and for a Python function its `traceback`, truncated)."""

    key: str
    attempt: int
    name: str
    worker: str | None
    error: dict[str, Any]
    at: float

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "attempt": self.attempt, "name": self.name, "worker": self.worker,
                "error": self.error, "at": self.at, "at_iso": iso(self.at)}


@dataclass
class UnservedCall:
    """Calls waiting for a function that no server has said it serves lately."""

    name: str
    count: int
    oldest: float  # when the oldest of them was requested
    program_id: str  # one of the programs waiting


@dataclass
class CallbackRow:
    """A callback link: open (takes one delivery), delivered, or closed (its program ended)."""

    token: str
    program_id: str
    status: str
    options: dict[str, Any]  # what the program asked for: title, choices, json (see runtime/callbacks.py)
    created_at: float
    delivered_at: float | None


@dataclass
class CallOutcome:
    """What a connector reports for one attempt."""

    ok: bool
    result: Any = None
    error: dict[str, Any] | None = None  # {"type": ..., "message": ...}
    retryable: bool = True
    retry_after: float | None = None  # seconds, e.g. from an HTTP Retry-After header
    final_result: Any = None  # delivered as a success if the retries run out (an HTTP 5xx response)
    has_final_result: bool = False


@dataclass
class ProgramDump:
    """Everything a store holds about one program, to move it to another store
    (`flowmetal export` / `import`). `calls` and `callbacks` are rows of those tables as
    dicts keyed by column name (the same columns in every backend), JSON columns (payload,
    policy, outcome, last_error) decoded so the dicts are portable between backends."""

    row: ProgramRow
    source: str
    events: list[Event]
    checkpoint: tuple[int, bytes] | None
    inbox: list[InboxMessage]
    calls: list[dict[str, Any]]
    callbacks: list[dict[str, Any]]


class Listener(ABC):
    """A subscription to the store's wake-ups ("something may be runnable now")."""

    # Whether the last `wait` was woken by the store (a notification, or a lost connection that
    # may have swallowed one), not only by `interrupt`: a worker interrupted by its own threads
    # (a call it performs finished) need not look in the store for work. Listeners that cannot
    # tell leave it True.
    heard: bool = True

    @abstractmethod
    def wait(self, timeout: float) -> bool:
        """Sleep until woken or `timeout` seconds pass; True if woken."""

    @abstractmethod
    def interrupt(self) -> None:
        """Wake this listener's own `wait` (e.g. to stop a worker from a signal handler)."""

    @abstractmethod
    def close(self) -> None: ...


class NullListener(Listener):
    def __init__(self) -> None:
        import threading

        self._event = threading.Event()

    def wait(self, timeout: float) -> bool:
        woken = self._event.wait(max(0.0, timeout))
        self._event.clear()
        return woken

    def interrupt(self) -> None:
        self._event.set()

    def close(self) -> None:
        pass


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
    calls: list[NewCall] = field(default_factory=list)  # effects for connectors, visible once committed
    cancel_calls: list[str] = field(default_factory=list)  # keys of calls the program stopped waiting for
    # (token, channel, options) now accepting one delivery; a token already issued is opened again
    # (the program refused the delivery it got and waits for another)
    callbacks: list[tuple[str, str, dict[str, Any] | None]] = field(default_factory=list)
    # outcomes of calls this commit's worker performed in process, recorded here instead of through
    # the inbox: (key, outcome message); each call must still be claimed by `call_owner` (else Conflict)
    done_calls: list[tuple[str, Any]] = field(default_factory=list)
    call_owner: str | None = None
    # continue_as_new: the program starts over under its id with these arguments and an empty
    # history (its events, checkpoints, calls, callbacks and internal messages are deleted);
    # the commit's events, calls and callbacks are dropped, its sends and starts applied
    restart_args: dict[str, Any] | None = None


def started_data(new: NewProgram) -> dict[str, Any]:
    """The `started` event of a new program."""
    data = {"v": EVENT_VERSION, "file": new.filename, "source_hash": new.source_hash, "args": new.args,
            "parent": new.parent_id}
    if new.deployment is not None:
        data["deployment"] = new.deployment
    return data


# one encoder for every write (json.dumps with options builds a new one per call)
_encode = json.JSONEncoder(separators=(",", ":"), allow_nan=True).encode


def dumps(value: Any) -> str:
    return _encode(value)


class Store(OperationsStore):
    url: str

    # -- programs -------------------------------------------------------------
    @abstractmethod
    def create_program(self, new: NewProgram, now: float) -> bool:
        """Create a runnable program with its `started` event. False if the id exists with the
        same source and arguments (idempotent start); ProgramExists if it differs."""

    @abstractmethod
    def get_program(self, program_id: str) -> ProgramRow: ...

    def list_programs(self, status: str | None = None) -> list[ProgramRow]:
        """Every program (with `status`), oldest first."""
        return self.page_programs(ProgramQuery(status=status), limit=None).programs

    @abstractmethod
    def page_programs(self, query: ProgramQuery | None = None, limit: int | None = 100,
                      cursor: str | None = None) -> ProgramPage:
        """A page of at most `limit` programs matching `query` (None: all of them), ordered by
        creation time. Pass the page's `next_cursor` back as `cursor` (with the same query) for
        the next page; a cursor stays valid however many programs are created meanwhile.
        BadCursor for a cursor this store did not hand out."""

    @abstractmethod
    def count_programs(self) -> dict[str, int]:
        """How many programs have each status (statuses with none are left out)."""

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

    def program_and_inbox(self, claim: Claim) -> tuple[ProgramRow, list[InboxMessage]]:
        """What a slice of a claimed program starts from: its row and its inbox (what the claim
        read, the first time; stores that can read both in one round trip override this)."""
        row, inbox = claim.row, claim.inbox
        claim.row = claim.inbox = None  # once: the program's next slice starts from what it committed
        if row is not None and inbox is not None:
            return row, inbox
        return self.get_program(claim.program_id), self.inbox(claim.program_id)

    def read_for_slices(self, claims: list[Claim]) -> None:
        """Read (into `row` and `inbox`) what the slices of these claimed programs start from, where
        reading many at once saves round trips; the default leaves it to `program_and_inbox`."""

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
    def release(self, worker: str, program_id: str, fence: int, runnable: bool = False) -> None:
        """Let go of a program's lease. `runnable`: its slice did not commit, so what it had to
        do is still to do (a claim cleared the flag; left cleared, nobody would claim it again)."""

    @abstractmethod
    def commit(self, commits: list[Commit], now: float) -> None:
        """Apply the commits of one or more programs in one transaction (group commit)."""

    @abstractmethod
    def next_wake(self) -> float | None:
        """The earliest timer among waiting programs."""

    # -- wake-ups ---------------------------------------------------------------------
    @abstractmethod
    def listener(self) -> Listener:
        """Subscribe to wake-ups: sent by `notify()` from any process sharing the store."""

    @abstractmethod
    def notify(self) -> None:
        """Wake every listener (after committing something that makes work runnable)."""

    # -- moving programs ----------------------------------------------------------------
    @abstractmethod
    def export_program(self, program_id: str) -> ProgramDump: ...

    @abstractmethod
    def import_program(self, dump: ProgramDump, now: float) -> None:
        """Recreate a program exactly as dumped (runnable, no lease); ProgramExists if its id is taken."""

    @abstractmethod
    def mark_moved(self, program_id: str, destination: str, now: float) -> None:
        """Detach a live program: status "moved", never claimed here again."""

    # -- connectors: calls ------------------------------------------------------------
    @abstractmethod
    def claim_calls(self, worker: str, kind: str, names: list[str] | None, lease: float, now: float,
                    limit: int) -> list[CallClaim]:
        """Lease up to `limit` due calls of `kind` (and of one of `names`, if given). An attempt
        whose lease or timeout ran out first counts as failed (retryable) and is retried or
        given up per its policy."""

    @abstractmethod
    def heartbeat_call(self, key: str, worker: str, attempt: int, lease: float, now: float) -> bool:
        """Extend an attempt's lease (never past its timeout); False if the attempt is no longer
        this worker's to finish."""

    @abstractmethod
    def finish_call(self, key: str, worker: str, attempt: int, outcome: CallOutcome, now: float) -> str:
        """Record an attempt's outcome: "done" (delivered to the program), "retrying" (another
        attempt is scheduled) or "stale" (the attempt was given up or the call finished: ignored,
        so a result is recorded once)."""

    def finish_calls(self, done: Sequence[tuple[str, str, int, CallOutcome]], now: float) -> list[str]:
        """Record several attempts' outcomes, each (key, worker, attempt, outcome), in one
        transaction where the backend can (a connector's group commit: after a crash every
        recovered call finishes at once). Per attempt what `finish_call` says, or "unknown" for
        a key this store does not hold."""
        out = []
        for key, worker, attempt, outcome in done:
            try:
                out.append(self.finish_call(key, worker, attempt, outcome, now))
            except UnknownCall:
                out.append("unknown")
        return out

    @abstractmethod
    def get_call(self, key: str) -> CallRow: ...

    @abstractmethod
    def list_calls(self, program_id: str | None = None, status: str | None = None) -> list[CallRow]: ...

    @abstractmethod
    def next_call_due(self, kind: str) -> float | None:
        """When the earliest pending call of `kind` becomes due (or an attempt's lease ends)."""

    # -- connectors: callbacks ------------------------------------------------------
    @abstractmethod
    def deliver_callback(self, token: str, request: Any, now: float) -> str:
        """Persist the first delivery to a callback and wake its program: "accepted";
        "duplicate" for later deliveries; "closed" once its program has ended; "unknown" for
        tokens never issued."""

    @abstractmethod
    def get_callback(self, token: str) -> CallbackRow | None: ...

    # -- what people are shown about calls ------------------------------------------------
    @abstractmethod
    def list_attempts(self, program_id: str) -> list[AttemptRow]:
        """The failed attempts of a program's calls, oldest first."""

    @abstractmethod
    def register_served(self, server: str, names: Sequence[str], now: float) -> None:
        """A worker or function server says it serves these function names (its heartbeat)."""

    @abstractmethod
    def last_served(self, names: Sequence[str]) -> dict[str, float]:
        """When some server last said it serves each of these names (names never served are left out)."""

    @abstractmethod
    def unserved_calls(self, now: float, quiet: float) -> list[UnservedCall]:
        """Function calls pending for `quiet` seconds or more whose name no server has
        registered in the last `quiet` seconds, grouped by name."""

    @abstractmethod
    def close(self) -> None: ...
