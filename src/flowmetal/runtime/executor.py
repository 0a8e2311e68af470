"""An executor process: runs program slices for its worker, and nothing else.

Started by the worker (runtime/executors.py) as `python -I -m
flowmetal.runtime.executor FD`, with the worker's socket as its only
descriptor besides /dev/null. It reads `Init`, loads everything it will need
(warming up the compiler and the machine, so nothing is imported later),
locks itself down (runtime/sandbox.py) and says `Ready`. Then, for each
`RunSlice`, it runs the slice with the machines it keeps, asks the worker for
whatever it lacks (`Ask`: a program's source, its history, another program's
status, a child program's file) and answers `SliceDone` with the commit.

It reads and writes nothing itself: the store, files, sockets and processes
are the worker's. A slice that computes too long is stopped by the worker
killing this process; one that runs out of memory fails its program and
this process exits, to be replaced by a fresh one.
"""

from __future__ import annotations

import gc
import os
import random
import socket
import sys
from typing import Any

import msgspec

from flowmetal.errors import CheckFailed
from flowmetal.runtime import protocol as p
from flowmetal.runtime.inspect import describe
from flowmetal.runtime.runner import Runner
from flowmetal.runtime.slice import (
    MEMORY_MESSAGE,
    Quotas,
    SliceResult,
    failed_commit,
    internal_error,
)
from flowmetal.store.base import Event, NewProgram

# warms up everything a slice can touch, so no module is imported after the lockdown
_WARM_UP = """
import json, math, re
from flowmetal import now, sleep, spawn, wait, http, call, start, receive, send, callback

def helper(x):
    return {"k": [x, x * 2.5, str(x), (x,)], "s": sorted({1, 2})}

def main(n=3):
    print(json.dumps(helper(n)), json.loads("[1]"), math.sqrt(n), re.sub("a+", "b", "caaat"), f"{n:>4}")
    try:
        raise ValueError("x")
    except ValueError as e:
        text = str(e)
    t = now()
    sleep(0)
    return [helper(i) for i in range(n)], text
"""
_ENCODINGS = ("utf_8", "utf_16", "utf_32", "latin_1", "ascii", "idna", "cp1252", "utf_8_sig", "utf_16_le",
              "utf_16_be", "utf_32_le", "utf_32_be", "punycode", "raw_unicode_escape", "unicode_escape")


class Unavailable(BaseException):
    """The worker could not read the store for this slice: abandon it. (BaseExceptions, these
    two: no handler of the slice's own may take them for a program's error.)"""


class LinkLost(BaseException):
    """The worker's socket failed: this process has nothing more to do."""


class WorkerLink:
    """The slice's reads, asked of the worker over the socket (a Fetch and a SliceEnv)."""

    def __init__(self, conn: p.Connection, runner: Runner, init: p.Init) -> None:
        self.conn = conn
        self.runner = runner
        self.public_url = init.public_url
        self.checkpoint_span = init.checkpoint_span
        self.quotas: Quotas = init.quotas
        self.rng = random.Random()

    def ask(self, kind: str, *args: Any) -> Any:
        try:
            self.conn.send(p.Ask(kind, list(args)))
            answer = self.conn.recv()
        except (OSError, EOFError, p.ProtocolError) as e:
            raise LinkLost(str(e)) from None
        if not isinstance(answer, p.Answer):
            raise LinkLost(f"expected an answer, got {type(answer).__name__}")
        if answer.unavailable:
            raise Unavailable(answer.error or "the store is unavailable")
        if answer.error is not None:
            raise (TypeError if answer.error_type == "TypeError" else ValueError)(answer.error)
        return answer.value

    # Fetch
    def source(self, source_hash: str) -> tuple[str, str]:
        filename, source = self.ask("source", source_hash)
        return str(filename), str(source)

    def history(self, program_id: str, upto: int) -> tuple[tuple[int, bytes] | None, list[Event]]:
        ck, events = self.ask("history", program_id, upto)
        return ((int(ck[0]), bytes(ck[1])) if ck is not None else None,
                [Event(program_id, int(seq), str(t), dict(data), float(at)) for seq, t, data, at in events])

    # SliceEnv
    def program_status(self, program_id: str) -> str | None:
        status = self.ask("status", program_id)
        return None if status is None else str(status)

    def child(self, parent_id: str, filename: str, deployment: str | None, retain: float | None, path: str,
              child_id: str, args: dict[str, Any]) -> NewProgram:
        fields = self.ask("child", parent_id, filename, deployment, retain, path, child_id, args)
        return msgspec.convert(fields, NewProgram)


def _warm_up(runner: Runner, link: WorkerLink) -> None:
    import encodings
    import importlib
    import pkgutil

    import flowmetal.lang
    import flowmetal.machine

    for name in _ENCODINGS:
        __import__(f"{encodings.__name__}.{name}")
    # every module of the compiler and the machine, and what they import inside functions: after
    # the lockdown nothing can be read from disk
    for package in (flowmetal.lang, flowmetal.machine):
        for info in pkgutil.iter_modules(package.__path__):
            importlib.import_module(f"{package.__name__}.{info.name}")
    for name in ("urllib.parse", "flowmetal.runtime.inspect", "flowmetal.runtime.secrets"):
        importlib.import_module(name)
    from flowmetal.machine.stdlib import zoneinfo

    zoneinfo.preload()  # the time zones of the tzdata package, read from disk while it can be
    from flowmetal.machine.api import Blocked, Completed, Machine
    from flowmetal.runtime import actions

    program = runner.compile(_WARM_UP, "<warm-up>")
    m = Machine(program, {"n": 3}, limits=runner.limits, host_module=runner.host,
                codec_extensions=actions.register_codec)
    outcome = m.run()
    blocked = 0
    while isinstance(outcome, Blocked):
        blocked += 1
        data = m.snapshot()
        m = Machine.restore(data, host_module=runner.host, limits=runner.limits, program=program,
                            codec_extensions=actions.register_codec)
        for req in outcome.requests:
            m.resolve(req.id, 0.0 if req.name == "now" else None)
        outcome = m.run()
    m.take_output()
    if not isinstance(outcome, Completed) or blocked < 2:  # it must have been through a snapshot
        raise RuntimeError(f"the executor's warm-up program did not run as it should: {outcome}")
    try:
        runner.compile("def main(:\n", "<warm-up-error>")
    except CheckFailed:
        pass
    p.encode(p.SliceDone("x", None, []))
    runner.programs.clear()


def serve(conn: p.Connection, init: p.Init) -> None:
    runner = Runner(limits=init.limits, cache_size=init.cache_size, max_output=init.quotas.output_per_slice)
    link = WorkerLink(conn, runner, init)
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return  # the worker closed the connection: it is stopping
        if isinstance(message, p.RunSlice | p.RunBatch):
            for one in message.slices if isinstance(message, p.RunBatch) else [message]:
                try:
                    done = run_slice(runner, link, one)
                except LinkLost:
                    return
                if not _reply(conn, runner, one, done):
                    return  # out of memory: a fresh process takes over (and the batch's rest)
        elif isinstance(message, p.Inspect):
            try:
                conn.send(_describe(runner, link, message))
            except LinkLost:
                return
        elif isinstance(message, p.RunHost):
            conn.send(p.HostDone(_run_host(message.source) if init.test_hook else "refused: no test hook"))
        else:
            raise p.ProtocolError(f"unexpected {type(message).__name__}")


def _reply(conn: p.Connection, runner: Runner, job: p.RunSlice, done: p.SliceDone) -> bool:
    """Send a slice's SliceDone; whether this process goes on (not when it ran out of memory)."""
    try:
        conn.send(done)
    except MemoryError:
        runner.machines.clear()
        gc.collect()
        conn.send(p.SliceDone("failed", failed_commit(job.row, job.fence, MEMORY_MESSAGE), [], replace=True))
        return False
    except UnicodeEncodeError as e:
        # text no store can hold (a lone surrogate, as CPython's print would refuse it too): the
        # program fails saying so, instead of this process dying over it twice
        runner.forget(job.row.id)
        bad = e.object[e.start:e.end] if isinstance(e.object, str) else ""
        conn.send(p.SliceDone("failed", failed_commit(job.row, job.fence, (
            f"UnicodeEncodeError: the program recorded text that cannot be stored as UTF-8 ({bad!r}: {e.reason})")),
            []))
    return not done.replace


def run_slice(runner: Runner, link: WorkerLink, job: p.RunSlice) -> p.SliceDone:
    row = job.row
    if not job.use_cache:
        runner.forget(row.id)
    link.rng.seed(job.seed)
    try:
        result = runner.run(link, link, row, job.fence, job.inbox, job.outcomes, job.now)
    except Unavailable:
        runner.forget(row.id)
        return p.SliceDone("running", None, [], unavailable=True)
    except MemoryError:
        runner.machines.clear()
        gc.collect()
        return p.SliceDone("failed", failed_commit(row, job.fence, MEMORY_MESSAGE), [], replace=True)
    except Exception as e:
        runner.forget(row.id)
        result = SliceResult(row.id, "failed", failed_commit(row, job.fence, internal_error(e)))
    if result.out_of_memory:
        runner.machines.clear()
    else:
        runner.remember(result)  # the worker says with the next slice whether it committed
    return p.SliceDone(result.status, result.commit, result.output, replace=result.out_of_memory, late=result.late)


def _describe(runner: Runner, link: WorkerLink, message: p.Inspect) -> p.Described:
    try:
        machine, seq = runner.load(link, message.row, message.upto)
        return p.Described({"seq": seq, **describe(machine, message.waits)})
    except (LinkLost, Unavailable):
        raise
    except Exception as e:
        return p.Described(error=f"{type(e).__name__}: {e}")


def _run_host(source: str) -> Any:
    scope: dict[str, Any] = {}
    try:
        exec(source, scope)
    except BaseException as e:
        return f"raised {type(e).__name__}: {e}"
    return scope.get("result")


def main(argv: list[str]) -> None:
    fd = int(argv[1])
    sock = socket.socket(fileno=fd)
    conn = p.from_worker(sock)
    init = conn.recv()
    if not isinstance(init, p.Init) or init.version != p.PROTOCOL:
        sys.exit(f"flowmetal executor: protocol {p.PROTOCOL}, the worker speaks {getattr(init, 'version', '?')}")
    from flowmetal.runtime import sandbox

    runner = Runner(limits=init.limits, cache_size=0)
    _warm_up(runner, WorkerLink(conn, runner, init))
    layers = sandbox.lock_down(init.memory_limit, init.harden, fd)
    sandbox.die_with_parent(init.parent_pid)  # after the user change, which would reset it
    gc.collect()
    gc.freeze()  # what start-up made is never garbage: later collections skip it
    conn.send(p.Ready(p.PROTOCOL, os.getpid(), layers))
    serve(conn, init)


if __name__ == "__main__":
    main(sys.argv)
