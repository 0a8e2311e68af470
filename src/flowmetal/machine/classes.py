"""The program's own classes at run time.

A `class` statement compiles to a CPython class statement (see `lang/translate.py`), so
instances, methods, inheritance, properties and dunders behave exactly as in CPython. The
machine adds what keeps them inside the allow-list (`lang/surface_classes.py`):

* `fm_bases` checks the bases (the program's classes, `object`, the exception types) and adds
  `FlowObject`, the hidden last base that marks the program's instances and classes, and
  gives them a repr without an address (`<__main__.Point object>`);
* `fm_class` gives the class the program's qualified name and `__module__ = "__main__"`;
* `fm_setattr` / `fm_delattr` set attributes on the program's own instances and classes only;
* `class_getattr` is the checked getattr for them: a routed name (one some host type has, or
  a dunder) is found only in the instance's own `__dict__`, in the program's classes, or among
  the few host dunders a class may reach (`HOST_DUNDERS_ALLOWED`);
* `fm_super` is `super(cls, obj)` for the program's classes only;
* calls the machine makes itself: a method that may wait bound to its instance, a class whose
  `__init__` may wait (constructed by the prelude's `_construct`), an instance whose `__call__`
  may wait;
* snapshot encodings of classes and instances (`register_codec`), as objects whose head (the
  class; the name and bases) is made first and whose contents are filled in afterwards, so
  cycles through them survive (a class attribute holding an instance of the class).
"""

from __future__ import annotations

import builtins
import types
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flowmetal.lang.surface_classes import CLASS_DUNDERS, HOST_DUNDERS_ALLOWED, is_dunder
from flowmetal.machine.access import register_program_objects
from flowmetal.machine.objects import CALL_REDIRECTS, Function

if TYPE_CHECKING:
    from flowmetal.machine.codec import Codec
    from flowmetal.machine.machine import Machine

MODULE = "__main__"  # what CPython calls the module of a script's classes
_TYPING_BASES = frozenset({"Generic", "Protocol"})  # bases that only annotate


class FlowObject:
    """The last base of every class a program defines (never shown to programs)."""

    __slots__ = ()

    def __repr__(self) -> str:
        t = type(self)
        return f"<{t.__module__}.{t.__qualname__} object>"


def is_program_class(x: Any) -> bool:
    return isinstance(x, type) and issubclass(x, FlowObject) and x is not FlowObject


def _describe(x: Any) -> str:
    from flowmetal.machine.show import fm_repr

    return fm_repr(x)


# Hooks of the standard modules that make classes of their own (machine/stdlib/): they fill these.
# A base a program names that stands for a class of the library (`typing.NamedTuple`): each hook
# maps a base to the class the statement derives from instead (alone), or None.
BASE_STANDINS: list[Callable[[Any], Any]] = []
# Reads of routed names on values of the library's classes (an enum's machinery under the program's
# class): each hook returns the attribute, raises AttributeError, or returns NOT_MINE.
GETATTR_HOOKS: list[Callable[[Any, str], Any]] = []
# Dunders the library's class decorators set (`@dataclass`'s `__annotations__`, a frozen class's
# `__setattr__`), with the check of what a snapshot may hold there.
LIBRARY_DUNDERS: dict[str, Callable[[Any], bool]] = {}


def fm_bases(*bases: Any) -> tuple[type, ...]:
    """The bases of a class statement, checked, with FlowObject last."""
    from flowmetal.machine.stdlib.typing import Hint

    out: list[type] = []
    for base in bases:
        if base is object:
            continue
        for standin in BASE_STANDINS:
            replaced = standin(base)
            if replaced is not None:
                if len(bases) != 1:
                    raise TypeError(f"a class deriving from {_describe(base)} can have no other base")
                return (replaced,)
        if type(base) is Hint and base._fm_name in _TYPING_BASES:
            continue  # `class Stack(Generic[T])`: annotations only, as for the checker
        if is_program_class(base) or (isinstance(base, type) and issubclass(base, BaseException)
                                      and base.__module__ == "builtins"):
            # (only the built-in exception types: the Python-level ones of modules and of the
            # runtime have methods and attributes of their own that the table does not list)
            out.append(base)
            continue
        raise TypeError(f"a class can derive only from the program's classes, object and the exception types, "
                        f"not {_describe(base)}")
    if not any(issubclass(b, FlowObject) for b in out):
        out.append(FlowObject)
    return tuple(out)


def fm_class(qualname: str) -> Any:
    """The innermost decorator of every class statement: the program's names for the class."""

    def finish(cls: type) -> type:
        cls.__qualname__ = qualname
        cls.__module__ = MODULE
        return cls

    return finish


def _owner_name(obj: Any) -> str:
    from flowmetal.machine.access import visible_type

    t = visible_type(obj)
    return str(getattr(t, "__name__", type(obj).__name__))


# Values of the standard modules with attributes a program may set, each checked by its module
# (`decimal.getcontext().prec = 50`): host type -> setter(obj, name, value)
SETTERS: dict[type, Callable[[Any, str, Any], None]] = {}


def fm_setattr(obj: Any, name: str, value: Any) -> None:
    """`obj.name = value`: only on the program's own instances and classes (and the few module
    values in `SETTERS`)."""
    if isinstance(obj, FlowObject) or is_program_class(obj):
        setattr(obj, name, value)
        return
    setter = SETTERS.get(type(obj))
    if setter is not None:
        setter(obj, name, value)
        return
    if isinstance(obj, type) or hasattr(obj, "_fm_names"):
        raise TypeError(f"cannot set '{name}' attribute of immutable type '{_owner_name(obj)}'")
    raise AttributeError(f"'{_owner_name(obj)}' object has no attribute '{name}'")


def fm_delattr(obj: Any, name: str) -> None:
    """`del obj.name`: only on the program's own instances and classes."""
    if isinstance(obj, FlowObject) or is_program_class(obj):
        delattr(obj, name)
        return
    if isinstance(obj, type) or hasattr(obj, "_fm_names"):
        raise TypeError(f"cannot delete '{name}' attribute of immutable type '{_owner_name(obj)}'")
    raise AttributeError(f"'{_owner_name(obj)}' object has no attribute '{name}'")


def fm_super(cls: Any, obj: Any) -> Any:
    """`super()` in a method (the compiler passes the class and the first argument)."""
    if not is_program_class(cls):
        raise TypeError(f"super() works only with the program's own classes, not {_describe(cls)}")
    return builtins.super(cls, obj)


def super_builtin(*args: Any) -> Any:
    """The built-in `super` when a program calls it itself."""
    if not args:
        raise RuntimeError("super(): no arguments")
    if len(args) != 2:
        raise TypeError("super() takes the class and an instance in Flowmetal")
    return fm_super(*args)


NOT_MINE = object()
_CLASS_NAMES = frozenset({"__name__", "__qualname__", "__doc__"})


def _in_program_classes(mro: tuple[type, ...], name: str) -> bool:
    for k in mro:
        if k is FlowObject:
            return False
        if issubclass(k, FlowObject) and name in k.__dict__:
            return True
    return False


def class_getattr(obj: Any, name: str) -> Any:
    """A routed attribute of the program's own instance, class or `super()` object, or
    NOT_MINE for every other value (the allow-list's table decides for those)."""
    t = type(obj)
    if name.startswith("_fm_"):  # what the machine and the library keep on the program's classes
        if t is builtins.super or isinstance(obj, FlowObject) or is_program_class(obj):
            raise AttributeError(f"'{_owner_name(obj)}' object has no attribute '{name}'")
        return NOT_MINE
    for hook in GETATTR_HOOKS:
        found = hook(obj, name)
        if found is not NOT_MINE:
            return found
    if name[:2] != "__" and (isinstance(obj, FlowObject) or t is builtins.super):
        # the hot path (`self.name`, `node.key`): every attribute an instance of the program's
        # classes (or super() over them) has without a dunder name is the program's own or one
        # of the exception attributes the table lists (`args`), so CPython's lookup is the answer
        if t is builtins.super and not is_program_class(obj.__thisclass__):
            return NOT_MINE
        return getattr(obj, name)
    if is_dunder(name) and name not in CLASS_DUNDERS and name not in _CLASS_NAMES and (
            t is builtins.super or isinstance(obj, FlowObject) or is_program_class(obj)):
        # `__dict__`, `__weakref__`, `__module__` live in every class's own __dict__: never
        if isinstance(obj, BaseException) or (is_program_class(obj) and issubclass(obj, BaseException)):
            return NOT_MINE  # `__cause__`, `__context__`: as the exception kinds allow
        raise AttributeError(f"'{_owner_name(obj)}' object has no attribute '{name}'")
    if t is builtins.super:
        start = obj.__thisclass__
        if not is_program_class(start):
            return NOT_MINE
        mro = type(obj.__self__).__mro__ if not isinstance(obj.__self__, type) else obj.__self__.__mro__
        rest = mro[mro.index(start) + 1:]
        if _in_program_classes(rest, name) or name in HOST_DUNDERS_ALLOWED or (
                not is_dunder(name) and isinstance(obj.__self__, BaseException)):
            return getattr(obj, name)
        raise AttributeError(f"'super' object has no attribute '{name}'")
    if isinstance(obj, FlowObject):
        own = getattr(obj, "__dict__", None)
        if (own is not None and name in own and not is_dunder(name)) or _in_program_classes(t.__mro__, name):
            return getattr(obj, name)
        if name in HOST_DUNDERS_ALLOWED:
            return getattr(obj, name)
        if isinstance(obj, BaseException):
            return NOT_MINE  # the exception's own attributes (`args`, `__cause__`), as the table lists them
        raise AttributeError(f"'{t.__name__}' object has no attribute '{name}'")
    if is_program_class(obj):
        if _in_program_classes(obj.__mro__, name) or name in HOST_DUNDERS_ALLOWED or name in _CLASS_NAMES:
            return getattr(obj, name)
        if issubclass(obj, BaseException):
            return NOT_MINE
        raise AttributeError(f"type object '{obj.__name__}' has no attribute '{name}'")
    return NOT_MINE


# -- calls the machine makes itself -----------------------------------------------------------


# Classes whose construction may wait in a part the library runs after its own (a dataclass's
# `__post_init__`): `may_wait(cls)`, and `split(cls, obj, args, kwargs)` that runs the library's
# part and returns (the callable that may wait, its arguments), or None.
SPLIT_INITS: list[tuple[Callable[[Any], bool], Callable[[Any, Any, Any, Any], Any]]] = []


def _init_may_wait(cls: type) -> bool:
    init = getattr(cls, "__init__", None)
    return type(init) is Function or any(may_wait(cls) for may_wait, _split in SPLIT_INITS)


def split_init(cls: Any, obj: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """The prelude's `_construct`, for a class of SPLIT_INITS: (callable, arguments) left to call."""
    for may_wait, split in SPLIT_INITS:
        if may_wait(cls):
            return split(cls, obj, args, kwargs)
    return None


def _redirect_method(machine: Machine, callee: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if type(callee.__func__) is Function:
        return callee.__func__, (callee.__self__, *args), kwargs
    return None


def _redirect_class(machine: Machine, callee: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if is_program_class(callee) and _init_may_wait(callee):
        return machine.prelude_fns["_construct"], (callee, args, kwargs), {}
    return None


def _lookup(cls: type, name: str) -> Any:
    for k in cls.__mro__:
        if name in k.__dict__:
            return k.__dict__[name]
    return None


def redirect_instance_call(machine: Machine, callee: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Calling an instance whose `__call__` may wait: the machine runs that method itself."""
    method = _lookup(type(callee), "__call__")
    if type(method) is Function:
        return method, (callee, *args), kwargs
    return None


def new_instance(cls: Any, args: tuple[Any, ...]) -> Any:
    """The prelude's `_construct`, first step: an instance not yet initialised."""
    if not is_program_class(cls):
        raise TypeError(f"cannot create instances of {_describe(cls)} here")
    if issubclass(cls, BaseException):
        return cls.__new__(cls, *args)  # as CPython: the arguments become `args` before __init__
    return cls.__new__(cls)


def init_of(cls: Any) -> Any:
    return cls.__init__


def check_init_result(result: Any) -> None:
    if result is not None:
        raise TypeError(f"__init__() should return None, not '{type(result).__name__}'")


CALL_REDIRECTS[types.MethodType] = _redirect_method
CALL_REDIRECTS[type] = _redirect_class
register_program_objects(FlowObject, class_getattr, NOT_MINE)


# -- snapshots --------------------------------------------------------------------------------

_CLASS_SKIP = frozenset({"__dict__", "__weakref__", "__module__", "__qualname__"})


def _class_head(cls: type) -> list[Any]:
    return [cls.__name__, cls.__qualname__, cls.__bases__]


def _class_body(cls: type) -> list[Any]:
    out: list[Any] = []
    for k, v in cls.__dict__.items():
        if k not in _CLASS_SKIP:
            out += [k, v]
    return out


def _class_new(head: list[Any]) -> type:
    name, qualname, bases = head
    if not isinstance(name, str) or not isinstance(qualname, str) or not all(
            isinstance(b, type) and (issubclass(b, FlowObject) or issubclass(b, BaseException)) for b in bases):
        raise ValueError("corrupt snapshot: a class with unexpected bases")
    return type(name, tuple(bases), {"__module__": MODULE, "__qualname__": qualname})


def _class_fill(cls: type, body: list[Any]) -> None:
    for k, v in zip(body[::2], body[1::2]):
        if not isinstance(k, str) or (is_dunder(k) and k not in CLASS_DUNDERS and not (
                k in LIBRARY_DUNDERS and LIBRARY_DUNDERS[k](v))):
            raise ValueError(f"corrupt snapshot: class attribute {k!r}")
        setattr(cls, k, v)


def _instance_head(obj: Any) -> list[Any]:
    return [type(obj)]


def _instance_body(obj: Any) -> list[Any]:
    out: list[Any]
    if isinstance(obj, BaseException):
        out = [True, obj.args, obj.__cause__, obj.__context__, obj.__suppress_context__]
    else:
        out = [False, None, None, None, None]
    for k, v in getattr(obj, "__dict__", {}).items():
        out += [k, v]
    return out


def _instance_new(head: list[Any]) -> Any:
    cls = head[0]
    if not is_program_class(cls):
        raise ValueError("corrupt snapshot: an instance of an unknown class")
    return cls.__new__(cls)


def _instance_fill(obj: Any, body: list[Any]) -> None:
    is_exc, args, cause, context, suppress = body[:5]
    if is_exc:
        obj.args = tuple(args)
        obj.__cause__, obj.__context__ = cause, context
        obj.__suppress_context__ = bool(suppress)
    rest = body[5:]
    obj.__dict__.update(zip(rest[::2], rest[1::2]))


def register_codec(codec: Codec) -> None:
    codec.register_constant(FlowObject, "fm:FlowObject")
    codec.register_objects("fm.class", match=is_program_class, head=_class_head, body=_class_body,
                           new=_class_new, fill=_class_fill)
    codec.register_objects("fm.instance", match=lambda x: isinstance(x, FlowObject), head=_instance_head,
                           body=_instance_body, new=_instance_new, fill=_instance_fill)

    def super_state(s: Any) -> list[Any]:
        return [s.__thisclass__, s.__self__]

    codec.register(builtins.super, "fm.super", state=super_state, build=lambda s: fm_super(s[0], s[1]))
    codec.register(property, "fm.property", state=lambda p: [p.fget, p.fset, p.fdel, p.__doc__],
                   build=lambda s: property(*s))
    codec.register(staticmethod, "fm.staticmethod", state=lambda m: [m.__func__], build=lambda s: staticmethod(s[0]))
    codec.register(classmethod, "fm.classmethod", state=lambda m: [m.__func__], build=lambda s: classmethod(s[0]))


__all__ = [
    "NOT_MINE",
    "FlowObject",
    "class_getattr",
    "fm_bases",
    "fm_class",
    "fm_delattr",
    "fm_setattr",
    "fm_super",
    "is_program_class",
    "redirect_instance_call",
    "register_codec",
    "super_builtin",
]
