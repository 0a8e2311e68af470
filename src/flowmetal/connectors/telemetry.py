"""What connectors report about each attempt at a call: a span in the program's trace,
metrics by kind, name and outcome, and a log line when an attempt fails."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from flowmetal.observe import logs, metrics, tracing
from flowmetal.store.base import CallClaim, CallOutcome

log = logs.logger("calls")


def attempt(claim: CallClaim, span_name: str, run: Callable[[tracing.CallSpan], CallOutcome]) -> CallOutcome:
    """Perform one attempt with `run(span)` (the span carries the trace ids to hand on), and report it."""
    if not tracing.enabled():  # (the common case, without a context manager per call)
        start = time.perf_counter()
        outcome = run(tracing.plain_span(claim.program_id))
        seconds = time.perf_counter() - start
    else:
        attributes = {"flowmetal.call.key": claim.key, "flowmetal.call.kind": claim.kind,
                      "flowmetal.call.name": claim.name, "flowmetal.call.attempt": claim.attempt}
        with tracing.call_span(claim.program_id, span_name, attributes) as span:
            start = time.perf_counter()
            outcome = run(span)
            seconds = time.perf_counter() - start
            if not outcome.ok:
                span.failed(_message(outcome))
    label = "ok" if outcome.ok else "error"
    metrics.labelled(metrics.CALL_ATTEMPTS, claim.kind, claim.name, label).inc()
    metrics.labelled(metrics.CALL_SECONDS, claim.kind, claim.name, label).observe(seconds)
    if not outcome.ok:
        logs.event(log, logging.WARNING, "call attempt failed", program=claim.program_id, key=claim.key,
                   name=claim.name, attempt=claim.attempt, error=_message(outcome), retryable=outcome.retryable,
                   seconds=round(seconds, 6), traceback=(outcome.error or {}).get("traceback"))
    return outcome


def _message(outcome: CallOutcome) -> str:
    error = outcome.error or {}
    return f"{error.get('type', 'Error')}: {error.get('message', '')}"
