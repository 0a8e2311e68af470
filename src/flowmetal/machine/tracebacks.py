"""Tracebacks in CPython's shape, naming the program's file, lines and functions.

A program's exception crosses two kinds of frames: CPython frames of plain
functions (and of the resumable unit currently running), which its
`__traceback__` records, and resumable frames the machine pops one at a
time. Each time it leaves a resumable frame, the machine moves the program's
entries from `__traceback__` to the front of the exception's `_fm_trace` list
(plain data, so it survives snapshots) and clears `__traceback__`.
"""

from __future__ import annotations

import traceback as host_traceback
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flowmetal.lang.program import Program

TRACE_ATTR = "_fm_trace"


def add_trace(exc: BaseException, frame: Any, programs: Mapping[str, Program]) -> None:
    filenames = {p.filename for k, p in programs.items() if k != "prelude"}
    entries: list[tuple[str, int, str]] = []
    tb = exc.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_filename in filenames:
            entries.append((code.co_filename, tb.tb_lineno, code.co_name))
        tb = tb.tb_next
    old = getattr(exc, TRACE_ATTR, None) or []
    try:
        setattr(exc, TRACE_ATTR, entries + list(old))
    except (AttributeError, TypeError):
        pass
    exc.__traceback__ = None


def _entries(exc: BaseException, programs: Mapping[str, Program]) -> list[tuple[str, int, str]]:
    moved = list(getattr(exc, TRACE_ATTR, None) or [])
    filenames = {p.filename for k, p in programs.items() if k != "prelude"}
    entries: list[tuple[str, int, str]] = []
    tb = exc.__traceback__
    while tb is not None:  # frames not yet moved: reached after the moved ones, so outer to them
        code = tb.tb_frame.f_code
        if code.co_filename in filenames:
            entries.append((code.co_filename, tb.tb_lineno, code.co_name))
        tb = tb.tb_next
    return entries + moved


def error_line(exc: BaseException) -> str:
    """The last line CPython prints for an uncaught exception, e.g. `KeyError: 'x'`."""
    return host_traceback.format_exception_only(type(exc), exc)[-1].rstrip("\n")


def format_exception(exc: BaseException, programs: Mapping[str, Program]) -> str:
    sources = {p.filename: p.source.splitlines() for p in programs.values()}
    parts: list[str] = []
    seen: set[int] = set()

    def emit(e: BaseException) -> None:
        seen.add(id(e))
        if e.__cause__ is not None and id(e.__cause__) not in seen:
            emit(e.__cause__)
            parts.append("\nThe above exception was the direct cause of the following exception:\n\n")
        elif e.__context__ is not None and not e.__suppress_context__ and id(e.__context__) not in seen:
            emit(e.__context__)
            parts.append("\nDuring handling of the above exception, another exception occurred:\n\n")
        entries = _entries(e, programs)
        if entries:
            parts.append("Traceback (most recent call last):\n")
            for filename, line, func in entries:
                parts.append(f'  File "{filename}", line {line}, in {func}\n')
                lines = sources.get(filename)
                if lines and 0 < line <= len(lines) and lines[line - 1].strip():
                    parts.append(f"    {lines[line - 1].strip()}\n")
        parts.append(error_line(e) + "\n")

    emit(exc)
    return "".join(parts)
