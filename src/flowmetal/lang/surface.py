"""The language surface: every kind of value a program can hold, and every attribute
it may name. This is the one allow-list of what programs can touch.

Programs are untrusted. A program can compute, wait and use connectors, and
nothing else, so the attributes it can reach are listed here rather than
the ones it cannot: anything not in this table does not exist for a program.

Readers of the table:

* the checker (`check.py`) refuses, at `FILE:LINE:COL`, an attribute name that
  no value has (`ALL_ATTRIBUTES`), and every name starting with `_` but the
  few dunders values document;
* the compiler (`translate.py`) reads an attribute natively (CPython's own
  LOAD_ATTR, at full speed) only when the name means the same, allowed thing
  on every value that has it; every other name (`ROUTED_ATTRIBUTES`) goes
  through the machine's checked `getattr`, which consults the table for the
  receiver's kind and raises CPython's `AttributeError` otherwise;
* the machine (`machine/access.py`) maps each host type to its kind here and
  provides the attributes whose behaviour Flowmetal implements itself
  (`routed`: views, safe formatting, size checks before allocating);
* `docs/language.md` carries a section generated from `KINDS`
  (`tests/test_surface.py` keeps it equal to the table).

Why some names are routed: a name is safe to read natively only if every value
a program can hold either lacks it or allows it. Names Flowmetal implements
itself are routed, and so are *data* attributes of any kind whose type object
a program can hold (`int`, the exception types): on the type object those
names are host descriptors, not values (`int.real`, `KeyError.args`).
A test compares this reasoning with what the host types really have
(`tests/security/test_surface_closed.py`).

To add a value kind, module or attribute: add it here (and its host type's
registration in `machine/access.py` or the runtime's `register_kinds`), then
run the tests — the closure test fails until every host attribute of the new
type is either listed or unreachable.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from flowmetal.lang.surface_classes import CLASS_DUNDERS, HOST_NAMES, is_dunder
from flowmetal.lang.surface_stdlib import stdlib_kinds, stdlib_modules
from flowmetal.lang.surface_workflow import workflow_kinds, workflow_modules

# Dunder attributes programs may read. Every other `_` name is unreachable, but for:
READABLE_DUNDERS: frozenset[str] = frozenset({"__name__", "__qualname__", "__cause__", "__context__", "__members__"})
# the documented API of `collections.namedtuple` classes, which starts with `_` to stay clear of
# field names (a deliberate exception: these names are always routed, so they mean something
# only on a namedtuple, through its class's own table)
READABLE_UNDERSCORED: frozenset[str] = frozenset({"_asdict", "_field_defaults", "_fields", "_make", "_replace"})


@dataclass(frozen=True)
class Kind:
    """One kind of value: what `type(x).__name__` says, what it is, and its attributes."""

    name: str
    doc: str
    methods: frozenset[str] = frozenset()
    data: frozenset[str] = frozenset()  # attributes that are not methods
    routed: frozenset[str] = frozenset()  # attributes Flowmetal implements itself
    # names the host type has that programs may not read (they are routed, so the checked
    # getattr refuses them)
    refused: frozenset[str] = frozenset()
    type_reachable: bool = False  # programs hold the type object itself (e.g. `int`)
    group: str = "values"  # how the documentation groups it

    @property
    def attributes(self) -> frozenset[str]:
        return self.methods | self.data


def _names(text: str) -> frozenset[str]:
    return frozenset(text.split())


_INT_METHODS = _names("as_integer_ratio bit_count bit_length conjugate from_bytes to_bytes")
_INT_DATA = _names("denominator imag numerator real")
_STR_BYTES_COMMON = _names(
    "capitalize center count endswith expandtabs find index isalnum isalpha isascii isdigit "
    "islower isspace istitle isupper join ljust lower lstrip maketrans partition removeprefix "
    "removesuffix replace rfind rindex rjust rpartition rsplit rstrip split splitlines startswith "
    "strip swapcase title translate upper zfill"
)
# Methods whose result can be far larger than their inputs: sizes are checked first.
_SIZED = _names("center expandtabs ljust replace rjust zfill")
_SET_METHODS = _names(
    "copy difference intersection isdisjoint issubset issuperset symmetric_difference union"
)
_MUTABLE_SET_METHODS = _SET_METHODS | _names(
    "add clear difference_update discard intersection_update pop remove symmetric_difference_update update"
)
_EXCEPTION_METHODS = _names("add_note with_traceback")
_EXCEPTION_DATA = frozenset({"args", "__cause__", "__context__"})

_CALLABLE_DATA = frozenset({"__name__", "__qualname__"})


def _exception(name: str, doc: str, data: str = "") -> Kind:
    return Kind(name, doc, methods=_EXCEPTION_METHODS, data=_EXCEPTION_DATA | _names(data),
                type_reachable=True, group="exceptions")


KINDS: dict[str, Kind] = {
    k.name: k
    for k in [
        # -- numbers and text ---------------------------------------------------------
        Kind("int", "Integers of any size.", methods=_INT_METHODS, data=_INT_DATA,
             routed=_names("to_bytes"), type_reachable=True),
        Kind("bool", "`True` and `False` (integers 1 and 0).", methods=_INT_METHODS, data=_INT_DATA,
             routed=_names("to_bytes"), type_reachable=True),
        Kind("float", "Floating-point numbers.",
             methods=_names("as_integer_ratio conjugate fromhex hex is_integer"), data=_names("imag real"),
             type_reachable=True),
        Kind("complex", "Complex numbers (`2+1j`).", methods=_names("conjugate"), data=_names("imag real"),
             type_reachable=True),
        Kind("str", "Text strings.",
             methods=_STR_BYTES_COMMON | _names(
                 "casefold encode format format_map isdecimal isidentifier isnumeric isprintable"),
             routed=_SIZED | _names("format format_map"), type_reachable=True),
        Kind("bytes", "Immutable byte strings.", methods=_STR_BYTES_COMMON | _names("decode fromhex hex"),
             routed=_SIZED, type_reachable=True),
        Kind("NoneType", "The type of `None`."),
        Kind("ellipsis", "The type of `...` (`Ellipsis`)."),
        Kind("NotImplementedType", "The type of `NotImplemented`."),
        # -- containers ---------------------------------------------------------------
        Kind("list", "Mutable sequences.",
             methods=_names("append clear copy count extend index insert pop remove reverse sort"),
             routed=_names("index"), type_reachable=True),
        Kind("tuple", "Immutable sequences.", methods=_names("count index"), type_reachable=True),
        Kind("dict", "Insertion-ordered mappings.",
             methods=_names("clear copy fromkeys get items keys pop popitem setdefault update values"),
             routed=_names("items keys values"), type_reachable=True),
        Kind("set", "Mutable sets, iterated in insertion order.", methods=_MUTABLE_SET_METHODS,
             type_reachable=True),
        Kind("frozenset", "Immutable sets, iterated in insertion order.", methods=_SET_METHODS,
             type_reachable=True),
        Kind("range", "Arithmetic progressions of integers.", methods=_names("count index"),
             data=_names("start step stop"), routed=_names("index"), type_reachable=True),
        Kind("slice", "Slice objects, as made by `a[i:j:k]`.", methods=_names("indices"),
             data=_names("start step stop"), type_reachable=True),
        Kind("dict_keys", "The keys of a dict, as `d.keys()` returns them (set operations keep order).",
             methods=_names("isdisjoint")),
        Kind("dict_values", "The values of a dict, as `d.values()` returns them."),
        Kind("dict_items", "The items of a dict, as `d.items()` returns them (set operations keep order).",
             methods=_names("isdisjoint")),
        # -- iteration ----------------------------------------------------------------
        *[Kind(n, "An iterator (`iter()`, `for`, `next()`).", group="iterators") for n in (
            "list_iterator", "list_reverseiterator", "tuple_iterator", "str_ascii_iterator", "str_iterator",
            "bytes_iterator", "range_iterator", "longrange_iterator", "dict_keyiterator",
            "dict_valueiterator", "dict_itemiterator", "dict_reversekeyiterator", "dict_reversevalueiterator",
            "dict_reverseitemiterator", "callable_iterator", "iterator")],
        *[Kind(n, f"The lazy iterator `{n}()` returns.", type_reachable=True, group="iterators")
          for n in ("enumerate", "zip", "map", "filter", "reversed")],
        Kind("generator", "A generator: a generator expression, or a call of a function containing `yield` "
             "(prints as `<generator object NAME>`, without an address).", methods=_names("close send throw"),
             data=_CALLABLE_DATA, group="iterators"),
        # -- code -----------------------------------------------------------------------
        Kind("function", "A function defined by the program (`def` or `lambda`).", data=_CALLABLE_DATA,
             group="code"),
        Kind("builtin_function_or_method", "A built-in function, or a method bound to a value "
             "(`xs.append`).", data=_CALLABLE_DATA, group="code"),
        Kind("method", "A method of a Flowmetal value, bound to it (`pattern.match`).", data=_CALLABLE_DATA,
             group="code"),
        Kind("method_descriptor", "A method taken from a type (`str.lower`), called with the value first.",
             data=_CALLABLE_DATA, group="code"),
        Kind("type", "A type (`int`, `type(x)`): prints as `<class 'int'>`, works with `isinstance`.",
             data=_CALLABLE_DATA, group="code"),
        Kind("module", "A module (`import json`): its members are its attributes.", data=frozenset({"__name__"}),
             group="code"),
        Kind("object", "A featureless value (`object()`), e.g. a sentinel.", type_reachable=True),
        # -- the program's own classes (see surface_classes.py and docs/language.md, Classes) -----
        Kind("property", "A property of a class (`@property`, with `.setter` and `.deleter`).",
             methods=_names("getter setter deleter"), data=_names("fget fset fdel __doc__"), type_reachable=True,
             group="code"),
        Kind("staticmethod", "A method that takes no instance (`@staticmethod`).", type_reachable=True,
             group="code"),
        Kind("classmethod", "A method that receives its class (`@classmethod`).", type_reachable=True,
             group="code"),
        Kind("super", "The rest of a class hierarchy, as `super()` returns it in a method: its methods are "
             "the next classes' methods.", group="code"),
        # -- re -----------------------------------------------------------------------------
        Kind("re.Pattern", "A compiled regular expression (`re.compile`).",
             methods=_names("findall finditer fullmatch match search split sub subn"),
             data=_names("flags groupindex groups pattern"), group="modules"),
        Kind("re.Match", "A successful match: plain data, kept across waits.",
             methods=_names("end expand group groupdict groups span start"),
             data=_names("endpos lastgroup lastindex pos re regs string"), group="modules"),
        Kind("re.RegexFlag", "A regular expression flag (`re.IGNORECASE`); an integer.",
             methods=_INT_METHODS, data=_INT_DATA | _names("name value"), routed=_names("to_bytes"),
             refused=_names("ASCII DOTALL IGNORECASE MULTILINE UNICODE VERBOSE __name__ __qualname__"), group="modules"),
        # -- exceptions ---------------------------------------------------------------------
        _exception("BaseException", "The root of the exception hierarchy."),
        _exception("Exception", "The base of all ordinary errors."),
        _exception("ArithmeticError", "Base of `ZeroDivisionError` and `OverflowError`."),
        _exception("LookupError", "Base of `KeyError` and `IndexError`."),
        _exception("AssertionError", "An `assert` failed."),
        _exception("AttributeError", "A value has no such attribute.", "name"),
        _exception("ImportError", "A name cannot be imported from a module.", "msg name path"),
        _exception("ModuleNotFoundError", "A module does not exist.", "msg name path"),
        _exception("GeneratorExit", "Raised inside a generator by its `close()`."),
        _exception("IndexError", "A sequence index is out of range."),
        _exception("KeyError", "A dict key (or set element) is missing."),
        _exception("MemoryError", "Raised for an impossible allocation; ends the program."),
        _exception("NameError", "A name is not defined.", "name"),
        _exception("NotImplementedError", "Raise it to mark an unfinished function."),
        _exception("OSError", "An operating-system error (also named `IOError` and `EnvironmentError`, as in "
                   "CPython); programs raise it themselves, they do no I/O.", "errno filename filename2 strerror"),
        _exception("OverflowError", "A numeric result is too large."),
        _exception("RecursionError", "Calls nest too deeply."),
        _exception("RuntimeError", "A general error."),
        _exception("StopIteration", "`next()` on an exhausted iterator.", "value"),
        _exception("TypeError", "An operation got a value of the wrong type."),
        _exception("UnboundLocalError", "A local variable is read before it is assigned.", "name"),
        _exception("UnicodeError", "Base of the Unicode encoding and decoding errors."),
        _exception("UnicodeDecodeError", "`bytes.decode()` met invalid input.", "encoding end object reason start"),
        _exception("UnicodeEncodeError", "`str.encode()` met an unencodable character.",
                   "encoding end object reason start"),
        _exception("ValueError", "A value has the right type but is not acceptable."),
        _exception("ZeroDivisionError", "Division or modulo by zero."),
        _exception("json.JSONDecodeError", "`json.loads()` met malformed JSON.", "colno doc lineno msg pos"),
        _exception("re.error", "An invalid regular expression.", "colno lineno msg pattern pos"),
        # -- the flowmetal module (values supplied by the durable runtime) ------------------------
        _exception("flowmetal.Timeout", "A wait did not finish before its timeout or deadline."),
        _exception("flowmetal.Cancelled", "The program (or task) was cancelled; raised at its current wait."),
        _exception("flowmetal.ChildFailed", "A child program started with `start()` failed."),
        _exception("flowmetal.CallError", "A foreign function call failed for good.", "attempts message type"),
        _exception("flowmetal.HttpError", "An HTTP request failed.", "status url"),
        Kind("flowmetal.Task", "A task started by `spawn()`: `result(timeout=None)` waits for its value, "
             "`cancel()` raises `Cancelled` in it at its current wait.", methods=_names("cancel result"),
             group="flowmetal"),
        Kind("flowmetal.Program", "A child program started by `start()`.", methods=_names("result"),
             data=_names("id"), group="flowmetal"),
        Kind("flowmetal.timeout", "The value of `timeout(seconds)`, used with `with`.", group="flowmetal"),
        Kind("flowmetal.Callback", "A single-use callback URL made by `callback()`: `wait()` for its request, "
             "`reject(reason)` to refuse the one it got and take another.", methods=_names("reject wait"),
             data=_names("url"), group="flowmetal"),
        Kind("flowmetal.Request", "A request delivered to a callback URL (`choice`: the answer chosen when the "
             "program asked for `choices`).", methods=_names("form json"),
             data=_names("choice headers method text"), group="flowmetal"),
        Kind("flowmetal.Secret", "A handle on a secret of the node, made by `secret(\"NAME\")`: passed to "
             "`http.*` and `call()`, it is replaced by the value only where the request is performed; it shows "
             "as `<secret NAME>`.", data=_names("name"), group="flowmetal"),
        Kind("flowmetal.http.Response", "The response to an HTTP request.",
             methods=_names("json raise_for_status"), data=_names("headers method ok status text url"),
             group="flowmetal"),
        # -- the pure standard modules (itertools, collections, functools, ...) -----------------
        *stdlib_kinds(),
        # -- the workflow modules (hashlib, hmac, urllib.parse, random, datetime, ...) -----------
        *workflow_kinds(),
    ]
}


@dataclass(frozen=True)
class ModuleSurface:
    """A module programs may import, and the members it offers (None: supplied by the host)."""

    name: str
    doc: str
    members: frozenset[str] | None = field(default=None)


_MATH_MEMBERS = _names(
    "acos acosh asin asinh atan atan2 atanh cbrt ceil comb copysign cos cosh degrees dist e erf erfc exp "
    "exp2 expm1 fabs factorial floor fmod frexp fsum gamma gcd hypot inf isclose isfinite isinf isnan isqrt "
    "lcm ldexp lgamma log log10 log1p log2 modf nan nextafter perm pi pow prod radians remainder sin sinh "
    "sqrt tan tanh tau trunc ulp"
)

MODULES: dict[str, ModuleSurface] = {
    m.name: m
    for m in [
        ModuleSurface("json", "JSON encoding and decoding.", _names("dumps loads JSONDecodeError")),
        ModuleSurface("math", "Mathematical functions, bit-for-bit CPython's.", _MATH_MEMBERS),
        ModuleSurface("re", "Regular expressions with CPython's engine.", _names(
            "compile match fullmatch search sub subn split findall finditer escape error Pattern Match "
            "I IGNORECASE M MULTILINE S DOTALL X VERBOSE A ASCII U UNICODE NOFLAG")),
        ModuleSurface("flowmetal", "Durable actions, supplied by the runtime that runs the program."),
        *stdlib_modules(),
        *workflow_modules(),
    ]
}

# Members of the runtime-supplied modules, for the checker: the runtime's own table
# (`runtime/actions.py`) must stay within these names (a test checks it).
FLOWMETAL_MEMBERS: frozenset[str] = _names(
    "sleep now random randint uuid4 receive send program_id start call callback continue_as_new spawn wait "
    "wait_any timeout Timeout Cancelled ChildFailed CallError HttpError Retry http secret"
)
HTTP_MEMBERS: frozenset[str] = _names("request get post put delete patch head HttpError Response")


def _all_attributes() -> frozenset[str]:
    names: set[str] = set(READABLE_DUNDERS | READABLE_UNDERSCORED)
    for kind in KINDS.values():
        names |= kind.attributes
    for module in MODULES.values():
        names |= module.members or frozenset()
    return frozenset(names | FLOWMETAL_MEMBERS | HTTP_MEMBERS)


ALL_ATTRIBUTES: frozenset[str] = _all_attributes()
"""Every attribute name some value or module offers; the checker refuses any other."""

ROUTED_ATTRIBUTES: frozenset[str] = READABLE_UNDERSCORED | {"__members__"} | frozenset(
    name
    for kind in KINDS.values()
    for name in kind.routed | kind.refused | (kind.data if kind.type_reachable else frozenset())
)
"""Attribute names the compiler reads through the machine's checked getattr."""


_GROUPS = (
    ("values", "Values"),
    ("iterators", "Iterators and generators"),
    ("code", "Functions, methods, types and modules"),
    ("modules", "Values of the standard modules"),
    ("exceptions", "Exceptions"),
    ("flowmetal", "Values of the `flowmetal` module"),
)


def render_markdown() -> str:
    """The table's section of `docs/language.md` (a test keeps the two equal;
    `python -m flowmetal.lang.surface` prints it)."""
    out: list[str] = []
    for group, title in _GROUPS:
        out += [f"#### {title}", "", "| Kind | What it is | Attributes |", "| --- | --- | --- |"]
        for kind in sorted((k for k in KINDS.values() if k.group == group), key=lambda k: k.name.lower()):
            names = [f"`{n}()`" for n in sorted(kind.methods)] + [f"`{n}`" for n in sorted(kind.data)]
            out.append(f"| `{kind.name}` | {kind.doc} | {', '.join(names) or '—'} |")
        out.append("")
    return "\n".join(out)


def is_readable_name(name: str) -> bool:
    """Whether a program may write `x.name` at all (before knowing what x is): any name its
    own classes could have, and the dunders documented here or in `surface_classes.py`."""
    if name.startswith("_fm_"):
        return False
    if is_dunder(name):
        return name in READABLE_DUNDERS or name in CLASS_DUNDERS
    return True


def is_routed(name: str) -> bool:
    """Whether the compiler reads `x.name` through the machine's checked getattr (see the
    module docstring, and `surface_classes.py` for the names of the program's own classes)."""
    if name in ROUTED_ATTRIBUTES or name in CLASS_DUNDERS:
        return True
    if name in ALL_ATTRIBUTES:
        return False
    return name in HOST_NAMES


__all__ = [
    "ALL_ATTRIBUTES",
    "FLOWMETAL_MEMBERS",
    "HTTP_MEMBERS",
    "KINDS",
    "MODULES",
    "READABLE_DUNDERS",
    "READABLE_UNDERSCORED",
    "ROUTED_ATTRIBUTES",
    "Kind",
    "ModuleSurface",
    "is_readable_name",
    "is_routed",
    "render_markdown",
]


if __name__ == "__main__":
    print(render_markdown())
