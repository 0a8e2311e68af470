"""Limits that stop runaway programs: fuel (work done), recursion depth, memory.

Fuel is counted in *ticks*: one per loop iteration and one per call of a
function that may recurse. Counting must be nearly free in native code, so a
tick is `next()` of an `itertools.chain` over `repeat(None, QUANTUM)` blocks:
C code only, no arithmetic in the program's code. Only when a block runs out
does a Python generator run, asking the machine to check the budget and the
memory limit, then handing out the next block. (Keeping Python frames out of
the common path also keeps deep recursion from breaking the counter.)

Memory is approximate ("memory-ish"): the number of objects the process has
allocated since the run started (`sys.getallocatedblocks`), plus a direct
check on `sequence * n` of literal sequences, the one way a single expression
can allocate without bound.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flowmetal.machine.objects import FuelExhausted, MemoryLimitExceeded

if TYPE_CHECKING:
    from flowmetal.machine.machine import Machine

QUANTUM = 1 << 14


@dataclass
class Limits:
    fuel: int | None = 2_000_000_000  # ticks per run() call; None = unlimited
    depth: int = 1000  # call depth, as CPython's default recursion limit
    memory_objects: int | None = 50_000_000  # live objects allocated during a run
    max_sequence: int = 100_000_000  # elements or characters one repetition may create

    def check(self, machine: Machine) -> None:
        ticker = machine.ticks
        ticker.used += QUANTUM
        if self.fuel is not None and ticker.used > self.fuel:
            raise FuelExhausted(f"FuelExhausted: the program used its fuel limit of {self.fuel} steps")
        if self.memory_objects is not None and sys.getallocatedblocks() - ticker.base_blocks > self.memory_objects:
            raise MemoryLimitExceeded(
                f"MemoryLimitExceeded: the program allocated more than {self.memory_objects} objects"
            )


class Ticker:
    def __init__(self, machine: Machine) -> None:
        self.machine = machine
        self.used = 0
        self.base_blocks = 0
        self._broken = False
        self.tick = self._fresh()

    def _fresh(self) -> Any:
        return itertools.chain.from_iterable(_quanta(self)).__next__

    def start(self) -> None:
        """Begin a run: a fresh budget and a fresh memory baseline. The counter itself is
        only replaced if a previous run broke it (replacing it costs every global lookup
        its cache)."""
        self.used = 0
        self.base_blocks = sys.getallocatedblocks()
        if self.machine.aborted is not None or self._broken:
            self._broken = False
            self.tick = self._fresh()
            for cells in self.machine.helper_cells.values():
                cells["_fm_tick"].cell_contents = self.tick


def _quanta(ticker: Ticker) -> Iterator[Iterator[None]]:
    machine = ticker.machine
    while True:
        yield itertools.repeat(None, QUANTUM)
        try:
            machine.check_limits()
        except BaseException as abort:
            machine.aborted = abort
            ticker._broken = True
            raise


def make_ticker(machine: Machine) -> Ticker:
    return Ticker(machine)


def repeat(limits: Limits, a: Any, b: Any) -> Any:
    """`a * b` where one side is a literal sequence: refuse absurd sizes before allocating."""
    seq, n = (a, b) if isinstance(b, int) else (b, a)
    if isinstance(n, int) and not isinstance(n, bool) and isinstance(seq, str | bytes | list | tuple):
        if n > 0 and len(seq) * n > limits.max_sequence:
            raise MemoryLimitExceeded(
                f"MemoryLimitExceeded: a repetition would create {len(seq) * n} items "
                f"(limit {limits.max_sequence})"
            )
    return a * b
