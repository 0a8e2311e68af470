"""Foreign functions and HTTP requests performed inside the worker's own process, at one
commit per call.

The general path for a call costs three commits (the request; the connector's
outcome; the program's next slice) and two wake-ups. When the worker itself
serves the function (`--functions`), it can do better without bending the
AMBROSIA rule: the slice that requests the call commits it as already claimed
by this worker and keeps the program's lease; only after that commit does the
function run (on a thread pool). Its result is handed straight to the
program's next slice, and recorded in that slice's commit together with
whatever the program does next (typically the next call's request).

Anything unusual falls back to the general path, through the store: a failed
attempt (retries follow the call's policy), a call still running after
`hold` seconds (the program's lease is released, so its other tasks and
messages are not held up), a worker stopping. A crash loses nothing: the call
row is claimed with a lease like any other, and is retried after it.
"""

from __future__ import annotations

import contextlib
import queue
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

from flowmetal.store.base import CallClaim, CallOutcome, Claim, Commit, Store


class Performer(Protocol):
    def perform(self, claim: CallClaim) -> CallOutcome: ...


class Functions(Performer, Protocol):
    functions: dict[str, Callable[..., object]]


@dataclass
class _Program:
    claim: Claim  # the program's lease, kept while its calls run
    calls: dict[str, CallClaim] = field(default_factory=dict)
    since: float = 0.0  # when its first call in flight started
    released: bool = False


class InlineCalls:
    def __init__(self, store: Store, functions: Functions | None, http: Performer | None, owner: str,
                 lease: float, *, concurrency: int = 16, hold: float = 2.0,
                 wake: Callable[[], None] = lambda: None) -> None:
        self.store = store
        self.functions = functions
        self.http = http
        self.owner = owner
        self.lease = lease
        self.hold = hold
        self.wake = wake
        self.pool = ThreadPoolExecutor(concurrency, thread_name_prefix="flowmetal-inline")
        self.programs: dict[str, _Program] = {}
        # calls still running whose program's lease was let go: their outcomes go through the store
        self.orphans: dict[str, CallClaim] = {}
        self.done: queue.SimpleQueue[tuple[str, str, CallOutcome]] = queue.SimpleQueue()
        # outcomes of calls whose program had a slice running (or not yet committed) when they
        # finished: looked at again once that slice is committed, since a second slice of the
        # same program at once would be refused (and the outcome lost until the call's lease ran
        # out and the call ran again)
        self.deferred: list[tuple[str, str, CallOutcome]] = []

    # -- before a commit: which new calls this worker takes ---------------------------------
    def adopt(self, commit: Commit) -> None:
        """Mark the commit's calls of functions served here as claimed by this worker."""
        mine = [c for c in commit.calls if self.serves(c.kind, c.name)]
        for call in mine:
            call.owner, call.lease = self.owner, self.lease
        entry = self.programs.get(commit.program_id)
        still_running = entry is not None and bool(entry.calls) and not entry.released
        if mine or still_running:
            commit.keep_lease = commit.status not in ("completed", "failed", "cancelled")
        commit.call_owner = self.owner

    def serves(self, kind: str, name: str) -> bool:
        if kind == "http":
            return self.http is not None
        return kind == "function" and self.functions is not None and name in self.functions.functions

    # -- after the commit landed --------------------------------------------------------
    def launch(self, claim: Claim, commit: Commit, now: float) -> None:
        """Start the adopted calls of a committed slice."""
        mine = [c for c in commit.calls if c.owner == self.owner]
        entry = self.programs.get(claim.program_id)
        if not mine:
            return
        if entry is None or entry.released:
            entry = self.programs[claim.program_id] = _Program(claim, since=now)
        for call in mine:
            deadline = now + call.attempt_timeout if call.attempt_timeout is not None else None
            cc = CallClaim(call.key, call.program_id, call.kind, call.name, call.payload, 1, deadline)
            entry.calls[call.key] = cc
            self.pool.submit(self._perform, claim.program_id, cc)

    def _perform(self, program_id: str, claim: CallClaim) -> None:
        try:
            performer = self.http if claim.kind == "http" else self.functions
            assert performer is not None  # adopt() took only calls this process serves
            outcome = performer.perform(claim)
        except Exception as e:  # a bug in the connector must not lose the call
            outcome = CallOutcome(ok=False, error={"type": type(e).__name__, "message": str(e)})
        self.done.put((program_id, claim.key, outcome))
        self.wake()

    # -- the worker's loop ----------------------------------------------------------------
    def held(self) -> list[str]:
        return [pid for pid, e in self.programs.items() if not e.released]

    def running_calls(self) -> list[CallClaim]:
        return [c for e in self.programs.values() for c in e.calls.values()] + list(self.orphans.values())

    def completed(self, now: float, running: Collection[str] = ()) -> list[tuple[Claim, dict[str, object]]]:
        """Programs to continue now with the successful outcomes of their calls (program lease
        still held); everything else is settled through the store here. Programs in `running`
        (their slice handed out and not yet committed) are left for a later look."""
        ready: dict[str, dict[str, object]] = {}
        deferred, self.deferred = self.deferred, []
        for program_id, key, outcome in [*deferred, *self._finished()]:
            if program_id in running and key not in self.orphans:
                self.deferred.append((program_id, key, outcome))
                continue
            orphan = self.orphans.pop(key, None)
            if orphan is not None:
                self.settle(orphan, outcome, now)
                continue
            entry = self.programs.get(program_id)
            call = entry.calls.pop(key, None) if entry is not None else None
            if entry is None or call is None:
                continue
            if outcome.ok and not entry.released:
                ready.setdefault(program_id, {})[key] = {"ok": True, "result": outcome.result, "attempts": 1}
            else:
                self.settle(call, outcome, now)
                if not entry.released:
                    self.release(program_id)
        out = []
        for program_id, outcomes in ready.items():
            entry = self.programs[program_id]
            if entry.released:  # a failure among its calls let go of the program meanwhile
                for key, message in outcomes.items():
                    self._settle_success(program_id, key, message, now)
                continue
            out.append((entry.claim, outcomes))
        self._forget_idle()
        return out

    def _finished(self) -> Iterator[tuple[str, str, CallOutcome]]:
        """(program id, call key, outcome) of the calls finished since the last look."""
        while True:
            try:
                yield self.done.get_nowait()
            except queue.Empty:
                return

    def _settle_success(self, program_id: str, key: str, message: object, now: float) -> None:
        """Record through the store a successful outcome (message) no slice will record."""
        result = message.get("result") if isinstance(message, dict) else None
        self.settle(CallClaim(key, program_id, "function", "", None, 1, None), CallOutcome(ok=True, result=result),
                    now)

    def settle(self, call: CallClaim, outcome: CallOutcome, now: float) -> None:
        """The general path: the store records the attempt (and delivers or schedules a retry)."""
        with contextlib.suppress(Exception):
            if self.store.finish_call(call.key, self.owner, call.attempt, outcome, now) == "done":
                self.store.notify()

    def release(self, program_id: str) -> None:
        """Let go of the program's lease while its calls still run (their outcomes then go
        through the store)."""
        entry = self.programs.get(program_id)
        if entry is None or entry.released:
            return
        self._orphan(entry)
        with contextlib.suppress(Exception):
            self.store.release(self.owner, program_id, entry.claim.fence)

    def after_slice(self, claim: Claim, commit: Commit | None, landed: bool, leftovers: dict[str, object],
                    now: float) -> None:
        """Bookkeeping once a continuation slice committed (`landed`) or did not."""
        entry = self.programs.get(claim.program_id)
        if entry is None:
            return
        if commit is None or not landed or not commit.keep_lease:
            self._orphan(entry)  # the commit (or its absence) gave the lease back
        if entry.calls:
            entry.since = now
        unrecorded = dict(leftovers)  # outcomes the program no longer waits for
        if commit is not None and not landed:
            unrecorded.update(commit.done_calls)
        for key, message in unrecorded.items():
            self._settle_success(claim.program_id, key, message, now)
        self._forget_idle()

    def _orphan(self, entry: _Program) -> None:
        """The program's lease is no longer held: its running calls settle through the store."""
        entry.released = True
        self.orphans.update(entry.calls)
        entry.calls.clear()

    def expire_holds(self, now: float) -> None:
        for program_id, entry in list(self.programs.items()):
            if entry.calls and not entry.released and now - entry.since > self.hold:
                self.release(program_id)

    def _forget_idle(self) -> None:
        for program_id in [p for p, e in self.programs.items() if not e.calls and e.released]:
            del self.programs[program_id]

    def busy(self) -> bool:
        return bool(self.programs or self.orphans)

    def finished(self) -> bool:
        """Calls have finished that `completed` has not looked at yet."""
        return not self.done.empty() or bool(self.deferred)

    def close(self, now: float) -> None:
        """On stop: let running calls finish and record them through the store."""
        self.pool.shutdown(wait=True)
        for program_id in list(self.programs):
            self.release(program_id)
        deferred, self.deferred = self.deferred, []
        for _, key, outcome in [*deferred, *self._finished()]:
            call = self.orphans.pop(key, None)
            if call is not None:
                self.settle(call, outcome, now)
