"""`create_app(store, runtime)`: the Starlette application behind `flowmetal serve`.

Routes live in programs.py, functions.py and callbacks.py, each declared in an
operations table with its types (operations.py), and the web console's pages under
/ui (flowmetal.console); this module adds the health checks, the OpenAPI document
generated from those tables, /metrics, bearer-token authentication and the JSON
answers for unknown routes and methods.
"""

from __future__ import annotations

import contextlib
import hmac
from collections.abc import AsyncIterator
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from flowmetal import console
from flowmetal.api import callbacks, functions, hooks, openapi, programs, schedules
from flowmetal.api import types as t
from flowmetal.api.context import Api, api
from flowmetal.api.http import JSON, ApiError, error_response
from flowmetal.api.operations import Operations
from flowmetal.api.wake import WakeHub
from flowmetal.console import auth as console_auth
from flowmetal.observe import metrics, tracing
from flowmetal.runtime.driver import Runtime
from flowmetal.store.base import STATUSES, Store, UnknownProgram

DEFAULT_MAX_BODY = 1_048_576
READY_TIMEOUT = 5.0
# routes anyone may call: liveness, and callbacks (their URL's token is the credential)
_PUBLIC_EXACT = ("/health", "/")  # (/ only redirects to the console, which asks for the token)
_PUBLIC_PREFIX = ("/callbacks/", "/hooks/")  # (a hook's signature is its credential)


class BearerAuth:
    """Every other route needs `Authorization: Bearer TOKEN` (compared in constant time)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if path == "/ui" or path.startswith("/ui/"):  # the console: the token may come in its cookie
                if not path.startswith(console_auth.PUBLIC) and not self._console_allows(scope):
                    await console_auth.refuse(scope, receive, send)
                    return
            elif path not in _PUBLIC_EXACT and not path.startswith(_PUBLIC_PREFIX):
                given = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
                if not hmac.compare_digest(given, self.expected):
                    message = "missing bearer token" if not given else "wrong bearer token"
                    await ApiError(401, "Unauthorized", message).response()(scope, receive, send)
                    return
        await self.app(scope, receive, send)

    def _console_allows(self, scope: Scope) -> bool:
        given = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
        return hmac.compare_digest(given, self.expected) or console_auth.cookie_allows(scope, self.token)


async def to_console(request: Request) -> Response:
    return RedirectResponse("/ui/", status_code=303)


ops = Operations()


@ops.add("GET", "/health", summary="The server process is alive", responses={200: (t.Health, "alive")},
         public=True)
async def health(request: Request) -> t.Health:
    return t.Health("ok")


@ops.add("GET", "/ready", summary="The store is reachable", responses={200: (t.Ready, "ready")}, errors=(503,))
async def ready(request: Request) -> t.Ready:
    a = api(request)

    def probe() -> None:
        # a primary-key lookup: as cheap as a query gets, and it needs a working store
        with contextlib.suppress(UnknownProgram):
            a.store.get_program("flowmetal-readiness-probe")

    try:
        with anyio.fail_after(READY_TIMEOUT):
            await anyio.to_thread.run_sync(probe, abandon_on_cancel=True)
    except TimeoutError:
        raise ApiError(503, "StoreUnavailable", f"the store did not answer within {READY_TIMEOUT:g} s") from None
    except Exception as e:
        raise ApiError(503, "StoreUnavailable", f"the store is unreachable: {e}") from None
    return t.Ready("ready", a.store.url)


@ops.add("GET", "/openapi.json", summary="This document",
         responses={200: (None, "the OpenAPI 3.1 document (application/json)")})
async def openapi_json(request: Request) -> Response:
    return JSON(request.app.state.openapi)


@ops.add("GET", "/metrics", summary="Metrics in Prometheus's text format (docs/operations.md lists them)",
         responses={200: (None, "the metrics (text/plain; version=0.0.4)")})
async def metrics_text(request: Request) -> Response:
    """This process's metrics and the store's programs by status, in Prometheus's text format."""
    a = api(request)
    body, content_type = await a.run(metrics.exposition, a.metrics)
    return Response(body, media_type=content_type)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    kinds = {404: "NotFound", 405: "MethodNotAllowed"}
    message = {404: f"no route {request.url.path}",
               405: f"{request.method} is not allowed on {request.url.path}"}.get(exc.status_code, exc.detail)
    return error_response(exc.status_code, kinds.get(exc.status_code, "HTTPError"), message,
                          headers=dict(exc.headers) if exc.headers else None)


def create_app(store: Store, runtime: Runtime, *, token: str | None = None, max_body: int = DEFAULT_MAX_BODY,
               callback_max_body: int = DEFAULT_MAX_BODY, max_wait: float = 60.0) -> Starlette:
    """The API for one store. `runtime` starts and inspects programs (it need not run them);
    `max_wait` caps long-polls (seconds)."""
    hub = WakeHub(store)
    ctx = Api(store=store, runtime=runtime, hub=hub, token=token, max_body=max_body,
              callback_max_body=callback_max_body, max_wait=max_wait,
              metrics=metrics.store_registry(store.count_programs, STATUSES))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await hub.start()
        try:
            yield
        finally:
            await hub.stop()

    table = Operations([*programs.ops.items, *functions.ops.items, *callbacks.ops.items, *schedules.ops.items,
                        *hooks.ops.items, *ops.items])
    routes: list[Any] = table.routes()
    # besides the API (not in its OpenAPI document): / and the web console's pages
    routes += [Route("/", to_console, methods=["GET"], include_in_schema=False), console.mount()]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: _http_error})
    app.state.api = ctx
    app.state.openapi = openapi.document(table, secured=bool(token))
    if token:
        app.add_middleware(BearerAuth, token=token)
    app.add_middleware(tracing.AsgiTracing)  # outermost: a span even for refused requests
    return app


def drain(app: Starlette) -> None:
    """Answer every long-poll now, and start no new waits: for a server shutting down, which
    otherwise waits for its open requests (call it on the server's event loop)."""
    ctx: Api = app.state.api
    ctx.drain()
