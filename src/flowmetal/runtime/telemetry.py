"""What a worker reports about the slices it commits: log lines for a program's start
and end, metrics (slices, steps, durations, timer lateness, lease takeovers) and
trace spans. Kept out of worker.py so the worker's loop reads as what it does."""

from __future__ import annotations

import logging
import re
import time
from typing import Any

from flowmetal.observe import logs, metrics, tracing
from flowmetal.runtime.driver import SliceResult
from flowmetal.store.base import Claim

programs_log = logs.logger("programs")
worker_log = logs.logger("worker")
store_log = logs.logger("store")
_FRAME = re.compile(r'File "([^"]*)", line (\d+)')


def slice_committed(claim: Claim, r: SliceResult, landed: bool) -> None:
    """One slice's outcome, after its commit landed (`landed`) or was refused."""
    if claim.took_over:
        metrics.LEASE_TAKEOVERS.inc()
        logs.event(worker_log, logging.INFO, "lease taken over: the previous holder's ran out", program=claim.program_id)
    metrics.SLICE_SECONDS.observe(r.seconds)
    c = r.commit
    if not landed:
        metrics.labelled(metrics.SLICES, "lost").inc()
        return
    if c is None:
        metrics.labelled(metrics.SLICES, "idle").inc()
        return
    metrics.labelled(metrics.SLICES, c.status).inc()
    metrics.STEPS.inc(len(c.events))
    for late in r.late:
        metrics.WAKEUP_SECONDS.observe(max(0.0, late))
    if c.base_seq == 1:
        metrics.PROGRAMS_STARTED.inc()
        logs.event(programs_log, logging.INFO, "program started", program=r.program_id, file=r.filename)
    last_seq = c.base_seq + len(c.events)
    end_ns = r.started_ns + int(r.seconds * 1e9)
    tracing.record_slice(r.program_id, r.started_ns, end_ns, status=c.status, events=len(c.events), seq=last_seq)
    if c.status in ("completed", "failed", "cancelled"):
        metrics.labelled(metrics.PROGRAMS_ENDED, c.status).inc()
        level = logging.WARNING if c.status == "failed" else logging.INFO
        logs.event(programs_log, level, f"program {c.status}", program=r.program_id, file=r.filename,
                   events=last_seq, error=c.error, at=_failing_line(c.events))
        tracing.record_program(r.program_id, r.filename, c.status, r.created_at, time.time_ns(), c.error)


def _failing_line(events: list[tuple[str, dict[str, Any]]]) -> str | None:
    """`file:line` of the innermost frame of a failure's traceback (the line that raised)."""
    for kind, data in reversed(events):
        if kind == "failed":
            frames = _FRAME.findall(str(data.get("traceback") or ""))
            return f"{frames[-1][0]}:{frames[-1][1]}" if frames else None
    return None


def slice_broke(program_id: str, error: BaseException | None = None) -> None:
    """A slice raised something unexpected (a bug, or a passing fault): logged with its traceback
    (`error`'s, or the one being handled)."""
    metrics.labelled(metrics.SLICES, "error").inc()
    worker_log.error("slice failed unexpectedly; the program is released and retried", exc_info=error or True,
                     extra={"fields": {"program": program_id}})


def store_unavailable(error: Exception, retry_in: float, first: bool) -> None:
    metrics.STORE_ERRORS.labels("worker").inc()
    logs.event(store_log, logging.WARNING if first else logging.DEBUG, f"the store is unavailable: {error}",
               retry_in=retry_in)


def store_fault(error: Exception, retry_in: float) -> None:
    metrics.labelled(metrics.STORE_ERRORS, "worker").inc()
    logs.event(store_log, logging.ERROR, f"a store operation failed: {error}", retry_in=retry_in)


def store_back(down_for: float) -> None:
    logs.event(store_log, logging.WARNING, "the store is back", down_for=round(down_for, 3))
