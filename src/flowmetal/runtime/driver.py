"""Advance one program by one *slice*: restore it, deliver what arrived, run it
until it waits on something that has not happened yet, and commit.

A slice commits atomically: the events it produced (effects requested and
answered, messages received, timers fired, output, tasks, the end), a
checkpoint of the machine, the program's new status and wake-up time, and its
outgoing effects (messages to other programs, child programs). Nothing
reaches the outside before that commit — the AMBROSIA rule — so a crash
anywhere in a slice loses nothing and repeats nothing: the slice simply runs
again from the last checkpoint.

Resuming reads the latest checkpoint and only the events after it, so its
cost does not grow with the program's history. When the checkpoint is older
than the log (`checkpoint_every > 1`), the deterministic machine *replays*
the recorded events; a replay that asks for anything different from the
record is a loud `ReplayDiverged` error.

`Runtime` is the store-side half: it starts programs and reads what a slice
needs. Where the slice itself runs is the worker's choice: in this process
(`Runtime.run_slice`, for tests and tools) or — what `flowmetal worker`, `run`
and `serve` do — in supervised executor processes (runtime/executors.py) with
`Runtime(executors=ExecutorSettings(...))`.
"""

from __future__ import annotations

import os
import random as host_random
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flowmetal.errors import CheckFailed, FlowmetalError
from flowmetal.lang.program import Program
from flowmetal.machine.api import Limits, Machine
from flowmetal.machine.tracebacks import error_line
from flowmetal.runtime import deployments
from flowmetal.runtime.arguments import BadArguments, check_arguments, defines_main
from flowmetal.runtime.programdirs import ProgramDirs
from flowmetal.runtime.runner import ReplayDiverged, Runner
from flowmetal.runtime.slice import (
    DEFERRED_CHECKPOINT_SPAN,
    Quotas,
    SliceResult,
    failed_commit,
    internal_error,
    to_json,
)
from flowmetal.store.base import (
    Claim,
    Event,
    NewProgram,
    ProgramRow,
    Store,
    StoreError,
    StoreUnavailable,
    UnknownProgram,
)
from flowmetal.store.operations import DeploymentRow

if TYPE_CHECKING:
    from flowmetal.runtime.executors import ExecutorPool, ExecutorSettings

Clock = Callable[[], float]
DEFAULT_PUBLIC_URL = "http://127.0.0.1:8400"


class StoreFetch:
    """What loading a program reads, straight from the store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def source(self, source_hash: str) -> tuple[str, str]:
        return self.store.source(source_hash)

    def history(self, program_id: str, upto: int) -> tuple[tuple[int, bytes] | None, list[Event]]:
        ck = self.store.checkpoint(program_id, upto)
        after = ck[0] if ck is not None else 1
        return ck, (self.store.events(program_id, after, upto) if upto > after else [])


class Runtime:
    """Runs programs of one store. `clock` is injectable so tests can skip days."""

    def __init__(self, store: Store, *, clock: Clock = time.time, limits: Limits | None = None,
                 checkpoint_every: int = 1, rng: host_random.Random | None = None,
                 reuse_machines: bool = False, public_url: str | None = None, quotas: Quotas | None = None,
                 programs: ProgramDirs | None = None, executors: ExecutorSettings | None = None) -> None:
        self.store = store
        # callback URLs are built from it; recorded in the program's history when issued
        self.public_url = (public_url or os.environ.get("FLOWMETAL_PUBLIC_URL") or DEFAULT_PUBLIC_URL).rstrip("/")
        self.clock = clock
        self.limits = limits
        self.checkpoint_every = max(1, checkpoint_every)
        self.rng = rng or host_random.Random()
        self.quotas = quotas or Quotas()
        # (the commands always name them: --programs, default the current directory)
        self.program_dirs = programs or ProgramDirs(["."], beside_parent=True)
        self.machine_cache_size = 256 if reuse_machines else 0
        self._deployments: dict[tuple[str, int], DeploymentRow] = {}
        self.runner = Runner(limits=limits, cache_size=self.machine_cache_size,
                             max_output=self.quotas.output_per_slice)
        self.fetch = StoreFetch(store)
        self.executors = executors
        self._pool: ExecutorPool | None = None
        self._pool_lock = threading.Lock()

    @property
    def checkpoint_span(self) -> int:
        """Snapshot a program when a slice crosses a multiple of this many events."""
        if self.checkpoint_every == 1 and self.machine_cache_size:
            return DEFERRED_CHECKPOINT_SPAN
        return self.checkpoint_every

    # -- starting -------------------------------------------------------------------
    def start(self, path: str, args: dict[str, Any] | None = None, program_id: str | None = None,
              source: str | None = None) -> str:
        """Create a program (checked first); idempotent when `program_id` is given. `path` may name
        a deployment instead of a file (see runtime/deployments.py): its latest version starts.
        Without `source`, a file `path` is read as given (the caller is trusted; see `read_program`)."""
        if source is None and deployments.is_deployment_name(path):
            return self.start_deployment(path, args, program_id)
        if source is None:
            try:
                source = Path(path).read_text(encoding="utf-8")
            except OSError as e:
                raise FlowmetalError(f"{path}: {e.strerror or e}") from None
            except UnicodeDecodeError as e:
                raise FlowmetalError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
            except ValueError as e:  # e.g. a NUL in the path
                raise FlowmetalError(f"{path!r}: {e}") from None
        program = self.runner.compile(source, path)  # raises CheckFailed
        _check_args(program, source, dict(args or {}), path)  # raises BadArguments: nothing is stored
        pid = program_id or uuid.uuid4().hex[:12]
        self.store.create_program(
            NewProgram(pid, path, source, program.source_hash, dict(args or {})), self.clock())
        return pid

    def start_deployment(self, name: str, args: dict[str, Any] | None = None, program_id: str | None = None,
                         version: int | None = None) -> str:
        """Start a version (default: the latest) of a deployment; idempotent when `program_id` is given."""
        new = self.deployed_program(name, program_id or uuid.uuid4().hex[:12], dict(args or {}), version)
        self.store.create_program(new, self.clock())
        return new.id

    def deployed_program(self, name: str, program_id: str, args: dict[str, Any], version: int | None = None,
                         parent_id: str | None = None) -> NewProgram:
        dep = self.deployment(name, version)
        _, source = self.store.source(dep.source_hash)
        program = self.runner.compile(source, dep.main)  # raises CheckFailed
        _check_args(program, source, args, f"{dep.ref} ({dep.main})")
        return NewProgram(program_id, dep.main, source, dep.source_hash, args, parent_id=parent_id,
                          deployment=dep.ref, retain=dep.retain)

    def deployment(self, name: str, version: int | None = None) -> DeploymentRow:
        """A deployment's version (cached: a version never changes), or its latest."""
        if version is not None and (name, version) in self._deployments:
            return self._deployments[name, version]
        dep = self.store.get_deployment(name, version)
        self._deployments[name, dep.version] = dep
        return dep

    def read_program(self, path: str, what: str = "path") -> tuple[str, str]:
        """(filename, source) of a program named by someone outside (the API's `path`):
        only inside the program directories (ProgramPathError otherwise)."""
        return self.program_dirs.read(path, what=what)

    def program_for(self, row: ProgramRow) -> Program:
        return self.runner.program(self.fetch, row.source_hash)

    # -- what a slice reads (SliceEnv) ------------------------------------------------------
    def program_status(self, program_id: str) -> str | None:
        try:
            return self.store.get_program(program_id).status
        except UnknownProgram:
            return None

    def child(self, parent_id: str, filename: str, deployment: str | None, retain: float | None, path: str,
              child_id: str, args: dict[str, Any]) -> NewProgram:
        """The program `start(path)` in program `parent_id` (its `filename`, `deployment` and
        `retain`) creates: a deployment by name, a program of the parent's own deployment, or a
        file of the program directories. ValueError says why not, quoting no file."""
        try:
            if deployments.is_deployment_name(path):
                return self.deployed_program(path, child_id, args, parent_id=parent_id)
            if deployment is not None:
                name, _, version = deployment.rpartition("@")
                dep = self.deployment(name, int(version))
                target = deployments.resolve(filename, path)
                if target not in dep.files:
                    raise ValueError(f"start(): {path!r} is not part of deployment {dep.ref} "
                                     "(deploy it with the program)")
                _, source = self.store.source(dep.files[target])
                _check_args(self.runner.compile(source, target), source, args, path)
                return NewProgram(child_id, target, source, dep.files[target], args, parent_id=parent_id,
                                  deployment=dep.ref, retain=retain)
            found, source = self.program_dirs.read(path, relative_to=filename)
            program = self.runner.compile(source, found)
            _check_args(program, source, args, path)
            return NewProgram(child_id, found, source, program.source_hash, args, parent_id=parent_id,
                              retain=retain)
        except CheckFailed as e:
            # positions only: the messages could quote the file
            where = ", ".join(f"{d.line}:{d.col}" for d in e.diagnostics if d.severity == "error")
            raise ValueError(f"start(): {path!r} is not a valid program (errors at {where}; "
                             "run `flowmetal check` on it)") from None
        except BadArguments as e:
            raise TypeError(f"start(): {e}") from None
        except StoreUnavailable:
            raise
        except FlowmetalError as e:
            raise ValueError(f"start(): {e}") from None

    def compile(self, source: str, filename: str) -> Program:
        return self.runner.compile(source, filename)

    # -- loading ----------------------------------------------------------------------
    def remember(self, result: SliceResult) -> None:
        """Keep the machine of a committed slice for the program's next slice."""
        self.runner.remember(result)

    def load(self, row: ProgramRow, upto: int | None = None) -> tuple[Machine, int]:
        """The machine at the program's last event (or at `upto`), and that event's number.
        This runs the program's code in this process (a replay): tools only."""
        return self.runner.load(self.fetch, row, upto)

    def describe(self, row: ProgramRow, upto: int | None = None) -> dict[str, Any]:
        """The program's state at event `upto` (default: its latest): {"seq", "tasks", ...}.
        With executors configured the replay runs in one, under the slice budget."""
        from flowmetal.runtime.inspect import describe

        end = row.last_seq if upto is None else upto
        waits = (row.waiting_on or {}).get("waits") if upto is None else None
        if self.executors is not None:
            from flowmetal.runtime.executors import describe_in_executor

            return describe_in_executor(self, self.executors, row, end, waits)
        machine, seq = self.runner.load(self.fetch, row, end)
        return {"seq": seq, **describe(machine, waits)}

    # -- running a slice here -------------------------------------------------------------
    def run_slice(self, claim: Claim, outcomes: dict[str, Any] | None = None) -> SliceResult:
        """One slice of the claimed program, in this process. `outcomes`: results of calls the
        worker performed in process (key -> outcome message), recorded in this slice's commit."""
        started_ns, t0 = time.time_ns(), time.perf_counter()
        row = self.store.get_program(claim.program_id)
        try:
            result = self.runner.run(self, self.fetch, row, claim.fence, self.store.inbox(row.id), outcomes or {},
                                     self.clock())
        except StoreError:
            raise  # not the program's fault: the worker tries again
        except Exception as e:
            # a fault of ours while running the program (formatting, encoding, ...): it would
            # happen again, so the program fails durably instead of staying `running`
            self.runner.forget(row.id)
            result = SliceResult(row.id, "failed", failed_commit(row, claim.fence, internal_error(e)))
        result.stamp(row, started_ns, time.perf_counter() - t0)
        return result

    # -- executor processes ---------------------------------------------------------------
    def pool(self) -> ExecutorPool | None:
        """The executor processes slices run in (started at first use), or None to run here."""
        if self.executors is None:
            return None
        with self._pool_lock:
            if self._pool is None:
                from flowmetal.runtime.executors import ExecutorPool

                self._pool = ExecutorPool(self, self.executors)
            return self._pool

    def close(self) -> None:
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()


__all__ = ["ReplayDiverged", "Runtime", "SliceResult", "error_line", "to_json"]


def _check_args(program: Program, source: str, args: dict[str, Any], where: str) -> None:
    if program.defines_main and not defines_main(source):
        return  # `main` is not a plain top-level def: it binds its arguments when called
    check_arguments(source, args, where)
