"""Value types that Flowmetal programs see in place of host types whose
behaviour is not deterministic or whose instances cannot be snapshotted.

* `FmSet` / `FmFrozenSet` stand in for `set` / `frozenset`: host sets iterate
  in hash order, which for strings changes from process to process.
* `Pattern` / `Match` stand in for `re` objects, which cannot be serialized.
* `Module` is what `import json` binds.

Every class implements the codec protocol: `_fm_encode()` returns a tag and a
list of plain state values, and `VALUE_DECODERS[tag](state)` rebuilds the
object. The classes are renamed after definition (`set`, `frozenset`, `Match`,
...) because CPython builds many messages from the type's name, e.g.
``unhashable type: 'set'`` or ``Object of type set is not JSON serializable``.
"""

from __future__ import annotations

import itertools
import operator
import re
import types
from collections import deque
from collections.abc import Callable, Iterable, MutableSet, Set
from typing import Any, ClassVar

__all__ = [
    "VALUE_DECODERS",
    "FmFrozenSet",
    "FmSet",
    "Match",
    "Module",
    "Pattern",
]

# `{1} | d.keys()` is legal CPython; accepting the views keeps the result ours.
_DICT_SET_VIEWS: tuple[type, ...] = (type({}.keys()), type({}.items()))


def _as_dict(other: object) -> dict[Any, None] | None:
    """The operand of a set operator as an ordered dict, or None if set
    operators do not apply to it (the caller then returns NotImplemented)."""
    if isinstance(other, _SetBase):
        return other._d
    if type(other) in _DICT_SET_VIEWS:
        return dict.fromkeys(other)  # type: ignore[call-overload]
    return None


def _keys(iterable: Iterable[Any]) -> dict[Any, None]:
    """An ordered dict of an iterable's distinct elements (for sets, their
    own dict: callers must not mutate the result)."""
    if isinstance(iterable, _SetBase):
        return iterable._d
    return dict.fromkeys(iterable)


def _own_keys(iterable: Iterable[Any]) -> dict[Any, None]:
    """Like `_keys`, but always a fresh dict the caller may keep."""
    if isinstance(iterable, _SetBase):
        return dict(iterable._d)
    return dict.fromkeys(iterable)


def _rename(cls: type, name: str, module: str) -> None:
    """Make a class look like the CPython type it replaces, including in the
    "missing argument" messages Python builds from function qualnames.

    Functions inherited from a private base are copied into the class so
    that they too report `set.union()` rather than `_SetBase.union()`.
    """
    cls.__name__ = cls.__qualname__ = name
    cls.__module__ = module
    for base in reversed(cls.__mro__[:-1]):
        for attr, value in list(vars(base).items()):
            if not isinstance(value, types.FunctionType):
                continue
            if base is not cls:
                if attr in vars(cls):
                    continue
                value = types.FunctionType(
                    value.__code__, value.__globals__, attr, value.__defaults__, value.__closure__
                )
                value.__kwdefaults__ = vars(base)[attr].__kwdefaults__
                setattr(cls, attr, value)
            value.__qualname__ = f"{name}.{attr}"


_Combine = Callable[[dict[Any, None], dict[Any, None]], dict[Any, None]]


def _union(a: dict[Any, None], b: dict[Any, None]) -> dict[Any, None]:
    d = dict(a)
    d.update(b)
    return d


def _intersection(a: dict[Any, None], b: dict[Any, None]) -> dict[Any, None]:
    return dict.fromkeys(filter(b.__contains__, a))


def _difference(a: dict[Any, None], b: dict[Any, None]) -> dict[Any, None]:
    return dict.fromkeys(itertools.filterfalse(b.__contains__, a))


def _symmetric(a: dict[Any, None], b: dict[Any, None]) -> dict[Any, None]:
    d = _difference(a, b)
    d.update(_difference(b, a))
    return d


def _fold(
    combine: _Combine, d: dict[Any, None], others: tuple[Iterable[Any], ...]
) -> dict[Any, None]:
    """Apply a multi-argument set method (`s.union(a, b)`) left to right."""
    if not others:
        return dict(d)
    for other in others:
        d = combine(d, _keys(other))
    return d


def _comparison(op: Callable[[Any, Any], bool]) -> Callable[[Any, object], Any]:
    def compare(self: _SetBase, other: object) -> Any:
        od = _as_dict(other)
        if od is None:
            return NotImplemented
        return op(self._d.keys(), od.keys())  # dict views compare like sets

    return compare


def _operator(combine: _Combine) -> Callable[[Any, object], Any]:
    def apply(self: _SetBase, other: object) -> Any:
        od = _as_dict(other)
        if od is None:
            return NotImplemented
        return self._wrap(combine(self._d, od))

    return apply


class _SetBase:
    """Operations shared by set and frozenset (see `FmSet` for the ordering
    rule). Results take the type of the left operand, as in CPython."""

    __slots__ = ("_d",)
    _d: dict[Any, None]
    _EMPTY_REPR: ClassVar[str]
    _TAG: ClassVar[str]

    @classmethod
    def _wrap(cls, d: dict[Any, None]) -> Any:
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self._d)

    def __iter__(self) -> Any:
        # The dict's own iterator: fast, snapshot-able, and it already refuses
        # to continue after a size change (in the dict's words, not the set's).
        return iter(self._d)

    def __contains__(self, key: object) -> bool:
        try:
            return key in self._d
        except TypeError:
            # CPython lets `{1} in s` look for frozenset({1}).
            if isinstance(key, FmSet):
                return FmFrozenSet(key._d) in self._d
            raise

    def __repr__(self) -> str:
        if not self._d:
            return self._EMPTY_REPR
        return "{" + ", ".join(map(repr, self._d)) + "}"

    __eq__ = _comparison(operator.eq)
    __le__ = _comparison(operator.le)
    __lt__ = _comparison(operator.lt)
    __ge__ = _comparison(operator.ge)
    __gt__ = _comparison(operator.gt)
    __or__ = _operator(_union)
    __and__ = _operator(_intersection)
    __sub__ = _operator(_difference)
    __xor__ = _operator(_symmetric)

    def union(self, *others: Iterable[Any]) -> Any:
        return self._wrap(_fold(_union, self._d, others))

    def intersection(self, *others: Iterable[Any]) -> Any:
        return self._wrap(_fold(_intersection, self._d, others))

    def difference(self, *others: Iterable[Any]) -> Any:
        return self._wrap(_fold(_difference, self._d, others))

    def symmetric_difference(self, other: Iterable[Any], /) -> Any:
        return self._wrap(_symmetric(self._d, _keys(other)))

    def issubset(self, other: Iterable[Any], /) -> bool:
        return self._d.keys() <= _keys(other).keys()

    def issuperset(self, other: Iterable[Any], /) -> bool:
        if isinstance(other, _SetBase):
            return self._d.keys() >= other._d.keys()
        return all(map(self._d.__contains__, other))

    def isdisjoint(self, other: Iterable[Any], /) -> bool:
        d = self._d
        if isinstance(other, _SetBase):
            small, big = (d, other._d) if len(d) <= len(other._d) else (other._d, d)
            return not any(map(big.__contains__, small))
        return not any(map(d.__contains__, other))

    def _fm_encode(self) -> tuple[str, list[Any]]:
        return self._TAG, list(self._d)

    # Annotations such as `def f(x: set[int])` are evaluated when the def runs.
    __class_getitem__: ClassVar[Any] = classmethod(types.GenericAlias)


class _PopQueue:
    """The keys `pop()` will hand out next, so draining a set costs O(1) per
    pop: `next(iter(d))` would rescan the deleted slots at the front of the
    dict on every call.

    `keys[pos:]`, minus the keys in `gone`, is always a prefix of the set's
    iteration order: pops advance `pos`, additions go after the prefix, and
    `discard`/`remove` record the key in `gone` (it may come back later, at
    the end). Bulk removals simply drop the queue.
    """

    __slots__ = ("gone", "keys", "pos")

    def __init__(self, keys: list[Any]) -> None:
        self.keys = keys
        self.pos = 0
        self.gone: set[Any] = set()  # membership only; never iterated


class FmSet(_SetBase):
    """Flowmetal's `set`: the CPython set API with insertion-ordered iteration.

    Ordering rule: a set iterates in insertion order (re-adding an element
    keeps its place; `pop()` removes the first element). A result made from
    several operands lists the elements of the left operand first, in its
    order, followed by the new elements of the right operands in their order,
    for operators, methods and in-place updates alike. Where elements are
    equal but distinct (1, 1.0, True), results keep the left operand's object;
    CPython's intersection keeps the smaller operand's.
    """

    __slots__ = ("_dead", "_pq")
    __hash__ = None  # type: ignore[assignment]
    _EMPTY_REPR = "set()"
    _TAG = "set"

    def __init__(self, *args: Iterable[Any], **kwargs: Any) -> None:
        if kwargs:
            raise TypeError("set() takes no keyword arguments")
        if len(args) > 1:
            raise TypeError(f"set expected at most 1 argument, got {len(args)}")
        self._d = _own_keys(args[0]) if args else {}
        self._pq: _PopQueue | None = None
        self._dead = 0  # deleted slots left in the dict since it was last compacted

    @classmethod
    def _wrap(cls, d: dict[Any, None]) -> FmSet:
        s = object.__new__(cls)
        s._d = d
        s._pq = None
        s._dead = 0
        return s

    def _replace(self, d: dict[Any, None]) -> None:
        """Swap in new contents while keeping the same dict object, so live
        iterators still notice the change."""
        self._d.clear()
        self._d.update(d)
        self._pq = None
        self._dead = 0

    def add(self, elem: Any, /) -> None:
        self._d[elem] = None

    def discard(self, elem: Any, /) -> None:
        d = self._d
        try:
            if elem not in d:
                return
        except TypeError:
            if not isinstance(elem, FmSet):
                raise
            elem = FmFrozenSet(elem._d)
            if elem not in d:
                return
        del d[elem]
        self._dead += 1
        if self._pq is not None:
            self._pq.gone.add(elem)

    def remove(self, elem: Any, /) -> None:
        if elem not in self:
            raise KeyError(elem)
        self.discard(elem)

    def pop(self) -> Any:
        d = self._d
        if not d:
            raise KeyError("pop from an empty set")
        pq = self._pq
        while True:
            if pq is None or pq.pos >= len(pq.keys):
                pq = self._refill()
            key = pq.keys[pq.pos]
            pq.pos += 1
            if key not in pq.gone and key in d:
                break
        del d[key]
        self._dead += 1
        return key

    def _refill(self) -> _PopQueue:
        d = self._d
        if self._dead > len(d):
            compact = dict(d)
            d.clear()
            d.update(compact)
            self._dead = 0
        pq = self._pq = _PopQueue(list(d))
        return pq

    def clear(self) -> None:
        self._d.clear()
        self._pq = None
        self._dead = 0

    def copy(self) -> FmSet:
        return self._wrap(dict(self._d))

    def update(self, *others: Iterable[Any]) -> None:
        for other in others:
            self._d.update(_keys(other))

    def intersection_update(self, *others: Iterable[Any]) -> None:
        d = _fold(_intersection, self._d, others)
        if len(d) != len(self._d):
            self._replace(d)

    def difference_update(self, *others: Iterable[Any]) -> None:
        d = self._d
        self._pq = None  # first: a failure part-way must not leave a stale queue
        before = len(d)
        try:
            for other in others:
                if other is self:
                    self.clear()
                    return
                # CPython discards the elements one by one; so does this, in C.
                deque(map(d.pop, other, itertools.repeat(None)), maxlen=0)
        finally:
            self._dead += before - len(d)

    def symmetric_difference_update(self, other: Iterable[Any], /) -> None:
        if other is self:
            self.clear()
            return
        d = self._d
        self._pq = None
        for key in _keys(other):
            if key in d:
                del d[key]
                self._dead += 1
            else:
                d[key] = None

    def _inplace(method: Callable[[FmSet, Any], None]) -> Callable[[FmSet, object], Any]:  # type: ignore[misc]
        def apply(self: FmSet, other: object) -> Any:
            od = _as_dict(other)
            if od is None:
                return NotImplemented
            method(self, self if other is self else od)
            return self

        return apply

    __ior__ = _inplace(update)
    __iand__ = _inplace(intersection_update)
    __isub__ = _inplace(difference_update)
    __ixor__ = _inplace(symmetric_difference_update)
    del _inplace


class FmFrozenSet(_SetBase):
    """Flowmetal's `frozenset`; same ordering rule as `FmSet`.

    The hash is the host frozenset's hash of the same elements: independent
    of order, as equality requires. (String hashes vary between processes,
    which only changes dict layout, never Flowmetal-visible order.)
    """

    __slots__ = ("_hash",)
    _hash: int | None
    _EMPTY_REPR = "frozenset()"
    _TAG = "frozenset"

    def __new__(cls, *args: Iterable[Any], **kwargs: Any) -> FmFrozenSet:
        if kwargs:
            raise TypeError("frozenset() takes no keyword arguments")
        if len(args) > 1:
            raise TypeError(f"frozenset expected at most 1 argument, got {len(args)}")
        if args and type(args[0]) is FmFrozenSet:
            return args[0]
        return cls._wrap(_own_keys(args[0]) if args else {})

    @classmethod
    def _wrap(cls, d: dict[Any, None]) -> FmFrozenSet:
        s = object.__new__(cls)
        s._d = d
        s._hash = None
        return s

    def __hash__(self) -> int:
        h = self._hash
        if h is None:
            h = self._hash = hash(frozenset(self._d))
        return h

    def __repr__(self) -> str:
        if not self._d:
            return "frozenset()"
        return "frozenset(" + _SetBase.__repr__(self) + ")"

    def copy(self) -> FmFrozenSet:
        return self


_rename(FmSet, "set", "builtins")
_rename(FmFrozenSet, "frozenset", "builtins")
# Registered rather than inherited: the ABC mixins would add reflected
# operators (`[1] | s` would work) and slow down isinstance checks.
MutableSet.register(FmSet)
Set.register(FmFrozenSet)


# --------------------------------------------------------------------------
# Regular expressions
# --------------------------------------------------------------------------

_ALLOWED_RE_FLAGS = int(
    re.IGNORECASE | re.MULTILINE | re.DOTALL | re.VERBOSE | re.ASCII | re.UNICODE
)


def _compile(pattern: str | bytes, flags: int) -> re.Pattern[Any]:
    """Compile with the host, refusing the flags that would make a program
    print (DEBUG) or depend on the host's locale (LOCALE)."""
    if isinstance(flags, int) and flags & ~_ALLOWED_RE_FLAGS:
        raise ValueError(
            f"unsupported re flags {int(flags) & ~_ALLOWED_RE_FLAGS:#x}: Flowmetal allows "
            "IGNORECASE, MULTILINE, DOTALL, VERBOSE, ASCII and UNICODE"
        )
    compiled = re.compile(pattern, flags)
    if compiled.flags & re.LOCALE:
        raise ValueError("re.LOCALE is not supported in Flowmetal: it depends on the host's locale")
    return compiled


class Pattern:
    """A compiled regular expression that can be snapshotted: it keeps only
    the pattern and flags, and recompiles (through the host's cache) when
    restored."""

    __slots__ = ("_flags", "_host", "_pattern")
    __class_getitem__: ClassVar[Any] = classmethod(types.GenericAlias)  # `re.Pattern[str]`

    def __init__(self, pattern: str | bytes, flags: int = 0) -> None:
        host = _compile(pattern, flags)  # eagerly, so errors surface at compile()
        self._pattern = host.pattern
        self._flags = int(host.flags)
        self._host: re.Pattern[Any] | None = host

    @classmethod
    def _restore(cls, pattern: str | bytes, flags: int) -> Pattern:
        p = object.__new__(cls)
        p._pattern = pattern
        p._flags = flags
        p._host = None
        return p

    def _h(self) -> re.Pattern[Any]:
        host = self._host
        if host is None:
            host = self._host = re.compile(self._pattern, self._flags)
        return host

    pattern = property(operator.attrgetter("_pattern"))
    flags = property(operator.attrgetter("_flags"))

    @property
    def groups(self) -> int:
        return self._h().groups

    @property
    def groupindex(self) -> dict[str, int]:
        return dict(self._h().groupindex)

    # -- matching (arguments go straight to the host, so errors match) -----
    def match(self, *args: Any, **kwargs: Any) -> Match | None:
        return Match._wrap(self._h().match(*args, **kwargs), self)

    def search(self, *args: Any, **kwargs: Any) -> Match | None:
        return Match._wrap(self._h().search(*args, **kwargs), self)

    def fullmatch(self, *args: Any, **kwargs: Any) -> Match | None:
        return Match._wrap(self._h().fullmatch(*args, **kwargs), self)

    def findall(self, *args: Any, **kwargs: Any) -> list[Any]:
        return self._h().findall(*args, **kwargs)

    def finditer(self, *args: Any, **kwargs: Any) -> Any:
        return iter([Match._from_host(m, self) for m in self._h().finditer(*args, **kwargs)])

    def split(self, *args: Any, **kwargs: Any) -> list[Any]:
        return self._h().split(*args, **kwargs)

    def sub(self, repl: Any, string: Any, count: int = 0) -> Any:
        return self._h().sub(self._repl(repl), string, count)

    def subn(self, repl: Any, string: Any, count: int = 0) -> tuple[Any, int]:
        return self._h().subn(self._repl(repl), string, count)

    def _repl(self, repl: Any) -> Any:
        """A callable replacement must see our Match, not the host's."""
        if callable(repl):
            return lambda m: repl(Match._from_host(m, self))
        return repl

    # -- identity --------------------------------------------------------------
    def __repr__(self) -> str:
        return repr(self._h())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Pattern):
            return NotImplemented
        return (
            type(self._pattern) is type(other._pattern)
            and self._pattern == other._pattern
            and self._flags == other._flags
        )

    def __hash__(self) -> int:
        return hash((self._pattern, self._flags))

    def _fm_encode(self) -> tuple[str, list[Any]]:
        return "re.Pattern", [self._pattern, self._flags]


class Match:
    """The result of a successful match, as plain data (no host match object
    is kept) so it can be snapshotted; everything else is computed from the
    group spans."""

    __slots__ = ("_endpos", "_lastgroup", "_lastindex", "_pos", "_re", "_regs", "_string")
    __class_getitem__: ClassVar[Any] = classmethod(types.GenericAlias)

    def __init__(
        self,
        pattern: Pattern,
        string: Any,
        pos: int,
        endpos: int,
        regs: tuple[tuple[int, int], ...],
        lastindex: int | None,
        lastgroup: str | None,
    ) -> None:
        self._re = pattern
        self._string = string
        self._pos = pos
        self._endpos = endpos
        self._regs = tuple(tuple(span) for span in regs)
        self._lastindex = lastindex
        self._lastgroup = lastgroup

    @classmethod
    def _from_host(cls, m: re.Match[Any], pattern: Pattern) -> Match:
        return cls(pattern, m.string, m.pos, m.endpos, m.regs, m.lastindex, m.lastgroup)

    @classmethod
    def _wrap(cls, m: re.Match[Any] | None, pattern: Pattern) -> Match | None:
        return None if m is None else cls._from_host(m, pattern)

    def _index(self, group: Any) -> int:
        """Mirror of CPython's match_getindex."""
        if isinstance(group, int):
            i = group
        elif hasattr(type(group), "__index__"):
            i = operator.index(group)
        else:
            names = self._re._h().groupindex
            # Only a pattern with named groups looks the key up (and so can
            # raise "unhashable type").
            i = names.get(group, -1) if names else -1
        if i < 0 or i >= len(self._regs):
            raise IndexError("no such group")
        return i

    def _get(self, i: int, default: Any = None) -> Any:
        start, end = self._regs[i]
        if start < 0:
            return default
        return self._string[start:end]

    # -- groups ------------------------------------------------------------
    def group(self, *groups: Any) -> Any:
        if not groups:
            return self._get(0)
        if len(groups) == 1:
            return self._get(self._index(groups[0]))
        return tuple(self._get(self._index(g)) for g in groups)

    def __getitem__(self, group: Any) -> Any:
        return self._get(self._index(group))

    def groups(self, default: Any = None) -> tuple[Any, ...]:
        return tuple(self._get(i, default) for i in range(1, len(self._regs)))

    def groupdict(self, default: Any = None) -> dict[str, Any]:
        return {name: self._get(i, default) for name, i in self._re._h().groupindex.items()}

    def start(self, group: Any = 0, /) -> int:
        return self._regs[self._index(group)][0]

    def end(self, group: Any = 0, /) -> int:
        return self._regs[self._index(group)][1]

    def span(self, group: Any = 0, /) -> tuple[int, int]:
        start, end = self._regs[self._index(group)]
        return (start, end)

    def expand(self, template: Any) -> Any:
        # The host's template parser gives CPython's exact errors; its result
        # shape changed in 3.12 (tuple of (groups, literals) -> flat list).
        parser: Any = getattr(re, "_parser", None)
        parsed = parser.parse_template(template, self._re._h())
        if isinstance(parsed, tuple):
            return parser.expand_template(parsed, self)
        empty = self._string[:0]
        parts = [(self._get(item) or empty) if n % 2 else item for n, item in enumerate(parsed)]
        return empty.join(parts)

    string = property(operator.attrgetter("_string"))
    re = property(operator.attrgetter("_re"))
    pos = property(operator.attrgetter("_pos"))
    endpos = property(operator.attrgetter("_endpos"))
    lastindex = property(operator.attrgetter("_lastindex"))
    lastgroup = property(operator.attrgetter("_lastgroup"))
    regs = property(operator.attrgetter("_regs"))

    def __bool__(self) -> bool:
        return True

    def __repr__(self) -> str:
        start, end = self._regs[0]
        # CPython formats the match with "%.50R": the repr cut to 50 characters.
        return f"<re.Match object; span=({start}, {end}), match={repr(self._get(0))[:50]}>"

    def _fm_encode(self) -> tuple[str, list[Any]]:
        return "re.Match", [
            self._re,
            self._string,
            self._pos,
            self._endpos,
            self._regs,
            self._lastindex,
            self._lastgroup,
        ]


_rename(Pattern, "Pattern", "re")
_rename(Match, "Match", "re")


# --------------------------------------------------------------------------
# Modules
# --------------------------------------------------------------------------


class Module:
    """A standard module as a program sees it. Members live in the instance
    dict (fast attribute access); the module is read-only because one
    instance is shared by every machine in the process."""

    def __init__(self, name: str, members: dict[str, Any]) -> None:
        self.__dict__.update(members)
        self.__dict__["__name__"] = name

    def __getattr__(self, attr: str) -> Any:
        name = self.__dict__["__name__"]
        raise AttributeError(f"module '{name}' has no attribute '{attr}'", name=attr, obj=self)

    def __setattr__(self, attr: str, value: Any) -> None:
        name = self.__dict__["__name__"]
        raise AttributeError(
            f"cannot set attribute '{attr}' of module '{name}': "
            "standard modules are read-only in Flowmetal"
        )

    def __delattr__(self, attr: str) -> None:
        name = self.__dict__["__name__"]
        raise AttributeError(
            f"cannot delete attribute '{attr}' of module '{name}': "
            "standard modules are read-only in Flowmetal"
        )

    def __repr__(self) -> str:
        return f"<module '{self.__dict__['__name__']}'>"

    def _fm_encode(self) -> tuple[str, list[Any]]:
        return "module", [self.__dict__["__name__"]]


_rename(Module, "module", "builtins")


# --------------------------------------------------------------------------
# Codec registry
# --------------------------------------------------------------------------


def _decode_module(state: list[Any]) -> Module:
    from flowmetal.machine.stdmods import get_module  # stdmods imports this module

    return get_module(state[0])


def _decode_match(state: list[Any]) -> Match:
    pattern, string, pos, endpos, regs, lastindex, lastgroup = state
    return Match(pattern, string, pos, endpos, regs, lastindex, lastgroup)


VALUE_DECODERS: dict[str, Callable[[list[Any]], object]] = {
    "set": lambda state: FmSet._wrap(dict.fromkeys(state)),
    "frozenset": lambda state: FmFrozenSet._wrap(dict.fromkeys(state)),
    "re.Pattern": lambda state: Pattern._restore(state[0], state[1]),
    "re.Match": _decode_match,
    "module": _decode_module,
}
