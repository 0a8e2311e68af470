"""The json / math / re modules and the builtins table, against CPython."""

from __future__ import annotations

import builtins
import json
import math
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowmetal.lang.names import BUILTIN_NAMES, STD_MODULES
from flowmetal.machine.access import STR, TYPE, fm_getattr, visible_class
from flowmetal.machine.builtins_table import make_builtins
from flowmetal.machine.show import safe_format as _safe_format
from flowmetal.machine.show import safe_format_map as _safe_format_map
from flowmetal.machine.stdmods import STD_MODULE_EXPORTS, get_module
from flowmetal.machine.values import FmFrozenSet, FmSet, Match, Module, Pattern

fre = get_module("re")
fjson = get_module("json")
fmath = get_module("math")


def outcome(fn: Any) -> tuple[str, Any]:
    """A call's result, or its exception type and message, for comparison."""
    try:
        return "ok", fn()
    except Exception as e:
        return type(e).__name__, str(e)


def same_match(ours: Match | None, host: re.Match[Any] | None) -> None:
    if host is None:
        assert ours is None
        return
    assert isinstance(ours, Match)
    assert repr(ours) == repr(host)
    assert ours.group() == host.group() and ours[0] == host[0]
    assert ours.groups() == host.groups() and ours.groups("-") == host.groups("-")
    assert ours.groupdict() == host.groupdict() and ours.groupdict(0) == host.groupdict(0)
    assert list(ours.groupdict()) == list(host.groupdict())
    assert (ours.string, ours.pos, ours.endpos) == (host.string, host.pos, host.endpos)
    assert (ours.lastindex, ours.lastgroup, ours.regs) == (
        host.lastindex,
        host.lastgroup,
        host.regs,
    )
    for g in [*range(host.re.groups + 1), *host.re.groupindex]:
        assert ours.group(g) == host.group(g) and ours[g] == host[g]
        assert ours.span(g) == host.span(g)
        assert (ours.start(g), ours.end(g)) == (host.start(g), host.end(g))
    if host.re.groups:
        every = tuple(range(host.re.groups + 1))
        assert ours.group(*every) == host.group(*every)
    for bad in (-1, host.re.groups + 1, "nope", 1.5, 10**30):
        assert outcome(lambda b=bad: ours.group(b)) == outcome(lambda b=bad: host.group(b))
        assert outcome(lambda b=bad: ours.span(b)) == outcome(lambda b=bad: host.span(b))
    assert outcome(lambda: ours.group([])) == outcome(lambda: host.group([]))


CASES: list[tuple[Any, int, Any]] = [
    (r"(?P<word>\w+)\s(?P<num>\d+)?", 0, "abc 12 def  x 7"),
    (r"a|(b)|(?P<c>c)", 0, "xcbaz"),
    (r"(a)(b)?(c)", 0, "zac abc"),
    (r"^(\w+)$", re.MULTILINE, "one\ntwo\n"),
    (r"HELLO", re.IGNORECASE, "say hello"),
    (r"x*", 0, "axxb"),
    (r"", 0, "ab"),
    (rb"(\d)(?P<rest>\d*)", 0, b"a123b4"),
    (r"(?x) (\d+) \s* - \s* (\d+)", 0, "range: 10 - 20"),
    (r".+", re.DOTALL, "a\nb"),
    (r"\w+", re.ASCII, "héllo"),
    (r"q", 0, "no match here"),
    (r"(.)" * 30, 0, "abcdefghijklmnopqrstuvwxyz0123456789" * 2),
]


@pytest.mark.parametrize(("pattern", "flags", "text"), CASES)
def test_re_functions_match_host(pattern: Any, flags: int, text: Any) -> None:
    p, hp = fre.compile(pattern, flags), re.compile(pattern, flags)
    assert repr(p) == repr(hp)
    assert (p.pattern, p.flags, p.groups, p.groupindex) == (
        hp.pattern,
        hp.flags,
        hp.groups,
        dict(hp.groupindex),
    )
    assert type(p.groupindex) is dict
    same_match(p.match(text), hp.match(text))
    same_match(p.search(text), hp.search(text))
    same_match(p.fullmatch(text), hp.fullmatch(text))
    same_match(p.search(text, 2), hp.search(text, 2))
    same_match(p.search(text, 1, 5), hp.search(text, 1, 5))
    same_match(p.match(text, pos=3, endpos=8), hp.match(text, pos=3, endpos=8))
    same_match(fre.match(pattern, text, flags), re.match(pattern, text, flags))
    same_match(fre.search(pattern, text, flags), re.search(pattern, text, flags))
    same_match(fre.fullmatch(pattern, text, flags), re.fullmatch(pattern, text, flags))
    assert p.findall(text) == hp.findall(text) == fre.findall(pattern, text, flags)
    assert p.findall(text, 1, 6) == hp.findall(text, 1, 6)
    ours, host = list(p.finditer(text)), list(hp.finditer(text))
    assert len(ours) == len(host)
    for o, h in zip(ours, host):
        same_match(o, h)
    assert [m.span() for m in fre.finditer(pattern, text, flags)] == [m.span() for m in host]
    assert p.split(text) == hp.split(text) == fre.split(pattern, text, 0, flags)
    assert p.split(text, maxsplit=1) == hp.split(text, maxsplit=1)
    empty = text[:0]
    repl = b"<\\g<0>>" if isinstance(text, bytes) else "<\\g<0>>"
    assert p.sub(repl, text) == hp.sub(repl, text) == fre.sub(pattern, repl, text, 0, flags)
    assert p.subn(repl, text, 2) == hp.subn(repl, text, 2)
    assert fre.subn(pattern, repl, text, count=1, flags=flags) == re.subn(
        pattern, repl, text, count=1, flags=flags
    )

    def func(m: Any) -> Any:
        return empty.join(reversed([g or empty for g in m.groups()])) or m.group()

    assert p.sub(func, text) == hp.sub(func, text)
    seen: list[Any] = []
    p.sub(lambda m: seen.append(m) or empty, text)
    assert all(type(m) is Match and m.re is p for m in seen)


def test_match_repr_truncates_like_cpython() -> None:
    for text in ("a" * 100, "a'" * 40, "é" * 70):
        assert repr(fre.match(".*", text)) == repr(re.match(".*", text))
    assert repr(fre.match(b".*", b"\x00" * 30)) == repr(re.match(b".*", b"\x00" * 30))


def test_type_names() -> None:
    m = fre.match("a", "a")
    assert type(m).__name__ == "Match" and type(fre.compile("a")).__name__ == "Pattern"
    t = make_builtins(printer)["type"]
    assert repr(t(m)) == "<class 're.Match'>" and fre.Match is t(m) and fre.Pattern is t(fre.compile("a"))
    assert isinstance(m, fre.Match) and not isinstance(m, fre.Pattern) and t(m).__name__ == "Match"
    with pytest.raises(TypeError, match=r"cannot create 're\.Match' instances"):
        fre.Match()
    assert bool(fre.match("", ""))


@pytest.mark.parametrize(
    "template",
    [r"\1-\2", r"\g<word>!", r"\g<0>", r"\n\t\\", r"\101", r"\0", r"\g<num>|\2", r"\3", r"\g<x>",
     r"\q", r"\g<1", r"\g<-1>", "plain"],
)  # fmt: skip
def test_expand_matches_host(template: str) -> None:
    pattern, text = r"(?P<word>\w+)\s(?P<num>\d+)?", "abc def"
    ours, host = fre.search(pattern, text), re.search(pattern, text)
    assert ours is not None and host is not None
    assert outcome(lambda: ours.expand(template)) == outcome(lambda: host.expand(template))


def test_expand_bytes() -> None:
    ours, host = fre.match(rb"(a)(b)?", b"ac"), re.match(rb"(a)(b)?", b"ac")
    assert ours is not None and host is not None
    assert ours.expand(rb"[\1\2]") == host.expand(rb"[\1\2]") == b"[a]"


def test_compile_errors_match_host() -> None:
    for args in [("(",), ("a", "x"), (5,), ("[a-",), (b"a", re.UNICODE)]:
        assert outcome(lambda a=args: fre.compile(*a)) == outcome(lambda a=args: re.compile(*a))
    p = fre.compile("a")
    assert fre.compile(p) is p
    assert outcome(lambda: fre.compile(p, fre.I)) == outcome(
        lambda: re.compile(re.compile("a"), re.I)
    )
    assert outcome(lambda: p.match(5)) == outcome(lambda: re.compile("a").match(5))
    assert outcome(lambda: p.match()) == outcome(lambda: re.compile("a").match())
    assert outcome(lambda: p.sub(lambda m: 5, "a")) == outcome(
        lambda: re.sub("a", lambda m: 5, "a")
    )


@pytest.mark.parametrize(
    "flags", [re.DEBUG, re.LOCALE, re.TEMPLATE if hasattr(re, "TEMPLATE") else 1]
)
def test_nondeterministic_flags_are_refused(flags: int) -> None:
    with pytest.raises(ValueError, match="Flowmetal"):
        fre.compile(b"a", flags)
    with pytest.raises(ValueError, match="Flowmetal"):
        fre.compile(rb"(?L)a")


def test_flags_and_pattern_identity() -> None:
    assert repr(fre.I | fre.M) == repr(re.I | re.M)
    assert fre.IGNORECASE is re.IGNORECASE
    assert fre.compile("a", fre.I) == fre.compile("a", re.IGNORECASE)
    assert fre.compile("a") == fre.compile("a", fre.U)
    assert fre.compile("a") != fre.compile(b"a") and fre.compile("a") != fre.compile("b")
    assert hash(fre.compile("a", 2)) == hash(fre.compile("a", 2))
    assert fre.compile("a") != "a"
    for name in ("LOCALE", "L", "DEBUG", "TEMPLATE", "T"):
        assert name not in STD_MODULE_EXPORTS["re"]


def test_escape_and_error() -> None:
    assert fre.escape("a.b*c") == re.escape("a.b*c")
    assert fre.error is re.error
    with pytest.raises(fre.error):
        fre.compile("(")


def test_groupindex_is_a_copy() -> None:
    p = fre.compile("(?P<a>x)")
    p.groupindex["a"] = 5
    assert p.groupindex == {"a": 1}


@given(st.text(alphabet="ab1 -", max_size=20))
def test_split_and_sub_agree_with_host(text: str) -> None:
    for pattern in (r"(-)|\s", r"b*", r"(a)(1)?", r"\b"):
        assert fre.split(pattern, text) == re.split(pattern, text)
        assert fre.sub(pattern, r"[\g<0>]", text) == re.sub(pattern, r"[\g<0>]", text)
        assert fre.findall(pattern, text) == re.findall(pattern, text)


# -- json ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"indent": 2}, {"sort_keys": True}, {"separators": (",", ":")}, {"ensure_ascii": False},
     {"indent": "\t", "sort_keys": True}, {"allow_nan": True}],
)  # fmt: skip
def test_json_dumps_matches_host(kwargs: dict[str, Any]) -> None:
    doc = {"b": [1, 2.5, None, True], "a": {"é": "x\n"}, "c": [], "n": float("inf")}
    assert fjson.dumps(doc, **kwargs) == json.dumps(doc, **kwargs)
    assert fjson.loads(fjson.dumps(doc, **kwargs)) == doc


def test_json_options_and_errors() -> None:
    assert fjson.dumps({"s": FmSet([2, 1])}, default=list) == '{"s": [2, 1]}'
    assert fjson.dumps({(1,): 1, "a": 2}, skipkeys=True) == '{"a": 2}'
    assert outcome(lambda: fjson.dumps(float("nan"), allow_nan=False)) == outcome(
        lambda: json.dumps(float("nan"), allow_nan=False)
    )
    assert outcome(lambda: fjson.dumps(FmSet())) == (
        "TypeError",
        "Object of type set is not JSON serializable",
    )
    with pytest.raises(fjson.JSONDecodeError) as info:
        fjson.loads("{bad")
    assert str(info.value) == outcome(lambda: json.loads("{bad"))[1]
    assert fjson.JSONDecodeError is json.JSONDecodeError
    assert STD_MODULE_EXPORTS["json"] == {"dumps", "loads", "JSONDecodeError"}


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
        lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
        max_leaves=20,
    )
)
def test_json_roundtrip(doc: Any) -> None:
    text = fjson.dumps(doc)
    assert text == json.dumps(doc)
    assert fjson.loads(text) == doc


# -- math ------------------------------------------------------------------------


def test_math_exports_everything_public() -> None:
    public = {n for n in dir(math) if not n.startswith("_")}
    assert STD_MODULE_EXPORTS["math"] == public
    for name in (
        "pi",
        "e",
        "tau",
        "inf",
        "sqrt",
        "isqrt",
        "gcd",
        "lcm",
        "comb",
        "perm",
        "prod",
        "fsum",
        "dist",
    ):
        assert name in public
    assert fmath.sqrt is math.sqrt and fmath.pi == math.pi and math.isnan(fmath.nan)
    assert (
        fmath.prod(FmSet([2, 3, 4])) == 24
        and fmath.fsum(FmFrozenSet([0.1, 0.2])) == 0.30000000000000004
    )
    assert outcome(lambda: fmath.sqrt(-1)) == ("ValueError", "math domain error")


# -- modules ---------------------------------------------------------------------


def test_module_objects() -> None:
    for name in STD_MODULES:
        mod = get_module(name)
        assert get_module(name) is mod
        assert repr(mod) == f"<module '{name}'>" and str(mod) == repr(mod)
        assert type(mod).__name__ == "module" and repr(type(mod)) == "<class 'module'>"
        assert mod.__name__ == name
        for export in STD_MODULE_EXPORTS[name]:
            assert getattr(mod, export) is not None
    assert outcome(lambda: fjson.nope) == outcome(lambda: json.nope)
    assert outcome(lambda: fjson.nope) == (
        "AttributeError",
        "module 'json' has no attribute 'nope'",
    )
    with pytest.raises(ModuleNotFoundError):
        get_module("os")


def test_modules_are_read_only() -> None:
    with pytest.raises(AttributeError, match="read-only"):
        fmath.pi = 3
    with pytest.raises(AttributeError, match="read-only"):
        del fmath.pi
    assert fmath.pi == math.pi
    assert isinstance(fmath, Module)


# -- builtins ------------------------------------------------------------------------


def printer(*args: Any, **kwargs: Any) -> None:
    pass


def test_builtins_cover_every_name() -> None:
    table = make_builtins(printer)
    assert set(table) == BUILTIN_NAMES | {"__build_class__"}  # what class statements call (not a name programs use)
    assert table["print"] is printer
    assert table["set"] is FmSet and table["frozenset"] is FmFrozenSet
    assert table["type"] is TYPE and table["str"] is STR
    for name in BUILTIN_NAMES - {"print", "set", "frozenset", "type", "str", "repr", "ascii", "format",
                                 "MemoryError", "pow", "super"}:
        assert table[name] is getattr(builtins, name), name
    assert table["None"] is None and table["True"] is True and table["Ellipsis"] is Ellipsis
    assert make_builtins(printer) is not table  # one fresh dict per program


def test_type_builtin() -> None:
    t = make_builtins(printer)["type"]
    assert t(1) is int and t(FmSet()) is FmSet and t(fre.compile("a")) is visible_class(Pattern)
    assert t("a") is STR and t(t(1)) is t and t(t) is t and t(STR) is t and t(t(iter([]))) is t
    assert repr(t) == "<class 'type'>" and str(t) == "<class 'type'>" and t.__name__ == "type"
    assert isinstance(int, t) and not isinstance(1, t) and isinstance(1, (str, t, int))
    assert isinstance(t(iter([])), t) and isinstance(STR, t)
    assert repr(t(t)) == repr(type(type)) == "<class 'type'>"
    assert outcome(lambda: t("X", (), {})) == ("TypeError", "type() takes 1 argument in Flowmetal")
    assert outcome(lambda: t()) == outcome(lambda: type())
    assert outcome(lambda: t(1, 2)) == outcome(lambda: type(1, 2))


# -- safe_format -----------------------------------------------------------------------


def safe_format(template: Any, *args: Any, **kwargs: Any) -> Any:
    return _safe_format(fm_getattr, template, *args, **kwargs)


def safe_format_map(template: Any, mapping: Any) -> Any:
    return _safe_format_map(fm_getattr, template, mapping)


@pytest.mark.parametrize(
    ("template", "args", "kwargs"),
    [
        ("{} and {}", (1, "a"), {}),
        ("{0!r:>10}|{1:.3f}", ("s", 3.14159), {}),
        ("{p.real} {p.imag} {d[k]} {d[0]}", (), {"p": 3 + 4j, "d": {"k": 5, "0": 6}}),
        ("{0:{1}{2}}", (3.5, ">", 8), {}),
        ("{{literal}} {0}", (1,), {}),
        ("{0[__class__]}", ({"__class__": "data"},), {}),
        ("{x:{w}.{p}f}", (), {"x": 2.0, "w": 8, "p": 2}),
        ("{", (), {}),
        ("}", (), {}),
        ("{0.}", (1,), {}),
        ("{0[}", (1,), {}),
        ("{1}", (1,), {}),
        ("{missing}", (), {}),
        ("{0:{1:{2}}}", (1, 2, 3), {}),
        ("{0.nope}", (1,), {}),
        ("{!x}", (1,), {}),
        ("{0} {0!r} {0!s:>9}", ([1, (2, "x")],), {}),
    ],
)
def test_safe_format_matches_str_format(
    template: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    assert outcome(lambda: safe_format(template, *args, **kwargs)) == outcome(
        lambda: template.format(*args, **kwargs)
    )
    assert outcome(lambda: safe_format_map(template, kwargs)) == outcome(
        lambda: template.format_map(kwargs)
    )


@pytest.mark.parametrize(
    "template",
    ["{0.__class__}", "{0.real.__class__}", "{0[0].__globals__}", "{0:{0.__class__}}",
     "ok {0} {0.__doc__!r}", "{0.__init__.__globals__[x]}", "{0.append}", "{0._d}"],
)  # fmt: skip
def test_safe_format_reads_only_allowed_attributes(template: str) -> None:
    with pytest.raises(AttributeError, match="has no attribute"):
        safe_format(template, (FmSet([1]),))
    with pytest.raises(AttributeError, match="has no attribute"):
        safe_format_map(template.replace("{0", "{a"), {"a": (FmSet([1]),)})


def test_safe_format_writes_no_addresses() -> None:
    assert safe_format("{} {!r} {!s} {!a}", len, iter([]), [printer], object()) == (
        "<built-in function len> <list_iterator object> [<function printer>] <object object>")


def test_safe_format_non_str_receiver() -> None:
    assert outcome(lambda: safe_format(b"x", 1))[0] == "TypeError"
    assert outcome(lambda: safe_format_map(5, {}))[0] == "TypeError"


def test_safe_format_with_sets() -> None:
    assert safe_format("{0} {1!r:>12}", FmSet([2, 1]), FmFrozenSet()) == "{2, 1}  frozenset()"
