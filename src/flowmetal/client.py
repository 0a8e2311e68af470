"""`flowmetal.Client`: start and drive durable programs from any Python application.

    Client()                                   # the store of this machine (FLOWMETAL_STORE, ...)
    Client("postgresql://db/flows")            # a store, opened directly (needs its credentials)
    Client("http://node:8400", token="T")      # a node's HTTP API (`flowmetal serve`): no store access
    AsyncClient("http://node:8400", token="T") # the same, for asyncio (every method is a coroutine)

Every client has the same methods: `start`, `program`, `send`, `cancel`, `result` (a
long-poll on a node: it returns as soon as the program ends), `history`, `state`, `list`.
`result(..., type=T)` converts the result to `T` (a dataclass, msgspec Struct, TypedDict,
list[...] ...). Errors are Flowmetal's own exceptions, all importable from `flowmetal`:
`UnknownProgram`, `ProgramExists`, `ProgramFinished`, `BadArguments`, `CheckFailed`-like
`ProgramRejected`, `ProgramFailedError`, `ResultTimeout`, `ApiError`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from flowmetal.errors import FlowmetalError, UsageError
from flowmetal.store.base import FINISHED, Event, ProgramExists, ProgramFinished, UnknownProgram

T = TypeVar("T")
_LONG_POLL = 30.0  # seconds one result request may wait (the node caps it with --max-wait)


class ProgramFailedError(FlowmetalError):
    """`result()` of a program that failed or was cancelled."""


class ResultTimeout(FlowmetalError):
    """`result(timeout=...)` ran out before the program finished."""


class ProgramRejected(UsageError):
    """The node refused to start the program: it does not pass checking, or its file cannot be read."""


class ApiError(FlowmetalError):
    """Any other error answer of a node: `.status`, `.type` and the message."""

    def __init__(self, status: int, type_: str, message: str) -> None:
        super().__init__(f"{type_}: {message} (HTTP {status})")
        self.status, self.type, self.message = status, type_, message


def _typed(value: Any, kind: type[T] | None) -> Any:
    return value if kind is None else msgspec.convert(value, kind, strict=False)


def _outcome(program_id: str, status: str, result: Any, error: Any, kind: Any) -> Any:
    if status == "completed":
        return _typed(result, kind)
    raise ProgramFailedError(f"program {program_id} {status}: {error}")


def _event(e: dict[str, Any]) -> Event:
    data = {k: v for k, v in e.items() if k not in ("program", "seq", "type", "at", "at_iso")}
    return Event(e["program"], e["seq"], e["type"], data, e["at"])


class ProgramHandle:
    """One program: `.id`, `.status()`, `.result(timeout, type=)`, `.send()`, `.history()`,
    `.state()`, `.cancel()`."""

    def __init__(self, client: Client, program_id: str) -> None:
        self.client = client
        self.id = program_id

    def __repr__(self) -> str:
        return f"<ProgramHandle {self.id}>"

    def status(self) -> str:
        return str(self.client.info(self.id)["status"])

    def result(self, timeout: float | None = None, type: Any = None) -> Any:
        """Wait for the program to finish; its result (as `type`, if given), or ProgramFailedError."""
        return self.client.result(self.id, timeout, type=type)

    def send(self, message: Any, channel: str = "inbox") -> None:
        self.client.send(self.id, message, channel)

    def history(self) -> list[Event]:
        return self.client.history(self.id)

    def state(self, at: int | None = None) -> dict[str, Any]:
        return self.client.state(self.id, at)

    def cancel(self) -> None:
        self.client.cancel(self.id)


class Client:
    """A client of one store (a URL such as `sqlite:///x.db`, default: this machine's) or of
    one node's HTTP API (`http://...` / `https://...`, with its bearer `token`)."""

    def __init__(self, target: str | None = None, *, token: str | None = None, timeout: float = 30.0) -> None:
        self._http: Any = None
        if target is not None and target.startswith(("http://", "https://")):
            import httpx

            headers = {"Authorization": f"Bearer {token}"} if token else {}
            self._http = httpx.Client(base_url=target.rstrip("/"), headers=headers,
                                      timeout=httpx.Timeout(timeout + _LONG_POLL))
            self.store: Any = None
            self.runtime: Any = None
        else:
            from flowmetal.runtime.driver import Runtime
            from flowmetal.store import open_store

            self.store = open_store(target)
            self.runtime = Runtime(self.store)

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
        elif self.store is not None:
            self.store.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- over HTTP ---------------------------------------------------------------------------
    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        import httpx

        try:
            r = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as e:
            raise FlowmetalError(f"cannot reach {self._http.base_url}: {e}") from None
        return _answer(r.status_code, r)

    # -- the methods --------------------------------------------------------------------------
    def start(self, path: str, args: dict[str, Any] | None = None, id: str | None = None,
              source: str | None = None) -> ProgramHandle:
        """Start a program (a .flow file read here, `source` text, or a deployment's name)."""
        if self._http is not None:
            body = _start_body(path, args, id, source)
            return ProgramHandle(self, self._call("POST", "/programs", json=body)["id"])
        pid = self.runtime.start(path, args, program_id=id, source=source)
        self.store.notify()
        return ProgramHandle(self, pid)

    def program(self, program_id: str) -> ProgramHandle:
        self.info(program_id)
        return ProgramHandle(self, program_id)

    def info(self, program_id: str) -> dict[str, Any]:
        """The program as the API shows it (`GET /programs/{id}`)."""
        if self._http is not None:
            return dict(self._call("GET", f"/programs/{_quote(program_id)}"))
        return self.store.get_program(program_id).to_json()

    def send(self, program_id: str, message: Any, channel: str = "inbox") -> None:
        if self._http is not None:
            self._call("POST", f"/programs/{_quote(program_id)}/messages", json={"message": message, "channel": channel})
            return
        self.store.send(program_id, channel, message, time.time())
        self.store.notify()

    def cancel(self, program_id: str) -> None:
        if self._http is not None:
            self._call("POST", f"/programs/{_quote(program_id)}/cancel")
            return
        self.store.request_cancel(program_id, time.time())
        self.store.notify()

    def result(self, program_id: str, timeout: float | None = None, *, type: Any = None) -> Any:
        """Wait for the program to finish: its result (converted to `type`, if given); ProgramFailedError
        if it failed or was cancelled; ResultTimeout after `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if self._http is not None:
            while True:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                wait = _LONG_POLL if left is None else min(left, _LONG_POLL)
                out = self._call("GET", f"/programs/{_quote(program_id)}/result", params={"wait": wait})
                if out["status"] in FINISHED:
                    return _outcome(program_id, out["status"], out.get("result"), out.get("error"), type)
                if left is not None and left <= 0:
                    raise ResultTimeout(f"program {program_id} is still {out['status']}")
        row = self.store.get_program(program_id)
        if row.status in FINISHED:  # (no listening connection needed: often the case for a batch)
            return _outcome(program_id, row.status, row.result, row.error, type)
        with self._listener() as listener:
            while True:
                row = self.store.get_program(program_id)
                if row.status in FINISHED:
                    return _outcome(program_id, row.status, row.result, row.error, type)
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise ResultTimeout(f"program {program_id} is still {row.status}")
                # woken by the store's notification; the timeout only bounds a lost one
                listener.wait(1.0 if left is None else min(1.0, left))

    @contextmanager
    def _listener(self) -> Iterator[Any]:
        listener = self.store.listener()
        try:
            yield listener
        finally:
            listener.close()

    def history(self, program_id: str, after: int = 0) -> list[Event]:
        if self._http is not None:
            events: list[Event] = []
            while True:
                page = self._call("GET", f"/programs/{_quote(program_id)}/history", params={"after": after})
                events.extend(_event(e) for e in page["events"])
                if not page["events"] or events[-1].seq >= page["last_seq"]:
                    return events
                after = events[-1].seq
        self.store.get_program(program_id)
        return list(self.store.events(program_id, after))

    def state(self, program_id: str, at: int | None = None) -> dict[str, Any]:
        """Tasks, stacks, variables and waits at an event (default: the latest)."""
        if self._http is not None:
            return dict(self._call("GET", f"/programs/{_quote(program_id)}/state",
                                   params={} if at is None else {"at": at}))
        from flowmetal.runtime.inspect import describe

        row = self.store.get_program(program_id)
        machine, seq = self.runtime.load(row, at)
        waits = (row.waiting_on or {}).get("waits") if at is None else None
        return {"id": program_id, "seq": seq, **describe(machine, waits)}

    def list(self, status: str | list[str] | None = None, *, file: str | None = None, limit: int = 100,
             cursor: str | None = None, newest_first: bool = False) -> tuple[list[dict[str, Any]], str | None]:
        """A page of programs and the cursor of the next page (None on the last)."""
        statuses = [status] if isinstance(status, str) else list(status or [])
        if self._http is not None:
            params: dict[str, Any] = {"limit": limit, "order": "desc" if newest_first else "asc"}
            if statuses:
                params["status"] = statuses
            if file:
                params["file"] = file
            if cursor:
                params["cursor"] = cursor
            page = self._call("GET", "/programs", params=params)
            return list(page["programs"]), page["next_cursor"]
        from flowmetal.store.base import ProgramQuery

        got = self.store.page_programs(ProgramQuery(status=statuses or None, file=file, newest_first=newest_first),
                                       limit, cursor)
        return [r.to_json() for r in got.programs], got.next_cursor


class AsyncClient:
    """`Client` for asyncio, over a node's HTTP API: every method is a coroutine."""

    def __init__(self, url: str, *, token: str | None = None, timeout: float = 30.0) -> None:
        import httpx

        if not url.startswith(("http://", "https://")):
            raise UsageError(f"AsyncClient talks to a node's HTTP API: expected http(s)://..., not {url!r}")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.AsyncClient(base_url=url.rstrip("/"), headers=headers,
                                       timeout=httpx.Timeout(timeout + _LONG_POLL))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        import httpx

        try:
            r = await self._http.request(method, path, **kwargs)
        except httpx.HTTPError as e:
            raise FlowmetalError(f"cannot reach {self._http.base_url}: {e}") from None
        return _answer(r.status_code, r)

    async def start(self, path: str, args: dict[str, Any] | None = None, id: str | None = None,
                    source: str | None = None) -> str:
        """Start a program; its id."""
        return str((await self._call("POST", "/programs", json=_start_body(path, args, id, source)))["id"])

    async def info(self, program_id: str) -> dict[str, Any]:
        return dict(await self._call("GET", f"/programs/{_quote(program_id)}"))

    async def send(self, program_id: str, message: Any, channel: str = "inbox") -> None:
        await self._call("POST", f"/programs/{_quote(program_id)}/messages", json={"message": message, "channel": channel})

    async def cancel(self, program_id: str) -> None:
        await self._call("POST", f"/programs/{_quote(program_id)}/cancel")

    async def result(self, program_id: str, timeout: float | None = None, *, type: Any = None) -> Any:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            wait = _LONG_POLL if left is None else min(left, _LONG_POLL)
            out = await self._call("GET", f"/programs/{_quote(program_id)}/result", params={"wait": wait})
            if out["status"] in FINISHED:
                return _outcome(program_id, out["status"], out.get("result"), out.get("error"), type)
            if left is not None and left <= 0:
                raise ResultTimeout(f"program {program_id} is still {out['status']}")

    async def history(self, program_id: str, after: int = 0) -> list[Event]:
        page = await self._call("GET", f"/programs/{_quote(program_id)}/history", params={"after": after, "limit": 10000})
        return [_event(e) for e in page["events"]]

    async def state(self, program_id: str, at: int | None = None) -> dict[str, Any]:
        return dict(await self._call("GET", f"/programs/{_quote(program_id)}/state",
                                     params={} if at is None else {"at": at}))

    async def list(self, status: str | list[str] | None = None, *, limit: int = 100,
                   cursor: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
        params: dict[str, Any] = {"limit": limit}
        if status:
            params["status"] = [status] if isinstance(status, str) else status
        if cursor:
            params["cursor"] = cursor
        page = await self._call("GET", "/programs", params=params)
        return list(page["programs"]), page["next_cursor"]


def _quote(program_id: str) -> str:
    from urllib.parse import quote

    return quote(program_id, safe="")


def _start_body(path: str, args: dict[str, Any] | None, id: str | None, source: str | None) -> dict[str, Any]:
    """A start request: a .flow file is read here (the node cannot see this machine's files) and
    sent as source; a bare name is a deployment on the node."""
    from flowmetal.runtime.deployments import is_deployment_name

    body: dict[str, Any] = {"args": dict(args or {})}
    if id is not None:
        body["id"] = id
    if source is None and is_deployment_name(path) and not Path(path).exists():
        body["program"] = path
        return body
    if source is None:
        try:
            source = Path(path).read_text(encoding="utf-8")
        except OSError as e:
            raise UsageError(f"{path}: {e.strerror or e}") from None
    body.update(source=source, filename=path)
    return body


_ERRORS: dict[str, type[FlowmetalError]] = {
    "UnknownProgram": UnknownProgram, "ProgramExists": ProgramExists, "ProgramFinished": ProgramFinished,
}


def _answer(status: int, r: Any) -> Any:
    """The JSON of a 2xx answer; for an error answer, Flowmetal's own exception for it."""
    try:
        body = r.json()
    except ValueError:
        body = None
    if status < 400 and body is not None:
        return body
    error = (body or {}).get("error") if isinstance(body, dict) else None
    kind = str((error or {}).get("type", "HTTPError"))
    message = str((error or {}).get("message", r.text[:200]))
    if kind in _ERRORS:
        raise _ERRORS[kind](message)
    if kind == "BadArguments":
        from flowmetal.runtime.arguments import BadArguments

        raise BadArguments(message)
    if kind in ("CheckFailed", "FlowmetalError", "UnknownDeployment"):
        raise ProgramRejected(message)
    raise ApiError(status, kind, message)
