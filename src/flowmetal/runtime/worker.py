"""Workers: claim programs that have something to do, run a slice of each,
and commit — the work of several programs in one transaction when busy.

A claim is a lease with a fencing token; a heartbeat thread renews the leases
of claims in progress. Between claims a worker sleeps until it is notified,
its earliest timer is due, or a slow fallback poll comes round — never a busy
loop. SIGTERM and SIGINT finish the current slice and stop cleanly.
"""

from __future__ import annotations

import contextlib
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
    StoreUnavailable,
    UnknownProgram,
)
from flowmetal.store.shared import HOST, holder_id

DEFAULT_LEASE = 10.0
FALLBACK_POLL = 1.0
MAX_BACKOFF = 5.0  # between attempts while the store is unreachable


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
        self._held: set[str] = set()
        self._held_lock = threading.Lock()
        # functions this process serves run right here, one commit per call (see runtime/inline.py)
        self.inline = (InlineCalls(self.store, functions, http, self.id, lease, concurrency=self.concurrency,
                                   wake=lambda: self.notifier.interrupt())
                       if functions is not None or http is not None else None)
        self._backoff = 0.0
        self._down_since: float | None = None  # when the store became unreachable
        self.unserved = UnservedWatch(self.store)

    # -- lifecycle ------------------------------------------------------------------
    def install_signal_handlers(self) -> None:
        def stop(signum: int, frame: Any) -> None:
            self.stop()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)

    def stop(self) -> None:
        self.stop_requested.set()
        self.notifier.interrupt()

    def run(self, until: Callable[[], bool] | None = None, idle_exit: bool = False) -> None:
        """Work until stopped (or `until()` is true, or nothing is left to do with `idle_exit`)."""
        if self.notify:
            self.notifier = self.store.listener()
            if self.stop_requested.is_set():
                return
        heartbeat = threading.Thread(target=self._heartbeat, daemon=True)
        heartbeat.start()
        try:
            while not self.stop_requested.is_set():
                if until is not None and until():
                    return
                try:
                    did = self.step()
                    nxt = None if did else self.store.next_wake()
                except StoreUnavailable as e:
                    self._wait_for_store(e)
                    continue
                if self._down_since is not None:
                    telemetry.store_back(time.monotonic() - self._down_since)
                    self._down_since = None
                self._backoff = 0.0
                if did:
                    continue
                if idle_exit:
                    return
                now = self.rt.clock()
                timeout = FALLBACK_POLL if nxt is None else min(FALLBACK_POLL, max(0.0, nxt - now))
                if self.inline is not None and self.inline.busy():
                    timeout = min(timeout, self.inline.hold / 4)  # to let go of programs whose calls run long
                if until is not None and until():
                    return
                self.notifier.wait(timeout)
        finally:
            self.stop_requested.set()
            if self.inline is not None:
                with contextlib.suppress(Exception):
                    self.inline.close(self.rt.clock())
            self.notifier.close()

    def _wait_for_store(self, error: StoreUnavailable) -> None:
        """The store cannot be reached (e.g. its server restarts): say so and retry with backoff
        instead of dying. Leases held meanwhile expire and the programs are claimed again."""
        self._backoff = min(MAX_BACKOFF, self._backoff * 2) if self._backoff else 0.25
        first = self._down_since is None
        if first:
            self._down_since = time.monotonic()
        telemetry.store_unavailable(error, self._backoff, first)
        self.notifier.wait(self._backoff)

    def _heartbeat(self) -> None:
        while not self.stop_requested.wait(self.lease / 3):
            with self._held_lock:
                held = list(self._held)
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
    def step(self) -> bool:
        """Claim what is runnable, run a slice of each, commit them together. True if any ran."""
        continued = self._continue_inline() if self.inline is not None else False
        claims = self.store.claim(self.id, self.pid, self.host, self.lease, self.rt.clock(), self.concurrency,
                                  self.only)
        if not claims:
            return continued
        with self._held_lock:
            self._held.update(c.program_id for c in claims)
        results: list[tuple[Claim, SliceResult]] = []
        try:
            for claim in claims:
                try:
                    results.append((claim, self.rt.run_slice(claim)))
                except UnknownProgram:
                    continue
                except StoreUnavailable:
                    raise  # not the program's fault: the run loop waits for the store
                except Exception:
                    # an unexpected (maybe passing) fault: say so, release, and let the
                    # fallback poll retry instead of spinning on it
                    self.stats.errors.append(traceback.format_exc())
                    telemetry.slice_broke(claim.program_id)
                    self.store.release(self.id, claim.program_id, claim.fence)
            self._commit(results)
        finally:
            with self._held_lock:
                self._held.difference_update(c.program_id for c in claims)
        return bool(results)

    def _continue_inline(self) -> bool:
        """Continue the programs whose in-process calls have finished, with their outcomes."""
        assert self.inline is not None
        now = self.rt.clock()
        self.inline.expire_holds(now)
        ready = self.inline.completed(now)
        if not ready:
            return False
        results: list[tuple[Claim, SliceResult]] = []
        leftovers: dict[str, dict[str, Any]] = {}
        for claim, outcomes in ready:
            try:
                results.append((claim, self.rt.run_slice(claim, outcomes)))
            except StoreUnavailable:
                raise
            except Exception:
                self.stats.errors.append(traceback.format_exc())
                telemetry.slice_broke(claim.program_id)
                self.store.release(self.id, claim.program_id, claim.fence)
            leftovers[claim.program_id] = outcomes  # what the slice did not consume
        lost = self._commit(results)
        for claim, r in results:
            self.inline.after_slice(claim, r.commit, claim.program_id not in lost,
                                    leftovers.get(claim.program_id, {}), now)
        return True

    def _commit(self, results: list[tuple[Claim, SliceResult]]) -> set[str]:
        """Commit the slices together; the ids of programs whose commit was refused."""
        commits = [r.commit for _, r in results if r.commit is not None]
        if self.inline is not None:
            for c in commits:
                self.inline.adopt(c)
        now = self.rt.clock()
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
        # (calls this worker performs itself need no connector woken)
        if any(c.sends or c.starts or c.status in FINISHED or any(n.owner is None for n in c.calls)
               for c in commits):
            self.store.notify()  # other workers, connectors, and clients waiting for results
        for claim, r in results:
            telemetry.slice_committed(claim, r, r.program_id not in lost)
            if r.program_id in lost:
                self.store.release(self.id, claim.program_id, claim.fence)  # a no-op if it is no longer ours
                continue
            self.rt.remember(r)
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
