"""`collections` for Flowmetal programs: `Counter`, `defaultdict`, `deque`, `OrderedDict` and
`ChainMap`, and `namedtuple` (in `namedtuples.py`).

Each is a subclass of CPython's own class (named and printed as CPython's), so results,
errors and speed are CPython's. What the subclasses add:

* reprs written with `fm_repr` (CPython's would show the address of a function held as a
  default factory or an element);
* fuel for what they consume in C (`Counter(iterable)`, `deque(iterable)`, `extend`, ...) and
  a size check before `deque * n`;
* snapshot encodings (state as plain data, mutable-style so that cycles survive);
* the ordered dict views Flowmetal gives every dict (`OrderedDict.keys()` prints as
  `odict_keys([...])`; set operations on views keep insertion order), and views of a
  `ChainMap` whose set operations give Flowmetal's ordered sets.

An iterator over a deque is written as the items it has left (as dict iterators are): after a
restore it no longer notices changes to the deque.
"""

from __future__ import annotations

import collections as _c
import collections.abc as _abc
from collections.abc import Callable, Iterable
from typing import Any

from flowmetal.machine.access import register_kind
from flowmetal.machine.limits import register_sized
from flowmetal.machine.show import fm_repr, register_leaf
from flowmetal.machine.stdlib.common import (
    charge,
    check_size,
    looks_like,
    register_methods,
    tick_each,
)
from flowmetal.machine.stdlib.namedtuples import namedtuple
from flowmetal.machine.values import FmSet
from flowmetal.machine.views import ItemsView, KeysView, ValuesView, view_of

__all__ = ["ChainMap", "Counter", "OrderedDict", "defaultdict", "deque", "members", "register_codec"]

_REPRS: set[int] = set()  # containers whose repr is being written (for CPython's recursion markers)


def _guarded(marker: str) -> Callable[[Callable[[Any], str]], Callable[[Any], str]]:
    """A `__repr__` that writes `marker` for a container met again inside its own repr."""

    def wrap(method: Callable[[Any], str]) -> Callable[[Any], str]:
        def __repr__(self: Any) -> str:
            key = id(self)
            if key in _REPRS:
                return marker
            _REPRS.add(key)
            try:
                return method(self)
            finally:
                _REPRS.discard(key)

        return __repr__

    return wrap


def _pairs(arg: Any) -> Any:
    """A dict constructor's positional argument, charged: a mapping by its size, anything else
    (an iterable of pairs) by the element."""
    if hasattr(arg, "keys"):
        try:
            charge(len(arg))
        except TypeError:
            pass
        return arg
    return tick_each(arg)


# --------------------------------------------------------------------------------
# deque
# --------------------------------------------------------------------------------


class deque(_c.deque):
    __slots__ = ()

    def __init__(self, iterable: Iterable[Any] = (), maxlen: Any = None) -> None:
        super().__init__(tick_each(iterable), maxlen)

    def extend(self, iterable: Iterable[Any], /) -> None:
        super().extend(tick_each(iterable))

    def extendleft(self, iterable: Iterable[Any], /) -> None:
        super().extendleft(tick_each(iterable))

    def __iadd__(self, other: Iterable[Any]) -> Any:
        return super().__iadd__(tick_each(other))

    def _fm_times(self, n: Any) -> None:
        if type(n) is int and n > 1:
            size = len(self) * n if self.maxlen is None else min(len(self) * n, self.maxlen)
            check_size(size, "deque repetition")
            charge(size)

    def __mul__(self, n: Any) -> Any:
        self._fm_times(n)
        return super().__mul__(n)

    __rmul__ = __mul__

    def __imul__(self, n: Any) -> Any:
        self._fm_times(n)
        return super().__imul__(n)

    def index(self, value: Any, *args: Any) -> int:
        try:
            return super().index(value, *args)
        except ValueError as e:
            if str(e).endswith(" is not in deque"):
                raise ValueError(f"{fm_repr(value)} is not in deque") from None
            raise

    @_guarded("[...]")
    def __repr__(self) -> str:
        items = "[" + ", ".join(fm_repr(x) for x in self) + "]"
        if self.maxlen is None:
            return f"deque({items})"
        return f"deque({items}, maxlen={self.maxlen})"


_DEQUE_ITER: type = type(iter(_c.deque()))
_DEQUE_REV: type = type(reversed(_c.deque()))


def _deque_iter_state(it: Any) -> list[Any]:
    """What a deque iterator has left to give (see the module docstring)."""
    dq, index = it.__reduce__()[1]
    items = list(dq)
    if type(it) is _DEQUE_REV:
        items.reverse()
    return items[index:]


# --------------------------------------------------------------------------------
# Counter
# --------------------------------------------------------------------------------


class Counter(_c.Counter):
    """CPython's Counter; its operators return Counters of this class."""

    __slots__ = ()

    def update(self, iterable: Any = None, /, **kwds: Any) -> None:
        if iterable is not None:
            iterable = _pairs(iterable) if isinstance(iterable, _abc.Mapping) else tick_each(iterable)
        super().update(iterable, **kwds)

    def subtract(self, iterable: Any = None, /, **kwds: Any) -> None:
        if iterable is not None:
            iterable = _pairs(iterable) if isinstance(iterable, _abc.Mapping) else tick_each(iterable)
        super().subtract(iterable, **kwds)

    def _fm_own(self, result: Any) -> Any:
        if type(result) is _c.Counter:
            charge(len(result))
            out = Counter()
            dict.update(out, result)
            return out
        return result

    def __add__(self, other: Any) -> Any:
        return self._fm_own(super().__add__(other))

    def __sub__(self, other: Any) -> Any:
        return self._fm_own(super().__sub__(other))

    def __or__(self, other: Any) -> Any:
        return self._fm_own(super().__or__(other))

    def __and__(self, other: Any) -> Any:
        return self._fm_own(super().__and__(other))

    def __pos__(self) -> Any:
        return self._fm_own(super().__pos__())

    def __neg__(self) -> Any:
        return self._fm_own(super().__neg__())

    @_guarded("...")
    def __repr__(self) -> str:
        if not self:
            return "Counter()"
        try:
            d = dict(self.most_common())
        except TypeError:  # values that do not order
            d = dict(self)
        return f"Counter({fm_repr(d)})"


# --------------------------------------------------------------------------------
# defaultdict and OrderedDict
# --------------------------------------------------------------------------------


class defaultdict(_c.defaultdict):
    __slots__ = ()

    def __init__(self, default_factory: Any = None, *args: Any, **kwargs: Any) -> None:
        if args:
            args = (_pairs(args[0]), *args[1:])
        super().__init__(default_factory, *args, **kwargs)

    @_guarded("...")
    def __repr__(self) -> str:
        return f"defaultdict({fm_repr(self.default_factory)}, {fm_repr(dict(self))})"


class OrderedDict(_c.OrderedDict):
    __slots__ = ()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if args:
            args = (_pairs(args[0]), *args[1:])
        super().__init__(*args, **kwargs)

    def update(self, *args: Any, **kwargs: Any) -> None:
        if args:
            args = (_pairs(args[0]), *args[1:])
        super().update(*args, **kwargs)

    @_guarded("...")
    def __repr__(self) -> str:
        if not self:
            return "OrderedDict()"
        return "OrderedDict([" + ", ".join(f"({fm_repr(k)}, {fm_repr(v)})" for k, v in self.items()) + "])"


class _OdictKeys(KeysView):
    __slots__ = ()

    def __repr__(self) -> str:
        return f"odict_keys({fm_repr(list(self))})"

    def _fm_encode(self) -> tuple[str, list[Any]]:
        return "odict_keys", [self._fm_d]


class _OdictValues(ValuesView):
    __slots__ = ()

    def __repr__(self) -> str:
        return f"odict_values({fm_repr(list(self))})"

    def _fm_encode(self) -> tuple[str, list[Any]]:
        return "odict_values", [self._fm_d]


class _OdictItems(ItemsView):
    __slots__ = ()

    def __repr__(self) -> str:
        return f"odict_items({fm_repr(list(self))})"

    def _fm_encode(self) -> tuple[str, list[Any]]:
        return "odict_items", [self._fm_d]


_ODICT_VIEWS = {"keys": _OdictKeys, "values": _OdictValues, "items": _OdictItems}


def _odict_view(kind: str) -> Callable[[Any], Any]:
    cls = _ODICT_VIEWS[kind]

    def method(d: Any, /) -> Any:
        if not isinstance(d, _c.OrderedDict):
            raise TypeError(f"descriptor '{kind}' for 'collections.OrderedDict' objects doesn't apply to a "
                            f"'{type(d).__name__}' object")
        return cls(d)

    method.__name__ = method.__qualname__ = kind
    return method


_ODICT_ITER: type = type(iter(_c.OrderedDict()))


# --------------------------------------------------------------------------------
# ChainMap
# --------------------------------------------------------------------------------


class ChainMap(_c.ChainMap):
    @_guarded("...")
    def __repr__(self) -> str:
        return "ChainMap(" + ", ".join(fm_repr(m) for m in self.maps) + ")"

    def keys(self) -> Any:
        return _ChainKeys(self)

    def items(self) -> Any:
        return _ChainItems(self)

    def values(self) -> Any:
        return _ChainValues(self)


def _ordered_set(cls: Any, it: Iterable[Any]) -> FmSet:
    return FmSet(it)


class _ChainKeys(_abc.KeysView):
    """`ChainMap.keys()`: set operations give Flowmetal's ordered sets (CPython's give host sets)."""

    _from_iterable = classmethod(_ordered_set)  # type: ignore[assignment]
    _mapping: Any

    def __repr__(self) -> str:
        return f"KeysView({fm_repr(self._mapping)})"


class _ChainItems(_abc.ItemsView):
    _from_iterable = classmethod(_ordered_set)  # type: ignore[assignment]
    _mapping: Any

    def __repr__(self) -> str:
        return f"ItemsView({fm_repr(self._mapping)})"


class _ChainValues(_abc.ValuesView):
    _mapping: Any

    def __repr__(self) -> str:
        return f"ValuesView({fm_repr(self._mapping)})"


# --------------------------------------------------------------------------------
# the module
# --------------------------------------------------------------------------------


def members() -> dict[str, Any]:
    return {"Counter": Counter, "defaultdict": defaultdict, "deque": deque, "OrderedDict": OrderedDict,
            "ChainMap": ChainMap, "namedtuple": namedtuple}


def _fill_deque(d: deque, state: list[Any]) -> None:
    _c.deque.__init__(d, state[0], state[1])


def _fill_dict(d: Any, state: list[Any]) -> None:
    dict.update(d, state[0])


def _fill_defaultdict(d: Any, state: list[Any]) -> None:
    d.default_factory = state[0]
    dict.update(d, state[1])


def _fill_odict(d: Any, state: list[Any]) -> None:
    _c.OrderedDict.update(d, state[0])


def _fill_chainmap(m: Any, state: list[Any]) -> None:
    m.maps = state[0]


def register_codec(codec: Any) -> None:
    for cls in (deque, Counter, defaultdict, OrderedDict, ChainMap):
        register_methods(codec, cls, f"collections.{cls.__name__}")
    codec.register(deque, "collections.deque", state=lambda d: [list(d), d.maxlen],
                   new=lambda: deque.__new__(deque), fill=_fill_deque)
    codec.register(Counter, "collections.Counter", state=lambda c: [dict(c)],
                   new=lambda: Counter.__new__(Counter), fill=_fill_dict)
    codec.register(defaultdict, "collections.defaultdict", state=lambda d: [d.default_factory, dict(d)],
                   new=lambda: defaultdict.__new__(defaultdict), fill=_fill_defaultdict)
    codec.register(OrderedDict, "collections.OrderedDict", state=lambda d: [list(d.items())],
                   new=lambda: OrderedDict.__new__(OrderedDict), fill=_fill_odict)
    codec.register(ChainMap, "collections.ChainMap", state=lambda m: [m.maps],
                   new=lambda: ChainMap.__new__(ChainMap), fill=_fill_chainmap)
    for it_type, tag in ((_DEQUE_ITER, "collections._deque_iterator"),
                         (_DEQUE_REV, "collections._deque_reverse_iterator")):
        codec.register(it_type, tag, state=_deque_iter_state, build=iter)
    codec.register(_ODICT_ITER, "collections.odict_iterator", state=lambda it: it.__reduce__()[1][0], build=iter)
    codec.register_values({
        "odict_keys": lambda s: _OdictKeys(s[0]),
        "odict_values": lambda s: _OdictValues(s[0]),
        "odict_items": lambda s: _OdictItems(s[0]),
    })
    for view, tag in ((_ChainKeys, "KeysView"), (_ChainItems, "ItemsView"), (_ChainValues, "ValuesView")):
        codec.register(view, f"collections.ChainMap.{tag}", state=lambda v: v._mapping,
                       build=lambda m, view=view: view(m))


def _register() -> None:
    views = {k: view_of(k) for k in ("keys", "values", "items")}
    for cls, name, overrides in (
        (deque, "deque", {}),
        (Counter, "Counter", views),
        (defaultdict, "defaultdict", views),
        (OrderedDict, "OrderedDict", {k: _odict_view(k) for k in ("keys", "values", "items")}),
        (ChainMap, "ChainMap", {"keys": ChainMap.keys, "items": ChainMap.items, "values": ChainMap.values}),
    ):
        looks_like(cls, "collections", name)
        register_kind(cls, f"collections.{name}", overrides)
        register_leaf(cls)
    for view, name in ((_OdictKeys, "odict_keys"), (_OdictValues, "odict_values"), (_OdictItems, "odict_items")):
        looks_like(view, "builtins", name)
        register_kind(view, name)
        register_leaf(view)
    for chain_view, name in ((_ChainKeys, "KeysView"), (_ChainItems, "ItemsView"), (_ChainValues, "ValuesView")):
        looks_like(chain_view, "collections.abc", name)
        register_kind(chain_view, f"collections.abc.{name}")
        register_leaf(chain_view)
    register_kind(_DEQUE_ITER, "_collections._deque_iterator")
    register_kind(_DEQUE_REV, "_collections._deque_reverse_iterator")
    register_kind(_ODICT_ITER, "odict_iterator")
    register_sized(deque, Counter, defaultdict, OrderedDict, ChainMap, _OdictKeys, _OdictValues, _OdictItems,
                   _ChainKeys, _ChainItems, _ChainValues)


_register()
