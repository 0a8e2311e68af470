"""Dict views as programs see them: `d.keys()`, `d.values()` and `d.items()`.

CPython's own views compute set operations (`d.keys() - {...}`, `d.items() ^ s`)
into host sets, which iterate in hash order and so change with
PYTHONHASHSEED. These views keep CPython's API and behaviour but compute set
operations into Flowmetal's insertion-ordered sets (left operand first).
Iteration, `len`, `in` and `reversed()` use the dict's own C iterators, so a
`for` loop over `d.items()` costs the same as in CPython once started.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from flowmetal.machine.values import (
    FmSet,
    _as_dict,
    _difference,
    _intersection,
    _SetBase,
    _symmetric,
    _union,
)

__all__ = ["ItemsView", "KeysView", "ValuesView", "view_of"]


class _View:
    __slots__ = ("_fm_d",)
    _KIND = ""

    def __init__(self, d: dict[Any, Any]) -> None:
        self._fm_d = d

    def __len__(self) -> int:
        return len(self._fm_d)

    def _fm_encode(self) -> tuple[str, list[Any]]:
        return "dict_" + self._KIND, [self._fm_d]

    def __repr__(self) -> str:
        from flowmetal.machine.show import fm_repr

        return f"dict_{self._KIND}({fm_repr(list(self))})"  # type: ignore[call-overload]


def _elements(other: object) -> dict[Any, None] | None:
    """The right operand of a set operator as an ordered dict of its elements (None: not iterable)."""
    od = _as_dict(other)
    if od is not None:
        return od
    if isinstance(other, _View):
        return dict.fromkeys(other)  # type: ignore[call-overload]
    try:
        return dict.fromkeys(other)  # type: ignore[call-overload]
    except TypeError as e:
        if "not iterable" in str(e):
            return None
        raise


def _view_comparison(op: Callable[[Any, Any], bool]) -> Callable[[Any, object], Any]:
    """A comparison of a keys or items view with another set-like value (as sets compare)."""

    def compare(self: Any, other: object) -> Any:
        od = self._fm_compare(other)
        return NotImplemented if od is None else op(self._fm_own().keys(), od.keys())

    return compare


class _SetLikeView(_View):
    """Views whose elements are unique (keys, items): they support set operators."""

    __slots__ = ()

    def _fm_own(self) -> dict[Any, None]:
        return dict.fromkeys(self)  # type: ignore[call-overload]

    def _fm_op(self, other: object, combine: Any) -> Any:
        od = _elements(other)
        if od is None:
            return NotImplemented
        return FmSet._wrap(combine(self._fm_own(), od))

    def _fm_rop(self, other: object, combine: Any) -> Any:
        od = _elements(other)
        if od is None:
            return NotImplemented
        return FmSet._wrap(combine(od, self._fm_own()))

    def __and__(self, other: object) -> Any:
        return self._fm_op(other, _intersection)

    def __or__(self, other: object) -> Any:
        return self._fm_op(other, _union)

    def __sub__(self, other: object) -> Any:
        return self._fm_op(other, _difference)

    def __xor__(self, other: object) -> Any:
        return self._fm_op(other, _symmetric)

    def __rand__(self, other: object) -> Any:
        return self._fm_rop(other, _intersection)

    def __ror__(self, other: object) -> Any:
        return self._fm_rop(other, _union)

    def __rsub__(self, other: object) -> Any:
        return self._fm_rop(other, _difference)

    def __rxor__(self, other: object) -> Any:
        return self._fm_rop(other, _symmetric)

    def _fm_compare(self, other: object) -> dict[Any, None] | None:
        if isinstance(other, _SetLikeView | _SetBase):
            return _elements(other)
        return None

    __eq__ = _view_comparison(operator.eq)
    __ne__ = _view_comparison(operator.ne)
    __le__ = _view_comparison(operator.le)
    __lt__ = _view_comparison(operator.lt)
    __ge__ = _view_comparison(operator.ge)
    __gt__ = _view_comparison(operator.gt)

    __hash__ = None  # type: ignore[assignment]

    def isdisjoint(self, other: Iterable[Any], /) -> bool:
        own = self._fm_own()
        return not any(map(own.__contains__, other))


class KeysView(_SetLikeView):
    __slots__ = ()
    _KIND = "keys"

    def __iter__(self) -> Iterator[Any]:
        return iter(self._fm_d)

    def __reversed__(self) -> Iterator[Any]:
        return reversed(self._fm_d)

    def __contains__(self, key: object) -> bool:
        return key in self._fm_d

    def _fm_own(self) -> dict[Any, None]:
        return dict.fromkeys(self._fm_d)


class ItemsView(_SetLikeView):
    __slots__ = ()
    _KIND = "items"

    def __iter__(self) -> Iterator[Any]:
        return iter(self._fm_d.items())

    def __reversed__(self) -> Iterator[Any]:
        return reversed(self._fm_d.items())

    def __contains__(self, item: object) -> bool:
        return item in self._fm_d.items()  # type: ignore[operator]


class ValuesView(_View):
    __slots__ = ()
    _KIND = "values"

    def __iter__(self) -> Iterator[Any]:
        return iter(self._fm_d.values())

    def __reversed__(self) -> Iterator[Any]:
        return reversed(self._fm_d.values())

    def __contains__(self, value: object) -> bool:
        return value in self._fm_d.values()


for _cls, _name in ((KeysView, "dict_keys"), (ItemsView, "dict_items"), (ValuesView, "dict_values")):
    _cls.__name__ = _cls.__qualname__ = _name
    _cls.__module__ = "builtins"

_VIEWS = {"keys": KeysView, "values": ValuesView, "items": ItemsView}


def view_of(kind: str) -> Any:
    """`dict.keys` and friends as unbound methods: `dict.keys(d)` checks `d` as CPython does."""
    cls = _VIEWS[kind]

    def method(d: Any, /) -> Any:
        if not isinstance(d, dict):
            raise TypeError(f"descriptor '{kind}' for 'dict' objects doesn't apply to a "
                            f"'{type(d).__name__}' object")
        return cls(d)

    method.__name__ = method.__qualname__ = kind
    return method


VIEW_DECODERS = {
    "dict_keys": lambda state: KeysView(state[0]),
    "dict_values": lambda state: ValuesView(state[0]),
    "dict_items": lambda state: ItemsView(state[0]),
}
