"""One *slice* of one program: deliver what arrived, run the machine until it
waits on something that has not happened yet, and describe what to commit.

A slice is pure computation over its inputs — the program's row, its inbox,
the outcomes of calls performed in process, the time and a random source —
and produces a `Commit` (events, a checkpoint, outgoing effects) that the
worker writes atomically. The few things a slice may need to read on the way
(another program's status for `send`, a child program's source for `start`)
come through a `SliceEnv`, so the same code runs in the worker's own process
(tests, `Runtime.run_slice`) and inside an executor process, which can read
nothing itself (see runtime/executor.py).

Limits a slice enforces itself (its `Quotas`): output, events, messages and
child programs per slice, child programs per program, and history length. A
program over one fails with `QuotaExceeded` (or `OutputLimitExceeded`), and
nothing else of that slice is kept.
"""

from __future__ import annotations

import json
import random
import secrets
import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol

from flowmetal.machine.api import Blocked, Completed, Failed, Machine
from flowmetal.machine.objects import EffectRequest, MemoryLimitExceeded, OutputLimitExceeded
from flowmetal.machine.tasks import Cancelled, Timeout
from flowmetal.runtime import actions, outside
from flowmetal.runtime import secrets as handles
from flowmetal.runtime.reads import LiveReads
from flowmetal.store.base import (
    FINISHED,
    Commit,
    InboxMessage,
    NewCall,
    NewProgram,
    ProgramRow,
    ReservedChannel,
    user_channel,
)
from flowmetal.store.retry import normalize as normalize_retry

# waits answered by an inbox message on the wait's channel
CHANNEL_WAITS = ("receive", "child_result", "call", "http", "callback_wait")
# A runtime that keeps each program's machine in memory between slices (a worker) snapshots a
# program only when a slice crosses a multiple of this many events: the snapshot is the
# costliest part of a small slice, the next slice here starts from the machine in memory, and
# a resume anywhere else (another worker, after a crash, `inspect`) replays at most this many
# recorded events from the last checkpoint — a bounded cost, whatever the history's length.
DEFERRED_CHECKPOINT_SPAN = 16
# Each attempt of a call() is given up (and retried per its policy) after this many seconds
# unless the program says otherwise (`timeout=None`: no limit): a function that hangs must not
# hold its call forever. There is no default for the call as a whole: a durable program waits
# out a function server's outage (see docs/actions.md).
DEFAULT_CALL_TIMEOUT = 300.0


@dataclass(frozen=True)
class Quotas:
    """What one program may do; every figure is documented in docs/security.md."""

    output_per_slice: int = 1 << 20  # characters printed in one slice
    events_per_slice: int = 10_000  # events one slice records
    messages_per_slice: int = 1_000  # send() calls in one slice
    children_per_slice: int = 100  # start() calls in one slice
    children_per_program: int = 1_000  # start() calls over the program's life
    history_events: int = 100_000  # events in one program's history


class SliceEnv(Protocol):
    """What a slice reads from outside itself while it runs."""

    rng: random.Random
    public_url: str  # callback URLs are built from it
    quotas: Quotas

    @property
    def checkpoint_span(self) -> int:
        """Snapshot when a slice crosses a multiple of this many events."""

    def program_status(self, program_id: str) -> str | None:
        """Another program's status (for `send`); None if there is no such program."""

    def child(self, parent_id: str, filename: str, deployment: str | None, retain: float | None, path: str,
              child_id: str, args: dict[str, Any]) -> NewProgram:
        """The program `start(path)` creates (a deployment, a program of the parent's deployment, or
        a file of the node's program directories, checked); ValueError with a message that quotes
        no file's contents."""


@dataclass
class SliceResult:
    program_id: str
    status: str
    commit: Commit | None
    output: list[str] = field(default_factory=list)
    machine: Machine | None = None  # the machine after the slice, reusable once the commit lands
    out_of_memory: bool = False  # the process that ran it should be replaced
    filename: str = ""  # the program's file and creation time, for logs and traces
    created_at: float = 0.0
    late: list[float] = field(default_factory=list)  # how late each timer it fired was (seconds)
    started_ns: int = 0  # when the slice began (epoch ns) and how long it ran (seconds)
    seconds: float = 0.0

    def stamp(self, row: ProgramRow, started_ns: int, seconds: float) -> None:
        self.filename, self.created_at = row.filename, row.created_at
        self.started_ns, self.seconds = started_ns, seconds


def revive(kind: str, raw: Any) -> Any:
    """The value a program gets for a recorded result (the same live and in a replay)."""
    if kind == "start" and isinstance(raw, dict):
        return actions.ChildHandle(str(raw["id"]))
    return outside.revive(kind, raw)


_JSON_SCALARS = (str, int, float, bool)


def to_json(value: Any) -> Any:
    """A JSON form of a program value for the event log (exact when possible)."""
    if value is None or type(value) in _JSON_SCALARS:
        return value
    try:
        json.dumps(value, allow_nan=True)
        return value
    except (TypeError, ValueError):
        return {"$repr": repr(value)}


def _own_channel(action: str, channel: Any) -> None:
    """A program sends and receives on its own channels, never on the runtime's (`__...`)."""
    try:
        user_channel(channel)
    except ReservedChannel as e:
        raise ValueError(f"{action}(): {e}") from None


def error_record(e: BaseException) -> dict[str, Any]:
    return {"type": type(e).__name__, "message": str(e)}


def rebuild_error(rec: dict[str, Any]) -> BaseException:
    connector_error = outside.error_from_record(rec)
    if connector_error is not None:
        return connector_error
    kinds: dict[str, type[BaseException]] = {
        "Timeout": Timeout, "Cancelled": Cancelled, "ChildFailed": actions.ChildFailed,
        "ValueError": ValueError, "TypeError": TypeError, "RuntimeError": RuntimeError, "KeyError": KeyError,
    }
    return kinds.get(rec.get("type", ""), RuntimeError)(rec.get("message", ""))


def failed_commit(row: ProgramRow, fence: int, message: str, status: str = "failed") -> Commit:
    """A slice that keeps nothing of what it did but the program's end: `status` ("failed" or
    "cancelled") with `message`, and the parent told."""
    data: dict[str, Any] = {"error": message, "stopped": True}  # a replay stops before it
    if status == "failed":
        data["traceback"] = message
    commit = Commit(row.id, fence, row.last_seq, status=status, error=message, events=[(status, data)])
    if row.parent_id:
        commit.sends.append((row.parent_id, f"__child__:{row.id}",
                             {"status": status, "result": None, "error": message}))
    return commit


MEMORY_MESSAGE = "MemoryLimitExceeded: the program ran out of memory (the executor's --memory-limit)"


def _out_of_memory(error: BaseException) -> bool:
    """The machine's report of a host allocation that failed (not a size it refused beforehand)."""
    return (isinstance(error, MemoryLimitExceeded) and not isinstance(error, OutputLimitExceeded)
            and "ran out of memory" in str(error))


def internal_error(e: BaseException) -> str:
    """The error a program fails with when running its slice failed in Flowmetal itself."""
    return (f"InternalError: running the program's slice failed in Flowmetal itself "
            f"({type(e).__name__}: {str(e)[:200]})")


class UnknownProgramError(LookupError):
    """`send()` to a program that does not exist."""


UnknownProgramError.__name__ = "UnknownProgram"  # as recorded in the program's history


class SliceAbort(BaseException):
    """The slice stops and the program fails with `message` (a quota): nothing else it did
    is kept. A BaseException so that no handler of a request's errors turns it into one."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Slice:
    """One slice of one program (a helper object so the steps can share state)."""

    def __init__(self, env: SliceEnv, row: ProgramRow, fence: int, machine: Machine, inbox: list[InboxMessage],
                 outcomes: dict[str, Any], now: float) -> None:
        self.env = env
        self.quotas = env.quotas
        self.outcomes = outcomes
        self.row = row
        self.fence = fence
        self.machine = machine
        self.commit = Commit(row.id, fence, row.last_seq)
        self.waits: dict[int, dict[str, Any]] = {
            int(w["request"]): w for w in ((row.waiting_on or {}).get("waits") or [])
        }
        self.inbox = list(inbox)
        self.output: list[str] = []
        self.output_size = 0
        self.sent = 0
        self.started = 0
        self.now = now
        self.known_tasks = {t.id: t.status for t in machine.tasks.values()}
        self.cancel_done = bool((row.waiting_on or {}).get("cancelling"))
        self.cancel_pending = False
        self.children_before = int((row.waiting_on or {}).get("children") or 0)
        self.late: list[float] = []

    def event(self, etype: str, **data: Any) -> None:
        events = self.commit.events
        events.append((etype, data))
        n = len(events)
        if n > self.quotas.events_per_slice:
            raise SliceAbort(f"QuotaExceeded: the program recorded more than {self.quotas.events_per_slice} "
                             "events in one slice without waiting")
        if self.row.last_seq + n >= self.quotas.history_events:
            raise SliceAbort(f"QuotaExceeded: the program's history reached {self.quotas.history_events} events")

    def apply_cancel(self) -> None:
        """Raise `Cancelled` at every current wait (recorded, so a replay does the same)."""
        m = self.machine
        self.cancel_pending, self.cancel_done = False, True
        self.event("cancel_requested")
        for req_id in sorted(m.pending):
            self.event("effect_failed", request=req_id, error=error_record(Cancelled("the program was cancelled")))
            call = self.waits.get(req_id, {}).get("call")
            if call:
                self.commit.cancel_calls.append(call)
        m.cancel()
        self.waits.clear()

    def run(self) -> SliceResult:
        try:
            result = self._run()
        except _Restart as r:
            result = self.finish_restart(r.new_args)
        except SliceAbort as abort:
            result = SliceResult(self.row.id, "failed", failed_commit(self.row, self.fence, abort.message),
                                 self.output)
        result.late = self.late
        return result

    def _run(self) -> SliceResult:
        m = self.machine
        m.reads = LiveReads(self.now, self.env.rng, self.commit.events, self.quotas.events_per_slice)
        # a cancel lands at the program's current wait; one requested before the program ever
        # waited lands at its first wait
        self.cancel_pending = self.row.cancel_requested and not self.cancel_done
        if self.cancel_pending and (m.pending or any(t.awaiting for t in m.tasks.values())):
            self.apply_cancel()
        self.deliver()
        while True:
            outcome = m.run()
            self.flush_output()
            self.record_tasks()
            if isinstance(outcome, Completed):
                return self.finish_completed(outcome.value)
            if isinstance(outcome, Failed):
                return self.finish_failed(outcome)
            assert isinstance(outcome, Blocked)
            if self.cancel_pending:
                self.apply_cancel()
                continue
            progressed = False
            for req in outcome.requests:
                if req.id in self.waits:
                    continue
                if self.handle_new(req):
                    progressed = True
            self.drop_abandoned()
            if self.deliver():
                progressed = True
            if not progressed:
                return self.finish_waiting()

    def drop_abandoned(self) -> None:
        """Forget the waits the machine withdrew by itself (a cancelled task's, a wait's timer
        that lost its race): their calls and HTTP requests are abandoned, as a scoped timeout
        abandons them (never started if this slice requested them; else cancelled, and an
        outcome that already arrived is dropped)."""
        m = self.machine
        for req_id in [k for k in self.waits if k not in m.pending]:
            w = self.waits.pop(req_id)
            key = w.get("call")
            if not key:
                continue
            fresh = [c for c in self.commit.calls if c.key != key]
            if len(fresh) < len(self.commit.calls):
                self.commit.calls = fresh
                continue
            self.commit.cancel_calls.append(key)
            msg = next((x for x in self.inbox if x.channel == w["channel"]), None)
            if msg is not None:
                self.inbox.remove(msg)
                self.commit.consumed.append(msg.id)

    # -- inputs ------------------------------------------------------------------------
    def deliver(self) -> bool:
        """Answer the waits whose time or message has come; True if any was answered."""
        m = self.machine
        delivered = False
        for req_id in sorted(self.waits):
            w = self.waits[req_id]
            if req_id not in m.pending:
                continue
            kind = w["kind"]
            if w.get("call") in self.outcomes:  # performed in this process: no trip through the inbox
                message = self.outcomes.pop(w["call"])
                self.commit.done_calls.append((w["call"], message))
                del self.waits[req_id]
                delivered = True
                self.call_outcome(req_id, w, message)
                continue
            if kind in CHANNEL_WAITS:
                msg = next((x for x in self.inbox if x.channel == w["channel"]), None)
                if msg is not None:
                    self.inbox.remove(msg)
                    self.commit.consumed.append(msg.id)
                    del self.waits[req_id]
                    delivered = True
                    if kind == "receive":
                        self.event("message_received", request=req_id, channel=msg.channel, message=msg.message)
                        m.resolve(req_id, msg.message)
                    elif kind == "child_result":
                        self.child_outcome(req_id, w, msg.message)
                    elif kind == "callback_wait":
                        self.answer(req_id, kind, msg.message)
                    else:
                        self.call_outcome(req_id, w, msg.message)
                    continue
            due = w.get("due")
            if due is not None and due <= self.now:
                del self.waits[req_id]
                delivered = True
                self.late.append(self.now - due)
                if kind in ("sleep", "timer") and not w.get("by_deadline"):
                    self.event("timer_fired", request=req_id)
                    m.resolve(req_id, None)
                else:
                    what = str(w.get("what", kind))
                    err = Timeout(f"{what} timed out" if "(" in what else f"{what}() timed out")
                    self.event("effect_failed", request=req_id, error=error_record(err))
                    m.reject(req_id, err)
                    if w.get("call"):  # nobody waits for it any more
                        self.commit.cancel_calls.append(w["call"])
        return delivered

    def answer(self, req_id: int, kind: str, raw: Any) -> None:
        self.event("effect_completed", request=req_id, result=raw)
        self.machine.resolve(req_id, revive(kind, raw))

    def call_outcome(self, req_id: int, w: dict[str, Any], message: Any) -> None:
        """A connector's final word on a call: its result, or the error after the retries."""
        if message.get("ok"):
            self.answer(req_id, w["kind"], message.get("result"))
            return
        remote = message.get("error") or {}
        attempts = message.get("attempts", 1)
        if w["kind"] == "http":
            record = {"type": "HttpError", "message": f"{w['what']} failed after {attempts} attempt(s): "
                      f"{remote.get('type', 'Error')}: {remote.get('message', '')}", "status": None,
                      "url": w.get("url", "")}
        else:
            record = {"type": "CallError", "message": f"{remote.get('type', 'Error')}: {remote.get('message', '')}",
                      "remote": {"type": remote.get("type", "Error"), "message": remote.get("message", "")},
                      "attempts": attempts}
        self.event("effect_failed", request=req_id, error=record)
        self.machine.reject(req_id, rebuild_error(record))

    def child_outcome(self, req_id: int, w: dict[str, Any], message: Any) -> None:
        status = message.get("status") if isinstance(message, dict) else None
        if status == "completed":
            self.event("effect_completed", request=req_id, result=message.get("result"))
            self.machine.resolve(req_id, message.get("result"))
        else:
            err = actions.ChildFailed(f"program {w['child']} {status}: {message.get('error')}")
            self.event("effect_failed", request=req_id, error=error_record(err))
            self.machine.reject(req_id, err)

    # -- new requests -----------------------------------------------------------------------
    def handle_new(self, req: EffectRequest) -> bool:
        """Record a new request; answer it now if it is immediate. True if answered."""
        m = self.machine
        # (a later run, after continue_as_new, numbers its events from 1 again: its keys say which run)
        run = f"r{self.row.run}:" if self.row.run > 1 else ""
        key = f"{self.row.id}:{run}{self.commit.base_seq + len(self.commit.events) + 1}"
        self.event("effect_requested", request=req.id, task=req.task, kind=req.name, args=to_json(list(req.args)),
                   kwargs=to_json(req.kwargs), key=key, deadline=req.deadline)
        try:
            value = self.immediate(req, key)
        except _Wait as w:
            self.waits[req.id] = w.info
            return False
        except _Restart:
            raise
        except Exception as e:
            record = error_record(e)
            self.event("effect_failed", request=req.id, error=record)
            m.reject(req.id, rebuild_error(record))  # exactly what a replay will raise
            return True
        raw = {"id": value.id} if isinstance(value, actions.ChildHandle) else to_json(value)
        self.event("effect_completed", request=req.id, result=raw)
        m.resolve(req.id, revive(req.name, raw))
        return True

    def immediate(self, req: EffectRequest, key: str) -> Any:
        name, args, kw = req.name, req.args, req.kwargs
        now = self.now
        if name == "now":
            return now
        if name == "random":
            return self.env.rng.random()
        if name == "randint":
            return self.env.rng.randint(*args, **kw)
        if name == "uuid4":
            return str(uuid.UUID(int=self.env.rng.getrandbits(128), version=4))
        if name == "program_id":
            return self.row.id
        if name == "deadline":
            return now + float(args[0])
        if name == "send":
            return self.send(*args, **kw)
        if name == "start":
            return self.start_child(req, *args, **kw)
        if name in ("sleep", "timer"):
            seconds = float(args[0]) if args else float(kw.get("seconds", 0))
            due = now + max(0.0, seconds)
            info: dict[str, Any] = {"request": req.id, "kind": name, "due": due, "task": req.task}
            if req.deadline is not None and req.deadline < due:
                info["due"], info["by_deadline"] = req.deadline, True
            raise _Wait(info)
        if name == "receive":
            channel = args[0] if args else kw.get("channel", "inbox")
            _own_channel("receive", channel)
            timeout = args[1] if len(args) > 1 else kw.get("timeout")
            return self.wait_channel(req, "receive", str(channel), timeout)
        if name == "child_result":
            timeout = args[1] if len(args) > 1 else kw.get("timeout")
            return self.wait_channel(req, "child_result", f"__child__:{args[0]}", timeout, child=args[0])
        if name == "call":
            return self.start_call(req, key, *args, **kw)
        if name == "http":
            return self.start_http(req, key, *args, **kw)
        if name == "callback":
            options = _callback_options(*args, **kw)
            token = secrets.token_urlsafe(24)
            self.commit.callbacks.append((token, f"__cb__:{token}", options or None))
            out = {"token": token, "url": f"{self.env.public_url}/callbacks/{token}"}
            return dict(out, options=options) if options else out
        if name == "callback_reject":
            token, options = args[0], args[1]
            reason = args[2] if len(args) > 2 else kw.get("reason", "")
            if not isinstance(reason, str) or len(reason) > 1000:
                raise TypeError("reject() takes the reason the answer was refused (a str of up to 1000 characters)")
            self.commit.callbacks.append((token, f"__cb__:{token}", dict(options or {}, rejected=reason or "refused")))
            return None
        if name == "continue_as_new":
            if args:
                raise TypeError("continue_as_new() takes the new run's arguments as keywords only")
            _require_json(kw, "continue_as_new(): the arguments")
            raise _Restart(dict(kw))
        if name == "callback_wait":
            token = args[0]
            timeout = args[1] if len(args) > 1 else kw.get("timeout")
            return self.wait_channel(req, "callback_wait", f"__cb__:{token}", timeout, what="wait",
                                     url=f"{self.env.public_url}/callbacks/{token}")
        raise RuntimeError(f"unknown durable action {name!r}")

    def start_call(self, req: EffectRequest, key: str, name: Any = None, *args: Any,
                   timeout: Any = DEFAULT_CALL_TIMEOUT, retry: Any = None, **kwargs: Any) -> Any:
        if not isinstance(name, str) or not name:
            raise TypeError("call() needs the function's name (a non-empty str) first")
        refs: list[dict[str, Any]] = []  # where secret handles were: the function server fills them in
        payload = {"args": handles.extract(list(args), ("args",), refs),
                   "kwargs": handles.extract(kwargs, ("kwargs",), refs)}
        _require_json(payload, f"call({name!r}): the arguments")
        if refs:
            payload["secrets"] = refs
        attempt_timeout = _seconds(timeout, "call(): timeout")
        self.commit.calls.append(NewCall(key, self.row.id, f"__call__:{key}", "function", name, payload,
                                         normalize_retry(retry), attempt_timeout, req.deadline))
        return self.wait_channel(req, "call", f"__call__:{key}", None, call=key, what=f"call({name!r})",
                                 name=name)

    def start_http(self, req: EffectRequest, key: str, method: Any = None, url: Any = None, *,
                   headers: Any = None, json: Any = None, data: Any = None, params: Any = None,
                   auth: Any = None, timeout: Any = 30, retry: Any = None) -> Any:
        if not isinstance(method, str) or method.upper() not in actions.HTTP_METHODS:
            raise ValueError(f"http.request(): unknown method {method!r} (use one of {', '.join(actions.HTTP_METHODS)})")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ValueError(f"http.request(): the url must be an http:// or https:// URL, not {url!r}")
        if json is not None and data is not None:
            raise TypeError("http.request(): pass json= or data=, not both")
        if headers is not None and not (isinstance(headers, dict) and all(
                isinstance(k, str) and isinstance(v, str | handles.Secret) for k, v in headers.items())):
            raise TypeError("http.request(): headers must be a dict of str to str (or to a secret)")
        for k, v in (headers or {}).items():
            if handles.mentions_handle(v):
                raise ValueError(f"http.request(): header {k!r} holds the text of a secret handle ({v!r}): only the "
                                 "handle itself is replaced by the value; pass it, e.g. "
                                 "secret(\"NAME\", format=\"Bearer {}\")")
        if data is not None and not isinstance(data, str | bytes | dict):
            raise TypeError("http.request(): data must be str, bytes or a dict of form fields")
        if isinstance(data, bytes):
            data = data.decode("latin-1")
        attempt_timeout = _seconds(timeout, "http.request(): timeout")
        refs: list[dict[str, Any]] = []  # where secret handles were: the HTTP connector fills them in
        payload = {"method": method.upper(), "url": url, "headers": handles.extract(headers or {}, ("headers",), refs),
                   "json": handles.extract(json, ("json",), refs), "data": handles.extract(data, ("data",), refs),
                   "params": handles.extract(params, ("params",), refs), "timeout": attempt_timeout,
                   "idempotency_key": key}
        if auth is not None:
            payload["auth"] = _http_auth(auth, refs)
        _require_json(payload, "http.request(): the request")
        if refs:
            payload["secrets"] = refs
        # the attempt's lease outlives the request's own timeout, so the connector reports it
        lease_timeout = None if attempt_timeout is None else attempt_timeout + 10.0
        self.commit.calls.append(NewCall(key, self.row.id, f"__call__:{key}", "http", "http", payload,
                                         normalize_retry(retry), lease_timeout, req.deadline))
        what = f"http.request({method.upper()} {url})"
        return self.wait_channel(req, "http", f"__call__:{key}", None, call=key, what=what, url=url)

    def wait_channel(self, req: EffectRequest, kind: str, channel: str, timeout: Any, **extra: Any) -> Any:
        due = None if timeout is None else self.now + float(timeout)
        if req.deadline is not None and (due is None or req.deadline < due):
            due = req.deadline
        raise _Wait({"request": req.id, "kind": kind, "channel": channel, "due": due, "task": req.task, **extra})

    def send(self, program_id: Any, message: Any, channel: str = "inbox") -> None:
        _own_channel("send", channel)
        try:
            json.dumps(message, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise TypeError(f"send(): the message must be JSON-representable ({e})") from None
        self.sent += 1
        if self.sent > self.quotas.messages_per_slice:
            raise SliceAbort(f"QuotaExceeded: the program sent more than {self.quotas.messages_per_slice} "
                             "messages in one slice")
        status = self.env.program_status(str(program_id))
        if status is None:
            raise UnknownProgramError(f"no program with id {str(program_id)!r}")
        if status in FINISHED:
            raise ValueError(f"send(): program {program_id!r} has already {status}")
        self.commit.sends.append((str(program_id), str(channel), message))

    def start_child(self, req: EffectRequest, path: Any = None, **args: Any) -> actions.ChildHandle:
        q = self.quotas
        if len(self.commit.starts) >= q.children_per_slice:
            raise SliceAbort(f"QuotaExceeded: the program started more than {q.children_per_slice} child "
                             "programs in one slice")
        if self.children_before + len(self.commit.starts) >= q.children_per_program:
            raise SliceAbort(f"QuotaExceeded: the program started more than {q.children_per_program} child programs")
        if not isinstance(path, str) or not path:
            raise TypeError("start() needs a program: a deployment's name or a .flow path")
        refs: list[dict[str, Any]] = []
        handles.extract(args, (), refs)
        if refs:  # arguments are stored in the child's `started` event: pass a secret's name instead
            raise TypeError("start(): a secret cannot be an argument of a program (arguments are stored); pass its "
                            "name and call secret(name) in the program")
        _require_json(args, "start(): the arguments")
        # (a later run, after continue_as_new, must not take the ids of the earlier runs' children)
        row = self.row
        child_id = f"{row.id}.{req.id}" + (f".r{row.run}" if row.run > 1 else "")
        try:
            new = self.env.child(row.id, row.filename, row.deployment, row.retain, path, child_id, dict(args))
        except ValueError as e:  # refused or missing: recorded (and replayed) as a ValueError
            raise ValueError(str(e)) from None
        self.commit.starts.append(new)
        return actions.ChildHandle(child_id)

    # -- bookkeeping --------------------------------------------------------------------------
    def flush_output(self) -> None:
        text = self.machine.take_output()
        if text:
            self.output_size += len(text)
            if self.output_size > self.quotas.output_per_slice:
                raise SliceAbort(f"OutputLimitExceeded: the program printed more than "
                                 f"{self.quotas.output_per_slice} characters in one slice")
            self.output.append(text)
            self.event("output", text=text)

    def record_tasks(self) -> None:
        for t in self.machine.tasks.values():
            old = self.known_tasks.get(t.id)
            if old is None and t.id != 1:
                self.event("task_spawned", task=t.id)
            if t.status in ("done", "failed") and old not in ("done", "failed") and t.id != 1:
                self.event("task_finished", task=t.id, status=t.status)
            self.known_tasks[t.id] = t.status

    def checkpoint(self) -> bytes | None:
        n, base = self.commit.base_seq + len(self.commit.events), self.commit.base_seq
        every = self.env.checkpoint_span
        if every == 1 or n // every != base // every:
            return self.machine.snapshot()
        return None

    def finish_waiting(self) -> SliceResult:
        c = self.commit
        c.status = "waiting"
        dues = [w["due"] for w in self.waits.values() if w.get("due") is not None]
        c.wake_at = min(dues) if dues else None
        c.waiting_on = {"waits": list(self.waits.values()), "cancelling": self.cancel_done or None}
        children = self.children_before + len(c.starts)
        if children:
            c.waiting_on["children"] = children  # for the quota of children per program
        # a message may already be queued for a wait recorded in this slice
        c.runnable = any(w["kind"] in CHANNEL_WAITS and any(x.channel == w["channel"] for x in self.inbox)
                         for w in self.waits.values())
        c.checkpoint = self.checkpoint() if c.events else None
        return SliceResult(self.row.id, "waiting", c if c.events or c.consumed else None, self.output,
                           self.machine)

    def finish_restart(self, new_args: dict[str, Any]) -> SliceResult:
        """continue_as_new: the store starts the program over (see Commit.restart_args); what this
        slice sent and started stands, the rest of its work goes with the old history."""
        c = self.commit
        c.restart_args = new_args
        c.events, c.calls, c.callbacks, c.cancel_calls, c.done_calls = [], [], [], [], []
        c.checkpoint, c.status, c.runnable, c.waiting_on, c.wake_at = None, "running", True, None, None
        return SliceResult(self.row.id, "running", c, self.output)

    def finish_completed(self, value: Any) -> SliceResult:
        c = self.commit
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as e:
            message = f"TypeError: the result of main() must be JSON-representable: {e}"
            c.status, c.error = "failed", message
            self.event("failed", error=message, traceback=message)
        else:
            c.status, c.result = "completed", value
            self.event("completed", result=value)
        self.notify_parent()
        # no snapshot of the final state: nothing resumes a finished program, and inspecting its
        # end replays the slice from the last checkpoint (about a millisecond saved per program)
        return SliceResult(self.row.id, c.status, c, self.output)

    def finish_failed(self, outcome: Failed) -> SliceResult:
        c = self.commit
        if isinstance(outcome.error, MemoryError) or _out_of_memory(outcome.error):
            # the executor's memory limit (an address-space limit) refused an allocation: the
            # program fails like any other over its limit, nothing of the slice is kept, and the
            # process (its heap in whatever state that left it) is replaced
            result = SliceResult(self.row.id, "failed", failed_commit(self.row, self.fence, MEMORY_MESSAGE),
                                 self.output)
            result.out_of_memory = True
            return result
        if isinstance(outcome.error, Cancelled):
            c.status, c.error = "cancelled", outcome.error_line
            self.event("cancelled", error=outcome.error_line)
        else:
            c.status, c.error = "failed", outcome.error_line
            self.event("failed", error=outcome.error_line, traceback=outcome.traceback)
        self.notify_parent()
        return SliceResult(self.row.id, c.status, c, self.output)

    def notify_parent(self) -> None:
        if self.row.parent_id:
            c = self.commit
            message = {"status": c.status, "result": c.result, "error": c.error}
            self.commit.sends.append((self.row.parent_id, f"__child__:{self.row.id}", message))


def _http_auth(auth: Any, refs: list[dict[str, Any]]) -> dict[str, Any]:
    """`auth=secret(...)`: an `Authorization: Bearer VALUE` header (or the secret's own format);
    `auth=(user, password)`: basic authentication (either may be a secret)."""
    if isinstance(auth, handles.Secret):
        bearer = auth if auth._format is not None else handles.Secret(auth._name, "Bearer {}")
        return {"header": handles.extract(bearer, ("auth", "header"), refs)}
    if isinstance(auth, tuple | list) and len(auth) == 2 and all(isinstance(x, str | handles.Secret) for x in auth):
        return {"basic": handles.extract(list(auth), ("auth", "basic"), refs)}
    raise TypeError("http.request(): auth must be a secret (a bearer token) or a (user, password) pair")


def _callback_options(title: Any = None, choices: Any = None, json: Any = False) -> dict[str, Any]:
    """`callback(title=None, choices=None, json=False)`: what the link's page shows and what a
    delivery must look like (see api/callback_page.py)."""
    options: dict[str, Any] = {}
    if title is not None:
        if not isinstance(title, str) or len(title) > 500:
            raise TypeError("callback(): title must be a str of up to 500 characters")
        options["title"] = title
    if choices is not None:
        if (not isinstance(choices, list | tuple) or not 1 <= len(choices) <= 20
                or not all(isinstance(c, str) and 0 < len(c) <= 100 for c in choices)
                or len(set(choices)) != len(choices)):
            raise TypeError("callback(): choices must be a list of 1 to 20 distinct non-empty strs")
        options["choices"] = list(choices)
    if not isinstance(json, bool):
        raise TypeError("callback(): json must be True or False")
    if json:
        options["json"] = True
    return options


def _require_json(value: Any, what: str) -> None:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{what} must be JSON-representable ({e})") from None


def _seconds(value: Any, what: str) -> float | None:
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{what} must be a positive number of seconds, not {value!r}")
    return float(value)


class _Wait(Exception):
    def __init__(self, info: dict[str, Any]) -> None:
        self.info = info


class _Restart(Exception):
    """continue_as_new(**new_args): ends the slice and the run."""

    def __init__(self, new_args: dict[str, Any]) -> None:
        self.new_args = new_args
