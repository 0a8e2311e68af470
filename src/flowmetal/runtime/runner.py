"""What every process that runs slices keeps: compiled programs (by source hash)
and, between slices, the machines of the programs it ran last; and how a
machine is brought to a program's latest event — from the machine kept here,
or from the latest checkpoint plus a replay of the events recorded after it.

The replay re-runs the deterministic machine through the recorded events; a
replay that asks for anything different from the record is a loud
`ReplayDiverged` error, and the program fails.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from typing import Any, Protocol

from flowmetal.errors import CheckFailed, FlowmetalError, SnapshotError
from flowmetal.lang.program import Program, compile_cached
from flowmetal.machine.api import Blocked, Completed, Failed, Limits, Machine
from flowmetal.machine.machine import NO_READS
from flowmetal.machine.stdlib.context import ReadDiverged
from flowmetal.runtime import actions
from flowmetal.runtime.reads import ReplayReads
from flowmetal.runtime.slice import (
    Slice,
    SliceEnv,
    SliceResult,
    failed_commit,
    rebuild_error,
    revive,
    to_json,
)
from flowmetal.store.base import FINISHED, Event, InboxMessage, ProgramRow

# what running the machine records (everything else in a log is a request or an answer)
RUN_PRODUCTS = ("read", "output", "task_spawned", "task_finished")


class ReplayDiverged(FlowmetalError):
    """Re-running a program did not reproduce its recorded history."""


class Fetch(Protocol):
    """What loading a program reads from the store."""

    def source(self, source_hash: str) -> tuple[str, str]:
        """(filename, source) of a program's source."""

    def history(self, program_id: str, upto: int) -> tuple[tuple[int, bytes] | None, list[Event]]:
        """The latest checkpoint at or before `upto` (seq, state), and the events after it up
        to `upto`."""


class Runner:
    """Compiled programs and kept machines of one process, and the slices it runs."""

    def __init__(self, *, limits: Limits | None = None, cache_size: int = 0, max_output: int | None = None) -> None:
        # the machine refuses output past the slice's quota as it is printed, before it piles up
        self.limits = dataclasses.replace(limits or Limits(), max_output=max_output) if max_output else limits
        self.host = actions.host_module()
        self.programs: dict[str, Program] = {}
        # machines whose last slice committed: the next slice can skip the checkpoint read
        # and the restore (the program's last_seq checks that nothing else ran it since)
        self.machines: OrderedDict[str, tuple[int, Machine]] = OrderedDict()
        self.cache_size = cache_size

    def compile(self, source: str, filename: str) -> Program:
        program = compile_cached(source, filename)  # raises CheckFailed
        self.programs[program.source_hash] = program
        return program

    def program(self, fetch: Fetch, source_hash: str) -> Program:
        program = self.programs.get(source_hash)
        if program is None:
            filename, source = fetch.source(source_hash)
            program = self.compile(source, filename)
            self.programs[source_hash] = program
        return program

    def remember(self, result: SliceResult) -> None:
        """Keep the machine of a committed slice for the program's next slice."""
        c = result.commit
        if (c is None or result.machine is None or c.status in FINISHED or c.restart_args is not None
                or not self.cache_size):
            self.machines.pop(result.program_id, None)
            return
        self.machines[result.program_id] = (c.base_seq + len(c.events), result.machine)
        self.machines.move_to_end(result.program_id)
        while len(self.machines) > self.cache_size:
            self.machines.popitem(last=False)

    def forget(self, program_id: str) -> None:
        self.machines.pop(program_id, None)

    def load(self, fetch: Fetch, row: ProgramRow, upto: int | None = None) -> tuple[Machine, int]:
        """The machine at the program's last event (or at `upto`), and that event's number."""
        if upto is None:
            cached = self.machines.pop(row.id, None)
            if cached is not None and cached[0] == row.last_seq:
                return cached[1], row.last_seq
        program = self.program(fetch, row.source_hash)
        end = upto if upto is not None else row.last_seq
        ck, events = fetch.history(row.id, end)
        if ck is not None:
            seq, data = ck
            machine = Machine.restore(data, host_module=self.host, limits=self.limits, program=program,
                                      codec_extensions=actions.register_codec)
        else:
            seq = 1
            machine = Machine(program, row.args, limits=self.limits, host_module=self.host,
                              codec_extensions=actions.register_codec)
        if end > seq:
            replay(row.id, machine, [e for e in events if seq < e.seq <= end])
            seq = end
        return machine, seq

    def run(self, env: SliceEnv, fetch: Fetch, row: ProgramRow, fence: int, inbox: list[InboxMessage],
            outcomes: dict[str, Any], now: float) -> SliceResult:
        """One slice of the program in `row` (claimed with `fence`)."""
        if row.status in FINISHED:
            return SliceResult(row.id, row.status, None)
        try:
            machine, _ = self.load(fetch, row)
            return Slice(env, row, fence, machine, inbox, outcomes, now).run()
        except (CheckFailed, ReplayDiverged, SnapshotError) as e:
            # permanent: retrying cannot help, so the program fails loudly (its log is kept)
            return SliceResult(row.id, "failed", failed_commit(row, fence, f"{type(e).__name__}: {e}"))


def replay(program_id: str, machine: Machine, events: list[Event]) -> None:
    """Re-run the machine through recorded events exactly as the slices ran it: each run's
    products (output, task moves, new requests) are checked against the record, and the
    answers recorded between two runs (a slice answers every due wait before it runs the
    machine again) are all delivered before the next run — one by one, tasks could be
    scheduled in another order than they were."""
    queue = events
    i = 0
    if queue and queue[0].type == "cancel_requested":  # cancelled at the start of a slice
        i = _replay_cancel(program_id, machine, queue, 0)
    while i < len(queue):
        if queue[i].data.get("stopped"):
            return  # the program was stopped (a budget, a quota): running on would redo what stopped it
        # the reads this run made (the clock, seeds), recorded among its products
        reads = ReplayReads(program_id, [(e.seq, e.data) for e in _products(queue, i) if e.type == "read"])
        machine.reads = reads
        outcome = machine.run()
        machine.reads = NO_READS
        if isinstance(outcome, Failed) and isinstance(outcome.error, ReadDiverged):
            raise ReplayDiverged(str(outcome.error))
        if reads.left:
            raise ReplayDiverged(f"{program_id}: replay made {reads.taken} reads, the record has {len(reads.reads)}")
        text = machine.take_output()
        while i < len(queue) and queue[i].type in RUN_PRODUCTS:
            if queue[i].type == "output":
                expected = queue[i].data["text"]
                if not text.startswith(expected):
                    raise ReplayDiverged(f"{program_id}: event {queue[i].seq}: replay printed {text[:60]!r}, "
                                         f"the record says {expected[:60]!r}")
                text = text[len(expected):]
            i += 1
        if text:
            raise ReplayDiverged(f"{program_id}: replay printed {text[:60]!r}, which the record does not have")
        if isinstance(outcome, Completed | Failed):
            if i < len(queue) and queue[i].type not in ("completed", "failed", "cancelled"):
                raise ReplayDiverged(f"{program_id}: replay ended at event {queue[i].seq} ({queue[i].type})")
            return
        assert isinstance(outcome, Blocked)
        pending = {r.id: r for r in outcome.requests}
        progressed = False
        while i < len(queue):
            ev = queue[i]
            req_id = int(ev.data.get("request") or 0)
            if ev.type == "effect_requested":
                req = pending.get(req_id)
                if req is None:
                    break  # asked by the next run
                if req.name != ev.data["kind"] or to_json(list(req.args)) != ev.data["args"]:
                    raise ReplayDiverged(f"{program_id}: event {ev.seq}: the record says "
                                         f"{ev.data['kind']}{ev.data['args']}, replay asked for "
                                         f"{req.name}{to_json(list(req.args))}")
                i += 1
                continue
            if ev.type == "cancel_requested":
                i = _replay_cancel(program_id, machine, queue, i)
                progressed = True
                continue
            if ev.type == "effect_completed":
                kind = pending[req_id].name if req_id in pending else ""
                machine.resolve(req_id, revive(kind, ev.data.get("result")))
            elif ev.type in ("message_received", "timer_fired"):
                machine.resolve(req_id, ev.data.get("message"))
            elif ev.type == "effect_failed":
                machine.reject(req_id, rebuild_error(ev.data["error"]))
            elif ev.type in RUN_PRODUCTS or ev.type in ("completed", "failed", "cancelled"):
                break  # what the next run made
            else:
                raise ReplayDiverged(f"{program_id}: unexpected event {ev.seq} ({ev.type}) during replay")
            i += 1
            progressed = True
        if not progressed and i < len(queue) and queue[i].type not in RUN_PRODUCTS:
            raise ReplayDiverged(f"{program_id}: replay stalled at event {queue[i].seq} ({queue[i].type})")

def _products(queue: list[Event], i: int) -> list[Event]:
    """The products of the run whose first event is `queue[i]`."""
    j = i
    while j < len(queue) and queue[j].type in RUN_PRODUCTS:
        j += 1
    return queue[i:j]


def _replay_cancel(program_id: str, machine: Machine, queue: list[Event], i: int) -> int:
    """Replay a cancellation as `_Slice.run` made it: `Cancelled` recorded for every pending
    request, then the machine cancelled (which also wakes tasks blocked on other tasks)."""
    i += 1
    for req_id in sorted(machine.pending):
        ev = queue[i] if i < len(queue) else None
        if ev is None or ev.type != "effect_failed" or int(ev.data.get("request") or 0) != req_id:
            raise ReplayDiverged(f"{program_id}: replaying a cancellation expected request {req_id} to fail, "
                                 f"the record has {ev.type if ev else 'nothing'}")
        i += 1
    machine.cancel()
    return i

