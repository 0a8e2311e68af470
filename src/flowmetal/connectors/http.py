"""The HTTP request connector: performs `http.request(...)` effects with httpx.

Connection errors, timeouts, 5xx and 429 are retried per the call's policy
(`Retry-After` honoured); other statuses are returned to the program. When
the retries run out on a 5xx/429, the program gets that last response. Every
request carries `Idempotency-Key: PROGRAM:SEQ`, the same on every attempt, and a W3C
`traceparent` header in the program's trace (see flowmetal.observe.tracing).
"""

from __future__ import annotations

import dataclasses
import email.utils
import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx

from flowmetal.connectors.egress import EgressPolicy, EgressRefused, guard
from flowmetal.connectors.loop import CallLoop
from flowmetal.connectors.secrets import SecretMissing, SecretSource, resolve
from flowmetal.connectors.telemetry import attempt
from flowmetal.observe.tracing import CallSpan
from flowmetal.store.base import CallClaim, CallOutcome, Store

DEFAULT_MAX_BYTES = 10 * 1024 * 1024


class HttpConnector:
    def __init__(self, store: Store, *, max_bytes: int = DEFAULT_MAX_BYTES, concurrency: int = 16,
                 lease: float = 30.0, secrets: SecretSource | None = None, egress: EgressPolicy | None = None) -> None:
        self.store = store
        self.secrets = secrets if secrets is not None else SecretSource()
        self.egress = egress or EgressPolicy()  # where requests may go (connectors/egress.py)
        self.max_bytes = max_bytes
        self.client: httpx.Client | None = None  # made when first needed: importing httpx costs start-up time
        self._client_lock = threading.Lock()
        self.loop = CallLoop(store, "http", None, self.perform, concurrency=concurrency, lease=lease,
                             label="http")

    def _client(self) -> httpx.Client:
        with self._client_lock:
            if self.client is None:
                import httpx

                self.client = httpx.Client(follow_redirects=True,
                                           transport=guard(httpx.HTTPTransport(), self.egress))
            return self.client

    def run(self) -> None:
        """Perform requests others (and retries) leave in the store; the worker performs its own
        programs' requests itself (runtime/inline.py) with `perform`. The client (and httpx) is
        made by the first request, not here: a restarted worker's first moments go to its programs."""
        try:
            self.loop.run()
        finally:
            with self._client_lock:
                if self.client is not None:
                    self.client.close()
                    self.client = None

    def stop(self) -> None:
        self.loop.stop()

    def perform(self, claim: CallClaim) -> CallOutcome:
        p: dict[str, Any] = claim.payload
        return attempt(claim, f"HTTP {p.get('method', '')}", lambda span: self._perform(claim, span))

    def _perform(self, claim: CallClaim, span: CallSpan) -> CallOutcome:
        try:
            resolved = resolve(claim.payload, self.secrets)
        except SecretMissing as e:
            return CallOutcome(ok=False, retryable=False, error={"type": "SecretMissing", "message": str(e)})
        outcome = self._request(claim, resolved.payload, span)
        # a service may echo what it was sent: no secret value goes into the record
        return dataclasses.replace(outcome, result=resolved.redact(outcome.result),
                                   error=resolved.redact(outcome.error),
                                   final_result=resolved.redact(outcome.final_result))

    def _request(self, claim: CallClaim, p: dict[str, Any], span: CallSpan) -> CallOutcome:
        import httpx

        client = self._client()
        headers = dict(p.get("headers") or {})
        auth = p.get("auth") or {}
        if "header" in auth:
            headers["Authorization"] = auth["header"]
        headers.setdefault("Idempotency-Key", claim.key)
        if not any(k.lower() == "traceparent" for k in headers):  # the program's own wins
            headers["traceparent"] = span.traceparent
        timeout = p.get("timeout")
        kwargs: dict[str, Any] = {"headers": headers, "params": p.get("params"),
                                  "timeout": httpx.Timeout(timeout) if timeout else None}
        if "basic" in auth:
            kwargs["auth"] = httpx.BasicAuth(*auth["basic"])
        if p.get("json") is not None:
            kwargs["json"] = p["json"]
        elif isinstance(p.get("data"), dict):
            kwargs["data"] = p["data"]
        elif p.get("data") is not None:
            kwargs["content"] = str(p["data"]).encode("latin-1")
        try:
            with client.stream(p["method"], p["url"], **kwargs) as response:
                body = self._read(response)
        except EgressRefused as e:
            return CallOutcome(ok=False, retryable=False, error={"type": "EgressRefused", "message": str(e)})
        except _TooLarge as e:
            return CallOutcome(ok=False, retryable=False, error={"type": "ResponseTooLarge", "message": str(e)})
        except httpx.TimeoutException as e:
            return CallOutcome(ok=False, error={"type": "TimeoutError", "message": str(e) or "timed out"})
        except httpx.HTTPError as e:  # connection refused, DNS, protocol errors
            return CallOutcome(ok=False, error={"type": type(e).__name__, "message": str(e)})
        value = {"status": response.status_code, "headers": {k.lower(): v for k, v in response.headers.items()},
                 "text": body.decode(response.encoding or "utf-8", errors="replace"), "url": p["url"],
                 "method": p["method"]}
        if response.status_code >= 500 or response.status_code == 429:
            return CallOutcome(ok=False, error={"type": f"HTTP{response.status_code}",
                                                "message": f"{p['method']} {p['url']} returned HTTP {response.status_code}"},
                               retry_after=_retry_after(response.headers.get("retry-after")),
                               final_result=value, has_final_result=True)
        return CallOutcome(ok=True, result=value)

    def _read(self, response: httpx.Response) -> bytes:
        declared = response.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > self.max_bytes:
            raise _TooLarge(f"the response from {response.url} is {declared} bytes, over the limit of {self.max_bytes} bytes")
        chunks, size = [], 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > self.max_bytes:
                raise _TooLarge(f"the response from {response.url} exceeds the limit of {self.max_bytes} bytes")
            chunks.append(chunk)
        return b"".join(chunks)


class _TooLarge(Exception):
    pass


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
