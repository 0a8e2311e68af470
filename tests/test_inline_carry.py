"""A program whose calls the worker performs in its own process goes on from what its last
commit wrote, without reading its row and inbox again (Worker._carry_forward) — for a short
while only, and not once the store has woken the worker. So a message or a cancel that comes
while such a program makes call after call must still reach it: without that bound it would
call for ever. Real `flowmetal worker` processes, on both stores."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from flowmetal import Client
from flowmetal.client import ProgramHandle

PROGRAM = '''\
from flowmetal import call, receive, spawn

stopped = None


def listen():
    global stopped
    stopped = receive("stop")


def main():
    spawn(listen)
    n = 0
    while stopped is None:
        n = call("step", n)
    return [stopped, n > 0]
'''

FUNCTIONS = '''\
import flowmetal


@flowmetal.function("step")
def step(ctx, n):
    return n + 1
'''


def _worker(url: str, cwd: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "flowmetal", "worker", "--store", url, "--functions", "fns.py",
                             "--concurrency", "8", *extra], cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def _stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return err


def _calls_made(client: Client, program_id: str, at_least: int, within: float = 60.0) -> None:
    end = time.monotonic() + within
    while len(client.history(program_id)) < at_least * 2:
        assert time.monotonic() < end, "the program did not make its calls"
        time.sleep(0.05)


@pytest.fixture
def setup(backend: str, store_url_factory: Callable[[str], str], tmp_path: Path) -> tuple[str, Path]:
    url = store_url_factory(backend)
    if backend == "sqlite":  # a short path: the wake-up sockets go next to the file
        url = f"sqlite:///{tmp_path / 's.db'}"
    (tmp_path / "p.flow").write_text(PROGRAM)
    (tmp_path / "fns.py").write_text(FUNCTIONS)
    return url, tmp_path


@contextlib.contextmanager
def _looping(setup: tuple[str, Path]) -> Iterator[tuple[Client, ProgramHandle]]:
    """A worker, and the looping program once it has made 50 calls; the worker's log checked after."""
    url, cwd = setup
    client = Client(url)
    worker = _worker(url, cwd)
    try:
        h = client.start(str(cwd / "p.flow"), id="looping")
        _calls_made(client, h.id, 50)
        yield client, h
    finally:
        err = _stop(worker)
    assert "Traceback" not in err, err


@pytest.mark.parametrize("notify", [True, False], ids=["woken", "unwoken"])
def test_a_message_reaches_a_program_making_call_after_call(setup: tuple[str, Path], notify: bool) -> None:
    with _looping(setup) as (client, h):
        if notify:
            client.send(h.id, "please", channel="stop")
        else:  # the message without the store's wake-up (as if it were lost): only the bound helps
            client.store.send(h.id, "stop", "please", time.time())
        assert h.result(timeout=60) == ["please", True]


def test_a_cancel_reaches_a_program_making_call_after_call(setup: tuple[str, Path]) -> None:
    with _looping(setup) as (client, h):
        client.cancel(h.id)
        end = time.monotonic() + 60
        while h.status() not in ("cancelled", "completed", "failed"):
            assert time.monotonic() < end, f"still {h.status()} a minute after the cancel"
            time.sleep(0.05)
        assert h.status() == "cancelled"
