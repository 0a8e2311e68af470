"""Routes for programs: start, list, status, result (long-poll), history, state,
messages, cancellation, and the calls a program made."""

from __future__ import annotations

import re
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from flowmetal.api.context import api
from flowmetal.api.http import JSON, ApiError, Fields, endpoint, json_object, query
from flowmetal.runtime.deployments import is_deployment_name
from flowmetal.runtime.inspect import describe
from flowmetal.store.base import (
    FINISHED,
    STATUSES,
    BadCursor,
    ProgramQuery,
    ProgramRow,
    UnknownProgram,
    parse_time,
)

# ids appear in URLs and call keys ("ID:SEQ"); children get "ID.N"
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,127}")
_HISTORY_PAGE = 1000
_LIST_PAGE = 100  # programs per page of GET /programs unless `limit` says otherwise
_LIST_MAX = 1000


@endpoint
async def start_program(request: Request) -> Response:
    a = api(request)
    body = await json_object(request, a.max_body)
    if body.has("source") + body.has("path") + body.has("program") != 1:
        raise ApiError(422, "ValidationError",
                       "give one of `program` (a deployment's name), `source` (with an optional `filename`) or `path`")
    args = body.obj("args", {})
    program_id = body.string("id", None, max_len=128)
    if program_id is not None and not _ID.fullmatch(program_id):
        raise ApiError(422, "ValidationError",
                       "id: use 1-128 letters, digits, '.', '_', '@' or '-', starting with a letter or digit")
    source: str | None
    version = body.integer("version", None, low=1) if body.has("version") else None
    if body.has("program"):
        source, path = None, body.string("program", max_len=100)
        if not is_deployment_name(path):
            raise ApiError(422, "ValidationError", "program: not a deployment name (letters, digits, '.', '_', "
                                                   "'-'; deploy files with `flowmetal deploy`)")
    elif body.has("source"):
        source = body.get("source")
        if not isinstance(source, str):
            raise ApiError(422, "ValidationError", "source: expected a string")
        path = body.string("filename", "program.flow", max_len=1024)
    else:
        # read by the server, relative to its working directory (whoever holds the token may
        # name any file the server can read)
        source, path = None, body.string("path", max_len=4096)

    def create() -> tuple[bool, ProgramRow, list[str]]:
        existed = False
        if program_id is not None:
            try:
                a.store.get_program(program_id)
                existed = True
            except UnknownProgram:
                pass
        # (two identical first starts racing may both answer 201: same program, same body)
        if source is None and is_deployment_name(path):
            new_id = a.runtime.start_deployment(path, args, program_id, version)
        else:
            new_id = a.runtime.start(path, args, program_id=program_id, source=source)
        row = a.store.get_program(new_id)
        warnings = [d.format() for d in a.runtime.program_for(row).diagnostics]
        if not existed:
            a.store.notify()  # a worker may be asleep
        return existed, row, warnings

    existed, row, warnings = await a.run(create)
    out = row.to_json()
    if warnings:
        out["warnings"] = warnings
    return JSON(out, status_code=200 if existed else 201)


@endpoint
async def list_programs(request: Request) -> Response:
    a = api(request)
    q = query(request)
    statuses = [part for value in request.query_params.getlist("status") for part in value.split(",") if part]
    for status in statuses:
        if status not in STATUSES:
            raise ApiError(422, "ValidationError", f"status: expected one of {', '.join(STATUSES)}")
    order = q.string("order", "asc", max_len=4)
    if order not in ("asc", "desc"):
        raise ApiError(422, "ValidationError", "order: expected asc or desc")
    selection = ProgramQuery(status=tuple(statuses) or None, file=q.string("file", None, max_len=1024),
                             created_since=_time(q, "created_since"), created_before=_time(q, "created_before"),
                             newest_first=order == "desc")
    limit = q.integer("limit", _LIST_PAGE, low=1, high=_LIST_MAX)
    cursor = q.string("cursor", None, max_len=1024)
    try:
        page = await a.run(a.store.page_programs, selection, limit, cursor)
    except BadCursor as e:
        raise ApiError(422, "ValidationError", f"cursor: {e}") from None
    return JSON({"programs": [r.to_json() for r in page.programs], "next_cursor": page.next_cursor})


def _time(q: Fields, name: str) -> float | None:
    raw = q.string(name, None, max_len=64)
    if raw is None:
        return None
    try:
        return parse_time(raw)
    except ValueError as e:
        raise ApiError(422, "ValidationError", f"{name}: {e}") from None


@endpoint
async def get_program(request: Request) -> Response:
    a = api(request)
    row = await a.run(a.store.get_program, request.path_params["id"])
    return JSON(row.to_json())


def _outcome(row: ProgramRow) -> dict[str, Any]:
    out: dict[str, Any] = {"id": row.id, "status": row.status}
    if row.status == "completed":
        out["result"] = row.result
    elif row.status in FINISHED:
        out["error"] = row.error
    return out


@endpoint
async def get_result(request: Request) -> Response:
    a = api(request)
    program_id = request.path_params["id"]
    wait = min(query(request).number("wait", 0.0), a.max_wait)
    row = await a.run(a.store.get_program, program_id)  # 404 before any waiting

    async def finished() -> ProgramRow | None:
        r = await a.run(a.store.get_program, program_id)
        return r if r.status in FINISHED else None

    done = row if row.status in FINISHED else await a.long_poll(request, finished, wait)
    if done is None:
        row = await a.run(a.store.get_program, program_id)
        return JSON(_outcome(row), status_code=200 if row.status in FINISHED else 202)
    return JSON(_outcome(done))


@endpoint
async def get_history(request: Request) -> Response:
    a = api(request)
    program_id = request.path_params["id"]
    q = query(request)
    after = q.integer("after", 0)
    limit = q.integer("limit", _HISTORY_PAGE, low=1, high=10 * _HISTORY_PAGE)

    def read() -> tuple[ProgramRow, list[Any]]:
        row = a.store.get_program(program_id)
        return row, a.store.events(program_id, after, after + limit)

    row, events = await a.run(read)
    return JSON({"events": [e.to_json() for e in events], "last_seq": row.last_seq})


@endpoint
async def get_state(request: Request) -> Response:
    a = api(request)
    program_id = request.path_params["id"]
    at = query(request).integer("at", None, low=1)

    def inspect() -> dict[str, Any]:
        row = a.store.get_program(program_id)
        if at is not None and at > row.last_seq:
            raise ApiError(422, "ValidationError", f"at: must be between 1 and {row.last_seq}")
        machine, seq = a.runtime.load(row, at)
        waits = (row.waiting_on or {}).get("waits") if at is None else None
        return {"id": program_id, "seq": seq, **describe(machine, waits)}

    return JSON(await a.run(inspect))


@endpoint
async def send_message(request: Request) -> Response:
    a = api(request)
    program_id = request.path_params["id"]
    body = await json_object(request, a.max_body)
    message = body.get("message")
    channel = body.string("channel", "inbox", max_len=256)
    if channel.startswith("__"):
        # internal channels carry child results, call outcomes and callbacks: not to be forged
        raise ApiError(422, "ValidationError", "channel: names starting with '__' are reserved")

    def send() -> None:
        a.store.send(program_id, channel, message, a.now())
        a.store.notify()

    await a.run(send)
    return JSON({"id": program_id, "channel": channel, "status": "queued"}, status_code=202)


@endpoint
async def cancel_program(request: Request) -> Response:
    a = api(request)
    program_id = request.path_params["id"]

    def cancel() -> None:
        a.store.request_cancel(program_id, a.now())
        a.store.notify()

    await a.run(cancel)
    return JSON({"id": program_id, "status": "cancel_requested"}, status_code=202)


@endpoint
async def program_calls(request: Request) -> Response:
    a = api(request)
    program_id = request.path_params["id"]

    def read() -> list[Any]:
        a.store.get_program(program_id)
        return a.store.list_calls(program_id)

    calls = await a.run(read)
    return JSON({"calls": [c.to_json() for c in calls]})


routes = [
    Route("/programs", start_program, methods=["POST"]),
    Route("/programs", list_programs, methods=["GET"]),
    Route("/programs/{id}", get_program, methods=["GET"]),
    Route("/programs/{id}/result", get_result, methods=["GET"]),
    Route("/programs/{id}/history", get_history, methods=["GET"]),
    Route("/programs/{id}/state", get_state, methods=["GET"]),
    Route("/programs/{id}/messages", send_message, methods=["POST"]),
    Route("/programs/{id}/cancel", cancel_program, methods=["POST"]),
    Route("/programs/{id}/calls", program_calls, methods=["GET"]),
]
