"""`POST /hooks/{name}`: an outside system (a git host, a payment provider) starts a
deployment, or messages a program, with a raw request. The hook is configured by the
operator (`flowmetal hook create`); the signature is checked before anything is stored.
No bearer token: the signature is the credential (see runtime/hooks.py)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from flowmetal.api import ops_types as o
from flowmetal.api.callbacks import _headers
from flowmetal.api.context import api
from flowmetal.api.http import ApiError, read_body
from flowmetal.api.operations import Operations, Reply
from flowmetal.errors import UsageError
from flowmetal.runtime import hooks
from flowmetal.store.base import ProgramExists, UnknownProgram

ops = Operations()


@ops.add("POST", "/hooks/{name}", summary="Start a deployment (or message a program) from a signed webhook",
         raw_body=True, public=True,
         responses={202: (o.HookAnswer, "started (or queued, for a hook that messages)"),
                    200: (o.HookAnswer, "a redelivery: the program of this delivery id exists already")},
         errors=(400, 401, 404, 409, 503),
         description="The body and the headers the hook names become the program's arguments `body` and "
                     "`headers`; signatures are HMAC-SHA256 (GitHub or Stripe style).")
async def deliver(request: Request) -> Reply:
    a = api(request)
    name = request.path_params["name"]
    hook = await a.run(a.store.get_hook, name)  # 404 for a hook nobody configured
    body = await read_body(request, a.max_body)
    headers = _headers(request)
    config = hook.config
    try:
        hooks.verify(config, headers, body, a.now())
    except hooks.BadSignature as e:
        raise ApiError(401, "BadSignature", str(e)) from None
    except hooks.HookMisconfigured as e:
        raise ApiError(503, "HookMisconfigured", str(e)) from None
    try:
        program_id = hooks.delivery_id(config, name, headers)
    except UsageError as e:
        raise ApiError(400, "BadDelivery", str(e)) from None
    args = hooks.program_args(config, headers, body)
    if config["action"] == "send":
        return await _send(a, config, headers, args)

    def start() -> tuple[str, bool]:
        if program_id is not None:
            try:
                a.store.get_program(program_id)
                return program_id, False
            except UnknownProgram:
                pass
        try:
            new_id = a.runtime.start_deployment(config["deployment"], args, program_id)
        except ProgramExists:  # the same delivery, at the same instant
            assert program_id is not None
            return program_id, False
        a.store.notify()
        return new_id, True

    started_id, created = await a.run(start)
    if not created:
        return Reply(200, o.HookAnswer(started_id, "duplicate"))
    return Reply(202, o.HookAnswer(started_id, "started"))


async def _send(a: Any, config: dict[str, Any], headers: dict[str, str], args: dict[str, Any]) -> Reply:
    target = config.get("send_to") or headers.get(config.get("send_to_header") or "", "")
    if not target:
        raise ApiError(400, "BadDelivery", f"the {config.get('send_to_header')} header names no program")

    def send() -> None:
        a.store.send(target, config.get("channel") or "inbox", {"body": args["body"], "headers": args["headers"]},
                     a.now())
        a.store.notify()

    await a.run(send)
    return Reply(202, o.HookAnswer(target, "queued"))
