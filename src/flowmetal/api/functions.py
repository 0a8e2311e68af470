"""Routes for foreign-function workers in any language: claim calls (long-poll),
heartbeat an attempt, complete or fail it, and look calls up.

A claim is a lease on one attempt, fenced by its attempt number: a late answer from
a worker whose lease ran out is "stale" and ignored, so each result is recorded once.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from flowmetal.api.context import api
from flowmetal.api.http import JSON, ApiError, Fields, endpoint, json_object
from flowmetal.store.base import CallClaim, CallOutcome

KIND = "function"
MAX_LEASE = 3600.0


def _attempt(body: Fields) -> tuple[str, int]:
    return body.string("worker", max_len=256), body.integer("attempt", low=1)


@endpoint
async def claim(request: Request) -> Response:
    a = api(request)
    body = await json_object(request, a.max_body)
    names = body.strings("names")
    worker = body.string("worker", max_len=256)
    wait = min(body.number("wait", 0.0), a.max_wait)
    lease = body.number("lease", 30.0, low=0.1, high=MAX_LEASE)
    limit = body.integer("limit", 1, low=1, high=100)

    async def attempt() -> list[CallClaim] | None:
        got = await a.run(a.store.claim_calls, worker, KIND, names, lease, a.now(), limit)
        return got or None

    async def next_due() -> float | None:
        return await a.run(a.store.next_call_due, KIND)

    claims = await a.long_poll(request, attempt, wait, next_due) or []
    return JSON({"calls": [c.to_json() for c in claims]})


@endpoint
async def heartbeat(request: Request) -> Response:
    a = api(request)
    key = request.path_params["key"]
    body = await json_object(request, a.max_body)
    worker, attempt = _attempt(body)
    lease = body.number("lease", 30.0, low=0.1, high=MAX_LEASE)

    def beat() -> bool:
        a.store.get_call(key)  # UnknownCall -> 404 (heartbeat_call alone cannot tell)
        return a.store.heartbeat_call(key, worker, attempt, lease, a.now())

    return JSON({"ok": await a.run(beat)})


async def _finish(request: Request, key: str, worker: str, attempt: int, outcome: CallOutcome) -> Response:
    a = api(request)

    def finish() -> str:
        status = a.store.finish_call(key, worker, attempt, outcome, a.now())
        if status == "done":
            a.store.notify()  # the program has its answer: wake a worker to run it
        return status

    return JSON({"status": await a.run(finish)})


@endpoint
async def complete(request: Request) -> Response:
    body = await json_object(request, api(request).max_body)
    worker, attempt = _attempt(body)
    outcome = CallOutcome(ok=True, result=body.get("result", None))
    return await _finish(request, request.path_params["key"], worker, attempt, outcome)


@endpoint
async def fail(request: Request) -> Response:
    body = await json_object(request, api(request).max_body)
    worker, attempt = _attempt(body)
    error = body.obj("error")
    for part in ("type", "message"):
        if not isinstance(error.get(part), str):
            raise ApiError(422, "ValidationError", f"error.{part}: expected a string")
    outcome = CallOutcome(ok=False, error=error, retryable=body.boolean("retryable", True),
                          retry_after=body.number("retry_after", None, high=86400.0))
    return await _finish(request, request.path_params["key"], worker, attempt, outcome)


@endpoint
async def get_call(request: Request) -> Response:
    a = api(request)
    row = await a.run(a.store.get_call, request.path_params["key"])
    return JSON(row.to_json())


routes = [
    Route("/functions/claim", claim, methods=["POST"]),
    Route("/functions/calls/{key}", get_call, methods=["GET"]),
    Route("/functions/calls/{key}/heartbeat", heartbeat, methods=["POST"]),
    Route("/functions/calls/{key}/complete", complete, methods=["POST"]),
    Route("/functions/calls/{key}/fail", fail, methods=["POST"]),
]
