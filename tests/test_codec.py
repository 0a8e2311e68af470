"""Tests for the snapshot value codec (flowmetal.machine.codec)."""

from __future__ import annotations

import contextlib
import json
import math
import re
import types
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowmetal.errors import SnapshotError
from flowmetal.machine.codec import FORMAT_VERSION, MAGIC, Codec

# ---------------------------------------------------------------------------
# helpers


def shape(x: Any) -> Any:
    """A structural description of an object graph: types, values, aliasing and cycles.

    Two graphs have equal shapes iff they are equal *and* share/alias the same way.
    Floats are described by repr() so nan == nan and -0.0 != 0.0.
    """
    seen: dict[int, int] = {}

    def walk(v: Any) -> Any:
        t = type(v)
        if t is float:
            return ("float", repr(v))
        if t in (type(None), bool, int, str, bytes):
            return (t.__name__, v)
        if id(v) in seen:
            return ("ref", seen[id(v)])
        seen[id(v)] = len(seen)
        if t is list:
            return ("list", [walk(e) for e in v])
        if t is tuple:
            return ("tuple", [walk(e) for e in v])
        if t is dict:
            return ("dict", [(walk(k), walk(e)) for k, e in v.items()])
        if t is types.CellType:
            try:
                return ("cell", walk(v.cell_contents))
            except ValueError:
                return ("cell",)
        return (t.__name__, repr(v))

    return walk(x)


def roundtrip(value: Any, codec: Codec | None = None) -> Any:
    codec = codec or Codec()
    return codec.decode(codec.encode(value))


def assert_roundtrip(value: Any, codec: Codec | None = None) -> Any:
    out = roundtrip(value, codec)
    assert shape(out) == shape(value)
    return out


# ---------------------------------------------------------------------------
# primitives


@pytest.mark.parametrize(
    "value",
    [
        None, True, False, 0, 1, -1, 2**63 - 1, -(2**63), 2**64 - 1, 2**64, -(2**63) - 1,
        2**200, -(2**200), 10**1000, 0.0, -0.0, 1.5, math.inf, -math.inf, math.nan,
        1e308, 5e-324, "", "hello", "é☃\U0001f600", b"", b"\x00\xff", "x" * 100_000,
    ],
)
def test_primitives(value: Any) -> None:
    out = assert_roundtrip(value)
    assert type(out) is type(value)


def test_types_kept_apart() -> None:
    out = roundtrip([True, 1, 1.0, False, 0, 0.0, None])
    assert [type(x) for x in out] == [bool, int, float, bool, int, float, type(None)]


def test_big_ints_inside_fast_containers() -> None:
    value = [[1, 2**70, 3], (2**64, -(2**63) - 1), {"a": 2**100, "b": 1}, [*range(10), -(10**30)]]
    assert roundtrip(value) == value


def test_float_specials() -> None:
    out = roundtrip([math.nan, math.inf, -math.inf, -0.0, 0.0])
    assert math.isnan(out[0])
    assert out[1:3] == [math.inf, -math.inf]
    assert math.copysign(1.0, out[3]) == -1.0 and math.copysign(1.0, out[4]) == 1.0


# ---------------------------------------------------------------------------
# containers, identity, cycles


def test_containers() -> None:
    assert_roundtrip([1, "a", [2, [3, (4, 5)]], {"k": [6]}, (), [], {}])
    assert_roundtrip((1, (2, (3,)), [4]))


def test_dict_keys_and_order() -> None:
    d = {3: "a", "s": 1, None: 2, 1.5: 3, (1, "x", (2,)): 4, True: 5, b"b": 6, -(2**80): 7, "z": 8}
    out = assert_roundtrip(d)
    assert list(out) == list(d)
    fast = {"z": 1, "a": 2, "m": [1]}
    assert list(roundtrip(fast)) == ["z", "a", "m"]


def test_aliasing() -> None:
    a: list[Any] = []
    out = roundtrip([a, a])
    assert out[0] is out[1]
    t = (1, [2])
    d = {"k": t}
    out = roundtrip([t, d, t[1]])
    assert out[0] is out[1]["k"] and out[2] is out[0][1]


def test_aliasing_of_fast_containers() -> None:
    ints = list(range(5))
    out = roundtrip({"a": ints, "b": ints, "c": (ints, ints)})
    assert out["a"] is out["b"] is out["c"][0] is out["c"][1]
    out["a"].append(5)
    assert out["c"][1][-1] == 5


def test_list_cycle() -> None:
    a: list[Any] = [1]
    a.append(a)
    out = roundtrip(a)
    assert out[1] is out and out[0] == 1


def test_dict_cycle() -> None:
    d: dict[str, Any] = {}
    d["self"] = d
    d["list"] = [d]
    out = roundtrip(d)
    assert out["self"] is out and out["list"][0] is out


def test_tuple_in_cycle_through_list() -> None:
    lst: list[Any] = []
    t = (lst, 1)
    lst.append(t)
    out = roundtrip(t)
    assert out[0][0] is out
    out2 = roundtrip(lst)
    assert out2[0][0] is out2


def test_cells() -> None:
    empty = types.CellType()
    full = types.CellType(42)
    out = roundtrip([empty, full, full])
    with pytest.raises(ValueError):
        _ = out[0].cell_contents
    assert out[1].cell_contents == 42 and out[1] is out[2]


def test_cell_cycle() -> None:
    cell = types.CellType()
    box = [cell]
    cell.cell_contents = box
    out = roundtrip(cell)
    assert type(out) is types.CellType
    assert out.cell_contents[0] is out


def test_deep_nesting_has_no_recursion_limit() -> None:
    depth = 50_000
    lst: list[Any] = []
    tup: Any = ()
    cur = lst
    for i in range(depth):
        nxt: list[Any] = []
        cur.append(nxt)
        cur = nxt
        tup = (i, tup)
    out_list, out_tup = roundtrip([lst, tup])
    n = 0
    while out_list:
        out_list = out_list[0]
        n += 1
    assert n == depth
    n = 0
    while out_tup:
        assert out_tup[0] == depth - 1 - n
        out_tup = out_tup[1]
        n += 1
    assert n == depth


def test_deterministic_bytes() -> None:
    shared = [1, 2]
    value = {"a": shared, 3: (shared, {"x": 1.5}), "e": ValueError("x"), "it": iter(shared)}
    codec = Codec()
    assert codec.encode(value) == codec.encode(value)
    assert Codec().encode(value) == codec.encode(value)


def test_header() -> None:
    data = Codec().encode(None)
    assert data.startswith(MAGIC)
    assert int.from_bytes(data[len(MAGIC) : len(MAGIC) + 2], "big") == FORMAT_VERSION


# ---------------------------------------------------------------------------
# exceptions


def test_exception_basic() -> None:
    e = KeyError("k", 2)
    e._fm_trace = [("main", 3), ("f", 7)]  # type: ignore[attr-defined]
    out = roundtrip(e)
    assert type(out) is KeyError and out.args == ("k", 2)
    assert out._fm_trace == [("main", 3), ("f", 7)]  # type: ignore[attr-defined]
    assert out.__traceback__ is None and out.__cause__ is None and out.__context__ is None


def test_exception_chaining_and_traceback_dropped() -> None:
    try:
        try:
            raise ZeroDivisionError("division by zero")
        except ZeroDivisionError as inner:
            raise ValueError("outer") from inner
    except ValueError as e:
        caught = e
    assert caught.__traceback__ is not None
    out = roundtrip(caught)
    assert type(out.__cause__) is ZeroDivisionError and out.__cause__ is out.__context__
    assert out.__suppress_context__ is True and out.__traceback__ is None
    assert str(out) == "outer"


def test_exception_context_cycle() -> None:
    a = RuntimeError("a")
    b = TypeError("b")
    a.__context__ = b
    b.__context__ = a
    out = roundtrip([a, b])
    assert out[0].__context__ is out[1] and out[1].__context__ is out[0]
    assert out[0].__suppress_context__ is False


def test_exception_args_referencing_containers_and_itself() -> None:
    payload: list[Any] = [1]
    e = ValueError(payload, (2, 3))
    payload.append(e)
    out = roundtrip(e)
    assert out.args[0][1] is out and out.args[1] == (2, 3)


def test_exception_c_level_attributes() -> None:
    out = roundtrip(StopIteration(5))
    assert out.value == 5
    try:
        b"\xff".decode("utf-8")
    except UnicodeDecodeError as e:
        ude = e
    out = roundtrip(ude)
    assert str(out) == str(ude) and out.start == 0 and out.object == b"\xff"
    imp = ImportError("no module", name="m")
    out = roundtrip(imp)
    assert out.name == "m" and out.msg == "no module"
    assert roundtrip(AttributeError("x", name="attr")).name == "attr"


def test_json_and_re_errors() -> None:
    try:
        json.loads('{"a": ')
    except json.JSONDecodeError as e:
        je = e
    out = roundtrip(je)
    assert type(out) is json.JSONDecodeError
    assert (out.msg, out.doc, out.pos, out.lineno, out.colno) == (je.msg, je.doc, je.pos, je.lineno, je.colno)
    assert str(out) == str(je)
    try:
        re.compile("(")
    except re.error as e:
        rerr = e
    out = roundtrip(rerr)
    assert type(out) is re.error and str(out) == str(rerr) and out.pos == rerr.pos


def test_exception_unencodable_details_are_skipped() -> None:
    e = ValueError("x")
    e.handle = object()  # type: ignore[attr-defined]
    e.__context__ = EOFError("not allow-listed")
    out = roundtrip(e)
    assert not hasattr(out, "handle") and out.__context__ is None


class CustomError(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(f"code {code}")
        self.code = code


def test_registered_exception() -> None:
    codec = Codec()
    with pytest.raises(SnapshotError, match="CustomError"):
        codec.encode(CustomError(3))
    codec.register_exception(CustomError, "CustomError")
    out = roundtrip(CustomError(3), codec)
    assert type(out) is CustomError and out.code == 3 and out.args == ("code 3",)


def test_exception_subclass_not_allowed_implicitly() -> None:
    class MyKeyError(KeyError):
        pass

    with pytest.raises(SnapshotError, match="MyKeyError"):
        Codec().encode(MyKeyError())


# ---------------------------------------------------------------------------
# host iterators


def _advance(it: Any, n: int) -> Any:
    for _ in range(n):
        next(it)
    return it


ITERATOR_CASES = {
    "list": lambda: _advance(iter([1, 2, 3, 4]), 1),
    "list_exhausted": lambda: _advance(iter([1]), 1),
    "list_reversed": lambda: _advance(reversed([1, 2, 3, 4]), 2),
    "tuple": lambda: _advance(iter((1, (2,), 3)), 1),
    "str_ascii": lambda: _advance(iter("abcdef"), 2),
    "str_unicode": lambda: _advance(iter("héllo☃"), 3),
    "bytes": lambda: _advance(iter(b"\x00\x01\x02"), 1),
    "range": lambda: _advance(iter(range(3, 20, 4)), 2),
    "range_neg": lambda: _advance(iter(range(10, -10, -3)), 1),
    "longrange": lambda: _advance(iter(range(2**70, 2**70 + 5)), 2),
    "dict_keys": lambda: _advance(iter({"a": 1, "b": 2, "c": 3}), 1),
    "dict_values": lambda: _advance(iter({"a": 1, "b": 2, "c": 3}.values()), 1),
    "dict_items": lambda: _advance(iter({"a": 1, "b": [2], "c": 3}.items()), 1),
    "dict_reversed": lambda: _advance(reversed({"a": 1, "b": 2, "c": 3}), 1),
    "enumerate": lambda: _advance(enumerate(["a", "b", "c"], 10), 1),
    "zip": lambda: _advance(zip([1, 2, 3], "abc", (7, 8, 9)), 1),
    "zip_strict": lambda: _advance(zip([1, 2], [3, 4], strict=True), 1),
    "map_none_filter": lambda: _advance(filter(None, [0, 1, 0, 2, 3]), 1),
    "reversed_tuple": lambda: _advance(reversed((1, 2, 3, 4)), 1),
    "nested": lambda: _advance(enumerate(zip(iter(range(5)), reversed([5, 6, 7, 8, 9]))), 2),
}


@pytest.mark.parametrize("name", sorted(ITERATOR_CASES))
def test_iterator_positions(name: str) -> None:
    original = ITERATOR_CASES[name]()
    twin = ITERATOR_CASES[name]()
    restored = roundtrip(original)
    assert list(restored) == list(twin)


def test_range_object() -> None:
    r = range(5, 2**80, 7)
    assert roundtrip(r) == r


def test_iterator_shares_its_list() -> None:
    items = [1, 2, 3]
    it = iter(items)
    next(it)
    # the list comes *after* the iterator in the graph, so it is filled later
    out_it, out_items = roundtrip([it, items])
    out_items.append(4)
    assert list(out_it) == [2, 3, 4]
    holder: list[Any] = []
    it2 = iter(holder)
    holder.extend([it2, 1, 2])
    next(it2)
    out = roundtrip(holder)
    assert list(out[0]) == [1, 2]


def test_zip_strict_survives() -> None:
    z = zip([1, 2], [3], strict=True)
    out = roundtrip(z)
    with pytest.raises(ValueError):
        list(out)


class Adder:
    def __init__(self, n: int) -> None:
        self.n = n

    def __call__(self, x: int) -> int:
        return x + self.n


def test_map_with_registered_function() -> None:
    codec = Codec()
    codec.register(Adder, "adder", state=lambda a: a.n, build=Adder)
    m = map(Adder(10), [1, 2, 3])
    next(m)
    assert list(roundtrip(m, codec)) == [12, 13]
    codec.register_constant(str, "str")
    m2 = map(str, range(3))
    next(m2)
    assert list(roundtrip(m2, codec)) == ["1", "2"]


# ---------------------------------------------------------------------------
# extension types


class Point:
    """Immutable-style extension type."""

    def __init__(self, x: Any, y: Any) -> None:
        self.x, self.y = x, y

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Point) and (self.x, self.y) == (other.x, other.y)

    def __hash__(self) -> int:
        return hash((self.x, self.y))


class Node:
    """Mutable-style extension type; can take part in cycles."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.children: list[Node] = []
        self.parent: Node | None = None
        self.me: Node | None = self


class Bag:
    """Immutable-style type whose build inspects (and keeps) its state list."""

    def __init__(self, items: list[int]) -> None:
        self.items = items
        self.total = sum(items)


class Index:
    """Mutable-style type whose fill inspects its state."""

    def __init__(self) -> None:
        self.by_key: dict[str, int] = {}
        self.pairs: list[tuple[str, int]] = []


class Money:
    """A value type encoded through _fm_encode."""

    def __init__(self, amount: int, currency: str) -> None:
        self.amount, self.currency = amount, currency

    def _fm_encode(self) -> tuple[str, list[Any]]:
        return "money", [self.amount, self.currency]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Money) and (self.amount, self.currency) == (other.amount, other.currency)

    def __hash__(self) -> int:
        return hash((self.amount, self.currency))


def _fill_node(n: Node, s: list[Any]) -> None:
    n.name, n.children, n.parent, n.me = s


def _fill_index(ix: Index, s: list[Any]) -> None:
    ix.pairs = s
    ix.by_key = dict(s)


def make_codec() -> Codec:
    codec = Codec()
    codec.register(Point, "point", state=lambda p: [p.x, p.y], build=lambda s: Point(*s))
    codec.register(
        Node, "node", state=lambda n: [n.name, n.children, n.parent, n.me],
        new=lambda: Node.__new__(Node), fill=_fill_node,
    )
    codec.register(Bag, "bag", state=lambda b: b.items, build=Bag)
    codec.register(Index, "index", state=lambda ix: ix.pairs, new=Index, fill=_fill_index)
    codec.register_values({"money": lambda s: Money(*s)})
    return codec


def test_immutable_extension() -> None:
    codec = make_codec()
    p = Point(1, [2, 3])
    out = roundtrip({"p": p, "again": p, Point(1, 2): "as key"}, codec)
    assert out["p"] is out["again"] and out["p"].y == [2, 3]
    assert out[Point(1, 2)] == "as key"


def test_mutable_extension_cycles() -> None:
    codec = make_codec()
    root = Node("root")
    kid = Node("kid")
    kid.parent = root
    root.children.append(kid)
    out = roundtrip(root, codec)
    assert out.me is out and out.children[0].parent is out and out.children[0].name == "kid"


def test_build_sees_complete_state() -> None:
    codec = make_codec()
    items = [1, 2, 3]
    bag = Bag(items)
    out = roundtrip([items, bag], codec)
    assert out[1].total == 6 and out[1].items is out[0]


class Deep:
    """Immutable-style type whose build walks two levels of its state."""

    def __init__(self, rows: list[list[tuple[int, ...]]]) -> None:
        self.rows = rows
        self.total = sum(sum(t) for row in rows for t in row)


def test_build_sees_deeply_complete_state() -> None:
    codec = make_codec()
    codec.register(Deep, "deep", state=lambda d: d.rows, build=Deep)
    rows = [[(1, 2), (3,)], [(4,)]]
    out = roundtrip([rows, Deep(rows), rows[1]], codec)
    assert out[1].total == 10 and out[1].rows is out[0] and out[2] is out[0][1]


def test_cycle_through_built_object_is_an_error() -> None:
    codec = make_codec()
    items: list[Any] = []
    bag = Bag(items)
    items.append(bag)  # Bag is immutable-style: it cannot be rebuilt inside its own state
    with pytest.raises(SnapshotError, match="cycle"):
        roundtrip(items, codec)


def test_fill_sees_complete_state() -> None:
    codec = make_codec()
    ix = Index()
    ix.pairs = [("a", 1), ("b", 2)]
    ix.by_key = dict(ix.pairs)
    out = roundtrip([ix.pairs, ix, [ix]], codec)
    assert out[1].by_key == {"a": 1, "b": 2} and out[1].pairs is out[0]


def test_values() -> None:
    codec = make_codec()
    m = Money(5, "EUR")
    out = roundtrip([m, m, {m: 1}], codec)
    assert out[0] is out[1] and out[0] == Money(5, "EUR") and out[2] == {Money(5, "EUR"): 1}


def test_value_without_decoder() -> None:
    with pytest.raises(SnapshotError, match="money"):
        Codec().encode(Money(1, "X"))


def test_register_validation() -> None:
    codec = make_codec()
    with pytest.raises(ValueError):
        codec.register(Point, "point2", state=list, build=list)
    with pytest.raises(ValueError):
        codec.register(Money, "m", state=list)
    with pytest.raises(ValueError):
        codec.register(Money, "m", state=list, build=list, new=list, fill=print)


def test_constants() -> None:
    out = roundtrip([..., NotImplemented])
    assert out[0] is ... and out[1] is NotImplemented


# ---------------------------------------------------------------------------
# errors


def _gen() -> Any:
    yield 1


@pytest.mark.parametrize(
    ("value", "type_name"),
    [(_gen(), "generator"), (object(), "object"), ({1, 2}, "set"), (Point(1, 2), "Point"), (lambda: 0, "function")],
)
def test_unsupported_values(value: Any, type_name: str) -> None:
    with pytest.raises(SnapshotError, match=f"cannot snapshot a value of type '{type_name}'"):
        Codec().encode([1, {"x": value}])


def test_bad_magic() -> None:
    with pytest.raises(SnapshotError, match="not a Flowmetal snapshot"):
        Codec().decode(b"PICKLE\x00\x01\x90")
    with pytest.raises(SnapshotError, match="not a Flowmetal snapshot"):
        Codec().decode(b"")


def test_bad_version() -> None:
    data = Codec().encode([1])
    future = MAGIC + (FORMAT_VERSION + 1).to_bytes(2, "big") + data[len(MAGIC) + 2 :]
    with pytest.raises(SnapshotError, match=f"version {FORMAT_VERSION + 1}"):
        Codec().decode(future)
    with pytest.raises(SnapshotError, match="truncated"):
        Codec().decode(MAGIC + b"\x00")


def test_corrupt_payload() -> None:
    data = Codec().encode({"a": [1, 2, 3]})
    for bad in (data[:-1], data + b"\x00", data[:8] + b"\xc1", data[:8] + b"\x92\x90\xd4\x01\x05"):
        with pytest.raises(SnapshotError):
            Codec().decode(bad)
    with pytest.raises(SnapshotError):
        Codec().decode("not bytes")  # type: ignore[arg-type]


def test_unknown_extension_on_decode() -> None:
    data = make_codec().encode(Point(1, 2))
    with pytest.raises(SnapshotError, match="unknown extension type 'point'"):
        Codec().decode(data)
    data = make_codec().encode(Money(1, "X"))
    with pytest.raises(SnapshotError, match="money"):
        Codec().decode(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])  # (no deadline: a shared CI box is noisy)
@given(st.data())
def test_fuzzed_bytes_raise_only_snapshot_error(data: st.DataObject) -> None:
    shared = [1, "two", (3.0, None)]
    e = ValueError("x")
    e.__context__ = KeyError(shared)
    value = [shared, {"k": shared, 2: b"b", (1,): 2**70}, types.CellType(shared), e, iter(shared)]
    blob = bytearray(make_codec().encode(value))
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(len(MAGIC) + 2, len(blob) - 1))
        blob[pos] = data.draw(st.integers(0, 255))
    with contextlib.suppress(SnapshotError):
        make_codec().decode(bytes(blob))


# ---------------------------------------------------------------------------
# property tests

keys = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5)
    | st.binary(max_size=5),
    lambda inner: st.tuples(inner, inner) | st.tuples(inner),
    max_leaves=5,
)
leaves = (
    st.none() | st.booleans() | st.integers() | st.integers(min_value=-(2**200), max_value=2**200)
    | st.floats() | st.text() | st.binary()
)
values = st.recursive(
    leaves,
    lambda inner: st.lists(inner, max_size=6)
    | st.lists(inner, max_size=6).map(tuple)
    | st.dictionaries(keys, inner, max_size=6)
    | st.dictionaries(st.text(max_size=4), inner, max_size=6),
    max_leaves=40,
)


@settings(max_examples=300)
@given(values)
def test_property_roundtrip(value: Any) -> None:
    codec = Codec()
    data = codec.encode(value)
    out = codec.decode(data)
    assert shape(out) == shape(value)
    assert repr(out) == repr(value)
    assert codec.encode(out) == data


@settings(max_examples=200)
@given(st.lists(values, min_size=1, max_size=5), st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4)), max_size=8))
def test_property_aliasing(pool: list[Any], links: list[tuple[int, int]]) -> None:
    """Lists from a pool that reference each other (possibly cyclically) keep their shape."""
    boxes: list[list[Any]] = [[v] for v in pool]
    for src, dst in links:
        boxes[src % len(boxes)].append(boxes[dst % len(boxes)])
    root = (boxes, {"first": boxes[0]})
    out = roundtrip(root)
    assert shape(out) == shape(root)
