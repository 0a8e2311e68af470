"""Routes for programs: start, list, status, result (long-poll), history, state,
messages, cancellation, and the calls a program made."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from flowmetal.api import types as t
from flowmetal.api.context import api
from flowmetal.api.http import ApiError
from flowmetal.api.operations import Operations, Reply, typed
from flowmetal.runtime.deployments import is_deployment_name
from flowmetal.runtime.executors import ExecutorError
from flowmetal.runtime.programdirs import ProgramPathError
from flowmetal.runtime.waits import describe_waits, unread_messages
from flowmetal.store.base import FINISHED, BadCursor, ProgramQuery, ProgramRow, UnknownProgram

ops = Operations()


@ops.add("POST", "/programs", summary="Start a program",
         body=(t.StartFromSource, t.StartFromPath, t.StartDeployment),
         responses={201: (t.Program, "created"),
                    200: (t.Program, "a program with this id, source and args already exists")},
         errors=(404, 409, 422),
         description="One of `source` (with an optional `filename`), `path` (a `.flow` file the server "
                     "reads from its program directories, `--programs`; relative, without `..`) or "
                     "`program` (a deployment's name, with an optional `version`).")
async def start_program(request: Request, body: t.StartFromSource | t.StartFromPath | t.StartDeployment) -> Reply:
    a = api(request)
    program_id = body.id or None
    source: str | None
    version: int | None = None
    if isinstance(body, t.StartDeployment):
        source, path, version = None, body.program, body.version or None
    elif isinstance(body, t.StartFromSource):
        source, path = body.source, body.filename
    else:
        # read by the server, only from its program directories (`--programs`)
        source, path = None, body.path

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
            new_id = a.runtime.start_deployment(path, body.args, program_id, version)
        else:
            filename, text = (path, source) if source is not None else _read_program(a.runtime, path)
            new_id = a.runtime.start(filename, body.args, program_id=program_id, source=text)
        row = a.store.get_program(new_id)
        warnings = [d.format() for d in a.runtime.program_for(row).diagnostics]
        if not existed:
            a.store.notify()  # a worker may be asleep
        return existed, row, warnings

    existed, row, warnings = await a.run(create)
    out = row.to_json()
    if warnings:
        out["warnings"] = warnings
    return Reply(200 if existed else 201, typed(out, t.Program))


def _read_program(runtime: Any, path: str) -> tuple[str, str]:
    try:
        return runtime.read_program(path, what="path")
    except ProgramPathError as e:
        raise ApiError(422, "ValidationError", str(e)) from None


@ops.add("GET", "/programs", summary="List programs, a page at a time", query=t.ListQuery,
         responses={200: (t.ProgramList, "a page of programs, in creation order")}, errors=(422,))
async def list_programs(request: Request, query: t.ListQuery) -> t.ProgramList:
    a = api(request)
    selection = ProgramQuery(status=tuple(query.status) or None, file=query.file or None,
                             created_since=_epoch(query.created_since), created_before=_epoch(query.created_before),
                             newest_first=query.order == "desc")
    try:
        page = await a.run(a.store.page_programs, selection, query.limit, query.cursor or None)
    except BadCursor as e:
        raise ApiError(422, "ValidationError", f"query parameter cursor: {e}") from None
    now = a.now()
    return t.ProgramList([typed(dict(r.to_json(), waiting_for=describe_waits(None, r, now)), t.Program)
                          for r in page.programs], page.next_cursor)


def _epoch(when: Any) -> float | None:
    return t.parse_datetime(when) if when else None  # (UNSET: not given)


@ops.add("GET", "/programs/{id}", summary="A program's status", responses={200: (t.Program, "the program")},
         errors=(404,))
async def get_program(request: Request) -> t.Program:
    a = api(request)

    def read() -> dict[str, Any]:
        row = a.store.get_program(request.path_params["id"])
        now = a.now()
        return dict(row.to_json(), waiting_for=describe_waits(a.store, row, now),
                    unread=unread_messages(row, a.store.inbox(row.id)))

    return typed(await a.run(read), t.Program)


def _outcome(row: ProgramRow) -> t.Outcome:
    out = t.Outcome(row.id, row.status)  # type: ignore[arg-type]
    if row.status == "completed":
        out.result = row.result
    elif row.status in FINISHED:
        out.error = row.error
    return out


@ops.add("GET", "/programs/{id}/result", summary="A program's result, waiting for it to finish",
         query=t.ResultQuery,
         responses={200: (t.Outcome, "finished: `result` if completed, else `error`"),
                    202: (t.Outcome, "still running after the wait")}, errors=(404, 422))
async def get_result(request: Request, query: t.ResultQuery) -> Reply:
    a = api(request)
    program_id = request.path_params["id"]
    wait = min(query.wait, a.max_wait)
    row = await a.run(a.store.get_program, program_id)  # 404 before any waiting

    async def finished() -> ProgramRow | None:
        r = await a.run(a.store.get_program, program_id)
        return r if r.status in FINISHED else None

    done = row if row.status in FINISHED else await a.long_poll(request, finished, wait)
    if done is None:
        row = await a.run(a.store.get_program, program_id)
        return Reply(200 if row.status in FINISHED else 202, _outcome(row))
    return Reply(200, _outcome(done))


@ops.add("GET", "/programs/{id}/history", summary="A program's events", query=t.HistoryQuery,
         responses={200: (t.History, "events after `after`, in order")}, errors=(404, 422))
async def get_history(request: Request, query: t.HistoryQuery) -> t.History:
    a = api(request)
    program_id = request.path_params["id"]

    def read() -> tuple[ProgramRow, list[Any]]:
        row = a.store.get_program(program_id)
        return row, a.store.events(program_id, query.after, query.after + query.limit)

    row, events = await a.run(read)
    return t.History([e.to_json() for e in events], row.last_seq)


@ops.add("GET", "/programs/{id}/state", summary="A program's state at an event: tasks, stacks, variables, waits",
         query=t.StateQuery, responses={200: (t.State, "the state")}, errors=(404, 422, 503))
async def get_state(request: Request, query: t.StateQuery) -> t.State:
    a = api(request)
    program_id = request.path_params["id"]
    at = query.at or None

    def inspect() -> dict[str, Any]:
        row = a.store.get_program(program_id)
        if at is not None and at > row.last_seq:
            raise ApiError(404, "UnknownEvent", f"program {program_id!r} has no event {at} (it has {row.last_seq})")
        try:  # replayed in an executor process when the node has them (`flowmetal serve`)
            return {"id": program_id, **a.runtime.describe(row, at)}
        except ExecutorError as e:
            raise ApiError(503, "ReplayFailed", str(e)) from None

    return typed(await a.run(inspect), t.State)


@ops.add("POST", "/programs/{id}/messages", summary="Send a message to a program", body=t.Message,
         responses={202: (t.Queued, "queued")}, errors=(404, 409, 422))
async def send_message(request: Request, body: t.Message) -> t.Queued:
    a = api(request)
    program_id = request.path_params["id"]

    def send() -> None:
        a.store.send(program_id, body.channel, body.message, a.now())
        a.store.notify()

    await a.run(send)
    return t.Queued(program_id, body.channel, "queued")


@ops.add("POST", "/programs/{id}/cancel", summary="Cancel a program (`Cancelled` is raised at its current wait)",
         responses={202: (t.CancelRequested, "cancellation requested")}, errors=(404, 409))
async def cancel_program(request: Request) -> t.CancelRequested:
    a = api(request)
    program_id = request.path_params["id"]

    def cancel() -> None:
        a.store.request_cancel(program_id, a.now())
        a.store.notify()

    await a.run(cancel)
    return t.CancelRequested(program_id, "cancel_requested")


@ops.add("GET", "/programs/{id}/calls", summary="The calls a program made, with each failed attempt's error",
         responses={200: (t.CallList, "calls, oldest first")}, errors=(404,))
async def program_calls(request: Request) -> t.CallList:
    from flowmetal.runtime.calls import call_report

    a = api(request)
    program_id = request.path_params["id"]

    def read() -> list[dict[str, Any]]:
        a.store.get_program(program_id)
        return call_report(a.store, program_id)

    calls = await a.run(read)
    return t.CallList([typed(c, t.Call) for c in calls])
