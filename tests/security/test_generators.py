"""Generators cannot be used to reach the machine or the host: only their documented methods
(`send`, `throw`, `close`) and names exist, their reprs carry no address, what they throw is a
program's exception, and deep or self-referential uses end in Python errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from security.attack import attempt, no_host_effect, stopped

GEN = "def gen():\n    yield 1\n    yield 2\n"
WAITING_GEN = "from flowmetal import sleep\ndef gen():\n    sleep(0)\n    yield 1\n"

ESCAPES = {
    # CPython's generator internals do not exist on Flowmetal's generators.
    "gi_frame": GEN + "print(gen().gi_frame.f_globals)\n",
    "gi_code": GEN + "print(gen().gi_code.co_consts)\n",
    "gi_yieldfrom": GEN + "print(gen().gi_yieldfrom)\n",
    "gi_running": GEN + "print(gen().gi_running)\n",
    "gi_frame_via_format": GEN + 'print("{0.gi_frame}".format(gen()))\n',
    "gi_code_via_format": GEN + 'print("{0.gi_code}".format(gen()))\n',
    "frame_of_waiting_generator": WAITING_GEN + 'g = gen()\nprint("{0._frame.slots}".format(g))\n',
    "machine_of_generator": GEN + 'print("{0._machine}".format(gen()))\n',
    "next_dunder": GEN + 'print("{0.__next__}".format(gen()))\n',
    "iter_dunder": GEN + "print(gen().__iter__)\n",
    # The methods are the machine's, bound to the generator: nothing behind them.
    "method_self": GEN + 'print("{0.send.__self__}".format(gen()))\n',
    "method_generator_field": GEN + 'print("{0.send._gen._frame}".format(gen()))\n',
    "method_call_dunder": GEN + 'print("{0.throw.__call__}".format(gen()))\n',
    "method_type_constructs": GEN + "print(type(gen().send)('send', gen()))\n",
    "generator_type_constructs": GEN + "print(type(gen())(1, 2, 3))\n",
    # throw() takes exceptions only, and the frame's exception stays a program value.
    "throw_a_type_object": GEN + "g = gen()\nnext(g)\ng.throw(type(print))\n",
    "throw_a_function": GEN + "g = gen()\nnext(g)\ng.throw(print)\n",
    "throw_traceback_frame": """
def gen():
    try:
        yield 1
    except ValueError as e:
        yield e.__traceback__.tb_frame.f_globals
g = gen()
next(g)
print(g.throw(ValueError("x")))
""",
    "caught_generator_exit_traceback": """
def gen():
    try:
        yield 1
    except GeneratorExit as e:
        print("{0.__traceback__}".format(e))
        raise
g = gen()
next(g)
g.close()
""",
    # A generator driving itself is refused as in CPython.
    "send_into_itself": """
def gen():
    me = yield
    yield me.send(None)
g = gen()
next(g)
g.send(g)
""",
    "next_of_itself_in_loop": """
def gen(box):
    for x in box[0]:
        yield x
box = []
g = gen(box)
box.append(g)
print(list(g))
""",
}


@pytest.mark.parametrize("name", sorted(ESCAPES))
def test_generator_escape_is_stopped(name: str, tmp_path: Path) -> None:
    with no_host_effect(tmp_path) as marker:
        outcome = attempt(ESCAPES[name], marker)
    stopped(outcome, "AttributeError", "TypeError", "ValueError", "NameError")
    assert "0x" not in outcome.output


def test_reprs_have_no_addresses() -> None:
    outcome = attempt(GEN + "g = gen()\nprint(g, g.send, g.throw, g.close, (x for x in []), type(g))\n")
    assert outcome.error_line is None, outcome.error_line
    assert outcome.output == ("<generator object gen> <built-in method send of generator object> "
                              "<built-in method throw of generator object> <built-in method close of "
                              "generator object> <generator object <genexpr>> <class 'generator'>\n")


@pytest.mark.parametrize("waits", [False, True])
def test_deep_generator_recursion_is_a_recursion_error(waits: bool) -> None:
    """Generators delegating (for loops and yield from) without end stop at the depth limit."""
    body = "    sleep(0)\n" if waits else ""
    for delegate in ("    for x in down(n + 1):\n        yield x\n", "    yield from down(n + 1)\n"):
        source = "from flowmetal import sleep\ndef down(n):\n" + body + delegate + "print(list(down(0)))\n"
        outcome = attempt(source)
        assert outcome.error_line == "RecursionError: maximum recursion depth exceeded", (delegate, outcome)


def test_generator_driven_by_plain_code_cannot_wait_there() -> None:
    """A plain function (compiled to CPython code) iterating a generator whose body waits: the
    wait is refused with a RuntimeError rather than blocking the host."""
    source = WAITING_GEN + "def consume(it):\n    return [x for x in it]\nprint(consume(gen()))\n"
    outcome = attempt(source)
    assert outcome.ran
    if outcome.error_line is not None:
        assert outcome.error_line.startswith("RuntimeError: sleep() cannot wait"), outcome.error_line
    else:
        assert outcome.output == "[1]\n"


def test_generator_send_and_the_durable_send_action_coexist() -> None:
    """`send` is both a generator method and a `flowmetal` action: each name means its own thing."""
    source = """
import flowmetal
from flowmetal import send

def echo():
    got = None
    while True:
        got = yield got

def main():
    g = echo()
    next(g)
    print(g.send("to the generator"), send("program-2", "hello"), flowmetal.send("program-3", "hi"))
"""
    outcome = attempt(source, effects={"send": "delivered"})
    assert outcome.error_line is None, outcome.error_line
    assert outcome.output == "to the generator delivered delivered\n"
