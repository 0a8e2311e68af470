"""The HTTP API's request and response types, declared once (msgspec Structs).

Both sides of the contract come from these declarations: the routes decode and
validate every body and query string with them (`api/operations.py`), and
`/openapi.json` is generated from them (`api/openapi.py`), so the document cannot
allow what the server refuses. Responses are converted to their type before they
are sent, which checks the store's rows against the document on every answer.

Request types forbid unknown fields; constraints (`Meta`) are validation and
schema at once. A `Meta(description=...)` becomes the field's description.
"""

from __future__ import annotations

import calendar
import re
from typing import Annotated, Any, Literal

from msgspec import UNSET, Meta, Struct, UnsetType

# program ids appear in URLs and call keys ("ID:SEQ"); children get "ID.N". `(?![\s\S])` rather
# than `$`: Python's `$` also matches before a final newline, JSON Schema's does not
PROGRAM_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}(?![\s\S])"

# a deployment's name (runtime/deployments.py): not ending in ".flow", which names a file
DEPLOYMENT_PATTERN = r"^(?!.*\.flow(?![\s\S]))[A-Za-z0-9][A-Za-z0-9._-]{0,99}(?![\s\S])"
CHANNEL_PATTERN = r"^(?!__)"
Status = Literal["running", "waiting", "completed", "failed", "cancelled", "moved"]
CallStatus = Literal["pending", "claimed", "done", "failed", "cancelled"]
NonEmpty = Annotated[str, Meta(min_length=1, max_length=1 << 20)]
WorkerId = Annotated[str, Meta(min_length=1, max_length=256, description="the worker's id (fences its answers)")]
Attempt = Annotated[int, Meta(ge=1, le=1 << 31, description="the attempt number the claim gave (its fencing token)")]
Lease = Annotated[float, Meta(ge=0.1, le=3600.0, description="seconds until the attempt is given up without a heartbeat")]
Args = Annotated[dict[str, Any], Meta(description="keyword arguments of main()")]
ProgramId = Annotated[str, Meta(pattern=PROGRAM_ID_PATTERN,
                                description="starting twice with one id, source and args is idempotent")]
Iso = Annotated[str | None, Meta(description="the same time in ISO-8601 (UTC)")]
# an RFC 3339 date-time (a pattern, not `format: date-time`, which JSON Schema does not enforce);
# every string it matches is a time `parse_datetime` computes (a day past the month's end rolls over)
DATETIME_PATTERN = (r"^[1-9][0-9]{3}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[Tt ]([01][0-9]|2[0-3]):[0-5][0-9]"
                    r":[0-5][0-9](\.[0-9]{1,9})?([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])?(?![\s\S])")
DateTime = Annotated[str, Meta(pattern=DATETIME_PATTERN)]

# what a value that does not match a pattern is told (instead of the regular expression)
PATTERN_HELP = {
    PROGRAM_ID_PATTERN: "use 1-128 letters, digits, '.', '_', '@' or '-', starting with a letter or digit",
    DEPLOYMENT_PATTERN: "not a deployment name (1-100 letters, digits, '.', '_' or '-', starting with a letter "
                        "or digit, not ending in .flow; deploy files with `flowmetal deploy`)",
    DATETIME_PATTERN: "expected an RFC 3339 date-time such as 2026-01-31T09:30:00Z",
    CHANNEL_PATTERN: "names starting with '__' are reserved",
}


class _Request(Struct, forbid_unknown_fields=True, omit_defaults=True):
    pass


class _Response(Struct, omit_defaults=True, forbid_unknown_fields=True):
    """(Unknown fields are refused: a store row that grew a field fails loudly until its
    type here says so, instead of the field silently missing from the answer.)"""


# -- requests ------------------------------------------------------------------------------------
class StartFromSource(_Request):
    """Start a program from its source text."""

    source: Annotated[str, Meta(max_length=1 << 20)]
    filename: Annotated[str, Meta(min_length=1, max_length=1024)] = "program.flow"
    args: Args = {}
    id: ProgramId | UnsetType = UNSET


class StartFromPath(_Request):
    """Start a program from a file the server reads (relative to its working directory)."""

    path: Annotated[str, Meta(min_length=1, max_length=4096)]
    args: Args = {}
    id: ProgramId | UnsetType = UNSET


class StartDeployment(_Request):
    """Start a deployed program by name (`flowmetal deploy`), its current version or a pinned one."""

    program: Annotated[str, Meta(pattern=DEPLOYMENT_PATTERN, description="the deployment's name")]
    version: Annotated[int, Meta(ge=1, le=1 << 31)] | UnsetType = UNSET
    args: Args = {}
    id: ProgramId | UnsetType = UNSET


class Message(_Request):
    message: Any
    channel: Annotated[str, Meta(min_length=1, max_length=256, pattern=CHANNEL_PATTERN,
                                 description="names starting with '__' are reserved")] = "inbox"


class Claim(_Request):
    names: Annotated[list[Annotated[str, Meta(min_length=1, max_length=1024)]], Meta(min_length=1, max_length=1000)]
    worker: WorkerId
    wait: Annotated[float, Meta(ge=0, description="long-poll up to this many seconds (the server caps it)")] = 0.0
    lease: Lease = 30.0
    limit: Annotated[int, Meta(ge=1, le=100)] = 1


class Heartbeat(_Request):
    worker: WorkerId
    attempt: Attempt
    lease: Lease = 30.0


class Complete(_Request):
    worker: WorkerId
    attempt: Attempt
    result: Any = None


class RemoteError(Struct, forbid_unknown_fields=False):
    type: str
    message: str


class Fail(_Request):
    worker: WorkerId
    attempt: Attempt
    error: RemoteError
    retryable: bool = True
    retry_after: Annotated[float, Meta(ge=0, le=86400.0)] | None = None


# -- query strings ---------------------------------------------------------------------------------
class ListQuery(Struct):
    status: Annotated[list[Status], Meta(description="only programs with one of these statuses (repeat it)")] = []
    file: Annotated[str, Meta(min_length=1, max_length=1024,
                              description="only programs whose file name contains this text")] | UnsetType = UNSET
    created_since: Annotated[DateTime, Meta(description="created at or after (RFC 3339; UTC if no zone)")] \
        | UnsetType = UNSET
    created_before: Annotated[DateTime, Meta(description="created before (RFC 3339; UTC if no zone)")] \
        | UnsetType = UNSET
    order: Annotated[Literal["asc", "desc"], Meta(description="by creation time")] = "asc"
    limit: Annotated[int, Meta(ge=1, le=1000, description="at most this many programs")] = 100
    cursor: Annotated[str, Meta(min_length=1, max_length=1024,
                                description="`next_cursor` of the previous page")] | UnsetType = UNSET


class ResultQuery(Struct):
    wait: Annotated[float, Meta(ge=0, description="long-poll up to this many seconds (the server caps it)")] = 0.0


class HistoryQuery(Struct):
    after: Annotated[int, Meta(ge=0, le=1 << 53, description="only events with a larger sequence number")] = 0
    limit: Annotated[int, Meta(ge=1, le=10_000, description="at most this many events")] = 1000


class StateQuery(Struct):
    at: Annotated[int, Meta(ge=1, le=1 << 53, description="the event number (default: the latest)")] \
        | UnsetType = UNSET


def parse_datetime(text: str) -> float:
    """The epoch time of a string matching DATETIME_PATTERN."""
    m = re.match(r"(\d+)-(\d+)-(\d+).(\d+):(\d+):(\d+)(\.\d+)?(.*)", text)
    assert m is not None, text
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    at = calendar.timegm((year, month, 1, 0, 0, 0)) + (day - 1) * 86400 + hour * 3600 + minute * 60 + second
    zone = m.group(8).upper()
    if zone not in ("", "Z"):
        sign = 1 if zone[0] == "+" else -1
        at -= sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    return at + float(m.group(7) or 0.0)


# -- responses ------------------------------------------------------------------------------------
class ErrorBody(Struct, omit_defaults=True):
    type: str
    message: str
    diagnostics: list[dict[str, Any]] | UnsetType = UNSET


class Error(Struct):
    """Every failure: 4xx for what the client can mend, 503 when the store is unreachable."""

    error: ErrorBody


class Program(_Response):
    id: str
    status: Status
    file: str
    source_hash: str
    args: dict[str, Any]
    events: int
    created_at: float
    created_at_iso: Iso
    updated_at: float
    updated_at_iso: Iso
    waiting_on: Any
    wake_at: float | None
    wake_at_iso: Iso
    parent: str | None
    deployment: Annotated[str | None, Meta(description="NAME@VERSION when started from a deployment")]
    run: Annotated[int, Meta(description="1, then one more at each continue_as_new")]
    result: Any | UnsetType = UNSET
    error: str | UnsetType = UNSET
    warnings: list[str] | UnsetType = UNSET
    waiting_for: Annotated[list[str], Meta(
        description="what a waiting program waits for, in its words (`call billing.refund (attempt 2, next in "
                    "4 s)`, `receive on \"go\"`, `callback URL`); names a call no function server serves")] \
        | UnsetType = UNSET
    unread: Annotated[list[str], Meta(
        description="messages waiting on channels the program is not receiving on, one line per channel "
                    "(with a program's status, not in listings)")] | UnsetType = UNSET


class ProgramList(_Response):
    programs: list[Program]
    next_cursor: Annotated[str | None, Meta(description="pass as `cursor` for the next page; null on the last")]


class Outcome(_Response):
    id: str
    status: Status
    result: Any | UnsetType = UNSET
    error: str | UnsetType | None = UNSET


class History(_Response):
    events: Annotated[list[dict[str, Any]], Meta(
        description="each event: program, seq, type, at, at_iso and the type's own fields")]
    last_seq: int


class State(_Response):
    id: str
    seq: int
    tasks: list[dict[str, Any]]
    globals: dict[str, str]


class Queued(_Response):
    id: str
    channel: str
    status: Literal["queued"]


class CancelRequested(_Response):
    id: str
    status: Literal["cancel_requested"]


class CallClaim(_Response):
    key: str
    program: str
    kind: str
    name: str
    payload: Annotated[Any, Meta(description="for functions: {\"args\": [...], \"kwargs\": {...}}")]
    attempt: int
    deadline: float | None


class Claimed(_Response):
    calls: list[CallClaim]


class HeartbeatAnswer(_Response):
    ok: Annotated[bool, Meta(description="false if the attempt is no longer this worker's")]


class Finished(_Response):
    status: Literal["done", "retrying", "stale"]


class FailedAttempt(_Response):
    key: str
    attempt: int
    name: str
    worker: str | None
    error: Annotated[dict[str, Any], Meta(
        description="type, message and, for a Python function, its traceback (truncated)")]
    at: float
    at_iso: Iso


class Call(_Response):
    key: str
    program: str
    kind: str
    name: str
    payload: Any
    status: CallStatus
    attempts: int
    lost: Annotated[int, Meta(description="of the attempts, those lost with the worker that held them "
                                          "(run again at once; not counted against the retry policy)")]
    next_at: float | None
    next_at_iso: Iso
    outcome: Any
    last_error: Any
    created_at: float
    created_at_iso: Iso
    updated_at: float
    updated_at_iso: Iso
    failed_attempts: Annotated[list[FailedAttempt], Meta(
        description="every failed attempt, oldest first (in a program's list of calls)")] | UnsetType = UNSET


class CallList(_Response):
    calls: list[Call]


class Accepted(_Response):
    status: Literal["accepted"]


class Health(_Response):
    status: Literal["ok"]


class Ready(_Response):
    status: Literal["ready"]
    store: str
