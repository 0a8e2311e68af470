"""One store listener for the whole server, fanned out to every long-poll.

A long-poll (a result, a function claim) must not hold a thread while it waits:
the thread pool also serves every other request. So one background thread waits
on `store.listener()` and, on each wake-up, sets an asyncio event that every
waiting request awaits. A waiter takes the current event *before* it checks the
store, so a wake-up between its check and its wait is never missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading

import anyio

from flowmetal.api.http import log
from flowmetal.store.base import Listener, Store


class WakeHub:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._event = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listener: Listener | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._event = asyncio.Event()
        self._listener = await anyio.to_thread.run_sync(self.store.listener)
        self._thread = threading.Thread(target=self._run, name="flowmetal-api-wake", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        self._stopping.set()
        if self._listener is not None:
            self._listener.interrupt()
        if self._thread is not None:
            await anyio.to_thread.run_sync(self._thread.join, 5.0)
        if self._listener is not None:
            self._listener.close()
        self.wake_all()  # nobody should sleep through the shutdown

    def _run(self) -> None:
        assert self._listener is not None and self._loop is not None
        while not self._stopping.is_set():
            try:
                woken = self._listener.wait(5.0)
            except Exception as e:  # a broken listener: the waiters' own polling takes over
                log.warning("store wake-ups failed (long-polls fall back to polling): %s", e)
                woken = False
                self._stopping.wait(5.0)
            if woken and not self._stopping.is_set():
                with contextlib.suppress(RuntimeError):  # the loop closed under us
                    self._loop.call_soon_threadsafe(self.wake_all)

    def wake_all(self) -> None:
        """Wake every waiter (on the event loop's thread)."""
        event, self._event = self._event, asyncio.Event()
        event.set()

    def current(self) -> asyncio.Event:
        """The event the next wake-up sets (take it before checking the store)."""
        return self._event

    @staticmethod
    async def wait(event: asyncio.Event, timeout: float) -> bool:
        """Until `event` is set or `timeout` seconds pass; True if woken."""
        if timeout <= 0:
            return event.is_set()
        with anyio.move_on_after(timeout):
            await event.wait()
        return event.is_set()
