"""Every route of the API, declared once with its types: `Operations.add(...)` registers a
handler with its method, path, query and body types, responses and errors. From that one
table come the Starlette routes (one per path, so a 405 names every allowed method in
`Allow`), the validation of each request, and the OpenAPI document (`api/openapi.py`).

A handler is called as `handler(request, query=..., body=...)` (only the ones it declares,
already decoded into their types) and returns a Struct, or `Reply(status, value)` when
the status is not the operation's first success status, or a Starlette `Response`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from flowmetal.api.http import JSON, ApiError, endpoint, read_body
from flowmetal.api.types import PATTERN_HELP

Handler = Callable[..., Awaitable[Any]]


@dataclass
class Reply:
    status: int
    value: Any
    headers: dict[str, str] | None = None


@dataclass
class Operation:
    method: str
    path: str
    handler: Handler
    summary: str
    responses: dict[int, tuple[Any, str]]  # status -> (response type or None, description)
    body: tuple[type, ...] = ()  # one type, or several told apart by their required fields
    raw_body: bool = False  # any content type, read by the handler itself (callbacks)
    query: type | None = None
    errors: tuple[int, ...] = ()
    public: bool = False  # no bearer token needed, even when the server has one
    description: str | None = None
    html: bool = False  # a 200 that is a page for people (text/html), not JSON


@dataclass
class Operations:
    items: list[Operation] = field(default_factory=list)

    def add(self, method: str, path: str, *, summary: str, responses: dict[int, tuple[Any, str]],
            body: type | Sequence[type] | None = None, raw_body: bool = False, query: type | None = None,
            errors: Sequence[int] = (), public: bool = False, description: str | None = None,
            html: bool = False) -> Callable[[Handler], Handler]:
        def register(fn: Handler) -> Handler:
            bodies = () if body is None else (tuple(body) if isinstance(body, Sequence) else (body,))
            self.items.append(Operation(method.upper(), path, fn, summary, dict(responses), bodies, raw_body,
                                        query, tuple(errors), public, description, html))
            return fn

        return register

    def routes(self) -> list[Route]:
        """One Starlette route per path, dispatching on the method."""
        by_path: dict[str, dict[str, Operation]] = {}
        for op in self.items:
            by_path.setdefault(op.path, {})[op.method] = op
        return [Route(path, _dispatcher(ops), methods=list(ops)) for path, ops in by_path.items()]


def _dispatcher(ops: dict[str, Operation]) -> Callable[[Request], Awaitable[Response]]:
    runners = {method: _runner(op) for method, op in ops.items()}
    if "GET" in runners:
        runners.setdefault("HEAD", runners["GET"])

    async def dispatch(request: Request) -> Response:
        return await runners[request.method](request)

    return dispatch


def _runner(op: Operation) -> Callable[[Request], Awaitable[Response]]:
    success = min(s for s in op.responses if 200 <= s < 300)

    @endpoint
    async def run(request: Request) -> Response:
        kwargs: dict[str, Any] = {}
        if op.query is not None:
            kwargs["query"] = parse_query(request, op.query)
        if op.body:
            from flowmetal.api.context import api

            kwargs["body"] = parse_body(await read_body(request, api(request).max_body), op.body)
        out = await op.handler(request, **kwargs)
        if isinstance(out, Response):
            return out
        status, headers = success, None
        if isinstance(out, Reply):
            status, headers, out = out.status, out.headers, out.value
        return JSON(msgspec.to_builtins(out), status_code=status, headers=headers)

    return run


# -- decoding ---------------------------------------------------------------------------------------
def _where(e: msgspec.ValidationError, prefix: str = "") -> str:
    """msgspec's "Expected `int`, got `str` - at `$.limit`" as "limit: expected `int`, got `str`"."""
    text = str(e)
    for pattern, help_text in PATTERN_HELP.items():
        if f"matching regex {pattern!r}" in text:
            text = text.replace(text.split(" - at `")[0], help_text)
    message, _, at = text.rpartition(" - at `")
    if not message:
        return f"{prefix}{text[:1].lower()}{text[1:]}"
    path = at.rstrip("`").removeprefix("$").lstrip(".")
    return f"{prefix}{path}: {message[:1].lower()}{message[1:]}"


def parse_body(raw: bytes, types: tuple[type, ...]) -> Any:
    """The body as one of `types` (400 if it is not JSON at all, 422 if it does not fit)."""
    if not raw.strip():
        raise ApiError(400, "BadJSON", "the request body is empty; expected a JSON object")
    try:
        data = msgspec.json.decode(raw)
    except msgspec.DecodeError as e:
        raise ApiError(400, "BadJSON", f"malformed JSON: {str(e).removeprefix('JSON is malformed: ')}") from None
    except RecursionError:
        raise ApiError(400, "BadJSON", "malformed JSON: nested too deeply") from None
    if not isinstance(data, dict):
        raise ApiError(422, "ValidationError", f"expected a JSON object, got {_kind(data)}")
    chosen = types[0]
    if len(types) > 1:
        fitting = [t for t in types if all(f in data for f in _required(t))]
        if not fitting:
            needs = " or ".join(f"`{_required(t)[0]}`" for t in types)
            raise ApiError(422, "ValidationError", f"give {needs}")
        chosen = fitting[0]
    for name in _integer_fields(chosen):
        # JSON has one kind of number: 3.0 is the integer 3 to JSON Schema, so to us too
        value = data.get(name)
        if isinstance(value, float) and value.is_integer():
            data[name] = int(value)
    try:
        return msgspec.convert(data, chosen)
    except msgspec.ValidationError as e:
        raise ApiError(422, "ValidationError", _where(e)) from None


def _required(t: type) -> list[str]:
    info = msgspec.inspect.type_info(t)
    assert isinstance(info, msgspec.inspect.StructType)
    return [f.name for f in info.fields if f.required]


def parse_query(request: Request, t: type) -> Any:
    """The query string as `t` (strings converted to the fields' types; lists from repeats)."""
    info = msgspec.inspect.type_info(t)
    assert isinstance(info, msgspec.inspect.StructType)
    data: dict[str, Any] = {}
    params = request.query_params
    for f in info.fields:
        if f.encode_name not in params:
            continue
        if _is_list(f.type):
            data[f.encode_name] = params.getlist(f.encode_name)
        else:
            data[f.encode_name] = params[f.encode_name]
    try:
        return msgspec.convert(data, t, strict=False)
    except msgspec.ValidationError as e:
        raise ApiError(422, "ValidationError", _where(e, "query parameter ")) from None


def _integer_fields(t: type) -> list[str]:
    info = msgspec.inspect.type_info(t)
    assert isinstance(info, msgspec.inspect.StructType)
    return [f.encode_name for f in info.fields if _is_a(f.type, msgspec.inspect.IntType)]


def _is_a(kind: Any, wanted: type) -> bool:
    while isinstance(kind, msgspec.inspect.Metadata):
        kind = kind.type
    if isinstance(kind, msgspec.inspect.UnionType):
        return any(_is_a(k, wanted) for k in kind.types)
    return isinstance(kind, wanted)


def _is_list(kind: Any) -> bool:
    return _is_a(kind, msgspec.inspect.ListType)


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


def typed(value: Any, t: type) -> Any:
    """A store row's JSON form as its declared response type (a drift is a loud error here)."""
    return msgspec.convert(value, t)
