"""`flowmetal.Client("http://...", token=...)` and `AsyncClient` against a real `flowmetal
serve` (no store access from the client), the store client's same methods, and every
exception importable from `flowmetal`."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path

import pytest

import flowmetal
from flowmetal import (
    AsyncClient,
    BadArguments,
    Client,
    FlowmetalError,
    ProgramFailedError,
    ProgramFinished,
    ProgramRejected,
    ResultTimeout,
    UnknownProgram,
)
from test_api import TOKEN, Server

ORDER = '''from flowmetal import receive

def main(item, qty=1):
    print("waiting for approval of", item)
    note = receive("approval")
    return {"item": item, "qty": qty, "note": note}
'''


@dataclasses.dataclass
class Order:
    item: str
    qty: int
    note: str


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    server = Server(tmp_path_factory.mktemp("node"), token=TOKEN)
    yield server
    server.stop()


def test_remote_client_drives_a_program_over_http(node: Server, tmp_path: Path) -> None:
    flow = tmp_path / "order.flow"  # a file of the client's machine: sent as source
    flow.write_text(ORDER)
    with Client(node.url, token=TOKEN) as client:
        assert client.store is None  # no database credentials needed
        handle = client.start(str(flow), {"item": "apples", "qty": 3})
        with pytest.raises(ResultTimeout):
            handle.result(timeout=0.3)
        assert handle.status() in ("running", "waiting")
        began = time.monotonic()
        handle.send("ok by Ada", channel="approval")
        assert handle.result(timeout=30, type=Order) == Order("apples", 3, "ok by Ada")
        assert time.monotonic() - began < 10  # the long-poll returned when the program ended
        assert handle.status() == "completed"
        types = [e.type for e in handle.history()]
        assert types[0] == "started" and types[-1] == "completed" and "message_received" in types
        assert handle.state(at=1)["seq"] == 1
        page, _ = client.list(status="completed", file="order.flow")
        assert handle.id in [p["id"] for p in page]

        victim = client.start(str(flow), {"item": "pears"})
        deadline = time.monotonic() + 10
        while victim.status() != "waiting" and time.monotonic() < deadline:
            time.sleep(0.02)
        victim.cancel()
        with pytest.raises(ProgramFailedError, match="cancelled"):
            victim.result(timeout=30)
        with pytest.raises(ProgramFinished):
            victim.send("too late", channel="approval")
        with pytest.raises(UnknownProgram):
            client.program("nobody")
        with pytest.raises(BadArguments, match=r"main\(\) missing 1 required positional argument: 'item'"):
            client.start(str(flow), {})
        with pytest.raises(ProgramRejected, match=r"bad\.flow:1:"):
            client.start("bad.flow", source="def main(:\n")
    with Client(node.url) as anonymous, pytest.raises(flowmetal.ApiError) as e:
        anonymous.program(handle.id)
    assert e.value.status == 401


def test_async_client(node: Server) -> None:
    async def scenario() -> None:
        async with AsyncClient(node.url, token=TOKEN) as client:
            pids = [await client.start("order.flow", {"item": f"i{n}"}, source=ORDER) for n in range(3)]
            waiters = [asyncio.ensure_future(client.result(pid, timeout=30)) for pid in pids]
            for pid in pids:
                await client.send(pid, f"note {pid}", channel="approval")
            results = await asyncio.gather(*waiters)
            assert [r["note"] for r in results] == [f"note {pid}" for pid in pids]
            assert (await client.info(pids[0]))["status"] == "completed"
            assert [e.type for e in await client.history(pids[0])][-1] == "completed"
            with pytest.raises(UnknownProgram):
                await client.info("nobody")

    asyncio.run(scenario())


def test_the_store_client_has_the_same_methods(tmp_path: Path) -> None:
    with Client(f"sqlite:///{tmp_path / 's.db'}") as client:
        handle = client.start("order.flow", {"item": "figs"}, source=ORDER)
        assert client.list()[0][0]["id"] == handle.id
        assert handle.state()["tasks"][0]["status"] == "runnable"
        with pytest.raises(ResultTimeout):
            handle.result(timeout=0.1)


def test_every_exception_is_importable_from_flowmetal() -> None:
    for name in flowmetal.__all__:
        value = getattr(flowmetal, name)
        if isinstance(value, type) and issubclass(value, Exception) and name != "NonRetryable":
            assert issubclass(value, FlowmetalError), name
    with pytest.raises(AttributeError):
        flowmetal.nothing_here  # noqa: B018


def test_non_retryable_carries_an_error_type_and_failures_keep_the_functions_traceback() -> None:
    from flowmetal import FunctionWorker, NonRetryable
    from flowmetal.connectors.secrets import SecretSource
    from flowmetal.store.base import CallClaim

    worker = FunctionWorker.__new__(FunctionWorker)
    worker.secrets = SecretSource(environ={})

    def out_of_stock(ctx: object, item: str) -> None:
        raise NonRetryable(f"no {item} left", type="OutOfStock")

    def broken(ctx: object) -> None:
        {}["missing"]

    worker.functions = {"stock.take": out_of_stock, "broken": broken}
    outcome = worker.perform(CallClaim("p:2", "p", "function", "stock.take", {"args": ["apples"]}, 1, None))
    assert not outcome.ok and not outcome.retryable and outcome.error is not None
    assert (outcome.error["type"], outcome.error["message"]) == ("OutOfStock", "no apples left")
    outcome = worker.perform(CallClaim("p:3", "p", "function", "broken", {}, 1, None))
    assert outcome.retryable and outcome.error is not None and outcome.error["type"] == "KeyError"
    tb = outcome.error["traceback"]
    assert tb.startswith('  File "') and 'in broken\n    {}["missing"]' in tb and "perform" not in tb
    assert tb.endswith("KeyError: 'missing'\n") and "Traceback" not in tb
