"""`pprint` for Flowmetal programs: `pprint`, `pformat`, `pp`, `saferepr`, `isreadable`,
`isrecursive` and `PrettyPrinter`, for plain data.

CPython's layout code (line breaking, sorted dicts, `compact=`, `depth=`, `width=`,
`underscore_numbers=`), with:

* every value CPython would write with its own `repr()` written with `fm_repr` (no addresses),
  the `collections` types and Flowmetal's sets laid out as CPython lays out its own;
* a recursive reference written `<Recursion on list>` (CPython adds the object's id);
* a tick per element written, and an `indent` of at most 1,000 per level (the spaces are
  allocated on every line before anything could check them);
* no `stream=`: `pprint()` writes to the program's output, as `print()` does.
"""

from __future__ import annotations

import pprint as _pp
import re
from typing import Any

from flowmetal.machine.access import register_kind
from flowmetal.machine.show import fm_repr
from flowmetal.machine.stdlib import collections as _col
from flowmetal.machine.stdlib import context as _context
from flowmetal.machine.stdlib.common import charge, looks_like
from flowmetal.machine.values import FmFrozenSet, FmSet

__all__ = ["PrettyPrinter", "members", "register_codec"]

MAX_INDENT = 1000
_RECURSION_ID = re.compile(r"<Recursion on (\w+) with id=\d+>")
_SAFE_SCALARS = frozenset({str, bytes, bytearray, float, complex, bool, type(None)})

_dispatch: dict[Any, Any] = dict(_pp.PrettyPrinter._dispatch)  # type: ignore[attr-defined]
for _ours, _theirs in ((_col.OrderedDict, _pp._collections.OrderedDict),  # type: ignore[attr-defined]
                       (_col.defaultdict, _pp._collections.defaultdict),  # type: ignore[attr-defined]
                       (_col.Counter, _pp._collections.Counter),  # type: ignore[attr-defined]
                       (_col.ChainMap, _pp._collections.ChainMap),  # type: ignore[attr-defined]
                       (_col.deque, _pp._collections.deque)):  # type: ignore[attr-defined]
    _dispatch[_ours.__repr__] = _dispatch[_theirs.__repr__]
_host_set_layout = _dispatch[set.__repr__]


def _set_layout(printer: Any, obj: Any, *rest: Any) -> None:
    # CPython lays out a set sorted, and names a set subclass; ours are `set` and `frozenset`
    _host_set_layout(printer, set(obj) if type(obj) is FmSet else frozenset(obj), *rest)


_dispatch[FmSet.__repr__] = _set_layout
_dispatch[FmFrozenSet.__repr__] = _set_layout


class PrettyPrinter(_pp.PrettyPrinter):
    """Handle pretty printing operations onto the program's output (see the module)."""

    _dispatch = _dispatch

    def __init__(self, indent: Any = 1, width: Any = 80, depth: Any = None, stream: Any = None, *,
                 compact: Any = False, sort_dicts: Any = True, underscore_numbers: Any = False) -> None:
        if stream is not None:
            raise TypeError("PrettyPrinter() has no 'stream' in Flowmetal: it writes to the program's output")
        if type(indent) is int and indent > MAX_INDENT:
            raise ValueError(f"indent must be at most {MAX_INDENT} in Flowmetal")
        super().__init__(indent, width, depth, None, compact=compact, sort_dicts=sort_dicts,
                         underscore_numbers=underscore_numbers)

    def format(self, object: Any, context: Any, maxlevels: Any, level: Any) -> Any:
        """Format object for a specific context, returning a string and flags indicating whether
        the representation is 'readable' and whether the object represents a recursive construct."""
        charge(1)
        t = type(object)
        if t in _SAFE_SCALARS or t is int or t is list or t is tuple or t is dict:
            return self._safe_repr(object, context, maxlevels, level)
        rep = fm_repr(object)
        return rep, bool(rep) and not rep.startswith("<"), False

    def pformat(self, object: Any) -> str:
        return _RECURSION_ID.sub(r"<Recursion on \1>", super().pformat(object))

    def pprint(self, object: Any) -> None:
        _context.current().write(self.pformat(object) + "\n")

    def isrecursive(self, object: Any) -> bool:
        return bool(self.format(object, {}, 0, 0)[2])

    def isreadable(self, object: Any) -> bool:
        _text, readable, recursive = self.format(object, {}, 0, 0)
        return bool(readable and not recursive)

    def __repr__(self) -> str:
        return "<pprint.PrettyPrinter object>"


def pformat(object: Any, indent: Any = 1, width: Any = 80, depth: Any = None, *,
            compact: Any = False, sort_dicts: Any = True, underscore_numbers: Any = False) -> str:
    """Format a Python object into a pretty-printed representation."""
    return PrettyPrinter(indent=indent, width=width, depth=depth, compact=compact, sort_dicts=sort_dicts,
                         underscore_numbers=underscore_numbers).pformat(object)


def pprint(object: Any, stream: Any = None, indent: Any = 1, width: Any = 80, depth: Any = None, *,
           compact: Any = False, sort_dicts: Any = True, underscore_numbers: Any = False) -> None:
    """Pretty-print a Python object to the program's output."""
    PrettyPrinter(indent=indent, width=width, depth=depth, stream=stream, compact=compact, sort_dicts=sort_dicts,
                  underscore_numbers=underscore_numbers).pprint(object)


def pp(object: Any, *args: Any, sort_dicts: Any = False, **kwargs: Any) -> None:
    """Pretty-print a Python object (dicts in insertion order)."""
    pprint(object, *args, sort_dicts=sort_dicts, **kwargs)


def saferepr(object: Any) -> str:
    """Version of repr() which can handle recursive data structures."""
    return _RECURSION_ID.sub(r"<Recursion on \1>", PrettyPrinter().format(object, {}, 0, 0)[0])


def isreadable(object: Any) -> bool:
    """Determine if saferepr(object) is readable by eval()."""
    return PrettyPrinter().isreadable(object)


def isrecursive(object: Any) -> bool:
    """Determine if object requires a recursive representation."""
    return PrettyPrinter().isrecursive(object)


def members() -> dict[str, Any]:
    return {"pprint": pprint, "pformat": pformat, "pp": pp, "saferepr": saferepr, "isreadable": isreadable,
            "isrecursive": isrecursive, "PrettyPrinter": PrettyPrinter}


_OPTIONS = ("_indent_per_level", "_width", "_depth", "_compact", "_sort_dicts", "_underscore_numbers")


def register_codec(codec: Any) -> None:
    def state(p: PrettyPrinter) -> list[Any]:
        return [getattr(p, name) for name in _OPTIONS]

    def build(s: list[Any]) -> PrettyPrinter:
        return PrettyPrinter(s[0], s[1], s[2], compact=s[3], sort_dicts=s[4], underscore_numbers=s[5])

    codec.register(PrettyPrinter, "pprint.PrettyPrinter", state=state, build=build)


looks_like(PrettyPrinter, "pprint", "PrettyPrinter")
register_kind(PrettyPrinter, "pprint.PrettyPrinter")
