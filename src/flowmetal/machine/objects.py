"""The machine's own runtime values: resumable functions, generators, frames,
tasks and effect requests. All of them are plain data plus references, so a
snapshot can write them out (see `snapshot.py`).
"""

from __future__ import annotations

import types
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flowmetal.lang.lower import UnitInfo
    from flowmetal.machine.machine import Machine


class _End:
    """Marks an exhausted iterator inside generated code (never visible to programs)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<end>"


END = _End()


class MachineAbort(BaseException):
    """The machine stops a program (fuel or memory exhausted). Programs cannot catch it:
    generated code re-raises it past every handler."""


class FuelExhausted(MachineAbort):
    pass


class MemoryLimitExceeded(MachineAbort):
    pass


class OutputLimitExceeded(MemoryLimitExceeded):
    """Printed more than `Limits.max_output` characters before the host took the output."""


class Function:
    """A function value whose body may wait (compiled as a resumable unit)."""

    __slots__ = ("_binder", "_closure", "_frame_fn", "_machine", "_program_key", "_unit")

    def __init__(self, machine: Machine, program_key: str, unit: UnitInfo, binder: Any, closure: tuple[Any, ...],
                 frame_fn: Any = None):
        self._machine = machine
        self._program_key = program_key
        self._unit = unit
        self._binder = binder  # a CPython function with the same signature and defaults
        self._closure = closure
        self._frame_fn = frame_fn  # the unit's state machine, bound to the program's globals

    def __getattr__(self, attr: str) -> Any:
        # `__name__` of instances is not a class attribute, so it lands here
        if attr == "__name__":
            return self._unit.name
        if attr == "__qualname__":
            return self._unit.qualname
        raise AttributeError(f"'function' object has no attribute '{attr}'")

    def __repr__(self) -> str:
        return f"<function {self._unit.qualname}>"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # Reached only from native code (e.g. a callback inside a CPython built-in).
        return self._machine.call_nested(self, args, kwargs)

    def __get__(self, obj: Any, owner: Any = None) -> Any:
        # a method of a class (see machine/classes.py): bound to the instance it is read from
        if obj is None:
            return self
        return types.MethodType(self, obj)


Function.__name__ = "function"
Function.__qualname__ = "function"


class Generator:
    """A resumable generator: its frame is kept while it is suspended at a `yield`.

    `_mode` says what the activation running now hands its caller when the body ends
    (see `Machine._gen_finished`): LOOP (a `for` loop: END), CALL (`next()`/`send()`/
    `throw()`: StopIteration(value)), CLOSE (`close()`: None), DELEGATE (`yield from`:
    Returned(value)), CLOSE_RERAISE (`yield from` passing GeneratorExit on), STEPPED (the
    machine steps it for a generator parked in `yield from` it: everything it yields, returns or
    raises comes wrapped in a `Stepped`), or a one-element list holding `next(g, default)`'s
    default."""

    __slots__ = ("_finished", "_frame", "_machine", "_mode", "_name", "_running", "_yf")

    def __init__(self, machine: Machine, frame: Frame, name: str) -> None:
        self._machine = machine
        self._frame = frame
        self._name = name  # the qualified name, as CPython's repr shows it
        self._finished = False
        self._running = False
        self._mode: Any = LOOP
        # parked in `yield from` this generator (whose body never waits): its caller may resume
        # it directly (never kept in a snapshot: a restored generator goes the long way once)
        self._yf: Generator | None = None

    def __iter__(self) -> Generator:
        return self

    def __next__(self) -> Any:
        # (native code: a plain function's loop, a CPython built-in) run the body here
        got = self._machine.gen_direct(self, None, None, CALL)
        if got.__class__ is Suspension:
            return self._machine.gen_nested_rest(self, got, CALL)
        return got

    def __getattr__(self, attr: str) -> Any:
        # `__name__` and `__qualname__` are not class attributes, so they land here
        if attr == "__name__":
            return self._name.rpartition(".")[2]
        if attr == "__qualname__":
            return self._name
        raise AttributeError(f"'generator' object has no attribute '{attr}'")

    @property
    def send(self) -> GeneratorMethod:
        return GeneratorMethod("send", self)

    @property
    def throw(self) -> GeneratorMethod:
        return GeneratorMethod("throw", self)

    @property
    def close(self) -> GeneratorMethod:
        return GeneratorMethod("close", self)

    def __repr__(self) -> str:
        return f"<generator object {self._name}>"


Generator.__name__ = "generator"
Generator.__qualname__ = "generator"

# What a generator's body ending hands the activation's caller (Generator._mode).
LOOP, CALL, CLOSE, DELEGATE, CLOSE_RERAISE, STEPPED = 0, 1, 2, 3, 4, 5


class Returned:
    """`yield from` in generated code: the sub-generator returned `value` (never seen by programs)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


class Stepped:
    """`yield from` in generated code: the machine stepped the sub-generator for the delegating
    generator (which receives this when resumed): what it yielded or `Returned`, or the error it
    raised (never seen by programs)."""

    __slots__ = ("error", "value")

    def __init__(self, value: Any, error: BaseException | None = None) -> None:
        self.value = value
        self.error = error


class GeneratorMethod:
    """`gen.send`, `gen.throw`, `gen.close`: the machine runs them (the generator's body may
    wait); called from native code they run the generator on the host stack."""

    __slots__ = ("_gen", "_name")

    def __init__(self, name: str, gen: Generator) -> None:
        self._name = name
        self._gen = gen

    def __getattr__(self, attr: str) -> Any:  # `__name__`, `__qualname__`: not class attributes
        if attr == "__name__":
            return self._name
        if attr == "__qualname__":
            return f"generator.{self._name}"
        raise AttributeError(f"'builtin_function_or_method' object has no attribute '{attr}'")

    def __repr__(self) -> str:
        return f"<built-in method {self._name} of generator object>"

    def __eq__(self, other: object) -> bool:
        return type(other) is GeneratorMethod and other._gen is self._gen and other._name == self._name

    def __hash__(self) -> int:
        return hash((id(self._gen), self._name))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._gen._machine.gen_method_nested(self, args, kwargs)


GeneratorMethod.__name__ = "builtin_function_or_method"


class Suspension:
    """Frames run directly on the host stack that now have to wait: the machine adopts them
    (outermost first) and handles `out`, the innermost frame's request. With no frames it
    means "run this call through the machine instead" (direct calls nest too deep)."""

    __slots__ = ("frames", "out")

    def __init__(self, frames: list[Frame], out: tuple[Any, ...] | None) -> None:
        self.frames = frames
        self.out = out


class EffectFunction:
    """A durable action supplied by the host (e.g. `sleep`): calling it asks the host."""

    __slots__ = ("_bound", "_effect")

    def __init__(self, effect: str, bound: tuple[Any, ...] = ()) -> None:
        self._effect = effect
        self._bound = bound  # leading arguments (e.g. a child program's id for `child.result`)

    def __getattr__(self, attr: str) -> Any:  # `__name__`, `__qualname__`: not class attributes
        if attr in ("__name__", "__qualname__"):
            return self._effect
        raise AttributeError(f"'builtin_function_or_method' object has no attribute '{attr}'")

    def __repr__(self) -> str:
        return f"<built-in function {self._effect}>"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(
            f"{self._effect}() cannot wait here: it was called from a built-in function's callback"
        )


EffectFunction.__name__ = "builtin_function_or_method"


# Host callables that stand for another call the machine should make itself when that call
# may wait (a `functools.partial` of a durable action, a cached or renamed function that
# waits): type -> redirect(machine, callee, args, kwargs) -> (callee, args, kwargs), or None
# to call it as it is. A redirect decides from the callee alone and changes nothing.
CALL_REDIRECTS: dict[type, Any] = {}


class Frame:
    """One activation of a resumable unit: where to resume and its saved variables."""

    __slots__ = ("fn", "gen", "live", "pc", "program_key", "slots", "throw", "unit")

    def __init__(self, program_key: str, unit: UnitInfo, fn: Any, slots: dict[str, Any]) -> None:
        self.program_key = program_key
        self.unit = unit
        self.fn = fn  # the unit's state machine bound to the program's globals
        self.pc = 0
        self.slots = slots
        self.throw: BaseException | None = None
        self.gen: Generator | None = None
        # a generator's frame between two of its `yield`s: the CPython generator running its
        # state machine, which holds its variables (`slots` are then out of date: see `variables`)
        self.live: Any = None

    def variables(self) -> dict[str, Any]:
        """The frame's variables as they are now (what a snapshot keeps)."""
        if self.live is not None and self.live.gi_frame is not None:
            return {k: v for k, v in self.live.gi_frame.f_locals.items() if k not in _MACHINERY}
        return self.slots


# Variables of every state machine that are not the program's (never kept in a snapshot).
_MACHINERY = frozenset({"_fm_fr", "_fm_rv", "_fm_pc", "_fm_s", "_fm_e", "_fm_h", "_fm_r"})


@dataclass
class EffectRequest:
    id: int
    task: int
    name: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    deadline: float | None = None  # the innermost `with timeout(...)` deadline, if any


@dataclass
class Task:
    id: int
    stack: list[Frame] = field(default_factory=list)
    rv: Any = None
    status: str = "runnable"  # runnable | blocked | done | failed
    phase: str = "module"  # module | main | body
    result: Any = None
    error: BaseException | None = None
    waiting: int | None = None  # id of the effect request it waits for
    start_call: tuple[Any, tuple[Any, ...], dict[str, Any]] | None = None  # a spawned task's call
    awaiting: list[int] | None = None  # tasks it waits for (wait / wait_any / result)
    await_mode: str | None = None  # all | any | any_cancel (wait_any cancelling the rest) | one
    timer_request: int | None = None  # the timer racing that wait
    deadlines: list[float] = field(default_factory=list)  # open `with timeout()` scopes
    entering: int | None = None  # the deadline request of a `with timeout()` being entered
