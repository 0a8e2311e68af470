"""What every route needs: the store, a runtime, limits, and helpers to call the
(blocking) store from the event loop and to long-poll without holding a thread."""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio
from prometheus_client import CollectorRegistry
from starlette.requests import Request

from flowmetal.api.wake import WakeHub
from flowmetal.runtime.driver import Runtime
from flowmetal.store.base import Store

T = TypeVar("T")

# a long-poll re-checks the store at least this often even without a wake-up
# (a lost notification, a writer that does not notify, a server shutting down)
POLL_TICK = 1.0


@dataclass
class Api:
    store: Store
    runtime: Runtime
    hub: WakeHub
    token: str | None
    max_body: int
    callback_max_body: int
    max_wait: float
    metrics: CollectorRegistry  # what /metrics reads from the store when scraped
    draining: bool = False  # the server is shutting down: long-polls answer now
    # when each remote function worker last registered the names it serves (see register_served)
    registered: dict[tuple[str, tuple[str, ...]], float] = field(default_factory=dict)

    def drain(self) -> None:
        """Make every long-poll return now (call on the event loop, when shutting down)."""
        self.draining = True
        self.hub.wake_all()

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking store call in the thread pool (SQLite connections are per thread)."""
        return await anyio.to_thread.run_sync(functools.partial(fn, *args))

    async def notify(self) -> None:
        await self.run(self.store.notify)

    def now(self) -> float:
        return self.runtime.clock()

    async def register_served(self, worker: str, names: list[str]) -> None:
        """A remote function worker's claims are its heartbeat: record the names it serves (at
        most every few seconds per worker)."""
        key, now = (worker, tuple(sorted(names))), self.now()
        if now - self.registered.get(key, float("-inf")) < 5.0:
            return
        if len(self.registered) > 10_000:
            self.registered.clear()
        self.registered[key] = now
        await self.run(self.store.register_served, f"http:{worker}", names, now)

    async def long_poll(self, request: Request, attempt: Callable[[], Awaitable[T | None]], wait: float,
                        next_due: Callable[[], Awaitable[float | None]] | None = None) -> T | None:
        """Call `attempt` until it returns something or `wait` seconds pass, sleeping between
        tries until the store is notified (or `next_due()`, a wall-clock time, comes)."""
        deadline = time.monotonic() + wait
        first = True
        while True:
            event = self.hub.current()
            # a client that hung up must not be handed anything (a claim would sit leased to nobody)
            if not first and await request.is_disconnected():
                return None
            first = False
            got = await attempt()
            if got is not None:
                return got
            left = deadline - time.monotonic()
            if left <= 0 or self.draining:
                return None
            timeout = min(left, POLL_TICK)
            if next_due is not None:
                due = await next_due()
                if due is not None:
                    timeout = min(timeout, max(0.01, due - self.now()))
            await self.hub.wait(event, timeout)


def api(request: Request) -> Api:
    ctx: Api = request.app.state.api
    return ctx
