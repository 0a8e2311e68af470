"""What a standard module's function needs of the program that calls it.

Standard modules are shared by every program in a process, but some of what they keep belongs to
each program: `random`'s generator, calendar's first weekday, the last `time.monotonic()`. That
state lives in the machine (`Machine.module_state`, written into its snapshots), never in a host
module: a program can neither see nor disturb another's. A module's function finds the machine
that runs now with `current()`: `Machine.run` sets it for the duration of a run (a context
variable, so threads that run other machines have their own).

Reads of the outside world that do not wait — the clock and a random seed — go through the
machine's `reads`, which the host sets before each run: the durable runtime answers them and
records each run's answers in the program's log, and gives a replay the recorded answers
(`runtime/reads.py`). A machine run without such a host (`run_source`) cannot read the clock:
the program fails with a clear error.
"""

from __future__ import annotations

import contextvars
import hashlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from flowmetal.machine.access import builtin_function as access_builtin
from flowmetal.machine.objects import MachineAbort, MemoryLimitExceeded

if TYPE_CHECKING:
    from flowmetal.machine.machine import Machine

__all__ = [
    "ENTER_HOOKS",
    "LEAVE_HOOKS",
    "FixedReads",
    "NoReads",
    "ProgramEntropy",
    "Reads",
    "builtin",
    "charge",
    "check_size",
    "current",
    "enter",
    "leave",
    "module_state",
    "now",
    "seed",
]

T = TypeVar("T")

_CURRENT: contextvars.ContextVar[Machine | None] = contextvars.ContextVar("flowmetal_machine", default=None)


# What a module installs for the duration of a run and takes away after it (decimal's thread
# context): hook(machine), called by enter and leave
ENTER_HOOKS: list[Callable[[Machine], None]] = []
LEAVE_HOOKS: list[Callable[[Machine], None]] = []


def enter(machine: Machine) -> contextvars.Token[Machine | None]:
    token = _CURRENT.set(machine)
    try:
        for hook in ENTER_HOOKS:
            hook(machine)
    except BaseException:
        _CURRENT.reset(token)
        raise
    return token


def leave(token: contextvars.Token[Machine | None]) -> None:
    machine = _CURRENT.get()
    _CURRENT.reset(token)
    if machine is not None:
        for hook in LEAVE_HOOKS:
            hook(machine)


def current() -> Machine:
    """The machine running the program that called us."""
    machine = _CURRENT.get()
    if machine is None:
        raise RuntimeError("this function can only be called by a running program")
    return machine


def module_state(name: str, make: Callable[[], T]) -> T:
    """The running program's own state for `name` (made by `make()` at first use)."""
    state = current().module_state
    value = state.get(name)
    if value is None:
        value = state[name] = make()
    return value


def builtin(fn: Callable[..., T], name: str) -> Callable[..., T]:
    """Show `fn` as `<built-in function NAME>` (as CPython's C functions are). Each gets a code
    object of its own, so closures made by one factory keep their own names."""
    fn.__code__ = fn.__code__.replace(co_name=name, co_qualname=name)
    return access_builtin(fn, name)


def charge(n: int) -> None:
    """Fuel for `n` elements' worth of work done by the host in one call."""
    if n > 0:
        current().ticks.charge(n)


def check_size(n: int, what: str) -> None:
    """Refuse, before allocating, a result of `n` elements beyond the machine's limit."""
    limit = current().limits.max_sequence
    if n > limit:
        raise MemoryLimitExceeded(f"MemoryLimitExceeded: {what} would create {n} items (limit {limit})")


# -- reads of the outside world ----------------------------------------------------------------


class Reads(Protocol):
    """What the host answers for reads that do not wait (set as `machine.reads` before a run)."""

    def now(self, what: str) -> float:
        """The current time (epoch seconds, UTC) for `what` (e.g. "datetime.now()")."""

    def seed(self, what: str) -> str:
        """A fresh random seed: 32 hexadecimal digits."""


class NoReads:
    """A machine without a durable host: the clock and fresh randomness cannot be read."""

    def now(self, what: str) -> float:
        raise RuntimeError(f"{what} reads the clock, which only the durable runtime can answer "
                           "(run the program with `flowmetal run`)")

    def seed(self, what: str) -> str:
        raise RuntimeError(f"{what} needs fresh randomness, which only the durable runtime can answer "
                           "(run the program with `flowmetal run`, or seed it: random.seed(42))")


class FixedReads:
    """Fixed answers (tests, and programs compared with CPython on a fixed clock)."""

    def __init__(self, now: float = 0.0, seed: str = "0" * 32) -> None:
        self._now = now
        self._seed = seed

    def now(self, what: str) -> float:
        return self._now

    def seed(self, what: str) -> str:
        return self._seed


class ReadDiverged(MachineAbort):
    """A replay asked for a read the record does not have (it ends the run; the runtime reports it)."""


def now(what: str) -> float:
    return current().reads.now(what)


def seed(what: str) -> str:
    return current().reads.seed(what)


# -- the program's own randomness ---------------------------------------------------------------


class ProgramEntropy:
    """A program's source of fresh randomness: one durable seed (read once, recorded), stretched
    with SHA-256 in counter mode. Everything that CPython would take from `os.urandom` or the
    time — `random.seed()`, `random.Random()`, the module generator's first seed, `uuid4()` —
    draws from it, so a program makes one recorded read however much randomness it uses."""

    __slots__ = ("counter", "key")

    def __init__(self, key: str, counter: int = 0) -> None:
        self.key = key
        self.counter = counter

    def bits(self, k: int) -> int:
        out = b""
        while len(out) * 8 < k:
            self.counter += 1
            out += hashlib.sha256(f"{self.key}:{self.counter}".encode()).digest()
        return int.from_bytes(out, "big") >> (len(out) * 8 - k)


def entropy(what: str) -> ProgramEntropy:
    """The running program's entropy source (its seed is read, and recorded, at first use)."""
    state = current().module_state
    source = state.get("entropy")
    if source is None:
        source = state["entropy"] = ProgramEntropy(seed(what))
    return source


def register_codec(codec: Any) -> None:
    codec.register(ProgramEntropy, "fm.entropy", state=lambda e: [e.key, e.counter],
                   build=lambda s: ProgramEntropy(str(s[0]), int(s[1])))
