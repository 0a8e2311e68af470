"""Routes for foreign-function workers in any language: claim calls (long-poll),
heartbeat an attempt, complete or fail it, and look calls up.

A claim is a lease on one attempt, fenced by its attempt number: a late answer from
a worker whose lease ran out is "stale" and ignored, so each result is recorded once.
"""

from __future__ import annotations

from starlette.requests import Request

from flowmetal.api import types as t
from flowmetal.api.context import api
from flowmetal.api.operations import Operations, typed
from flowmetal.store.base import CallClaim, CallOutcome

KIND = "function"
ops = Operations()


@ops.add("POST", "/functions/claim", summary="Claim due function calls (long-poll)", body=t.Claim,
         responses={200: (t.Claimed, "the claimed attempts (empty after the wait)")}, errors=(422,))
async def claim(request: Request, body: t.Claim) -> t.Claimed:
    a = api(request)
    wait = min(body.wait, a.max_wait)
    await a.register_served(body.worker, body.names)

    async def attempt() -> list[CallClaim] | None:
        got = await a.run(a.store.claim_calls, body.worker, KIND, body.names, body.lease, a.now(), body.limit)
        return got or None

    async def next_due() -> float | None:
        return await a.run(a.store.next_call_due, KIND)

    claims = await a.long_poll(request, attempt, wait, next_due) or []
    return t.Claimed([typed(c.to_json(), t.CallClaim) for c in claims])


@ops.add("POST", "/functions/calls/{key}/heartbeat", summary="Extend an attempt's lease", body=t.Heartbeat,
         responses={200: (t.HeartbeatAnswer, "ok: false if the attempt is no longer this worker's")},
         errors=(404, 422))
async def heartbeat(request: Request, body: t.Heartbeat) -> t.HeartbeatAnswer:
    a = api(request)
    key = request.path_params["key"]

    def beat() -> bool:
        a.store.get_call(key)  # UnknownCall -> 404 (heartbeat_call alone cannot tell)
        return a.store.heartbeat_call(key, body.worker, body.attempt, body.lease, a.now())

    return t.HeartbeatAnswer(await a.run(beat))


async def _finish(request: Request, worker: str, attempt: int, outcome: CallOutcome) -> t.Finished:
    a = api(request)
    key = request.path_params["key"]

    def finish() -> str:
        status = a.store.finish_call(key, worker, attempt, outcome, a.now())
        if status == "done":
            a.store.notify()  # the program has its answer: wake a worker to run it
        return status

    return t.Finished(await a.run(finish))  # type: ignore[arg-type]


@ops.add("POST", "/functions/calls/{key}/complete", summary="Report an attempt's result", body=t.Complete,
         responses={200: (t.Finished, "done, or stale if ignored")}, errors=(404, 422))
async def complete(request: Request, body: t.Complete) -> t.Finished:
    return await _finish(request, body.worker, body.attempt, CallOutcome(ok=True, result=body.result))


@ops.add("POST", "/functions/calls/{key}/fail", summary="Report an attempt's failure", body=t.Fail,
         responses={200: (t.Finished, "done (delivered), retrying, or stale if ignored")}, errors=(404, 422))
async def fail(request: Request, body: t.Fail) -> t.Finished:
    error = {"type": body.error.type, "message": body.error.message}
    outcome = CallOutcome(ok=False, error=error, retryable=body.retryable, retry_after=body.retry_after)
    return await _finish(request, body.worker, body.attempt, outcome)


@ops.add("GET", "/functions/calls/{key}", summary="A call", responses={200: (t.Call, "the call")}, errors=(404,))
async def get_call(request: Request) -> t.Call:
    a = api(request)
    row = await a.run(a.store.get_call, request.path_params["key"])
    return typed(row.to_json(), t.Call)
