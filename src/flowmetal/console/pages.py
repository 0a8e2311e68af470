"""What every console page shares: the Jinja2 environment (autoescaped: a program's
text can never become markup), filters for times and durations, the layout's
context (navigation, CSRF token), error pages, and the static files."""

from __future__ import annotations

import datetime
import functools
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from flowmetal.errors import FlowmetalError, UsageError
from flowmetal.observe import metrics
from flowmetal.store.base import StoreUnavailable, UnknownCall, UnknownProgram

STATIC = Path(__file__).parent / "static"
_env = jinja2.Environment(loader=jinja2.PackageLoader("flowmetal.console", "templates"),
                          autoescape=True, trim_blocks=True, lstrip_blocks=True)


def when(at: float | None) -> str:
    if at is None:
        return ""
    return datetime.datetime.fromtimestamp(at, tz=datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")


def when_ms(at: float | None) -> str:
    if at is None:
        return ""
    return datetime.datetime.fromtimestamp(at, tz=datetime.UTC).strftime("%H:%M:%S.%f")[:-3]


def iso(at: float | None) -> str:
    if at is None:
        return ""
    return datetime.datetime.fromtimestamp(at, tz=datetime.UTC).isoformat(timespec="milliseconds")


def duration(seconds: float | None) -> str:
    """0.0042 -> '4.2 ms', 75 -> '1 min 15 s', 200000 -> '2 d 7 h'."""
    if seconds is None:
        return ""
    s = abs(seconds)
    if s < 1:
        return f"{s * 1000:.3g} ms"
    if s < 60:
        return f"{s:.3g} s"
    if s < 3600:
        return f"{int(s // 60)} min {int(s % 60)} s"
    if s < 86400:
        return f"{int(s // 3600)} h {int(s % 3600 // 60)} min"
    return f"{int(s // 86400)} d {int(s % 86400 // 3600)} h"


_env.filters.update(when=when, when_ms=when_ms, iso=iso, duration=duration)


def html(request: Request, template: str, **context: Any) -> str:
    """A page's HTML (call it in a worker thread: rendering a long timeline takes a while)."""
    from flowmetal.console import NAV
    from flowmetal.console.auth import csrf_token

    base = {"nav": NAV, "path": request.url.path, "csrf": csrf_token(request),
            "login": bool(request.app.state.api.token)}
    return _env.get_template(template).render(**base, **context)


async def rendered(request: Request, template: str, context: Callable[[], dict[str, Any]]) -> HTMLResponse:
    """A page whose context is read from the store: both done on the thread pool (the store's
    connections are per thread; rendering a long timeline takes a while)."""
    from flowmetal.api.context import api

    return HTMLResponse(await api(request).run(lambda: html(request, template, **context())))


async def render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    return HTMLResponse(html(request, template, **context), status_code=status_code)


def _error_page(request: Request, status: int, title: str, message: str) -> HTMLResponse:
    return HTMLResponse(html(request, "error.html", title=title, message=message), status_code=status)


Handler = Callable[[Request], Awaitable[Response]]
MAX_FORM = 1_048_576  # bytes of a console form (a message to send is the largest thing in one)


async def form(request: Request) -> dict[str, str]:
    """A POSTed form (application/x-www-form-urlencoded, which is what the pages send),
    read once per request."""
    cached = request.scope.get("flowmetal.form")
    if cached is None:
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM:
                raise UsageError(f"the form is larger than {MAX_FORM} bytes")
        pairs = parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True)
        cached = request.scope["flowmetal.form"] = dict(pairs)
    return dict(cached)


def page(fn: Handler) -> Handler:
    """A console route: POSTs must carry the CSRF token; known errors become an error page
    (never a traceback)."""

    @functools.wraps(fn)
    async def wrapper(request: Request) -> Response:
        from flowmetal.console.auth import csrf_ok

        if request.method == "POST":
            try:
                fields = await form(request)
            except UsageError as e:
                return _error_page(request, 413, "Too large", str(e))
            if not csrf_ok(request, fields.get("csrf")):
                return _error_page(request, 403, "Refused", "This form is stale or came from another site: "
                                   "reload the page and try again.")
        try:
            return await fn(request)
        except (UnknownProgram, UnknownCall) as e:
            return _error_page(request, 404, "Not found", str(e))
        except StoreUnavailable as e:
            metrics.STORE_ERRORS.labels("console").inc()
            return _error_page(request, 503, "The store is unavailable", str(e))
        except FlowmetalError as e:
            return _error_page(request, 400, "Cannot do that", str(e))

    return wrapper


async def _static(request: Request) -> Response:
    name = request.path_params["name"]
    files = {"console.js": "text/javascript", "console.css": "text/css"}
    if name not in files:
        return Response("not found", status_code=404, media_type="text/plain")
    return Response((STATIC / name).read_bytes(), media_type=files[name],
                    headers={"Cache-Control": "max-age=300"})


static_routes = [Route("/static/{name}", _static, methods=["GET"])]
