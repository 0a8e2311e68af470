"""A small fake outside world for the connector examples, on one port:

- a payment provider: POST /charges {amount, card, webhook, reference} -> 201 {charge_id};
  a moment later it POSTs the outcome to the webhook URL (approved or declined);
  POST /charges/{id}/refund refunds an approved charge or voids a pending one. Both need
  `Authorization: Bearer KEY` (401 otherwise), KEY being $EXAMPLE_PAYMENTS_API_KEY
  (default sk_test_flowmetal_example);
- a warehouse: POST /inventory/holds {sku, qty, order} -> 201 {hold_id} (409 when out of
  stock); POST /inventory/holds/{id}/release and /ship {address};
- a batch service: POST /jobs {dataset, rows} -> 201 {id}; GET /jobs/{id} -> {"state":
  "running" | "done" | "cancelled", "output": ...}; a job takes rows / --rows-per-second;
  POST /jobs/{id}/cancel;
- a notification service: POST /notify {to, subject, text, ...} records a message;
  GET /notify[?to=...] lists them.

Every POST honours an `Idempotency-Key` header: a repeated key gets the first
response again (marked `Idempotent-Replayed: true`) and does nothing twice.
GET /log lists every request received; GET /charges, /inventory, /jobs/{id}
show the state. Everything is in memory: restart it for a clean world.

Test cards: 4242424242424242 approved; 4000000000000002 declined;
4000000000009995 declined (insufficient funds); 4000000000000069 refused at once
(HTTP 402, expired); 4000000000000341 accepted but its webhook is never sent.

Run it:  python examples/services.py --port 8500
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

PAYMENTS_API_KEY = os.environ.get("EXAMPLE_PAYMENTS_API_KEY", "sk_test_flowmetal_example")
APPROVED, DECLINED, INSUFFICIENT, EXPIRED, SILENT = (
    "4242424242424242", "4000000000000002", "4000000000009995", "4000000000000069", "4000000000000341")
INITIAL_STOCK = {"WIDGET": 100, "GADGET": 100, "GIZMO": 3, "UNOBTAINIUM": 0}

Reply = tuple[int, dict[str, Any]]


class World:
    def __init__(self, webhook_delay: float, rows_per_second: float) -> None:
        self.webhook_delay = webhook_delay
        self.rows_per_second = rows_per_second
        self.ids = itertools.count(1)
        self.log: list[dict[str, Any]] = []
        self.replies: dict[tuple[str, str], Reply] = {}  # (path, idempotency key) -> first reply
        self.charges: dict[str, dict[str, Any]] = {}
        self.stock = dict(INITIAL_STOCK)
        self.holds: dict[str, dict[str, Any]] = {}
        self.jobs: dict[str, dict[str, Any]] = {}
        self.messages: list[dict[str, Any]] = []
        self.background: set[asyncio.Task[None]] = set()
        self.client: httpx.AsyncClient | None = None

    def new_id(self, prefix: str) -> str:
        return f"{prefix}_{next(self.ids):04d}"


def world(request: Request) -> World:
    w: World = request.app.state.world
    return w


def reply(status: int, body: dict[str, Any]) -> Reply:
    return status, body


Handler = Callable[[Request, dict[str, Any]], Awaitable[Reply]]


def idempotent(handler: Handler) -> Callable[[Request], Awaitable[JSONResponse]]:
    """A POST handler taking the JSON body; a repeated Idempotency-Key replays the first reply."""

    async def endpoint(request: Request) -> JSONResponse:
        w = world(request)
        key = request.headers.get("idempotency-key")
        if key is not None and (request.url.path, key) in w.replies:
            status, body = w.replies[(request.url.path, key)]
            return JSONResponse(body, status, headers={"Idempotent-Replayed": "true"})
        try:
            data = await request.json() if await request.body() else {}
        except ValueError:
            return JSONResponse({"error": "the body is not JSON"}, 400)
        if not isinstance(data, dict):
            return JSONResponse({"error": "expected a JSON object"}, 422)
        status, body = await handler(request, data)
        if key is not None and status < 500:
            w.replies[(request.url.path, key)] = (status, body)
        return JSONResponse(body, status)

    return endpoint


# -- payment provider -----------------------------------------------------------------------
def _unauthorized(request: Request) -> Reply | None:
    if request.headers.get("authorization") != f"Bearer {PAYMENTS_API_KEY}":
        return reply(401, {"error": "give Authorization: Bearer <the payments API key>"})
    return None


@idempotent
async def create_charge(request: Request, data: dict[str, Any]) -> Reply:
    if (refused := _unauthorized(request)) is not None:
        return refused
    w = world(request)
    amount, card, webhook = data.get("amount"), data.get("card"), data.get("webhook")
    if not isinstance(amount, int | float) or amount <= 0 or not isinstance(card, str) \
            or not isinstance(webhook, str) or not webhook.startswith(("http://", "https://")):
        return reply(422, {"error": "give amount > 0, card and a webhook URL"})
    if card == EXPIRED:
        return reply(402, {"error": "card_expired", "message": "the card has expired"})
    charge: dict[str, Any] = {"charge_id": w.new_id("ch"), "amount": amount, "card": card[-4:], "webhook": webhook,
                              "reference": data.get("reference"), "status": "pending", "webhook_deliveries": []}
    w.charges[charge["charge_id"]] = charge
    if card != SILENT:  # that card's webhook is "lost"
        task = asyncio.create_task(settle(w, charge, card))
        w.background.add(task)
        task.add_done_callback(w.background.discard)
    return reply(201, {"charge_id": charge["charge_id"], "status": "pending"})


async def settle(w: World, charge: dict[str, Any], card: str) -> None:
    """Decide the charge, then tell the merchant's webhook (retrying as providers do)."""
    await asyncio.sleep(w.webhook_delay)
    if charge["status"] != "pending":  # voided meanwhile
        return
    if card in (DECLINED, INSUFFICIENT):
        charge["status"] = "declined"
        charge["reason"] = "insufficient_funds" if card == INSUFFICIENT else "card_declined"
    else:
        charge["status"] = "approved"
    event = {"type": f"charge.{charge['status']}", "charge_id": charge["charge_id"],
             "status": charge["status"], "reason": charge.get("reason"), "amount": charge["amount"]}
    assert w.client is not None
    for attempt in range(5):
        try:
            r = await w.client.post(charge["webhook"], json=event)
            charge["webhook_deliveries"].append(r.status_code)
            if r.status_code < 500:
                return
        except httpx.HTTPError as e:
            charge["webhook_deliveries"].append(type(e).__name__)
        await asyncio.sleep(0.5 * 2**attempt)


async def list_charges(request: Request) -> JSONResponse:
    return JSONResponse({"charges": list(world(request).charges.values())})


async def get_charge(request: Request) -> JSONResponse:
    charge = world(request).charges.get(request.path_params["id"])
    if charge is None:
        return JSONResponse({"error": "no such charge"}, 404)
    return JSONResponse(charge)


@idempotent
async def refund_charge(request: Request, data: dict[str, Any]) -> Reply:
    if (refused := _unauthorized(request)) is not None:
        return refused
    charge = world(request).charges.get(request.path_params["id"])
    if charge is None:
        return reply(404, {"error": "no such charge"})
    if charge["status"] == "approved":
        charge["status"] = "refunded"
    elif charge["status"] == "pending":
        charge["status"] = "voided"
    elif charge["status"] == "declined":
        return reply(409, {"error": "a declined charge has nothing to refund"})
    return reply(200, {"charge_id": charge["charge_id"], "status": charge["status"]})


# -- warehouse --------------------------------------------------------------------------------
@idempotent
async def create_hold(request: Request, data: dict[str, Any]) -> Reply:
    w = world(request)
    sku, qty = data.get("sku"), data.get("qty", 1)
    if sku not in w.stock or not isinstance(qty, int) or qty < 1:
        return reply(422, {"error": f"unknown sku {sku!r} or bad qty"})
    if w.stock[sku] < qty:
        return reply(409, {"error": "out_of_stock", "message": f"only {w.stock[sku]} of {sku} left"})
    w.stock[sku] -= qty
    hold = {"hold_id": w.new_id("hold"), "sku": sku, "qty": qty, "order": data.get("order"), "status": "held"}
    w.holds[hold["hold_id"]] = hold
    return reply(201, hold)


def _hold(w: World, hold_id: str) -> dict[str, Any] | None:
    return w.holds.get(hold_id)


@idempotent
async def release_hold(request: Request, data: dict[str, Any]) -> Reply:
    w = world(request)
    hold = _hold(w, request.path_params["id"])
    if hold is None:
        return reply(404, {"error": "no such hold"})
    if hold["status"] == "shipped":
        return reply(409, {"error": "already shipped"})
    if hold["status"] == "held":
        hold["status"] = "released"
        w.stock[hold["sku"]] += hold["qty"]
    return reply(200, hold)


@idempotent
async def ship_hold(request: Request, data: dict[str, Any]) -> Reply:
    w = world(request)
    hold = _hold(w, request.path_params["id"])
    if hold is None:
        return reply(404, {"error": "no such hold"})
    if hold["status"] == "released":
        return reply(409, {"error": "the hold was released"})
    if hold["status"] == "held":
        hold.update(status="shipped", address=data.get("address"), tracking=f"TRK-{hold['hold_id'][5:]}")
    return reply(200, hold)


async def inventory(request: Request) -> JSONResponse:
    w = world(request)
    return JSONResponse({"stock": w.stock, "holds": list(w.holds.values())})


# -- batch service ----------------------------------------------------------------------------
@idempotent
async def create_job(request: Request, data: dict[str, Any]) -> Reply:
    w = world(request)
    dataset, rows = data.get("dataset"), data.get("rows")
    if not isinstance(dataset, str) or not isinstance(rows, int) or rows < 0:
        return reply(422, {"error": "give dataset (a string) and rows (an integer)"})
    job: dict[str, Any] = {"id": w.new_id("job"), "dataset": dataset, "rows": rows, "state": "running",
                           "started": time.time(), "seconds": rows / w.rows_per_second, "polls": 0}
    w.jobs[job["id"]] = job
    return reply(201, {"id": job["id"], "state": "running"})


def _job_view(job: dict[str, Any]) -> dict[str, Any]:
    elapsed = time.time() - job["started"]
    if job["state"] == "running" and elapsed >= job["seconds"]:
        job["state"] = "done"
        job["output"] = {"dataset": job["dataset"], "rows": job["rows"],
                         "report": f"/jobs/{job['id']}/report.csv", "checksum": job["rows"] * 7 % 1009}
    view = {"id": job["id"], "state": job["state"], "polls": job["polls"]}
    if job["state"] == "running":
        view["progress"] = round(min(1.0, elapsed / job["seconds"]), 2) if job["seconds"] else 1.0
    if "output" in job:
        view["output"] = job["output"]
    return view


async def get_job(request: Request) -> JSONResponse:
    job = world(request).jobs.get(request.path_params["id"])
    if job is None:
        return JSONResponse({"error": "no such job"}, 404)
    job["polls"] += 1
    return JSONResponse(_job_view(job))


@idempotent
async def cancel_job(request: Request, data: dict[str, Any]) -> Reply:
    job = world(request).jobs.get(request.path_params["id"])
    if job is None:
        return reply(404, {"error": "no such job"})
    _job_view(job)
    if job["state"] == "running":
        job["state"] = "cancelled"
    return reply(200, {"id": job["id"], "state": job["state"]})


# -- notifications ----------------------------------------------------------------------------
@idempotent
async def notify(request: Request, data: dict[str, Any]) -> Reply:
    w = world(request)
    if not isinstance(data.get("to"), str):
        return reply(422, {"error": "give `to`"})
    message = {"id": w.new_id("msg"), "at": time.time(), **data}
    w.messages.append(message)
    return reply(201, {"id": message["id"]})


async def list_messages(request: Request) -> JSONResponse:
    to = request.query_params.get("to")
    return JSONResponse({"messages": [m for m in world(request).messages if to is None or m["to"] == to]})


# -- the rest ---------------------------------------------------------------------------------
async def health(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


async def request_log(request: Request) -> JSONResponse:
    return JSONResponse({"requests": world(request).log})


class LogRequests:
    """ASGI middleware: remember every request (method, path, idempotency key, time)."""

    def __init__(self, app: Any, w: World) -> None:
        self.app, self.world = app, w

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] not in ("/log", "/health"):
            headers = dict(scope["headers"])
            key = headers.get(b"idempotency-key")
            self.world.log.append({"at": time.time(), "method": scope["method"], "path": scope["path"],
                                   "idempotency_key": key.decode("latin-1") if key else None})
        await self.app(scope, receive, send)


def create_app(webhook_delay: float = 0.5, rows_per_second: float = 1000.0) -> Any:
    w = World(webhook_delay, rows_per_second)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> Any:
        async with httpx.AsyncClient(timeout=10) as client:
            w.client = client
            yield
            for task in list(w.background):
                task.cancel()

    app = Starlette(lifespan=lifespan, routes=[
        Route("/health", health),
        Route("/log", request_log),
        Route("/charges", create_charge, methods=["POST"]),
        Route("/charges", list_charges),
        Route("/charges/{id}", get_charge),
        Route("/charges/{id}/refund", refund_charge, methods=["POST"]),
        Route("/inventory", inventory),
        Route("/inventory/holds", create_hold, methods=["POST"]),
        Route("/inventory/holds/{id}/release", release_hold, methods=["POST"]),
        Route("/inventory/holds/{id}/ship", ship_hold, methods=["POST"]),
        Route("/jobs", create_job, methods=["POST"]),
        Route("/jobs/{id}", get_job),
        Route("/jobs/{id}/cancel", cancel_job, methods=["POST"]),
        Route("/notify", notify, methods=["POST"]),
        Route("/notify", list_messages),
    ])
    app.state.world = w
    return LogRequests(app, w)


def main() -> None:
    parser = argparse.ArgumentParser(description="A fake payment provider, warehouse, batch service "
                                                 "and notification service, for the examples.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8500)
    parser.add_argument("--webhook-delay", type=float, default=0.5,
                        help="seconds before the payment provider calls the webhook")
    parser.add_argument("--rows-per-second", type=float, default=1000.0,
                        help="how fast batch jobs go (a job of N rows takes N / this seconds)")
    opts = parser.parse_args()
    # uvicorn handles SIGINT/SIGTERM, then re-raises them to the handlers it found: exit quietly
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, frame: None)
    print(f"services: listening on http://{opts.host}:{opts.port}", flush=True)
    uvicorn.run(create_app(opts.webhook_delay, opts.rows_per_second), host=opts.host, port=opts.port,
                log_level="warning")


if __name__ == "__main__":
    main()
