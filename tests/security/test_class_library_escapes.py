"""Attacks through the class-making parts of the standard library: `collections.namedtuple`
(and later dataclasses, enum, total_ordering). A class a program makes this way carries its own
attribute table (machine/stdlib/namedtuples.py); these programs try to read past it, to reach the
host functions CPython generates for the class, or to make the class run a loop without fuel.
Each attack is refused before running or fails inside the program with a Python error, and
leaves no trace on the host."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowmetal.machine.api import Limits
from security.attack import attempt, no_host_effect, stopped

_NT = 'from collections import namedtuple\nPoint = namedtuple("Point", "x y")\np = Point(1, 2)\n'

ESCAPES = {
    # the generated __new__ is a host function with its own globals
    "nt_new_globals_format": _NT + 'print("{0.__new__.__globals__}".format(Point))\n',
    "nt_new_globals_attr": _NT + "print(Point.__new__.__globals__)\n",
    "nt_make_func": _NT + 'print("{0._make.__func__.__globals__}".format(Point))\n',
    "nt_replace_globals": _NT + 'print("{0._replace.__globals__}".format(p))\n',
    # the class's own tables and CPython's internals are not attributes
    "nt_table_format": _NT + 'print("{0._fm_attrs}".format(p))\n',
    "nt_class_table_format": _NT + 'print("{0._fm_class_attrs}".format(Point))\n',
    "nt_source": _NT + 'print("{0._source}".format(Point))\n',
    "nt_attrgetter_table": _NT + 'import operator\nprint(operator.attrgetter("_fm_attrs")(p))\n',
    "nt_attrgetter_class_field": _NT + 'import operator\nprint(operator.attrgetter("x")(Point))\n',
    "nt_class_field_descriptor": _NT + "print(Point.x)\n",
    "nt_attrgetter_dict": _NT + 'import operator\nprint(operator.attrgetter("__dict__")(Point))\n',
    "nt_mro": _NT + 'print("{0.__mro__}".format(Point))\n',
    "nt_bases": _NT + 'print("{0.__bases__[0].__subclasses__}".format(Point))\n',
    "nt_metaclass": _NT + 'print("{0.__class__.__dict__}".format(Point))\n',
    "nt_getnewargs": _NT + 'print("{0.__getnewargs__}".format(p))\n',
    "nt_doc": _NT + 'print("{0.__doc__}".format(Point))\n',
    # a field name that some host value has natively is only ever the field
    "nt_field_named_like_host": """
from collections import namedtuple
F = namedtuple("F", "gi_frame f_globals")
g = (x for x in [1])
print(g.gi_frame)
""",
    "nt_field_name_on_function": """
from collections import namedtuple
F = namedtuple("F", "func args keywords")
def f():
    pass
print(f.func)
""",
    # fields must be identifiers without `_`: CPython's own checks stand
    "nt_dunder_field": 'from collections import namedtuple\nnamedtuple("P", ["__class__"])\n',
    "nt_keyword_field": 'from collections import namedtuple\nnamedtuple("P", "x def")\n',
    "nt_code_in_name": 'from collections import namedtuple\nnamedtuple("P", ["x=__import__(\'os\')"])\n',
    "nt_code_in_typename": 'from collections import namedtuple\nnamedtuple("P(): pass\\nimport os\\n#", "x")\n',
    "nt_type_call": _NT + 'print(type(Point)("Q", (), {}))\n',
}


_DC = ("from dataclasses import dataclass, field, fields\n@dataclass\nclass P:\n    x: int\n"
       "    y: list = field(default_factory=list)\np = P(1)\n")
_EN = "from enum import Enum, Flag\nclass Color(Enum):\n    RED = 1\n    GREEN = 2\n"

ESCAPES.update({
    # -- dataclasses: the class's own records and the methods @dataclass adds ------------------
    "dc_fields_table": _DC + 'print("{0._fm_dataclass_fields}".format(p))\n',
    "dc_params_table": _DC + 'print("{0._fm_dataclass_params}".format(P))\n',
    "dc_field_internals": _DC + 'print("{0._field_type}".format(fields(p)[0]))\n',
    "dc_field_type_host": _DC + 'print("{0.type.__subclasses__}".format(fields(p)[0]))\n',
    "dc_field_type_mro": _DC + 'print("{0.type.mro}".format(fields(p)[0]))\n',
    "dc_method_class": _DC + 'print("{0._fm_cls}".format(P.__init__))\n',
    "dc_method_call_dunder": _DC + 'print("{0.__call__}".format(P.__init__))\n',
    "dc_method_get": _DC + 'print("{0.__get__}".format(P.__repr__))\n',
    "dc_binder_globals": _DC + 'print("{0.__init__.__globals__}".format(p))\n',
    "dc_annotations": _DC + 'print("{0.__annotations__.keys.__self__}".format(P))\n',
    "dc_setattr_dunder": _DC + 'import operator\nprint(operator.attrgetter("__setattr__")(p))\n',
    "dc_factory_type": _DC + 'print("{0.default_factory.__subclasses__}".format(fields(p)[1]))\n',
    "dc_on_host_class": "from dataclasses import dataclass\nfrom collections import Counter\ndataclass(Counter)\n",
    "dc_on_namedtuple": ("from dataclasses import dataclass\nfrom collections import namedtuple\n"
                         "dataclass(namedtuple('P', 'x'))\n"),
    "dc_replace_class": _DC + "from dataclasses import replace\nreplace(p, __class__=int)\n",
    "dc_field_names_code": ("from dataclasses import dataclass\n@dataclass\nclass Q:\n    x: 'int = __import__(\"os\")'\n"
                            "Q(1)\nprint(Q.__init__.__defaults__)\n"),
    # -- enum: CPython's machinery under the program's class ------------------------------------
    "enum_member_map": _EN + 'print("{0._member_map_}".format(Color))\n',
    "enum_value_map": _EN + 'print("{0._value2member_map_}".format(Color))\n',
    "enum_new_member": _EN + 'print("{0._new_member_}".format(Color))\n',
    "enum_member_type": _EN + 'print("{0._member_type_.__subclasses__}".format(Color))\n',
    "enum_metaclass_dict": _EN + 'print("{0.__class__.__dict__}".format(Color))\n',
    "enum_metaclass_prepare": _EN + 'print("{0.__prepare__}".format(Color))\n',
    "enum_mro": _EN + 'print("{0.mro}".format(Color))\n',
    "enum_member_objclass": _EN + 'print("{0.__objclass__}".format(Color.RED))\n',
    "enum_member_value_private": _EN + 'print("{0._sort_order_}".format(Color.RED))\n',
    "enum_members_mutation": _EN + 'Color.__members__["BLUE"] = 3\n',
    "enum_members_dict": _EN + 'print("{0.__members__.__dict__}".format(Color))\n',
    "enum_type_call": _EN + 'from enum import EnumType\nprint(EnumType("X", (Enum,), {}))\n',
    "enum_meta_call": _EN + 'from enum import EnumMeta\nprint(type(Color)("X", (Enum,), {}))\n',
    "enum_generate_next": _EN + 'print("{0._generate_next_value_.__globals__}".format(Color))\n',
    "enum_missing_hook": _EN + 'print("{0._missing_.__func__}".format(Color))\n',
    "enum_base_internals": 'from enum import Enum\nprint("{0._value_repr_}".format(Enum))\n',
    "enum_flag_internals": 'from enum import Flag\nclass P(Flag):\n    R = 1\nprint("{0._flag_mask_}".format(P))\n',
    "enum_functional_names": 'from enum import Enum\nE = Enum("E", "A B")\nprint("{0._member_names_}".format(E))\n',
    # -- functools.total_ordering ----------------------------------------------------------------
    "total_ordering_globals": ("from functools import total_ordering\n@total_ordering\nclass A:\n"
                               "    def __lt__(self, o):\n        return True\n"
                               'print("{0.__gt__.__globals__}".format(A))\n'),
})


@pytest.mark.parametrize("name", sorted(ESCAPES))
def test_escape_is_stopped(name: str, tmp_path: Path) -> None:
    with no_host_effect(tmp_path) as marker:
        outcome = attempt(ESCAPES[name], marker)
    stopped(outcome, "AttributeError", "TypeError", "ValueError", "ImportError", "NameError")
    assert "0x" not in outcome.output


RUNAWAYS = {
    "enum_functional_endless": 'from enum import Enum\nimport itertools\nEnum("E", itertools.repeat(("A", 1)))\n',
    "nt_make_endless": 'from collections import namedtuple\nimport itertools\n'
                       'namedtuple("P", "x y")._make(itertools.count())\n',
    "nt_fields_endless": 'from collections import namedtuple\nimport itertools\n'
                         'namedtuple("P", itertools.repeat("x"))\n',
    "nt_defaults_endless": 'from collections import namedtuple\nimport itertools\n'
                           'namedtuple("P", "x", defaults=itertools.repeat(0))\n',
}


@pytest.mark.parametrize("name", sorted(RUNAWAYS))
def test_loops_in_c_use_fuel(name: str) -> None:
    outcome = attempt(RUNAWAYS[name], limits=Limits(fuel=300_000))
    assert outcome.error_line is not None and outcome.error_line.startswith("FuelExhausted"), outcome


def test_a_namedtuple_class_reads_only_its_own_fields() -> None:
    outcome = attempt('from collections import namedtuple\nA = namedtuple("A", "x")\nB = namedtuple("B", "y")\n'
                      "try:\n    print(B(2).x)\nexcept AttributeError as e:\n    print(e)\n"
                      "print(A(1).x, A._fields, B._field_defaults, A(1)._asdict())\n")
    assert outcome.error_line is None, outcome
    assert outcome.output == "'B' object has no attribute 'x'\n1 ('x',) {} {'x': 1}\n"


def test_field_defaults_cannot_change_the_class() -> None:
    # `_field_defaults` is a copy: the defaults a snapshot writes are the class's own
    outcome = attempt('from collections import namedtuple\nA = namedtuple("A", "x", defaults=[1])\n'
                      'A._field_defaults["x"] = 5\nprint(A(), A._field_defaults)\n')
    assert outcome.output == "A(x=1) {'x': 1}\n", outcome


def test_total_ordering_leaves_shared_classes_alone() -> None:
    # a class of the machine's (shared by every program in the process) is never changed
    # (it adds nothing to a class that has all four comparisons, as CPython's, and changes no other)
    outcome = attempt("from functools import total_ordering\nfrom collections import deque\n"
                      "try:\n    total_ordering(object)\nexcept ValueError as e:\n    print(e)\n"
                      "print(total_ordering(int) is int, total_ordering(deque) is deque)\n")
    assert outcome.output == "must define at least one ordering operation: < > <= >=\nTrue True\n", outcome


def test_enum_members_view_is_read_only() -> None:
    outcome = attempt("from enum import Enum\nclass C(Enum):\n    A = 1\nm = C.__members__\n"
                      "try:\n    m['B'] = 2\nexcept TypeError as e:\n    print(e)\n"
                      "print(repr(m), list(m), m.copy(), len(C))\n")
    assert outcome.output == ("'mappingproxy' object does not support item assignment\n"
                              "mappingproxy({'A': <C.A: 1>}) ['A'] {'A': <C.A: 1>} 1\n"), outcome


def test_dataclass_field_type_is_text_or_a_builtin_type() -> None:
    outcome = attempt("from dataclasses import dataclass, fields\n@dataclass\nclass P:\n    a: int\n"
                      "    b: 'os.system'\n    c: list[int]\nprint([f.type for f in fields(P)])\n")
    assert outcome.output == "[<class 'int'>, \"'os.system'\", 'list[int]']\n", outcome
