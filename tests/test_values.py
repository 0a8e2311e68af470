"""FmSet / FmFrozenSet against CPython's set / frozenset, plus the codec
protocol of every value class."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowmetal.machine.stdmods import get_module
from flowmetal.machine.values import (
    VALUE_DECODERS,
    FmFrozenSet,
    FmSet,
    Match,
    Module,
    Pattern,
)


def ordered_union(*parts: Any) -> list[Any]:
    """The ordering rule: left operand first, then new elements in order."""
    out: list[Any] = []
    for part in parts:
        for x in part:
            if x not in out:
                out.append(x)
    return out


def message(fn: Any) -> tuple[type[BaseException], str]:
    with pytest.raises(Exception) as info:
        fn()
    return type(info.value), str(info.value)


# -- identity and repr ---------------------------------------------------------


def test_type_names_look_like_cpython() -> None:
    assert type(FmSet()).__name__ == "set"
    assert type(FmFrozenSet()).__name__ == "frozenset"
    assert repr(FmSet) == "<class 'set'>"
    assert repr(FmFrozenSet) == "<class 'frozenset'>"


@pytest.mark.parametrize(
    "items",
    [[], [1], [1, 2, 3], ["a", "b"], [1, "a", b"x", None, 2.5, (1, 2)], [frozenset()]],
)
def test_repr_matches_cpython_for_order_stable_contents(items: list[Any]) -> None:
    converted = [FmFrozenSet() if isinstance(x, frozenset) else x for x in items]
    s = FmSet(converted)
    host = set(items)
    if list(host) == items:  # CPython's order happens to be insertion order
        assert repr(s) == repr(host)
        assert repr(FmFrozenSet(converted)) == repr(frozenset(items))
    assert str(s) == repr(s)


def test_repr_forms() -> None:
    assert repr(FmSet()) == "set()"
    assert repr(FmFrozenSet()) == "frozenset()"
    assert repr(FmSet([3, 1, 2])) == "{3, 1, 2}"
    assert repr(FmFrozenSet(["b", "a"])) == "frozenset({'b', 'a'})"
    assert repr(FmSet([FmFrozenSet([2, 1])])) == "{frozenset({2, 1})}"
    assert f"{FmSet([1])}" == "{1}"


def test_unhashable_and_hashable() -> None:
    assert message(lambda: hash(FmSet())) == message(lambda: hash(set()))
    assert message(lambda: {FmSet(): 1}) == (TypeError, "unhashable type: 'set'")
    assert message(lambda: FmSet([FmSet()])) == (TypeError, "unhashable type: 'set'")
    a, b = FmFrozenSet([1, 2, "x"]), FmFrozenSet(["x", 2, 1])
    assert a == b and hash(a) == hash(b)
    assert hash(FmFrozenSet([1, 2])) == hash(frozenset([1, 2]))
    assert {a: 1}[b] == 1


def test_constructor_errors_match_cpython() -> None:
    assert message(lambda: FmSet(1)) == message(lambda: set(1))
    assert message(lambda: FmSet([1], [2])) == message(lambda: set([1], [2]))
    assert message(lambda: FmSet(x=1)) == message(lambda: set(x=1))
    assert message(lambda: FmFrozenSet([1], [2])) == message(lambda: frozenset([1], [2]))
    assert message(lambda: FmFrozenSet(x=1)) == message(lambda: frozenset(x=1))
    assert message(lambda: FmSet([[1]])) == message(lambda: set([[1]]))


def test_method_qualnames_say_set() -> None:
    assert message(lambda: FmSet().issubset()) == (
        TypeError,
        "set.issubset() missing 1 required positional argument: 'other'",
    )
    assert FmFrozenSet.union.__qualname__ == "frozenset.union"


def test_json_rejects_sets_like_cpython() -> None:
    assert message(lambda: json.dumps(FmSet([1]))) == message(lambda: json.dumps({1}))
    assert message(lambda: json.dumps(FmFrozenSet())) == message(lambda: json.dumps(frozenset()))
    assert message(lambda: json.dumps({FmFrozenSet(): 1})) == message(
        lambda: json.dumps({frozenset(): 1})
    )


def test_string_formatting() -> None:
    assert format(FmSet([1]), "") == "{1}"
    assert message(lambda: format(FmSet(), "x")) == message(lambda: format(set(), "x"))


# -- order ---------------------------------------------------------------------


def test_insertion_order() -> None:
    s = FmSet(["c", "a", "b", "a"])
    assert list(s) == ["c", "a", "b"]
    s.add("a")
    assert list(s) == ["c", "a", "b"]
    s.discard("a")
    s.add("a")
    assert list(s) == ["c", "b", "a"]


def test_pop_takes_first() -> None:
    s = FmSet([5, 3, 9])
    assert s.pop() == 5
    s.add(5)
    assert [s.pop(), s.pop(), s.pop()] == [3, 9, 5]
    assert message(s.pop) == message(set().pop)
    assert message(s.pop) == (KeyError, "'pop from an empty set'")


def test_pop_interleaved_with_discard_and_readd() -> None:
    s = FmSet(range(6))
    assert s.pop() == 0
    s.discard(1)
    s.discard(3)
    s.add(1)  # back, at the end
    assert list(s) == [2, 4, 5, 1]
    assert [s.pop() for _ in range(4)] == [2, 4, 5, 1]
    s.update([7, 8])
    s -= FmSet([7])
    assert s.pop() == 8


def test_pop_drain_is_linear() -> None:
    n = 100_000
    s = FmSet(range(n))
    started = time.perf_counter()
    out = [s.pop() for _ in range(n)]
    assert time.perf_counter() - started < 3.0  # quadratic would take far longer
    assert out == list(range(n))
    # Rotation after a large drain stays cheap too (the dict is compacted).
    started = time.perf_counter()
    for i in range(n):
        s.add(i)
        assert s.pop() == i
    assert time.perf_counter() - started < 3.0


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        (lambda a, b: a | b, [3, 1, 2, 4]),
        (lambda a, b: a & b, [1, 2]),
        (lambda a, b: a - b, [3]),
        (lambda a, b: a ^ b, [3, 4]),
        (lambda a, b: a.union(b), [3, 1, 2, 4]),
        (lambda a, b: a.intersection(b), [1, 2]),
        (lambda a, b: b.intersection(a), [2, 1]),
        (lambda a, b: a.difference(b), [3]),
        (lambda a, b: b.symmetric_difference(a), [4, 3]),
    ],
)
def test_result_order(expr: Any, expected: list[Any]) -> None:
    a, b = FmSet([3, 1, 2]), FmSet([2, 4, 1])
    assert list(expr(a, b)) == expected
    assert list(expr(FmFrozenSet(a), FmFrozenSet(b))) == expected


def test_multi_argument_methods() -> None:
    s = FmSet([1, 2, 3, 4])
    assert list(s.union([9], (8, 1), "")) == [1, 2, 3, 4, 9, 8]
    assert list(s.intersection([4, 3, 2], {2: 0, 3: 0})) == [2, 3]
    assert list(s.difference([1], FmSet([4]))) == [2, 3]
    for name in ("union", "intersection", "difference"):
        copy = getattr(s, name)()
        assert copy == s and copy is not s and type(copy) is FmSet
    s.update([5], [6, 1])
    assert list(s) == [1, 2, 3, 4, 5, 6]
    s.intersection_update([6, 1, 2, 3], [3, 6, 1])
    assert list(s) == [1, 3, 6]
    s.difference_update([1], [6])
    assert list(s) == [3]
    s.symmetric_difference_update([3, 4, 4, 5])
    assert list(s) == [4, 5]


def test_result_types_follow_left_operand() -> None:
    s, f = FmSet([1]), FmFrozenSet([2])
    assert type(s | f) is FmSet and type(f | s) is FmFrozenSet
    assert type(f.union(s)) is FmFrozenSet and type(s.copy()) is FmSet
    assert FmFrozenSet(f) is f and f.copy() is f
    assert FmSet(s) is not s


def test_inplace_operators_keep_identity() -> None:
    s = FmSet([1, 2, 3])
    orig = s
    s |= FmFrozenSet([4])
    s &= FmSet([4, 3, 2])
    s -= FmSet([2])
    s ^= FmSet([5, 3])
    assert s is orig and list(s) == [4, 5]
    s -= s
    assert s is orig and not s
    f = FmFrozenSet([1])
    g = f
    f |= FmSet([2])
    assert f is not g and list(f) == [1, 2] and list(g) == [1]


@pytest.mark.parametrize("op", ["|", "&", "-", "^", "<", "<=", ">", ">=", "|=", "&=", "-=", "^="])
@pytest.mark.parametrize("other", [1, [1], "a", None])
def test_operator_type_errors_match_cpython(op: str, other: Any) -> None:
    def run(left: Any) -> Any:
        env = {"s": left, "o": other}
        if op.endswith("=") and op not in ("<=", ">="):
            exec(f"s {op} o", env)
            return env["s"]
        return eval(f"s {op} o", env)

    assert message(lambda: run(FmSet([1]))) == message(lambda: run({1}))
    if op not in ("|=", "&=", "-=", "^="):
        assert message(lambda: run(FmFrozenSet([1]))) == message(lambda: run(frozenset([1])))


def test_reflected_operators_are_not_invented() -> None:
    assert message(lambda: [1] | FmSet([2])) == message(lambda: [1] | {2})
    assert message(lambda: 1 - FmSet()) == message(lambda: 1 - set())


def test_dict_views_as_operands() -> None:
    d = {2: "x", 5: "y"}
    s = FmSet([1, 2])
    assert list(s | d.keys()) == [1, 2, 5]
    assert list(s & d.keys()) == [2]
    assert FmSet([2, 5]) == d.keys()
    assert d.keys() == FmSet([5, 2])
    assert FmSet([(2, "x")]) <= d.items()


def test_comparisons() -> None:
    a, b = FmSet([1, 2]), FmFrozenSet([2, 1, 3])
    assert a < b and a <= b and b > a and b >= a and not a > b
    assert a == FmFrozenSet([2, 1]) and a != b
    assert FmSet() != [] and FmSet() != set()
    assert a.issubset([1, 2, 3]) and not a.issubset([1])
    assert b.issuperset(iter([3, 1])) and b.issuperset(a)
    assert a.isdisjoint([3, 4]) and not a.isdisjoint(b) and a.isdisjoint(FmSet())


def test_membership_with_set_keys() -> None:
    s = FmSet([FmFrozenSet([1, 2]), 3])
    assert FmSet([2, 1]) in s
    assert FmSet([2]) not in s
    s.discard(FmSet([1, 2]))
    assert list(s) == [3]
    s.add(FmFrozenSet([1]))
    s.remove(FmSet([1]))
    assert list(s) == [3]
    assert message(lambda: [] in s) == message(lambda: [] in {3})


def test_remove_and_discard_errors() -> None:
    s = FmSet([1])
    assert message(lambda: s.remove(2)) == message(lambda: {1}.remove(2))
    with pytest.raises(KeyError) as info:
        s.remove((1, 2))
    assert info.value.args == ((1, 2),)
    assert message(lambda: s.discard([1])) == message(lambda: {1}.discard([1]))
    s.discard(2)
    assert list(s) == [1]


def test_equal_but_distinct_elements() -> None:
    s = FmSet([1, 1.0, True])
    assert len(s) == 1 and repr(s) == "{1}"
    assert repr(FmSet([1.0]) | FmSet([1, 2])) == "{1.0, 2}"


def test_mutation_during_iteration_raises() -> None:
    s = FmSet([1, 2, 3])

    def mutate() -> None:
        for x in s:
            s.add(x + 10)

    kind, text = message(mutate)
    assert kind is RuntimeError and "changed size during iteration" in text
    s = FmSet([1, 2, 3])

    def pop_while_iterating() -> None:
        for _ in s:
            s.pop()

    assert message(pop_while_iterating)[0] is RuntimeError


def test_clear_and_copy() -> None:
    s = FmSet([1, 2])
    c = s.copy()
    s.clear()
    assert list(c) == [1, 2] and len(s) == 0 and not s


def test_non_reversible_and_non_subscriptable() -> None:
    assert message(lambda: reversed(FmSet())) == message(lambda: reversed(set()))
    assert message(lambda: FmSet()[0]) == message(lambda: set()[0])


def test_abc_registration() -> None:
    from collections.abc import MutableSet, Set

    assert isinstance(FmSet(), MutableSet) and isinstance(FmFrozenSet(), Set)
    assert not isinstance(FmFrozenSet(), MutableSet)


# -- property-based set algebra -------------------------------------------------

elements = st.one_of(st.integers(-5, 5), st.sampled_from(["a", "b", "c", "d"]))
lists = st.lists(elements, max_size=12)


@given(lists, lists)
def test_algebra_matches_host_contents_and_order(a: list[Any], b: list[Any]) -> None:
    fa, fb, ha, hb = FmSet(a), FmSet(b), set(a), set(b)
    cases = [
        (fa | fb, ha | hb, ordered_union(a, b)),
        (fa & fb, ha & hb, [x for x in ordered_union(a) if x in hb]),
        (fa - fb, ha - hb, [x for x in ordered_union(a) if x not in hb]),
        (
            fa ^ fb,
            ha ^ hb,
            [x for x in ordered_union(a) if x not in hb]
            + [x for x in ordered_union(b) if x not in ha],
        ),
    ]
    for ours, host, order in cases:
        assert set(ours) == host
        assert list(ours) == order
        assert len(ours) == len(host)
    assert list(fa.union(b)) == list(fa | fb)
    assert list(fa.intersection(b)) == list(fa & fb)
    assert list(fa.difference(b)) == list(fa - fb)
    assert list(fa.symmetric_difference(b)) == list(fa ^ fb)
    for op in ("__eq__", "__le__", "__lt__", "__ge__", "__gt__"):
        assert getattr(fa, op)(fb) == getattr(ha, op)(hb)
        assert getattr(FmFrozenSet(a), op)(fb) == getattr(frozenset(a), op)(hb)
    assert fa.issubset(b) == ha.issubset(b)
    assert fa.issuperset(b) == ha.issuperset(b)
    assert fa.isdisjoint(b) == ha.isdisjoint(b)
    assert fa.isdisjoint(fb) == ha.isdisjoint(hb)
    if FmFrozenSet(a) == FmFrozenSet(b):  # (not "only if": hash(-1) == hash(-2) in CPython)
        assert hash(FmFrozenSet(a)) == hash(FmFrozenSet(b))


@given(lists, lists)
def test_inplace_matches_operators(a: list[Any], b: list[Any]) -> None:
    for iop, op in (
        ("__ior__", "__or__"),
        ("__iand__", "__and__"),
        ("__isub__", "__sub__"),
        ("__ixor__", "__xor__"),
    ):
        s = FmSet(a)
        expected = list(getattr(FmSet(a), op)(FmSet(b)))
        assert list(getattr(s, iop)(FmSet(b))) == expected
    for method, op in (
        ("update", "__or__"),
        ("intersection_update", "__and__"),
        ("difference_update", "__sub__"),
        ("symmetric_difference_update", "__xor__"),
    ):
        s = FmSet(a)
        getattr(s, method)(b)
        assert list(s) == list(getattr(FmSet(a), op)(FmSet(b)))


operations = st.lists(
    st.tuples(
        st.sampled_from(
            ["add", "discard", "pop", "update", "difference_update", "intersection_update",
             "symmetric_difference_update", "clear", "remove", "copy_back"]
        ),
        lists,
    ),
    max_size=40,
)  # fmt: skip


@given(lists, operations)
@settings(max_examples=300)
def test_mutation_sequences_match_ordered_model(start: list[Any], ops: list[Any]) -> None:
    s = FmSet(start)
    model = ordered_union(start)
    for name, arg in ops:
        if name == "add":
            for x in arg:
                s.add(x)
                if x not in model:
                    model.append(x)
        elif name in ("discard", "remove"):
            for x in arg:
                if name == "remove" and x not in model:
                    with pytest.raises(KeyError):
                        s.remove(x)
                    continue
                getattr(s, name)(x)
                if x in model:
                    model.remove(x)
        elif name == "pop":
            for _ in arg:
                if not model:
                    with pytest.raises(KeyError):
                        s.pop()
                    break
                assert s.pop() == model.pop(0)
        elif name == "update":
            s.update(arg)
            model = ordered_union(model, arg)
        elif name == "difference_update":
            s.difference_update(arg)
            model = [x for x in model if x not in arg]
        elif name == "intersection_update":
            s.intersection_update(arg)
            model = [x for x in model if x in arg]
        elif name == "symmetric_difference_update":
            s.symmetric_difference_update(arg)
            new = [x for x in ordered_union(arg) if x not in model]
            model = [x for x in model if x not in arg] + new
        elif name == "clear":
            s.clear()
            model = []
        elif name == "copy_back":
            s = s.copy()
        assert list(s) == model
        assert len(s) == len(model)


# -- codec protocol ----------------------------------------------------------------


def roundtrip(value: Any) -> Any:
    tag, state = value._fm_encode()
    assert isinstance(tag, str) and isinstance(state, list)
    return VALUE_DECODERS[tag](state)


def test_every_tag_has_a_decoder() -> None:
    assert set(VALUE_DECODERS) >= {"set", "frozenset", "re.Pattern", "re.Match", "module"}


def test_set_roundtrip_keeps_order() -> None:
    s = FmSet(["z", 3, (1, "a"), FmFrozenSet([2, 1])])
    assert s._fm_encode() == ("set", ["z", 3, (1, "a"), FmFrozenSet([2, 1])])
    back = roundtrip(s)
    assert type(back) is FmSet and back is not s and list(back) == list(s)
    back.add(99)
    assert back.pop() == "z"
    f = roundtrip(FmFrozenSet([3, 1]))
    assert type(f) is FmFrozenSet and list(f) == [3, 1] and hash(f) == hash(FmFrozenSet([1, 3]))


def test_pattern_and_match_roundtrip() -> None:
    p = Pattern(r"(?P<w>\w+)-(\d+)?", re.IGNORECASE)
    assert p._fm_encode() == ("re.Pattern", [p.pattern, p.flags])
    p2 = roundtrip(p)
    assert p2 == p and repr(p2) == repr(p) and p2.groupindex == {"w": 1}
    m = p.search("  Ab-12 x")
    assert m is not None
    m2 = roundtrip(m)
    assert type(m2) is Match
    for attr in ("string", "pos", "endpos", "lastindex", "lastgroup", "regs"):
        assert getattr(m2, attr) == getattr(m, attr)
    assert m2.re == p and m2.groups() == m.groups() and repr(m2) == repr(m)
    assert m2.groupdict() == {"w": "Ab"} and m2.expand(r"\2:\g<w>") == "12:Ab"


def test_module_roundtrip_is_the_shared_module() -> None:
    mod = get_module("math")
    assert mod._fm_encode() == ("module", ["math"])
    assert roundtrip(mod) is mod


def test_state_is_plain_data() -> None:
    plain = (int, str, bytes, type(None), tuple, list, dict, float, bool)
    m = Pattern("a").match("a")
    assert m is not None
    values = [FmSet([1]), FmFrozenSet(["a"]), Pattern(b"x", 0), m, Module("json", {})]
    for value in values:
        _tag, state = value._fm_encode()
        for item in state:
            assert isinstance(item, (*plain, Pattern)), item


def test_generic_aliases_for_annotations() -> None:
    assert repr(FmSet[int]) == repr(set[int]) == "set[int]"
    assert repr(FmFrozenSet[str]) == repr(frozenset[str])
    assert repr(Pattern[str]) == repr(re.Pattern[str])
    assert repr(Match[bytes]) == repr(re.Match[bytes])
