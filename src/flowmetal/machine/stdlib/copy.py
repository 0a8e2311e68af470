"""`copy` for Flowmetal programs: `copy`, `deepcopy` and `copy.Error`.

CPython's `copy` copies anything through `__reduce_ex__`, which would rebuild host objects
from their internals (and so hand a program things it must not hold), and its `deepcopy` is
recursive (a deep structure hits the host's recursion limit, inside our own code). Ours copies
only the kinds of values a program can hold, each the way CPython copies it, and walks the
structure with a stack of its own:

* values that cannot change (numbers, strings, bytes, functions, types, modules, patterns,
  `Fraction`, `Decimal`, ...) are their own copies, as in CPython; `deepcopy` copies a tuple
  only when something inside it is copied (CPython keeps the original otherwise), and always
  rebuilds a frozenset;
* lists, dicts, sets, the `collections` types and the other mutable values of the standard
  modules get a new shell first (remembered, so shared parts stay shared and cycles close),
  which is filled once everything inside has been copied, in CPython's order;
* every element visited costs a tick of fuel;
* anything else is refused with a `TypeError` (CPython would copy some of those through their
  `__reduce_ex__`: iterators, for one).

Other modules register the kinds they add with `register_copier`.
"""

from __future__ import annotations

import copy as _copy
import types
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from flowmetal.machine.access import FlowType, own_table
from flowmetal.machine.show import fm_repr
from flowmetal.machine.stdlib import collections as _col
from flowmetal.machine.stdlib.common import charge
from flowmetal.machine.stdlib.namedtuples import NamedTupleBase
from flowmetal.machine.values import FmFrozenSet, FmSet, Match, Module, Pattern

__all__ = ["Error", "copy", "deepcopy", "members", "register_atom_test", "register_atoms", "register_codec",
           "register_copier"]

Error = _copy.Error

_ATOMS: set[type] = {
    type(None), type(Ellipsis), type(NotImplemented), int, float, bool, complex, str, bytes, range, slice,
    types.FunctionType, types.BuiltinFunctionType, types.MethodType, type, FlowType, Module, Pattern, Match,
    property,
}


@dataclass(frozen=True)
class Copier:
    """How to copy one kind of value.

    `shallow(x)`: `copy.copy(x)`. For `deepcopy`, either `new(x)` (a mutable value: its empty
    shell, made before its parts are copied) and `fill(shell, x, parts)`, or `build(x, parts)`
    (an immutable one, made from its copied parts); `parts(x)` are what deepcopy copies."""

    shallow: Callable[[Any], Any]
    parts: Callable[[Any], Iterable[Any]]
    new: Callable[[Any], Any] | None = None
    fill: Callable[[Any, Any, list[Any]], None] | None = None
    build: Callable[[Any, list[Any]], Any] | None = None
    # built anew even when a cycle has copied it meanwhile (what CPython's `__reduce_ex__` path does)
    always_new: bool = False


_COPIERS: dict[type, Copier] = {}


def register_copier(cls: type, copier: Copier) -> None:
    _COPIERS[cls] = copier


def register_atoms(*classes: type) -> None:
    """Kinds of values that cannot change: `copy` and `deepcopy` return them as they are."""
    _ATOMS.update(classes)


_ATOM_TESTS: list[Callable[[Any], bool]] = []


def register_atom_test(test: Callable[[Any], bool]) -> None:
    """Values of classes made at run time that are their own copies (an enum's members: CPython's
    `Enum.__copy__` and `__deepcopy__` return the member itself)."""
    _ATOM_TESTS.append(test)


def _is_atom(x: Any) -> bool:
    return type(x) in _ATOMS or any(test(x) for test in _ATOM_TESTS)


def _refuse(x: Any, what: str) -> TypeError:
    from flowmetal.machine.access import visible_type

    name = fm_repr(visible_type(x)).removeprefix("<class '").removesuffix("'>")
    return TypeError(f"{what}() of '{name}' objects is not supported in Flowmetal")


def _copier(x: Any, what: str) -> Copier:
    t = type(x)
    copier = _COPIERS.get(t)
    if copier is None and own_table(t) is not None:  # a class the program made: copied as its base is
        copier = next((_COPIERS[base] for base in t.__mro__[1:] if base in _COPIERS), None)
    if copier is None and _is_program_instance(t):
        copier = _INSTANCE
    if copier is None:
        raise _refuse(x, what)
    return copier


# -- instances of the program's own classes -------------------------------------------------
# Copied as CPython copies an object through `__reduce_ex__(4)`: a new instance made without
# calling `__init__` (`cls.__new__(cls)`; an exception with its args), then its attributes —
# the same ones for `copy`, copies of them for `deepcopy` (the new instance is remembered
# first, so an attribute referring back to the instance refers to the copy).


def _is_program_instance(t: type) -> bool:
    from flowmetal.machine.classes import FlowObject

    return issubclass(t, FlowObject) and hasattr(t, "__dict__")


def _new_instance(x: Any) -> Any:
    cls: Any = type(x)
    if isinstance(x, BaseException):
        new = cls.__new__(cls, *x.args)
        new.args = x.args
        return new
    return cls.__new__(cls)


def _instance_shallow(x: Any) -> Any:
    new = _new_instance(x)
    state = getattr(x, "__dict__", None)
    if state:
        charge(len(state))
        new.__dict__.update(state)
    return new


def _instance_fill(shell: Any, x: Any, parts: list[Any]) -> None:
    if parts:
        shell.__dict__.update(parts[0])


_INSTANCE = Copier(shallow=_instance_shallow, parts=lambda x: [vars(x)] if getattr(x, "__dict__", None) else [],
                   new=_new_instance, fill=_instance_fill)


def copy(x: Any) -> Any:
    """Shallow copy operation on arbitrary Python objects."""
    if _is_atom(x):
        return x
    return _copier(x, "copy.copy").shallow(x)  # (an immutable value's shallow copy is itself)


_MISSING: Any = object()


def deepcopy(x: Any, memo: Any = None, _nil: Any = None) -> Any:
    """Deep copy operation on arbitrary Python objects."""
    atoms = _ATOMS
    if _is_atom(x):
        return x
    if memo is not None and type(memo) is not dict:
        raise TypeError("deepcopy() memo must be a dict")
    # Always a memo of our own: CPython's is keyed by `id()`, which would show a program the
    # addresses of its values (and a program has no ids to seed one with)
    memo = {}
    keep: list[Any] = []  # the originals, so that no id in the memo is reused meanwhile
    stack: list[list[Any]] = []  # frames: [original, copier, iterator over its parts, copied parts, shell]

    def enter(obj: Any) -> None:
        copier = _copier(obj, "copy.deepcopy")
        shell = None
        if copier.new is not None:
            shell = copier.new(obj)
            memo[id(obj)] = shell
        keep.append(obj)
        # a tick per part (and one for the value itself); an instance's attributes are a dict, charged
        # as one (its own `__len__`, if the program defined one, is not ours to call)
        charge(1 if copier is _INSTANCE else len(obj) + 1)
        stack.append([obj, copier, iter(copier.parts(obj)), [], shell])

    enter(x)
    while True:
        frame = stack[-1]
        out = frame[3]
        for part in frame[2]:
            if type(part) in atoms or (_ATOM_TESTS and _is_atom(part)):
                out.append(part)
                continue
            found = memo.get(id(part), _MISSING)
            if found is not _MISSING:
                out.append(found)
                continue
            enter(part)
            break
        else:
            stack.pop()
            obj, copier = frame[0], frame[1]
            if copier.new is not None:
                done = frame[4]
                copier.fill(done, obj, out)
            else:
                # an immutable value may have been copied meanwhile through a cycle (CPython's rule)
                done = memo.get(id(obj), _MISSING)
                if done is _MISSING or copier.always_new:
                    assert copier.build is not None
                    done = copier.build(obj, out)
                    memo[id(obj)] = done
            if not stack:
                return done
            stack[-1][3].append(done)


# --------------------------------------------------------------------------------
# the kinds a program holds
# --------------------------------------------------------------------------------


def _tuple_build(x: tuple[Any, ...], parts: list[Any]) -> Any:
    if all(a is b for a, b in zip(x, parts, strict=True)):
        return x
    return tuple(parts)


def _frozenset_build(x: Any, parts: list[Any]) -> Any:
    return FmFrozenSet(parts)  # (CPython's deepcopy rebuilds a frozenset, unlike a tuple)


def _flat_items(d: Any) -> Iterable[Any]:
    for k, v in d.items():
        yield k
        yield v


def _fill_dict(shell: Any, x: Any, parts: list[Any]) -> None:
    for i in range(0, len(parts), 2):
        shell[parts[i]] = parts[i + 1]


def _shallow(x: Any) -> Any:
    charge(len(x))
    return x.copy()


def _fill_list(shell: Any, x: Any, parts: list[Any]) -> None:
    shell.extend(parts)


def _fill_set(shell: Any, x: Any, parts: list[Any]) -> None:
    for p in parts:
        shell.add(p)


def _fill_deque(shell: Any, x: Any, parts: list[Any]) -> None:
    _col._c.deque.extend(shell, parts)


def _fill_chainmap(shell: Any, x: Any, parts: list[Any]) -> None:
    shell.maps = parts[0]


def _new_chainmap(x: Any) -> Any:
    return _col.ChainMap.__new__(_col.ChainMap)


def _register_atoms() -> None:
    from flowmetal.machine.stdlib.fractions import Fraction
    from flowmetal.machine.stdlib.statistics import LinearRegression, NormalDist

    register_atoms(Fraction, NormalDist, LinearRegression, Decimal)


_register_atoms()
register_copier(tuple, Copier(shallow=lambda x: x, parts=lambda x: x, build=_tuple_build))
# a namedtuple is rebuilt, even when nothing in it changes (CPython copies it through `__reduce_ex__`)
register_copier(NamedTupleBase, Copier(shallow=lambda x: tuple.__new__(type(x), x), parts=lambda x: x,
                                       build=lambda x, parts: tuple.__new__(type(x), parts), always_new=True))
register_copier(FmFrozenSet, Copier(shallow=lambda x: x, parts=lambda x: x, build=_frozenset_build))
register_copier(list, Copier(shallow=_shallow, parts=lambda x: x, new=lambda x: [], fill=_fill_list))
register_copier(dict, Copier(shallow=_shallow, parts=_flat_items, new=lambda x: {}, fill=_fill_dict))
register_copier(FmSet, Copier(shallow=_shallow, parts=lambda x: x, new=lambda x: FmSet(), fill=_fill_set))
register_copier(_col.deque, Copier(shallow=_shallow, parts=lambda x: x, new=lambda x: _col.deque((), x.maxlen),
                                   fill=_fill_deque))
register_copier(_col.Counter, Copier(shallow=_shallow, parts=_flat_items, new=lambda x: _col.Counter(),
                                     fill=_fill_dict))
register_copier(_col.OrderedDict, Copier(shallow=_shallow, parts=_flat_items, new=lambda x: _col.OrderedDict(),
                                         fill=_fill_dict))
register_copier(_col.defaultdict, Copier(shallow=_shallow, parts=_flat_items,
                                         new=lambda x: _col.defaultdict(x.default_factory), fill=_fill_dict))
register_copier(_col.ChainMap, Copier(shallow=_shallow, parts=lambda x: [x.maps], new=_new_chainmap,
                                      fill=_fill_chainmap))


def members() -> dict[str, Any]:
    return {"copy": copy, "deepcopy": deepcopy, "Error": Error}


def register_codec(codec: Any) -> None:
    codec.register_exception(Error, "copy.Error")
