"""Calls across programs that an operator should look at: pending (waiting for a
connector, or for their next attempt), in progress, and failed for good."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from flowmetal.api.context import api
from flowmetal.console.pages import page, rendered

SHOWN = ("pending", "claimed", "failed")
LIMIT = 500  # per status, the most recently updated


@page
async def calls_page(request: Request) -> Response:
    a = api(request)
    status = request.query_params.get("status")
    statuses = (status,) if status in SHOWN else SHOWN

    def context() -> dict[str, Any]:
        groups = []
        for s in statuses:
            rows = sorted(a.store.list_calls(status=s), key=lambda c: c.updated_at, reverse=True)
            groups.append((s, rows[:LIMIT], len(rows)))
        return {"groups": groups, "status": status if status in SHOWN else None, "statuses": SHOWN, "limit": LIMIT}

    return await rendered(request, "calls.html", context)


routes = [Route("/calls", calls_page, methods=["GET"])]
