"""The reads a program makes without waiting — the clock (`datetime.now()`, `time.time()`) and a
fresh random seed (the first `random.random()`, `uuid.uuid4()`) — answered by the slice and
recorded, each as a `read` event, in the program's log; a replay answers them from the record.

Standard modules ask through `machine.reads` (machine/stdlib/context.py); the slice sets a
`LiveReads` before it runs the machine, a replay a `ReplayReads` with the reads the record holds
for that run. A replay asking for a read the record does not have (or another one) is
`ReadDiverged`, which ends the run, and the replay reports the divergence.
"""

from __future__ import annotations

import random
from typing import Any

from flowmetal.machine.objects import MachineAbort
from flowmetal.machine.stdlib.context import ReadDiverged

__all__ = ["LiveReads", "ReplayReads", "TooManyReads"]


class TooManyReads(MachineAbort):
    """A slice read the clock more often than it may record events (a loop waiting for the clock
    to move, which it never does within a slice): the program fails."""


_ROOM = 100  # events left to the slice after the reads (its output, the program's end)


class LiveReads:
    """A slice's answers: its clock (one time for the whole slice, as `now()` has) and seeds from
    its random source, each recorded through `record(what, value)`."""

    def __init__(self, now: float, rng: random.Random, events: list[tuple[str, dict[str, Any]]], limit: int) -> None:
        self._now = now
        self._rng = rng
        self._events = events  # the slice's events (appended here directly: see `_record`)
        self._limit = limit - _ROOM

    def _record(self, what: str, value: Any) -> None:
        # not through `Slice.event`: its quota error must not cross the program's frames
        if len(self._events) >= self._limit:
            raise TooManyReads(f"QuotaExceeded: the program recorded more than {self._limit} reads in one slice "
                               f"without waiting (it read {what} in a loop: the clock does not move within a "
                               "slice; sleep() to let time pass)")
        self._events.append(("read", {"what": what, "value": value}))

    def now(self, what: str) -> float:
        self._record(what, self._now)
        return self._now

    def seed(self, what: str) -> str:
        value = f"{self._rng.getrandbits(128):032x}"
        self._record(what, value)
        return value


class ReplayReads:
    """The recorded answers of one run, handed out in order."""

    def __init__(self, program_id: str, reads: list[tuple[int, dict[str, Any]]]) -> None:
        self.program_id = program_id
        self.reads = reads
        self.taken = 0

    def _next(self, what: str, kind: Any) -> Any:
        if self.taken >= len(self.reads):
            raise ReadDiverged(f"{self.program_id}: replay read {what}, which the record does not have")
        seq, data = self.reads[self.taken]
        if data.get("what") != what or not isinstance(data.get("value"), kind):
            raise ReadDiverged(f"{self.program_id}: event {seq}: the record read {data.get('what')}, "
                               f"replay read {what}")
        self.taken += 1
        return data["value"]

    def now(self, what: str) -> float:
        return float(self._next(what, int | float))

    def seed(self, what: str) -> str:
        return str(self._next(what, str))

    @property
    def left(self) -> int:
        return len(self.reads) - self.taken
