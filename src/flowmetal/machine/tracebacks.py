"""Tracebacks in CPython's shape, naming the program's file, lines and functions.

A program's exception crosses two kinds of frames: CPython frames of plain
functions (and of the resumable unit currently running), which its
`__traceback__` records, and resumable frames the machine pops one at a
time. Each time it leaves a resumable frame, the machine moves the program's
entries from `__traceback__` to the front of the exception's `_fm_trace` list
(plain data, so it survives snapshots) and clears `__traceback__`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from flowmetal.machine.show import fm_exc_str

if TYPE_CHECKING:
    from flowmetal.lang.program import Program

TRACE_ATTR = "_fm_trace"


_C_CALL_MESSAGE = "maximum recursion depth exceeded while calling a Python object"


def as_cpython_recursion(exc: RecursionError) -> None:
    """A plain function that recurses too deeply fails in the fuel tick at its entry (a call of a
    C function, one level deeper than the frame itself), where CPython fails pushing the frame:
    give the error CPython's message and drop that frame's entry (at its `def` line), so the
    program sees and prints what CPython shows."""
    if exc.args != (_C_CALL_MESSAGE,):
        return
    tb, before = exc.__traceback__, None
    while tb is not None and tb.tb_next is not None:
        before, tb = tb, tb.tb_next
    if tb is None or tb.tb_lineno != tb.tb_frame.f_code.co_firstlineno or tb.tb_frame.f_code.co_name.startswith(
            "_fm_"):
        return  # not a tick at a function's entry: CPython would say the same
    exc.args = ("maximum recursion depth exceeded",)
    if before is not None:
        before.tb_next = None


def add_trace(exc: BaseException, frame: Any, programs: Mapping[str, Program]) -> None:
    if type(exc) is RecursionError:
        as_cpython_recursion(exc)
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
    """The last line CPython prints for an uncaught exception, e.g. `KeyError: 'x'` (its
    arguments written without memory addresses)."""
    t = type(exc)
    name = t.__qualname__
    if t.__module__ not in ("builtins", "__main__"):
        name = f"{t.__module__}.{name}"
    try:
        text = fm_exc_str(exc)
    except Exception:
        text = "<exception str() failed>"
    return f"{name}: {text}" if text else name


MAX_CHAIN = 100  # chained exceptions written out; the rest are counted
_REPEAT_SHOWN = 3  # as CPython: identical consecutive entries beyond this are folded


def format_exception(exc: BaseException, programs: Mapping[str, Program]) -> str:
    """The traceback CPython would print, for the program's own frames. Iterative, so a
    chain of any length (each exception raised while handling the last) cannot overflow it."""
    sources = {p.filename: p.source.splitlines() for p in programs.values()}
    chain: list[tuple[BaseException, str]] = []  # innermost cause first, each with its link text
    seen: set[int] = set()
    e: BaseException | None = exc
    link = ""
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        chain.append((e, link))
        if e.__cause__ is not None:
            e, link = e.__cause__, _CAUSE
        elif e.__context__ is not None and not e.__suppress_context__:
            e, link = e.__context__, _CONTEXT
        else:
            e = None
    parts: list[str] = []
    if len(chain) > MAX_CHAIN:
        parts.append(f"[{len(chain) - MAX_CHAIN} earlier chained exceptions not shown]\n\n")
        chain = chain[:MAX_CHAIN]
    for e, link in reversed(chain):
        _format_one(e, programs, sources, parts)
        parts.append(link)
    return "".join(parts)


_CAUSE = "\nThe above exception was the direct cause of the following exception:\n\n"
_CONTEXT = "\nDuring handling of the above exception, another exception occurred:\n\n"


def _format_one(e: BaseException, programs: Mapping[str, Program], sources: Mapping[str, list[str]],
                parts: list[str]) -> None:
    entries = _entries(e, programs)
    if entries:
        parts.append("Traceback (most recent call last):\n")
        last = None
        repeats = 0
        for entry in entries:
            if entry == last:
                repeats += 1
                if repeats >= _REPEAT_SHOWN:
                    continue
            else:
                _fold(repeats, parts)
                last, repeats = entry, 0
            filename, line, func = entry
            parts.append(f'  File "{filename}", line {line}, in {func}\n')
            lines = sources.get(filename)
            if lines and 0 < line <= len(lines) and lines[line - 1].strip():
                parts.append(f"    {lines[line - 1].strip()}\n")
        _fold(repeats, parts)
    parts.append(error_line(e) + "\n")
    notes = getattr(e, "__notes__", None)
    if isinstance(notes, list):
        parts.extend(f"{note}\n" if isinstance(note, str) else "<note str() failed>\n" for note in notes)


def _fold(repeats: int, parts: list[str]) -> None:
    hidden = repeats - _REPEAT_SHOWN + 1
    if hidden > 0:
        parts.append(f"  [Previous line repeated {hidden} more time{'s' if hidden > 1 else ''}]\n")
