"""Request and response plumbing shared by the API's routes: JSON errors, size-capped
bodies, typed field access that answers 422 with the field's name, and the mapping
of Flowmetal's own exceptions to HTTP statuses.

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


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


async def json_object(request: Request, limit: int) -> Fields:
    """The body as a JSON object (400 if it is not JSON at all, 422 if it is not an object)."""
    raw = await read_body(request, limit)
    if not raw.strip():
        raise ApiError(400, "BadJSON", "the request body is empty; expected a JSON object")
    try:
        value = json.loads(raw.decode("utf-8"), parse_constant=_no_constants)
    except UnicodeDecodeError:
        raise ApiError(400, "BadJSON", "the request body is not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise ApiError(400, "BadJSON", f"malformed JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    except ValueError as e:
        raise ApiError(400, "BadJSON", f"malformed JSON: {e}") from None
    if not isinstance(value, dict):
        raise ApiError(422, "ValidationError", f"expected a JSON object, got {_kind(value)}")
    return Fields(value)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


_MISSING: Any = object()


class Fields:
    """Typed access to the members of a JSON object (a body or the query string)."""

    def __init__(self, data: dict[str, Any], where: str = "") -> None:
        self.data = data
        self.where = where

    def _bad(self, name: str, expected: str, got: Any) -> ApiError:
        return ApiError(422, "ValidationError", f"{self.where}{name}: expected {expected}, got {_kind(got)}")

    def _range(self, name: str, low: str, high: str | None) -> ApiError:
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        return ApiError(422, "ValidationError", f"{self.where}{name}: must be {bounds}")

    def has(self, name: str) -> bool:
        return name in self.data

    def get(self, name: str, default: Any = _MISSING) -> Any:
        if name not in self.data:
            if default is _MISSING:
                raise ApiError(422, "ValidationError", f"{self.where}{name}: required")
            return default
        return self.data[name]

    def string(self, name: str, default: Any = _MISSING, *, max_len: int = 1 << 20) -> Any:
        value = self.get(name, default)
        if value is default and default is not _MISSING:
            return value
        if not isinstance(value, str) or not value:
            raise self._bad(name, "a non-empty string", value)
        if len(value) > max_len:
            raise ApiError(422, "ValidationError", f"{self.where}{name}: longer than {max_len} characters")
        return value

    def number(self, name: str, default: Any = _MISSING, *, low: float = 0.0,
               high: float = math.inf) -> Any:
        value = self.get(name, default)
        if value is default and default is not _MISSING:
            return value
        if isinstance(value, str) and self.where == "query parameter ":
            try:
                value = float(value)
            except ValueError:
                raise self._bad(name, "a number", value) from None
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise self._bad(name, "a number", value)
        if not low <= value <= high:
            raise self._range(name, f"{low:g}", None if high == math.inf else f"{high:g}")
        return float(value)

    def integer(self, name: str, default: Any = _MISSING, *, low: int = 0, high: int = 1 << 62) -> Any:
        value = self.get(name, default)
        if value is default and default is not _MISSING:
            return value
        if isinstance(value, str) and self.where == "query parameter ":
            try:
                value = int(value)
            except ValueError:
                raise self._bad(name, "an integer", value) from None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._bad(name, "an integer", value)
        if not low <= value <= high:
            raise self._range(name, str(low), None if high == 1 << 62 else str(high))
        return value

    def boolean(self, name: str, default: Any = _MISSING) -> Any:
        value = self.get(name, default)
        if not isinstance(value, bool):
            raise self._bad(name, "true or false", value)
        return value

    def obj(self, name: str, default: Any = _MISSING) -> Any:
        value = self.get(name, default)
        if value is default and default is not _MISSING:
            return value
        if not isinstance(value, dict):
            raise self._bad(name, "an object", value)
        return value

    def strings(self, name: str, *, max_items: int = 1000) -> list[str]:
        value = self.get(name)
        if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
            raise self._bad(name, "a non-empty array of non-empty strings", value)
        if len(value) > max_items:
            raise ApiError(422, "ValidationError", f"{self.where}{name}: more than {max_items} items")
        return value


def query(request: Request) -> Fields:
    return Fields(dict(request.query_params), "query parameter ")


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
