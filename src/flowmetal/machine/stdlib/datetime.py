"""`datetime` for programs: CPython's own date, datetime, time, timedelta and timezone types
(C speed, CPython's reprs, errors and arithmetic, OverflowError included), with the few
methods that read the host replaced:

* the clock (`datetime.now()`, `utcnow()`, `today()`, `date.today()`) is a durable read
  (`context.now`): the runtime answers it and records the answer, and a replay gets the
  recorded one, so a program sees the same time however often it is replayed;
* the host's local time zone never appears: where CPython would use it (`fromtimestamp(ts)`
  without a zone, `timestamp()` of a naive datetime, `astimezone()` without a zone) Flowmetal
  uses UTC, named "UTC" as CPython names a UTC host's zone.

Those methods are routed (the allow-list's `routed`): on the type object and on instances the
machine hands out these versions, never the host's. Time zones come from `zoneinfo.py`.
"""

from __future__ import annotations

import _strptime as _strptime_module  # noqa: F401  (strptime imports it at first use: executors cannot once locked down)
import datetime as _dt
import time as _time
from collections.abc import Callable
from functools import cache
from typing import Any

from flowmetal.machine.access import register_kind, visible_class
from flowmetal.machine.show import fm_repr, register_leaf, register_repr
from flowmetal.machine.stdlib import context

__all__ = ["LOCAL", "members", "register_codec", "utc_now"]

# what CPython's `astimezone()` gives on a host whose local zone is UTC
LOCAL = _dt.timezone(_dt.timedelta(0), "UTC")
_UTC = _dt.UTC
_date, _datetime = _dt.date, _dt.datetime
_MAX_FORMAT = 10_000  # characters of a strftime format (its result is at most a few times longer)


def utc_now(what: str) -> _dt.datetime:
    """The current time as an aware UTC datetime (a durable read)."""
    return _datetime.fromtimestamp(context.now(what), _UTC)


def _drop_receiver(args: tuple[Any, ...]) -> tuple[Any, ...]:
    """A class method reached through an instance (`d.today()`) gets the instance first: drop it."""
    return args[1:] if args and isinstance(args[0], _date) else args


# -- datetime's class methods ---------------------------------------------------------------------


def _datetime_now(*args: Any, **kwargs: Any) -> _dt.datetime:
    args = _drop_receiver(args)
    tz = args[0] if args else kwargs.pop("tz", None)
    if len(args) > 1 or kwargs:
        raise TypeError("now() takes at most 1 argument (tz)")
    if tz is not None and not isinstance(tz, _dt.tzinfo):
        raise TypeError(f"tzinfo argument must be None or of a tzinfo subclass, not type '{type(tz).__name__}'")
    now = utc_now("datetime.now()")
    return now.replace(tzinfo=None) if tz is None else now.astimezone(tz)


def _datetime_today(*args: Any) -> _dt.datetime:
    if _drop_receiver(args):
        raise TypeError("today() takes no arguments")
    return utc_now("datetime.today()").replace(tzinfo=None)


def _datetime_utcnow(*args: Any) -> _dt.datetime:
    if _drop_receiver(args):
        raise TypeError("utcnow() takes no arguments")
    return utc_now("datetime.utcnow()").replace(tzinfo=None)


def _datetime_fromtimestamp(*args: Any, **kwargs: Any) -> _dt.datetime:
    args = _drop_receiver(args)
    tz = args[1] if len(args) > 1 else kwargs.get("tz")
    if tz is not None:
        return _datetime.fromtimestamp(*args, **kwargs)
    ts: Any = args[0] if args else kwargs.get("timestamp")
    return _datetime.fromtimestamp(ts, _UTC).replace(tzinfo=None)


def _date_today(*args: Any) -> _dt.date:
    if _drop_receiver(args):
        raise TypeError("today() takes no arguments")
    return utc_now("date.today()").date()


def _date_fromtimestamp(*args: Any) -> _dt.date:
    args = _drop_receiver(args)
    if len(args) != 1:
        raise TypeError(f"fromtimestamp() takes exactly 1 argument ({len(args)} given)")
    return _datetime.fromtimestamp(args[0], _UTC).date()


# -- datetime's instance methods that would use the host's zone -------------------------------------


def _timestamp(self: Any) -> float:
    if not isinstance(self, _datetime):
        raise TypeError(f"descriptor 'timestamp' for 'datetime.datetime' objects doesn't apply to a "
                        f"'{type(self).__name__}' object")
    if self.tzinfo is None:
        return self.replace(tzinfo=_UTC).timestamp()
    return self.timestamp()


def _astimezone(self: Any, tz: Any = None) -> _dt.datetime:
    if not isinstance(self, _datetime):
        raise TypeError(f"descriptor 'astimezone' for 'datetime.datetime' objects doesn't apply to a "
                        f"'{type(self).__name__}' object")
    if tz is None:
        if self.utcoffset() is None:
            return self.replace(tzinfo=LOCAL)
        return self.astimezone(LOCAL)
    if self.utcoffset() is None:  # a naive datetime is in the local zone: UTC here
        return self.replace(tzinfo=LOCAL).astimezone(tz)
    return self.astimezone(tz)


def _strftime(self: Any, fmt: Any) -> str:
    """strftime with its fuel: the format is interpreted in C."""
    if isinstance(fmt, str):
        if len(fmt) > _MAX_FORMAT:
            context.check_size(len(fmt) * 8, "strftime()")
        context.charge(len(fmt) // 8)
    return type(self).strftime(self, fmt)


def _strptime(*args: Any) -> _dt.datetime:
    args = _drop_receiver(args)
    if len(args) == 2 and isinstance(args[0], str) and isinstance(args[1], str):
        context.charge((len(args[0]) + len(args[1])) // 4)
    return _datetime.strptime(*args)


_DATETIME_OVERRIDES: dict[str, Callable[..., Any]] = {
    "now": _datetime_now, "today": _datetime_today, "utcnow": _datetime_utcnow,
    "fromtimestamp": _datetime_fromtimestamp, "timestamp": _timestamp, "astimezone": _astimezone,
    "strftime": _strftime, "strptime": _strptime,
}
_DATE_OVERRIDES: dict[str, Callable[..., Any]] = {"today": _date_today, "fromtimestamp": _date_fromtimestamp, "strftime": _strftime}
_TIME_OVERRIDES: dict[str, Callable[..., Any]] = {"strftime": _strftime}

# CPython's IsoCalendarDate (what `isocalendar()` returns) has no public name
IsoCalendarDate = type(_date(2020, 1, 1).isocalendar())


@cache
def members() -> dict[str, Any]:
    return {
        "date": _date,
        "datetime": _datetime,
        "time": _dt.time,
        "timedelta": _dt.timedelta,
        "timezone": _dt.timezone,
        "tzinfo": visible_class(_dt.tzinfo),  # for isinstance: it cannot make instances
        "MINYEAR": _dt.MINYEAR,
        "MAXYEAR": _dt.MAXYEAR,
        "UTC": _UTC,
    }


register_kind(_date, "datetime.date", _DATE_OVERRIDES)
register_kind(_datetime, "datetime.datetime", _DATETIME_OVERRIDES)
register_kind(_dt.time, "datetime.time", _TIME_OVERRIDES)
register_kind(_dt.timedelta, "datetime.timedelta")
register_kind(_dt.timezone, "datetime.timezone")
register_kind(_dt.tzinfo, "datetime.tzinfo")
register_kind(IsoCalendarDate, "datetime.IsoCalendarDate")
register_kind(_time.struct_time, "time.struct_time")
for _cls in (_date, _datetime, _dt.time, _dt.timedelta, _dt.timezone, IsoCalendarDate):
    register_leaf(_cls)

_STRUCT_FIELDS = ("tm_year", "tm_mon", "tm_mday", "tm_hour", "tm_min", "tm_sec", "tm_wday", "tm_yday", "tm_isdst")


def _struct_time_repr(t: Any) -> str:
    # a program can make one holding any of its values (`time.struct_time(seq)`): written with fm_repr
    return "time.struct_time(" + ", ".join(f"{n}={fm_repr(v)}" for n, v in zip(_STRUCT_FIELDS, t)) + ")"


register_repr(_time.struct_time, _struct_time_repr)


def register_codec(codec: Any) -> None:
    codec.register(_date, "datetime.date", state=lambda d: [d.year, d.month, d.day],
                   build=lambda s: _date(int(s[0]), int(s[1]), int(s[2])))

    def datetime_state(d: _dt.datetime) -> list[Any]:
        return [d.year, d.month, d.day, d.hour, d.minute, d.second, d.microsecond, d.tzinfo, d.fold]

    def build_datetime(s: list[Any]) -> _dt.datetime:
        y, mo, d, h, mi, sec, us = (int(x) for x in s[:7])
        return _datetime(y, mo, d, h, mi, sec, us, tzinfo=_check_tz(s[7]), fold=int(s[8]))

    codec.register(_datetime, "datetime.datetime", state=datetime_state, build=build_datetime)
    codec.register(_dt.time, "datetime.time",
                   state=lambda t: [t.hour, t.minute, t.second, t.microsecond, t.tzinfo, t.fold],
                   build=lambda s: _dt.time(int(s[0]), int(s[1]), int(s[2]), int(s[3]), tzinfo=_check_tz(s[4]),
                                            fold=int(s[5])))
    codec.register(_dt.timedelta, "datetime.timedelta", state=lambda t: [t.days, t.seconds, t.microseconds],
                   build=lambda s: _dt.timedelta(int(s[0]), int(s[1]), int(s[2])))

    def timezone_state(z: _dt.timezone) -> list[Any]:
        name = z.tzname(None)
        default = _dt.timezone(z.utcoffset(None)).tzname(None)
        return [z.utcoffset(None), None if z is _UTC or name == default else name]

    def build_timezone(s: list[Any]) -> _dt.timezone:
        offset = s[0]
        if not isinstance(offset, _dt.timedelta):
            raise ValueError("a timezone's offset must be a timedelta")
        return _dt.timezone(offset) if s[1] is None else _dt.timezone(offset, str(s[1]))

    codec.register(_dt.timezone, "datetime.timezone", state=timezone_state, build=build_timezone)
    codec.register(IsoCalendarDate, "datetime.IsoCalendarDate", state=lambda c: [c[0], c[1], c[2]],
                   build=lambda s: IsoCalendarDate(int(s[0]), int(s[1]), int(s[2])))  # type: ignore[call-arg, arg-type]
    codec.register(_time.struct_time, "time.struct_time",
                   state=lambda t: [*t, t.tm_zone, t.tm_gmtoff],
                   build=lambda s: _time.struct_time(list(s[:11])))  # (a program's may hold any value)


def _check_tz(tz: Any) -> Any:
    if tz is not None and not isinstance(tz, _dt.timezone | _dt.tzinfo):
        raise ValueError("a datetime's tzinfo must be a time zone")
    return tz
