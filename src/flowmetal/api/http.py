"""Request and response plumbing shared by the API's routes: JSON errors, size-capped
bodies, and the mapping of Flowmetal's own exceptions to HTTP statuses.

Every failure a client can cause becomes `{"error": {"type", "message"}}` with a 4xx
status; anything else is logged here and answered with a bare 500 — never a traceback.
"""

from __future__ import annotations

import functools
import json
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from flowmetal.errors import CheckFailed, FlowmetalError
from flowmetal.observe import metrics
from flowmetal.store.base import (
    ProgramExists,
    ProgramFinished,
    StoreError,
    UnknownCall,
    UnknownProgram,
)
from flowmetal.store.operations import (
    ScheduleExists,
    UnknownDeployment,
    UnknownHook,
    UnknownSchedule,
)

log = logging.getLogger("flowmetal.api")

# once a body is known to be too large, read (and drop) at most this much more before
# answering 413, so an ordinary client that is still sending sees the answer rather
# than a reset connection; anything larger is cut off
_DRAIN_LIMIT = 8 * 1024 * 1024


class ApiError(Exception):
    def __init__(self, status: int, type_: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.type = type_
        self.message = message
        self.extra = extra

    def response(self) -> Response:
        headers = {"WWW-Authenticate": "Bearer"} if self.status == 401 else None
        return error_response(self.status, self.type, self.message, headers=headers, **self.extra)


def _finite(value: Any) -> Any:
    """JSON has no NaN or Infinity (a program may have recorded them): spell them as strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


class JSON(JSONResponse):
    def render(self, content: Any) -> bytes:
        try:
            text = json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        except ValueError:
            text = json.dumps(_finite(content), ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        return text.encode("utf-8")


def error_response(status: int, type_: str, message: str, headers: dict[str, str] | None = None,
                   **extra: Any) -> Response:
    return JSON({"error": {"type": type_, "message": message, **extra}}, status_code=status, headers=headers)


# -- bodies -------------------------------------------------------------------------------
async def read_body(request: Request, limit: int) -> bytes:
    """The request body, at most `limit` bytes (413 beyond). The Content-Length header is
    checked first, and the bytes actually streamed are counted too (chunked uploads and
    lying headers)."""
    declared = request.headers.get("content-length")
    too_large = ApiError(413, "PayloadTooLarge", f"the request body is larger than the limit of {limit} bytes")
    if declared is not None:
        try:
            length = int(declared)
        except ValueError:
            raise ApiError(400, "BadRequest", "malformed Content-Length header") from None
        if length > limit:
            await _drain(request, length)
            raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            await _drain(request, size)
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


async def _drain(request: Request, already: int) -> None:
    if already > _DRAIN_LIMIT:
        return
    seen = 0
    try:
        async for chunk in request.stream():
            seen += len(chunk)
            if seen > _DRAIN_LIMIT:
                return
    except (ClientDisconnect, RuntimeError):  # RuntimeError: the stream was already consumed
        return


# -- mapping exceptions ---------------------------------------------------------------------
Handler = Callable[[Request], Awaitable[Response]]


def endpoint(fn: Handler) -> Handler:
    """Wrap a route so every failure is a JSON error with the right status."""

    @functools.wraps(fn)
    async def wrapped(request: Request) -> Response:
        try:
            return await fn(request)
        except ApiError as e:
            return e.response()
        except ClientDisconnect:
            return Response(status_code=400)  # nobody is left to read it
        except (UnknownProgram, UnknownCall, UnknownDeployment, UnknownSchedule, UnknownHook) as e:
            return error_response(404, type(e).__name__, str(e))
        except (ProgramExists, ProgramFinished, ScheduleExists) as e:
            return error_response(409, type(e).__name__, str(e))
        except StoreError as e:
            metrics.STORE_ERRORS.labels("api").inc()
            log.warning("store error on %s %s: %s", request.method, request.url.path, e)
            return error_response(503, "StoreError", str(e))
        except CheckFailed as e:
            diagnostics = [{"file": d.filename, "line": d.line, "col": d.col, "severity": d.severity,
                            "message": d.message} for d in e.diagnostics]
            return error_response(422, "CheckFailed", str(e), diagnostics=diagnostics)
        except FlowmetalError as e:  # e.g. a program path that cannot be read
            return error_response(422, type(e).__name__, str(e))
        except Exception:
            log.exception("unexpected error on %s %s", request.method, request.url.path)
            return error_response(500, "InternalError", "internal error (details are in the server's log)")

    return wrapped
