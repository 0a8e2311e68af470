"""`calendar` for programs: CPython's functions and its `Calendar` and `TextCalendar` classes, with
what they keep or do outside the program made the program's own:

* the module's first weekday (`setfirstweekday`) is the program's (`context.module_state`), not
  the host module's global, which every program in the process would share;
* `prmonth`, `prcal`, `prweek`, `pryear` print to the program's output;
* the `iter...` methods return list iterators (a month is at most 42 days), which are kept
  across waits, where CPython's are generators, which cannot be;
* widths and spacings (`w`, `l`, `c`, `m`) are size-checked before the text is made.

Names of days and months are the English ones (`day_name`, `month_abbr`, ... are tuples here:
CPython's depend on the host's locale). `HTMLCalendar` and the locale calendars are absent.
"""

from __future__ import annotations

import calendar as _calendar
from collections.abc import Iterator
from functools import cache
from typing import Any

from flowmetal.machine.access import register_kind
from flowmetal.machine.show import register_leaf
from flowmetal.machine.stdlib import context
from flowmetal.machine.stdlib.common import charge, check_size
from flowmetal.machine.stdlib.context import builtin

__all__ = ["Calendar", "TextCalendar", "members", "register_codec"]

_TEXT_WORK = 600  # fuel for one month's or year's text (a few hundred steps in Python)


def _int(x: Any, default: int) -> int:
    return x if type(x) is int else default


def _check_text(w: Any, l: Any, c: Any = 6, m: Any = 1) -> None:  # noqa: E741  (CPython's names)
    """Refuse a calendar's text whose widths would make it too large to hold."""
    width = (7 * (max(2, _int(w, 2)) + 1) + max(2, _int(c, 6))) * max(1, _int(m, 1))
    check_size(width * max(1, _int(l, 1)) * 60, "a calendar's text")
    charge(_TEXT_WORK)


class Calendar(_calendar.Calendar):
    """CPython's Calendar with iterators that can be kept across waits."""

    def iterweekdays(self) -> Iterator[int]:
        return iter(list(super().iterweekdays()))

    def itermonthdates(self, year: int, month: int) -> Iterator[Any]:
        return iter(list(super().itermonthdates(year, month)))

    def itermonthdays(self, year: int, month: int) -> Iterator[int]:
        return iter(list(super().itermonthdays(year, month)))

    def itermonthdays2(self, year: int, month: int) -> Iterator[tuple[int, int]]:
        return iter(list(super().itermonthdays2(year, month)))

    def itermonthdays3(self, year: int, month: int) -> Iterator[tuple[int, int, int]]:
        return iter(list(super().itermonthdays3(year, month)))

    def itermonthdays4(self, year: int, month: int) -> Iterator[tuple[int, int, int, int]]:
        return iter(list(super().itermonthdays4(year, month)))

    def yeardatescalendar(self, year: int, width: int = 3) -> list[Any]:
        charge(_TEXT_WORK)
        return super().yeardatescalendar(year, width)

    def yeardays2calendar(self, year: int, width: int = 3) -> list[Any]:
        charge(_TEXT_WORK)
        return super().yeardays2calendar(year, width)

    def yeardayscalendar(self, year: int, width: int = 3) -> list[Any]:
        charge(_TEXT_WORK)
        return super().yeardayscalendar(year, width)

    def __repr__(self) -> str:
        return f"<calendar.{type(self).__name__} object>"


class TextCalendar(Calendar, _calendar.TextCalendar):
    """CPython's TextCalendar, printing to the program's output, with its sizes checked."""

    def formatday(self, day: int, weekday: int, width: int) -> str:
        check_size(_int(width, 0), "formatday()")
        return super().formatday(day, weekday, width)

    def formatweek(self, theweek: Any, width: int) -> str:
        check_size(_int(width, 0) * 8, "formatweek()")
        return super().formatweek(theweek, width)

    def formatweekday(self, day: int, width: int) -> str:
        check_size(_int(width, 0), "formatweekday()")
        return super().formatweekday(day, width)

    def formatweekheader(self, width: int) -> str:
        check_size(_int(width, 0) * 8, "formatweekheader()")
        return super().formatweekheader(width)

    def formatmonthname(self, theyear: int, themonth: int, width: int, withyear: bool = True) -> str:
        check_size(_int(width, 0), "formatmonthname()")
        return super().formatmonthname(theyear, themonth, width, withyear)

    def formatmonth(self, theyear: int, themonth: int, w: int = 0, l: int = 0) -> str:  # noqa: E741
        _check_text(w, l)
        return super().formatmonth(theyear, themonth, w, l)

    def formatyear(self, theyear: int, w: int = 2, l: int = 1, c: int = 6, m: int = 3) -> str:  # noqa: E741
        _check_text(w, l, c, m)
        return super().formatyear(theyear, w, l, c, m)

    def prweek(self, theweek: Any, width: int) -> None:
        context.current().write(self.formatweek(theweek, width))

    def prmonth(self, theyear: int, themonth: int, w: int = 0, l: int = 0) -> None:  # noqa: E741
        context.current().write(self.formatmonth(theyear, themonth, w, l))

    def pryear(self, theyear: int, w: int = 0, l: int = 0, c: int = 6, m: int = 3) -> None:  # noqa: E741
        context.current().write(self.formatyear(theyear, w, l, c, m))


for _cls in (Calendar, TextCalendar):
    _cls.__module__ = "calendar"

DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTH_NAMES = ("", "January", "February", "March", "April", "May", "June", "July", "August", "September",
               "October", "November", "December")


def _text_calendar() -> TextCalendar:
    """A TextCalendar with the program's first weekday (what CPython's module functions use)."""
    return TextCalendar(context.current().module_state.get("calendar.firstweekday", 0))


def _setfirstweekday(firstweekday: Any) -> None:
    if not _calendar.MONDAY <= firstweekday <= _calendar.SUNDAY:
        raise _calendar.IllegalWeekdayError(firstweekday)
    context.current().module_state["calendar.firstweekday"] = firstweekday


def _firstweekday() -> int:
    return context.current().module_state.get("calendar.firstweekday", 0)


def _monthcalendar(year: int, month: int) -> list[list[int]]:
    return _text_calendar().monthdayscalendar(year, month)


def _prweek(theweek: Any, width: int) -> None:
    _text_calendar().prweek(theweek, width)


def _week(theweek: Any, width: int) -> str:
    return _text_calendar().formatweek(theweek, width)


def _weekheader(width: int) -> str:
    return _text_calendar().formatweekheader(width)


def _month(theyear: int, themonth: int, w: int = 0, l: int = 0) -> str:  # noqa: E741
    return _text_calendar().formatmonth(theyear, themonth, w, l)


def _prmonth(theyear: int, themonth: int, w: int = 0, l: int = 0) -> None:  # noqa: E741
    _text_calendar().prmonth(theyear, themonth, w, l)


def _calendar_text(theyear: int, w: int = 2, l: int = 1, c: int = 6, m: int = 3) -> str:  # noqa: E741
    return _text_calendar().formatyear(theyear, w, l, c, m)


def _prcal(theyear: int, w: int = 0, l: int = 0, c: int = 6, m: int = 3) -> None:  # noqa: E741
    _text_calendar().pryear(theyear, w, l, c, m)


@cache
def members() -> dict[str, Any]:
    out: dict[str, Any] = {
        "Calendar": Calendar,
        "TextCalendar": TextCalendar,
        "IllegalMonthError": _calendar.IllegalMonthError,
        "IllegalWeekdayError": _calendar.IllegalWeekdayError,
        "error": ValueError,
        "isleap": _calendar.isleap,
        "leapdays": _calendar.leapdays,
        "weekday": _calendar.weekday,
        "monthrange": _calendar.monthrange,
        "timegm": _calendar.timegm,
        "monthcalendar": builtin(_monthcalendar, "monthcalendar"),
        "firstweekday": builtin(_firstweekday, "getfirstweekday"),
        "setfirstweekday": builtin(_setfirstweekday, "setfirstweekday"),
        "prweek": builtin(_prweek, "prweek"),
        "week": builtin(_week, "formatweek"),
        "weekheader": builtin(_weekheader, "formatweekheader"),
        "month": builtin(_month, "formatmonth"),
        "prmonth": builtin(_prmonth, "prmonth"),
        "calendar": builtin(_calendar_text, "formatyear"),
        "prcal": builtin(_prcal, "pryear"),
        "day_name": DAY_NAMES,
        "day_abbr": tuple(name[:3] for name in DAY_NAMES),
        "month_name": MONTH_NAMES,
        "month_abbr": tuple(name[:3] for name in MONTH_NAMES),
    }
    for name in ("MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY", "January",
                 "February"):
        out[name] = getattr(_calendar, name)
    return out


register_kind(Calendar, "calendar.Calendar")
register_kind(TextCalendar, "calendar.TextCalendar")
register_kind(_calendar.IllegalMonthError, "calendar.IllegalMonthError")
register_kind(_calendar.IllegalWeekdayError, "calendar.IllegalWeekdayError")
register_leaf(Calendar)
register_leaf(TextCalendar)


def register_codec(codec: Any) -> None:
    for cls, tag in ((Calendar, "calendar.Calendar"), (TextCalendar, "calendar.TextCalendar")):
        codec.register(cls, tag, state=lambda c: c.getfirstweekday(),
                       new=lambda cls=cls: cls(), fill=lambda c, s: c.setfirstweekday(int(s)))
    codec.register_exception(_calendar.IllegalMonthError, "calendar.IllegalMonthError")
    codec.register_exception(_calendar.IllegalWeekdayError, "calendar.IllegalWeekdayError")
