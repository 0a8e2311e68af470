"""`collections.abc` for programs: the names, for annotations and `isinstance`.

Programs import these names mostly for annotations (never evaluated), sometimes to test a
value (`isinstance(x, Iterable)`). CPython's own ABCs cannot be handed out (they are classes
with `register`, `__subclasshook__`, `_abc_impl`, ...), so each name is an `AbcName` of ours:
it prints as CPython's class does (`<class 'collections.abc.Iterable'>`), can be subscripted
(`Iterable[int]` prints as `collections.abc.Iterable[int]`), answers `isinstance` through the
CPython ABC, and creates nothing.
"""

from __future__ import annotations

import collections.abc as _abc
from typing import Any

from flowmetal.machine.access import register_kind
from flowmetal.machine.show import register_leaf
from flowmetal.machine.stdlib.typing import _arg_repr

__all__ = ["NAMES", "AbcName", "members", "register_codec"]

NAMES = sorted(n for n in _abc.__all__ if not n.startswith("_"))


class AbcName:
    """A name of `collections.abc`, bare (`Iterable`) or subscripted (`Iterable[int]`)."""

    __slots__ = ("_fm_args", "_fm_name")

    def __init__(self, name: str, args: tuple[Any, ...] | None = None) -> None:
        self._fm_name = name
        self._fm_args = args

    def __getitem__(self, params: Any) -> AbcName:
        if self._fm_args is not None:
            raise TypeError(f"{self!r} is not a generic class")
        args = params if type(params) is tuple and params else (params,)
        if self._fm_name == "Callable" and len(args) == 2 and type(args[0]) is list:
            args = (tuple(args[0]), args[1])
        return AbcName(self._fm_name, args)

    def __instancecheck__(self, obj: Any) -> bool:
        if self._fm_args is not None:
            raise TypeError("isinstance() argument 2 cannot be a parameterized generic")
        return isinstance(obj, getattr(_abc, self._fm_name))

    def __eq__(self, other: object) -> bool:
        return type(other) is AbcName and (self._fm_name, self._fm_args) == (other._fm_name, other._fm_args)

    def __hash__(self) -> int:
        return hash((self._fm_name, self._fm_args))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(f"Can't instantiate abstract class {self._fm_name}")

    def __getattr__(self, attr: str) -> Any:  # `__name__`, `__qualname__`: not class attributes
        if attr in ("__name__", "__qualname__") and self._fm_args is None:
            return self._fm_name
        raise AttributeError(f"type object '{self._fm_name}' has no attribute '{attr}'")

    def __repr__(self) -> str:
        if self._fm_args is None:
            return f"<class 'collections.abc.{self._fm_name}'>"
        if self._fm_name == "Callable" and len(self._fm_args) == 2 and type(self._fm_args[0]) is tuple:
            params = "[" + ", ".join(_arg_repr(a) for a in self._fm_args[0]) + "]"
            return f"collections.abc.Callable[{params}, {_arg_repr(self._fm_args[1])}]"
        return f"collections.abc.{self._fm_name}[" + ", ".join(_arg_repr(a) for a in self._fm_args) + "]"

    def _fm_encode(self) -> tuple[str, list[Any]]:
        return "collections.abc.name", [self._fm_name, self._fm_args]


AbcName.__name__ = AbcName.__qualname__ = "ABCMeta"


def members() -> dict[str, Any]:
    return {name: AbcName(name) for name in NAMES}


def register_codec(codec: Any) -> None:
    codec.register_values({
        "collections.abc.name": lambda s: AbcName(s[0], None if s[1] is None else tuple(s[1])),
    })


register_kind(AbcName, "abc.ABCMeta")
register_leaf(AbcName)
