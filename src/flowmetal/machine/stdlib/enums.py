"""`enum` for Flowmetal programs: `Enum`, `IntEnum`, `StrEnum`, `Flag`, `IntFlag`, `auto`,
`unique` and `EnumType`/`EnumMeta` (for `isinstance`).

A program's enum is one of its own classes (`machine/classes.py`) made by CPython's own enum
machinery: the bases programs derive from are CPython's `Enum`, `IntEnum`, ... with the hidden
base of the program's classes (`FlowObject`) mixed in and a metaclass of ours, so members,
aliases, `auto()`, `Color(1)`, `Color["RED"]`, iteration, flags and every repr and error are
CPython's. What the program may read is the program's own class body (its members and methods)
and the members' `name` and `value` (kept in the bases' own dicts); the machinery's internals
(`_member_map_`, `_value2member_map_`, `_new_member_`, the metaclass's methods, ...) are not
attributes of a program's class (`enum_getattr`). `__members__` is a read-only mapping.

The metaclass records which names of the class body are the program's (`_fm_enum_defs`): a
snapshot writes an enum class as its name, bases, members (name and value, aliases included)
and those definitions, and a restore runs CPython's enum machinery on them again; a member is
written as its class and name (a flag's combination as its class and value).
"""

from __future__ import annotations

import enum as _enum
import types
from typing import Any

from flowmetal.machine.access import register_kind
from flowmetal.machine.classes import GETATTR_HOOKS, MODULE, NOT_MINE, FlowObject
from flowmetal.machine.limits import register_sized
from flowmetal.machine.show import fm_repr, register_leaf, register_repr
from flowmetal.machine.stdlib.common import charge, tick_each
from flowmetal.machine.stdlib.copy import register_atom_test

__all__ = ["ENUM_BASES", "EnumType", "enum_getattr", "members", "register_codec"]

_SKIP_DEFS = frozenset({"__module__", "__qualname__", "_ignore_", "_order_", "__doc__"})


class EnumType(_enum.EnumType):
    """The metaclass of the program's enums: CPython's, recording the program's definitions."""

    def __new__(metacls, cls: str, bases: tuple[type, ...], classdict: Any, **kwds: Any) -> Any:
        members = dict.fromkeys(getattr(classdict, "_member_names", ()))
        inherited = getattr(bases[-1], "_generate_next_value_", None) if bases else None
        defs = tuple(k for k in classdict if k not in members and k not in _SKIP_DEFS
                     and not (k == "_generate_next_value_" and classdict[k] is inherited))  # (put by __prepare__)
        enum_class = super().__new__(metacls, cls, bases, classdict, **kwds)
        type.__setattr__(enum_class, "_fm_enum_defs", defs)
        return enum_class

    def __setattr__(cls, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        # an attribute the program sets on its enum later (kept by snapshots, after the class is
        # made: it may hold the class's own members)
        defs = cls.__dict__.get("_fm_enum_defs")
        later = cls.__dict__.get("_fm_enum_later", ())
        if defs is not None and name not in defs and name not in later and name not in _SKIP_DEFS \
                and not name.startswith("_fm_"):
            type.__setattr__(cls, "_fm_enum_later", (*later, name))

    # iterators kept across waits: over a tuple of the members (CPython's are host generators)
    def __iter__(cls) -> Any:
        return iter(tuple(super().__iter__()))

    def __reversed__(cls) -> Any:
        return iter(tuple(super().__reversed__()))

    def __call__(cls, value: Any, names: Any = None, *, module: Any = None, qualname: Any = None,
                 type: Any = None, start: int = 1, boundary: Any = None) -> Any:
        if names is None:
            return super().__call__(value)
        # the functional API (`Enum("Color", "RED GREEN")`): CPython would read the module's
        # name from the caller's frame; the names are consumed in C, so with fuel
        if isinstance(names, str | dict):
            charge(len(names))
        else:
            names = list(tick_each(names))
        return super().__call__(value, names, module=MODULE, qualname=qualname, type=type, start=start,
                                boundary=boundary)


def _base(name: str, host: type) -> type:
    """The program-visible `enum.<name>`: CPython's `host`, with FlowObject mixed in (first, so
    that CPython's enum sees `host` last) and CPython's own reprs (FlowObject has its own)."""
    ns: dict[str, Any] = {"__module__": "enum", "__qualname__": name}
    for attr in ("__repr__", "__str__", "__format__"):
        ns[attr] = getattr(host, attr)
    if issubclass(host, _enum.Enum) and not issubclass(host, int | str):
        ns["__hash__"] = _enum.Enum.__hash__
    # what a program reads of a member: kept in this class's own dict (see enum_getattr)
    if issubclass(host, _enum.Flag):  # a flag's members, as an iterator kept across waits
        ns["__iter__"] = lambda self: iter(tuple(host.__iter__(self)))
    ns["name"] = _enum.Enum.__dict__["name"]
    ns["value"] = _enum.Enum.__dict__["value"]
    bases = (FlowObject, host)
    cls = EnumType(name, bases, _prepared(name, bases, ns))
    # how a member's value is written in its repr: CPython's choice for `host`, but never
    # FlowObject's repr (which CPython's enum would pick, as a mixin's), and without addresses
    type.__setattr__(cls, "_value_repr_", getattr(host, "_value_repr_", None) or fm_repr)
    return cls


def _prepared(name: str, bases: tuple[type, ...], ns: dict[str, Any]) -> Any:
    classdict = EnumType.__prepare__(name, bases)
    for k, v in ns.items():
        classdict[k] = v
    return classdict


Enum = _base("Enum", _enum.Enum)
IntEnum = _base("IntEnum", _enum.IntEnum)
StrEnum = _base("StrEnum", _enum.StrEnum)
Flag = _base("Flag", _enum.Flag)
IntFlag = _base("IntFlag", _enum.IntFlag)
ENUM_BASES: tuple[type, ...] = (Enum, IntEnum, StrEnum, Flag, IntFlag)


def is_enum_class(x: Any) -> bool:
    return isinstance(x, EnumType) and x not in ENUM_BASES


def is_enum_member(x: Any) -> bool:
    return isinstance(type(x), EnumType) and not isinstance(x, type)


# --------------------------------------------------------------------------------
# what a program may read
# --------------------------------------------------------------------------------

def _program_defs(cls: Any) -> frozenset[str]:
    names: set[str] = set()
    for k in cls.__mro__:
        names.update(k.__dict__.get("_fm_enum_defs", ()))
        names.update(k.__dict__.get("_fm_enum_later", ()))
    return frozenset(names)


def enum_getattr(obj: Any, name: str) -> Any:
    """A routed attribute of an enum class or member (NOT_MINE: not an enum). Allowed: the
    members, what the program's class bodies define, `name`/`value` of a member, `__members__`
    of a class; every other name is an `AttributeError`, as if the machinery had none."""
    if isinstance(obj, EnumType):
        if name == "__members__":
            return types.MappingProxyType(dict(obj.__members__))
        if name in ("__name__", "__qualname__", "__doc__"):
            return getattr(obj, name)
        if name in obj._member_map_ or name in _program_defs(obj):
            return getattr(obj, name)
        raise AttributeError(f"type object '{obj.__name__}' has no attribute '{name}'")
    if is_enum_member(obj):
        t = type(obj)
        own = obj.__dict__
        if name in ("name", "value") or name in _program_defs(t) or name in t._member_map_:
            return getattr(obj, name)
        if name in own and not name.startswith("_"):  # set by the program (`self.mass = mass`)
            return own[name]
        if name in ("__repr__", "__str__", "__format__", "__eq__", "__ne__", "__lt__", "__le__", "__gt__",
                    "__ge__", "__init__"):
            return getattr(obj, name)
        raise AttributeError(f"'{t.__name__}' object has no attribute '{name}'")
    return NOT_MINE


# --------------------------------------------------------------------------------
# the module
# --------------------------------------------------------------------------------


def members() -> dict[str, Any]:
    return {"Enum": Enum, "IntEnum": IntEnum, "StrEnum": StrEnum, "Flag": Flag, "IntFlag": IntFlag,
            "auto": _enum.auto, "unique": _enum.unique, "EnumType": EnumType,
            "EnumMeta": EnumType}


# --------------------------------------------------------------------------------
# snapshots
# --------------------------------------------------------------------------------


def _class_head(cls: Any) -> list[Any]:
    # (tuples: a head's lists would still be empty shells when `new` reads them)
    members = tuple((k, m._value_) for k, m in cls._member_map_.items())
    defs = tuple((k, cls.__dict__[k]) for k in cls._fm_enum_defs if k in cls.__dict__)
    return [cls.__name__, cls.__qualname__, cls.__bases__, members, defs]


def _class_new(head: list[Any]) -> Any:
    name, qualname, bases, member_list, defs = head
    if not (isinstance(name, str) and isinstance(qualname, str) and bases
            and all(isinstance(b, EnumType) for b in bases)):
        raise ValueError("corrupt snapshot: an enum with unexpected bases")
    classdict = EnumType.__prepare__(name, tuple(bases))
    classdict["__module__"] = MODULE
    classdict["__qualname__"] = qualname
    for k, v in defs:
        classdict[k] = v
    for k, v in member_list:
        classdict[k] = v
    return EnumType(name, tuple(bases), classdict)


def _class_body(cls: Any) -> list[Any]:
    out: list[Any] = []
    for k in cls.__dict__.get("_fm_enum_later", ()):
        if k in cls.__dict__:
            out += [k, cls.__dict__[k]]
    return out


def _class_fill(cls: Any, body: list[Any]) -> None:
    for k, v in zip(body[::2], body[1::2]):
        if not isinstance(k, str) or k.startswith("__") or k.startswith("_fm_"):
            raise ValueError(f"corrupt snapshot: enum attribute {k!r}")
        setattr(cls, k, v)


def _member_head(m: Any) -> list[Any]:
    cls = type(m)
    if m._name_ is not None and cls._member_map_.get(m._name_) is m:
        return [cls, m._name_, True]
    return [cls, m._value_, False]  # a flag's combination (a pseudo-member)


def _member_new(head: list[Any]) -> Any:
    cls, key, by_name = head
    if not is_enum_class(cls):
        raise ValueError("corrupt snapshot: a member of an unknown enum")
    return cls[key] if by_name else cls(key)


def _member_body(m: Any) -> list[Any]:
    out: list[Any] = []
    for k, v in m.__dict__.items():
        if not k.startswith("_"):
            out += [k, v]
    return out


def _member_fill(m: Any, body: list[Any]) -> None:
    for k, v in zip(body[::2], body[1::2]):
        if not isinstance(k, str) or k.startswith("_"):
            raise ValueError(f"corrupt snapshot: member attribute {k!r}")
        m.__dict__[k] = v


def _mappingproxy_repr(m: Any) -> str:
    return f"mappingproxy({fm_repr(dict(m))})"


def register_codec(codec: Any) -> None:
    for base in ENUM_BASES:
        codec.register_constant(base, f"enum.{base.__name__}")
    codec.register_constant(_enum.auto, "enum.auto")
    codec.register_objects("enum.class", match=is_enum_class, head=_class_head, body=_class_body,
                           new=_class_new, fill=_class_fill)
    codec.register_objects("enum.member", match=is_enum_member, head=_member_head, body=_member_body,
                           new=_member_new, fill=_member_fill)
    codec.register(types.MappingProxyType, "mappingproxy", state=lambda m: dict(m), build=types.MappingProxyType)


GETATTR_HOOKS.append(enum_getattr)
register_atom_test(lambda x: isinstance(type(x), EnumType) or isinstance(x, EnumType))  # members, enums
register_repr(types.MappingProxyType, _mappingproxy_repr)
register_kind(types.MappingProxyType, "mappingproxy")
register_sized(types.MappingProxyType)  # (built-ins take it whole, as a mapping: `dict(Color.__members__)`)
register_kind(_enum.auto, "enum.auto")
register_leaf(_enum.auto)
