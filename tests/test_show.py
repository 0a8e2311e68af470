"""Values as text (machine/show.py): CPython's own text wherever it cannot differ between
processes, and the same text without the address where it would."""

from __future__ import annotations

from typing import Any

import pytest

from flowmetal.machine.show import fm_ascii, fm_format, fm_percent, fm_repr, fm_str


def outcome(fn: Any) -> tuple[str, Any]:
    try:
        return "ok", fn()
    except Exception as e:
        return type(e).__name__, str(e)


def _f() -> None:
    pass


@pytest.mark.parametrize(
    ("template", "args"),
    [
        ("%s", 5), ("%s %s", (1, "a")), ("%r|%a|%s", ("é", "é", "é")), ("%5s|%-5r|%.2s", ("ab", "c", "xyz")),
        ("%*d|%-*.*f", (4, 7, 8, 2, 3.14159)), ("%(a)s %(a)r %(b)05d", {"a": "x", "b": 3}), ("100%%", ()),
        ("%c%c", (65, "b")), ("%s", ()), ("%s %s", (1,)), ("%s", (1, 2)), ("%(missing)s", {"a": 1}),
        ("%d", "x"), ("%(a)s %s", {"a": 1}), ("%", 1), ("%y", 1), ("%s", [1, (2, "x")]), ("%s", {"k": [1]}),
        ("%r", ({1: "a"},)), (b"%s|%r|%a", (b"x", "y", "é")), ("%x %o %e %g", (255, 8, 1.5, 2.5)),
        ("%(x)s", [("x", 1)]),
    ],
)
def test_percent_formatting_matches_cpython(template: Any, args: Any) -> None:
    assert outcome(lambda: fm_percent(template, args)) == outcome(lambda: template % args)


@pytest.mark.parametrize(
    "value",
    [1, 2.5, "s", b"b", None, [1, [2, (3,)]], (1,), (), {"a": {"b": [1, 2]}}, [[]], range(3), slice(1, "x"),
     ValueError("v", 1), KeyError("k"), {1: (2, "3")}, [1.0, -0.0, float("inf")], "é\n\t'\""],
)
def test_repr_and_str_match_cpython_for_deterministic_values(value: Any) -> None:
    assert fm_repr(value) == repr(value)
    assert fm_str(value) == str(value)
    assert fm_ascii(value) == ascii(value)
    assert fm_format(value, "") == format(value, "")


def test_recursive_containers_use_cpythons_markers() -> None:
    xs: list[Any] = [1, _f]
    xs.append(xs)
    d: dict[str, Any] = {"f": _f}
    d["self"] = d
    t = (xs, _f)
    assert fm_repr(xs) == "[1, <function _f>, [...]]"
    assert fm_repr(d) == "{'f': <function _f>, 'self': {...}}"
    assert fm_repr(t) == "([1, <function _f>, [...]], <function _f>)"


def test_no_address_anywhere() -> None:
    values = [_f, len, iter([]), object(), [].append, map(len, []), (x for x in []), ValueError(_f)]
    for v in values:
        for text in (fm_repr(v), fm_str(v), fm_ascii(v), fm_format(v, ""), fm_percent("%s %r", (v, v))):
            assert "0x" not in text, text
