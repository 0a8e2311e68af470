"""Attacks through the program's own classes (docs/language.md, Classes; lang/surface_classes.py):
a class statement, its instances, methods, properties and `super()` must lead to no host
object and no host type. Each attack is either refused before running, at its FILE:LINE:COL
(what the checker can see: dunders, class keywords, hooks a class may not define), or fails
inside the program with a Python error (what only the values tell: bases, host receivers,
`type(name, bases, ns)`, names a program defines itself but reads on a host value), and
leaves no trace on the host."""

from __future__ import annotations

from pathlib import Path

import pytest

from security.attack import attempt, no_host_effect, stopped

# Refused by the checker: (program, the message expected at some position).
AT_CHECK = {
    "instance_dict": ("class A:\n    pass\nprint(A().__dict__)\n", "access to dunder attribute '__dict__'"),
    "class_dict": ("class A:\n    pass\nprint(A.__dict__)\n", "access to dunder attribute '__dict__'"),
    "mro": ("class A:\n    pass\nprint(A.__mro__)\n", "access to dunder attribute '__mro__'"),
    "subclasses": ("print(object.__subclasses__())\n", "access to dunder attribute '__subclasses__'"),
    "bases": ("class A:\n    pass\nprint(A.__bases__[0])\n", "access to dunder attribute '__bases__'"),
    "base": ("class A:\n    pass\nprint(A.__base__)\n", "access to dunder attribute '__base__'"),
    "method_globals": ("class A:\n    def m(self):\n        pass\nprint(A.m.__globals__)\n",
                       "access to dunder attribute '__globals__'"),
    "method_code": ("class A:\n    def m(self):\n        pass\nprint(A().m.__func__.__code__)\n",
                    "access to dunder attribute '__func__'"),
    "method_closure": ("def f():\n    x = 1\n    class A:\n        def m(self):\n            return x\n"
                       "    return A\nprint(f().m.__closure__)\n", "access to dunder attribute '__closure__'"),
    "class_of_instance": ("class A:\n    pass\nprint(A().__class__)\n", "access to dunder attribute '__class__'"),
    "class_assignment": ("class A:\n    pass\na = A()\na.__class__ = int\n", "assigning attribute '__class__'"),
    "class_in_body": ("class A:\n    __class__ = int\n", "defining '__class__' is not supported"),
    "metaclass": ("class M:\n    pass\nclass A(metaclass=M):\n    pass\n", "class keyword 'metaclass='"),
    "class_kwargs": ("class A(**{'metaclass': type}):\n    pass\n", "class keyword '**'"),
    "init_subclass": ("class A:\n    def __init_subclass__(cls):\n        pass\n", "defining '__init_subclass__'"),
    "getattribute": ("class A:\n    def __getattribute__(self, n):\n        return 1\n",
                     "defining '__getattribute__'"),
    "getattr_hook": ("class A:\n    def __getattr__(self, n):\n        return 1\n", "defining '__getattr__'"),
    "setattr_hook": ("class A:\n    def __setattr__(self, n, v):\n        pass\n", "defining '__setattr__'"),
    "new": ("class A:\n    def __new__(cls):\n        return cls\n", "defining '__new__'"),
    "object_new": ("class A:\n    pass\nprint(object.__new__(A))\n", "access to dunder attribute '__new__'"),
    "reduce": ("class A:\n    def __reduce__(self):\n        return (print, ('x',))\n", "defining '__reduce__'"),
    "reduce_ex": ("class A:\n    def __reduce_ex__(self, p):\n        return ()\n", "defining '__reduce_ex__'"),
    "descriptor_get": ("class D:\n    def __get__(self, obj, owner):\n        return obj\n", "defining '__get__'"),
    "descriptor_set": ("class D:\n    def __set__(self, obj, v):\n        pass\n", "defining '__set__'"),
    "set_name": ("class D:\n    def __set_name__(self, owner, n):\n        pass\n", "defining '__set_name__'"),
    "slots": ("class A:\n    __slots__ = ('x',)\n", "defining '__slots__'"),
    "class_getitem": ("class A:\n    def __class_getitem__(cls, k):\n        return k\n",
                      "defining '__class_getitem__'"),
    "del_hook": ("class A:\n    def __del__(self):\n        pass\n", "defining '__del__'"),
    "build_class_name": ("print(__build_class__)\n", "the name '__build_class__' is not available"),
    "super_self": ("class A:\n    def m(self):\n        return super().__self__\n", "access to dunder attribute '__self__'"),
    "super_thisclass": ("class A:\n    def m(self):\n        return super().__thisclass__\n",
                        "access to dunder attribute '__thisclass__'"),
    "traceback": ("class E(Exception):\n    pass\ntry:\n    raise E()\nexcept E as e:\n    print(e.__traceback__)\n",
                  "access to dunder attribute '__traceback__'"),
    "reserved_attribute": ("class A:\n    pass\nA()._fm_x = 1\n", "assigning attribute '_fm_x'"),
    "undefined_private": ("class A:\n    pass\nprint(A()._secret)\n", "attribute '_secret' is not available"),
    "host_private_name": ("def f():\n    pass\nprint(f._machine)\n", "attribute '_machine' is not available"),
}


@pytest.mark.parametrize("name", sorted(AT_CHECK))
def test_refused_at_check_time(name: str, tmp_path: Path) -> None:
    source, message = AT_CHECK[name]
    with no_host_effect(tmp_path) as marker:
        outcome = attempt(source, marker)
    assert outcome.refused, f"{name} ran: {outcome.output!r} {outcome.error_line!r}"
    assert any(message in line for line in outcome.refused), outcome.refused
    assert all(line.startswith("attack.flow:") for line in outcome.refused)


# Stopped while running: (program, the errors it may end with).
AT_RUN = {
    # classes only from the program's classes, object and the exception types
    "base_int": ("class A(int):\n    pass\n", ("TypeError",)),
    "base_dict": ("class A(dict):\n    pass\n", ("TypeError",)),
    "base_type": ("class Meta(type):\n    pass\n", ("TypeError",)),
    "base_function_type": ("def f():\n    pass\nclass A(type(f)):\n    pass\n", ("TypeError",)),
    "base_builtin_type": ("class A(type(len)):\n    pass\n", ("TypeError",)),
    "base_module": ("import json\nclass A(json):\n    pass\n", ("TypeError",)),
    "base_instance": ("class A:\n    pass\nclass B(A()):\n    pass\n", ("TypeError",)),
    # (`typing.NamedTuple` is a base: it makes a namedtuple class, machine/stdlib/namedtuples.py)
    "base_namedtuple_with_another": ("import typing\nclass B:\n    pass\nclass A(typing.NamedTuple, B):\n    x: int\n",
                                     ("TypeError",)),
    "base_module_exception": ("import json\nclass E(json.JSONDecodeError):\n    pass\n", ("TypeError",)),
    "three_argument_type": ("print(type('X', (), {'f': 1}))\n", ("TypeError",)),
    "type_of_class": ("class A:\n    pass\nT = type(A)\nprint(T('X', (A,), {}))\n", ("TypeError",)),
    "super_of_host": ("print(super(int, 1))\n", ("TypeError",)),
    "super_no_args_outside": ("def f():\n    return super()\nf()\n", ("RuntimeError",)),
    # names the program defines itself, read on a host value or a class that lacks them
    "own_name_on_generator": ("class A:\n    gi_frame = 1\ng = (x for x in [1])\nprint(g.gi_frame)\n",
                              ("AttributeError",)),
    "own_name_on_function": ("from flowmetal import sleep\nclass A:\n    _machine = 1\n"
                             "def w():\n    sleep(0)\nprint(w._machine)\n", ("AttributeError",)),
    "own_name_mro": ("class A:\n    pass\nclass B:\n    mro = 1\nprint(A.mro())\n", ("AttributeError",)),
    "own_name_on_super": ("class A:\n    def m(self):\n        return super().mro\nclass B:\n    mro = 1\n"
                          "print(A().m())\n", ("AttributeError",)),
    "own_private_on_exception": ("class A:\n    _fm = 1\ntry:\n    1 / 0\nexcept ZeroDivisionError as e:\n"
                                 "    print(e._fm)\n", ("AttributeError",)),
    # the dunders a program may read, on host values
    "init_of_host": ("import json\nprint(json.__init__)\n", ("AttributeError",)),
    "init_of_int": ("print((1).__init__)\n", ("AttributeError",)),
    "init_of_print": ("print(print.__init__(1))\n", ("AttributeError",)),
    "doc_of_host": ("print(len.__doc__)\n", ("AttributeError",)),
    "eq_of_object": ("print(object.__eq__)\n", ("AttributeError",)),
    "hash_of_instance": ("class A:\n    pass\nprint(A().__hash__)\n", ("AttributeError",)),
    "format_dict": ("class A:\n    pass\nprint('{0.__dict__}'.format(A()))\n", ("AttributeError",)),
    "format_weakref": ("class A:\n    pass\nprint('{0.__weakref__}'.format(A()))\n", ("AttributeError",)),
    "format_module": ("class A:\n    pass\nprint('{0.__module__}'.format(A))\n", ("AttributeError",)),
    "format_mro": ("class A:\n    pass\nprint('{0.__mro__}'.format(A))\n", ("AttributeError",)),
    "format_super_self": ("class A:\n    def m(self):\n        return '{0.__self_class__}'.format(super())\n"
                          "print(A().m())\n", ("AttributeError",)),
    "attrgetter_dict": ("import operator\nclass A:\n    pass\nprint(operator.attrgetter('__dict__')(A()))\n",
                        ("AttributeError",)),
    # setting attributes is for the program's own objects only
    "set_on_module": ("import json\njson.dumps = print\n", ("AttributeError", "TypeError")),
    "set_on_function": ("def f():\n    pass\nf.x = 1\n", ("AttributeError", "TypeError")),
    "set_on_builtin": ("len.x = 1\n", ("AttributeError", "TypeError")),
    "set_on_exception_class": ("ValueError.x = 1\n", ("AttributeError", "TypeError")),
    "set_on_object_class": ("object.x = 1\n", ("AttributeError", "TypeError")),
    "set_on_property": ("class A:\n    @property\n    def p(self):\n        return 1\nA.p.fget = print\n",
                        ("AttributeError", "TypeError")),
    "set_through_method": ("import json\nclass A:\n    def __init__(self, x):\n        self.x = x\n"
                           "A.__init__(json, 1)\n", ("AttributeError", "TypeError")),
    "set_through_unbound_setter": ("import json\nclass A:\n    def set(self):\n        self.loads = print\n"
                                   "A.set(json)\n", ("AttributeError", "TypeError")),
    "delete_on_module": ("import json\ndel json.dumps\n", ("AttributeError", "TypeError")),
    "augment_on_host": ("import math\nmath.pi += 1\n", ("AttributeError", "TypeError")),
    # static methods and properties over host callables create nothing new
    "staticmethod_type": ("class A:\n    make = staticmethod(type)\nprint(A.make('X', (), {}))\n", ("TypeError",)),
    "property_over_type": ("class A:\n    p = property(type)\nprint(A().p('X', (), {}))\n", ("TypeError",)),
}


@pytest.mark.parametrize("name", sorted(AT_RUN))
def test_stopped_at_run_time(name: str, tmp_path: Path) -> None:
    source, kinds = AT_RUN[name]
    with no_host_effect(tmp_path) as marker:
        outcome = attempt(source, marker)
    assert not outcome.refused, outcome.refused
    stopped(outcome, *kinds)
    assert "0x" not in outcome.output


def test_a_methods_own_reads_reach_only_the_programs_objects(tmp_path: Path) -> None:
    # the program's own private names work on its own objects, and nowhere else
    source = """
class Box:
    def __init__(self, v):
        self._v = v
        self.gi_frame = "mine"
    def peek(self, other):
        return other._v
b = Box(1)
print(b._v, b.gi_frame, b.peek(Box(2)))
b.peek(len)
"""
    with no_host_effect(tmp_path) as marker:
        outcome = attempt(source, marker)
    assert outcome.output == "1 mine 2\n"
    assert outcome.error_line == "AttributeError: 'builtin_function_or_method' object has no attribute '_v'"


def test_host_names_cover_every_host_value() -> None:
    # a name that no host value has is read natively (at full speed) on the program's objects:
    # so every name a host value programs can hold has, type or instance, must be listed
    from flowmetal.lang.surface import ALL_ATTRIBUTES
    from flowmetal.lang.surface_classes import HOST_NAMES, is_dunder
    from flowmetal.machine import access
    from security.test_surface_closed import _program_values

    def unlisted(names: list[str]) -> list[str]:
        return sorted(n for n in names if not is_dunder(n) and not n.startswith("_fm_")
                      and n not in ALL_ATTRIBUTES and n not in HOST_NAMES)

    def fields(x: object) -> tuple[str, ...]:
        # the fields of a namedtuple the program made are the program's own names
        found = getattr(x, "_fields", ())
        return found if isinstance(found, tuple) else ()

    missing: dict[str, list[str]] = {}
    for host in list(access._KIND_OF):
        names = [n for n in unlisted(dir(host)) if n not in fields(host)]
        if names:
            missing[host.__qualname__] = names
    for value in _program_values():
        try:
            names = [n for n in unlisted(dir(value)) if n not in fields(value)]
        except Exception:  # pragma: no cover - a value whose dir() fails
            continue
        if names:
            missing[f"{type(value).__qualname__} instance"] = names
    assert not missing, missing
