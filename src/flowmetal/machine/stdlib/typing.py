"""`typing` for Flowmetal programs: the names, for annotations.

Annotations are never evaluated, but programs still import these names, and some
use them in expressions that do run: type aliases (`Grid = List[List[int]]`),
`TypeVar("T")`, `cast(int, x)`, `if TYPE_CHECKING:`. CPython's own typing objects
cannot be handed out: they forward unknown attributes to the class they stand for,
and some create host objects when called (`typing.Counter[str]()` is a host
`collections.Counter`). So every name is a `Hint` of ours: it prints as CPython's
does (`typing.Optional[int]`), can be subscripted, combined with `|` and compared,
and creates nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flowmetal.machine.access import register_kind
from flowmetal.machine.show import fm_repr, register_leaf

__all__ = ["Hint", "TypeVar", "members", "register_codec"]

# Names that are generic aliases of a class (`List[int]`), as opposed to special forms.
_ALIASES = ["AbstractSet", "ByteString", "Callable", "ChainMap", "Collection", "Container", "ContextManager", "Coroutine", "Counter", "DefaultDict", "Deque", "Dict", "FrozenSet", "Generator", "Hashable", "ItemsView", "Iterable", "Iterator", "KeysView", "List", "Mapping", "MappingView", "Match", "MutableMapping", "MutableSequence", "MutableSet", "OrderedDict", "Pattern", "Reversible", "Sequence", "Set", "Sized", "Tuple", "Type", "ValuesView", "IO", "BinaryIO", "TextIO", "SupportsAbs", "SupportsBytes", "SupportsComplex", "SupportsFloat", "SupportsIndex", "SupportsInt", "SupportsRound", "Generic", "Protocol", "NamedTuple", "TypedDict"]
_FORMS = ["Annotated", "Any", "ClassVar", "Concatenate", "Final", "ForwardRef", "Literal", "LiteralString", "Never", "NoReturn", "Optional", "ParamSpec", "Required", "NotRequired", "Self", "TypeAlias", "TypeGuard", "TypeVarTuple", "Union", "Unpack"]


class Hint:
    """A `typing` name, bare (`typing.List`) or subscripted (`typing.List[int]`)."""

    __slots__ = ("_fm_args", "_fm_name")

    def __init__(self, name: str, args: tuple[Any, ...] | None = None) -> None:
        self._fm_name = name
        self._fm_args = args

    def __getitem__(self, params: Any) -> Any:
        if self._fm_args is not None and self._fm_name not in ("Union", "Optional"):
            raise TypeError(f"{self!r} is not a generic class")
        args = params if type(params) is tuple and params else (params,)
        if self._fm_name == "Optional":
            if len(args) != 1:
                raise TypeError("typing.Optional requires a single type.")
            return _union((args[0], None))
        if self._fm_name == "Union":
            return _union(args)
        if self._fm_name == "Callable" and len(args) == 2 and type(args[0]) is list:
            args = (tuple(args[0]), args[1])
        return Hint(self._fm_name, args)

    def __or__(self, other: Any) -> Any:
        return _union((self, other))

    def __ror__(self, other: Any) -> Any:
        return _union((other, self))

    def __eq__(self, other: object) -> bool:
        return type(other) is Hint and (self._fm_name, self._fm_args) == (other._fm_name, other._fm_args)

    def __hash__(self) -> int:
        return hash((self._fm_name, self._fm_args))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self._fm_name == "NamedTuple" and self._fm_args is None:  # the functional form
            from flowmetal.machine.stdlib.namedtuples import typing_namedtuple

            return typing_namedtuple(*args, **kwargs)
        raise TypeError(f"Cannot instantiate {self!r}")

    def __repr__(self) -> str:
        name, args = self._fm_name, self._fm_args
        if args is None:
            return f"typing.{name}"
        if name == "Union" and len(args) == 2 and None in args:
            other = args[0] if args[1] is None else args[1]
            return f"typing.Optional[{_arg_repr(other)}]"
        if name == "Callable" and len(args) == 2 and type(args[0]) is tuple:
            params = "[" + ", ".join(_arg_repr(a) for a in args[0]) + "]"
            return f"typing.Callable[{params}, {_arg_repr(args[1])}]"
        if name == "Tuple" and args == ((),):
            return "typing.Tuple[()]"
        if name == "Literal":
            return "typing.Literal[" + ", ".join(fm_repr(a) for a in args) + "]"
        return f"typing.{name}[" + ", ".join(_arg_repr(a) for a in args) + "]"

    def _fm_encode(self) -> tuple[str, list[Any]]:
        return "typing.hint", [self._fm_name, self._fm_args]


Hint.__name__ = Hint.__qualname__ = "_SpecialForm"


def _union(args: tuple[Any, ...]) -> Any:
    flat: list[Any] = []
    for a in args:
        parts = a._fm_args if type(a) is Hint and a._fm_name == "Union" and a._fm_args else (a,)
        for p in parts:
            p = None if p is type(None) else p
            if p not in flat:
                flat.append(p)
    if len(flat) == 1:
        return type(None) if flat[0] is None else flat[0]
    return Hint("Union", tuple(flat))


def _arg_repr(a: Any) -> str:
    if a is None or a is type(None):
        return "NoneType"
    if a is ...:
        return "..."
    if type(a) is str:
        return f"ForwardRef({a!r})"
    if type(a) is tuple:  # Callable's parameter list
        return "[" + ", ".join(_arg_repr(x) for x in a) + "]"
    if isinstance(a, type):
        module = a.__module__
        return a.__qualname__ if module == "builtins" else f"{module}.{a.__qualname__}"
    text = fm_repr(a)
    if text.startswith("<class '") and text.endswith("'>"):  # a type as programs see it (`re.Match`)
        return text[8:-2]
    return text


class TypeVar:
    """`TypeVar("T")`: prints as `~T` (`+T` covariant, `-T` contravariant)."""

    __slots__ = ("_fm_name", "_fm_variance")

    def __init__(self, name: str, *constraints: Any, bound: Any = None, covariant: bool = False,
                 contravariant: bool = False) -> None:
        if type(name) is not str:
            raise TypeError("TypeVar() argument 'name' must be str, not " + type(name).__name__)
        if covariant and contravariant:
            raise ValueError("Bivariant types are not supported.")
        if len(constraints) == 1:
            raise TypeError("A single constraint is not allowed")
        self._fm_name = name
        self._fm_variance = "+" if covariant else "-" if contravariant else "~"

    def __getattr__(self, attr: str) -> Any:  # `__name__`, `__qualname__`: not class attributes
        if attr == "__name__":
            return self._fm_name
        raise AttributeError(f"'TypeVar' object has no attribute '{attr}'")

    def __or__(self, other: Any) -> Any:
        return _union((self, other))

    def __ror__(self, other: Any) -> Any:
        return _union((other, self))

    def __repr__(self) -> str:
        return self._fm_variance + self._fm_name

    def _fm_encode(self) -> tuple[str, list[Any]]:
        return "typing.TypeVar", [self._fm_name, self._fm_variance]


TypeVar.__module__ = "typing"


def _new_typevar(state: list[Any]) -> TypeVar:
    tv = TypeVar.__new__(TypeVar)
    tv._fm_name, tv._fm_variance = state
    return tv


class _NewType:
    """`NewType("UserId", int)`: calling it returns its argument."""

    __slots__ = ("_fm_name",)

    def __init__(self, name: str, tp: Any) -> None:
        self._fm_name = name

    def __call__(self, x: Any, /) -> Any:
        return x

    def __repr__(self) -> str:
        return f"__main__.{self._fm_name}"

    def _fm_encode(self) -> tuple[str, list[Any]]:
        return "typing.NewType", [self._fm_name]


_NewType.__name__ = _NewType.__qualname__ = "NewType"
_NewType.__module__ = "typing"


def cast(typ: Any, val: Any) -> Any:
    """Cast a value to a type: returns the value unchanged (annotations are never checked)."""
    return val


def assert_type(val: Any, typ: Any, /) -> Any:
    """Ask a static type checker to confirm the type of `val`: returns it unchanged."""
    return val


def assert_never(arg: Any, /) -> Any:
    """Statically assert that a line of code is unreachable."""
    value = fm_repr(arg)
    if len(value) > 100:
        value = value[:100] + "..."
    raise AssertionError(f"Expected code to be unreachable, but got: {value}")


def _identity(name: str) -> Callable[[Any], Any]:
    def decorator(f: Any) -> Any:
        return f

    decorator.__name__ = decorator.__qualname__ = name
    return decorator


def _overload(func: Any) -> Any:
    """`@overload`: the decorated definition is only for type checkers (calling it raises)."""
    return _overload_dummy


def _overload_dummy(*args: Any, **kwds: Any) -> Any:
    raise NotImplementedError(
        "You should not call an overloaded function. "
        "A series of @overload-decorated functions "
        "outside a stub module should always be followed "
        "by an implementation that is not @overload-ed.")


_overload.__name__ = _overload.__qualname__ = "overload"


def members() -> dict[str, Any]:
    out: dict[str, Any] = {name: Hint(name) for name in (*_ALIASES, *_FORMS)}
    out["Text"] = str
    out["AnyStr"] = TypeVar("AnyStr")
    out.update(
        TypeVar=TypeVar, NewType=_NewType, TYPE_CHECKING=False, cast=cast, assert_type=assert_type,
        assert_never=assert_never, overload=_overload, final=_identity("final"),
        no_type_check=_identity("no_type_check"), runtime_checkable=_identity("runtime_checkable"),
    )
    return out


def register_codec(codec: Any) -> None:
    codec.register_values({
        "typing.hint": lambda s: Hint(s[0], None if s[1] is None else tuple(s[1])),
        "typing.TypeVar": _new_typevar,
        "typing.NewType": lambda s: _NewType(s[0], None),
    })


register_kind(Hint, "typing._SpecialForm")
register_kind(TypeVar, "typing.TypeVar")
register_kind(_NewType, "typing._SpecialForm")
for _cls in (Hint, TypeVar, _NewType):
    register_leaf(_cls)
