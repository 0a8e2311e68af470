"""Every host type a program can hold, registered with its kind from the table in
`lang/surface.py`, and Flowmetal's own implementations of the routed methods:

* `dict.keys/values/items` return views whose set operations keep order (`views.py`);
* `str.format/format_map` check attribute fields against the allow-list and write
  values without addresses (`show.py`);
* `list.index` and `range.index` name the missing value without its address;
* methods whose result can be far larger than their arguments (`str.ljust` and
  friends, `replace`, `expandtabs`, `int.to_bytes`) check the size first, so a
  program cannot ask for gigabytes in one call (`MemoryLimitExceeded`).

The durable runtime registers its own values (`flowmetal.*`) the same way.
"""

from __future__ import annotations

import builtins
import json
import re
import types
from collections.abc import Callable
from typing import Any

from flowmetal.machine import access
from flowmetal.machine.access import BoundBuiltin, UnboundBuiltin, fm_getattr, register_kind
from flowmetal.machine.limits import ACTIVE, SELF_COUNTING, register_sized
from flowmetal.machine.objects import (
    EffectFunction,
    Function,
    Generator,
    GeneratorMethod,
    MemoryLimitExceeded,
)
from flowmetal.machine.show import fm_repr, register_leaf, safe_format, safe_format_map
from flowmetal.machine.tasks import Cancelled, MachineOp, TaskHandle, Timeout, TimeoutScope
from flowmetal.machine.values import FmFrozenSet, FmSet, Match, Module, Pattern
from flowmetal.machine.views import ItemsView, KeysView, ValuesView, view_of

__all__: list[str] = []


def _too_big(n: int, what: str) -> None:
    limit = ACTIVE[0].max_sequence
    if n > limit:
        raise MemoryLimitExceeded(f"MemoryLimitExceeded: {what} would create {n} items (limit {limit})")


def _padding(method: Callable[..., Any]) -> Callable[..., Any]:
    """`s.ljust(width, ...)` and friends: the result has `width` items."""
    name = method.__name__

    def padded(s: Any, width: Any = None, /, *args: Any) -> Any:
        if type(width) is int:
            _too_big(width, f"{name}()")
        if width is None:
            return method(s, *args)
        return method(s, width, *args)

    return padded


def _expandtabs(method: Callable[..., Any]) -> Callable[..., Any]:
    def expandtabs(s: Any, *args: Any, **kwargs: Any) -> Any:
        size = args[0] if args else kwargs.get("tabsize", 8)
        if type(size) is int and size > 1 and isinstance(s, str | bytes):
            tabs = s.count("\t") if isinstance(s, str) else s.count(b"\t")
            _too_big(len(s) + tabs * (size - 1), "expandtabs()")
        return method(s, *args, **kwargs)

    return expandtabs


def _replace(method: Callable[..., Any]) -> Callable[..., Any]:
    def replace(s: Any, old: Any, new: Any, count: Any = -1, /) -> Any:
        if (isinstance(s, str | bytes) and type(old) is type(s) and type(new) is type(s)
                and len(new) > len(old) and type(count) is int):
            if len(s) + (len(s) + 1) * (len(new) - len(old)) > ACTIVE[0].max_sequence:
                n = len(s) + 1 if not old else s.count(old)  # type: ignore[arg-type]
                if count >= 0:
                    n = min(n, count)
                _too_big(len(s) + n * (len(new) - len(old)), "replace()")
        return method(s, old, new, count)

    return replace


def _to_bytes(n: Any, length: Any = 1, byteorder: Any = "big", *, signed: bool = False) -> Any:
    if type(length) is int:
        _too_big(length, "to_bytes()")
    return int.to_bytes(n, length, byteorder, signed=signed)


def _not_in(method: Callable[..., Any], container: str) -> Callable[..., Any]:
    """`index` whose error names the value as fm_repr writes it (CPython writes its address)."""

    def index(seq: Any, value: Any, /, *args: Any) -> Any:
        try:
            return method(seq, value, *args)
        except ValueError as e:
            if str(e).endswith(f" is not in {container}"):
                raise ValueError(f"{fm_repr(value)} is not in {container}") from None
            raise

    return index


def _sized(cls: Any) -> dict[str, Callable[..., Any]]:
    pads = {name: _padding(getattr(cls, name)) for name in ("center", "ljust", "rjust", "zfill")}
    return {**pads, "expandtabs": _expandtabs(cls.expandtabs), "replace": _replace(cls.replace)}


def _register_builtins() -> None:
    for t in (int, bool):
        register_kind(t, t.__name__, {"to_bytes": _to_bytes})
    register_kind(float, "float")
    register_kind(complex, "complex")
    register_kind(str, "str", {
        **_sized(str),
        "format": lambda s, *a, **k: safe_format(fm_getattr, s, *a, **k),
        "format_map": lambda s, m, /: safe_format_map(fm_getattr, s, m),
    })
    register_kind(bytes, "bytes", _sized(bytes))
    register_kind(type(None), "NoneType")
    register_kind(type(...), "ellipsis")
    register_kind(type(NotImplemented), "NotImplementedType")
    register_kind(list, "list", {"index": _not_in(list.index, "list")})
    register_kind(tuple, "tuple")
    register_kind(dict, "dict", {k: view_of(k) for k in ("keys", "values", "items")})
    register_kind(FmSet, "set")
    register_kind(FmFrozenSet, "frozenset")
    register_kind(range, "range", {"index": _not_in(range.index, "range")})
    register_kind(slice, "slice")
    register_kind(KeysView, "dict_keys")
    register_kind(ValuesView, "dict_values")
    register_kind(ItemsView, "dict_items")
    samples: tuple[Any, ...] = (iter([]), reversed([]), iter(()), iter(""), iter("é"), iter(b""), iter(range(0)), iter(range(2**70)),
               iter({}), iter({}.values()), iter({}.items()), reversed({}), reversed({}.values()),
               reversed({}.items()), iter(int, 0))
    for sample in samples:
        register_kind(type(sample), type(sample).__name__)
    register_kind(type(iter(_Sequence())), "iterator")
    for lazy in (enumerate, zip, map, filter, reversed):
        register_kind(lazy, lazy.__name__)
    register_kind(types.GeneratorType, "generator")
    register_kind(Generator, "generator")
    register_kind(types.FunctionType, "function")
    register_kind(Function, "function")
    for callable_type in (types.BuiltinFunctionType, EffectFunction, MachineOp, BoundBuiltin, GeneratorMethod):
        register_kind(callable_type, "builtin_function_or_method")
    register_kind(types.MethodType, "method")
    for descriptor_type in (types.MethodDescriptorType, UnboundBuiltin):
        register_kind(descriptor_type, "method_descriptor")
    register_kind(Module, "module")
    access.register_module_type(Module)
    register_kind(object, "object")
    for decorator in (property, staticmethod, classmethod, super):
        register_kind(decorator, decorator.__name__)
    register_kind(Pattern, "re.Pattern")
    register_kind(Match, "re.Match")
    register_kind(re.RegexFlag, "re.RegexFlag", {"to_bytes": _to_bytes})
    for name in ("BaseException", "Exception", "ArithmeticError", "LookupError", "AssertionError",
                 "AttributeError", "ImportError", "ModuleNotFoundError", "IndexError", "KeyError", "MemoryError",
                 "NameError", "NotImplementedError", "OverflowError", "RecursionError", "RuntimeError",
                 "StopIteration", "TypeError", "UnboundLocalError", "UnicodeError", "UnicodeDecodeError",
                 "UnicodeEncodeError", "ValueError", "ZeroDivisionError", "GeneratorExit", "OSError"):
        register_kind(getattr(builtins, name), name)
    register_kind(json.JSONDecodeError, "json.JSONDecodeError")
    register_kind(re.error, "re.error")
    register_kind(Timeout, "flowmetal.Timeout")
    register_kind(Cancelled, "flowmetal.Cancelled")
    register_kind(TaskHandle, "flowmetal.Task")
    register_kind(TimeoutScope, "flowmetal.timeout")
    register_sized(FmSet, FmFrozenSet, KeysView, ValuesView, ItemsView)
    SELF_COUNTING.add(Generator)
    for leaf in (FmSet, FmFrozenSet, Pattern, Match, Module, KeysView, ValuesView, ItemsView, Function, Generator,
                 EffectFunction, MachineOp, GeneratorMethod, TaskHandle, TimeoutScope, re.RegexFlag):
        register_leaf(leaf)


class _Sequence:
    """Only its iterator type is used: `iter()` of a value with `__getitem__` but no `__iter__`."""

    def __getitem__(self, i: int) -> Any:
        raise IndexError(i)


_register_builtins()
