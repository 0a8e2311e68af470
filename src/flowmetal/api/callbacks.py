"""The callback endpoint: an outside system (a webhook, a human clicking a link in a
tool) delivers one request to the unguessable URL a program got from `callback()`.

The request is persisted before it is answered, so a 202 means the program will see
it; only the first delivery counts (409 afterwards). No bearer token is needed: the
URL's token is the credential.
"""

from __future__ import annotations

from starlette.requests import Request

from flowmetal.api import types as t
from flowmetal.api.context import api
from flowmetal.api.http import ApiError, read_body
from flowmetal.api.operations import Operations
from flowmetal.observe import metrics

ops = Operations()


def _headers(request: Request) -> dict[str, str]:
    out: dict[str, str] = {}
    for raw_name, raw_value in request.headers.raw:
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        out[name] = f"{out[name]}, {value}" if name in out else value  # RFC 9110 §5.3
    return out


async def deliver(request: Request) -> t.Accepted:
    a = api(request)
    token = request.path_params["token"]
    body = await read_body(request, a.callback_max_body)
    headers = _headers(request)
    delivered = {
        "method": request.method,
        "headers": headers,
        # text for the program (`req.text`, `req.json()`); bytes that are not UTF-8 are replaced
        "body": body.decode("utf-8", errors="replace"),
        "content_type": headers.get("content-type"),
    }

    def store() -> str:
        status = a.store.deliver_callback(token, delivered, a.now())
        if status == "accepted":
            a.store.notify()
        return status

    status = await a.run(store)
    metrics.CALLBACKS.labels(status).inc()
    if status == "accepted":
        return t.Accepted("accepted")
    if status == "duplicate":
        raise ApiError(409, "AlreadyDelivered",
                       "this callback accepts no more requests (it takes one, while its program runs)")
    if status == "closed":
        raise ApiError(410, "CallbackGone", "this callback's program has ended: it accepts no more requests")
    raise ApiError(404, "UnknownCallback", "no callback with this token")


for _method in ("POST", "PUT", "PATCH"):
    ops.add(_method, "/callbacks/{token}",
            summary="Deliver the one request a callback accepts (any body; persisted before the answer)",
            raw_body=True, public=True, responses={202: (t.Accepted, "accepted")}, errors=(404, 409, 410))(deliver)
