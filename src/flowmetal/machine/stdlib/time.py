"""`time` for programs: the formatting and conversion functions, pure and in UTC, the clock as
durable reads, and `sleep` as the durable action.

* `time()`, `time_ns()`, `monotonic()`, `monotonic_ns()`, `perf_counter()`, `perf_counter_ns()`
  read the clock through `context.now`: the runtime answers and records each read, and a replay
  gets the recorded answers. They all tell the slice's time (epoch seconds: the clock does not
  move while a program computes, only across waits); `monotonic` and `perf_counter` never go
  back, even if the nodes' clocks disagree.
* `sleep(seconds)` is the durable `sleep` action (`flowmetal.sleep`), after CPython's checks of
  its argument: the program may be suspended there and resumed on another node.
* The host's local time zone never appears: `localtime()` is `gmtime()`, `mktime()` is
  `calendar.timegm()`, `ctime()` and `strftime()` without a time format the current UTC time;
  `timezone`, `altzone` and `daylight` are 0 and `tzname` is `('UTC', 'UTC')`, as on a host
  set to UTC.
"""

from __future__ import annotations

import calendar as _calendar
import time as _time
from functools import cache
from typing import Any

from flowmetal.machine.access import register_kind
from flowmetal.machine.objects import CALL_REDIRECTS, EffectFunction
from flowmetal.machine.show import register_leaf
from flowmetal.machine.stdlib import context
from flowmetal.machine.stdlib.common import charge, check_size
from flowmetal.machine.stdlib.context import builtin

__all__ = ["SLEEP", "Sleep", "members", "register_codec"]

struct_time: Any = _time.struct_time
_MAX_FORMAT = 10_000  # characters of a strftime format before its size is checked


def _now(what: str) -> float:
    return context.now(what)


def _steady(what: str) -> float:
    """A clock that never goes back within the program (its last value is the program's state)."""
    state = context.current().module_state
    value = max(_now(what), state.get("time.steady", 0.0))
    state["time.steady"] = value
    return value


def _time_fn() -> float:
    return _now("time.time()")


def _time_ns() -> int:
    return int(_now("time.time_ns()") * 1_000_000_000)


def _monotonic() -> float:
    return _steady("time.monotonic()")


def _monotonic_ns() -> int:
    return int(_steady("time.monotonic_ns()") * 1_000_000_000)


def _perf_counter() -> float:
    return _steady("time.perf_counter()")


def _perf_counter_ns() -> int:
    return int(_steady("time.perf_counter_ns()") * 1_000_000_000)


def _utc(t: struct_time) -> struct_time:
    """`t` as CPython's localtime() writes it on a host set to UTC."""
    return struct_time((*t[:8], 0, "UTC", 0))


def _gmtime(secs: Any = None) -> struct_time:
    if secs is None:
        secs = _now("time.gmtime()")
    return _time.gmtime(secs)


def _localtime(secs: Any = None) -> struct_time:
    if secs is None:
        secs = _now("time.localtime()")
    return _utc(_time.gmtime(secs))


def _tuple(t: Any, what: str) -> Any:
    """A time tuple CPython's functions accept, with the UTC zone where it has none."""
    if t is None:
        return _utc(_time.gmtime(_now(what)))
    if isinstance(t, tuple) and not isinstance(t, struct_time) and len(t) == 9:
        return struct_time((*t, "UTC", 0))
    return t


def _mktime(t: Any) -> float:
    if not isinstance(t, tuple):
        raise TypeError("Tuple or struct_time argument required")
    if len(t) != 9 and not isinstance(t, struct_time):
        raise TypeError("mktime(): illegal time tuple argument")
    return float(_calendar.timegm(tuple(t[:9])))


def _asctime(t: Any = None) -> str:
    return _time.asctime(_tuple(t, "time.asctime()"))


def _ctime(secs: Any = None) -> str:
    if secs is None:
        secs = _now("time.ctime()")
    return _time.asctime(_time.gmtime(secs))


def _strftime(fmt: Any, t: Any = None) -> str:
    if isinstance(fmt, str):
        if len(fmt) > _MAX_FORMAT:
            check_size(len(fmt) * 8, "strftime()")
        charge(len(fmt) // 8)
    return _time.strftime(fmt, _tuple(t, "time.strftime()"))


def _strptime(string: Any, fmt: Any = "%a %b %d %H:%M:%S %Y") -> struct_time:
    if isinstance(string, str) and isinstance(fmt, str):
        charge((len(string) + len(fmt)) // 4)
    return _time.strptime(string, fmt)


_SLEEP = EffectFunction("sleep")


class Sleep:
    """`time.sleep`: the durable `sleep`, after CPython's checks of its argument (the machine
    calls it through `CALL_REDIRECTS`; the compiler knows it waits: `classify.WAITING_STD`)."""

    __slots__ = ()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("sleep() cannot wait here: it was called from a built-in function's callback")

    def __getattr__(self, attr: str) -> Any:  # `__name__`, `__qualname__`: not class attributes
        if attr in ("__name__", "__qualname__"):
            return "sleep"
        raise AttributeError(f"'builtin_function_or_method' object has no attribute '{attr}'")

    def __repr__(self) -> str:
        return "<built-in function sleep>"


def _sleep_redirect(machine: Any, callee: Sleep, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if not args and not kwargs:  # (also how the machine asks whether a callback may wait)
        return (_SLEEP, (), {})
    if kwargs:
        raise TypeError("time.sleep() takes no keyword arguments")
    if len(args) != 1:
        raise TypeError(f"time.sleep() takes exactly one argument ({len(args)} given)")
    secs = args[0]
    if not isinstance(secs, int | float):
        raise TypeError(f"'{type(secs).__name__}' object cannot be interpreted as an integer")
    if secs != secs:
        raise ValueError("Invalid value NaN (not a number)")
    if secs < 0:
        raise ValueError("sleep length must be non-negative")
    return (_SLEEP, (secs,), {})


SLEEP = Sleep()
CALL_REDIRECTS[Sleep] = _sleep_redirect
register_kind(Sleep, "builtin_function_or_method")
register_leaf(Sleep)


def register_codec(codec: Any) -> None:
    codec.register_constant(SLEEP, "time.sleep")


@cache
def members() -> dict[str, Any]:
    return {
        "time": builtin(_time_fn, "time"),
        "time_ns": builtin(_time_ns, "time_ns"),
        "monotonic": builtin(_monotonic, "monotonic"),
        "monotonic_ns": builtin(_monotonic_ns, "monotonic_ns"),
        "perf_counter": builtin(_perf_counter, "perf_counter"),
        "perf_counter_ns": builtin(_perf_counter_ns, "perf_counter_ns"),
        "sleep": SLEEP,
        "gmtime": builtin(_gmtime, "gmtime"),
        "localtime": builtin(_localtime, "localtime"),
        "mktime": builtin(_mktime, "mktime"),
        "asctime": builtin(_asctime, "asctime"),
        "ctime": builtin(_ctime, "ctime"),
        "strftime": builtin(_strftime, "strftime"),
        "strptime": builtin(_strptime, "strptime"),
        "struct_time": struct_time,
        "timezone": 0,
        "altzone": 0,
        "daylight": 0,
        "tzname": ("UTC", "UTC"),
    }
