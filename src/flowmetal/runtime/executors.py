"""Executor processes: where a worker's slices run, supervised.

A worker keeps the store, leases, heartbeats, connectors, the HTTP API and
signals; program code runs only in executor processes it starts
(runtime/executor.py) and talks to over a socket each (runtime/protocol.py).
Each executor runs one slice at a time, in a *slot* of the pool: a thread of
the worker that reads what the slice needs from the store, sends it, answers
the executor's questions, and watches the time:

- **budget**: a slice may compute `slice_timeout` seconds of CPU (read from
  /proc; wall time elsewhere) without waiting. Past that the slot kills the
  executor and the program fails durably with `SliceTimeout` — or ends
  `cancelled`, if a cancel was requested meanwhile (a running slice is checked
  for one every half second, so `cancel` lands within that even for a
  program that never waits). Nothing of the killed slice is kept.
- **memory**: executors run under an address-space limit (`memory_limit`
  beyond their start-up size). A slice that runs out fails its program with
  `MemoryLimitExceeded`; the executor exits and a fresh one takes its slot.
- **crashes**: an executor that dies otherwise gets the slice once more in a
  fresh process; a second death fails the program (`ExecutorCrashed`).

Slots work independently, so a spinning slice holds up only its own slot.
A slot hands its executor several slices in one frame (a batch) only of
programs whose machine it holds and whose last slice was quick, so a slice
queued behind another is not held up long; the executor answers each as it
ends, and the budget and the crash rules apply to each slice in turn (what is
left of a batch whose executor was killed or died goes back to the queue).
A program's machine stays in the executor that ran it; the pool remembers
which one (once the commit landed) and sends the program's next slice there
with `use_cache`, unless that slot is busy with a long slice, in which case
another slot restores the program from its checkpoint.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from flowmetal.observe import logs
from flowmetal.runtime import protocol as p
from flowmetal.runtime.slice import SliceResult, failed_commit
from flowmetal.store.base import (
    FINISHED,
    Claim,
    InboxMessage,
    ProgramRow,
    StoreError,
    StoreUnavailable,
    UnknownProgram,
)

if TYPE_CHECKING:
    from flowmetal.runtime.driver import Runtime

_log = logs.logger("worker")
SLICE_TIMEOUT = 5.0  # CPU seconds; see docs/security.md for why
MEMORY_LIMIT = 512 << 20  # bytes of address space per executor beyond its start-up size
START_TIMEOUT = 60.0  # for an executor to start and report ready (a loaded machine is slow)
CHECK_EVERY = 0.5  # seconds between checks of a long slice for a cancel or a stop
FIRST_LOOK = 0.05  # seconds of a slice before its CPU time is first read
CLOSE_WAIT = 1.0  # seconds a stopping worker gives its executors' threads to finish
AFFINITY_WAIT = 0.05  # a slice waits for the executor that holds its machine unless its slice runs this long
STEAL_AFTER = 0.25  # ... or unless the slice has waited this long (its executor has too much to do)
BATCH = 8  # slices at most sent to an executor in one frame
QUICK = 0.01  # seconds: a program whose last slice took less may be batched
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


def default_processes() -> int:
    return max(1, os.cpu_count() or 1)


@dataclass
class ExecutorSettings:
    processes: int = field(default_factory=default_processes)
    slice_timeout: float = SLICE_TIMEOUT
    memory_limit: int | None = MEMORY_LIMIT
    harden: bool = True
    test_hook: bool = False  # tests only: lets `run_host_code` run Python inside an executor


class ExecutorError(Exception):
    """An executor could not be started or spoke out of turn."""


class Stopped(Exception):
    """The pool is closing: the slice was abandoned (nothing of it is kept)."""


@dataclass
class Job:
    """A slice to run: the claimed program, and outcomes of calls performed in process."""

    claim: Claim
    outcomes: dict[str, Any] = field(default_factory=dict)
    queued: float = field(default_factory=time.monotonic)
    continued: bool = False  # continues a program after its in-process calls finished
    result: SliceResult | None = None
    error: BaseException | None = None  # nothing to commit: the worker releases the program
    slot: int | None = None
    started: float | None = None  # time.monotonic() when an executor took it
    # what the slice started from (the worker derives the program's next row and inbox from it)
    row: ProgramRow | None = None
    inbox: list[InboxMessage] | None = None

    @property
    def program_id(self) -> str:
        return self.claim.program_id


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid: int) -> float | None:
    """CPU time a process has used (user + system), or None where /proc is not there."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rindex(b")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


class Executor:
    """One executor process and its socket."""

    def __init__(self, init: p.Init) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        code = (f"import sys; sys.path.insert(0, {_PACKAGE_ROOT!r}); "
                "from flowmetal.runtime.executor import main; main(sys.argv)")
        stderr = None if os.environ.get("FLOWMETAL_EXECUTOR_STDERR") else subprocess.DEVNULL
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-I", "-c", code, str(theirs.fileno())], pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr, cwd="/",
                env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
        except OSError as e:
            ours.close()
            raise ExecutorError(f"cannot start an executor process: {e}") from None
        finally:
            theirs.close()
        self.sock = ours
        self.conn = p.to_executor(ours)
        self.pid = self.proc.pid
        try:
            self.conn.send(init)
            if not self.readable(START_TIMEOUT):
                raise ExecutorError(f"an executor did not start within {START_TIMEOUT:g} s")
            ready = self.conn.recv()
        except (OSError, EOFError, p.ProtocolError) as e:
            self.kill()
            raise ExecutorError(f"an executor failed to start ({e}); set FLOWMETAL_EXECUTOR_STDERR=1 "
                                "to see its errors") from None
        except ExecutorError:
            self.kill()
            raise
        if not isinstance(ready, p.Ready) or ready.version != p.PROTOCOL:
            self.kill()
            raise ExecutorError(f"an executor answered {ready!r} to its start")
        self.layers = ready.layers

    def readable(self, timeout: float) -> bool:
        return bool(select.select([self.sock], [], [], max(0.0, timeout))[0])

    def cpu(self) -> float | None:
        return cpu_seconds(self.pid)

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            self.proc.kill()
        with contextlib.suppress(Exception):
            self.proc.wait(5)
        with contextlib.suppress(OSError):
            self.sock.close()

    def close(self) -> None:
        """Ask it to exit (it does at the end of its socket) and reap it."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        try:
            self.proc.wait(2)
        except subprocess.TimeoutExpired:
            self.kill()
        with contextlib.suppress(OSError):
            self.sock.close()


def make_init(rt: Runtime, settings: ExecutorSettings, cache_size: int | None = None) -> p.Init:
    return p.Init(p.PROTOCOL, rt.limits, rt.quotas, rt.public_url, rt.checkpoint_span,
                  rt.machine_cache_size if cache_size is None else cache_size, settings.memory_limit,
                  settings.harden, settings.test_hook, os.getpid())


class ExecutorPool:
    def __init__(self, rt: Runtime, settings: ExecutorSettings) -> None:
        self.rt = rt
        self.store = rt.store
        self.settings = settings
        self.init = make_init(rt, settings)
        self.cond = threading.Condition()
        self.queue: deque[Job] = deque()
        self.finished: list[Job] = []
        self.flight: dict[str, Job] = {}
        self.cached: dict[str, tuple[int, int]] = {}  # program -> (slot, last_seq) of its kept machine
        self.quick: set[str] = set()  # programs whose last slice was quick (see BATCH)
        self.closing = False
        self.kicked = False  # `wait` should return now (the worker has other work: see `kick`)
        self.on_finish: Callable[[], None] = lambda: None
        self.layers: dict[str, str] | None = None
        self.slots = [_Slot(self, i) for i in range(max(1, settings.processes))]
        for slot in self.slots:
            slot.thread.start()

    # -- the worker's side ----------------------------------------------------------------
    def submit(self, jobs: list[Job]) -> None:
        with self.cond:
            if self.closing:
                raise Stopped("the executor pool is closed")
            for job in jobs:
                self.flight[job.program_id] = job
                self.queue.append(job)
            self.cond.notify_all()

    def wait(self, timeout: float) -> list[Job]:
        """Every job finished since the last call, waiting up to `timeout` for one if none has
        (and some are in flight). The worker commits them while the executors go on: those
        that finish meanwhile make the next group (group commit without holding anyone up)."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while not self.finished and self.flight and not self.kicked:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.cond.wait(left)
            self.kicked = False
            done, self.finished = self.finished, []
            return done

    def kick(self) -> None:
        """End a `wait` early: a call the worker performs finished, and its program should go on
        without waiting for a slice of another program to finish first."""
        with self.cond:
            self.kicked = True
            self.cond.notify_all()

    def busy(self) -> bool:
        return bool(self.flight)

    def wait_started(self, timeout: float) -> bool:
        """Wait until every executor process is up (they start at once, in parallel): whether
        they all are."""
        deadline = time.monotonic() + timeout
        return all(slot.started.wait(max(0.0, deadline - time.monotonic())) for slot in self.slots)

    def in_flight(self) -> int:
        return len(self.flight)

    def overrunning(self) -> set[str]:
        """Programs whose slice has run longer than the budget (their leases are not renewed)."""
        now = time.monotonic()
        with self.cond:
            return {pid for pid, j in self.flight.items()
                    if j.started is not None and now - j.started > self.settings.slice_timeout}

    def committed(self, job: Job, landed: bool) -> None:
        """After the worker's commit: remember where the program's machine is kept."""
        r = job.result
        c = r.commit if r is not None else None
        with self.cond:
            if (landed and c is not None and job.slot is not None and c.status not in FINISHED
                    and c.restart_args is None):
                self.cached[job.program_id] = (job.slot, c.base_seq + len(c.events))
            elif not landed or c is not None:
                self.cached.pop(job.program_id, None)
                self.quick.discard(job.program_id)

    def close(self) -> None:
        """Stop: slices still computing are abandoned (their executors killed), idle executors
        exit. Returns within about a second."""
        with self.cond:
            self.closing = True
            self.cond.notify_all()
        for slot in self.slots:
            slot.stop()
        deadline = time.monotonic() + CLOSE_WAIT
        for slot in self.slots:
            slot.thread.join(max(0.0, deadline - time.monotonic()))
        for slot in self.slots:  # a thread held up (by the store, say) leaves its executor to us
            slot.kill()
        with self.cond:
            for job in list(self.queue):
                self._finish_locked(job, error=Stopped("the worker is stopping"))
            self.queue.clear()

    # -- the slots' side ------------------------------------------------------------------
    def _next(self, slot: _Slot) -> list[Job]:
        """The slot's next slice, and others to send with it (a batch; see BATCH); [] when closing.
        Only the first counts as started: the others start as the ones before them end."""
        with self.cond:
            while True:
                if self.closing:
                    return []
                job = self._pick(slot.index)
                if job is not None:
                    batch = [job, *self._batchable(slot.index)] if job.program_id in self.quick else [job]
                    for j in batch:
                        j.slot = slot.index
                    job.started = slot.busy_since = time.monotonic()
                    return batch
                self.cond.wait(AFFINITY_WAIT if self.queue else None)

    def _batchable(self, index: int) -> list[Job]:
        """Queued slices of programs whose machine this slot holds and whose last slice was quick."""
        chosen: list[Job] = []
        for job in self.queue:
            if len(chosen) == BATCH - 1:
                break
            home = self.cached.get(job.program_id)
            if home is not None and home[0] == index and job.program_id in self.quick:
                chosen.append(job)
        for job in chosen:
            self.queue.remove(job)
        return chosen

    def _requeue(self, jobs: list[Job]) -> None:
        """Slices of a batch that never started (its executor was killed or died): first in line."""
        with self.cond:
            for job in reversed(jobs):
                job.slot = job.started = None
                self.queue.appendleft(job)
            self.cond.notify_all()

    def _pick(self, index: int) -> Job | None:
        now = time.monotonic()
        chosen = None
        for job in self.queue:
            home = self.cached.get(job.program_id)
            if home is None or home[0] == index:
                chosen = job
                break
            other = self.slots[home[0]]
            held_up = other.busy_since is not None and now - other.busy_since > AFFINITY_WAIT
            if held_up or other.dead or now - job.queued > STEAL_AFTER:
                chosen = job  # the executor that holds its machine is held up: restore it here instead
                break
        if chosen is not None:
            self.queue.remove(chosen)
        return chosen

    def _finish(self, job: Job, result: SliceResult | None = None, error: BaseException | None = None) -> None:
        with self.cond:
            if result is not None and result.seconds < QUICK:
                self.quick.add(job.program_id)
            else:
                self.quick.discard(job.program_id)
            self._finish_locked(job, result, error)
        self.on_finish()

    def _finish_locked(self, job: Job, result: SliceResult | None = None,
                       error: BaseException | None = None) -> None:
        job.result, job.error = result, error
        if result is None and error is None:
            job.error = Stopped("abandoned")
        self.flight.pop(job.program_id, None)
        self.finished.append(job)
        self.cond.notify_all()

    def use_cache(self, index: int, row: ProgramRow) -> bool:
        with self.cond:
            return self.cached.get(row.id) == (index, row.last_seq)

    def report(self, layers: dict[str, str]) -> None:
        if self.layers is None:
            self.layers = layers
            off = {k: v for k, v in layers.items() if not v.startswith("on")}
            if off:
                logs.event(_log, logging.WARNING, "executors run without "
                           + "; ".join(f"{k} ({v})" for k, v in off.items()))

    def answer(self, ask: p.Ask) -> p.Answer:
        return answer(self.rt, ask)


def answer(rt: Runtime, ask: p.Ask) -> p.Answer:
    """What an executor asks while it runs a slice, read from the store."""
    try:
        if ask.kind == "source":
            return p.Answer(list(rt.store.source(str(ask.args[0]))))
        if ask.kind == "history":
            ck, events = rt.fetch.history(str(ask.args[0]), int(ask.args[1]))
            return p.Answer([list(ck) if ck is not None else None, [[e.seq, e.type, e.data, e.at] for e in events]])
        if ask.kind == "status":
            return p.Answer(rt.program_status(str(ask.args[0])))
        if ask.kind == "child":
            return p.Answer(msgspec.to_builtins(rt.child(*ask.args)))
    except (ValueError, TypeError) as e:  # refused: the program's start() fails with it
        return p.Answer(error=str(e), error_type=type(e).__name__ if isinstance(e, TypeError) else "ValueError")
    except StoreError as e:
        return p.Answer(error=str(e), unavailable=True)
    except Exception as e:  # a fault of ours: the program's action fails, the worker goes on
        return p.Answer(error=f"{ask.kind}: {type(e).__name__}: {e}")
    return p.Answer(error=f"unknown question {ask.kind!r}")


class _Slot:
    """One executor and the thread that feeds it."""

    def __init__(self, pool: ExecutorPool, index: int) -> None:
        self.pool = pool
        self.index = index
        self.executor: Executor | None = None
        self.busy_since: float | None = None
        self.dead = False
        self.failures = 0  # executor starts that failed in a row
        self.thread = threading.Thread(target=self._loop, name=f"flowmetal-executor-{index}", daemon=True)
        self._lock = threading.Lock()
        self.started = threading.Event()  # its first executor is up (or failed to start)

    def _loop(self) -> None:
        pool = self.pool
        try:
            self._ensure()
        except ExecutorError as e:
            logs.event(_log, logging.ERROR, str(e))
        finally:
            self.started.set()
        while True:
            jobs = pool._next(self)
            if not jobs:
                break
            try:
                if len(jobs) == 1:
                    self._one(jobs[0])
                else:
                    self._batch(jobs)
            finally:
                self.busy_since = None
        self._close()

    def _one(self, job: Job, read: tuple[ProgramRow, list[InboxMessage]] | None = None, first_attempt: int = 1) -> None:
        pool = self.pool
        try:
            result = self._run(job, read, first_attempt)
        except (StoreError, Stopped, ExecutorError) as e:
            pool._finish(job, error=e)
        except Exception as e:  # a fault of ours: drop the executor, let the program be tried again
            self._failed(job, e)
        else:
            pool._finish(job, result)

    def _failed(self, job: Job, e: Exception) -> None:
        self._discard()
        logs.event(_log, logging.ERROR, f"running a slice failed: {type(e).__name__}: {e}", program=job.program_id)
        self.pool._finish(job, error=e)

    def _batch(self, jobs: list[Job]) -> None:
        """Several slices in one frame; each is answered (and watched) in turn."""
        pool = self.pool
        ready: list[tuple[Job, ProgramRow, list[InboxMessage]]] = []
        for job in jobs:
            try:
                row, inbox = self._read(job)
            except (StoreError, Stopped) as e:
                pool._finish(job, error=e)
                continue
            if row.status in FINISHED:
                pool._finish(job, SliceResult(row.id, row.status, None))
                continue
            ready.append((job, row, inbox))
        if len(ready) <= 1:
            for job, row, inbox in ready:
                self._one(job, (row, inbox))
            return
        try:
            ex = self._ensure()
        except ExecutorError as e:
            for job, _, _ in ready:
                pool._finish(job, error=e)
            return
        try:
            ex.conn.send(p.RunBatch([self._message(job, row, inbox) for job, row, inbox in ready]))
        except OSError:  # it died meanwhile: the slices go back, to run in a fresh one
            self._discard()
            pool._requeue([job for job, _, _ in ready])
            return
        for i, (job, row, _inbox) in enumerate(ready):
            started_ns, t0 = time.time_ns(), time.perf_counter()
            job.started = self.busy_since = time.monotonic()
            rest = [j for j, _, _ in ready[i + 1:]]
            try:
                result = self._await(ex, job, row)
            except StoreUnavailable as e:  # (the executor goes on with the next)
                pool._finish(job, error=e)
                continue
            except (StoreError, Stopped, ExecutorError) as e:
                self._discard()
                pool._finish(job, error=e)
                self._after_batch(rest, e)
                return
            except Exception as e:  # a fault of ours
                self._failed(job, e)
                pool._requeue(rest)
                return
            if result is None:  # the executor died on its own: this slice once more, alone
                self._discard()
                pool._requeue(rest)
                self._one(job, (row, _inbox), first_attempt=2)
                return
            result.stamp(row, started_ns, time.perf_counter() - t0)
            pool._finish(job, result)
            if self.executor is not ex:  # killed (budget) or replaced (memory): the rest elsewhere
                pool._requeue(rest)
                return

    def _after_batch(self, rest: list[Job], error: BaseException) -> None:
        if isinstance(error, Stopped):
            for job in rest:
                self.pool._finish(job, error=Stopped("the worker is stopping"))
        else:
            self.pool._requeue(rest)

    def stop(self) -> None:
        """From another thread: kill an executor that is computing (the loop sees it die)."""
        with self._lock:
            ex = self.executor
        if ex is not None and self.busy_since is not None:
            with contextlib.suppress(OSError):
                ex.proc.kill()

    def kill(self) -> None:
        with self._lock:
            ex = self.executor
        if ex is not None:
            with contextlib.suppress(OSError):
                ex.proc.kill()

    def _ensure(self) -> Executor:
        with self._lock:
            ex = self.executor
        if ex is None or ex.proc.poll() is not None:
            if ex is not None:
                ex.kill()
            if self.failures:  # starting failed before: do not hammer the machine
                time.sleep(min(5.0, 0.25 * 2 ** self.failures))
            try:
                ex = Executor(self.pool.init)
            except ExecutorError:
                self.failures += 1
                raise
            self.failures = 0
            self.pool.report(ex.layers)
            with self._lock:
                self.executor = ex
                self.dead = False
            with self.pool.cond:  # machines kept by the one before are gone
                for pid in [k for k, v in self.pool.cached.items() if v[0] == self.index]:
                    del self.pool.cached[pid]
        return ex

    def _discard(self) -> None:
        with self._lock:
            ex, self.executor = self.executor, None
            self.dead = True
        if ex is not None:
            ex.kill()
        with self.pool.cond:
            for pid in [k for k, v in self.pool.cached.items() if v[0] == self.index]:
                del self.pool.cached[pid]

    def _close(self) -> None:
        with self._lock:
            ex, self.executor = self.executor, None
        if ex is not None:
            ex.close()

    # -- one slice --------------------------------------------------------------------------
    def _read(self, job: Job) -> tuple[ProgramRow, list[InboxMessage]]:
        """What the slice starts from (the claim's, what the worker carried forward, or read)."""
        claim = job.claim
        if not claim.derived and claim.row is None:
            claim.read_at = time.monotonic()  # (before the read: what came later may be missing)
        claim.derived = False
        try:
            row, inbox = self.pool.store.program_and_inbox(claim)
        except UnknownProgram:
            raise Stopped(f"program {job.program_id} is gone") from None
        job.row, job.inbox = row, inbox
        return row, inbox

    def _message(self, job: Job, row: ProgramRow, inbox: list[InboxMessage]) -> p.RunSlice:
        pool = self.pool
        return p.RunSlice(row, job.claim.fence, inbox, job.outcomes, pool.rt.clock(), pool.rt.rng.getrandbits(63),
                          pool.use_cache(self.index, row))

    def _run(self, job: Job, read: tuple[ProgramRow, list[InboxMessage]] | None = None,
             first_attempt: int = 1) -> SliceResult:
        started_ns, t0 = time.time_ns(), time.perf_counter()
        row, inbox = read if read is not None else self._read(job)
        result = self._run_once(job, row, inbox, first_attempt)
        if result.started_ns == 0:
            result.stamp(row, started_ns, time.perf_counter() - t0)
        return result

    def _run_once(self, job: Job, row: ProgramRow, inbox: list[InboxMessage], first_attempt: int = 1) -> SliceResult:
        """The slice; an executor that dies on its own running it gets it once more in a fresh
        process (`first_attempt` 2: it died already, in a batch), then it is the program's."""
        pool = self.pool
        if row.status in FINISHED:
            return SliceResult(row.id, row.status, None)
        for attempt in range(first_attempt, 3):
            ex = self._ensure()
            outcome = self._watch(ex, job, row, self._message(job, row, inbox))
            if outcome is not None:
                return outcome
            # the executor died on its own: once more in a fresh one, then it is the program's
            with contextlib.suppress(subprocess.TimeoutExpired):
                ex.proc.wait(1)
            code = ex.proc.returncode
            self._discard()
            if pool.closing:
                raise Stopped("the worker is stopping")
            if attempt == 2:
                why = f"signal {-code}" if code is not None and code < 0 else f"exit status {code}"
                return SliceResult(row.id, "failed", failed_commit(
                    row, job.claim.fence, f"ExecutorCrashed: the process running the program died twice ({why})"))
        raise AssertionError("unreachable")

    def _watch(self, ex: Executor, job: Job, row: ProgramRow, message: p.RunSlice) -> SliceResult | None:
        """Send the slice and see it through; None if the executor died on its own."""
        try:
            ex.conn.send(message)
        except OSError:
            return None
        return self._await(ex, job, row)

    def _await(self, ex: Executor, job: Job, row: ProgramRow) -> SliceResult | None:
        """See the slice the executor is running through (its budget counted from now); None if
        the executor died on its own."""
        pool = self.pool
        budget = pool.settings.slice_timeout
        t0 = time.monotonic()
        # CPU time is read only once a slice has run FIRST_LOOK seconds (most end long before):
        # from then on, what it used is at most FIRST_LOOK + what /proc shows since
        cpu0: float | None = None
        next_check = t0 + CHECK_EVERY
        while True:
            now = time.monotonic()
            if now - t0 < FIRST_LOOK:
                used = 0.0
            elif cpu0 is None:
                cpu0 = ex.cpu()
                used = FIRST_LOOK if cpu0 is not None else now - t0
            else:
                cpu = ex.cpu()
                used = FIRST_LOOK + cpu - cpu0 if cpu is not None else now - t0
            if used >= budget or now - t0 > max(4 * budget, budget + 10.0):
                return self._stopped(ex, job, row, f"the program computed for {budget:.1f} s without waiting")
            wait = min(budget - used, max(0.0, next_check - now), max(0.0, t0 + FIRST_LOOK - now) or budget)
            if pool.closing:
                ex.kill()
                raise Stopped("the worker is stopping")
            if not ex.readable(wait):
                if time.monotonic() >= next_check:
                    next_check = time.monotonic() + CHECK_EVERY
                    with contextlib.suppress(StoreError):
                        if pool.store.get_program(row.id).cancel_requested:
                            return self._stopped(ex, job, row, "", cancel=True)
                continue
            try:
                reply = ex.conn.recv()
            except (EOFError, OSError, p.ProtocolError):
                if pool.closing:
                    raise Stopped("the worker is stopping") from None
                return None
            if isinstance(reply, p.Ask):
                try:
                    ex.conn.send(pool.answer(reply))
                except OSError:
                    return None
                continue
            if isinstance(reply, p.SliceDone):
                if reply.replace:
                    self._discard()  # out of memory: a fresh process takes the slot
                if reply.unavailable:
                    raise StoreUnavailable("the store could not be read for the slice")
                result = SliceResult(row.id, reply.status, reply.commit, reply.output)
                result.late = reply.late
                return result
            raise ExecutorError(f"an executor sent {type(reply).__name__} during a slice")

    def _stopped(self, ex: Executor, job: Job, row: ProgramRow, why: str, cancel: bool = False) -> SliceResult:
        """Kill the executor computing the slice; the program fails (or ends cancelled)."""
        self._discard()
        if self.pool.closing:
            raise Stopped("the worker is stopping")
        with contextlib.suppress(StoreError):
            cancel = cancel or self.pool.store.get_program(row.id).cancel_requested
        if cancel:
            commit = failed_commit(row, job.claim.fence, "Cancelled: the program was cancelled while it computed",
                                   status="cancelled")
        else:
            commit = failed_commit(row, job.claim.fence, f"SliceTimeout: {why}")
        return SliceResult(row.id, commit.status, commit)


def describe_in_executor(rt: Runtime, settings: ExecutorSettings, row: ProgramRow, upto: int,
                         waits: list[Any] | None) -> dict[str, Any]:
    """A program's state at event `upto`, replayed in a fresh executor under the slice budget
    (a replay re-runs up to 16 events' worth of the program's code)."""
    ex = Executor(make_init(rt, settings, cache_size=0))
    try:
        ex.conn.send(p.Inspect(row, upto, waits))
        deadline = time.monotonic() + max(4 * settings.slice_timeout, settings.slice_timeout + 10.0)
        while True:
            if not ex.readable(deadline - time.monotonic()):
                raise ExecutorError(f"replaying program {row.id} took longer than the budget")
            reply = ex.conn.recv()
            if isinstance(reply, p.Ask):
                ex.conn.send(answer(rt, reply))
            elif isinstance(reply, p.Described):
                if reply.error is not None:
                    raise ExecutorError(f"cannot replay program {row.id}: {reply.error}")
                return dict(reply.value)
            else:
                raise ExecutorError(f"an executor sent {type(reply).__name__} to an inspection")
    except (OSError, EOFError, p.ProtocolError) as e:
        raise ExecutorError(f"the executor replaying program {row.id} failed ({e})") from None
    finally:
        ex.kill()


def run_host_code(rt: Runtime, source: str, settings: ExecutorSettings | None = None) -> Any:
    """Tests only: run Python `source` inside a fresh executor, after its lockdown, and return
    its `result` variable (or "raised ..."). The executor refuses unless `test_hook` is set."""
    settings = settings or ExecutorSettings(test_hook=True)
    ex = Executor(make_init(rt, settings, cache_size=0))
    try:
        ex.conn.send(p.RunHost(source))
        if not ex.readable(30):
            raise ExecutorError("the executor did not answer")
        done = ex.conn.recv()
        return done.result if isinstance(done, p.HostDone) else done
    finally:
        ex.close()
