"""The loop every connector runs: claim due calls of one kind, perform each on a
thread pool, renew their leases while they run, and report each attempt's
outcome to the store (which delivers it, or schedules a retry).

Between claims it sleeps until the store wakes it, the next retry is due, or a
slow fallback poll comes round — never a busy loop.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from flowmetal.observe import logs, metrics
from flowmetal.store.base import CallClaim, CallOutcome, Listener, NullListener, Store
from flowmetal.store.shared import holder_id

Perform = Callable[[CallClaim], CallOutcome]
FALLBACK_POLL = 1.0
log = logs.logger("calls")


class CallLoop:
    def __init__(self, store: Store, kind: str, names: list[str] | None, perform: Perform, *,
                 concurrency: int = 8, lease: float = 30.0, clock: Callable[[], float] = time.time,
                 label: str = "connector") -> None:
        self.store = store
        self.kind = kind
        self.names = names
        self.perform = perform
        self.concurrency = max(1, concurrency)
        self.lease = lease
        self.clock = clock
        self.label = label
        self.id = holder_id(label)
        self.stop_requested = threading.Event()
        self.listener: Listener = NullListener()
        self._inflight: dict[str, CallClaim] = {}
        self._lock = threading.Lock()
        self.finished = 0
        self.settler = Settler(store, self.id, clock)

    def stop(self) -> None:
        self.stop_requested.set()
        self.listener.interrupt()

    def run(self) -> None:
        """Serve calls until `stop()`; in-flight attempts are finished before returning."""
        self.listener = self.store.listener()
        self._register()
        heartbeat = threading.Thread(target=self._heartbeat, name=f"{self.label}-heartbeat", daemon=True)
        heartbeat.start()
        pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix=self.label)
        try:
            while not self.stop_requested.is_set():
                free = self.concurrency - len(self._inflight)
                claims = self._claim(free) if free > 0 else []
                for claim in claims:
                    with self._lock:
                        self._inflight[claim.key] = claim
                    pool.submit(self._attempt, claim)
                if claims:
                    continue
                self._sleep(free)
        finally:
            self.stop_requested.set()
            pool.shutdown(wait=True)
            self.listener.close()

    def _claim(self, limit: int) -> list[CallClaim]:
        try:
            return self.store.claim_calls(self.id, self.kind, self.names, self.lease, self.clock(), limit)
        except Exception as e:  # the store is unreachable for now (e.g. restarting): try again soon
            metrics.STORE_ERRORS.labels("claim_calls").inc()
            logs.event(log, logging.WARNING, f"cannot claim calls: {e}", connector=self.label)
            self.stop_requested.wait(0.5)
            return []

    def _sleep(self, free: int) -> None:
        timeout = FALLBACK_POLL
        if free <= 0:  # every slot is busy: a finishing attempt interrupts the listener
            self.listener.wait(timeout)
            return
        with contextlib.suppress(Exception):
            due = self.store.next_call_due(self.kind)
            if due is not None:
                timeout = min(timeout, max(0.0, due - self.clock()) + 0.001)
        self.listener.wait(timeout)

    def _attempt(self, claim: CallClaim) -> None:
        try:
            try:
                outcome = self.perform(claim)
            except Exception as e:  # a connector bug must not lose the call: report it as retryable
                log.error("the connector broke performing a call; it is retried", exc_info=True,
                          extra={"fields": {"key": claim.key, "connector": self.label}})
                outcome = CallOutcome(ok=False, error={"type": type(e).__name__, "message": str(e)})
            for delay in (0.0, 0.2, 1.0, 3.0):  # the store may be briefly unreachable
                if delay:
                    time.sleep(delay)
                try:
                    status = self.settler.finish(claim, outcome)
                except Exception as e:
                    metrics.STORE_ERRORS.labels("finish_call").inc()
                    logs.event(log, logging.WARNING, f"cannot record a call's outcome: {e}", key=claim.key,
                               connector=self.label)
                    continue
                # ("unknown": its program was pruned, or started over (continue_as_new): nobody waits)
                self.finished += status != "unknown"
                break
            # if it never got recorded, the lease expires and another attempt runs: at least once
        finally:
            with self._lock:
                self._inflight.pop(claim.key, None)
            self.listener.interrupt()

    def _register(self) -> None:
        """Say which function names this loop serves (so a call to a name nobody serves can be
        told apart from one whose server is busy); repeated with every heartbeat."""
        if self.names:
            with contextlib.suppress(Exception):
                self.store.register_served(self.id, self.names, self.clock())

    def _heartbeat(self) -> None:
        while not self.stop_requested.wait(self.lease / 3):
            self._register()
            with self._lock:
                held = list(self._inflight.values())
            for claim in held:
                with contextlib.suppress(Exception):
                    self.store.heartbeat_call(claim.key, self.id, claim.attempt, self.lease, self.clock())


class Settler:
    """Records attempts' outcomes for the threads that performed them, together: while one
    transaction commits, the outcomes that arrive meanwhile wait and go in the next one (group
    commit). At a steady pace that is one outcome per commit, as before; when many finish at
    once — the calls of a crashed worker, run again together — a few commits record them all."""

    def __init__(self, store: Store, worker: str, clock: Callable[[], float]) -> None:
        self.store = store
        self.worker = worker
        self.clock = clock
        self._lock = threading.Lock()
        self._queue: list[_Pending] = []
        self._committing = False

    def finish(self, claim: CallClaim, outcome: CallOutcome) -> str:
        """The attempt's status as `Store.finish_call` says it ("unknown" for a call the store no
        longer holds); raises what the store raised."""
        mine = _Pending(claim, outcome)
        with self._lock:
            self._queue.append(mine)
            mine.lead = not self._committing
            self._committing = True
        if not mine.lead:
            mine.wake.wait()  # committed by another thread, or this one's turn to commit
        if not mine.settled:  # commit what is queued (this one included), then hand over
            self._commit_queued()
        if mine.error is not None:
            raise mine.error
        return mine.status

    def _commit_queued(self) -> None:
        with self._lock:
            batch, self._queue = self._queue, []
        try:
            statuses = self.store.finish_calls(
                [(p.claim.key, self.worker, p.claim.attempt, p.outcome) for p in batch], self.clock())
        except Exception as e:
            for p in batch:
                p.error = e
        else:
            for p, status in zip(batch, statuses, strict=True):
                p.status = status
            if "done" in statuses:
                with contextlib.suppress(Exception):
                    self.store.notify()  # the programs waiting for them
        with self._lock:
            for p in batch:
                p.settled = True
                p.wake.set()
            if self._queue:  # arrived meanwhile: the first of them commits the next batch
                self._queue[0].wake.set()
            else:
                self._committing = False


class _Pending:
    def __init__(self, claim: CallClaim, outcome: CallOutcome) -> None:
        self.claim = claim
        self.outcome = outcome
        self.status = ""
        self.error: Exception | None = None
        self.lead = False  # this thread commits the next batch
        self.settled = False
        self.wake = threading.Event()  # settled, or this thread's turn to commit
