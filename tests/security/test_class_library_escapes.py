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


@pytest.mark.parametrize("name", sorted(ESCAPES))
def test_escape_is_stopped(name: str, tmp_path: Path) -> None:
    with no_host_effect(tmp_path) as marker:
        outcome = attempt(ESCAPES[name], marker)
    stopped(outcome, "AttributeError", "TypeError", "ValueError", "ImportError", "NameError")
    assert "0x" not in outcome.output


RUNAWAYS = {
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
