"""The built-in namespace of a running program.

Almost every entry is the host's own built-in, so behaviour and messages
match CPython. The exceptions replace what is non-deterministic (`set`,
`frozenset`, and every way of turning a value into text: `str`, `repr`,
`ascii`, `format`, whose CPython versions can print memory addresses), and
what could reach host classes or make new ones (`type`).
"""

from __future__ import annotations

import builtins
from collections.abc import Callable
from typing import Any

from flowmetal.lang.names import BUILTIN_NAMES
from flowmetal.machine import kinds as _kinds  # noqa: F401  (registers every kind of value)
from flowmetal.machine.access import STR, TYPE, builtin_function
from flowmetal.machine.classes import super_builtin
from flowmetal.machine.limits import power
from flowmetal.machine.show import fm_ascii, fm_format, fm_repr
from flowmetal.machine.values import FmFrozenSet, FmSet


class ProgramMemoryError(builtins.MemoryError):
    """The `MemoryError` programs raise and catch themselves. The host's own MemoryError (an
    allocation the node refused) is not an instance of it, so no program can catch that one:
    it ends the program with `MemoryLimitExceeded`."""


ProgramMemoryError.__name__ = ProgramMemoryError.__qualname__ = "MemoryError"
ProgramMemoryError.__module__ = "builtins"

__all__ = ["make_builtins"]


def _pow(base: Any, exp: Any, mod: Any = None) -> Any:
    """`pow()`: refuses integers too large to hold before computing them."""
    return power(base, exp, mod)

_OVERRIDES: dict[str, object] = {
    "set": FmSet,
    "frozenset": FmFrozenSet,
    "type": TYPE,
    "str": STR,
    "repr": builtin_function(fm_repr, "repr"),
    "ascii": builtin_function(fm_ascii, "ascii"),
    "format": builtin_function(fm_format, "format"),
    "MemoryError": ProgramMemoryError,
    "pow": builtin_function(_pow, "pow"),
    "super": builtin_function(super_builtin, "super"),
}


def make_builtins(print_fn: Callable[..., Any]) -> dict[str, object]:
    """A fresh builtins dict for one program (fresh so that a program can
    never affect another through it)."""
    table: dict[str, object] = {}
    for name in sorted(BUILTIN_NAMES):
        if name == "print":
            table[name] = print_fn
        elif name in _OVERRIDES:
            table[name] = _OVERRIDES[name]
        else:
            table[name] = builtins.__dict__[name]
    # what CPython's class statement calls (programs cannot name it: the checker refuses
    # dunder names; the compiler checks each class's bases, see machine/classes.py)
    table["__build_class__"] = builtins.__build_class__
    return table
