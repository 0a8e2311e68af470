"""Turning values into text the way CPython does, minus anything that differs
between processes.

CPython prints some objects with their memory address (`<function f at
0x7f...>`, `<list_iterator object at 0x...>`, `<object object at 0x...>`), and
builds some error messages from such reprs (`list.index`). A program that
printed one would print something else after a restart, and its replay would
diverge. Every way a program turns a value into text goes through here instead:
`repr()`, `str()`, `ascii()`, `format()`, `print()`, f-strings, `%`-formatting
and `str.format`. The result is CPython's text with the address left out
(`<function f>`, `<list_iterator object>`), and identical everywhere else.

Containers are written by CPython itself (in C, at full speed) whenever every
element's repr is already deterministic; otherwise they are written here,
element by element, with CPython's recursion markers (`[...]`, `{...}`).
"""

from __future__ import annotations

import re
import string
import types
from _string import formatter_field_name_split
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

__all__ = [
    "BUILTIN_FUNCTION_NAMES",
    "SAFE_TYPES",
    "Shown",
    "fm_ascii",
    "fm_exc_str",
    "fm_format",
    "fm_mod",
    "fm_percent",
    "fm_repr",
    "fm_str",
    "register_leaf",
    "register_repr",
    "safe_format",
    "safe_format_map",
    "shown",
]

# Types whose repr never depends on the process: CPython's own scalars, and the
# Flowmetal value classes whose __repr__ is written with fm_repr (they register).
_LEAF: set[type] = {int, float, complex, str, bytes, bool, type(None), type(...), type(NotImplemented), range}
# Functions that stand in for CPython built-ins: they print as `<built-in function NAME>`.
BUILTIN_FUNCTION_NAMES: dict[types.CodeType, str] = {}
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+(?=>$)")
_MAX_DEPTH = 40  # containers nested deeper are written element by element


def register_leaf(cls: type) -> None:
    """`cls` writes its own deterministic repr (using fm_repr for anything it contains)."""
    _LEAF.add(cls)


# Host types (not subclassable, or CPython's own) whose repr Flowmetal writes instead,
# e.g. `operator.itemgetter(...)` or `functools.partial(...)` holding a function.
_REPRS: dict[type, Callable[[Any], str]] = {}


def register_repr(cls: type, write: Callable[[Any], str]) -> None:
    """Write instances of exactly `cls` with `write(x)` (which uses fm_repr for what x holds)."""
    _REPRS[cls] = write


def _all_leaves(x: Any, depth: int) -> bool:
    """Whether CPython's own repr of container `x` is deterministic (every element is)."""
    t = type(x)
    if t is dict:
        return _all_leaves_seq(x.keys(), depth) and _all_leaves_seq(x.values(), depth)
    return _all_leaves_seq(x, depth)


def _all_leaves_seq(items: Any, depth: int) -> bool:
    kinds = set(map(type, items))
    if kinds <= _LEAF:
        return True
    if depth >= _MAX_DEPTH or not kinds <= _LEAF | _CONTAINERS:
        return False
    return all(type(e) in _LEAF or _all_leaves(e, depth + 1) for e in items)


_CONTAINERS = {list, tuple, dict}


# The writer of the repr being written, if any: a value's own `__repr__` (a namedtuple's, a
# deque's) calls fm_repr for what it holds, and those calls must share the containers already
# open, or a list holding the value that holds the list would be written forever (CPython's
# `Py_ReprEnter` is per thread in the same way).
_OPEN: list[_Writer | None] = [None]


def fm_repr(x: Any) -> str:
    """`repr(x)` without process-dependent parts."""
    t = type(x)
    if t in _LEAF:
        return repr(x)
    if t in _CONTAINERS and _all_leaves(x, 0):
        return repr(x)  # (no cycle can pass through it)
    writer = _OPEN[0]
    if writer is not None:
        return writer.repr(x)
    writer = _OPEN[0] = _Writer()
    try:
        return writer.repr(x)
    finally:
        _OPEN[0] = None


class _Writer:
    """Writes containers whose elements need fm_repr, with CPython's cycle markers."""

    __slots__ = ("active",)

    def __init__(self) -> None:
        self.active: set[int] = set()

    def repr(self, x: Any) -> str:
        t = type(x)
        if t in _LEAF:
            return repr(x)
        if t not in _CONTAINERS:
            return _other_repr(x, self)
        key = id(x)
        if key in self.active:
            return "[...]" if t is list else "{...}" if t is dict else "(...)"
        self.active.add(key)
        try:
            if t is list:
                return "[" + ", ".join([self.repr(e) for e in x]) + "]"
            if t is tuple:
                if len(x) == 1:
                    return "(" + self.repr(x[0]) + ",)"
                return "(" + ", ".join([self.repr(e) for e in x]) + ")"
            return "{" + ", ".join([f"{self.repr(k)}: {self.repr(v)}" for k, v in x.items()]) + "}"
        finally:
            self.active.discard(key)


def _other_repr(x: Any, writer: _Writer) -> str:
    t = type(x)
    write = _REPRS.get(t)
    if write is not None:
        return write(x)
    if isinstance(x, BaseException):
        return _exc_repr(x, writer)
    if t is types.FunctionType:
        name = BUILTIN_FUNCTION_NAMES.get(x.__code__)
        if name is not None:
            return f"<built-in function {name}>"
        return f"<function {x.__qualname__}>"
    if t is types.MethodType:
        return f"<bound method {x.__func__.__qualname__} of {writer.repr(x.__self__)}>"
    if t is slice:
        return f"slice({writer.repr(x.start)}, {writer.repr(x.stop)}, {writer.repr(x.step)})"
    return _ADDRESS.sub("", repr(x))


def _exc_repr(e: BaseException, writer: _Writer) -> str:
    if type(e).__repr__ is not BaseException.__repr__:
        return _ADDRESS.sub("", repr(e))
    name = type(e).__name__
    args = e.args
    if len(args) == 1:
        return f"{name}({writer.repr(args[0])})"
    return name + writer.repr(args)


def fm_exc_str(e: BaseException) -> str:
    """`str(e)` for an exception, with its arguments written by fm_repr/fm_str."""
    method = type(e).__str__
    if method is BaseException.__str__:
        args = e.args
        if not args:
            return ""
        if len(args) == 1:
            return fm_str(args[0])
        return fm_repr(args)
    if method is KeyError.__str__:
        args = e.args
        if len(args) == 1:
            return fm_repr(args[0])
        return fm_exc_str(BaseException(*args))
    return _ADDRESS.sub("", str(e))


def fm_str(x: Any) -> str:
    """`str(x)`."""
    t = type(x)
    if t is str:
        return x
    if t is int or t is float or t is bool:
        return str(x)
    if isinstance(x, BaseException):
        return fm_exc_str(x)
    if isinstance(x, str):
        return str(x)
    if t in _LEAF:
        return str(x)  # a leaf's own str (a date's ISO form) is as deterministic as its repr
    if t.__str__ is object.__str__ or t in _CONTAINERS:
        return fm_repr(x)
    return _ADDRESS.sub("", str(x))


def str_call(*args: Any, **kwargs: Any) -> str:
    """The built-in `str(...)` call: one value, or bytes with an encoding."""
    if len(args) == 1 and not kwargs:
        return fm_str(args[0])
    if not args and set(kwargs) == {"object"}:
        return fm_str(kwargs["object"])
    return str(*args, **kwargs)


def fm_ascii(x: Any) -> str:
    """`ascii(x)`: the repr with non-ASCII characters escaped."""
    r = fm_repr(x)
    if r.isascii():
        return r
    return r.encode("ascii", "backslashreplace").decode("ascii")


_NATIVE_FORMAT = frozenset({int, float, complex, str, bool})


def fm_format(value: Any, spec: Any = "") -> str:
    """`format(value, spec)`."""
    if type(value) in _NATIVE_FORMAT:
        return format(value, spec)
    if spec == "" and type(value).__format__ is object.__format__:
        return fm_str(value)
    return format(value, spec)


class Shown:
    """A value whose text may contain an address, as an f-string field (`{x}`, `{x!r:>10}`)
    sees it: CPython's f-string machinery asks it for its repr, str or format, and it
    answers with fm_repr, fm_str and fm_format of the value."""

    __slots__ = ("_fm_value",)

    def __init__(self, value: Any) -> None:
        self._fm_value = value

    def __repr__(self) -> str:
        return fm_repr(self._fm_value)

    def __str__(self) -> str:
        return fm_str(self._fm_value)

    def __format__(self, spec: str) -> str:
        return fm_format(self._fm_value, spec)


def shown(value: Any) -> Any:
    """An f-string field's value: itself when its text cannot contain an address."""
    return value if type(value) in _LEAF else Shown(value)


SAFE_TYPES = _LEAF  # the same set (kinds register more), for generated code's inline test


# --------------------------------------------------------------------------------
# %-formatting
# --------------------------------------------------------------------------------

_SPEC = re.compile(rb"%(?:\((?P<key>[^)]*)\))?(?P<flags>[-+ #0]*)(?P<width>\*|\d+)?(?:\.(?P<prec>\*|\d+))?"
                   rb"[hlL]?(?P<conv>.)?", re.DOTALL)
_SAFE_ARGS = frozenset({int, float, str, bytes, bool, type(None), complex})


def fm_mod(a: Any, b: Any) -> Any:
    """`a % b` where `a` may be a format string."""
    t = type(a)
    if t is str or t is bytes:
        return fm_percent(a, b)
    return a % b


def fm_percent(template: Any, args: Any) -> Any:
    """`template % args` with %s/%r/%a conversions written by fm_str/fm_repr/fm_ascii."""
    t = type(args)
    if t in _SAFE_ARGS or (t is tuple and set(map(type, args)) <= _SAFE_ARGS):
        return template % args
    if type(template) is not str and type(template) is not bytes:
        return template % args
    specs = _parse_percent(template)
    if specs is None:
        return template % args
    is_bytes = type(template) is bytes
    if any(key is not None for key, _, _, _ in specs):
        return _percent_mapping(template, specs, args, is_bytes)
    return _percent_positional(template, specs, args, is_bytes)


@lru_cache(maxsize=512)
def _parse_percent(template: str | bytes) -> tuple[tuple[Any, ...], ...] | None:
    """The conversions of a template: (key, star_width, star_prec, conversion) each, or None if
    the template is malformed (CPython then reports it)."""
    data = template.encode("utf-8", "surrogatepass") if isinstance(template, str) else template
    out: list[tuple[Any, ...]] = []
    pos = 0
    while True:
        i = data.find(b"%", pos)
        if i < 0:
            return tuple(out)
        m = _SPEC.match(data, i)
        if m is None or m.group("conv") is None:
            return None
        conv = m.group("conv").decode("latin-1")
        pos = m.end()
        if conv == "%":
            continue
        key = m.group("key")
        out.append((None if key is None else key.decode("utf-8", "surrogatepass"), m.group("width") == b"*",
                    m.group("prec") == b"*", conv))


def _converted(value: Any, conv: str, is_bytes: bool) -> tuple[Any, bool]:
    """A %s/%r/%a argument as the text CPython would insert (True), or unchanged (False)."""
    if conv == "r" or conv == "a":
        text = fm_ascii(value) if (conv == "a" or is_bytes) else fm_repr(value)
        return (text.encode("ascii") if is_bytes else text), True
    if conv == "s" and not is_bytes:
        return fm_str(value), True
    return value, False


def _percent_positional(template: Any, specs: tuple[tuple[Any, ...], ...], args: Any, is_bytes: bool) -> Any:
    items = list(args) if type(args) is tuple else [args]
    out: list[Any] = []
    pieces: list[Any] = []
    i = 0
    changed = False
    for _key, star_w, star_p, conv in specs:
        for star in (star_w, star_p):
            if star and i < len(items):
                out.append(items[i])
                i += 1
        if i >= len(items):
            break
        value, did = _converted(items[i], conv, is_bytes)
        changed = changed or did
        out.append(value)
        pieces.append(conv if not did else "s")
        i += 1
    if not changed:
        return template % args
    out.extend(items[i:])
    new_template = _retemplate(template, pieces)
    if type(args) is not tuple and len(out) == 1:
        return new_template % (out[0],)
    return new_template % tuple(out)


def _retemplate(template: Any, convs: list[str], keys: list[str] | None = None) -> Any:
    """The template with its first conversions replaced (r/a become s once converted), and
    with `keys`, each conversion's mapping key replaced too (`%(k0)s`)."""
    is_bytes = type(template) is bytes
    data = template if is_bytes else template.encode("utf-8", "surrogatepass")
    parts = []
    pos = 0
    n = 0
    while n < len(convs):
        m = _SPEC.match(data, data.find(b"%", pos))
        assert m is not None
        if m.group("conv") == b"%":
            parts.append(data[pos:m.end()])
            pos = m.end()
            continue
        if keys is None:
            parts.append(data[pos:m.start("conv")])
        else:
            parts.append(data[pos:m.start()] + b"%(" + keys[n].encode() + b")" + data[m.end("key") + 1:m.start("conv")])
        parts.append(convs[n].encode("ascii"))
        pos = m.end()
        n += 1
    parts.append(data[pos:])
    joined = b"".join(parts)
    return joined if is_bytes else joined.decode("utf-8", "surrogatepass")


def _percent_mapping(template: Any, specs: tuple[tuple[Any, ...], ...], args: Any, is_bytes: bool) -> Any:
    if not isinstance(args, Mapping) and not hasattr(type(args), "__getitem__"):
        return template % args
    values: dict[Any, Any] = {}
    convs: list[str] = []
    renamed: list[str] = []
    for n, (key, _sw, _sp, conv) in enumerate(specs):
        if key is None:
            return template % args  # mixing keys and positions: CPython's error
        value, did = _converted(args[key], conv, is_bytes)
        fresh = f"k{n}"
        values[fresh] = value
        renamed.append(fresh)
        convs.append("s" if did else conv)
    return _retemplate(template, convs, renamed) % values


# --------------------------------------------------------------------------------
# str.format
# --------------------------------------------------------------------------------


class _Formatter(string.Formatter):
    """str.format with attribute fields checked against the allow-list and every
    conversion written here."""

    def __init__(self, getattr_: Callable[[Any, str], Any], mapping_only: bool = False) -> None:
        self.getattr_ = getattr_
        self.mapping_only = mapping_only  # format_map: no positional fields

    def get_value(self, key: Any, args: Any, kwargs: Any) -> Any:
        if isinstance(key, int):
            if self.mapping_only:
                raise ValueError("Format string contains positional fields")
            if key >= len(args):
                raise IndexError(f"Replacement index {key} out of range for positional args tuple")
            return args[key]
        return kwargs[key]

    def get_field(self, field_name: str, args: Any, kwargs: Any) -> Any:
        first, rest = formatter_field_name_split(field_name)
        obj = self.get_value(first, args, kwargs)
        for is_attr, i in rest:
            obj = self.getattr_(obj, i) if is_attr else obj[i]
        return obj, first

    def convert_field(self, value: Any, conversion: str | None) -> Any:
        if conversion is None:
            return value
        if conversion == "s":
            return fm_str(value)
        if conversion == "r":
            return fm_repr(value)
        if conversion == "a":
            return fm_ascii(value)
        raise ValueError(f"Unknown conversion specifier {conversion!s}")

    def format_field(self, value: Any, format_spec: str) -> Any:
        return fm_format(value, format_spec)


@lru_cache(maxsize=1024)
def _needs_formatter(template: str) -> bool:
    """Whether any field of the template reads an attribute (or the template is malformed)."""
    try:
        for _literal, field, spec, _conversion in _parser.parse(template):
            if field is None:
                continue
            _first, rest = formatter_field_name_split(field)
            if any(is_attr for is_attr, _ in rest):
                return True
            if spec and _needs_formatter(spec):
                return True
    except ValueError:
        return False  # CPython reports the malformed template itself
    return False


_parser = string.Formatter()


@lru_cache(maxsize=1024)
def _malformed(template: str) -> bool:
    try:
        for _literal, _field, spec, _conversion in _parser.parse(template):
            if spec and _malformed(spec):
                return True
    except ValueError:
        return True
    return False


def _all_safe(args: Any, kwargs: Any) -> bool:
    return set(map(type, args)) <= _SAFE_ARGS and set(map(type, kwargs.values())) <= _SAFE_ARGS


def safe_format(getattr_: Callable[[Any, str], Any], template: Any, /, *args: Any, **kwargs: Any) -> Any:
    """`template.format(*args, **kwargs)`."""
    if not isinstance(template, str):
        raise TypeError(f"descriptor 'format' for 'str' objects doesn't apply to a '{type(template).__name__}' object")
    if (not _needs_formatter(template) and _all_safe(args, kwargs)) or _malformed(template):
        return template.format(*args, **kwargs)  # (a malformed template: CPython's own error)
    return _Formatter(getattr_).vformat(template, args, kwargs)


def safe_format_map(getattr_: Callable[[Any, str], Any], template: Any, mapping: Any, /) -> Any:
    """`template.format_map(mapping)`."""
    if not isinstance(template, str):
        raise TypeError("descriptor 'format_map' for 'str' objects doesn't apply to a "
                        f"'{type(template).__name__}' object")
    if _malformed(template) or (not _needs_formatter(template) and isinstance(mapping, dict)
                                and set(map(type, mapping.values())) <= _SAFE_ARGS):
        return template.format_map(mapping)
    return _Formatter(getattr_, mapping_only=True).vformat(template, (), mapping)
