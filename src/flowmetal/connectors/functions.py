"""Foreign functions in Python: the `FunctionWorker` SDK and `--functions file.py`.

    worker = flowmetal.FunctionWorker("sqlite:///flowmetal.db")

    @worker.function("inventory.reserve")
    def reserve(ctx, sku, qty):
        ...  # ctx.idempotency_key, ctx.attempt, ctx.program_id, ctx.deadline, ctx.trace_id

    worker.run()

A function is plain or `async`; its first parameter is the call's context. Its
return value (JSON) is the program's result of `call(...)`; an exception fails
the attempt, which is retried per the call's policy unless it is a
`NonRetryable` or its type is listed in the policy's `non_retryable`.
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
import json
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flowmetal.connectors.loop import CallLoop
from flowmetal.connectors.secrets import SecretMissing, SecretSource, resolve
from flowmetal.connectors.telemetry import attempt
from flowmetal.errors import FlowmetalError, UsageError
from flowmetal.observe.tracing import CallSpan
from flowmetal.store import open_store
from flowmetal.store.base import CallClaim, CallOutcome, Store

_MARK = "__flowmetal_function__"




class NonRetryable(Exception):
    """Raise it (or a subclass) from a function to fail the call for good, without retries.
    `type` names the error the program's `CallError.type` shows (default: the class's name),
    e.g. `raise NonRetryable("no apples left", type="OutOfStock")`."""

    def __init__(self, message: str = "", *, type: str | None = None) -> None:
        super().__init__(message)
        self.type = type


@dataclass(frozen=True)
class CallContext:
    idempotency_key: str  # PROGRAM:SEQ, the same for every attempt: make side effects idempotent on it
    attempt: int  # 1 for the first attempt
    program_id: str
    deadline: float | None  # wall-clock seconds when this attempt is given up (its timeout)
    name: str
    trace_id: str = ""  # the program's trace id (32 hex digits; see flowmetal.observe.tracing)
    traceparent: str = ""  # W3C trace context of this attempt's span, to pass on to services called


def function(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Mark a function in a `--functions` file as the implementation of `name`."""
    _check_name(name)

    def mark(fn: Callable[..., Any]) -> Callable[..., Any]:
        setattr(fn, _MARK, name)
        return fn

    return mark


def _check_name(name: Any) -> None:
    if not isinstance(name, str) or not name.strip():
        raise UsageError(f"a function name must be a non-empty str, not {name!r}")


def load_functions_file(path: str) -> dict[str, Callable[..., Any]]:
    """The functions marked with `@flowmetal.function(...)` in a Python file."""
    file = Path(path)
    if not file.is_file():
        raise UsageError(f"--functions: no such file {path!r}")
    spec = importlib.util.spec_from_file_location(f"flowmetal_functions_{abs(hash(str(file.resolve())))}", file)
    if spec is None or spec.loader is None:
        raise UsageError(f"--functions: cannot load {path!r} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        raise UsageError(f"--functions {path}: {type(e).__name__}: {e}") from None
    found: dict[str, Callable[..., Any]] = {}
    for value in vars(module).values():
        name = getattr(value, _MARK, None)
        if isinstance(name, str) and callable(value):
            if name in found and found[name] is not value:
                raise UsageError(f"--functions {path}: two functions are marked {name!r}")
            found[name] = value
    if not found:
        raise UsageError(f"--functions {path}: no function is marked with @flowmetal.function(\"name\")")
    return found


class FunctionWorker:
    """Serves foreign functions to programs of one store."""

    def __init__(self, store: str | Store | None = None, *, concurrency: int = 8, lease: float = 30.0,
                 secrets: SecretSource | None = None) -> None:
        self.store = store if isinstance(store, Store) else open_store(store)
        # where `secret("NAME")` arguments get their values (FLOWMETAL_SECRET_NAME, a secrets file)
        self.secrets = secrets if secrets is not None else SecretSource()
        self.functions: dict[str, Callable[..., Any]] = {}
        self.concurrency = concurrency
        self.lease = lease
        self._loop: CallLoop | None = None
        self._thread: threading.Thread | None = None

    def function(self, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        _check_name(name)

        def register(fn: Callable[..., Any]) -> Callable[..., Any]:
            self.functions[name] = fn
            return fn

        return register

    def add(self, functions: dict[str, Callable[..., Any]]) -> None:
        self.functions.update(functions)

    # -- running ------------------------------------------------------------------
    def _make_loop(self) -> CallLoop:
        if not self.functions:
            raise FlowmetalError("FunctionWorker: no functions registered")
        self._loop = CallLoop(self.store, "function", sorted(self.functions), self.perform,
                              concurrency=self.concurrency, lease=self.lease, label="functions")
        return self._loop

    def run(self) -> None:
        """Serve calls until SIGTERM/SIGINT (in the main thread) or `stop()`."""
        loop = self._make_loop()
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda signum, frame: loop.stop())
        loop.run()

    def start(self) -> None:
        """Serve calls on a background thread."""
        loop = self._make_loop()
        self._thread = threading.Thread(target=loop.run, name="flowmetal-functions", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = 30.0) -> None:
        if self._loop is not None:
            self._loop.stop()
        if self._thread is not None:
            self._thread.join(timeout)

    # -- one attempt ----------------------------------------------------------------
    def perform(self, claim: CallClaim) -> CallOutcome:
        return attempt(claim, f"call {claim.name}", lambda span: self._perform(claim, span))

    def _perform(self, claim: CallClaim, span: CallSpan) -> CallOutcome:
        fn = self.functions.get(claim.name)
        if fn is None:  # claims are filtered by name, so only a race with a reconfiguration gets here
            return CallOutcome(ok=False, error={"type": "LookupError", "message": f"no function {claim.name!r}"})
        ctx = CallContext(claim.key, claim.attempt, claim.program_id, claim.deadline, claim.name, span.trace_id,
                          span.traceparent)
        try:
            resolved = resolve(claim.payload or {}, self.secrets)
        except SecretMissing as e:
            return CallOutcome(ok=False, retryable=False, error={"type": "SecretMissing", "message": str(e)})
        payload = resolved.payload
        args, kwargs = list(payload.get("args") or []), dict(payload.get("kwargs") or {})
        try:
            result = _invoke(fn, ctx, args, kwargs)
        except Exception as e:
            # (the failed attempt is logged with this traceback by connectors/telemetry.py); a secret the
            # function was given and put into its error is hidden again
            return CallOutcome(ok=False, error=resolved.redact(_error(e)), retryable=not isinstance(e, NonRetryable))
        try:
            json.dumps(result, allow_nan=False)
        except (TypeError, ValueError) as e:
            return CallOutcome(ok=False, retryable=False, error={
                "type": "TypeError", "message": resolved.redact(f"{claim.name} returned a value that is not JSON: {e}")})
        return CallOutcome(ok=True, result=resolved.redact(result))


@functools.lru_cache(maxsize=1024)
def _is_async(fn: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(fn)


def _invoke(fn: Callable[..., Any], ctx: CallContext, args: list[Any], kwargs: dict[str, Any]) -> Any:
    if _is_async(fn):
        import asyncio  # only for async functions: it is slow to import
        return asyncio.run(_bounded(fn(ctx, *args, **kwargs), ctx.deadline))
    return fn(ctx, *args, **kwargs)


async def _bounded(coro: Any, deadline: float | None) -> Any:
    import asyncio

    if deadline is None:
        return await coro
    import time

    return await asyncio.wait_for(coro, max(0.0, deadline - time.time()))


TRACEBACK_LIMIT = 4000  # characters of a failed attempt's traceback kept (its end: where it failed)


def _error(e: BaseException) -> dict[str, str]:
    if isinstance(e, TimeoutError) and not str(e):  # (asyncio's TimeoutError is this one since 3.11)
        return {"type": "TimeoutError", "message": "the attempt timed out"}
    kind = e.type if isinstance(e, NonRetryable) and e.type else type(e).__name__
    return {"type": kind, "message": str(e), "traceback": _traceback(e)}


def _traceback(e: BaseException) -> str:
    """The function's own traceback: its frames (those of this module, the call into it, left
    out) and the error, without the "Traceback (most recent call last):" header, so a worker's
    log never reads as if Flowmetal itself had crashed."""
    import traceback

    tb = e.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    lines = traceback.format_exception(type(e), e, tb)
    text = "".join(line for line in lines if not line.startswith("Traceback (most recent call last)"))
    if len(text) > TRACEBACK_LIMIT:
        text = "...\n" + text[-TRACEBACK_LIMIT:]
    return text
