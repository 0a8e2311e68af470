"""The web console `flowmetal serve` shows at /ui: server-rendered pages (Jinja2,
autoescaped) with a little progressive enhancement from one vendored-free script
(static/console.js): the programs list, a program's page with its source, timeline,
state at any event (time travel), diffs and actions, and the calls page.

Pages live one module each (programs.py, program.py, calls.py) and declare their
routes; `NAV` is the navigation bar. A new page (e.g. schedules) adds a module with
`routes` and an entry in `NAV` here, and gets the login, layout and helpers of
pages.py for free.

Everything a program controls (its output, variables, messages, ids of its choosing)
is untrusted and reaches the page only through Jinja2's escaping; scripts never
insert text as HTML except fragments the server rendered the same way.
"""

from __future__ import annotations

from typing import Any

from starlette.routing import BaseRoute, Mount

NAV: list[tuple[str, str]] = [("Programs", "/ui/"), ("Calls", "/ui/calls")]


def mount() -> Mount:
    """Every console route, under /ui."""
    from flowmetal.console import auth, calls, program, programs
    from flowmetal.console.pages import static_routes

    routes: list[BaseRoute] = [*auth.routes, *programs.routes, *program.routes, *calls.routes, *static_routes]
    return Mount("/ui", routes=routes, name="console")


__all__: list[Any] = ["NAV", "mount"]
