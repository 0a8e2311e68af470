"""Workers: claim programs that have something to do, run a slice of each,
and commit — the work of several programs in one transaction when busy.

A claim is a lease with a fencing token; a heartbeat thread renews the leases
of claims in progress (but not of a slice that has overrun its budget). Between
claims a worker sleeps until it is notified, its earliest timer is due, or a
slow fallback poll comes round — never a busy loop.

Slices run where the runtime says: in executor processes (runtime/executors.py;
what `flowmetal worker`, `run` and `serve` do), or here (`LocalSlices`, for
tests). Slices are committed as they finish, those that finished while the
previous group was being committed together (group commit); a slice still
computing commits with a later group, so one long slice holds up no other
program. SIGTERM and SIGINT stop the worker at once: slices
still computing are abandoned (nothing of them is kept; their programs are
released for the next worker).
"""

from __future__ import annotations

import contextlib
import copy
import os
import signal
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flowmetal.observe import metrics
from flowmetal.runtime import telemetry
from flowmetal.runtime.driver import Runtime, SliceResult
from flowmetal.runtime.executors import ExecutorError, ExecutorPool, Job, Stopped
from flowmetal.runtime.inline import Functions, InlineCalls, Performer
from flowmetal.runtime.waits import UnservedWatch
from flowmetal.store.base import (
    FINISHED,
    Claim,
    Commit,
    Conflict,
    LeaseLost,
    Listener,
    NullListener,
    StoreError,
    StoreUnavailable,
    UnknownProgram,
)
from flowmetal.store.shared import HOST, holder_id

DEFAULT_LEASE = 10.0
FALLBACK_POLL = 1.0
MAX_BACKOFF = 5.0  # between attempts while the store is unreachable
STOP_COMMIT_WAIT = 2.0  # seconds a stopping worker gives the commit of its last finished slices
GROUP_WAIT = 0.1  # seconds a round waits for a slice to finish before it looks for other work
# seconds a program continued here may go on from what its commits wrote, without reading its
# row and inbox again (unless the store woke us meanwhile): how late at most it sees a message
# or a cancel that came without a wake-up
FRESH_FOR = 0.1


@dataclass
class WorkerStats:
    slices: int = 0
    commits: int = 0
    lost: int = 0
    errors: list[str] = field(default_factory=list)


class Worker:
    def __init__(self, runtime: Runtime, *, concurrency: int = 16, lease: float = DEFAULT_LEASE,
                 only: str | None = None, on_slice: Callable[[SliceResult], None] | None = None,
                 notify: bool = True, functions: Functions | None = None, http: Performer | None = None) -> None:
        self.rt = runtime
        self.store = runtime.store
        self.concurrency = max(1, concurrency)
        self.lease = lease
        self.only = only
        self.on_slice = on_slice
        self.id = holder_id("worker")  # calls it holds are retried at once if this process dies
        self.host = HOST
        self.pid = os.getpid()
        self.stop_requested = threading.Event()
        self.notify = notify
        self.notifier: Listener = NullListener()
        self.stats = WorkerStats()
        self._held: dict[str, float] = {}  # program -> when its slice was handed out
        self._held_lock = threading.Lock()
        # functions this process serves run right here, one commit per call (see runtime/inline.py)
        self.inline = (InlineCalls(self.store, functions, http, self.id, lease, concurrency=self.concurrency,
                                   wake=self._call_finished)
                       if functions is not None or http is not None else None)
        self._backoff = 0.0
        self._down_since: float | None = None  # when the store became unreachable
        self.unserved = UnservedWatch(self.store)
        self.slices: ExecutorPool | LocalSlices = runtime.pool() or LocalSlices(runtime)
        self._idle = False  # waiting for the store's wake-up (a finished slice must then wake it)
        # Whether the store may have work for us we have not claimed: set by the store's wake-ups,
        # timeouts, a full claim and programs we let go of; not by our own threads' wake-ups (a
        # call performed here finished), which continue programs we hold. A round trip saved per step.
        self._claim_due = True
        self._claimed = False  # the last round claimed (so the next wake-up time is worth reading again)
        self._last_claim = 0.0  # time.monotonic(): a busy worker still claims this often (a lost wake-up)
        self._next_wake: float | None = None
        self._heard_at = 0.0  # time.monotonic() of the store's last wake-up heard
        self.slices.on_finish = self._slice_finished

    # -- lifecycle ------------------------------------------------------------------
    def install_signal_handlers(self) -> None:
        def stop(signum: int, frame: Any) -> None:
            self.stop()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)

    def wait_ready(self, timeout: float = 30.0) -> bool:
        """Wait until slices can run (the executor processes are up); whether they can."""
        return self.slices.wait_started(timeout) if isinstance(self.slices, ExecutorPool) else True

    def stop(self) -> None:
        self.stop_requested.set()
        self.notifier.interrupt()

    def run(self, until: Callable[[], bool] | None = None, idle_exit: bool = False) -> None:
        """Work until stopped (or `until()` is true, or nothing is left to do with `idle_exit`)."""
        if self.notify:
            self.notifier = self.store.listener()
            if self.stop_requested.is_set():  # stopped while starting up (see wait_ready)
                self.notifier.close()
                return
        heartbeat = threading.Thread(target=self._heartbeat, daemon=True)
        heartbeat.start()
        try:
            while not self.stop_requested.is_set():
                if until is not None and until() and not self.slices.busy():
                    return
                try:
                    did = self.step(claim=self._claim_due or time.monotonic() - self._last_claim > FALLBACK_POLL)
                    if not did and self._claimed:
                        self._next_wake = self.store.next_wake()
                    nxt = None if did else self._next_wake
                except StoreUnavailable as e:
                    self._claim_due = True
                    self._wait_for_store(e)
                    continue
                except StoreError as e:
                    # a store fault that is not an outage (a deadlock retried out, say): what the
                    # round held was released or stays leased to us; say so and go on after a pause
                    # instead of ending the worker
                    self._claim_due = True
                    telemetry.store_fault(e, self._back_off())
                    self.notifier.wait(self._backoff)
                    continue
                if self._down_since is not None:
                    telemetry.store_back(time.monotonic() - self._down_since)
                    self._down_since = None
                self._backoff = 0.0
                if did:
                    # a busy worker still hears the store's wake-ups (new programs, messages),
                    # without waiting: else they waited for the fallback poll
                    if self.notifier.wait(0.0):
                        self._woken()
                    continue
                if idle_exit and not self.slices.busy():
                    return
                now = self.rt.clock()
                timeout = FALLBACK_POLL if nxt is None else min(FALLBACK_POLL, max(0.0, nxt - now))
                if self.inline is not None and self.inline.busy():
                    timeout = min(timeout, self.inline.hold / 4)  # to let go of programs whose calls run long
                if until is not None and until() and not self.slices.busy():
                    return
                self._idle = True  # (from here on a finished slice or call wakes us: see _slice_finished)
                try:
                    if not self.slices.finished and (self.inline is None or not self.inline.finished()):
                        if self.notifier.wait(timeout):
                            self._woken()
                        else:
                            self._claim_due = True  # the fallback poll
                finally:
                    self._idle = False
        finally:
            self.stop_requested.set()
            self._abandon()
            if self.inline is not None:
                with contextlib.suppress(Exception):
                    self.inline.close(self.rt.clock())
            self.notifier.close()

    def _call_finished(self) -> None:
        """A call performed here finished: its program goes on in the next round, which a round
        waiting for slices (up to GROUP_WAIT) must not hold up."""
        if self._idle:
            self.notifier.interrupt()
        else:
            self.slices.kick()

    def _slice_finished(self) -> None:
        """A slice or a call performed here finished: wake the loop if it sleeps (a busy loop
        finds it anyway; a system call saved per step)."""
        if self._idle:
            self.notifier.interrupt()

    def _abandon(self) -> None:
        """On stop: slices still computing are dropped (their executors killed); what finished
        is committed, the rest released for the next worker."""
        if isinstance(self.slices, ExecutorPool):
            self.rt.close()
        done = self.slices.wait(0.0)
        if not done:
            return

        def commit() -> None:
            with contextlib.suppress(Exception):
                self._commit(done)

        # a store that does not answer must not hold the stop up: what is not committed is run
        # again by the next worker (leases expire; nothing is lost)
        finisher = threading.Thread(target=commit, daemon=True)
        finisher.start()
        finisher.join(STOP_COMMIT_WAIT)

    def _woken(self) -> None:
        """The listener woke us: by the store (look for work; programs continued here may have
        a message or a cancel: see _carry_forward), or by our own threads (a call finished)."""
        if self.notifier.heard:
            self._claim_due = True
            self._heard_at = time.monotonic()

    def _back_off(self) -> float:
        """The next pause after a store failure (doubling up to MAX_BACKOFF; reset by a good round)."""
        self._backoff = min(MAX_BACKOFF, self._backoff * 2) if self._backoff else 0.25
        return self._backoff

    def _wait_for_store(self, error: StoreUnavailable) -> None:
        """The store cannot be reached (e.g. its server restarts): say so and retry with backoff
        instead of dying. Leases held meanwhile expire and the programs are claimed again."""
        first = self._down_since is None
        if first:
            self._down_since = time.monotonic()
        telemetry.store_unavailable(error, self._back_off(), first)
        self.notifier.wait(self._backoff)

    def _heartbeat(self) -> None:
        while not self.stop_requested.wait(self.lease / 3):
            overrun = self.slices.overrunning()
            with self._held_lock:
                held = [pid for pid in self._held if pid not in overrun]
            calls = []
            if self.inline is not None:
                held += self.inline.held()
                calls = self.inline.running_calls()
            now = self.rt.clock()  # the clock claims use
            if held:
                with contextlib.suppress(Exception):
                    self.store.renew(self.id, held, self.lease, now)
            for call in calls:
                with contextlib.suppress(Exception):
                    self.store.heartbeat_call(call.key, self.id, call.attempt, self.lease, now)
            with contextlib.suppress(Exception):
                self.unserved.check(now)  # logs calls to functions nobody serves

    # -- one round ------------------------------------------------------------------
    def step(self, claim: bool = True) -> bool:
        """Claim what is runnable (unless not `claim`: then only continue programs whose calls
        finished here), hand out its slices, commit those that finished (together). True if any
        finished."""
        in_flight = self.slices.in_flight()
        room = self.concurrency - in_flight
        # (a claim is a transaction: take work in batches, not one program per finished slice)
        self._claimed = claim and room > 0 and (not in_flight or room >= self.concurrency // 4)
        claims: list[Claim] = []
        if self._claimed:
            self._last_claim = time.monotonic()
            claims = self.store.claim(self.id, self.pid, self.host, self.lease, self.rt.clock(), room, self.only)
            for c in claims:
                c.read_at = self._last_claim  # (what a claim read of the program is at least this new)
            self._claim_due = len(claims) >= room  # a full batch: there may be more
        # Continuations are taken after the claim, which may raise (the store unavailable): taken
        # before it, their outcomes were lost with the exception while the programs' leases stayed
        # held (and renewed by the heartbeat) for slices that never ran: waiting forever.
        jobs = self._continuations() if self.inline is not None else []
        jobs += [Job(c) for c in claims]
        if jobs:
            now = time.monotonic()
            with self._held_lock:
                self._held.update((j.program_id, now) for j in jobs)
            self.slices.submit(jobs)
        done = self.slices.wait(GROUP_WAIT)
        if done:
            self._commit(done)
        return bool(done)

    def _continuations(self) -> list[Job]:
        """Programs whose in-process calls have finished, to continue with their outcomes."""
        assert self.inline is not None
        now = self.rt.clock()
        self.inline.expire_holds(now)
        with self._held_lock:
            running = set(self._held)  # a program has one slice at a time: its next waits for this one
        jobs = [Job(claim, outcomes, continued=True) for claim, outcomes in self.inline.completed(now, running)]
        if jobs and isinstance(self.slices, ExecutorPool):  # (LocalSlices read the store themselves)
            now_m = time.monotonic()
            for job in jobs:
                if job.claim.row is None:
                    job.claim.read_at = now_m
            try:
                self.store.read_for_slices([j.claim for j in jobs])
            except StoreError:
                pass  # each slice reads its program itself (and meets the error there)
        return jobs

    def _commit(self, done: list[Job]) -> None:
        """Commit the finished slices together; release the programs of those that failed."""
        now = self.rt.clock()
        unavailable: StoreUnavailable | None = None
        results: list[Job] = []
        for job in done:
            if job.result is not None:
                results.append(job)
                continue
            if isinstance(job.error, StoreUnavailable):
                unavailable = job.error
            elif isinstance(job.error, ExecutorError):
                telemetry.worker_log.error(str(job.error), extra={"fields": {"program": job.program_id}})
            elif not isinstance(job.error, UnknownProgram | Stopped):
                # an unexpected (maybe passing) fault: say so, release, and let the fallback
                # poll retry instead of spinning on it
                report = "".join(traceback.format_exception(job.error)) if job.error else "no result"
                self.stats.errors.append(report)
                telemetry.slice_broke(job.program_id, job.error)
            with contextlib.suppress(StoreError):  # (its slice did not commit: still to do)
                self.store.release(self.id, job.program_id, job.claim.fence, runnable=True)
            self._claim_due = True
            if job.continued and self.inline is not None:
                self.inline.after_slice(job.claim, None, False, job.outcomes, now)
        try:
            try:
                lost = self._commit_results(results, now)
            except BaseException:
                self._commit_failed(results, now)
                raise
            for job in results:
                r = job.result
                assert r is not None
                landed = job.program_id not in lost
                self.slices.committed(job, landed)
                self._carry_forward(job, landed, now)
                if job.continued and self.inline is not None:
                    consumed = {key for key, _ in r.commit.done_calls} if r.commit is not None else set()
                    leftovers = {k: v for k, v in job.outcomes.items() if k not in consumed}
                    self.inline.after_slice(job.claim, r.commit, landed, leftovers, now)
        finally:
            with self._held_lock:
                for job in done:
                    self._held.pop(job.program_id, None)
        if unavailable is not None:
            raise unavailable

    def _carry_forward(self, job: Job, landed: bool, now: float) -> None:
        """A program whose lease this worker keeps (its calls run here) goes on from what its
        commit wrote: its next slice starts from the row and inbox the last one started from,
        as the commit changed them, instead of reading them again (a round trip per step).
        Only for FRESH_FOR seconds after they were last read, and only while the store has not
        woken us since (a message or a cancel may have come): then the next slice reads them."""
        claim, r = job.claim, job.result
        c = r.commit if r is not None else None
        if (not landed or c is None or not c.keep_lease or c.restart_args is not None or job.row is None
                or job.inbox is None or claim.derived):
            return
        if time.monotonic() - claim.read_at > FRESH_FOR or self._heard_at >= claim.read_at:
            return
        row = copy.copy(job.row)  # (dataclasses.replace costs more than the rest of this together)
        row.status, row.last_seq, row.waiting_on = c.status, c.base_seq + len(c.events), c.waiting_on
        row.wake_at, row.error, row.updated_at = c.wake_at, c.error, now
        claim.row = row
        consumed = set(c.consumed)
        claim.inbox = [m for m in job.inbox if m.id not in consumed]
        claim.derived = True

    def _commit_failed(self, results: list[Job], now: float) -> None:
        """The group commit raised (the store unavailable, say): it may or may not have landed.
        Let go of the programs: their leases are no longer renewed (so they expire if the release
        does not get through), and the outcomes of calls performed here for continued programs go
        through the store (a no-op for those the commit did record). Kept held instead, a continued
        program's lease was renewed for ever by the heartbeat with nothing left to continue it."""
        self._claim_due = True
        for job in results:
            self.slices.committed(job, False)  # (its machine may be ahead of what the store has)
            with contextlib.suppress(Exception):
                self.store.release(self.id, job.program_id, job.claim.fence, runnable=True)
            if job.continued and self.inline is not None:
                commit = job.result.commit if job.result is not None else None
                self.inline.after_slice(job.claim, commit, False, job.outcomes, now)

    def _commit_results(self, jobs: list[Job], now: float) -> set[str]:
        """Commit the slices together; the ids of programs whose commit was refused."""
        results = [(j.claim, j.result) for j in jobs if j.result is not None]
        commits = [r.commit for _, r in results if r.commit is not None]
        if self.inline is not None:
            for c in commits:
                self.inline.adopt(c)
        lost: set[str] = set()
        if commits:
            try:
                with metrics.Timer() as t:
                    self.store.commit(commits, now)
                metrics.COMMIT_SECONDS.observe(t.seconds)
            except (LeaseLost, Conflict):
                lost = self._commit_one_by_one(commits, now)
            else:
                self.stats.commits += 1
        for claim, r in results:
            self.stats.slices += 1
            if r.commit is None:
                self.store.release(self.id, claim.program_id, claim.fence)
            if r.commit is None or not r.commit.keep_lease or r.program_id in lost:
                self._claim_due = True  # let go of: it may be runnable again (a message came meanwhile)
        # (calls this worker performs itself need no connector woken)
        if any(c.sends or c.starts or c.status in FINISHED or any(n.owner is None for n in c.calls)
               for c in commits):
            self.store.notify()  # other workers, connectors, and clients waiting for results
        for claim, r in results:
            telemetry.slice_committed(claim, r, r.program_id not in lost)
            if r.program_id in lost:
                self.store.release(self.id, claim.program_id, claim.fence)  # a no-op if it is no longer ours
                continue
            if self.inline is not None and r.commit is not None:
                self.inline.launch(claim, r.commit, now)
            if self.on_slice is not None:
                self.on_slice(r)
        return lost

    def _commit_one_by_one(self, commits: list[Commit], now: float) -> set[str]:
        lost = set()
        for c in commits:
            try:
                self.store.commit([c], now)
                self.stats.commits += 1
            except (LeaseLost, Conflict):
                self.stats.lost += 1  # another worker owns it now; its slice will redo ours
                lost.add(c.program_id)
        return lost


class LocalSlices:
    """Runs each slice right here, in the worker's own process, as it is submitted: for tests
    (a fake clock, a seeded random source) and tools. Programs then run with the language's
    limits only: no CPU budget, memory limit or OS hardening (see runtime/executors.py)."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.finished: list[Job] = []
        self.on_finish: Callable[[], None] = lambda: None

    def submit(self, jobs: list[Job]) -> None:
        for job in jobs:
            try:
                job.result = self.rt.run_slice(job.claim, dict(job.outcomes))
            except Exception as e:
                job.error = e
            self.finished.append(job)

    def wait(self, timeout: float) -> list[Job]:
        done, self.finished = self.finished, []
        return done

    def in_flight(self) -> int:
        return 0

    def kick(self) -> None:
        pass

    def busy(self) -> bool:
        return False

    def overrunning(self) -> set[str]:
        return set()

    def committed(self, job: Job, landed: bool) -> None:
        if job.result is not None:
            if landed:
                self.rt.remember(job.result)
            else:
                self.rt.runner.forget(job.program_id)

    def close(self) -> None:
        pass
