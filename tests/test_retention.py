"""Retention with real processes: `flowmetal prune` deletes everything of the pruned programs and
nothing else (counted per table) while a `flowmetal worker` keeps running other programs, on
SQLite and PostgreSQL; and a worker started with `--retain` prunes by itself."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from cli_checks import kill_all, wait_for
from flowmetal.client import Client
from flowmetal.store import open_store
from flowmetal.store.base import Store
from flowmetal.store.operations import PROGRAM_TABLES

QUICK = '''from flowmetal import callback, sleep

def main(n=0):
    cb = callback()
    sleep(0.01)
    print("done", n)
    return n
'''
BUSY = '''from flowmetal import sleep

def main(n=0, rounds=30):
    total = 0
    for i in range(rounds):
        sleep(0.1)
        total = total + i
    return total + n
'''
WAITING = '''from flowmetal import callback, receive

def main():
    cb = callback()
    return receive()
'''


def rows_of(store: Store, program_id: str) -> dict[str, int]:
    """How many rows of each table belong to the program."""
    dump = store.export_program(program_id)
    checkpoints, seq = 0, None
    while (ck := store.checkpoint(program_id, seq)) is not None:  # a dump carries only the latest
        checkpoints, seq = checkpoints + 1, ck[0] - 1
    return {"events": len(dump.events), "checkpoints": checkpoints, "inbox": len(dump.inbox),
            "calls": len(dump.calls), "call_attempts": len(store.list_attempts(program_id)),
            "callbacks": len(dump.callbacks), "programs": 1}


def fm(store_url: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "flowmetal", *args, "--store", store_url]


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_prune_removes_exactly_the_pruned_programs_while_a_worker_runs(
        backend: str, store_url_factory: Callable[[str], str], tmp_path: Path) -> None:
    url = store_url_factory(backend)
    for name, text in (("quick.flow", QUICK), ("busy.flow", BUSY), ("waiting.flow", WAITING)):
        (tmp_path / name).write_text(text)
    client = Client(url)
    store = client.store
    procs: list[subprocess.Popen[str]] = []
    try:
        worker = subprocess.Popen(fm(url, "worker", "--concurrency", "8"), cwd=tmp_path,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        procs.append(worker)
        old = [client.start(str(tmp_path / "quick.flow"), {"n": i}, id=f"old-{i}").id for i in range(25)]
        waiting = [client.start(str(tmp_path / "waiting.flow"), {}, id=f"waiting-{i}").id for i in range(3)]
        wait_for(lambda: all(store.get_program(p).status == "completed" for p in old)
                 and all(store.get_program(p).status == "waiting" for p in waiting), timeout=60)
        doomed = {p: rows_of(store, p) for p in old}
        kept = {p: rows_of(store, p) for p in waiting}
        # the worker is busy with other programs while the prune runs (they end long after it)
        busy = [client.start(str(tmp_path / "busy.flow"), {"n": i}, id=f"busy-{i}").id for i in range(6)]
        wait_for(lambda: all(store.get_program(p).last_seq > 4 for p in busy), timeout=30)
        r = subprocess.run(fm(url, "prune", "--older-than", "0s", "--status", "completed", "--batch", "7",
                              "--json"), cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        report = json.loads(r.stdout)
        assert report == {t: sum(rows[t] for rows in doomed.values()) for t in PROGRAM_TABLES}
        assert report["programs"] == 25 and report["callbacks"] == 25 and report["events"] > 100
        assert all(store.get_program(p).status in ("running", "waiting") for p in busy), \
            "the busy programs were meant to outlive the prune"
        for p in old:
            assert store.events(p) == [] and store.inbox(p) == [] and store.checkpoint(p) is None
            assert store.list_calls(p) == []
        assert {p: rows_of(store, p) for p in waiting} == kept
        assert sorted(r.id for r in store.list_programs()) == sorted(busy + waiting)
        # the worker ran on undisturbed: every busy program ends with its whole history
        for i, p in enumerate(busy):
            assert client.result(p, timeout=60) == sum(range(30)) + i
            events = store.events(p)
            assert [e.seq for e in events] == list(range(1, len(events) + 1))
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
        assert "Traceback" not in (worker.stderr.read() if worker.stderr else "")
    finally:
        kill_all(procs)
        store.close()


def test_a_worker_with_retain_prunes_by_itself(tmp_path: Path) -> None:
    (tmp_path / "quick.flow").write_text(QUICK)
    (tmp_path / "waiting.flow").write_text(WAITING)
    url = f"sqlite:///{tmp_path / 'fm.db'}"
    client = Client(url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWMETAL_")}
    worker = subprocess.Popen(fm(url, "worker", "--retain", "1s"), cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        done = [client.start(str(tmp_path / "quick.flow"), {"n": i}).id for i in range(5)]
        live = client.start(str(tmp_path / "waiting.flow"), {}).id
        wait_for(lambda: [r.id for r in client.store.list_programs()] == [live], timeout=30)
        assert client.store.get_program(live).status == "waiting"
        assert all(client.store.events(p) == [] for p in done)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
    finally:
        kill_all([worker])
        open_store(url).close()
