"""Names Flowmetal's generated code relies on (`_fm_*`), `__builtins__` and every dunder name
are refused in every form that binds a name; and since generated code reaches its helpers
through closure cells, not names, rebinding the built-ins it used to rely on changes nothing
for the machine's own checks (fuel, memory, uncatchable stops)."""

from __future__ import annotations

import pytest

from flowmetal.machine.api import Limits
from security.attack import attempt

BINDINGS = {
    "assign": "_fm_tick = None\n",
    "assign_dunder": "__builtins__ = {}\n",
    "augassign": "__name__ += 'x'\n",
    "tuple_target": "a, _fm_NOCATCH = 1, 2\n",
    "starred_target": "a, *_fm_x = [1, 2]\n",
    "for_target": "for _fm_guard in [1]:\n    pass\n",
    "for_tuple_target": "for a, __class__ in [(1, 2)]:\n    pass\n",
    "with_target": "from flowmetal import timeout\nwith timeout(1) as _fm_exit:\n    pass\n",
    "comprehension_target": "print([1 for _fm_iter in [1]])\n",
    "generator_target": "print(sum(1 for __dict__ in [1]))\n",
    "dict_comprehension_target": "print({k: 1 for k, _fm_k in [(1, 2)]})\n",
    "import_as": "import json as __builtins__\n",
    "import_as_reserved": "import json as _fm_import\n",
    "from_import_as": "from flowmetal import Timeout as _fm_tick\n",
    "from_import_as_catch": "from re import error as _fm_NOCATCH\n",
    "from_import_dunder": "from json import __builtins__\n",
    "from_import_private": "from json import _default_encoder\n",
    "except_as": "try:\n    pass\nexcept ValueError as _fm_x:\n    pass\n",
    "except_as_dunder": "try:\n    pass\nexcept ValueError as __builtins__:\n    pass\n",
    "global": "def f():\n    global _fm_tick\n",
    "nonlocal": "def f():\n    __x__ = 1\n    def g():\n        nonlocal __x__\n",
    "parameter": "def f(_fm_fr):\n    pass\n",
    "keyword_only_parameter": "def f(*, __builtins__=1):\n    pass\n",
    "varargs": "def f(*_fm_a, **__kwargs__):\n    pass\n",
    "lambda_parameter": "f = lambda _fm_rv: 1\n",
    "def_name": "def _fm_invoke():\n    pass\n",
    "def_dunder": "def __getattr__(name):\n    pass\n",
    "delete": "x = 1\ndel _fm_x\n",
    "read_reserved": "print(_fm_tick)\n",
    "read_builtins": "print(__builtins__)\n",
    "keyword_argument": "print(1, _fm_x=2)\n",
    "walrus": "if (_fm_t := 1):\n    pass\n",
}


@pytest.mark.parametrize("name", sorted(BINDINGS))
def test_reserved_binding_is_refused_at_its_position(name: str) -> None:
    outcome = attempt(BINDINGS[name])
    assert outcome.refused, f"{name} was accepted"
    assert all(line.startswith("attack.flow:") for line in outcome.refused)


def test_rebinding_builtins_does_not_reach_the_machine() -> None:
    # Generated code's helpers are closure cells: a program that rebinds the built-ins they
    # used to be named after (Exception for a bare except, iter, zip, isinstance) still cannot
    # catch the machine's own stop, nor escape the fuel count.
    source = """
Exception = BaseException
iter = None
zip = None
isinstance = lambda a, b: False
def spin():
    n = 0
    while True:
        try:
            n += 1
        except:
            pass
def main():
    try:
        spin()
    except:
        print("caught the stop")
    for x in [1, 2]:
        pass
    print("not reached")
"""
    outcome = attempt(source, limits=Limits(fuel=200_000))
    assert outcome.output == ""
    assert outcome.error_line == "FuelExhausted: the program used its fuel limit of 200000 steps"


def test_base_exception_handlers_cannot_swallow_stops() -> None:
    source = """
def main():
    for kind in (BaseException, Exception, (ValueError, BaseException)):
        try:
            while True:
                pass
        except kind:
            print("caught", kind)
"""
    outcome = attempt(source, limits=Limits(fuel=100_000))
    assert outcome.output == ""
    assert outcome.error_line is not None and outcome.error_line.startswith("FuelExhausted")


def test_finally_blocks_cannot_outrun_a_stop() -> None:
    source = """
def main():
    try:
        while True:
            pass
    finally:
        n = 0
        for i in range(10**9):
            n += 1
        print("finally ran to the end", n)
"""
    outcome = attempt(source, limits=Limits(fuel=100_000))
    assert outcome.output == ""
    assert outcome.error_line is not None and outcome.error_line.startswith("FuelExhausted")


def test_a_program_may_raise_and_catch_memory_error_itself() -> None:
    source = 'try:\n    raise MemoryError("pretend")\nexcept MemoryError as e:\n    print("caught", e)\n'
    outcome = attempt(source)
    assert outcome.output == "caught pretend\n" and outcome.error_line is None


def test_the_hosts_memory_error_cannot_be_caught() -> None:
    # An allocation the host refuses (here: a repetition too large for any machine) ends the
    # program; `except MemoryError` or `except Exception` does not see it.
    source = """
def main():
    n = 2**62
    pair = [0, 1]
    try:
        xs = pair * n
    except Exception:
        print("caught")
    except MemoryError:
        print("caught too")
"""
    outcome = attempt(source)
    assert outcome.output == ""
    assert outcome.error_line == "MemoryLimitExceeded: the program ran out of memory"
