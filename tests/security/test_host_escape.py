"""Attacks that try to reach host objects (and through them files, processes or other
programs): each is refused before running or fails inside the program, and leaves no
trace on the host. The allow-list (lang/surface.py), not this list, is what stops them;
these are the routes seen so far and their neighbours."""

from __future__ import annotations

from pathlib import Path

import pytest

from security.attack import attempt, no_host_effect, stopped

ESCAPES = {
    # The published exploit: a property of the Match type is built from attrgetter.
    "match_property_fget": """
import re
AG = type(type(re.match("a", "a")).string.fget)
AG("__globals__")(re.compile)["__builtins__"]["__import__"]("os").system("touch MARKER")
""",
    # The same, with every attribute read through format fields (no static name).
    "format_field_chain": """
import re
t = type(re.match("a", "a"))
print("{0.string.fget}".format(t))
""",
    "format_map_chain": """
import re
print("{m.re.__class__}".format_map({"m": re.match("a", "a")}))
""",
    # type(type(x)) is Flowmetal's `type`, which makes no classes.
    "type_of_type_makes_class": """
T = type(type(1))
C = T("C", (), {"run": lambda self: 1})
print(C)
""",
    "type_of_flowtype_makes_class": """
T = type(type(iter([])))
print(T("C", (object,), {}))
""",
    # FlowTypes create nothing: a program cannot forge a handle or a match.
    "construct_iterator_type": "print(type(iter([]))([1, 2]))\n",
    "construct_match_type": 'import re\nprint(type(re.match("a", "a"))("x"))\n',
    "construct_module_type": "import json\nprint(type(json)('os'))\n",
    "construct_function_type": "def f():\n    pass\nprint(type(f)(1, 2))\n",
    "re_Match_from_module": 'import re\nprint(re.Match("x"))\n',
    # Type objects offer only their methods and names.
    "int_real_descriptor": "print(int.real)\n",
    "exception_args_descriptor": 'print("{0.args}".format(ValueError))\n',
    "str_mro": "print(str.mro())\n",
    "subclasses": "print(object.__subclasses__())\n",
    "subclasses_via_format": 'print("{0.__subclasses__}".format(object))\n',
    # Function internals.
    "function_globals": "def f():\n    pass\nprint(f.__globals__)\n",
    "function_globals_via_format": 'def f():\n    pass\nprint("{0.__globals__}".format(f))\n',
    "function_code": "def f():\n    pass\nprint(f.__code__.co_consts)\n",
    "function_defaults": "def f(x=[1]):\n    return x\nprint(f.__defaults__)\n",
    "function_closure": "def f():\n    y = 1\n    def g():\n        return y\n    return g\nprint(f().__closure__)\n",
    "lambda_builtins": 'print("{0.__builtins__}".format(lambda: 0))\n',
    "builtin_self": 'print("{0.__self__}".format(len))\n',
    "print_closure": 'print("{0.__closure__}".format(print))\n',
    "repr_globals": 'print("{0.__globals__}".format(repr))\n',
    "method_self": 'import re\nprint("{0.__self__}".format(re.compile("a").match))\n',
    "method_func": 'import re\nprint("{0.__func__}".format(re.compile("a").match))\n',
    "bound_builtin_self": 'xs = []\nprint("{0.__self__}".format(xs.append))\n',
    # Generators and iterators.
    "generator_frame": "g = (x for x in [1])\nprint(g.gi_frame.f_globals)\n",
    "generator_frame_via_format": 'g = (x for x in [1])\nprint("{0.gi_frame}".format(g))\n',
    "iterator_reduce": 'print("{0.__reduce__}".format(iter([1])))\n',
    # Exceptions.
    "exception_traceback": """
try:
    1 / 0
except ZeroDivisionError as e:
    print(e.__traceback__.tb_frame.f_globals)
""",
    "exception_traceback_via_format": """
try:
    1 / 0
except ZeroDivisionError as e:
    print("{0.__traceback__}".format(e))
""",
    "attribute_error_obj": """
try:
    (1).upper
except AttributeError as e:
    print("{0.obj}".format(e))
""",
    "exception_class_init_globals": 'import json\nprint(json.JSONDecodeError.__init__.__globals__)\n',
    # Modules.
    "module_dict": "import json\nprint(json.__dict__)\n",
    "module_loader": 'import json\nprint("{0.__loader__}".format(json))\n',
    "module_member_globals": 'import json\nprint("{0.__globals__}".format(json.dumps))\n',
    "module_not_a_member": 'import json\nprint("{0.decoder}".format(json))\n',
    # json hooks get data, never a way out.
    "json_object_hook_type": """
import json
t = json.loads('{"a": 1}', object_hook=type)
print(t, t("x", (), {}))
""",
    "json_default_type": 'import json\nprint(json.dumps(iter([]), default=type))\n',
    "json_cls": 'import json\nprint(json.dumps({}, cls=type(type(1))))\n',
    "json_parse_hooks": """
import json
print(json.loads('[1.5, 2]', parse_float=type, parse_int=type))
t = json.loads('1.5', parse_float=type)
print(t("x", (), {}))
""",
    # sorted/min/map with built-ins and types as keys.
    "sorted_key_type": "xs = sorted([1, 'a'], key=type)\nprint(xs)\n",
    "map_type_then_call": "for t in map(type, [print]):\n    print(t('C', (), {}))\n",
    # The machine and the program's builtins.
    "resumable_function_machine": """
from flowmetal import sleep
def w():
    sleep(0)
print(w.machine.ticks)
""",
    "resumable_function_machine_via_format": """
from flowmetal import sleep
def w():
    sleep(0)
print("{0._machine}".format(w))
""",
    "resumable_generator_frame": """
from flowmetal import sleep
def main():
    g = (sleep(0) for x in [1])
    print("{0._frame.slots}".format(g))
""",
    "effect_function_internals": 'from flowmetal import sleep\nprint("{0._effect}".format(sleep))\n',
    "flowtype_hosts": 'print("{0._fm_hosts}".format(type(iter([]))))\n',
    "str_type_internals": 'print("{0.__call__.__globals__}".format(str))\n',
    "set_internal_dict": 'print("{0._d}".format({1, 2}))\n',
    "pattern_host": 'import re\nprint("{0._h}".format(re.compile("a")))\n',
    "dict_view_mapping": 'd = {"a": 1}\nprint("{0.mapping}".format(d.keys()))\n',
    # Lookalike names: identifiers are NFKC-normalised by the parser; format fields are not.
    "fullwidth_dunder": "def f():\n    pass\nprint(f.__ｇｌｏｂａｌｓ__)\n",
    "fullwidth_in_format": 'def f():\n    pass\nprint("{0.__ｇｌｏｂａｌｓ__}".format(f))\n',
    "fullwidth_reserved_name": "print(＿fm_tick)\n",
}


@pytest.mark.parametrize("name", sorted(ESCAPES))
def test_escape_is_stopped(name: str, tmp_path: Path) -> None:
    with no_host_effect(tmp_path) as marker:
        outcome = attempt(ESCAPES[name], marker)
    stopped(outcome, "AttributeError", "TypeError", "ValueError", "ImportError", "NameError")
    assert "0x" not in outcome.output


def test_the_published_exploit_is_refused_at_its_position() -> None:
    outcome = attempt(ESCAPES["match_property_fget"])
    # (`fget` is documented since programs have properties: it is routed, and refused on this value
    # when the program runs; `system` is an attribute nothing has)
    assert outcome.refused == ["attack.flow:4:67: error: no Flowmetal value has an attribute 'system'"]


def test_format_fields_read_only_allowed_attributes() -> None:
    outcome = attempt('import re\nm = re.match("(a)", "ab")\n'
                      'print("{0.string} {0.re.pattern} {0.pos} {1.real}".format(m, 3))\n')
    assert outcome.ran and outcome.error_line is None
    assert outcome.output == "ab (a) 0 3\n"


def test_type_objects_offer_their_methods() -> None:
    outcome = attempt("print(str.upper('a'), sorted(['b', 'A'], key=str.lower), dict.fromkeys('ab'),"
                      " int.from_bytes(b'\\x01', 'big'), list.index([5, 6], 6), str.__name__, type(1).__name__)\n")
    assert outcome.error_line is None
    assert outcome.output == "A ['A', 'b'] {'a': None, 'b': None} 1 1 str int\n"
