"""Unit tests for the checker: scope analysis edge cases, valid programs, and the API."""

from __future__ import annotations

import textwrap
import warnings

import pytest

from flowmetal.lang.check import check_source, has_errors
from flowmetal.lang.diagnostics import Diagnostic
from flowmetal.lang.program import compile_program

MODULES: dict[str, frozenset[str] | None] = {
    "json": frozenset({"dumps", "loads"}),
    "math": frozenset({"sqrt", "pi", "floor"}),
    "re": None,
    "flowmetal": frozenset({"sleep"}),
}


def diags(source: str, modules: dict[str, frozenset[str] | None] | None = None) -> list[str]:
    _tree, found = check_source(
        textwrap.dedent(source), "t.flow", modules=MODULES if modules is None else modules
    )
    return [d.format() for d in found]


def warned(source: str) -> list[str]:
    """The names reported as not defined, in order."""
    _tree, found = check_source(textwrap.dedent(source), "t.flow", modules=MODULES)
    prefix, suffix = "name '", "' is not defined"
    return [
        d.message[len(prefix) : -len(suffix)]
        for d in found
        if d.severity == "warning" and d.message.startswith(prefix)
    ]


# -- valid programs ---------------------------------------------------------

VALID = {
    "closure_nonlocal": """
        def counter():
            count = 0
            def bump(step=1):
                nonlocal count
                count += step
                return count
            return bump
        """,
    "global_assigned_in_function": """
        def init():
            global config
            config = {"a": 1}
        def use():
            return config["a"]
        """,
    "nested_global_read_through_function": """
        def outer():
            global shared
            shared = 1
            def inner():
                return shared
            return inner
        """,
    "comprehensions": """
        def main(rows):
            flat = [cell for row in rows for cell in row if cell]
            table = {k: [v * i for i in range(3)] for k, v in enumerate(flat)}
            pairs = {(a, b) for a in flat for b in (lambda: flat)()}
            return sum(x for x in flat), table, pairs
        """,
    "decorators": """
        def twice(f):
            def wrapper(*args, **kwargs):
                return f(*args, **kwargs) * 2
            return wrapper
        @twice
        def one():
            return 1
        """,
    "try_except_finally_with": """
        def main(lock):
            try:
                with lock as held, lock as (a, b):
                    return held, a, b
            except (KeyError, ValueError) as e:
                return e.__cause__, e.__context__
            finally:
                print(main.__name__)
        """,
    "imports": """
        import json
        import math as m
        import re
        from math import sqrt, pi as PI
        from flowmetal import sleep
        def main():
            sleep(1)
            return json.dumps(m.floor(sqrt(PI))), re.compile("a")
        """,
    "parameters": """
        def f(a, /, b, *args, c, d=1, **kwargs):
            return a, b, args, c, d, kwargs
        g = lambda x, *ys, z=2, **kw: (x, ys, z, kw)
        """,
    "targets": """
        def main(items):
            first, *rest = items
            for i, (k, v) in enumerate(rest):
                print(i, k, v)
            x = 1
            del x
            items[0] = items[1:3]
            del items[0]
            return first
        """,
    "annotations_are_ignored": """
        def f(x: Undefined, *a: Other, **k: Third) -> Missing:
            y: AlsoMissing = 1
            return x, y
        z: open = 3
        w: eval
        """,
    "later_definitions_and_recursion": """
        def main():
            return helper(3)
        def helper(n):
            return n if n < 1 else helper(n - 1) + LIMIT
        LIMIT = 10
        """,
    "misc_expressions": """
        def main(s):
            return s[1:2:3], 1 < 2 <= 3, f"{s!r:>{len(s)}}", [*s], {**{}}
        """,
    "builtins": """
        print(len([]), ValueError, None, True, NotImplemented, Ellipsis, isinstance(1, int))
        """,
}


@pytest.mark.parametrize("source", VALID.values(), ids=list(VALID))
def test_valid_programs_have_no_diagnostics(source: str) -> None:
    assert diags(source) == []


# -- scope analysis ---------------------------------------------------------


def test_comprehension_variable_does_not_leak() -> None:
    assert warned("[x for x in range(3)]\nprint(x)\n") == ["x"]


def test_first_iterable_is_evaluated_in_enclosing_scope() -> None:
    assert diags("[y for y in y]\n") == ["t.flow:1:13: warning: name 'y' is not defined"]


def test_later_iterables_see_earlier_targets() -> None:
    assert warned("def f(xs):\n    return [b for a in xs for b in a if b]\n") == []


def test_function_locals_are_not_visible_elsewhere() -> None:
    source = """
        def outer():
            local_only = 1
            def inner():
                nested = 2
                return local_only
            return nested
        def sibling():
            return local_only
        """
    assert warned(source) == ["nested", "local_only"]


def test_defaults_and_decorators_use_the_enclosing_scope() -> None:
    source = """
        def f(x=x, *, y=y):
            return x, y
        g = lambda a=a: a
        @deco
        def h(deco):
            return deco
        """
    assert warned(source) == ["x", "y", "a", "deco"]


def test_global_declaration_without_any_binding_warns() -> None:
    assert warned("def f():\n    global g\n    return g\n") == ["g"]


def test_global_skips_enclosing_function_binding() -> None:
    source = """
        def outer():
            v = 1
            def inner():
                global v
                return v
            return inner
        """
    assert warned(source) == ["v"]


def test_nonlocal_reads_enclosing_binding() -> None:
    source = """
        def outer():
            def mid():
                def inner():
                    nonlocal total
                    total += 1
                    return total
                return inner
            total = 0
            return mid
        """
    assert diags(source) == []


def test_class_body_names_are_not_visible_in_methods() -> None:
    source = """
        def outer():
            seen = 1
            class K:
                attr = seen
                def method(self):
                    return attr, seen
            return K
        """
    assert diags(source) == [
        "t.flow:7:20: warning: name 'attr' is not defined",
    ]


def test_binding_constructs_bind() -> None:
    source = """
        import os.path
        def main():
            try:
                pass
            except ValueError as err:
                print(err)
            with open_it() as (a, [b, *c]):
                print(a, b, c)
            print(os.path)
            if (w := 3):
                print(w)
            match 1:
                case [m1, *mrest]:
                    print(m1, mrest)
                case {"k": m2, **mothers}:
                    print(m2, mothers)
                case str() as m3:
                    print(m3)
        def open_it():
            return None
        """
    assert warned(source) == []


def test_walrus_in_comprehension_binds_in_function() -> None:
    source = """
        def main(xs):
            ys = [t for x in xs if (t := x)]
            return t, ys
        """
    assert warned(source) == []


def test_annotation_without_value_at_module_level_does_not_bind() -> None:
    assert warned("x: int\nprint(x)\n") == ["x"]
    assert warned("def f():\n    x: int\n    return x\n") == []


def test_del_and_augmented_assignment_need_a_binding() -> None:
    assert warned("def f():\n    z = 1\n    del z\n    z += 1\n") == []
    assert warned("def f():\n    del z\n    return z\n") == ["z", "z"]
    assert warned("total += 1\n") == ["total"]
    assert warned("d = {}\ndel d[k]\n") == ["k"]


def test_augmented_assignment_makes_a_name_local() -> None:
    source = """
        total = 0
        def bad():
            total += 1
        def good():
            global total
            total += 1
        def outer():
            count = 0
            def inner():
                nonlocal count
                count += 1
            return inner
        """
    assert diags(source) == [
        "t.flow:4:5: warning: local variable 'total' is never assigned in this scope, so the "
        "outer 'total' is not used; declare it 'global' or 'nonlocal' to change that one"
    ]


def test_builtin_made_local_by_del() -> None:
    assert warned("def f():\n    del len\n") == []  # not the generic message
    assert len(diags("def f():\n    del len\n")) == 1


# -- forbidden built-ins ----------------------------------------------------


def test_forbidden_builtin_is_an_error_not_a_warning() -> None:
    assert diags("print(id(1))\n") == [
        "t.flow:1:7: error: 'id' is not available: object addresses are not deterministic across machines"
    ]


@pytest.mark.parametrize(
    "definition",
    ["def id(x):\n    return x\n", "def f(id):\n    return id\n", "from math import floor as id\n"],
)
def test_program_may_define_a_forbidden_name(definition: str) -> None:
    assert not has_errors(check_source(definition + "id\n", "t.flow", modules=MODULES)[1])


def test_forbidden_name_defined_elsewhere_but_not_visible_warns() -> None:
    source = "def f(hash):\n    return hash\nprint(hash(1))\n"
    assert diags(source) == ["t.flow:3:7: warning: name 'hash' is not defined"]


# -- constructs -------------------------------------------------------------


def test_each_node_is_reported_once() -> None:
    assert diags("def f(x):\n    x.__dict__ = 1\n") == [
        "t.flow:2:7: error: assigning attribute '__dict__' is not supported: "
        "only the program's own attributes can be set"
    ]


def test_allowed_dunders() -> None:
    assert diags("def f(e):\n    return e.__name__, e.__cause__, e.__context__\n") == []


def test_star_import_from_unknown_module_reports_the_module_only() -> None:
    found = diags("from os import *\n")
    assert len(found) == 1
    assert "module 'os' is not provided" in found[0]


def test_a_module_that_is_not_provided_is_not_called_a_way_out() -> None:
    (found,) = diags("import csv\n")
    assert "module 'csv' is not provided; provided modules are: flowmetal, json, math, re" in found
    assert "connectors" not in found
    (found,) = diags("import subprocess\n")
    assert "only through connectors" in found


def test_future_imports_and_main_guard_are_accepted() -> None:
    assert diags("from __future__ import annotations\nif __name__ == '__main__':\n    print(__name__)\n") == []


def test_module_with_unrestricted_exports() -> None:
    assert diags("from re import anything\n") == []


def test_no_importable_modules() -> None:
    assert diags("import json\n", modules={}) == [
        "t.flow:1:8: error: module 'json' is not provided; no modules are provided"
    ]


def test_every_await_is_reported() -> None:
    found = diags("async def f(a, b):\n    await a\n    await b\n")
    assert [line.split(": ")[0] for line in found] == ["t.flow:1:1", "t.flow:2:5", "t.flow:3:5"]


# -- API --------------------------------------------------------------------


def test_syntax_error_returns_no_tree() -> None:
    tree, found = check_source("def f(:\n", "t.flow", modules=MODULES)
    assert tree is None
    assert [d.format() for d in found] == ["t.flow:1:7: error: invalid syntax"]


def test_null_byte_is_an_error() -> None:
    tree, found = check_source("x = 1\x00\n", "t.flow", modules=MODULES)
    assert tree is None
    assert len(found) == 1 and found[0].severity == "error"


def test_byte_order_mark_is_ignored() -> None:
    tree, found = check_source("\ufeffx = 1\n", "t.flow", modules=MODULES)
    assert tree is not None and found == []


def test_diagnostics_are_sorted_and_positions_one_based() -> None:
    tree, found = check_source("print(b)\nimport os\nprint(a)\n", "t.flow", modules=MODULES)
    assert tree is not None
    assert [(d.line, d.col) for d in found] == [(1, 7), (2, 8), (3, 7)]
    assert all(isinstance(d, Diagnostic) for d in found)


def test_warnings_do_not_make_a_program_invalid_and_compile_still_runs() -> None:
    tree, found = check_source("print(nope)\nbreak\n", "t.flow", modules=MODULES)
    assert tree is not None
    assert [d.format() for d in found] == [
        "t.flow:1:7: warning: name 'nope' is not defined",
        "t.flow:2:1: error: 'break' outside loop",
    ]
    assert has_errors(found)
    assert not has_errors(found[:1])
    assert not has_errors([])


def test_compile_is_skipped_after_an_error() -> None:
    assert diags("import os\nreturn 1\n") == [
        "t.flow:1:8: error: module 'os' is not provided: programs reach the outside world "
        "only through connectors (the `flowmetal` module); provided modules are: flowmetal, json, math, re"
    ]


def test_host_syntax_warnings_are_not_errors() -> None:
    source = 'x = "\\d"\nassert (x, "m")\nprint(x is 1)\n'
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert diags(source) == []


def test_deep_expressions_do_not_crash() -> None:
    # Deep enough to overflow a recursive ast.NodeVisitor, shallow enough for ast.parse:
    # refused with its position, because the compiler (which `run` uses) could not follow.
    assert diags("x = " + "-" * 800 + "1\n") == [
        "t.flow:1:504: error: the program is nested too deeply to check (more than 500 levels of nesting)"]
    # up to the limit, everything the checker accepts also compiles (check runs what run runs)
    for source in ("x = " + "-" * 495 + "1\n", "x = " + "[" * 190 + "]" * 190 + "\n", "x = " + "1+" * 495 + "1\n",
                   "def f():\n    return " + "-" * 490 + "1\n"):
        assert diags(source) == []
        compile_program(source, "t.flow")
    tree, found = check_source("x = " + "1+" * 100_000 + "1\n", "t.flow", modules=MODULES)
    assert tree is None
    assert [d.format() for d in found] == [
        "t.flow:1:1: error: the program is nested too deeply to check"
    ]
