"""The program's own classes beyond what the corpus compares with CPython: which functions the
wait analysis keeps plain, methods that wait where they cannot, and snapshots of classes and
instances (identity kept, forged ones refused)."""

from __future__ import annotations

import pytest

from flowmetal.errors import SnapshotError
from flowmetal.machine.api import (
    Blocked,
    Completed,
    EffectFunction,
    Machine,
    compile_program,
    run_program,
)
from flowmetal.machine.codec import OBJECT

HOST = {"probe": EffectFunction("probe"), "sleep": EffectFunction("sleep")}

SHAPES = """
from flowmetal import probe


class Shape:
    def __init__(self, name):
        self.name = name

    def area(self):
        return 0

    def describe(self):
        return f"{self.name}: {self.area()}"


class Square(Shape):
    def __init__(self, side):
        super().__init__("square")
        self.side = side

    def area(self):
        return self.side * self.side


class Store:
    def __init__(self):
        self.items = {}

    def get(self, key):
        return probe(self.items.get(key))


def plain_work():
    return [Square(i).describe() for i in range(3)]


def waits_through_get(store):
    return store.get("k")
"""


def _resumable(source: str) -> set[str]:
    program = compile_program(source, "t.flow")
    return {u.qualname for u in program.units.values()}


def test_calls_of_plain_classes_and_methods_stay_plain() -> None:
    units = _resumable(SHAPES)
    assert "plain_work" not in units and "Square.__init__" not in units and "Shape.describe" not in units
    # a method that waits makes its callers resumable, even under a built-in method's name
    assert {"Store.get", "waits_through_get"} <= units


def test_a_stored_callable_makes_calls_of_its_name_unknown() -> None:
    source = SHAPES + "\nclass Holder:\n    def __init__(self, f):\n        self.describe = f\n"
    assert "plain_work" in _resumable(source)


def test_a_property_or_dunder_that_waits_raises() -> None:
    res = run_program(compile_program("""
from flowmetal import sleep

class A:
    @property
    def slow(self):
        sleep(1)
        return 1

    def __len__(self):
        sleep(1)
        return 3

try:
    print(A().slow)
except RuntimeError as e:
    print("RuntimeError:", e)
len(A())
""", "t.flow"), host_module=HOST, handle_effect=lambda req: None)
    assert res.output.startswith("RuntimeError: sleep() cannot wait inside a callback")
    assert res.error_line is not None and res.error_line.startswith("RuntimeError: sleep() cannot wait")


WAITING = """
from flowmetal import probe


class Counter:
    created = []

    def __init__(self, start):
        self.n = probe(start)
        self.me = self
        Counter.created.append(self)

    def bump(self):
        self.n += probe(1)
        return self


def main():
    c = Counter(5).bump()
    return c.n, type(c) is Counter, c.me is c, Counter.created[0] is c, isinstance(c, Counter)
"""


def test_classes_and_instances_keep_their_identity_across_restores() -> None:
    program = compile_program(WAITING, "w.flow")
    machine = Machine(program, host_module=HOST)
    outcome = machine.run()
    while isinstance(outcome, Blocked):
        data = machine.snapshot()
        machine = Machine.restore(data, host_module=HOST, program=program)
        for req in list(machine.pending.values()):
            machine.resolve(req.id, req.args[0])
        outcome = machine.run()
    assert isinstance(outcome, Completed)
    assert outcome.value == (6, True, True, True, True)


def test_a_forged_class_record_is_refused() -> None:
    program = compile_program(WAITING, "w.flow")
    machine = Machine(program, host_module=HOST)
    assert isinstance(machine.run(), Blocked)
    data = machine.snapshot()
    codec = machine.codec
    body = codec._dec.decode(data[8:])
    records = body[0]
    classes = [r for r in records if r[0] == OBJECT and r[1] == "fm.class"]
    assert classes
    # point the class's bases at the host's `type` (a registered constant) instead of FlowObject
    bases = next(r for r in records if r[0] == 1 and records.index(r) == classes[0][3][2])
    type_const = len(records)
    records.append([9, "main:type"])
    bases[1] = [type_const]
    bases[2] = [0]
    forged = data[:8] + codec._enc.encode(body)
    with pytest.raises(SnapshotError):
        Machine.restore(forged, host_module=HOST, program=program)
