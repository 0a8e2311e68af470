"""The allow-list's rules for the program's own classes (`class` statements).

A program's classes and their instances are the program's own values: any attribute
name the program itself uses may live on them, `self._private` included. What must
stay closed is everything else a name could reach, so attribute names fall in four groups:

* names no host value has (`HOST_NAMES` lists every name the host types programs can
  hold have, private ones included): read natively, at full speed, since on a host value
  they can only raise `AttributeError`;
* names the table in `surface.py` documents for some kind: as before (native unless routed);
* other names some host type has (`gi_frame`, `mro`, `_machine`, ...): read through the
  machine's checked getattr, which finds them only on the program's own instances and
  classes (in their own `__dict__`s) and refuses them elsewhere;
* dunders: a class body may *define* the methods in `USER_DUNDERS` (and nothing else of
  the form `__name__`); a program may *read* `CLASS_DUNDERS` (`super().__init__`,
  `Base.__str__(self)`, `x.__class__`), always through the checked getattr.

Attribute *stores* and deletions always go through the machine (`fm_setattr`), which
allows them only on the program's own instances and classes.

The checker accepts an attribute name only if some documented value has it (`surface.py`)
or the program itself defines it: in a class body, by assigning `obj.name = ...`, or as a
word in a string passed to a call (`namedtuple("P", "x y")`); so `cb._token` is refused at
`FILE:LINE:COL` unless the program has such an attribute of its own.

Refused at check time (`FILE:LINE:COL`): class keywords (`metaclass=`, ...), defining a
dunder outside `USER_DUNDERS` (`__getattr__`, `__getattribute__`, `__setattr__`,
`__init_subclass__`, `__new__`, `__reduce__`, `__get__`, `__slots__`, ...), reading or
writing any other dunder (`__dict__`, `__class__`, `__mro__`, `__bases__`, `__subclasses__`,
`__globals__`, `__code__`, `__closure__`, ...). Refused at run time: bases other than the
program's classes, `object` and the exception types; `type(name, bases, ns)`;
`super()` over anything but the program's classes.
"""

from __future__ import annotations

import builtins
import types

# Dunder methods a class body may define (every one CPython looks up on the type).
USER_DUNDERS: frozenset[str] = frozenset(["__init__", "__post_init__", "__repr__", "__str__", "__format__", "__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__", "__hash__", "__bool__", "__len__", "__getitem__", "__setitem__", "__delitem__", "__contains__", "__iter__", "__next__", "__reversed__", "__missing__", "__call__", "__enter__", "__exit__", "__index__", "__int__", "__float__", "__complex__", "__round__", "__trunc__", "__floor__", "__ceil__", "__neg__", "__pos__", "__abs__", "__invert__", "__add__", "__sub__", "__mul__", "__matmul__", "__truediv__", "__floordiv__", "__mod__", "__divmod__", "__pow__", "__lshift__", "__rshift__", "__and__", "__xor__", "__or__", "__radd__", "__rsub__", "__rmul__", "__rmatmul__", "__rtruediv__", "__rfloordiv__", "__rmod__", "__rdivmod__", "__rpow__", "__rlshift__", "__rrshift__", "__rand__", "__rxor__", "__ror__", "__iadd__", "__isub__", "__imul__", "__imatmul__", "__itruediv__", "__ifloordiv__", "__imod__", "__ipow__", "__ilshift__", "__irshift__", "__iand__", "__ixor__", "__ior__"])

# Dunders a program may read (through the checked getattr): the methods above and `__doc__`.
# (`x.__class__` stays refused: `type(x)` says the same.)
CLASS_DUNDERS: frozenset[str] = USER_DUNDERS | {"__doc__"}

# Dunder methods the host provides that a program may reach through its own classes
# (`super().__init__(...)`, `super().__str__()`): every other inherited host dunder is refused.
HOST_DUNDERS_ALLOWED: frozenset[str] = frozenset(
    ["__init__", "__repr__", "__str__", "__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__", "__format__"]
)


def _host_types() -> list[type]:
    found: list[type] = [t for t in vars(builtins).values() if isinstance(t, type)]
    found += [t for t in vars(types).values() if isinstance(t, type)]
    samples: tuple[object, ...] = ([], (), "", "é", b"", range(0), range(2**70), {}, set())
    found += [type(iter(x)) for x in samples]  # type: ignore[call-overload]
    empty: dict[str, int] = {}
    found += [type(reversed([])), type(empty.keys()), type(empty.values()), type(empty.items()),
              type(iter(empty.values())), type(iter(empty.items())), type(reversed(empty)),
              type(c for c in "")]
    return found


# Standard modules whose classes the machine's values are made of (or derive from).
_STD_SOURCES = ("collections", "functools", "itertools", "operator", "urllib.parse", "hashlib", "hmac", "base64",
                "binascii", "json", "re", "math", "typing", "datetime", "random", "fractions", "decimal",
                "string", "heapq", "bisect", "copy", "textwrap", "statistics", "enum", "dataclasses", "uuid",
                "calendar", "time", "zoneinfo")


def _std_types() -> list[type]:
    import importlib

    found: list[type] = []
    for name in _STD_SOURCES:
        try:
            module = importlib.import_module(name)
        except ImportError:  # pragma: no cover - every one is in the standard library
            continue
        # (private helpers such as `collections._Link` never reach programs)
        found += [t for t in vars(module).values() if isinstance(t, type) and not t.__name__.startswith("_")]
    return found


# The private (and a few public) names of the machine's own values and of the standard
# modules' Python-level objects: functions that may wait, generators, effects, types shown to
# programs, methods Flowmetal implements, sets and views, pprint/enum/queue internals
# (tests/security/test_class_escapes.py checks this list against every host value).
_MACHINE_NAMES = """
    _EMPTY_REPR _KIND _TAG _all_bits_ _binder _bound _boundary_ _check_length _closure _compact _d _dead
    _depth _dispatch _effect _endpos _finished _firstweekday _flag_mask_ _flags _fn _format
    _format_dict_items _format_items _format_namespace_items _frame _frame_fn _from_host _gen
    _generate_next_value_ _get _h _hash _host _indent_per_level _index _init _inverted_ _iter_member_
    _iter_member_by_def_ _iter_member_by_value_ _lastgroup _lastindex _machine _mapping _member_map_
    _member_names_ _member_type_ _missing_ _mode _name _name_ _new_member_ _numeric_repr_ _options _pattern
    _pos _pprint_bytearray _pprint_bytes _pprint_chain_map _pprint_counter _pprint_dataclass
    _pprint_default_dict _pprint_deque _pprint_dict _pprint_list _pprint_mappingproxy _pprint_ordered_dict
    _pprint_set _pprint_simplenamespace _pprint_str _pprint_tuple _pprint_user_dict _pprint_user_list
    _pprint_user_string _pq _program_key _put _qsize _re _refill _regs _repl _repr _restore _running
    _safe_repr _seconds _singles_mask_ _sort_dicts _sort_order_ _state _stream _string _task_id _token
    _underscore_numbers _unhashable_values_ _unit _use_args_ _value2member_map_ _value_ _value_repr_
    _weak_cache _width _wrap active choice counter fn frames gen getattr_ gone headers id key keys
    mapping_only method out pc pos program_key slots status text throw unit url
    _yf
"""


def _host_names() -> frozenset[str]:
    names: set[str] = set()
    for t in [*_host_types(), *_std_types()]:
        try:
            names.update(dir(t))
        except Exception:  # pragma: no cover - a type whose dir() fails
            continue
    names.update(("_asdict", "_make", "_replace", "_fields", "_field_defaults"))  # namedtuples
    names.update(_MACHINE_NAMES.split())
    return frozenset(names)


HOST_NAMES: frozenset[str] = _host_names()
"""Every attribute name some host value a program can hold has (tests keep it complete)."""


def is_program_name(name: str) -> bool:
    """A name only the program's own instances and classes can have (read natively)."""
    return name not in HOST_NAMES and not name.startswith("_fm_") and not (
        name.startswith("__") and name.endswith("__"))


def is_dunder(name: str) -> bool:
    return len(name) > 4 and name.startswith("__") and name.endswith("__")


__all__ = ["CLASS_DUNDERS", "HOST_DUNDERS_ALLOWED", "HOST_NAMES", "USER_DUNDERS", "is_dunder", "is_program_name"]
