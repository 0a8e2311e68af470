"""The built-in namespace of a running program.

Almost every entry is the host's own built-in, so behaviour and messages
match CPython. The exceptions replace what is non-deterministic (`set`,
`frozenset`), what could build classes at run time (three-argument `type`),
and what could reach interpreter internals (`str.format` field chains such as
``"{0.__class__}"``, checked by `safe_format`).
"""

from __future__ import annotations

import builtins
import string
from _string import formatter_field_name_split
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

from flowmetal.lang.names import ALLOWED_DUNDERS, BUILTIN_NAMES
from flowmetal.machine.values import FmFrozenSet, FmSet

__all__ = ["make_builtins", "safe_format", "safe_format_map"]


class _TypeBuiltin:
    """Flowmetal's `type`: only the one-argument form.

    An instance rather than a function so that it prints as ``<class 'type'>``
    (a function's repr contains its address) and still works as the second
    argument of isinstance/issubclass.
    """

    __slots__ = ()
    __name__ = "type"
    __qualname__ = "type"

    def __call__(self, *args: Any, **kwargs: Any) -> type:
        if len(args) == 1 and not kwargs:
            return builtins.type(args[0])
        if len(args) == 3:
            raise TypeError("type() takes 1 argument in Flowmetal")
        raise TypeError("type() takes 1 or 3 arguments")

    def __instancecheck__(self, obj: Any) -> bool:
        return isinstance(obj, builtins.type)

    def __subclasscheck__(self, cls: Any) -> bool:
        return issubclass(cls, builtins.type)

    def __repr__(self) -> str:
        return "<class 'type'>"


# `type(type)` prints as in CPython too.
_TypeBuiltin.__name__ = _TypeBuiltin.__qualname__ = "type"
_TypeBuiltin.__module__ = "builtins"
TYPE = _TypeBuiltin()

_OVERRIDES: dict[str, object] = {
    "set": FmSet,
    "frozenset": FmFrozenSet,
    "type": TYPE,
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
    return table


# --------------------------------------------------------------------------
# str.format without the attribute escape hatch
# --------------------------------------------------------------------------

_DUNDER_ERROR = "access to dunder attributes is not supported in Flowmetal"
_parser = string.Formatter()


def _is_dunder(name: str) -> bool:
    return (
        len(name) > 4
        and name.startswith("__")
        and name.endswith("__")
        and name not in ALLOWED_DUNDERS
    )


@lru_cache(maxsize=1024)
def _has_dunder_field(template: str) -> bool:
    """Whether any replacement field, including those nested in format specs,
    reads a dunder attribute (`{0.__class__}`). Index keys (`{0[__x__]}`) are
    data lookups, not attribute access, and are allowed.

    A malformed template stops the scan; the real str.format then raises the
    same error CPython would, having evaluated only the fields before it,
    which were all checked.
    """
    try:
        for _literal, field, spec, _conversion in _parser.parse(template):
            if field is None:
                continue
            _first, rest = formatter_field_name_split(field)
            for is_attr, name in rest:
                if is_attr and _is_dunder(name):
                    return True
            if spec and _has_dunder_field(spec):
                return True
    except ValueError:
        return False
    return False


def safe_format(template: Any, /, *args: Any, **kwargs: Any) -> Any:
    """`template.format(*args, **kwargs)`, refusing dunder attribute fields."""
    if not isinstance(template, str):
        return template.format(*args, **kwargs)
    if _has_dunder_field(template):
        raise AttributeError(_DUNDER_ERROR)
    return template.format(*args, **kwargs)


def safe_format_map(template: Any, mapping: Mapping[str, Any], /) -> Any:
    """`template.format_map(mapping)`, refusing dunder attribute fields."""
    if not isinstance(template, str):
        return template.format_map(mapping)
    if _has_dunder_field(template):
        raise AttributeError(_DUNDER_ERROR)
    return template.format_map(mapping)
