"""Who may use the console: with `serve --token T`, the same token as the API.

A browser cannot send a bearer header by itself, so the login form (/ui/login) takes
the token and sets it as a cookie: `flowmetal_token`, HttpOnly (scripts cannot read
it), SameSite=Strict (no other site's page can make the browser send it), path /ui
(the cookie opens the console only; the JSON API still wants the header), Secure when
served over HTTPS. Every form also carries a CSRF token, an HMAC of a server secret,
checked on each POST. Without --token the console is open, like the API.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from urllib.parse import quote, urlsplit

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from flowmetal.console.pages import form as read_form
from flowmetal.console.pages import page, render
from flowmetal.errors import UsageError

COOKIE = "flowmetal_token"
PUBLIC = ("/ui/login", "/ui/static/")
_SECRET = secrets.token_bytes(32)  # for CSRF tokens when the server has no API token


def _token_of(request: Request) -> str | None:
    token: str | None = request.app.state.api.token
    return token


def csrf_token(request: Request) -> str:
    """The value every console form sends back (an HMAC: unguessable, nothing to store)."""
    key = (_token_of(request) or "").encode() or _SECRET
    return hmac.new(key, b"flowmetal-console-csrf", hashlib.sha256).hexdigest()


def csrf_ok(request: Request, given: object) -> bool:
    return isinstance(given, str) and hmac.compare_digest(given.encode(), csrf_token(request).encode())


def cookie_allows(scope: Scope, token: str) -> bool:
    """Whether the request carries the right token in the console's cookie (constant time)."""
    for name, value in scope["headers"]:
        if name == b"cookie":
            for part in value.decode("latin-1").split(";"):
                key, _, given = part.strip().partition("=")
                if key == COOKIE and hmac.compare_digest(given.encode(), quote(token, safe="").encode()):
                    return True
    return False


async def refuse(scope: Scope, receive: Receive, send: Send) -> None:
    """Not logged in: pages send the browser to the login form, other requests get a 401."""
    request = Request(scope, receive)
    if request.method == "GET":
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        response: Response = RedirectResponse(f"/ui/login?next={quote(target, safe='')}", status_code=303)
    else:
        response = Response("log in first: /ui/login", status_code=401, media_type="text/plain")
    await response(scope, receive, send)


def _safe_next(raw: object) -> str:
    """Only a path inside the console (no open redirect to another site)."""
    target = raw if isinstance(raw, str) else ""
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/ui") or target.startswith("//"):
        return "/ui/"
    return target


async def login_form(request: Request) -> Response:
    if not _token_of(request):
        return RedirectResponse("/ui/", status_code=303)
    return await render(request, "login.html", next=_safe_next(request.query_params.get("next")), error=None)


async def login(request: Request) -> Response:
    token = _token_of(request)
    try:
        form = await read_form(request)
    except UsageError:
        return Response("the form is too large", status_code=413, media_type="text/plain")
    target = _safe_next(form.get("next"))
    if not token:
        return RedirectResponse(target, status_code=303)
    given = form.get("token")
    if not isinstance(given, str) or not hmac.compare_digest(given.encode(), token.encode()):
        return await render(request, "login.html", next=target, error="That is not this server's token.",
                            status_code=401)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(COOKIE, quote(token, safe=""), httponly=True, samesite="strict", path="/ui",
                        secure=request.url.scheme == "https")
    return response


@page
async def logout(request: Request) -> Response:
    response = RedirectResponse("/ui/login" if _token_of(request) else "/ui/", status_code=303)
    response.delete_cookie(COOKIE, path="/ui")
    return response


routes = [
    Route("/login", login_form, methods=["GET"]),
    Route("/login", login, methods=["POST"]),
    Route("/logout", logout, methods=["POST"]),
]
