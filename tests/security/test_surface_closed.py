"""The allow-list is closed: what the table (lang/surface.py) says about each kind of value
agrees with what the host types really have, and every value a program can obtain through
an allowed attribute is itself of a kind the table lists. If a new host type, attribute or
module member appears without a row in the table, these tests fail."""

from __future__ import annotations

import json
import re
import types
from typing import Any

import pytest

from flowmetal.lang.surface import (
    ALL_ATTRIBUTES,
    FLOWMETAL_MEMBERS,
    HTTP_MEMBERS,
    KINDS,
    MODULES,
    ROUTED_ATTRIBUTES,
)
from flowmetal.machine import access
from flowmetal.machine.access import FlowType, fm_getattr, visible_type
from flowmetal.machine.stdmods import STD_MODULE_EXPORTS, get_module
from flowmetal.runtime import actions


def _public(names: Any) -> set[str]:
    return {n for n in names if n in ALL_ATTRIBUTES}


REGISTERED = sorted(access._KIND_OF.items(), key=lambda item: (item[1].name, item[0].__qualname__))


@pytest.mark.parametrize(("host", "kind"), REGISTERED, ids=[f"{k.name}:{h.__qualname__}" for h, k in REGISTERED])
def test_every_native_attribute_is_allowed_or_routed(host: type, kind: Any) -> None:
    # any attribute name a program may write that the host type has natively is either allowed
    # for this kind, or read through the checked getattr (which then refuses it)
    native = _public(dir(host))
    unlisted = native - kind.attributes - ROUTED_ATTRIBUTES
    assert not unlisted, f"{host.__qualname__} has {sorted(unlisted)} natively, unlisted for {kind.name}"


@pytest.mark.parametrize(("host", "kind"), [(h, k) for h, k in REGISTERED if k.type_reachable],
                         ids=[f"{k.name}:{h.__qualname__}" for h, k in REGISTERED if k.type_reachable])
def test_type_objects_programs_hold_offer_only_methods(host: type, kind: Any) -> None:
    visible = visible_type(_instance_of(host)) if host is not str else access.STR
    for name in _public(dir(host)) - kind.methods - {"__name__", "__qualname__"}:
        assert name in ROUTED_ATTRIBUTES, f"{kind.name}.{name} would be read natively from the type object"
        with pytest.raises(AttributeError):
            fm_getattr(visible, name)


def _instance_of(host: type) -> Any:
    samples = {int: 1, bool: True, float: 1.0, complex: 1j, str: "s", bytes: b"b", list: [], tuple: (), dict: {},
               range: range(2), slice: slice(1), object: object()}
    if host in samples:
        return samples[host]
    if issubclass(host, BaseException):
        return host.__new__(host)
    return next(v for v in _program_values() if type(v) is host)


def _plain() -> None:
    pass


SAMPLES: list[Any] = [
    1, True, 2.5, 1j, "text", b"bytes", None, ..., NotImplemented, [1, 2], (1, 2), {"a": 1}, range(3), slice(1, 2),
    iter([1]), iter((1,)), iter("ab"), iter(b"ab"), iter({1: 2}), reversed([1]), enumerate([1]), zip([1]),
    map(abs, [1]), filter(None, [1]), reversed((1,)), _plain, len, [].append, str.lower, object(),
    ValueError("x"), KeyError("k"), StopIteration(5), UnicodeDecodeError("utf-8", b"\xff", 0, 1, "bad"),
    json.JSONDecodeError("msg", "doc", 1), re.I,
]


def _program_values() -> list[Any]:
    """Values of every kind as programs get them (through the machine's own constructors)."""
    from flowmetal.machine.api import run_source  # noqa: F401  (registers every kind)

    values = list(SAMPLES)
    fre = get_module("re")
    m = fre.match("(a)(?P<n>b)?", "ab")
    values += [fre.compile("a"), m, fm_getattr({"a": 1}, "keys")(), fm_getattr({"a": 1}, "values")(),
               fm_getattr({"a": 1}, "items")(), fm_getattr({}, "keys"), fm_getattr(dict, "keys"), visible_type(m),
               get_module("json"), frozenset(), set()]
    from flowmetal.machine.builtins_table import make_builtins

    table = make_builtins(print)
    values += [table["set"]([1]), table["frozenset"]([1]), table["type"], table["str"], table["repr"]]
    from security.stdlib_samples import stdlib_values

    values += stdlib_values()
    # what class bodies hold (the program's classes themselves: test_class_escapes.py)
    values += [property(len), staticmethod(len), classmethod(len)]
    return values


def _is_program_value(x: Any) -> bool:
    t = type(x)
    if t is FlowType or t in (type(access.TYPE), type(access.STR)) or x in (access.TYPE, access.STR):
        return True
    if isinstance(x, type):
        return x in access._VISIBLE.values() or access._kind_table(x) is not None
    return access._kind_table(t) is not None


@pytest.mark.parametrize("value", _program_values(), ids=lambda v: type(v).__qualname__)
def test_every_allowed_attribute_leads_to_a_program_value(value: Any) -> None:
    kind = access._KIND_OF.get(type(value))
    own = access.own_table(type(value))  # a class the program made: its own table
    names = set(own) if own is not None else kind.attributes if kind is not None else {"__name__", "__qualname__"}
    for name in sorted(names):
        try:
            got = fm_getattr(value, name)
        except AttributeError:
            continue  # an allowed attribute this particular value lacks (e.g. a match's lastgroup)
        assert _is_program_value(got), f"{type(value).__qualname__}.{name} gave a host object: {type(got)!r}"
        assert not isinstance(got, types.FrameType | types.CodeType | types.ModuleType | types.CellType)


def test_flowmetal_module_members_are_in_the_table() -> None:
    members = actions.host_module()
    assert set(members) <= FLOWMETAL_MEMBERS, set(members) - FLOWMETAL_MEMBERS
    assert set(vars(members["http"])) - {"__name__"} <= HTTP_MEMBERS


@pytest.mark.parametrize("module", sorted(STD_MODULE_EXPORTS))
def test_standard_module_members_are_the_table(module: str) -> None:
    members = set(vars(get_module(module))) - {"__name__"}
    listed = MODULES[module].members
    assert listed is not None
    assert members == set(listed), members ^ set(listed)


def test_routed_names_are_refused_on_every_kind_that_does_not_allow_them() -> None:
    for value in _program_values():
        kind = access._KIND_OF.get(type(value))
        own = access.own_table(type(value))  # a class the program made: its own table
        allowed = set(own) if own is not None else kind.attributes if kind is not None else {"__name__", "__qualname__"}
        for name in sorted(ROUTED_ATTRIBUTES - allowed):
            if isinstance(value, type) or type(value) in (FlowType, type(access.TYPE), type(access.STR)):
                continue  # type objects: covered by test_type_objects_programs_hold_offer_only_methods
            with pytest.raises(AttributeError, match="has no attribute"):
                fm_getattr(value, name)


def test_every_kind_in_the_table_is_registered() -> None:
    registered = {k.name for k in access._KIND_OF.values()} | {"type"}
    # (`flowmetal.*` kinds other than the exceptions are registered by the runtime, imported above)
    assert set(KINDS) == registered, set(KINDS) ^ registered
