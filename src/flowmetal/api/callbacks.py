"""The callback endpoint: an outside system (a webhook, a human clicking a link in a
tool) delivers one request to the unguessable URL a program got from `callback()`.

The request is checked (api/callback_page.py: a malformed body spends nothing), then
persisted before it is answered, so a 202 means the program will see it; only the first
delivery counts (409 afterwards), and a link whose program has ended answers 410. A GET
shows people a page to answer on. No bearer token is needed: the URL's token is the
credential.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from flowmetal.api import callback_page as page
from flowmetal.api import types as t
from flowmetal.api.context import api
from flowmetal.api.http import ApiError, read_body
from flowmetal.api.operations import Operations
from flowmetal.observe import metrics
from flowmetal.store.base import FINISHED, CallbackRow, UnknownProgram

ops = Operations()

_GONE = {"delivered": 409, "closed": 410}
# (robots and caches keep out: the page is for the one person holding the link)
_PAGE_HEADERS = {"Cache-Control": "no-store", "X-Robots-Tag": "noindex", "Referrer-Policy": "no-referrer",
                 "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'"}


def _headers(request: Request) -> dict[str, str]:
    out: dict[str, str] = {}
    for raw_name, raw_value in request.headers.raw:
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        out[name] = f"{out[name]}, {value}" if name in out else value  # RFC 9110 §5.3
    return out


def _html(text: str, status: int) -> HTMLResponse:
    return HTMLResponse(text, status, headers=_PAGE_HEADERS)


def _refusal(status: str) -> ApiError:
    if status == "duplicate" or status == "delivered":
        return ApiError(409, "AlreadyDelivered",
                        "this callback accepts no more requests (it takes one, while its program runs)")
    if status == "closed":
        return ApiError(410, "CallbackGone", "this callback's program has ended: it accepts no more requests")
    return ApiError(404, "UnknownCallback", "no callback with this token")


async def _used_or_gone(request: Request, cb: CallbackRow) -> str:
    """"closed" for a link whose program has ended (410), even one it answered; else its status."""
    if cb.status == "delivered":
        a = api(request)
        try:
            row = await a.run(a.store.get_program, cb.program_id)
        except UnknownProgram:
            return "closed"
        if row.status in FINISHED:
            return "closed"
    return cb.status


async def deliver(request: Request) -> t.Accepted | Response:
    a = api(request)
    token = request.path_params["token"]
    body = await read_body(request, a.callback_max_body)
    headers = _headers(request)
    cb: CallbackRow | None = await a.run(a.store.get_callback, token)
    by_person = page.from_page(headers.get("content-type"), body)
    if cb is None or cb.status != "open":
        metrics.CALLBACKS.labels("unknown" if cb is None else "duplicate").inc()
        error = _refusal("unknown" if cb is None else await _used_or_gone(request, cb))
        if by_person:
            return _html(page.status_page(error.status, cb.options if cb else None), error.status)
        raise error
    try:
        delivered = page.delivery(cb.options, request.method, headers, body)
    except ApiError as e:
        metrics.CALLBACKS.labels("refused").inc()
        if by_person:
            return _html(page.open_page(cb.options, error=e.message), 422)
        raise

    def store() -> str:
        status = a.store.deliver_callback(token, delivered, a.now())
        if status == "accepted":
            a.store.notify()
        return status

    status = await a.run(store)
    metrics.CALLBACKS.labels(status if status != "closed" else "duplicate").inc()
    if status != "accepted":
        if status == "duplicate":
            cb = await a.run(a.store.get_callback, token) or cb
            status = await _used_or_gone(request, cb)
        error = _refusal(status)
        if by_person:
            return _html(page.status_page(error.status, cb.options), error.status)
        raise error
    if by_person:
        return _html(page.status_page(202, cb.options), 202)
    return t.Accepted("accepted")


for _method in ("POST", "PUT", "PATCH"):
    ops.add(_method, "/callbacks/{token}",
            summary="Deliver the one request a callback accepts (persisted before the answer)",
            description="Any body, unless the program asked for JSON or for one of its `choices` "
                        "(`{\"choice\": ...}`); a body that does not fit (or that says it is JSON and is not) "
                        "is refused with 422 and the link stays open.",
            raw_body=True, public=True, responses={202: (t.Accepted, "accepted")},
            errors=(404, 409, 410, 422))(deliver)


@ops.add("GET", "/callbacks/{token}", summary="A page to answer a callback on (for people)", public=True,
         html=True, responses={200: (None, "the page: what the link is for, and a form or buttons to answer")},
         errors=(404, 409, 410))
async def show(request: Request) -> Response:
    a = api(request)
    cb: CallbackRow | None = await a.run(a.store.get_callback, request.path_params["token"])
    if cb is None:
        return _html(page.status_page(404, None), 404)
    if cb.status != "open":
        status = _GONE.get(await _used_or_gone(request, cb), 409)
        return _html(page.status_page(status, cb.options), status)
    return _html(page.open_page(cb.options), 200)
