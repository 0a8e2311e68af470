"""Advance one program by one *slice*: restore it, deliver what arrived, run it
until it waits on something that has not happened yet, and commit.

A slice commits atomically: the events it produced (effects requested and
answered, messages received, timers fired, output, tasks, the end), a
checkpoint of the machine, the program's new status and wake-up time, and its
outgoing effects (messages to other programs, child programs). Nothing
reaches the outside before that commit — the AMBROSIA rule — so a crash
anywhere in a slice loses nothing and repeats nothing: the slice simply runs
again from the last checkpoint.

Resuming reads the latest checkpoint and only the events after it, so its
cost does not grow with the program's history. When the checkpoint is older
than the log (`checkpoint_every > 1`), the deterministic machine *replays*
the recorded events; a replay that asks for anything different from the
record is a loud `ReplayDiverged` error.
"""

from __future__ import annotations

import json
import os
import random as host_random
import secrets
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowmetal.errors import CheckFailed, FlowmetalError, SnapshotError
from flowmetal.lang.program import Program, compile_cached, source_hash
from flowmetal.machine.api import Blocked, Completed, Failed, Limits, Machine
from flowmetal.machine.objects import EffectRequest
from flowmetal.machine.tasks import Cancelled, Timeout
from flowmetal.machine.tracebacks import error_line
from flowmetal.runtime import actions, deployments, outside
from flowmetal.runtime import secrets as handles
from flowmetal.runtime.arguments import BadArguments, check_arguments, defines_main
from flowmetal.store.base import (
    FINISHED,
    Claim,
    Commit,
    Event,
    NewCall,
    NewProgram,
    ProgramRow,
    ReservedChannel,
    Store,
    user_channel,
)
from flowmetal.store.operations import DeploymentRow
from flowmetal.store.retry import normalize as normalize_retry

Clock = Callable[[], float]
# waits answered by an inbox message on the wait's channel
_CHANNEL_WAITS = ("receive", "child_result", "call", "http", "callback_wait")
DEFAULT_PUBLIC_URL = "http://127.0.0.1:8400"
# Each attempt of a call() is given up (and retried per its policy) after this many seconds
# unless the program says otherwise (`timeout=None`: no limit): a function that hangs must not
# hold its call forever. There is no default for the call as a whole: a durable program waits
# out a function server's outage (see docs/actions.md).
DEFAULT_CALL_TIMEOUT = 300.0
# what running the machine records (everything else in a log is a request or an answer)
_RUN_PRODUCTS = ("output", "task_spawned", "task_finished")
# A runtime that keeps each program's machine in memory between slices (a worker) snapshots a
# program only when a slice crosses a multiple of this many events: the snapshot is the
# costliest part of a small slice, the next slice here starts from the machine in memory, and
# a resume anywhere else (another worker, after a crash, `inspect`) replays at most this many
# recorded events from the last checkpoint — a bounded cost, whatever the history's length.
DEFERRED_CHECKPOINT_SPAN = 16


def revive(kind: str, raw: Any) -> Any:
    """The value a program gets for a recorded result (the same live and in a replay)."""
    if kind == "start" and isinstance(raw, dict):
        return actions.ChildHandle(str(raw["id"]))
    return outside.revive(kind, raw)



def _own_channel(action: str, channel: Any) -> None:
    """A program sends and receives on its own channels, never on the runtime's (`__...`)."""
    try:
        user_channel(channel)
    except ReservedChannel as e:
        raise ValueError(f"{action}(): {e}") from None

class ReplayDiverged(FlowmetalError):
    """Re-running a program did not reproduce its recorded history."""


@dataclass
class SliceResult:
    program_id: str
    status: str
    commit: Commit | None
    output: list[str] = field(default_factory=list)
    machine: Machine | None = None  # the machine after the slice, reusable once the commit lands
    filename: str = ""  # the program's file and creation time, for logs and traces
    created_at: float = 0.0
    late: list[float] = field(default_factory=list)  # how late each timer it fired was (seconds)
    started_ns: int = 0  # when the slice began (epoch ns) and how long it ran (seconds)
    seconds: float = 0.0


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


def _error_record(e: BaseException) -> dict[str, Any]:
    return {"type": type(e).__name__, "message": str(e)}


def _rebuild_error(rec: dict[str, Any]) -> BaseException:
    connector_error = outside.error_from_record(rec)
    if connector_error is not None:
        return connector_error
    kinds: dict[str, type[BaseException]] = {
        "Timeout": Timeout, "Cancelled": Cancelled, "ChildFailed": actions.ChildFailed,
        "ValueError": ValueError, "TypeError": TypeError, "RuntimeError": RuntimeError, "KeyError": KeyError,
    }
    return kinds.get(rec.get("type", ""), RuntimeError)(rec.get("message", ""))


class Runtime:
    """Runs programs of one store. `clock` is injectable so tests can skip days."""

    def __init__(self, store: Store, *, clock: Clock = time.time, limits: Limits | None = None,
                 checkpoint_every: int = 1, rng: host_random.Random | None = None,
                 reuse_machines: bool = False, public_url: str | None = None) -> None:
        self.store = store
        # callback URLs are built from it; recorded in the program's history when issued
        self.public_url = (public_url or os.environ.get("FLOWMETAL_PUBLIC_URL") or DEFAULT_PUBLIC_URL).rstrip("/")
        self.clock = clock
        self.limits = limits
        self.checkpoint_every = max(1, checkpoint_every)
        self.rng = rng or host_random.Random()
        self.host = actions.host_module()
        self._programs: dict[str, Program] = {}
        self._deployments: dict[tuple[str, int], DeploymentRow] = {}
        # machines whose last slice this process committed: the next slice can skip the
        # checkpoint read and restore (the store's seq check catches any stale one)
        self._machines: OrderedDict[str, tuple[int, Machine]] = OrderedDict()
        self.machine_cache_size = 256 if reuse_machines else 0

    # -- starting -------------------------------------------------------------------
    def start(self, path: str, args: dict[str, Any] | None = None, program_id: str | None = None,
              source: str | None = None) -> str:
        """Create a program (checked first); idempotent when `program_id` is given. `path` may name
        a deployment instead of a file (see runtime/deployments.py): its latest version starts."""
        if source is None and deployments.is_deployment_name(path):
            return self.start_deployment(path, args, program_id)
        if source is None:
            try:
                source = Path(path).read_text(encoding="utf-8")
            except OSError as e:
                raise FlowmetalError(f"{path}: {e.strerror or e}") from None
            except UnicodeDecodeError as e:
                raise FlowmetalError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
            except ValueError as e:  # e.g. a NUL in the path
                raise FlowmetalError(f"{path!r}: {e}") from None
        program = compile_cached(source, path)  # raises CheckFailed
        self._programs[program.source_hash] = program
        _check_args(program, source, dict(args or {}), path)  # raises BadArguments: nothing is stored
        pid = program_id or uuid.uuid4().hex[:12]
        self.store.create_program(
            NewProgram(pid, path, source, program.source_hash, dict(args or {})), self.clock())
        return pid

    def start_deployment(self, name: str, args: dict[str, Any] | None = None, program_id: str | None = None,
                         version: int | None = None) -> str:
        """Start a version (default: the latest) of a deployment; idempotent when `program_id` is given."""
        new = self.deployed_program(name, program_id or uuid.uuid4().hex[:12], dict(args or {}), version)
        self.store.create_program(new, self.clock())
        return new.id

    def deployed_program(self, name: str, program_id: str, args: dict[str, Any], version: int | None = None,
                         parent_id: str | None = None) -> NewProgram:
        dep = self.deployment(name, version)
        _, source = self.store.source(dep.source_hash)
        program = compile_cached(source, dep.main)  # raises CheckFailed
        self._programs.setdefault(program.source_hash, program)
        _check_args(program, source, args, f"{dep.ref} ({dep.main})")
        return NewProgram(program_id, dep.main, source, dep.source_hash, args, parent_id=parent_id,
                          deployment=dep.ref, retain=dep.retain)

    def deployment(self, name: str, version: int | None = None) -> DeploymentRow:
        """A deployment's version (cached: a version never changes), or its latest."""
        if version is not None and (name, version) in self._deployments:
            return self._deployments[name, version]
        dep = self.store.get_deployment(name, version)
        self._deployments[name, dep.version] = dep
        return dep

    def program_for(self, row: ProgramRow) -> Program:
        program = self._programs.get(row.source_hash)
        if program is None:
            filename, source = self.store.source(row.source_hash)
            program = compile_cached(source, filename)
            self._programs[row.source_hash] = program
        return program

    # -- loading ----------------------------------------------------------------------
    def remember(self, result: SliceResult) -> None:
        """Keep the machine of a committed slice for the program's next slice."""
        c = result.commit
        if (c is None or result.machine is None or c.status in ("completed", "failed", "cancelled")
                or c.restart_args is not None or not self.machine_cache_size):
            self._machines.pop(result.program_id, None)
            return
        self._machines[result.program_id] = (c.base_seq + len(c.events), result.machine)
        self._machines.move_to_end(result.program_id)
        while len(self._machines) > self.machine_cache_size:
            self._machines.popitem(last=False)

    def load(self, row: ProgramRow, upto: int | None = None) -> tuple[Machine, int]:
        """The machine at the program's last event (or at `upto`), and that event's number."""
        if upto is None:
            cached = self._machines.pop(row.id, None)
            if cached is not None and cached[0] == row.last_seq:
                return cached[1], row.last_seq
        program = self.program_for(row)
        ck = self.store.checkpoint(row.id, upto)
        if ck is not None:
            seq, data = ck
            machine = Machine.restore(data, host_module=self.host, limits=self.limits, program=program,
                                      codec_extensions=actions.register_codec)
        else:
            seq = 1
            machine = Machine(program, row.args, limits=self.limits, host_module=self.host,
                              codec_extensions=actions.register_codec)
        end = upto if upto is not None else row.last_seq
        if end > seq:
            self._replay(row.id, machine, self.store.events(row.id, seq, end))
            seq = end
        return machine, seq

    def _replay(self, program_id: str, machine: Machine, events: list[Event]) -> None:
        """Re-run the machine through recorded events exactly as the slices ran it: each run's
        products (output, task moves, new requests) are checked against the record, and the
        answers recorded between two runs (a slice answers every due wait before it runs the
        machine again) are all delivered before the next run — one by one, tasks could be
        scheduled in another order than they were."""
        queue = events
        i = 0
        if queue and queue[0].type == "cancel_requested":  # cancelled at the start of a slice
            i = self._replay_cancel(program_id, machine, queue, 0)
        while i < len(queue):
            outcome = machine.run()
            text = machine.take_output()
            while i < len(queue) and queue[i].type in _RUN_PRODUCTS:
                if queue[i].type == "output":
                    expected = queue[i].data["text"]
                    if not text.startswith(expected):
                        raise ReplayDiverged(f"{program_id}: event {queue[i].seq}: replay printed {text[:60]!r}, "
                                             f"the record says {expected[:60]!r}")
                    text = text[len(expected):]
                i += 1
            if text:
                raise ReplayDiverged(f"{program_id}: replay printed {text[:60]!r}, which the record does not have")
            if isinstance(outcome, Completed | Failed):
                if i < len(queue) and queue[i].type not in ("completed", "failed", "cancelled"):
                    raise ReplayDiverged(f"{program_id}: replay ended at event {queue[i].seq} ({queue[i].type})")
                return
            assert isinstance(outcome, Blocked)
            pending = {r.id: r for r in outcome.requests}
            progressed = False
            while i < len(queue):
                ev = queue[i]
                req_id = int(ev.data.get("request") or 0)
                if ev.type == "effect_requested":
                    req = pending.get(req_id)
                    if req is None:
                        break  # asked by the next run
                    if req.name != ev.data["kind"] or to_json(list(req.args)) != ev.data["args"]:
                        raise ReplayDiverged(f"{program_id}: event {ev.seq}: the record says "
                                             f"{ev.data['kind']}{ev.data['args']}, replay asked for "
                                             f"{req.name}{to_json(list(req.args))}")
                    i += 1
                    continue
                if ev.type == "cancel_requested":
                    i = self._replay_cancel(program_id, machine, queue, i)
                    progressed = True
                    continue
                if ev.type == "effect_completed":
                    kind = pending[req_id].name if req_id in pending else ""
                    machine.resolve(req_id, revive(kind, ev.data.get("result")))
                elif ev.type in ("message_received", "timer_fired"):
                    machine.resolve(req_id, ev.data.get("message"))
                elif ev.type == "effect_failed":
                    machine.reject(req_id, _rebuild_error(ev.data["error"]))
                elif ev.type in _RUN_PRODUCTS or ev.type in ("completed", "failed", "cancelled"):
                    break  # what the next run made
                else:
                    raise ReplayDiverged(f"{program_id}: unexpected event {ev.seq} ({ev.type}) during replay")
                i += 1
                progressed = True
            if not progressed and i < len(queue) and queue[i].type not in _RUN_PRODUCTS:
                raise ReplayDiverged(f"{program_id}: replay stalled at event {queue[i].seq} ({queue[i].type})")

    @staticmethod
    def _replay_cancel(program_id: str, machine: Machine, queue: list[Event], i: int) -> int:
        """Replay a cancellation as `_Slice.run` made it: `Cancelled` recorded for every pending
        request, then the machine cancelled (which also wakes tasks blocked on other tasks)."""
        i += 1
        for req_id in sorted(machine.pending):
            ev = queue[i] if i < len(queue) else None
            if ev is None or ev.type != "effect_failed" or int(ev.data.get("request") or 0) != req_id:
                raise ReplayDiverged(f"{program_id}: replaying a cancellation expected request {req_id} to fail, "
                                     f"the record has {ev.type if ev else 'nothing'}")
            i += 1
        machine.cancel()
        return i

    # -- running a slice -------------------------------------------------------------------
    def run_slice(self, claim: Claim, outcomes: dict[str, Any] | None = None) -> SliceResult:
        """One slice of the claimed program. `outcomes`: results of calls the worker performed in
        process (key -> outcome message), delivered here and recorded in this slice's commit."""
        started_ns, t0 = time.time_ns(), time.perf_counter()
        row = self.store.get_program(claim.program_id)
        if row.status in FINISHED:
            return SliceResult(row.id, row.status, None)
        try:
            machine, base = self.load(row)
            s = _Slice(self, row, claim, machine, base, outcomes or {})
            result = s.run()
            result.late = s.late
        except (CheckFailed, ReplayDiverged, SnapshotError) as e:
            # permanent: retrying cannot help, so the program fails loudly (its log is kept)
            result = self._fail_row(row, claim, f"{type(e).__name__}: {e}")
        result.filename, result.created_at = row.filename, row.created_at
        result.started_ns, result.seconds = started_ns, time.perf_counter() - t0
        return result

    def _fail_row(self, row: ProgramRow, claim: Claim, message: str) -> SliceResult:
        commit = Commit(row.id, claim.fence, row.last_seq, status="failed", error=message,
                        events=[("failed", {"error": message, "traceback": message})])
        return SliceResult(row.id, "failed", commit)


class _Slice:
    """One slice of one program (a helper object so the steps can share state)."""

    def __init__(self, rt: Runtime, row: ProgramRow, claim: Claim, machine: Machine, base: int,
                 outcomes: dict[str, Any]) -> None:
        self.rt = rt
        self.outcomes = outcomes
        self.row = row
        self.claim = claim
        self.machine = machine
        self.commit = Commit(row.id, claim.fence, row.last_seq)
        self.waits: dict[int, dict[str, Any]] = {
            int(w["request"]): w for w in ((row.waiting_on or {}).get("waits") or [])
        }
        self.inbox = self.rt.store.inbox(row.id)
        self.output: list[str] = []
        self.now = rt.clock()
        self.known_tasks = {t.id: t.status for t in machine.tasks.values()}
        self.cancel_done = bool((row.waiting_on or {}).get("cancelling"))
        self.cancel_pending = False
        self.late: list[float] = []

    def event(self, etype: str, **data: Any) -> None:
        self.commit.events.append((etype, data))

    def apply_cancel(self) -> None:
        """Raise `Cancelled` at every current wait (recorded, so a replay does the same)."""
        m = self.machine
        self.cancel_pending, self.cancel_done = False, True
        self.event("cancel_requested")
        for req_id in sorted(m.pending):
            self.event("effect_failed", request=req_id, error=_error_record(Cancelled("the program was cancelled")))
            call = self.waits.get(req_id, {}).get("call")
            if call:
                self.commit.cancel_calls.append(call)
        m.cancel()
        self.waits.clear()

    def run(self) -> SliceResult:
        try:
            return self._run()
        except _Restart as r:
            return self.finish_restart(r.new_args)

    def _run(self) -> SliceResult:
        m = self.machine
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
            if kind in _CHANNEL_WAITS:
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
                    self.event("effect_failed", request=req_id, error=_error_record(err))
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
        self.machine.reject(req_id, _rebuild_error(record))

    def child_outcome(self, req_id: int, w: dict[str, Any], message: Any) -> None:
        status = message.get("status") if isinstance(message, dict) else None
        if status == "completed":
            self.event("effect_completed", request=req_id, result=message.get("result"))
            self.machine.resolve(req_id, message.get("result"))
        else:
            err = actions.ChildFailed(f"program {w['child']} {status}: {message.get('error')}")
            self.event("effect_failed", request=req_id, error=_error_record(err))
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
            record = _error_record(e)
            self.event("effect_failed", request=req.id, error=record)
            m.reject(req.id, _rebuild_error(record))  # exactly what a replay will raise
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
            return self.rt.rng.random()
        if name == "randint":
            return self.rt.rng.randint(*args, **kw)
        if name == "uuid4":
            return str(uuid.UUID(int=self.rt.rng.getrandbits(128), version=4))
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
            out = {"token": token, "url": f"{self.rt.public_url}/callbacks/{token}"}
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
                                     url=f"{self.rt.public_url}/callbacks/{token}")
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
        target = self.rt.store.get_program(str(program_id))  # UnknownProgram -> error in the program
        if target.status in FINISHED:
            raise ValueError(f"send(): program {program_id!r} has already {target.status}")
        self.commit.sends.append((str(program_id), str(channel), message))

    def start_child(self, req: EffectRequest, path: Any = None, **args: Any) -> actions.ChildHandle:
        if not isinstance(path, str) or not path:
            raise TypeError("start() needs a program: a deployment's name or a .flow path")
        refs: list[dict[str, Any]] = []
        handles.extract(args, (), refs)
        if refs:  # arguments are stored in the child's `started` event: pass a secret's name instead
            raise TypeError("start(): a secret cannot be an argument of a program (arguments are stored); pass its "
                            "name and call secret(name) in the program")
        _require_json(args, "start(): the arguments")
        # (a later run, after continue_as_new, must not take the ids of the earlier runs' children)
        child_id = f"{self.row.id}.{req.id}" + (f".r{self.row.run}" if self.row.run > 1 else "")
        if deployments.is_deployment_name(path):
            try:
                new = self.rt.deployed_program(path, child_id, dict(args), parent_id=self.row.id)
            except CheckFailed as e:
                raise ValueError(f"start(): deployment {path!r} is not a valid program:\n{e}") from None
            except FlowmetalError as e:
                raise ValueError(f"start(): {e}") from None
        elif self.row.deployment is not None:
            new = self.bundled_child(path, child_id, dict(args))
        else:
            new = self.file_child(path, child_id, dict(args))
        self.commit.starts.append(new)
        return actions.ChildHandle(child_id)

    def bundled_child(self, path: str, child_id: str, args: dict[str, Any]) -> NewProgram:
        """A program of this program's deployment version (never a file of the node's disk)."""
        assert self.row.deployment is not None
        name, _, version = self.row.deployment.rpartition("@")
        dep = self.rt.deployment(name, int(version))
        target = deployments.resolve(self.row.filename, path)
        if target not in dep.files:
            raise ValueError(f"start(): {path!r} is not part of deployment {dep.ref} (deploy it with the program)")
        _, source = self.rt.store.source(dep.files[target])
        self.check_child(source, target, path, args)
        return NewProgram(child_id, target, source, dep.files[target], args, parent_id=self.row.id,
                          deployment=dep.ref, retain=self.row.retain)

    def file_child(self, path: str, child_id: str, args: dict[str, Any]) -> NewProgram:
        base = Path(self.row.filename).parent
        target = Path(path) if Path(path).is_absolute() else base / path
        try:
            source = target.read_text(encoding="utf-8")
        except OSError as e:
            raise ValueError(f"start(): cannot read {path!r}: {e.strerror or e}") from None
        self.check_child(source, str(target), path, args)
        return NewProgram(child_id, str(target), source, source_hash(source), args, parent_id=self.row.id,
                          retain=self.row.retain)

    def check_child(self, source: str, filename: str, path: str, args: dict[str, Any]) -> None:
        try:
            program = compile_cached(source, filename)
        except CheckFailed as e:
            raise ValueError(f"start(): {path!r} is not a valid program:\n{e}") from None
        self.rt._programs[program.source_hash] = program
        try:
            _check_args(program, source, args, path)
        except BadArguments as e:
            raise TypeError(f"start(): {e}") from None

    # -- bookkeeping --------------------------------------------------------------------------
    def flush_output(self) -> None:
        text = self.machine.take_output()
        if text:
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
        every = self.rt.checkpoint_every
        if every == 1 and self.rt.machine_cache_size:
            every = DEFERRED_CHECKPOINT_SPAN
        if every == 1 or n // every != base // every:
            return self.machine.snapshot()
        return None

    def finish_waiting(self) -> SliceResult:
        c = self.commit
        c.status = "waiting"
        dues = [w["due"] for w in self.waits.values() if w.get("due") is not None]
        c.wake_at = min(dues) if dues else None
        c.waiting_on = {"waits": list(self.waits.values()), "cancelling": self.cancel_done or None}
        # a message may already be queued for a wait recorded in this slice
        c.runnable = any(w["kind"] in _CHANNEL_WAITS and any(x.channel == w["channel"] for x in self.inbox)
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


def _check_args(program: Program, source: str, args: dict[str, Any], where: str) -> None:
    if program.defines_main and not defines_main(source):
        return  # `main` is not a plain top-level def: it binds its arguments when called
    check_arguments(source, args, where)


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


__all__ = ["ReplayDiverged", "Runtime", "SliceResult", "error_line"]
