"""`collections.namedtuple` (and `typing.NamedTuple`'s functional form) for Flowmetal programs.

A program makes a class at run time, so it cannot be a row of the allow-list: each class carries
its own table instead (`_fm_attrs`, read by `access.fm_getattr` for instances, `_fm_class_attrs`
for the class), holding its fields and the documented methods `_asdict`, `_replace`, `_make`,
`_fields`, `_field_defaults` (the allow-list's kind `collections.namedtuple` lists what every such
class offers besides its fields). Those names start with `_` so as not to clash with field names;
they are the only `_` names programs may read (`surface.READABLE_UNDERSCORED`), and always through
the checked getattr.

The class is CPython's own (`collections.namedtuple` builds its namespace: the same `__new__`,
errors and speed), remade on a base of ours that writes the repr with `fm_repr` (CPython's would
show a function's address) and encodes instances for snapshots, under a metaclass that lets
snapshots write the class itself: as its name, fields, defaults and module, from which a restore
makes the class again (the same class for every instance of one snapshot). Nothing of the class
leads to host code: its methods are reached only by the names in its table, and a field read on
the class (`Point.x`, CPython's `_tuplegetter`) is refused.

The tables live on the classes, not in `access`'s registries: a worker runs many programs, each
making its own classes, and nothing must keep them alive after their program is gone.
"""

from __future__ import annotations

import collections as _c
import operator
from typing import Any

from flowmetal.machine.access import register_kind
from flowmetal.machine.show import fm_repr, register_leaf
from flowmetal.machine.stdlib.common import charge, looks_like, tick_each

__all__ = ["NamedTupleBase", "NamedTupleType", "namedtuple", "register_codec", "typing_namedtuple"]

# the documented methods and data of every namedtuple class (the allow-list's rows say the same)
METHODS = ("_asdict", "_make", "_replace", "count", "index")
DATA = ("_field_defaults", "_fields")


class NamedTupleType(type):
    """The metaclass of the classes `namedtuple()` makes: snapshots recognise them by it."""

    def __repr__(cls) -> str:
        return f"<class '{cls.__module__}.{cls.__qualname__}'>"


class NamedTupleBase(tuple[Any, ...]):
    """What every namedtuple class of a program adds to CPython's namespace."""

    __slots__ = ()
    _fields: tuple[str, ...]

    def __repr__(self) -> str:
        names = type(self)._fields
        return type(self).__name__ + "(" + ", ".join(f"{n}={fm_repr(v)}" for n, v in zip(names, self)) + ")"

    def _fm_encode(self) -> tuple[str, list[Any]]:
        return "collections.namedtuple", [type(self), *self]


looks_like(NamedTupleBase, "builtins", "tuple")
register_leaf(NamedTupleBase)


def _module_name() -> str:
    """What `__name__` is in the program that calls (CPython gives the class its caller's module)."""
    from flowmetal.machine.stdlib.context import _CURRENT

    machine = _CURRENT.get()
    if machine is not None:
        name = machine.globals.get("main", {}).get("__name__")
        if type(name) is str:
            return name
    return "__flowmetal__"  # as the CPython oracle runs programs (tests/cpython_oracle.py)


def _field_getter(index: int) -> Any:
    return operator.itemgetter(index)


def _remake(base: type) -> type:
    """CPython's namedtuple class `base`, rebuilt on NamedTupleBase with its own attribute tables."""
    ns = dict(base.__dict__)
    del ns["__repr__"]
    fields: tuple[str, ...] = ns["_fields"]
    make = ns["_make"].__func__

    def _make(cls: Any, iterable: Any) -> Any:
        return make(cls, tick_each(iterable))

    _make.__name__ = "_make"
    _make.__qualname__ = f"{base.__name__}._make"
    ns["_make"] = classmethod(_make)
    ns["__qualname__"] = base.__qualname__
    cls: Any = NamedTupleType(base.__name__, (NamedTupleBase,), ns)
    attrs: dict[str, Any] = {name: operator.attrgetter(name) for name in METHODS}
    attrs.update((name, _field_getter(i)) for i, name in enumerate(fields))
    attrs["_fields"] = lambda _obj: fields
    attrs["_field_defaults"] = lambda _obj: dict(cls._field_defaults)  # a copy: the class's stays as made
    cls._fm_attrs = attrs
    cls._fm_class_attrs = {
        "__name__": operator.attrgetter("__name__"), "__qualname__": operator.attrgetter("__qualname__"),
        "_fields": lambda _cls: fields, "_field_defaults": lambda c: dict(c._field_defaults),
        "_make": operator.attrgetter("_make"), "count": lambda _cls: tuple.count, "index": lambda _cls: tuple.index,
    }
    return cls


def _defaults_of(cls: Any) -> tuple[Any, ...] | None:
    return cls.__new__.__defaults__  # (not `_field_defaults`: a program may change that dict)


def namedtuple(typename: Any, field_names: Any, *, rename: bool = False, defaults: Any = None,
               module: Any = None) -> type:
    """Returns a new subclass of tuple with named fields."""
    if isinstance(field_names, str):
        charge(len(field_names))
    else:
        field_names = list(tick_each(field_names))
    if defaults is not None:
        defaults = tuple(tick_each(defaults))
    if module is None:
        module = _module_name()
    return _remake(_c.namedtuple(typename, field_names, rename=rename, defaults=defaults, module=module))


def typing_namedtuple(typename: Any, fields: Any = None, /, **kwargs: Any) -> type:
    """`typing.NamedTuple("P", [("x", int), ("y", int)])` (the types are not kept)."""
    if fields is None:
        pairs = list(kwargs.items())
    elif kwargs:
        raise TypeError("Either list of fields or keywords can be provided to NamedTuple, not both")
    else:
        pairs = list(tick_each(fields))
    names = [name for name, _type in pairs]
    return namedtuple(typename, names, module=_module_name())


# --------------------------------------------------------------------------------
# typing.NamedTuple's class syntax
# --------------------------------------------------------------------------------

# what a class body may not define (CPython's typing._prohibited)
_PROHIBITED = frozenset({"__new__", "__init__", "__slots__", "__getnewargs__", "_fields", "_field_defaults",
                         "_make", "_replace", "_asdict", "_source"})
_SKIPPED = frozenset({"__module__", "__qualname__", "__annotations__", "__doc__"})


def _add_definitions(cls: Any, definitions: dict[str, Any]) -> None:
    """The methods and class attributes of a `class P(NamedTuple)` body, on the class made from
    its fields; what is not a dunder is also in the class's own table (instances read it)."""
    for key, value in definitions.items():
        setattr(cls, key, value)
        if not (key.startswith("__") and key.endswith("__")):
            cls._fm_attrs[key] = operator.attrgetter(key)
            cls._fm_class_attrs[key] = operator.attrgetter(key)
    cls._fm_definitions = dict(definitions)


class NamedTupleMeta(type):
    """What `class Employee(NamedTuple): ...` is made by (the program's `NamedTuple` base stands
    for `NamedTupleClass`, see `classes.fm_bases`): a namedtuple class from the body's annotated
    fields and their defaults, with the body's methods."""

    def __new__(mcls, typename: str, bases: tuple[type, ...], ns: dict[str, Any]) -> Any:
        if not bases:
            return super().__new__(mcls, typename, bases, ns)
        annotations = ns.get("__annotations__", {})
        fields = list(annotations)
        defaults = []
        for name in fields:
            if name in ns:
                defaults.append(ns[name])
            elif defaults:
                raise TypeError(f"Non-default namedtuple field {name} cannot follow default field"
                                f"{'s' if len(defaults) > 1 else ''} {', '.join(fields[:fields.index(name)][-len(defaults):])}")
        charge(len(ns))
        cls = namedtuple(typename, fields, defaults=defaults or None, module=ns.get("__module__", _module_name()))
        definitions = {}
        for key, value in ns.items():
            if key in _PROHIBITED:
                raise AttributeError("Cannot overwrite NamedTuple attribute " + key)
            if key not in _SKIPPED and key not in annotations:
                definitions[key] = value
        _add_definitions(cls, definitions)
        return cls


class NamedTupleClass(metaclass=NamedTupleMeta):
    """The base a program's `class P(NamedTuple)` statement gets instead of `typing.NamedTuple`."""


def _class_state(cls: Any) -> list[Any]:
    if not isinstance(cls, NamedTupleType) or "_fm_attrs" not in cls.__dict__:
        from flowmetal.errors import SnapshotError

        raise SnapshotError(f"cannot snapshot the class {cls.__name__!r}")
    made: Any = cls
    definitions = tuple(getattr(made, "_fm_definitions", {}).items())
    return [made.__name__, list(made._fields), _defaults_of(made), made.__module__, made.__qualname__, definitions]


def _class_build(state: list[Any]) -> type:
    name, fields, defaults, module, qualname, definitions = state
    cls: Any = _remake(_c.namedtuple(name, fields, defaults=defaults, module=module))
    cls.__qualname__ = qualname
    if definitions:
        for key, _value in definitions:
            if not isinstance(key, str) or key in _PROHIBITED or key in _SKIPPED:
                raise ValueError(f"corrupt snapshot: a namedtuple attribute {key!r}")
        _add_definitions(cls, dict(definitions))
    return cls


def _instance(state: list[Any]) -> Any:
    cls: Any = state[0]
    if not isinstance(cls, NamedTupleType):
        raise TypeError("a namedtuple's class must be a namedtuple class")
    return tuple.__new__(cls, state[1:])  # type: ignore[arg-type]


def register_codec(codec: Any) -> None:
    codec.register(NamedTupleType, "collections.namedtuple.class", state=_class_state, build=_class_build)
    codec.register_values({"collections.namedtuple": _instance})


# One class stands for them all in the allow-list's registry (the closure tests read it); the
# others are never registered (see the module docstring).
SAMPLE = namedtuple("Sample", "first second")
register_kind(SAMPLE, "collections.namedtuple")


def _standin(base: Any) -> Any:
    from flowmetal.machine.stdlib.typing import Hint

    if type(base) is Hint and base._fm_name == "NamedTuple" and base._fm_args is None:
        return NamedTupleClass
    return None


def _register_standin() -> None:
    from flowmetal.machine.classes import BASE_STANDINS

    BASE_STANDINS.append(_standin)


_register_standin()
