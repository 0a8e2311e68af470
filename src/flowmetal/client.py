"""`flowmetal.Client`: start and drive durable programs from any Python application."""

from __future__ import annotations

import time
from typing import Any

from flowmetal.errors import FlowmetalError
from flowmetal.runtime.driver import Runtime
from flowmetal.store import open_store
from flowmetal.store.base import FINISHED, Event


class ProgramFailedError(FlowmetalError):
    """`result()` of a program that failed or was cancelled."""


class ResultTimeout(FlowmetalError):
    """`result(timeout=...)` ran out before the program finished."""


class ProgramHandle:
    def __init__(self, client: Client, program_id: str) -> None:
        self.client = client
        self.id = program_id

    def __repr__(self) -> str:
        return f"<ProgramHandle {self.id}>"

    def status(self) -> str:
        return self.client.store.get_program(self.id).status

    def result(self, timeout: float | None = None) -> Any:
        """Wait for the program to finish; its result, or ProgramFailedError."""
        return self.client.result(self.id, timeout)

    def send(self, message: Any, channel: str = "inbox") -> None:
        self.client.send(self.id, message, channel)

    def history(self) -> list[Event]:
        return self.client.store.events(self.id)

    def cancel(self) -> None:
        self.client.cancel(self.id)


class Client:
    def __init__(self, store_url: str | None = None) -> None:
        self.store = open_store(store_url)
        self.runtime = Runtime(self.store)

    def start(self, path: str, args: dict[str, Any] | None = None, id: str | None = None,
              source: str | None = None) -> ProgramHandle:
        pid = self.runtime.start(path, args, program_id=id, source=source)
        self.store.notify()
        return ProgramHandle(self, pid)

    def program(self, program_id: str) -> ProgramHandle:
        self.store.get_program(program_id)
        return ProgramHandle(self, program_id)

    def send(self, program_id: str, message: Any, channel: str = "inbox") -> None:
        self.store.send(program_id, channel, message, time.time())
        self.store.notify()

    def cancel(self, program_id: str) -> None:
        self.store.request_cancel(program_id, time.time())
        self.store.notify()

    def result(self, program_id: str, timeout: float | None = None) -> Any:
        deadline = None if timeout is None else time.monotonic() + timeout
        listener = self.store.listener()
        try:
            while True:
                row = self.store.get_program(program_id)
                if row.status in FINISHED:
                    if row.status == "completed":
                        return row.result
                    raise ProgramFailedError(f"program {program_id} {row.status}: {row.error}")
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise ResultTimeout(f"program {program_id} is still {row.status}")
                listener.wait(0.2 if left is None else min(0.2, left))
        finally:
            listener.close()
