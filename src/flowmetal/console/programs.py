"""The programs list: newest first, a page at a time, filtered by status and text (id
or file), with counts per status; scripts refresh the first page every few seconds."""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from flowmetal.api.context import api
from flowmetal.console.pages import html, page, rendered
from flowmetal.runtime.waits import describe_waits
from flowmetal.store.base import STATUSES, ProgramQuery, ProgramRow

PAGE = 50


def waiting_for(row: ProgramRow, now: float) -> str:
    """What a live program waits for, in a few words (runtime/waits.py says it for every tool)."""
    if row.status not in ("running", "waiting"):
        return ""
    if row.cancel_requested:
        return "cancelling"
    if row.status == "running":
        return "to run" if row.runnable else ""
    shown = "; ".join(describe_waits(None, row, now))
    return shown if len(shown) <= 160 else shown[:159] + "…"


def _query(request: Request) -> tuple[ProgramQuery, str | None, dict[str, str]]:
    params = request.query_params
    status = params.get("status") or None
    if status not in STATUSES:
        status = None
    text = (params.get("q") or "").strip()[:200] or None
    cursor = params.get("cursor") or None
    filters = {k: v for k, v in (("status", status), ("q", text)) if v}
    return ProgramQuery(status=status, text=text, newest_first=True), cursor, filters


def _context(request: Request) -> dict[str, Any]:
    a = api(request)
    query, cursor, filters = _query(request)
    listing = a.store.page_programs(query, limit=PAGE, cursor=cursor)
    counts = a.store.count_programs()
    now = time.time()
    rows = [{"row": r, "waiting": waiting_for(r, now)} for r in listing.programs]
    return {"rows": rows, "counts": [(s, counts.get(s, 0)) for s in STATUSES], "total": sum(counts.values()),
            "filters": filters, "status": query.status, "q": query.text or "", "next_cursor": listing.next_cursor,
            "paged": cursor is not None}


@page
async def programs_page(request: Request) -> Response:
    return await rendered(request, "programs.html", lambda: _context(request))


@page
async def programs_part(request: Request) -> Response:
    """The table's rows and the counts alone, for the page's script to refresh them in place."""
    a = api(request)

    def build() -> dict[str, str]:
        ctx = _context(request)
        return {"rows": html(request, "programs_rows.html", **ctx), "counts": html(request, "counts.html", **ctx)}

    return JSONResponse(await a.run(build))


routes = [
    Route("/", programs_page, methods=["GET"]),
    Route("/programs", programs_page, methods=["GET"]),
    Route("/programs.part", programs_part, methods=["GET"]),
]
