"""A worker that performs calls in process (runtime/inline.py) must not strand a program when
the store fails at the wrong moment: a claim or a group commit that raises StoreUnavailable
right after calls finished here, or a store error that is not an outage (which used to end
the worker). Before the fix the finished calls' outcomes were lost with the
exception while the worker kept renewing the programs' leases (heartbeat), so nobody ever ran
them again: `waiting` for ever (seen under heavy load in bench/bench_shared.py).

Real stores (SQLite, and PostgreSQL when configured), a real worker and function worker on
threads; the only thing injected is the store's failure, once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from flowmetal.connectors.functions import FunctionWorker
from flowmetal.runtime.driver import Runtime
from flowmetal.runtime.worker import Worker
from flowmetal.store import open_store
from flowmetal.store.base import FINISHED, Commit, Store, StoreError, StoreUnavailable

PROGRAM = ("from flowmetal import call\n"
           "def main():\n"
           "    total = 0\n"
           "    for i in range(4):\n"
           "        total += call('step', i)\n"
           "    return total\n")


@pytest.fixture
def store(backend: str, store_url_factory: Callable[[str], str]) -> Iterator[Store]:
    s = open_store(store_url_factory(backend))
    yield s
    s.close()


class Setup:
    def __init__(self, store: Store, tmp_path: Path) -> None:
        self.store = store
        self.rt = Runtime(store)
        self.functions = FunctionWorker(store, lease=2.0)  # serves retries, as `worker --functions` does
        self.worker = Worker(self.rt, lease=2.0, functions=self.functions)
        self.path = tmp_path / "steps.flow"
        self.path.write_text(PROGRAM)
        self.thread = threading.Thread(target=self.worker.run, daemon=True)
        self.alive = False

    def run(self, timeout: float = 15.0) -> Any:
        """Run the program to its end (AssertionError if it is stuck), then stop the worker;
        `alive` says whether the worker was still running when the program ended."""
        self.functions.start()
        self.thread.start()
        try:
            pid = self.rt.start(str(self.path))
            self.store.notify()
            end = time.monotonic() + timeout
            while time.monotonic() < end:
                row = self.store.get_program(pid)
                if row.status in FINISHED:
                    self.alive = self.thread.is_alive()
                    return row
                time.sleep(0.05)
            raise AssertionError(f"{pid} is stuck: {self.store.get_program(pid)}")
        finally:
            self.stop()

    def stop(self) -> None:
        self.worker.stop()
        self.thread.join(10)
        self.functions.stop()


def test_a_group_commit_that_fails_after_calls_finished_here_strands_no_program(
        store: Store, tmp_path: Path) -> None:
    setup = Setup(store, tmp_path)
    setup.functions.function("step")(lambda ctx, i: i * 10)
    real_commit = store.commit
    failed: list[str] = []

    def commit(commits: list[Commit], now: float) -> None:
        if not failed and any(c.done_calls for c in commits):  # a continuation's commit, once
            failed.append(commits[0].program_id)
            raise StoreUnavailable("injected: the store is unavailable")
        real_commit(commits, now)

    store.commit = commit  # type: ignore[method-assign]
    row = setup.run()
    assert failed, "the failure was not injected"
    assert row.status == "completed" and row.result == 60
    # the step whose commit failed was recorded through the store, once
    assert [c.status for c in store.list_calls(row.id)] == ["done"] * 4


def test_a_claim_that_fails_after_calls_finished_here_strands_no_program(store: Store, tmp_path: Path) -> None:
    setup = Setup(store, tmp_path)
    worker = setup.worker
    assert worker.inline is not None
    inline = worker.inline

    def step(ctx: Any, i: int) -> int:
        worker._claim_due = True  # so the round that continues the program also claims
        return i * 10

    setup.functions.function("step")(step)
    real_completed, real_claim = inline.completed, store.claim
    taken: list[bool] = []
    failed: list[bool] = []

    def completed(now: float, running: Any = ()) -> Any:
        out = real_completed(now, running)
        if out:
            taken.append(True)
        return out

    def claim(*args: Any, **kw: Any) -> Any:
        if taken and not failed:  # calls finished here were (or are about to be) continued
            failed.append(True)
            raise StoreUnavailable("injected: the store is unavailable")
        return real_claim(*args, **kw)

    inline.completed = completed  # type: ignore[method-assign]
    store.claim = claim  # type: ignore[method-assign]
    row = setup.run()
    assert failed, "the failure was not injected"
    assert row.status == "completed" and row.result == 60


@pytest.mark.parametrize("where", ["claim", "commit"])
def test_a_store_error_that_is_not_an_outage_does_not_end_the_worker(
        store: Store, tmp_path: Path, where: str) -> None:
    setup = Setup(store, tmp_path)
    setup.functions.function("step")(lambda ctx, i: i * 10)
    failed: list[bool] = []
    real = getattr(store, where)

    def broken(*args: Any, **kw: Any) -> Any:
        if not failed:
            failed.append(True)
            raise StoreError("injected: deadlock detected")
        return real(*args, **kw)

    setattr(store, where, broken)
    row = setup.run()
    assert failed, "the failure was not injected"
    assert setup.alive
    assert row.status == "completed" and row.result == 60
