"""What the standard modules share: charging fuel for the work they do in C on a program's
values, refusing sizes too large to hold, and looking like CPython's own objects.

The module objects are shared by every machine in the process, so their functions find the
machine running now through `limits.active_ticker()` (none when called outside a run: then
nothing is charged)."""

from __future__ import annotations

import operator
import types
from collections.abc import Iterable, Iterator
from typing import Any

from flowmetal.machine.access import register_kind
from flowmetal.machine.codec import allow_reduce
from flowmetal.machine.limits import _ACTIVE_TICKER as _TICKER
from flowmetal.machine.limits import ACTIVE, SELF_COUNTING, active_ticker
from flowmetal.machine.objects import MemoryLimitExceeded
from flowmetal.machine.show import register_leaf

__all__ = ["BuiltinFunction", "charge", "check_size", "counted", "looks_like", "materialize", "register_codec", "register_methods", "tick_each"]


_SMALL = 64
_IMMUTABLE = (tuple, str, bytes, range)


def counted(iterable: Iterable[Any]) -> Iterator[Any]:
    """An iterator over `iterable` that takes one tick of fuel per element (in C): what an
    iterator of ours wraps its inputs in, so that no loop in C (`dropwhile`, `islice` skipping,
    `chain` over empty iterables) can run without fuel. (A small immutable sequence is charged
    whole instead: it can hand out no more than its length, and wrapping costs more.)"""
    ticker = _TICKER[0]
    t = type(iterable)
    if ticker is None or t in SELF_COUNTING:
        return iter(iterable)
    if t in _IMMUTABLE and len(iterable) <= _SMALL:  # type: ignore[arg-type]
        # checked with the next quantum of ticks, like the ticks themselves
        ticker.used += len(iterable)  # type: ignore[arg-type]
        return iter(iterable)
    return ticker.counted(iter(iterable))


def tick_each(iterable: Iterable[Any]) -> Any:
    """What a function consuming `iterable` in C gets (`Ticker.consume`): the value itself once
    its size is charged, or an iterator that ticks per element."""
    ticker = active_ticker()
    return iterable if ticker is None else ticker.consume(iterable)


def charge(n: int) -> None:
    """`n` elements' worth of work done at once."""
    ticker = active_ticker()
    if ticker is not None and n > 0:
        ticker.charge(n)


def check_size(n: int, what: str) -> None:
    """Refuse, before allocating, a result of more than `Limits.max_sequence` items."""
    limit = ACTIVE[0].max_sequence
    if n > limit:
        raise MemoryLimitExceeded(f"MemoryLimitExceeded: {what} would create {n} items (limit {limit})")


def materialize(iterable: Iterable[Any], what: str) -> tuple[Any, ...]:
    """`tuple(iterable)`, charged per element and refused past the size limit (before
    allocating when the size is known)."""
    if type(iterable) is tuple:
        charge(len(iterable))
        return iterable
    try:
        n = len(iterable)  # type: ignore[arg-type]
    except TypeError:
        pool = tuple(counted(iterable))
        check_size(len(pool), what)
        return pool
    check_size(n, what)
    charge(n)
    return tuple(iterable)


def looks_like(cls: type, module: str, name: str) -> None:
    """Make a class of ours print and report itself as CPython's `module.name`."""
    cls.__name__ = cls.__qualname__ = name
    cls.__module__ = module


class BuiltinFunction:
    """A function of a module that the machine must see as a built-in, not as a plain Python
    function (which generated code calls directly): one with a resumable version in the
    prelude (`functools.reduce`), run instead when a callback may wait. Prints as
    `<built-in function NAME>`."""

    __slots__ = ("_fm_fn", "_fm_name")

    def __init__(self, fn: Any, name: str) -> None:
        self._fm_fn = fn
        self._fm_name = name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._fm_fn(*args, **kwargs)

    def __getattr__(self, attr: str) -> Any:  # `__name__`, `__qualname__`: not class attributes
        if attr in ("__name__", "__qualname__"):
            return self._fm_name
        raise AttributeError(f"'builtin_function_or_method' object has no attribute '{attr}'")

    def __repr__(self) -> str:
        return f"<built-in function {self._fm_name}>"


def register_codec(codec: Any) -> None:
    codec.register_constant(counted, "fm:counted")  # `chain.from_iterable` maps it over its input


def register_methods(codec: Any, cls: type, name: str) -> None:
    """Snapshots write the methods a program takes from a class of a module (`Counter.update`,
    `deque.append`) by name, as they do the module's members."""
    seen: set[str] = set()
    for klass in cls.__mro__[:-1]:  # what the class defines, then what it inherits
        for attr, value in vars(klass).items():
            if (not attr.startswith("_") and attr not in seen
                    and isinstance(value, types.FunctionType | types.MethodDescriptorType)):
                seen.add(attr)
                codec.register_constant(value, f"{name}.{attr}")


# `Ticker.counted` is `map(itemgetter(1), zip(ticks, iterable))`: snapshots write it as such
allow_reduce(operator.itemgetter, "operator.itemgetter")
register_kind(BuiltinFunction, "builtin_function_or_method")
register_leaf(BuiltinFunction)
