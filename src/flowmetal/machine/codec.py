"""Snapshot value codec: a versioned, identity-preserving object-graph format on msgpack.

A snapshot is::

    b"FMSNAP" | format version (uint16, big-endian) | msgpack([records, root_vals, root_refs])

Every object whose identity matters (containers, cells, exceptions, iterators,
extension objects) is written exactly once, as an entry of the `records`
table, and referred to by its index, so aliasing and cycles survive a round
trip. Nothing is pickled: only the allow-listed types below can be written or
read back.

Record fields hold *value lists*: a msgpack array `vals` whose items are
primitives written as themselves (nil, bool, int64/uint64, float64, str, bin;
ints beyond 64 bits as msgpack ext 1 holding two's-complement little-endian
bytes) or record indices, plus `refs`, the positions in `vals` that hold record
indices. References therefore cost nothing to decode at the msgpack level, and a
container without references is a plain msgpack array or map that msgspec
writes and reads in C (the fast path: no per-element Python work). The root is
the one-element value list `root_vals`/`root_refs`.

Records (``records[i] = [kind, *fields]``)::

    kind  name      fields                                  object           decode
    0     LIST      vals, refs                              list             vals itself, refs patched
    1     TUPLE     vals, refs                              tuple            built on demand
    2     DICT_STR  {str: value}, [keys holding refs]       dict             the map itself, patched
    3     DICT      [k, v, k, v, ...], refs                 dict             shell + fill
    4     CELL      [] or [contents], refs                  types.CellType   shell + fill
    5     EXC       name, nargs, attr names, slot names,    exception        shell + fill
                    suppress_context, vals, refs
                    (vals = args, attrs, slots, cause, context)
    6     EXT       tag, [state], refs                      Codec.register   new()+fill last, or build
    7     VALUE     tag, state vals, refs                   _fm_encode()      built on demand
    8     REDUCE    callable name, nargs, vals, refs        host iterator,   built on demand,
                    (vals = args [+ setstate state])        range            __setstate__ last
    9     CONST     name                                    register_constant  the registered object
    10    OBJECT    tag, head length, vals, refs            register_objects new(head) on demand,
                    (vals = head items + body items)                         fill(body) with the lists

Decoding runs in phases:

1. shells: every mutable record gets its object (the decoded list or map
   itself, an empty dict or cell, an exception from ``cls.__new__``, ``new()``
   for mutable-style extension types); tuples without references are final.
2. fills and builds, in reverse record order (children are numbered after their
   parents, so this is mostly bottom-up and needs no deep recursion): lists,
   dicts, cells and exceptions get their references patched in; immutables
   (tuples, built extension objects, values, iterators) are built on demand
   when first referenced. Before a ``build`` or value decoder sees its state,
   the containers reachable from it are completed first, so it never observes
   a half-built list or dict. Cycles may pass through mutable records only.
3. ``fill(obj, state)`` of mutable-style extension objects, in reverse record
   order: every built-in container is complete by now (other mutable extension
   objects in the state may still be awaiting their own fill).
4. iterator positions: ``__setstate__`` of restored iterators runs last, once
   the sequences they walk are complete (CPython clamps positions to the
   current length).

Encoding is deterministic (record numbering follows traversal order, dicts keep
insertion order), so the same graph always encodes to the same bytes.
"""

from __future__ import annotations

import builtins
import json
import re
import types
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

import msgspec

from flowmetal.errors import SnapshotError
from flowmetal.lang.names import BUILTIN_EXCEPTIONS

__all__ = ["FORMAT_VERSION", "MAGIC", "Codec", "allow_reduce"]

MAGIC = b"FMSNAP"
FORMAT_VERSION = 1
_HEADER = MAGIC + FORMAT_VERSION.to_bytes(2, "big")

_EXT_BIGINT = 1

(LIST, TUPLE, DICT_STR, DICT, CELL, EXC, EXT, VALUE, REDUCE, CONST, OBJECT) = range(11)
_FILL_NOW, _FILL_LAST = 1, 2  # built-in containers / mutable-style extension objects

_PRIM: frozenset[type] = frozenset({type(None), bool, int, float, str, bytes})
_STR_ONLY: frozenset[type] = frozenset({str})
_INT_ONLY: frozenset[type] = frozenset({int})
_INT_MIN = -(2**63)
_INT_MAX = 2**64 - 1

# Host iterator / lazy types restored through their __reduce__() result.
_ITER_SAMPLES: tuple[Any, ...] = (
    iter([]), reversed([]), iter(()), iter(""), iter("é"), iter(b""),
    iter(range(0)), iter(range(2**70)), range(0),
    iter({}), iter({}.values()), iter({}.items()),
    reversed({}), reversed({}.values()), reversed({}.items()), iter(set()),
    enumerate(()), zip(), map(len, ()), filter(None, ()), reversed(()),
)
_ITER_TYPES: set[type] = set(map(type, _ITER_SAMPLES))  # grows by allow_reduce
del _ITER_SAMPLES
_REDUCERS: dict[str, Callable[..., Any]] = {
    "iter": iter, "reversed": reversed, "enumerate": enumerate, "zip": zip,
    "map": map, "filter": filter, "range": range,
}
_REDUCER_NAMES: dict[Any, str] = {fn: name for name, fn in _REDUCERS.items()}


def allow_reduce(cls: type, name: str, rebuild: Callable[..., Any] | None = None) -> None:
    """Let instances of the host type `cls` (an iterator of a standard module, e.g. `itertools.count`)
    be written through their `__reduce__()`, whose callable must be `cls` itself: they are rebuilt by
    calling `rebuild` (default `cls`) with the reduced arguments, then `__setstate__`. Only types
    allowed here are ever rebuilt, by name, so a snapshot cannot name any other callable."""
    _ITER_TYPES.add(cls)
    _REDUCERS[name] = rebuild or cls
    _REDUCER_NAMES[cls] = name

# C-level exception attributes that live outside __dict__ and are normally set
# by __init__ (which decoding does not call).
_EXC_SLOTS = ("value", "name", "path", "msg", "encoding", "object", "start", "end", "reason")
_SLOT_DESCRIPTORS = (types.MemberDescriptorType, types.GetSetDescriptorType)


class _Missing:
    __slots__ = ()


_MISSING: Any = _Missing()


@dataclass(frozen=True, slots=True)
class _ExtType:
    cls: type
    tag: str
    state: Callable[[Any], Any]
    build: Callable[[Any], Any] | None
    new: Callable[[], Any] | None
    fill: Callable[[Any, Any], None] | None


@dataclass(frozen=True, slots=True)
class _ObjType:
    tag: str
    match: Callable[[Any], bool]
    head: Callable[[Any], list[Any]]
    body: Callable[[Any], list[Any]]
    new: Callable[[list[Any]], Any]
    fill: Callable[[Any, list[Any]], None]


@dataclass(frozen=True, slots=True)
class _ExcType:
    cls: type[BaseException]
    name: str
    slots: tuple[str, ...]


def _ext_hook(code: int, data: memoryview) -> Any:
    if code == _EXT_BIGINT:
        return int.from_bytes(data, "little", signed=True)
    raise ValueError(f"unknown msgpack extension code {code}")


def _prim_items(items: Any, careful: bool) -> bool:
    """True if every item is a primitive msgspec can write as-is.

    ints are range-checked only in `careful` mode (the retry after msgspec
    reported an overflow), which keeps the common case to one C-level pass.
    """
    kinds = set(map(type, items))
    if not kinds <= _PRIM:
        return False
    if careful and int in kinds:
        ints = items if kinds == _INT_ONLY else [x for x in items if type(x) is int]
        return min(ints) >= _INT_MIN and max(ints) <= _INT_MAX
    return True


def _pairs(flat: list[Any]) -> Iterable[tuple[Any, Any]]:
    it = iter(flat)
    return zip(it, it)


# the encoder's value-list writer: items -> (vals, positions of record indices)
_Vals: TypeAlias = Callable[[Iterable[Any]], tuple[list[Any], list[int]]]


class Codec:
    """Encodes program values to snapshot bytes and back. See the module docstring."""

    def __init__(self) -> None:
        self._ext_by_type: dict[type, _ExtType] = {}
        self._ext_by_tag: dict[str, _ExtType] = {}
        self._values: dict[str, Callable[[list[Any]], Any]] = {}
        self._exc_by_type: dict[type, _ExcType] = {}
        self._exc_by_name: dict[str, _ExcType] = {}
        self._consts: dict[str, Any] = {}
        self._const_names: dict[int, str] = {}
        self._objs: dict[str, _ObjType] = {}
        self._enc = msgspec.msgpack.Encoder()
        self._dec = msgspec.msgpack.Decoder(ext_hook=_ext_hook)
        for name in sorted(BUILTIN_EXCEPTIONS):
            self.register_exception(getattr(builtins, name), name)
        self.register_exception(json.JSONDecodeError, "json.JSONDecodeError")
        self.register_exception(re.error, "re.error")
        self.register_constant(Ellipsis, "Ellipsis")
        self.register_constant(NotImplemented, "NotImplemented")

    def copy(self) -> Codec:
        """A codec with the same registrations, to extend without touching this one
        (building the common registrations once per process is most of a codec's cost)."""
        other = Codec.__new__(Codec)
        other._ext_by_type = dict(self._ext_by_type)
        other._ext_by_tag = dict(self._ext_by_tag)
        other._values = dict(self._values)
        other._exc_by_type = dict(self._exc_by_type)
        other._exc_by_name = dict(self._exc_by_name)
        other._consts = dict(self._consts)
        other._const_names = dict(self._const_names)
        other._objs = dict(self._objs)
        other._enc = self._enc
        other._dec = self._dec
        return other

    # -- registration -------------------------------------------------------------

    def register(
        self,
        cls: type,
        tag: str,
        *,
        state: Callable[[Any], Any],
        build: Callable[[Any], Any] | None = None,
        new: Callable[[], Any] | None = None,
        fill: Callable[[Any, Any], None] | None = None,
    ) -> None:
        """Register an extension type, immutable-style (`build`) or mutable-style (`new` + `fill`)."""
        if build is not None and (new is not None or fill is not None):
            raise ValueError(f"{tag!r}: pass either build= or new= and fill=, not both")
        if build is None and (new is None or fill is None):
            raise ValueError(f"{tag!r}: pass build=, or both new= and fill=")
        if tag in self._ext_by_tag or cls in self._ext_by_type:
            raise ValueError(f"extension type {cls.__name__} / tag {tag!r} is already registered")
        ext = _ExtType(cls, tag, state, build, new, fill)
        self._ext_by_type[cls] = ext
        self._ext_by_tag[tag] = ext

    def register_objects(self, tag: str, *, match: Callable[[Any], bool], head: Callable[[Any], list[Any]],
                         body: Callable[[Any], list[Any]], new: Callable[[list[Any]], Any],
                         fill: Callable[[Any, list[Any]], None]) -> None:
        """Register objects of types made at run time (the program's classes and their instances),
        recognised by `match`: written as `head(x)` (what `new` needs to make the object: no cycle
        may pass through it) and `body(x)` (filled in by `fill` once every object exists)."""
        if tag in self._objs:
            raise ValueError(f"object tag {tag!r} is already registered")
        self._objs[tag] = _ObjType(tag, match, head, body, new, fill)

    def _object_type(self, x: Any) -> _ObjType | None:
        for obj in self._objs.values():
            if obj.match(x):
                return obj
        return None

    def register_values(self, decoders: Mapping[str, Callable[[list[Any]], Any]]) -> None:
        """Register decoders for objects with `_fm_encode() -> (tag, list_state)` (immutable-style)."""
        self._values.update(decoders)

    def register_exception(self, cls: type[BaseException], name: str) -> None:
        """Allow instances of exactly `cls` in snapshots, written under `name`."""
        if not (isinstance(cls, type) and issubclass(cls, BaseException)):
            raise TypeError(f"{cls!r} is not an exception class")
        if name in self._exc_by_name and self._exc_by_name[name].cls is not cls:
            raise ValueError(f"exception name {name!r} is already registered")
        slots = tuple(a for a in _EXC_SLOTS if isinstance(getattr(cls, a, None), _SLOT_DESCRIPTORS))
        exc = _ExcType(cls, name, slots)
        self._exc_by_type[cls] = exc
        self._exc_by_name[name] = exc

    def register_constant(self, obj: Any, name: str) -> None:
        """Write `obj` (a host singleton, e.g. a built-in function) by name; decodes to the same object."""
        if name in self._consts and self._consts[name] is not obj:
            raise ValueError(f"constant name {name!r} is already registered")
        self._consts[name] = obj
        self._const_names[id(obj)] = name

    # -- encoding -----------------------------------------------------------------

    def encode(self, root: Any) -> bytes:
        """Serialise the object graph reachable from `root`; raises SnapshotError for unsupported values."""
        body = self._graph(root, careful=False)
        try:
            try:
                return _HEADER + self._enc.encode(body)
            except OverflowError:  # a big int hid in a fast-path container: redo with range checks
                body = self._graph(root, careful=True)
                return _HEADER + self._enc.encode(body)
        except (TypeError, ValueError, OverflowError) as e:
            raise SnapshotError(f"cannot snapshot: {e}") from e

    def _graph(self, root: Any, careful: bool) -> list[Any]:
        memo: dict[int, int] = {}
        objs: list[Any] = []  # objs[i] is the object of records[i]; also keeps temporaries alive
        records: list[Any] = []
        todo: list[int] = []

        memo_get = memo.get
        prim = _PRIM

        def vals(items: Iterable[Any]) -> tuple[list[Any], list[int]]:
            out: list[Any] = []
            refs: list[int] = []
            add = out.append
            for pos, x in enumerate(items):
                t = type(x)
                if t in prim:
                    if t is int and not _INT_MIN <= x <= _INT_MAX:
                        x = msgspec.msgpack.Ext(
                            _EXT_BIGINT, x.to_bytes((x.bit_length() + 8) // 8, "little", signed=True)
                        )
                    add(x)
                else:
                    i = memo_get(id(x))
                    if i is None:
                        i = memo[id(x)] = len(objs)
                        objs.append(x)
                        records.append(None)
                        todo.append(i)
                    refs.append(pos)
                    add(i)
            return out, refs

        root_vals, root_refs = vals((root,))
        record = self._record
        while todo:
            i = todo.pop()
            records[i] = record(objs[i], vals, careful)
        return [records, root_vals, root_refs]

    def _record(self, x: Any, vals: _Vals, careful: bool) -> list[Any]:
        t = type(x)
        if t is list or t is tuple:
            kind = LIST if t is list else TUPLE
            if _prim_items(x, careful):
                return [kind, x, []]
            return [kind, *vals(x)]
        if t is dict:
            if not set(map(type, x)) <= _STR_ONLY:
                return [DICT, *vals([e for kv in x.items() for e in kv])]
            if _prim_items(x.values(), careful):
                return [DICT_STR, x, []]
            keys = list(x)
            values, refs = vals(x.values())
            return [DICT_STR, dict(zip(keys, values)), [keys[p] for p in refs]]
        const = self._const_names.get(id(x))
        if const is not None:
            return [CONST, const]
        ext = self._ext_by_type.get(t)
        if ext is not None:
            return [EXT, ext.tag, *vals((ext.state(x),))]
        exc = self._exc_by_type.get(t)
        if exc is not None:
            return self._exc_record(x, exc, vals)
        if t is types.CellType:
            try:
                return [CELL, *vals((x.cell_contents,))]
            except ValueError:
                return [CELL, [], []]
        if t in _ITER_TYPES:
            reduced = x.__reduce__()
            name = _REDUCER_NAMES.get(reduced[0])
            if name is None:  # pragma: no cover - depends on the host Python
                raise SnapshotError(f"cannot snapshot a value of type '{t.__name__}' (unknown reducer)")
            args = list(reduced[1])
            nargs = len(args)
            if len(reduced) > 2 and reduced[2] is not None:
                args.append(reduced[2])
            return [REDUCE, name, nargs, *vals(args)]
        if getattr(t, "_fm_encode", None) is not None:
            tag, state = x._fm_encode()
            if tag not in self._values:
                raise SnapshotError(f"no decoder registered for value tag {tag!r} (type '{t.__name__}')")
            return [VALUE, tag, *vals(state)]
        obj = self._object_type(x)
        if obj is not None:
            head = obj.head(x)
            return [OBJECT, obj.tag, len(head), *vals([*head, *obj.body(x)])]
        raise SnapshotError(f"cannot snapshot a value of type '{t.__name__}'")

    def _exc_record(self, x: BaseException, exc: _ExcType, vals: _Vals) -> list[Any]:
        items = list(x.args)
        nargs = len(items)
        attrs = [k for k, v in x.__dict__.items() if type(k) is str and self._encodable(v)]
        items.extend(x.__dict__[k] for k in attrs)
        slots = [a for a in exc.slots if getattr(x, a, None) is not None and self._encodable(getattr(x, a))]
        items.extend(getattr(x, a) for a in slots)
        items.append(x.__cause__ if self._encodable(x.__cause__) else None)
        items.append(x.__context__ if self._encodable(x.__context__) else None)
        return [EXC, exc.name, nargs, attrs, slots, x.__suppress_context__, *vals(items)]

    def _encodable(self, v: Any) -> bool:
        """Shallow check: could `v` be written? (used to skip unwritable exception details)"""
        t = type(v)
        return (
            t in _PRIM
            or t in (list, tuple, dict, types.CellType)
            or t in self._ext_by_type
            or t in self._exc_by_type
            or t in _ITER_TYPES
            or id(v) in self._const_names
            or getattr(t, "_fm_encode", None) is not None
            or self._object_type(v) is not None
        )

    # -- decoding -----------------------------------------------------------------

    def decode(self, data: bytes, adopt: tuple[int, dict[str, Any]] | None = None) -> Any:
        """Rebuild the object graph written by `encode`; raises SnapshotError on any problem.

        `adopt=(i, target)`: the root is a list whose item `i` is a dict with str keys that is
        decoded into `target` itself, before anything else is filled (a program's globals: code
        that runs while decoding, such as the `__eq__` of a dict key, reads them)."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise SnapshotError(f"a snapshot must be bytes, not {type(data).__name__}")
        view = memoryview(data)
        if bytes(view[: len(MAGIC)]) != MAGIC:
            raise SnapshotError("not a Flowmetal snapshot (missing FMSNAP header)")
        if len(view) < len(_HEADER):
            raise SnapshotError("corrupt snapshot: truncated header")
        version = int.from_bytes(view[len(MAGIC) : len(_HEADER)], "big")
        if version != FORMAT_VERSION:
            raise SnapshotError(
                f"unsupported snapshot format version {version} "
                f"(this Flowmetal reads version {FORMAT_VERSION})"
            )
        try:
            body = self._dec.decode(view[len(_HEADER) :])
        except (msgspec.DecodeError, ValueError, TypeError, OverflowError) as e:
            raise SnapshotError(f"corrupt snapshot: {e}") from None
        if type(body) is not list or len(body) != 3 or type(body[0]) is not list:
            raise SnapshotError("corrupt snapshot: bad top-level layout")
        try:
            return _Reader(self, body[0]).run(body[1], body[2], adopt)
        except SnapshotError:
            raise
        except Exception as e:
            raise SnapshotError(f"cannot restore snapshot: {type(e).__name__}: {e}") from e


class _Reader:
    """One decode: turns the record table back into objects (see the module docstring)."""

    def __init__(self, codec: Codec, recs: list[Any]) -> None:
        self.codec = codec
        self.recs = recs
        n = len(recs)
        self.objs: list[Any] = [_MISSING] * n
        self.needs_fill = bytearray(n)
        self.started = bytearray(n)
        self.building: set[int] = set()
        self.completed: set[int] = set()
        self.patched: dict[int, list[int]] = {}  # child indices of lists/maps patched in place
        self.setstates: list[tuple[Any, Any]] = []

    def run(self, root_vals: list[Any], root_refs: list[int], adopt: tuple[int, dict[str, Any]] | None = None) -> Any:
        recs, objs = self.recs, self.objs
        for i, rec in enumerate(recs):
            self._shell(i, rec)
        if adopt is not None:
            self._adopt(root_vals, root_refs, *adopt)
        needs_fill, started = self.needs_fill, self.started
        for i in reversed(range(len(recs))):
            if objs[i] is _MISSING:
                self.get(i)
            if needs_fill[i] == _FILL_NOW and not started[i]:
                self.fill(i)
        for i in reversed(range(len(recs))):
            if needs_fill[i] == _FILL_LAST:
                self.fill(i)
        for obj, state in self.setstates:
            obj.__setstate__(state)
        (root,) = self.resolved(root_vals, root_refs)
        return root

    def _adopt(self, root_vals: list[Any], root_refs: list[int], pos: int, target: dict[str, Any]) -> None:
        if root_refs != [0] or self.recs[root_vals[0]][0] != LIST:
            raise SnapshotError("corrupt snapshot: the root is not a list")
        root = self.recs[root_vals[0]]
        if pos not in root[2]:
            raise SnapshotError("corrupt snapshot: no dict to adopt")
        i = root[1][pos]
        if self.recs[i][0] != DICT_STR or self.started[i]:
            raise SnapshotError("corrupt snapshot: no dict to adopt")
        target.update(self.objs[i])
        self.objs[i] = target
        if self.needs_fill[i]:
            self.fill(i)

    def _shell(self, i: int, rec: list[Any]) -> None:
        kind = rec[0]
        codec = self.codec
        fill = _FILL_NOW
        if kind in (LIST, DICT_STR):
            obj: Any = rec[1]
            if type(obj) is not (list if kind == LIST else dict) or type(rec[2]) is not list:
                raise SnapshotError(f"corrupt snapshot: bad record {i}")
            if not rec[2]:
                fill = 0
        elif kind == TUPLE:
            if rec[2]:
                return  # built on demand
            obj = tuple(rec[1])
            fill = 0
        elif kind == CONST:
            if rec[1] not in codec._consts:
                raise SnapshotError(f"snapshot refers to unknown constant {rec[1]!r}")
            obj = codec._consts[rec[1]]
            fill = 0
        elif kind == DICT:
            obj = {}
        elif kind == CELL:
            obj = types.CellType()
        elif kind == EXC:
            exc = codec._exc_by_name.get(rec[1])
            if exc is None:
                raise SnapshotError(f"snapshot contains an exception of unknown type {rec[1]!r}")
            nargs, refs = rec[2], rec[-1]
            if refs and refs[0] < nargs:  # some argument is an object: set .args in fill
                obj = exc.cls.__new__(exc.cls)
            else:
                obj = exc.cls.__new__(exc.cls, *rec[-2][:nargs])
        elif kind == EXT:
            ext = codec._ext_by_tag.get(rec[1])
            if ext is None:
                raise SnapshotError(f"snapshot contains a value of unknown extension type {rec[1]!r}")
            if ext.new is None:
                return  # immutable-style: built on demand
            obj = ext.new()
            fill = _FILL_LAST
        elif kind == VALUE:
            if rec[1] not in codec._values:
                raise SnapshotError(f"snapshot contains a value of unknown value type {rec[1]!r}")
            return
        elif kind == REDUCE:
            if rec[1] not in _REDUCERS:
                raise SnapshotError(f"snapshot refers to a callable that is not allowed: {rec[1]!r}")
            return
        elif kind == OBJECT:
            if rec[1] not in codec._objs:
                raise SnapshotError(f"snapshot contains an object of unknown type {rec[1]!r}")
            return  # made on demand from its head, filled like a container
        else:
            raise SnapshotError(f"corrupt snapshot: unknown record kind {kind!r} (record {i})")
        self.objs[i] = obj
        self.needs_fill[i] = fill

    def get(self, i: int) -> Any:
        obj = self.objs[i]
        if obj is not _MISSING:
            return obj
        if i in self.building:
            raise SnapshotError("corrupt snapshot: a cycle passes only through immutable objects")
        self.building.add(i)
        obj = self.objs[i] = self._build(i, self.recs[i])
        self.building.discard(i)
        return obj

    def resolved(self, vals: list[Any], refs: list[int]) -> list[Any]:
        """A copy of a value list with its record indices replaced by objects."""
        out = list(vals)
        get = self.get
        for p in refs:
            out[p] = get(vals[p])
        return out

    def _build(self, i: int, rec: list[Any]) -> Any:
        kind = rec[0]
        if kind == TUPLE:
            return tuple(self.resolved(rec[1], rec[2]))
        if kind == REDUCE:
            nargs = rec[2]
            args = self.resolved(rec[3], rec[4])
            obj = _REDUCERS[rec[1]](*args[:nargs])
            if len(args) > nargs:
                self.setstates.append((obj, args[nargs]))
            return obj
        if kind == OBJECT:
            nhead, vals, refs = rec[2], rec[3], rec[4]
            head = list(vals[:nhead])
            for p in refs:
                if p < nhead:
                    head[p] = self.get(vals[p])
            obj = self.codec._objs[rec[1]].new(head)
            self.needs_fill[i] = _FILL_NOW
            return obj
        if kind in (VALUE, EXT):
            self.complete(rec[2][p] for p in rec[3])
            state = self.resolved(rec[2], rec[3])
            if kind == VALUE:
                return self.codec._values[rec[1]](state)
            build = self.codec._ext_by_tag[rec[1]].build
            if build is not None:
                return build(state[0])
        raise SnapshotError(f"corrupt snapshot: bad reference to record {i}")

    def fill(self, i: int) -> None:
        self.started[i] = 1
        rec, obj = self.recs[i], self.objs[i]
        kind = rec[0]
        if kind == LIST:  # patch the decoded list in place
            refs = rec[2]
            kids = self.patched[i] = [obj[p] for p in refs]
            get = self.get
            for p, k in zip(refs, kids):
                obj[p] = get(k)
        elif kind == DICT_STR:
            keys = rec[2]
            kids = self.patched[i] = [obj[k] for k in keys]
            for key, k in zip(keys, kids):
                obj[key] = self.get(k)
        elif kind == DICT:
            # keys are hashed now: objects among them (with their own __hash__) must be complete
            self.complete(rec[1][p] for p in rec[2] if p % 2 == 0)
            obj.update(_pairs(self.resolved(rec[1], rec[2])))
        elif kind == CELL:
            if rec[1]:
                obj.cell_contents = self.resolved(rec[1], rec[2])[0]
        elif kind == EXC:
            _, _, nargs, attrs, slots, suppress, vals, refs = rec
            items = self.resolved(vals, refs)
            obj.args = tuple(items[:nargs])
            obj.__dict__.update(zip(attrs, items[nargs:]))
            for name, v in zip(slots, items[nargs + len(attrs) :]):
                setattr(obj, name, v)
            obj.__cause__, obj.__context__ = items[-2:]
            obj.__suppress_context__ = bool(suppress)
        elif kind == OBJECT:
            nhead = rec[2]
            self.codec._objs[rec[1]].fill(obj, self.resolved(rec[3], rec[4])[nhead:])
        else:  # mutable-style EXT
            fill = self.codec._ext_by_tag[rec[1]].fill
            assert fill is not None
            fill(obj, self.resolved(rec[2], rec[3])[0])

    def _kids(self, i: int) -> Iterable[int]:
        rec = self.recs[i]
        kind = rec[0]
        if kind == CONST:
            return ()
        if kind in (LIST, DICT_STR):
            if i in self.patched:
                return self.patched[i]
            return [rec[1][p] for p in rec[2]]
        vals, refs = rec[-2], rec[-1]
        return [vals[p] for p in refs]

    def complete(self, kids: Iterable[int]) -> None:
        """Build/fill everything reachable from records `kids`, stopping at mutable-style
        extension objects (those are filled last, in phase 3)."""
        stack = list(kids)
        while stack:
            i = stack.pop()
            if i in self.completed or self.recs[i][0] == CELL:
                continue  # builders only hold cells (closures), never read them: a cycle may pass
            self.completed.add(i)
            if self.objs[i] is _MISSING:
                self.get(i)
            fill_kind = self.needs_fill[i]
            if fill_kind == _FILL_NOW and not self.started[i]:
                self.fill(i)
            if fill_kind != _FILL_LAST:
                stack.extend(self._kids(i))
