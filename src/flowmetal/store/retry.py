"""Retry policies for calls performed by connectors.

A policy is a plain JSON object stored with the call, so every store backend and
every connector (in any language) applies the same rule:

    {"attempts": 5, "initial": 1.0, "backoff": 2.0, "max_delay": 60.0, "non_retryable": ["ValueError"]}

`attempts` counts every attempt, the first included; the delay before attempt
n+1 is `initial * backoff**(n-1)`, capped at `max_delay`, and never shorter
than a `Retry-After` the other side asked for.

An attempt *lost* with its worker (the process holding it died, or stopped
renewing its lease, before reporting anything) is not a failure of the
function: it is run again at once and does not count against `attempts`
(see `requeue_lost`), unless a call has lost `MAX_LOST` attempts already — a
call that kills every worker running it then fails like any other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flowmetal.store.base import CallOutcome

DEFAULT_POLICY: dict[str, Any] = {
    "attempts": 5, "initial": 1.0, "backoff": 2.0, "max_delay": 60.0, "non_retryable": [],
}
_KEYS = set(DEFAULT_POLICY)
MAX_LOST = 20  # attempts of one call lost with their worker before further losses count as failures


def normalize(policy: Any) -> dict[str, Any]:
    """A complete, validated policy from a user's (possibly partial) one; ValueError if malformed."""
    if policy is None:
        return dict(DEFAULT_POLICY, non_retryable=[])
    if not isinstance(policy, dict):
        raise TypeError(f"retry must be a dict or Retry(...), not {type(policy).__name__}")
    unknown = set(policy) - _KEYS
    if unknown:
        raise ValueError(f"retry: unknown option(s) {', '.join(sorted(unknown))} "
                         f"(known: {', '.join(sorted(_KEYS))})")
    out = dict(DEFAULT_POLICY, non_retryable=[])
    out.update(policy)
    attempts = out["attempts"]
    if not isinstance(attempts, int) or isinstance(attempts, bool) or attempts < 1:
        raise ValueError(f"retry: attempts must be an int >= 1, not {attempts!r}")
    for key in ("initial", "backoff", "max_delay"):
        value = out[key]
        if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
            raise ValueError(f"retry: {key} must be a number >= 0, not {value!r}")
        out[key] = float(value)
    names = out["non_retryable"]
    if not isinstance(names, list | tuple) or not all(isinstance(n, str) for n in names):
        raise ValueError("retry: non_retryable must be a list of error type names")
    out["non_retryable"] = list(names)
    return out


def next_delay(policy: dict[str, Any], attempt: int, error_type: str | None, retryable: bool,
               retry_after: float | None = None) -> float | None:
    """Seconds to wait before the next attempt after attempt number `attempt` failed, or None
    when the call has failed for good."""
    if not retryable or attempt >= int(policy.get("attempts", 1)):
        return None
    if error_type is not None and error_type in policy.get("non_retryable", ()):
        return None
    delay = float(policy.get("initial", 1.0)) * float(policy.get("backoff", 2.0)) ** (attempt - 1)
    delay = min(delay, float(policy.get("max_delay", 60.0)))
    if retry_after is not None:
        delay = max(delay, float(retry_after))
    return delay


@dataclass
class Settlement:
    """What one attempt's outcome does to its call (the same rule in every backend)."""

    retry_at: float | None  # set: another attempt is scheduled then
    last_error: dict[str, Any] | None  # the attempt's error, if it failed
    message: dict[str, Any] | None  # set: the call is done; this goes to the program


def settle(policy: dict[str, Any], attempt: int, outcome: CallOutcome, deadline: float | None,
           now: float) -> Settlement:
    if outcome.ok:
        return Settlement(None, None, {"ok": True, "result": outcome.result, "attempts": attempt})
    error = dict(outcome.error or {"type": "Error", "message": "failed"})
    delay = next_delay(policy, attempt, error.get("type"), outcome.retryable, outcome.retry_after)
    if delay is not None and (deadline is None or now + delay < deadline):
        return Settlement(now + delay, error, None)
    if outcome.has_final_result:  # e.g. an HTTP 5xx response once the retries ran out
        return Settlement(None, error, {"ok": True, "result": outcome.final_result, "attempts": attempt})
    return Settlement(None, error, {"ok": False, "error": error, "attempts": attempt})


def counts_as_failure(lost: int) -> bool:
    """Whether the next attempt lost with its worker counts against the policy (see MAX_LOST)."""
    return lost >= MAX_LOST
