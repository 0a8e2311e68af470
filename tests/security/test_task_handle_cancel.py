"""`Task.cancel` on the language surface: a program can cancel the tasks it spawned and
nothing else. It cannot forge a task handle (to cancel main or a task it was not given),
reach the op's internals through attributes, format fields or its type, or call it with
arguments."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowmetal.errors import CheckFailed
from flowmetal.runtime.driver import Runtime
from flowmetal.runtime.worker import Worker
from flowmetal.store import open_store

PROBES = '''from flowmetal import spawn, sleep

def nap():
    sleep(10)

def main():
    t = spawn(nap)
    out = []
    for probe in [lambda: type(t)(1), lambda: t.cancel(1), lambda: t.cancel(task=1),
                  lambda: "{0._task_id}".format(t), lambda: "{0.cancel._bound}".format(t),
                  lambda: "{0.cancel._fn}".format(t), lambda: type(t.cancel)(), lambda: t.cancel.result,
                  lambda: format(t, "_task_id")]:
        try:
            out.append("allowed: " + repr(probe()))
        except Exception as e:
            out.append(type(e).__name__)
    out.append(repr(t.cancel))
    out.append(t.cancel())
    return out
'''


def run(tmp_path: Path, source: str) -> object:
    store = open_store(f"sqlite:///{tmp_path / 'sec.db'}")
    try:
        rt = Runtime(store)
        pid = rt.start("probe.flow", source=source)
        Worker(rt, only=pid, notify=False).run(idle_exit=True)
        row = store.get_program(pid)
        assert row.status == "completed", row.error
        return row.result
    finally:
        store.close()


def test_a_task_handle_cannot_be_forged_or_opened(tmp_path: Path) -> None:
    out = run(tmp_path, PROBES)
    assert out == ["TypeError", "TypeError", "TypeError", "AttributeError", "AttributeError", "AttributeError",
                   "TypeError", "AttributeError", "TypeError", "<built-in function cancel>", True]


@pytest.mark.parametrize("probe", [
    "t.cancel.__self__", "t._task_id", "t.cancel._bound", "getattr(t, 'cancel')", "vars(t)", "t.__dict__",
    "t.cancel.__func__",
])
def test_internals_are_refused_before_the_program_runs(probe: str) -> None:
    from flowmetal.lang.program import compile_program

    source = f"from flowmetal import spawn\n\ndef main():\n    t = spawn(print)\n    return {probe}\n"
    with pytest.raises(CheckFailed):
        compile_program(source, "probe.flow")
