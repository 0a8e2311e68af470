"""Forking a program: a new program from another's state at an earlier event — to try
a different message, or to debug a path not taken (`flowmetal fork`, the console).

The fork's history is the original's events 1..SEQ (its `started` event notes
`forked_from`) followed by its own. What the original was waiting for at SEQ starts
over in the fork: on its first slice each pending request is recorded again as a
new `effect_requested` event with the same request number (so a request may appear
twice in the fork's log, once before the fork point and once after it) and its
wait restarts then: a `sleep()` sleeps its full time again, a `receive()` timeout
counts from the fork. Children the original started are not forked: a fork waiting
on one of them never hears from it (`Forked.children` names them, to warn).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, replace
from typing import Any

from flowmetal.errors import UsageError
from flowmetal.runtime.driver import Runtime
from flowmetal.store.base import InboxMessage, ProgramDump, ProgramRow, Store

_ENDS = ("completed", "failed", "cancelled")


@dataclass
class Forked:
    id: str
    children: list[str]  # programs the original had started by the fork point (not forked)


def fork_program(store: Store, program_id: str, at_seq: int, messages: list[Any] | None = None,
                 channel: str = "inbox", new_id: str | None = None) -> Forked:
    """Start a fork of `program_id` at event `at_seq` with `messages` queued on `channel`."""
    row = store.get_program(program_id)
    if not 1 <= at_seq <= row.last_seq:
        raise UsageError(f"--at must be between 1 and {row.last_seq} (the events of program {program_id})")
    events = store.events(program_id, 0, at_seq)
    if events[-1].type in _ENDS:
        raise UsageError(f"event {at_seq} of program {program_id} is its end ({events[-1].type}): "
                         "fork at an earlier event")
    machine, _ = Runtime(store).load(row, upto=at_seq)
    state = machine.snapshot()
    children = [f"{program_id}.{e.data['request']}" for e in events
                if e.type == "effect_requested" and e.data.get("kind") == "start"]
    _, source = store.source(row.source_hash)

    fork_id = new_id or f"{program_id}-fork-{uuid.uuid4().hex[:6]}"
    now = time.time()
    copied = [replace(e, program_id=fork_id) for e in events]
    # the fork is nobody's child (its end must not message the original's parent); its first event
    # says where it came from
    copied[0] = replace(copied[0], data={**copied[0].data, "parent": None,
                                         "forked_from": {"program": program_id, "seq": at_seq}})
    new_row = ProgramRow(id=fork_id, filename=row.filename, source_hash=row.source_hash, status="running",
                         args=row.args, last_seq=at_seq, created_at=now, updated_at=now, runnable=True)
    # no waits: its first slice issues the machine's pending requests anew (see the module docstring)
    inbox = [InboxMessage(i, channel, v) for i, v in enumerate(messages or [], start=1)]
    store.import_program(ProgramDump(new_row, source, copied, (at_seq, state), inbox, [], []), now)
    store.notify()
    return Forked(fork_id, children)
