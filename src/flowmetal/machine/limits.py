"""Limits that stop runaway programs: fuel (work done), recursion depth, memory.

Fuel is counted in *ticks*: one per loop iteration, one per iteration of a
comprehension or generator expression, one per call of a function that may
recurse, and one per element a built-in consumes or creates (`sum(xs)`,
`list(range(n))`, `sorted(xs)`: charged up front when the size is known, one
element at a time otherwise). Counting must be nearly free in native code, so a
tick is `next()` of an `itertools.chain` over `repeat(None, QUANTUM)` blocks: C
code only, no arithmetic in the program's code. Only when a block runs out does
a Python generator run, asking the machine to check the budget and the memory
limit, then handing out the next block. Once a limit is hit, the chain hands out
an iterator that raises the same abort at every tick, so nothing (not even a
`finally` block's loop) runs on past it.

Memory is bounded three ways: the executor process runs under an address-space
limit (an allocation beyond it raises the host's MemoryError, which no program
can catch: see `runtime_builtins.guard`); single operations whose result can
be far larger than their operands (`**`, `<<`, `pow`, `math.factorial` and
friends, repetition of literal sequences, `str.ljust` and friends) check the
size before allocating; and the number of objects allocated in a run is
checked at every fuel quantum (`sys.getallocatedblocks`).
"""

from __future__ import annotations

import itertools
import math
import operator
import sys
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flowmetal.machine.objects import FuelExhausted, MemoryLimitExceeded

if TYPE_CHECKING:
    from flowmetal.machine.machine import Machine

QUANTUM = 1 << 14
DEFAULT_FUEL = 30_000_000  # about 2 s of a plain loop on a 2020s core: see docs/language.md#limits


@dataclass
class Limits:
    fuel: int | None = DEFAULT_FUEL  # ticks per run() call (one slice); None = unlimited
    depth: int = 1000  # call depth, as CPython's default recursion limit
    memory_objects: int | None = 50_000_000  # live objects allocated during a run
    max_sequence: int = 100_000_000  # elements or characters one operation may create
    max_int_bits: int = 100_000_000  # bits of an integer one operation may create (~30 million digits)
    max_output: int | None = None  # characters printed before the host takes the output

    def check(self, machine: Machine) -> None:
        ticker = machine.ticks
        ticker.used += QUANTUM
        self.check_fuel(ticker.used)
        if self.memory_objects is not None and sys.getallocatedblocks() - ticker.base_blocks > self.memory_objects:
            raise MemoryLimitExceeded(
                f"MemoryLimitExceeded: the program allocated more than {self.memory_objects} objects"
            )

    def check_fuel(self, used: int) -> None:
        if self.fuel is not None and used > self.fuel:
            raise FuelExhausted(f"FuelExhausted: the program used its fuel limit of {self.fuel} steps")


# The limits of the machine running now (`Machine.run` sets them): operations that do not
# know their machine (a shared module's function, a method of a built-in type) read them here.
ACTIVE: list[Limits] = [Limits()]


def set_active(limits: Limits) -> None:
    ACTIVE[0] = limits


def active_ticker() -> Ticker | None:
    """The fuel counter of the machine running now (`Ticker.start` sets it), for module functions
    shared by every machine that consume a program's iterable in C (`functools.reduce`, ...)."""
    return _ACTIVE_TICKER[0]


class Ticker:
    def __init__(self, machine: Machine) -> None:
        self.machine = machine
        self.used = 0
        self.base_blocks = 0
        self._broken = False
        self.pending: BaseException | None = None
        self.chain = self._fresh()
        self.tick = self.chain.__next__

    def _fresh(self) -> Iterator[None]:
        return itertools.chain.from_iterable(_quanta(self))

    def start(self) -> None:
        """Begin a run: a fresh budget and a fresh memory baseline. The counter itself is
        only replaced if a previous run broke it (replacing it costs every global lookup
        its cache)."""
        self.used = 0
        self.base_blocks = sys.getallocatedblocks()
        _ACTIVE_TICKER[0] = self
        if self.machine.aborted is not None or self._broken:
            self._broken = False
            self.chain = self._fresh()
            self.tick = self.chain.__next__
            for cells in self.machine.helper_cells.values():
                cells["_fm_tick"].cell_contents = self.tick
                cells["_fm_ticks"].cell_contents = self.chain

    def charge(self, n: int) -> None:
        """`n` elements' worth of work done in one step (a built-in consuming a sized value)."""
        self.used += n
        try:
            self.machine.limits.check_fuel(self.used)
        except BaseException as abort:
            self._abort(abort)
            raiser = _raiser(abort)  # every later tick raises it too (the chain, at its next block)
            for cells in self.machine.helper_cells.values():
                cells["_fm_tick"].cell_contents = lambda: raiser(None)
            raise

    def counted(self, iterable: Any) -> Iterator[Any]:
        """`iterable`, with one tick per element taken from it (all in C)."""
        return map(operator.itemgetter(1), zip(self.chain, iterable))

    def consume(self, iterable: Any) -> Any:
        """What a built-in about to consume `iterable` in C gets: the value itself once its
        size is charged, or (size unknown) an iterator that ticks per element."""
        t = type(iterable)
        if t in SIZED:
            self.charge(len(iterable))
            return iterable
        if t in SELF_COUNTING:  # a generator expression's iterations tick already
            return iterable
        return self.counted(iter(iterable))

    def materialize(self, iterable: Any) -> Any:
        """Like `consume`, for a built-in that keeps every element (`list(x)`, `sorted(x)`):
        a known size beyond the limit is refused before anything is allocated."""
        t = type(iterable)
        if t in SIZED or t is int:
            n = iterable if t is int else len(iterable)
            limit = self.machine.limits.max_sequence
            if n > limit:
                raise MemoryLimitExceeded(f"MemoryLimitExceeded: the result would have {n} items (limit {limit})")
        if t is int:
            self.charge(iterable)
            return iterable
        return self.consume(iterable)

    def _abort(self, abort: BaseException) -> None:
        self.machine.aborted = abort
        self._broken = True
        self.pending = abort


def _quanta(ticker: Ticker) -> Iterator[Iterator[Any]]:
    machine = ticker.machine
    while True:
        yield itertools.repeat(None, QUANTUM)
        pending = ticker.pending
        if pending is None:
            try:
                machine.check_limits()
                continue
            except BaseException as abort:
                ticker._abort(abort)
                pending = abort
        ticker.pending = None
        # From now on every tick raises the abort (the chain keeps this iterator active).
        yield map(_raiser(pending), itertools.repeat(None))
        return


def _raiser(abort: BaseException) -> Callable[[Any], Any]:
    def raise_it(_: Any) -> Any:
        raise abort

    return raise_it


_ACTIVE_TICKER: list[Ticker | None] = [None]


def make_ticker(machine: Machine) -> Ticker:
    return Ticker(machine)


SIZED: set[type] = {list, tuple, str, bytes, dict, range}  # plus Flowmetal's sets and views (register_sized)
SELF_COUNTING: set[type] = {types.GeneratorType}  # plus Flowmetal's resumable generators


def register_sized(*types: type) -> None:
    SIZED.update(types)


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


# -- integers that would not fit ------------------------------------------------------


def _too_many_bits(limits: Limits, bits: int, what: str) -> None:
    if bits > limits.max_int_bits:
        raise MemoryLimitExceeded(
            f"MemoryLimitExceeded: {what} would create an integer of about {bits} bits "
            f"(limit {limits.max_int_bits})"
        )


def power(base: Any, exp: Any, mod: Any = None) -> Any:
    """`base ** exp` and `pow(base, exp[, mod])`, refusing integers too large to hold."""
    limits = ACTIVE[0]
    if mod is None and type(exp) is int and exp > 64 and isinstance(base, int) and abs(base) > 1:
        _too_many_bits(limits, (abs(base).bit_length() - 1) * exp, f"{base!r:.20} ** {exp}")
    if mod is None:
        return base**exp
    return pow(base, exp, mod)


def lshift(a: Any, b: Any) -> Any:
    """`a << b`, refusing integers too large to hold."""
    limits = ACTIVE[0]
    if type(b) is int and b > 64 and isinstance(a, int) and a:
        _too_many_bits(limits, abs(a).bit_length() + b, f"<< {b}")
    return a << b


def factorial_bits(n: int) -> int:
    """An upper bound on the bits of n! (Stirling, rounded up)."""
    return int(n * math.log2(max(n, 2))) + 64


def checked_math(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """`math.factorial`, `math.comb` and `math.perm`, refusing results too large to hold."""

    def checked(*args: Any) -> Any:
        n = args[0] if args else None
        if type(n) is int and n > 10_000:
            if name == "factorial":
                bits = factorial_bits(n)
            else:
                k = args[1] if len(args) > 1 else n
                k = min(k, n - k) if name == "comb" and type(k) is int else k
                bits = int(k * math.log2(n)) + 64 if type(k) is int and k > 0 else 0
            _too_many_bits(ACTIVE[0], bits, f"math.{name}({n})")
        return fn(*args)

    checked.__name__ = checked.__qualname__ = name
    return checked
