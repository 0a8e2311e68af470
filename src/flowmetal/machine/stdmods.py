"""The standard modules a program may import: json, math and re.

They are thin layers over the host modules so results and error messages
match CPython. `re` is rebuilt on top of `values.Pattern`/`values.Match`
because host regex objects cannot be snapshotted; `json` and `math` are the
host functions themselves.
"""

from __future__ import annotations

import json as _json
import math as _math
import re as _re
from collections.abc import Callable
from typing import Any

from flowmetal.machine import kinds as _kinds  # noqa: F401  (registers the kinds of values)
from flowmetal.machine.access import visible_class
from flowmetal.machine.limits import checked_math
from flowmetal.machine.stdlib import BUILDERS as _STDLIB_BUILDERS
from flowmetal.machine.values import Match, Module, Pattern

__all__ = ["STD_MODULE_EXPORTS", "get_module"]


# --------------------------------------------------------------------------
# re
# --------------------------------------------------------------------------


def _pattern(pattern: Any, flags: Any) -> Pattern:
    """CPython's re._compile, minus its cache: a process-wide cache would
    make `re.compile(p) is re.compile(p)` depend on what other programs in
    the process did. (The host's own cache still makes recompiling cheap.)"""
    if isinstance(pattern, Pattern):
        if flags:
            raise ValueError("cannot process flags argument with a compiled pattern")
        return pattern
    return Pattern(pattern, flags)


def compile(pattern: Any, flags: int = 0) -> Pattern:
    """Compile a regular expression pattern, returning a Pattern object."""
    return _pattern(pattern, flags)


def match(pattern: Any, string: Any, flags: int = 0) -> Match | None:
    """Try to apply the pattern at the start of the string."""
    return _pattern(pattern, flags).match(string)


def fullmatch(pattern: Any, string: Any, flags: int = 0) -> Match | None:
    """Try to apply the pattern to all of the string."""
    return _pattern(pattern, flags).fullmatch(string)


def search(pattern: Any, string: Any, flags: int = 0) -> Match | None:
    """Scan through string looking for a match to the pattern."""
    return _pattern(pattern, flags).search(string)


def sub(pattern: Any, repl: Any, string: Any, count: int = 0, flags: int = 0) -> Any:
    """Replace the leftmost non-overlapping occurrences of the pattern."""
    return _pattern(pattern, flags).sub(repl, string, count)


def subn(pattern: Any, repl: Any, string: Any, count: int = 0, flags: int = 0) -> tuple[Any, int]:
    """Like sub(), but also return the number of substitutions made."""
    return _pattern(pattern, flags).subn(repl, string, count)


def split(pattern: Any, string: Any, maxsplit: int = 0, flags: int = 0) -> list[Any]:
    """Split the string by the occurrences of the pattern."""
    return _pattern(pattern, flags).split(string, maxsplit)


def findall(pattern: Any, string: Any, flags: int = 0) -> list[Any]:
    """Return a list of all non-overlapping matches in the string."""
    return _pattern(pattern, flags).findall(string)


def finditer(pattern: Any, string: Any, flags: int = 0) -> Any:
    """Return an iterator over all non-overlapping matches in the string."""
    return _pattern(pattern, flags).finditer(string)


def _re_members() -> dict[str, Any]:
    members: dict[str, Any] = {
        "compile": compile,
        "match": match,
        "fullmatch": fullmatch,
        "search": search,
        "sub": sub,
        "subn": subn,
        "split": split,
        "findall": findall,
        "finditer": finditer,
        "escape": _re.escape,
        "error": _re.error,
        # for isinstance: the types as programs see them, which have no attributes
        "Pattern": visible_class(Pattern),
        "Match": visible_class(Match),
    }
    # Flags are the host's RegexFlag members so they print as in CPython
    # (`re.IGNORECASE|re.MULTILINE`). LOCALE, DEBUG and TEMPLATE are left out:
    # they depend on the host's locale or write to stdout.
    for flag in (
        "I", "IGNORECASE", "M", "MULTILINE", "S", "DOTALL", "X", "VERBOSE",
        "A", "ASCII", "U", "UNICODE", "NOFLAG",
    ):  # fmt: skip
        if hasattr(_re, flag):
            members[flag] = getattr(_re, flag)
    return members


# --------------------------------------------------------------------------
# json and math
# --------------------------------------------------------------------------


def _json_members() -> dict[str, Any]:
    # The host encoder already rejects FmSet with CPython's wording, because
    # it builds the message from the type's __name__, which is "set".
    # dump/load are absent: they need files.
    return {"dumps": _no_cls(_json.dumps), "loads": _no_cls(_json.loads), "JSONDecodeError": _json.JSONDecodeError}


def _no_cls(fn: Callable[..., Any]) -> Callable[..., Any]:
    """json's own function without `cls=`: an encoder or decoder class is host code to run, and
    programs have every other option (`default=`, `object_hook=`, ...) for what it would do."""

    def without_cls(*args: Any, **kwargs: Any) -> Any:
        if "cls" in kwargs:
            raise TypeError(f"{fn.__name__}() got an unexpected keyword argument 'cls' "
                            "(encoder and decoder classes are not available in Flowmetal)")
        return fn(*args, **kwargs)

    without_cls.__name__ = without_cls.__qualname__ = fn.__name__
    without_cls.__doc__ = fn.__doc__
    return without_cls


def _math_members() -> dict[str, Any]:
    members = {name: getattr(_math, name) for name in dir(_math) if not name.startswith("_")}
    # results that can be too large to hold are refused before they are computed
    for name in ("factorial", "comb", "perm"):
        members[name] = checked_math(name, members[name])
    return members


_BUILDERS: dict[str, Callable[[], dict[str, Any]]] = {
    "json": _json_members,
    "math": _math_members,
    "re": _re_members,
    **_STDLIB_BUILDERS,  # itertools, collections, functools, ... (machine/stdlib/)
}

_modules: dict[str, Module] = {}


def get_module(name: str) -> Module:
    """The shared, read-only module object for a standard module name."""
    module = _modules.get(name)
    if module is None:
        try:
            build = _BUILDERS[name]
        except KeyError:
            raise ModuleNotFoundError(f"No module named '{name}'", name=name) from None
        module = _modules[name] = Module(name, build())
    return module


# (after get_module: a package's builder may hold its submodule, e.g. `urllib.parse`)
STD_MODULE_EXPORTS: dict[str, frozenset[str]] = {
    name: frozenset(vars(get_module(name))) - {"__name__"} for name in _BUILDERS
}
