"""Values programs get from the outside world: HTTP responses, delivered
callback requests, callback handles, and the errors of foreign calls.

Effects are recorded as JSON; `revive(kind, raw)` turns a recorded result into
the value the program sees, and is used both live and when replaying, so a
replay hands the program exactly the same value.
"""

from __future__ import annotations

import json
from typing import Any

from flowmetal.machine.access import register_kind
from flowmetal.machine.objects import EffectFunction
from flowmetal.machine.show import register_leaf
from flowmetal.store.retry import normalize


class CallError(Exception):
    """A foreign function call failed for good: `.type` and `.message` are the remote error's."""

    def __init__(self, type: str = "Error", message: str = "", attempts: int = 1) -> None:
        super().__init__(type, message, attempts)

    @property
    def type(self) -> str:
        return str(self.args[0])

    @property
    def message(self) -> str:
        return str(self.args[1])

    @property
    def attempts(self) -> int:
        return int(self.args[2])

    def __str__(self) -> str:
        return f"{self.args[0]}: {self.args[1]}"


class HttpError(Exception):
    """An HTTP request failed: a 4xx/5xx status (`raise_for_status()`), or no response at all
    after the retries (`.status` is None)."""

    def __init__(self, message: str = "", status: int | None = None, url: str = "") -> None:
        super().__init__(message, status, url)

    @property
    def status(self) -> int | None:
        return self.args[1]

    @property
    def url(self) -> str:
        return str(self.args[2])

    def __str__(self) -> str:
        return str(self.args[0])


for _cls in (CallError, HttpError):
    _cls.__module__ = "flowmetal"


def _decode_json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as e:
        raise ValueError(f"{what} is not JSON: {e}") from None


class Response:
    """What `http.request` returns."""

    __slots__ = ("headers", "method", "status", "text", "url")

    def __init__(self, status: int, headers: dict[str, str], text: str, url: str, method: str) -> None:
        self.status = status
        self.headers = headers
        self.text = text
        self.url = url
        self.method = method

    @property
    def ok(self) -> bool:
        return self.status < 400

    def json(self) -> Any:
        return _decode_json(self.text, f"the response from {self.url}")

    def raise_for_status(self) -> None:
        if self.status >= 400:
            raise HttpError(f"{self.method} {self.url} returned HTTP {self.status}", self.status, self.url)

    def __repr__(self) -> str:
        return f"<Response [{self.status}]>"

    def _state(self) -> list[Any]:
        return [self.status, self.headers, self.text, self.url, self.method]


class Request:
    """A request delivered to a callback URL. `choice` is the answer chosen when the program
    asked for `choices`; `form()` reads a form-encoded body."""

    __slots__ = ("choice", "headers", "method", "text")

    def __init__(self, method: str, headers: dict[str, str], text: str, choice: str | None = None) -> None:
        self.method = method
        self.headers = headers
        self.text = text
        self.choice = choice

    def json(self) -> Any:
        return _decode_json(self.text, "the delivered request body")

    def form(self) -> dict[str, str]:
        from urllib.parse import parse_qs

        return {k: v[0] for k, v in parse_qs(self.text, keep_blank_values=True).items()}

    def __repr__(self) -> str:
        return f"<Request {self.method}>"

    def _state(self) -> list[Any]:
        return [self.method, self.headers, self.text, self.choice]


class Callback:
    """What `callback()` returns: a single-use URL, `.wait(timeout=None)` for its request, and
    `.reject(reason)` to refuse the request it got and take another one."""

    __slots__ = ("_options", "_token", "url")

    def __init__(self, token: str, url: str, options: dict[str, Any] | None = None) -> None:
        self._token = token
        self.url = url
        self._options = options or {}

    @property
    def wait(self) -> EffectFunction:
        return EffectFunction("callback_wait", (self._token,))

    @property
    def reject(self) -> EffectFunction:
        return EffectFunction("callback_reject", (self._token, self._options))

    def __repr__(self) -> str:
        return f"<Callback {self.url}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Callback) and other._token == self._token

    def __hash__(self) -> int:
        return hash(("callback", self._token))


def Retry(attempts: int = 5, initial: float = 1.0, backoff: float = 2.0, max_delay: float = 60.0,
          non_retryable: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """A retry policy for `call()` and `http.request()` (a plain dict, so it prints and records as one)."""
    return normalize({"attempts": attempts, "initial": initial, "backoff": backoff, "max_delay": max_delay,
                      "non_retryable": list(non_retryable)})


def revive(kind: str, raw: Any) -> Any:
    """The program's value for a recorded effect result."""
    if kind == "http":
        return Response(int(raw["status"]), dict(raw["headers"]), str(raw["text"]), str(raw["url"]),
                        str(raw["method"]))
    if kind == "callback_wait":
        choice = raw.get("choice")
        return Request(str(raw.get("method", "POST")), dict(raw.get("headers") or {}), str(raw.get("body", "")),
                       None if choice is None else str(choice))
    if kind == "callback":
        return Callback(str(raw["token"]), str(raw["url"]), raw.get("options"))
    return raw


def error_from_record(rec: dict[str, Any]) -> BaseException | None:
    """The program's exception for a recorded connector failure (None: not a connector error)."""
    kind = rec.get("type")
    if kind == "CallError":
        remote = rec.get("remote") or {}
        return CallError(str(remote.get("type", "Error")), str(remote.get("message", "")),
                         int(rec.get("attempts") or 1))
    if kind == "HttpError":
        return HttpError(str(rec.get("message", "")), rec.get("status"), str(rec.get("url", "")))
    return None


def register_kinds() -> None:
    """Let programs hold these values, with the attributes `lang/surface.py` lists for them."""
    register_kind(CallError, "flowmetal.CallError")
    register_kind(HttpError, "flowmetal.HttpError")
    register_kind(Response, "flowmetal.http.Response")
    register_kind(Request, "flowmetal.Request")
    register_kind(Callback, "flowmetal.Callback")
    for cls in (Response, Request, Callback):
        register_leaf(cls)


def register_codec(codec: Any) -> None:
    codec.register(Response, "fm.http.response", state=Response._state, build=lambda s: Response(*s))
    codec.register(Request, "fm.callback.request", state=Request._state, build=lambda s: Request(*s))
    codec.register(Callback, "fm.callback", state=lambda c: [c._token, c.url, c._options],
                   build=lambda s: Callback(*s))
    codec.register_exception(CallError, "flowmetal.CallError")
    codec.register_exception(HttpError, "flowmetal.HttpError")
