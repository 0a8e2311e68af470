"""`dataclasses` for Flowmetal programs: `@dataclass` on the program's own classes, `field`,
`fields`, `asdict`, `astuple`, `replace`, `is_dataclass`, `FrozenInstanceError`, `InitVar`,
`KW_ONLY` and `MISSING`.

CPython's `dataclass` writes the methods it adds as source text and `exec`s them: host
functions a snapshot could not write, whose globals would be a host module's. Ours follows the
same rules (the same fields, defaults, errors, hash table, frozen checks, inheritance) but adds
methods that are values of ours, `DataclassMethod`: each knows its kind (`__init__`, `__repr__`,
`__eq__`, ...) and its class, and works from the fields the class keeps in plain data
(`_fm_dataclass_fields`, `_fm_dataclass_params`), so a class and its instances are kept across
waits like any class of the program, and nothing leads to host code.

The fields are the class body's annotations, which the compiler keeps as text for every class
(`x: int` makes `__annotations__ == {"x": "int"}`, as `from __future__ import annotations`
would): `ClassVar`, `InitVar[...]` and `KW_ONLY` are recognised by name. A field's `type` is the
type itself for the built-in types written plainly (`int`, `str`, `list`, ...) and the text of
the annotation otherwise.

An `__init__` binds its arguments with a function compiled from the field names (validated
identifiers: the names come from the program's annotations), so wrong calls fail with CPython's
own messages (`Point.__init__() missing 1 required positional argument: 'y'`). Methods run in
Flowmetal's host code; a `__post_init__` that may wait is called by the machine once the
fields are set (`classes.SPLIT_INITS`), a `default_factory` that waits raises the `RuntimeError`
of waits inside a callback; methods the class defines itself can wait.
"""

from __future__ import annotations

import builtins
import keyword
import threading
import types
from typing import Any

from flowmetal.machine.access import register_kind
from flowmetal.machine.show import fm_repr, register_leaf
from flowmetal.machine.stdlib.common import charge, looks_like

__all__ = ["DataclassMethod", "Field", "FrozenInstanceError", "members", "register_codec"]

FIELDS = "_fm_dataclass_fields"  # CPython's __dataclass_fields__: name -> Field, bases' first
PARAMS = "_fm_dataclass_params"  # CPython's __dataclass_params__, as a plain dict


class _MissingType:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<dataclasses._MISSING_TYPE object>"


class _KwOnlyType:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<dataclasses._KW_ONLY_TYPE object>"


class _HasDefault:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<factory>"


MISSING: Any = _MissingType()
_EMPTY_METADATA: Any = types.MappingProxyType({})
KW_ONLY: Any = _KwOnlyType()
_DEFAULTED: Any = _HasDefault()  # the binder's default for every optional argument

looks_like(_MissingType, "dataclasses", "_MISSING_TYPE")
looks_like(_KwOnlyType, "dataclasses", "_KW_ONLY_TYPE")


class FrozenInstanceError(AttributeError):
    pass


looks_like(FrozenInstanceError, "dataclasses", "FrozenInstanceError")


class InitVar:
    """`InitVar[int]`: an argument of `__init__` passed on to `__post_init__`, not a field."""

    __slots__ = ("type",)

    def __init__(self, type: Any) -> None:
        self.type = type

    def __class_getitem__(cls, type: Any) -> InitVar:
        return InitVar(type)

    def __repr__(self) -> str:
        name = self.type.__name__ if isinstance(self.type, type) else fm_repr(self.type)
        return f"dataclasses.InitVar[{name}]"


looks_like(InitVar, "dataclasses", "InitVar")

# a field's kind (CPython's _FIELD, _FIELD_CLASSVAR, _FIELD_INITVAR)
_FIELD, _CLASSVAR, _INITVAR = "_FIELD", "_FIELD_CLASSVAR", "_FIELD_INITVAR"


class Field:
    """One field of a dataclass (what `field()` returns and `fields()` lists)."""

    __slots__ = ("_field_type", "compare", "default", "default_factory", "hash", "init", "kw_only", "metadata",
                 "name", "repr", "type")

    def __init__(self, default: Any, default_factory: Any, init: Any, repr: Any, hash: Any, compare: Any,
                 metadata: Any, kw_only: Any) -> None:
        self.name: Any = None
        self.type: Any = None
        self.default = default
        self.default_factory = default_factory
        self.init = init
        self.repr = repr
        self.hash = hash
        self.compare = compare
        # (a read-only view, as CPython's: of a copy, so the program's dict stays its own)
        self.metadata = _EMPTY_METADATA if not metadata else types.MappingProxyType(dict(metadata))
        self.kw_only = kw_only
        self._field_type: Any = None

    def __repr__(self) -> str:
        return (f"Field(name={fm_repr(self.name)},type={fm_repr(self.type)},default={fm_repr(self.default)},"
                f"default_factory={fm_repr(self.default_factory)},init={fm_repr(self.init)},"
                f"repr={fm_repr(self.repr)},hash={fm_repr(self.hash)},compare={fm_repr(self.compare)},"
                f"metadata={fm_repr(self.metadata)},kw_only={fm_repr(self.kw_only)},"
                f"_field_type={self._field_type})")


looks_like(Field, "dataclasses", "Field")


def field(*, default: Any = MISSING, default_factory: Any = MISSING, init: Any = True, repr: Any = True,
          hash: Any = None, compare: Any = True, metadata: Any = None, kw_only: Any = MISSING) -> Field:
    """Return an object to identify dataclass fields."""
    if default is not MISSING and default_factory is not MISSING:
        raise ValueError("cannot specify both default and default_factory")
    return Field(default, default_factory, init, repr, hash, compare, metadata, kw_only)


# --------------------------------------------------------------------------------
# reading the class body
# --------------------------------------------------------------------------------

_PLAIN_TYPES: dict[str, Any] = {t.__name__: t for t in (int, float, complex, str, bytes, bool, list, dict, tuple, set, frozenset,
                                         bytearray, object, type, range, slice)}
_PLAIN_TYPES["None"] = None


def _annotation_name(text: str) -> str:
    """`typing.ClassVar[int]` -> `ClassVar` (what CPython's `_is_type` matches on text)."""
    head = text.strip().split("[", 1)[0].strip()
    return head.rpartition(".")[2]


def _field_type_of(annotation: Any) -> Any:
    if isinstance(annotation, str):
        return _PLAIN_TYPES.get(annotation.strip(), annotation) if annotation.strip() in _PLAIN_TYPES else annotation
    return annotation


def _get_field(cls: Any, name: str, annotation: Any, kw_only: bool) -> Field:
    default = getattr(cls, name, MISSING)
    if isinstance(default, Field):
        f = default
    else:
        f = field(default=default)
    f.name = name
    f.type = _field_type_of(annotation)
    f._field_type = _FIELD
    kind = _annotation_name(annotation) if isinstance(annotation, str) else ""
    if kind == "ClassVar":
        f._field_type = _CLASSVAR
    elif kind == "InitVar":
        f._field_type = _INITVAR
    if f._field_type in (_CLASSVAR, _INITVAR) and f.default_factory is not MISSING:
        raise TypeError(f"field {name} cannot have a default factory")
    if f._field_type in (_FIELD, _INITVAR):
        if f.kw_only is MISSING:
            f.kw_only = kw_only
    else:
        if f.kw_only is not MISSING:
            raise TypeError(f"field {name} is a ClassVar but specifies kw_only")
    if f._field_type is _FIELD and f.default is not MISSING and type(f.default).__hash__ is None:
        raise ValueError(f"mutable default {fm_repr(type(f.default))} for field {name} is not allowed: use "
                         "default_factory")
    return f


# --------------------------------------------------------------------------------
# the methods a dataclass gets
# --------------------------------------------------------------------------------

_MethodType = types.MethodType
_REPRS = threading.local()  # (CPython's recursive_repr: `...` for an instance met inside its own repr)


def _checked_names(fields: list[Field]) -> None:
    for f in fields:
        if not (isinstance(f.name, str) and f.name.isidentifier() and not keyword.iskeyword(f.name)
                and not f.name.startswith("_fm") and f.name != "self"):
            raise TypeError(f"invalid field name {f.name!r}")


def _compiled(source: str, name: str, qualname: str, namespace: dict[str, Any]) -> Any:
    """A function from source text whose only names are checked identifiers (the fields) and the
    objects in `namespace` (defaults, factories): CPython's own way, at CPython's speed."""
    namespace["__builtins__"] = {}
    exec(compile(source, "<dataclass>", "exec"), namespace)  # (identifiers only, checked)
    fn = namespace[name]
    fn.__qualname__ = qualname
    return fn


def _init_fn(cls: Any, split: bool = False) -> Any:
    """`__init__` as CPython's dataclasses writes it: the same signature (so the same errors).
    `split`: without the call of `__post_init__`, returning its arguments instead (the machine
    calls it, so that it can wait)."""
    fields = _fields(cls)
    init_fields = [f for f in fields.values() if f._field_type in (_FIELD, _INITVAR) and f.init]
    _checked_names(list(fields.values()))
    ns: dict[str, Any] = {"_fm_d": _DEFAULTED, "_fm_set": object.__setattr__}
    params = ["self"]
    seen_default = False
    std = [f for f in init_fields if not f.kw_only]
    kw = [f for f in init_fields if f.kw_only]
    for f in [*std, *kw]:
        if f is (kw[0] if kw else None):
            params.append("*")
        if f.default is MISSING and f.default_factory is MISSING:
            if seen_default and not f.kw_only:
                raise TypeError(f"non-default argument {f.name!r} follows default argument")
            params.append(f.name)
        else:
            seen_default = seen_default or not f.kw_only
            params.append(f"{f.name}=_fm_d")
    frozen = getattr(cls, PARAMS)["frozen"]
    body: list[str] = []
    for i, f in enumerate(fields.values()):
        if f._field_type is not _FIELD:
            continue
        if f.default_factory is not MISSING:
            ns[f"_fm_f{i}"] = f.default_factory
            value = f"_fm_f{i}() if {f.name} is _fm_d else {f.name}" if f.init else f"_fm_f{i}()"
        elif f.init:
            if f.default is not MISSING:
                ns[f"_fm_v{i}"] = f.default
                value = f"_fm_v{i} if {f.name} is _fm_d else {f.name}"
            else:
                value = f.name
        else:
            continue
        body.append(f"_fm_set(self, {f.name!r}, {value})" if frozen else f"self.{f.name} = {value}")
    if getattr(cls, PARAMS)["has_post_init"]:  # (decided when the class was made, as CPython)
        passed = []
        for i, f in enumerate(fields.values()):
            if f._field_type is _INITVAR:
                ns[f"_fm_i{i}"] = f.default
                passed.append(f"_fm_i{i} if {f.name} is _fm_d else {f.name}" if f.init else f"_fm_i{i}")
        body.append(f"return ({''.join(p + ', ' for p in passed)})" if split
                    else f"self.__post_init__({', '.join(passed)})")
    source = f"def __init__({', '.join(params)}):\n" + "".join(f"    {line}\n" for line in body or ["pass"])
    return _compiled(source, "__init__", f"{cls.__qualname__}.__init__", ns)


def _field_tuple(names: list[str], who: str) -> str:
    return "(" + "".join(f"{who}.{n}," for n in names) + ")"


_OPS = {"__eq__": "==", "__lt__": "<", "__le__": "<=", "__gt__": ">", "__ge__": ">="}


def _compare_fn(cls: Any, kind: str) -> Any:
    fields = [f for f in _fields(cls).values() if f._field_type is _FIELD and f.compare]
    _checked_names(fields)
    names = [f.name for f in fields]
    source = (f"def {kind}(self, other):\n"
              f"    if other.__class__ is self.__class__:\n"
              f"        return {_field_tuple(names, 'self')} {_OPS[kind]} {_field_tuple(names, 'other')}\n"
              f"    return NotImplemented\n")
    return _compiled(source, kind, f"{cls.__qualname__}.{kind}", {"NotImplemented": NotImplemented})


def _hash_fn(cls: Any) -> Any:
    fields = [f for f in _fields(cls).values() if f._field_type is _FIELD
              and (f.compare if f.hash is None else f.hash)]
    _checked_names(fields)
    source = f"def __hash__(self):\n    return _fm_hash({_field_tuple([f.name for f in fields], 'self')})\n"
    return _compiled(source, "__hash__", f"{cls.__qualname__}.__hash__", {"_fm_hash": builtins.hash})


def _fields(cls: Any) -> dict[str, Field]:
    fields: dict[str, Field] = getattr(cls, FIELDS)
    return fields


def _repr(method: DataclassMethod, obj: Any) -> str:
    active = getattr(_REPRS, "active", None)
    if active is None:
        active = _REPRS.active = set()
    key = id(obj)
    if key in active:
        return "..."
    active.add(key)
    try:
        parts = [f"{f.name}={fm_repr(getattr(obj, f.name))}" for f in _fields(method._fm_cls).values()
                 if f._field_type is _FIELD and f.repr]
        return f"{type(obj).__qualname__}({', '.join(parts)})"
    finally:
        active.discard(key)


def _setattr(method: DataclassMethod, obj: Any, name: Any, value: Any = None) -> None:
    cls = method._fm_cls
    if type(obj) is cls or name in _fields(cls):
        verb = "assign to" if method._fm_kind == "__setattr__" else "delete"
        raise FrozenInstanceError(f"cannot {verb} field {name!r}")
    if method._fm_kind == "__setattr__":
        super(cls, obj).__setattr__(name, value)
    else:
        super(cls, obj).__delattr__(name)


class DataclassMethod:
    """A method `@dataclass` adds to a class: its kind (`__init__`, `__repr__`, ...). Its class is
    the one whose own dict holds it, found from the instance it is called with (and then kept):
    a snapshot writes the method as its kind and its class's name only, so no cycle passes
    through it (the class holds the method). The code that runs is a function made from the
    class's fields when first needed (again after a restore), as CPython's own; an instance
    binds that function itself (`p.__init__` is a bound method of it)."""

    __slots__ = ("__weakref__", "_fm_cls", "_fm_fn", "_fm_kind", "_fm_owner", "_fm_split")

    def __init__(self, kind: str, cls: Any) -> None:
        self._fm_kind = kind
        self._fm_cls = cls
        self._fm_owner = cls.__qualname__ if cls is not None else "?"
        self._fm_fn: Any = None
        self._fm_split: Any = None  # `__init__` without its `__post_init__`, when that may wait

    def _fm_class(self, obj: Any) -> Any:
        cls = self._fm_cls
        if cls is None:
            for k in type(obj).__mro__:
                if k.__dict__.get(self._fm_kind) is self:
                    cls = self._fm_cls = k
                    break
            else:
                raise TypeError(f"descriptor '{self._fm_kind}' of '{self._fm_owner}' objects doesn't apply to "
                                f"a '{type(obj).__name__}' object")
        return cls

    def _fm_function(self, obj: Any) -> Any:
        fn = self._fm_fn
        if fn is None:
            cls = self._fm_class(obj)
            kind = self._fm_kind
            if kind == "__init__":
                fn = _init_fn(cls)
            elif kind == "__hash__":
                fn = _hash_fn(cls)
            elif kind in _OPS:
                fn = _compare_fn(cls, kind)
            else:  # __repr__, __setattr__, __delattr__: in Python here
                def fn(obj: Any, /, *args: Any, **kwargs: Any) -> Any:
                    if kind == "__repr__":
                        return _repr(self, obj, *args, **kwargs)
                    return _setattr(self, obj, *args, **kwargs)

                fn.__name__ = kind
                fn.__qualname__ = f"{cls.__qualname__}.{kind}"
            self._fm_fn = fn
        return fn

    def __get__(self, obj: Any, owner: Any = None) -> Any:
        if obj is None:
            return self
        return _MethodType(self._fm_fn or self._fm_function(obj), obj)

    def __call__(self, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        return (self._fm_fn or self._fm_function(obj))(obj, *args, **kwargs)

    def __getattr__(self, attr: str) -> Any:  # `__name__`, `__qualname__`: not class attributes
        if attr == "__name__":
            return self._fm_kind
        if attr == "__qualname__":
            return f"{self._fm_owner}.{self._fm_kind}"
        raise AttributeError(f"'function' object has no attribute '{attr}'")

    def __repr__(self) -> str:
        return f"<function {self._fm_owner}.{self._fm_kind}>"


looks_like(DataclassMethod, "builtins", "function")


# --------------------------------------------------------------------------------
# @dataclass
# --------------------------------------------------------------------------------

_HASH_ACTIONS = {  # (unsafe_hash, eq, frozen, has_explicit_hash) -> what to do with __hash__
    (False, False, False, False): None, (False, False, False, True): None,
    (False, False, True, False): None, (False, False, True, True): None,
    (False, True, False, False): "none", (False, True, False, True): None,
    (False, True, True, False): "add", (False, True, True, True): None,
    (True, False, False, False): "add", (True, False, False, True): "raise",
    (True, False, True, False): "add", (True, False, True, True): "raise",
    (True, True, False, False): "add", (True, True, False, True): "raise",
    (True, True, True, False): "add", (True, True, True, True): "raise",
}


def _is_program_class(cls: Any) -> bool:
    from flowmetal.machine.classes import is_program_class

    return bool(is_program_class(cls))


def _set_new(cls: Any, name: str, value: Any) -> bool:
    if name in cls.__dict__:
        return True
    setattr(cls, name, value)
    return False


def _signature_text(fields: dict[str, Field]) -> str:
    params = [f for f in fields.values() if f._field_type in (_FIELD, _INITVAR) and f.init]
    parts: list[str] = []
    star = False
    for f in sorted(params, key=lambda f: bool(f.kw_only)):
        if f.kw_only and not star:
            parts.append("*")
            star = True
        annotation = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", fm_repr(f.type))
        text = f"{f.name}: {annotation}"
        if f.default_factory is not MISSING:
            text += " = <factory>"
        elif f.default is not MISSING:
            text += f" = {fm_repr(f.default)}"
        parts.append(text)
    return "(" + ", ".join(parts) + ")"


def _process(cls: Any, params: dict[str, Any]) -> Any:
    if not _is_program_class(cls):
        raise TypeError(f"@dataclass applies to the program's own classes, not {fm_repr(cls)}")
    fields: dict[str, Field] = {}
    any_frozen_base = False
    has_dataclass_bases = False
    for base in cls.__mro__[-1:0:-1]:
        base_fields = base.__dict__.get(FIELDS)
        if base_fields is not None:
            has_dataclass_bases = True
            for f in base_fields.values():
                fields[f.name] = f
            if base.__dict__[PARAMS]["frozen"]:
                any_frozen_base = True
    annotations = cls.__dict__.get("__annotations__", {})  # noqa: RUF063  (the text the compiler kept)
    charge(len(annotations) + 1)
    own: list[Field] = []
    kw_only = bool(params["kw_only"])
    kw_only_seen = False
    for name, annotation in annotations.items():
        if isinstance(annotation, str) and _annotation_name(annotation) == "KW_ONLY":
            if kw_only_seen:
                raise TypeError(f"{name!r} is KW_ONLY, but KW_ONLY has already been specified")
            kw_only_seen = True
            kw_only = True
            continue
        own.append(_get_field(cls, name, annotation, kw_only))
    for f in own:
        fields[f.name] = f
        if isinstance(cls.__dict__.get(f.name), Field):
            if f.default is MISSING:
                delattr(cls, f.name)
            else:
                setattr(cls, f.name, f.default)
    for name, value in list(cls.__dict__.items()):
        if isinstance(value, Field) and name not in annotations:
            raise TypeError(f"{name!r} is a field but has no type annotation")
    frozen = bool(params["frozen"])
    if has_dataclass_bases:
        if any_frozen_base and not frozen:
            raise TypeError("cannot inherit non-frozen dataclass from a frozen one")
        if not any_frozen_base and frozen:
            raise TypeError("cannot inherit frozen dataclass from a non-frozen one")
    setattr(cls, FIELDS, fields)
    setattr(cls, PARAMS, {**params, "has_post_init": hasattr(cls, "__post_init__")})
    class_hash = cls.__dict__.get("__hash__", MISSING)
    has_explicit_hash = not (class_hash is MISSING or (class_hash is None and "__eq__" in cls.__dict__))
    if params["order"] and not params["eq"]:
        raise ValueError("eq must be true if order is true")
    if params["init"]:
        method = DataclassMethod("__init__", cls)
        method._fm_fn = _init_fn(cls)  # (checks the order of defaults now, as CPython)
        _set_new(cls, "__init__", method)
    if params["repr"]:
        _set_new(cls, "__repr__", DataclassMethod("__repr__", cls))
    if params["eq"]:
        _set_new(cls, "__eq__", DataclassMethod("__eq__", cls))
    if params["order"]:
        for name in ("__lt__", "__le__", "__gt__", "__ge__"):
            if _set_new(cls, name, DataclassMethod(name, cls)):
                raise TypeError(f"Cannot overwrite attribute {name} in class {cls.__name__}. Consider using "
                                "functools.total_ordering")
    if frozen:
        for name in ("__setattr__", "__delattr__"):
            if _set_new(cls, name, DataclassMethod(name, cls)):
                raise TypeError(f"Cannot overwrite attribute {name} in class {cls.__name__}")
    if cls.__dict__.get("__doc__") is None:  # CPython's: the class's signature, as inspect writes it
        cls.__doc__ = cls.__name__ + _signature_text(fields)
    action = _HASH_ACTIONS[bool(params["unsafe_hash"]), bool(params["eq"]), frozen, has_explicit_hash]
    if action == "none":
        cls.__hash__ = None
    elif action == "add":
        cls.__hash__ = DataclassMethod("__hash__", cls)
    elif action == "raise":
        raise TypeError(f"Cannot overwrite attribute __hash__ in class {cls.__name__}")
    return cls


_DEFAULT_PARAMS = {"init": True, "repr": True, "eq": True, "order": False, "unsafe_hash": False, "frozen": False,
                   "match_args": True, "kw_only": False, "slots": False, "weakref_slot": False}


class DataclassDecorator:
    """What `dataclass(...)` with arguments returns: applied to the class next."""

    __slots__ = ("_fm_params",)

    def __init__(self, params: dict[str, Any]) -> None:
        self._fm_params = params

    def __call__(self, cls: Any) -> Any:
        return _process(cls, self._fm_params)

    def __getattr__(self, attr: str) -> Any:
        if attr in ("__name__", "__qualname__"):
            return "wrap" if attr == "__name__" else "dataclass.<locals>.wrap"
        raise AttributeError(f"'function' object has no attribute '{attr}'")

    def __repr__(self) -> str:
        return "<function dataclass.<locals>.wrap>"


looks_like(DataclassDecorator, "builtins", "function")


def dataclass(cls: Any = None, /, *, init: Any = True, repr: Any = True, eq: Any = True, order: Any = False,
              unsafe_hash: Any = False, frozen: Any = False, match_args: Any = True, kw_only: Any = False,
              slots: Any = False, weakref_slot: Any = False) -> Any:
    """Add dunder methods based on the fields defined in the class."""
    params = {"init": init, "repr": repr, "eq": eq, "order": order, "unsafe_hash": unsafe_hash, "frozen": frozen,
              "match_args": match_args, "kw_only": kw_only, "slots": slots, "weakref_slot": weakref_slot}
    if cls is None:
        return DataclassDecorator(params)
    return _process(cls, params)


# --------------------------------------------------------------------------------
# the module's functions
# --------------------------------------------------------------------------------


def fields(class_or_instance: Any) -> tuple[Field, ...]:
    """Return a tuple describing the fields of this dataclass."""
    cls = class_or_instance if isinstance(class_or_instance, type) else type(class_or_instance)
    found = getattr(cls, FIELDS, None) if _is_program_class(cls) else None
    if found is None:
        raise TypeError("must be called with a dataclass type or instance")
    return tuple(f for f in found.values() if f._field_type is _FIELD)


def is_dataclass(obj: Any) -> bool:
    """Returns True if obj is a dataclass or an instance of a dataclass."""
    cls = obj if isinstance(obj, type) else type(obj)
    return _is_program_class(cls) and getattr(cls, FIELDS, None) is not None


def _is_instance(obj: Any) -> bool:
    return not isinstance(obj, type) and is_dataclass(obj)


def _inner(obj: Any, factory: Any, as_dict: bool) -> Any:
    from flowmetal.machine.stdlib.copy import deepcopy

    charge(1)
    if _is_instance(obj):
        if as_dict:
            return factory([(f.name, _inner(getattr(obj, f.name), factory, as_dict)) for f in fields(obj)])
        return factory([_inner(getattr(obj, f.name), factory, as_dict) for f in fields(obj)])
    if isinstance(obj, tuple) and hasattr(type(obj), "_fields"):
        return type(obj)(*[_inner(v, factory, as_dict) for v in obj])
    if isinstance(obj, list | tuple):
        return type(obj)(_inner(v, factory, as_dict) for v in obj)
    if isinstance(obj, dict):
        return type(obj)((_inner(k, factory, as_dict), _inner(v, factory, as_dict)) for k, v in obj.items())
    return deepcopy(obj)


def asdict(obj: Any, *, dict_factory: Any = dict) -> Any:
    """Return the fields of a dataclass instance as a new dictionary mapping field names to field values."""
    if not _is_instance(obj):
        raise TypeError("asdict() should be called on dataclass instances")
    return _inner(obj, dict_factory, True)


def astuple(obj: Any, *, tuple_factory: Any = tuple) -> Any:
    """Return the fields of a dataclass instance as a new tuple of field values."""
    if not _is_instance(obj):
        raise TypeError("astuple() should be called on dataclass instances")
    return _inner(obj, tuple_factory, False)


def replace(obj: Any, /, **changes: Any) -> Any:
    """Return a new object replacing specified fields with new values."""
    if not _is_instance(obj):
        raise TypeError("replace() should be called on dataclass instances")
    for f in getattr(type(obj), FIELDS).values():
        if f._field_type is _CLASSVAR:
            continue
        if not f.init:
            if f.name in changes:
                raise ValueError(f"field {f.name} is declared with init=False, it cannot be specified with replace()")
            continue
        if f.name not in changes:
            if f._field_type is _INITVAR and f.default is MISSING:
                raise ValueError(f"InitVar {f.name!r} must be specified with replace()")
            changes[f.name] = getattr(obj, f.name)
    return type(obj)(**changes)


def members() -> dict[str, Any]:
    return {"dataclass": dataclass, "field": field, "Field": Field, "fields": fields, "asdict": asdict,
            "astuple": astuple, "replace": replace, "is_dataclass": is_dataclass,
            "FrozenInstanceError": FrozenInstanceError, "InitVar": InitVar, "MISSING": MISSING, "KW_ONLY": KW_ONLY}


# --------------------------------------------------------------------------------
# snapshots
# --------------------------------------------------------------------------------

_FIELD_SLOTS = ("name", "type", "default", "default_factory", "init", "repr", "hash", "compare", "metadata",
                "kw_only", "_field_type")


def _field_build(state: list[Any]) -> Field:
    f = Field.__new__(Field)
    for name, value in zip(_FIELD_SLOTS, state, strict=True):
        if name == "_field_type" and value not in (_FIELD, _CLASSVAR, _INITVAR):
            raise ValueError("corrupt snapshot: a field of unknown kind")
        object.__setattr__(f, name, value)
    f._field_type = {_FIELD: _FIELD, _CLASSVAR: _CLASSVAR, _INITVAR: _INITVAR}[f._field_type]
    return f


_METHOD_KINDS = frozenset({"__init__", "__repr__", "__eq__", "__lt__", "__le__", "__gt__", "__ge__", "__hash__",
                           "__setattr__", "__delattr__"})


def _method_build(state: list[Any]) -> DataclassMethod:
    kind, owner = state
    if kind not in _METHOD_KINDS or not isinstance(owner, str):
        raise ValueError("corrupt snapshot: a dataclass method of unknown kind")
    method = DataclassMethod(kind, None)
    method._fm_owner = owner
    return method


def register_codec(codec: Any) -> None:
    codec.register_constant(MISSING, "dataclasses.MISSING")
    codec.register_constant(KW_ONLY, "dataclasses.KW_ONLY")
    codec.register_exception(FrozenInstanceError, "dataclasses.FrozenInstanceError")
    # (built whole: instances hashed while a snapshot is read need their class's fields complete)
    codec.register(Field, "dataclasses.Field", state=lambda f: [getattr(f, n) for n in _FIELD_SLOTS],
                   build=_field_build)
    codec.register(InitVar, "dataclasses.InitVar", state=lambda v: v.type, build=InitVar)
    codec.register(DataclassMethod, "dataclasses.method", state=lambda m: [m._fm_kind, m._fm_owner],
                   build=_method_build)
    codec.register(DataclassDecorator, "dataclasses.decorator", state=lambda d: dict(d._fm_params),
                   build=DataclassDecorator)


def _register() -> None:
    register_kind(Field, "dataclasses.Field")
    register_kind(_MissingType, "dataclasses._MISSING_TYPE")
    register_kind(_KwOnlyType, "dataclasses._KW_ONLY_TYPE")
    register_kind(InitVar, "dataclasses.InitVar")
    register_kind(FrozenInstanceError, "dataclasses.FrozenInstanceError")
    register_kind(DataclassMethod, "function")
    register_kind(DataclassDecorator, "function")
    for cls in (Field, _MissingType, _KwOnlyType, InitVar, DataclassMethod, DataclassDecorator):
        register_leaf(cls)


_register()


def _init_owner(cls: Any) -> Any:
    """The dataclass whose `__init__` a call of `cls` runs (None: not a dataclass's)."""
    if not isinstance(cls, type):
        return None
    for k in cls.__mro__:
        init = k.__dict__.get("__init__")
        if init is not None:
            return k if type(init) is DataclassMethod else None
    return None


def _post_init_may_wait(cls: Any) -> bool:
    from flowmetal.machine.objects import Function

    owner = _init_owner(cls)
    return (owner is not None and getattr(owner, PARAMS)["has_post_init"]
            and type(getattr(cls, "__post_init__", None)) is Function)


def _split(cls: Any, obj: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    owner = _init_owner(cls)
    init = owner.__dict__["__init__"]
    fn = init._fm_split
    if fn is None:
        fn = init._fm_split = _init_fn(owner, split=True)
    return obj.__post_init__, fn(obj, *args, **kwargs)


def _register_dunders() -> None:
    """The dunders `@dataclass` gives a class that a snapshot may write (see classes.LIBRARY_DUNDERS)."""
    from flowmetal.machine.classes import LIBRARY_DUNDERS, SPLIT_INITS

    SPLIT_INITS.append((_post_init_may_wait, _split))
    LIBRARY_DUNDERS["__annotations__"] = lambda v: type(v) is dict and all(
        type(k) is str and type(a) is str for k, a in v.items())
    for name in ("__setattr__", "__delattr__"):
        LIBRARY_DUNDERS[name] = lambda v: type(v) is DataclassMethod


_register_dunders()
