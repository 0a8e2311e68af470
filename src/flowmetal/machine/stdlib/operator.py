"""`operator` for Flowmetal programs: all of CPython 3.11's public functions and classes.

Most are CPython's own functions. The exceptions are the ones that must not do more than the
language's own operators may:

* `attrgetter` and `methodcaller` read attributes through the allow-list's checked getattr
  (`fm_getattr`, `fm_callattr`), exactly as `x.name` in a program does: CPython's own would
  read any attribute of any value (the first published exploit of this project was built
  from `operator.attrgetter`);
* `pow`, `lshift`, `mul` (and their in-place forms) check the size of their result before
  computing it, as `**`, `<<` and `*` do; `mod` formats text as `%` does (no addresses);
* `countOf`, `indexOf` and `contains` on an iterator charge fuel per element;
* reprs are written with fm_repr (`operator.itemgetter(<function f>)`).
"""

from __future__ import annotations

import operator as _op
from collections.abc import Callable
from typing import Any

from flowmetal.machine.access import builtin_function, fm_callattr, fm_getattr, register_kind
from flowmetal.machine.limits import lshift, power
from flowmetal.machine.show import fm_mod, fm_repr, register_leaf, register_repr
from flowmetal.machine.stdlib.common import check_size, counted, looks_like, tick_each

__all__ = ["attrgetter", "members", "methodcaller", "register_codec"]


def _getter(name: str) -> Callable[[Any], Any]:
    parts = name.split(".")
    if len(parts) == 1:
        return lambda obj: fm_getattr(obj, name)

    def get(obj: Any) -> Any:
        for part in parts:
            obj = fm_getattr(obj, part)
        return obj

    return get


class attrgetter:
    """Return a callable object that fetches the given attribute(s) from its operand (through
    Flowmetal's allow-list: only the attributes a program may read)."""

    __slots__ = ("_fm_getters", "_fm_names")

    def __init__(self, attr: Any, /, *attrs: Any) -> None:
        names = (attr, *attrs)
        for name in names:
            if type(name) is not str:
                raise TypeError("attribute name must be a string")
        self._fm_names = names
        self._fm_getters = tuple(_getter(n) for n in names)

    def __call__(self, obj: Any, /) -> Any:
        getters = self._fm_getters
        if len(getters) == 1:
            return getters[0](obj)
        return tuple(get(obj) for get in getters)

    def __repr__(self) -> str:
        return f"operator.attrgetter({', '.join(map(repr, self._fm_names))})"


class methodcaller:
    """Return a callable object that calls the given method on its operand (a method a
    program may call: Flowmetal's allow-list)."""

    __slots__ = ("_fm_args", "_fm_kwargs", "_fm_name")

    def __init__(self, name: Any, /, *args: Any, **kwargs: Any) -> None:
        if type(name) is not str:
            raise TypeError("method name must be a string")
        self._fm_name = name
        self._fm_args = args
        self._fm_kwargs = kwargs

    def __call__(self, obj: Any, /) -> Any:
        return fm_callattr(obj, self._fm_name, *self._fm_args, **self._fm_kwargs)

    def __repr__(self) -> str:
        parts = [repr(self._fm_name), *map(fm_repr, self._fm_args)]
        parts += [f"{k}={fm_repr(v)}" for k, v in self._fm_kwargs.items()]
        return f"operator.methodcaller({', '.join(parts)})"


def _itemgetter_repr(g: Any) -> str:
    return f"operator.itemgetter({', '.join(map(fm_repr, g.__reduce__()[1]))})"


def _check_repeat(a: Any, b: Any) -> None:
    """Refuse `a * b` on a sequence before it is made, as the `*` operator does."""
    seq, n = (a, b) if type(b) is int else (b, a)
    if type(n) is int and n > 0 and isinstance(seq, str | bytes | list | tuple):
        check_size(len(seq) * n, "a repetition")


def _mul(a: Any, b: Any, /) -> Any:
    _check_repeat(a, b)
    return _op.mul(a, b)


def _imul(a: Any, b: Any, /) -> Any:
    _check_repeat(a, b)
    return _op.imul(a, b)


def _iadd(a: Any, b: Any, /) -> Any:
    if type(a) is list:  # `xs += iterable` extends in C
        b = tick_each(b)
    return _op.iadd(a, b)


def _pow(a: Any, b: Any, /) -> Any:
    return power(a, b)


def _ipow(a: Any, b: Any, /) -> Any:
    return power(a, b)


def _lshift(a: Any, b: Any, /) -> Any:
    return lshift(a, b)


def _ilshift(a: Any, b: Any, /) -> Any:
    return lshift(a, b)


def _mod(a: Any, b: Any, /) -> Any:
    return fm_mod(a, b)


def _countOf(a: Any, b: Any, /) -> int:
    return _op.countOf(tick_each(a), b)


def _indexOf(a: Any, b: Any, /) -> int:
    return _op.indexOf(tick_each(a), b)


def _contains(a: Any, b: Any, /) -> bool:
    if not hasattr(type(a), "__contains__"):  # `in` would iterate it: with fuel
        a = counted(a)
    return _op.contains(a, b)


_CHECKED: dict[str, Callable[..., Any]] = {
    "mul": _mul, "imul": _imul, "iadd": _iadd, "pow": _pow, "ipow": _ipow, "lshift": _lshift, "ilshift": _ilshift,
    "mod": _mod, "imod": _mod, "countOf": _countOf, "indexOf": _indexOf, "contains": _contains,
}

_PLAIN = ["abs", "add", "and_", "call", "concat", "delitem", "eq", "floordiv", "ge", "getitem", "gt", "iand", "iconcat", "ifloordiv", "imatmul", "index", "inv", "invert", "ior", "irshift", "is_", "is_not", "isub", "itruediv", "ixor", "le", "length_hint", "lt", "matmul", "ne", "neg", "not_", "or_", "pos", "rshift", "setitem", "sub", "truediv", "truth", "xor"]


def members() -> dict[str, Any]:
    out: dict[str, Any] = {name: getattr(_op, name) for name in _PLAIN}
    for name, fn in _CHECKED.items():
        out[name] = builtin_function(fn, name)
    out.update(attrgetter=attrgetter, itemgetter=_op.itemgetter, methodcaller=methodcaller)
    return out


def register_codec(codec: Any) -> None:
    codec.register(attrgetter, "operator.attrgetter", state=lambda g: list(g._fm_names),
                   build=lambda s: attrgetter(*s))
    codec.register(methodcaller, "operator.methodcaller", state=lambda m: [m._fm_name, m._fm_args, m._fm_kwargs],
                   build=lambda s: methodcaller(s[0], *s[1], **s[2]))


def _register() -> None:
    for cls, name in ((attrgetter, "attrgetter"), (methodcaller, "methodcaller")):
        looks_like(cls, "operator", name)
        register_kind(cls, f"operator.{name}")
        register_leaf(cls)
    register_kind(_op.itemgetter, "operator.itemgetter")
    register_repr(_op.itemgetter, _itemgetter_repr)


_register()
