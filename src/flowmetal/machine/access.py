"""The allow-list at run time: what `x.name` and `type(x)` mean for every value a
program can hold (the table itself is `lang/surface.py`).

Each host type a program can hold is registered with its kind from the table.
`fm_getattr(obj, name)` is the checked attribute read the compiler emits for
routed names (see `lang/surface.py` for which those are): it returns the
attribute only if the receiver's kind allows it, provides the attributes
Flowmetal implements itself, and raises CPython's `AttributeError` otherwise.
Type objects a program holds (`int`, `ValueError`, `str`) offer only their
methods and `__name__`/`__qualname__`; every other type is shown to programs as
a `FlowType`, which prints and works with `isinstance` like the CPython type
but has no attributes and cannot create instances.

Nothing here is reachable from programs except through those two functions and
the values they return.
"""

from __future__ import annotations

import builtins
import operator
import types
from collections.abc import Callable
from typing import Any

from flowmetal.lang.surface import KINDS, Kind
from flowmetal.machine.show import BUILTIN_FUNCTION_NAMES, register_leaf

__all__ = [
    "STR",
    "TYPE",
    "BoundBuiltin",
    "FlowType",
    "UnboundBuiltin",
    "builtin_function",
    "fm_callattr",
    "fm_getattr",
    "register_kind",
    "visible_class",
    "visible_type",
]

_Getter = Callable[[Any], Any]

_KIND_OF: dict[type, Kind] = {}  # host type -> its kind (exception subclasses found by MRO, cached)
_GET: dict[type, dict[str, _Getter]] = {}  # host type -> allowed attribute -> getter(obj)
_CALL: dict[type, dict[str, Callable[..., Any]]] = {}  # host type -> attribute -> fn(obj, *args)
_CLASS_ATTRS: dict[int, dict[str, Any]] = {}  # id(type object a program holds) -> attribute -> value
_CLASS_HOLDERS: dict[int, Any] = {}  # keeps those type objects alive (ids stay unique)
_VISIBLE: dict[type, Any] = {}  # host type -> what type() returns for its instances


# --------------------------------------------------------------------------------
# How types look to programs
# --------------------------------------------------------------------------------


def _names_getattr(self: Any, attr: str) -> Any:
    """`__name__` and `__qualname__` of an object that stands for a type or a built-in (they
    are not class attributes, so instance lookup ends here); nothing else."""
    if attr == "__name__":
        return self._fm_names()[0]
    if attr == "__qualname__":
        return self._fm_names()[1]
    raise AttributeError(attr)


class FlowType:
    """A type as a program sees it when the host type is not itself program-visible:
    prints like CPython's (`<class 'list_iterator'>`), works with `isinstance`,
    compares by identity, and has no other attributes."""

    __slots__ = ("_fm_hosts", "_fm_name")

    def __init__(self, name: str, hosts: tuple[type, ...]) -> None:
        self._fm_name = name
        self._fm_hosts = hosts

    def __instancecheck__(self, obj: Any) -> bool:
        return isinstance(obj, self._fm_hosts)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(f"cannot create '{self._fm_name}' instances")

    def __repr__(self) -> str:
        return f"<class '{self._fm_name}'>"

    def _fm_names(self) -> tuple[str, str]:
        return self._fm_name.rpartition(".")[2], self._fm_name.rpartition(".")[2]

    __getattr__ = _names_getattr


class _TypeBuiltin:
    """Flowmetal's `type`: `type(x)` is the program-visible type of x; the
    three-argument form, which creates classes, is refused."""

    __slots__ = ()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if len(args) == 1 and not kwargs:
            return visible_type(args[0])
        if len(args) == 3:
            raise TypeError("type() takes 1 argument in Flowmetal")
        raise TypeError("type() takes 1 or 3 arguments")

    def __instancecheck__(self, obj: Any) -> bool:
        return isinstance(obj, builtins.type | FlowType | _TypeBuiltin | _StrType)

    def __repr__(self) -> str:
        return "<class 'type'>"

    def _fm_names(self) -> tuple[str, str]:
        return "type", "type"

    __getattr__ = _names_getattr


class _StrType:
    """Flowmetal's `str`: CPython's str in every respect a program can observe, except
    that `str(x)` writes x without process-dependent parts (see `show.py`). The
    compiler turns the common uses (`str(x)`, `isinstance(x, str)`, `str.lower`)
    into direct uses of the host type; this object serves the rest (`map(str, xs)`)."""

    __slots__ = ()

    def __call__(self, *args: Any, **kwargs: Any) -> str:
        from flowmetal.machine.show import str_call

        return str_call(*args, **kwargs)

    def __instancecheck__(self, obj: Any) -> bool:
        return isinstance(obj, str)

    def __repr__(self) -> str:
        return "<class 'str'>"

    def _fm_names(self) -> tuple[str, str]:
        return "str", "str"

    __getattr__ = _names_getattr


TYPE = _TypeBuiltin()
STR = _StrType()
for _cls in (FlowType, _TypeBuiltin, _StrType):
    register_leaf(_cls)


class BoundBuiltin:
    """A method Flowmetal implements, bound to its value (`d.keys` without calling it)."""

    __slots__ = ("_fm_fn", "_fm_name", "_fm_obj", "_fm_owner")

    def __init__(self, name: str, owner: str, fn: Callable[..., Any], obj: Any) -> None:
        self._fm_name = name
        self._fm_owner = owner
        self._fm_fn = fn
        self._fm_obj = obj

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._fm_fn(self._fm_obj, *args, **kwargs)

    def __repr__(self) -> str:
        return f"<built-in method {self._fm_name} of {self._fm_owner} object>"

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, BoundBuiltin) and other._fm_obj is self._fm_obj
                and other._fm_name == self._fm_name)

    def __hash__(self) -> int:
        return hash((id(self._fm_obj), self._fm_name))

    def _fm_names(self) -> tuple[str, str]:
        return self._fm_name, f"{self._fm_owner}.{self._fm_name}"

    __getattr__ = _names_getattr


class UnboundBuiltin:
    """A method Flowmetal implements, taken from its type (`dict.keys`, `str.format`)."""

    __slots__ = ("_fm_fn", "_fm_name", "_fm_owner")

    def __init__(self, name: str, owner: str, fn: Callable[..., Any]) -> None:
        self._fm_name = name
        self._fm_owner = owner
        self._fm_fn = fn

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._fm_fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<method '{self._fm_name}' of '{self._fm_owner}' objects>"

    def _fm_names(self) -> tuple[str, str]:
        return self._fm_name, f"{self._fm_owner}.{self._fm_name}"

    __getattr__ = _names_getattr


register_leaf(BoundBuiltin)
register_leaf(UnboundBuiltin)


def builtin_function(fn: Callable[..., Any], name: str) -> Callable[..., Any]:
    """Show a Python function standing in for a CPython built-in as `<built-in function NAME>`."""
    fn.__name__ = fn.__qualname__ = name
    BUILTIN_FUNCTION_NAMES[fn.__code__] = name
    return fn


# --------------------------------------------------------------------------------
# Registration
# --------------------------------------------------------------------------------


def register_kind(host: type, kind_name: str, overrides: dict[str, Callable[..., Any]] | None = None) -> None:
    """Let programs hold instances of `host`, with the attributes of the table's `kind_name`.

    `overrides` maps routed attributes to Flowmetal's implementation, called as
    `fn(obj, *args, **kwargs)`. Routed attributes without an override must be
    plain reads of allowed attributes (they are routed because of other kinds).
    """
    kind = KINDS[kind_name]
    overrides = dict(overrides or {})
    missing = kind.routed - set(overrides) - kind.data
    if missing and kind.routed & kind.methods - set(overrides):
        raise AssertionError(f"kind {kind_name}: no implementation of routed methods {sorted(missing)}")
    get: dict[str, _Getter] = {}
    call: dict[str, Callable[..., Any]] = {}
    owner = kind_name.rpartition(".")[2]
    for name in kind.attributes:
        fn = overrides.get(name)
        if fn is not None:
            get[name] = _bind(name, owner, fn)
            call[name] = fn
            continue
        get[name] = operator.attrgetter(name)
        unbound = getattr(host, name, None) if name in kind.methods else None
        if isinstance(unbound, types.FunctionType | types.MethodDescriptorType):
            call[name] = unbound
        else:
            call[name] = _call_attribute(name)
    _KIND_OF[host] = kind
    _GET[host] = get
    _CALL[host] = call
    if kind.type_reachable:
        _VISIBLE[host] = STR if host is str else host
        _register_class_attrs(STR if host is str else host, host, kind, overrides)
    else:
        _VISIBLE[host] = _flow_type(kind_name, host)


def _bind(name: str, owner: str, fn: Callable[..., Any]) -> _Getter:
    return lambda obj: BoundBuiltin(name, owner, fn, obj)


def _call_attribute(name: str) -> Callable[..., Any]:
    get = operator.attrgetter(name)
    return lambda obj, *args, **kwargs: get(obj)(*args, **kwargs)


def _register_class_attrs(visible: Any, host: type, kind: Kind, overrides: dict[str, Callable[..., Any]]) -> None:
    owner = kind.name.rpartition(".")[2]
    attrs: dict[str, Any] = {"__name__": owner, "__qualname__": owner}
    for name in kind.methods:
        fn = overrides.get(name)
        attrs[name] = UnboundBuiltin(name, owner, fn) if fn is not None else getattr(host, name)
    _CLASS_ATTRS[id(visible)] = attrs
    _CLASS_HOLDERS[id(visible)] = visible


_FLOW_TYPES: dict[str, FlowType] = {}


def _flow_type(name: str, host: type) -> FlowType:
    """One FlowType per kind (a kind may cover several host types, e.g. `function`)."""
    ft = _FLOW_TYPES.get(name)
    if ft is None:
        ft = _FLOW_TYPES[name] = FlowType(name, (host,))
    elif host not in ft._fm_hosts:
        ft._fm_hosts = (*ft._fm_hosts, host)
    return ft


def flow_types() -> list[FlowType]:
    """Every FlowType made so far (snapshots name them)."""
    return list(_FLOW_TYPES.values())


def owner_of(method: UnboundBuiltin) -> Any:
    """The program-visible type an unbound Flowmetal method was taken from."""
    for key, attrs in _CLASS_ATTRS.items():
        if attrs.get(method._fm_name) is method:
            return _CLASS_HOLDERS[key]
    raise LookupError(method._fm_name)


def visible_class(host: type) -> Any:
    """What a program sees for the host type `host` (itself, or its FlowType)."""
    return _VISIBLE[host]


# --------------------------------------------------------------------------------
# The two operations
# --------------------------------------------------------------------------------


def own_table(t: type) -> dict[str, _Getter] | None:
    """The attribute table a class made by a program carries itself (`namedtuple` classes): such a
    class is never entered in this module's registries, which would keep it alive for good."""
    own = getattr(t, "_fm_attrs", None)
    return own if type(own) is dict else None


def _kind_table(t: type) -> dict[str, _Getter] | None:
    own = own_table(t)
    if own is not None:  # (never cached here: see own_table)
        return own
    table = _GET.get(t)
    if table is None:
        for base in t.__mro__[1:-1]:  # not `object`: only subclasses of a known kind inherit it
            if base in _GET:
                table = _GET[t] = _GET[base]
                _KIND_OF[t] = _KIND_OF[base]
                _CALL[t] = _CALL[base]
                break
    return table


def fm_getattr(obj: Any, name: str) -> Any:
    """`obj.name` for a routed attribute name (see the module docstring)."""
    table = _GET.get(type(obj))
    if table is not None:
        get = table.get(name)
        if get is not None:
            return get(obj)
    elif name[0] != "_" and isinstance(obj, _PROGRAM_BASE[0]):
        # an instance of the program's own classes: see machine/classes.py, class_getattr (`_` names
        # go there: `_fm_` names, and the internals of enum members, are refused)
        return getattr(obj, name)
    return _getattr_slow(obj, name)


def fm_callattr(obj: Any, name: str, /, *args: Any, **kwargs: Any) -> Any:
    """`obj.name(*args, **kwargs)` for a routed attribute name, without a bound method."""
    table = _CALL.get(type(obj))
    if table is not None:
        fn = table.get(name)
        if fn is not None:
            return fn(obj, *args, **kwargs)
    elif name[0] != "_" and isinstance(obj, _PROGRAM_BASE[0]):
        return getattr(obj, name)(*args, **kwargs)
    return _getattr_slow(obj, name)(*args, **kwargs)


# the checked getattr of the program's own instances and classes (machine/classes.py):
# (getattr(obj, name) -> value, or the marker for "not a program object")
_PROGRAM_OBJECTS: list[Any] = []


_PROGRAM_TYPES: list[type] = []  # [FlowObject]


class _NoProgramObjects:
    pass


_PROGRAM_BASE: list[type] = [_NoProgramObjects]  # FlowObject, once registered


def register_program_objects(base: type, getattr_: Callable[[Any, str], Any], not_mine: Any) -> None:
    _PROGRAM_TYPES[:] = [base]
    _PROGRAM_BASE[0] = base
    _PROGRAM_OBJECTS[:] = [getattr_, not_mine]


def _getattr_slow(obj: Any, name: str) -> Any:
    t = type(obj)
    own = t.__dict__.get("_fm_attrs")  # (first: a namedtuple's field reads come this way)
    if own is None:
        own = own_table(t)
    if own is not None:  # a class the program made (`namedtuple`)
        get = own.get(name)
        if get is not None:
            return get(obj)
        raise AttributeError(f"'{t.__name__}' object has no attribute '{name}'", name=name, obj=obj)
    if _PROGRAM_OBJECTS:
        found = _PROGRAM_OBJECTS[0](obj, name)
        if found is not _PROGRAM_OBJECTS[1]:
            return found
    if t is _MODULE_TYPE[0]:
        members = obj.__dict__
        if name in members:
            return members[name]
        raise AttributeError(f"module '{members['__name__']}' has no attribute '{name}'", name=name, obj=obj)
    if isinstance(obj, type) or t is FlowType or t is _StrType or t is _TypeBuiltin:
        attrs = _class_attrs(obj)
        if name in attrs:
            return attrs[name]
        raise AttributeError(f"type object '{obj.__name__}' has no attribute '{name}'", name=name, obj=obj)
    table = _kind_table(t)
    if table is not None:
        get = table.get(name)
        if get is not None:
            return get(obj)
    kind = _KIND_OF.get(t)
    shown = kind.name if kind is not None else t.__name__
    raise AttributeError(f"'{shown}' object has no attribute '{name}'", name=name, obj=obj)


def _class_attrs(cls: Any) -> dict[str, Any]:
    """The attributes of a type object a program holds: its methods, `__name__`, `__qualname__`."""
    attrs = _CLASS_ATTRS.get(id(cls))
    if attrs is not None:
        return attrs
    own = getattr(cls, "_fm_class_attrs", None) if isinstance(cls, type) else None
    if type(own) is dict:
        return {name: get(cls) for name, get in own.items()}
    if not isinstance(cls, type) or _kind_table(cls) is None:
        return {"__name__": cls.__name__, "__qualname__": cls.__qualname__}
    kind = _KIND_OF[cls]
    attrs = {"__name__": cls.__name__, "__qualname__": cls.__qualname__}
    attrs.update((m, getattr(cls, m)) for m in kind.methods if hasattr(cls, m))
    # a routed method is Flowmetal's on a subclass's type object too, never the host's it inherits
    # (`datetime.now` reads the durable clock, the host's the host's)
    base = next((_CLASS_ATTRS[id(b)] for b in cls.__mro__[1:] if id(b) in _CLASS_ATTRS), {})
    attrs.update((m, base[m]) for m in kind.routed & kind.methods if isinstance(base.get(m), UnboundBuiltin))
    _CLASS_ATTRS[id(cls)] = attrs
    _CLASS_HOLDERS[id(cls)] = cls
    return attrs


_MODULE_TYPE: list[type] = [type(None)]  # set by register_module_type (values.Module)


def register_module_type(module_type: type) -> None:
    _MODULE_TYPE[0] = module_type


def visible_type(x: Any) -> Any:
    """`type(x)` as a program sees it."""
    t = type(x)
    v = _VISIBLE.get(t)
    if v is not None:
        if t is types.FunctionType and x.__code__ in BUILTIN_FUNCTION_NAMES:
            return _FLOW_TYPES["builtin_function_or_method"]
        return v
    if isinstance(x, type) or t is FlowType or t is _TypeBuiltin or t is _StrType:
        return TYPE
    if own_table(t) is not None:
        return t
    if _PROGRAM_TYPES and isinstance(x, _PROGRAM_TYPES[0]):
        return t  # an instance of one of the program's classes
    if _kind_table(t) is not None:
        kind = _KIND_OF[t]
        v = _VISIBLE[t] = t if kind.type_reachable else _flow_type(kind.name, t)
        return v
    return _flow_type(t.__name__, t)
