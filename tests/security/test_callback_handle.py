"""`Callback.reject` and `Request.choice` / `Request.form` on the language surface: a program
can refuse the deliveries of its own callbacks and nothing else — it cannot forge a callback
(or the bound effect) for another token, nor read a callback's token, options or the
effect's bound arguments through attributes or format fields."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowmetal.errors import CheckFailed
from flowmetal.lang.program import compile_program
from flowmetal.runtime.driver import Runtime
from flowmetal.runtime.worker import Worker
from flowmetal.store import open_store

PROBES = '''from flowmetal import callback

def main():
    cb = callback(title="t", choices=["a", "b"])
    out = []
    for probe in [lambda: type(cb)("other-token", "http://x/callbacks/other-token"),
                  lambda: type(cb.reject)("callback_reject", ("other-token", {})),
                  lambda: "{0._token}".format(cb), lambda: "{0._options}".format(cb),
                  lambda: "{0.reject._bound}".format(cb), lambda: "{0.reject._effect}".format(cb),
                  lambda: cb.reject(42), lambda: cb.reject("x" * 1001), lambda: cb.reject.url]:
        try:
            out.append("allowed: " + repr(probe()))
        except Exception as e:
            out.append(type(e).__name__)
    out.append(repr(cb.reject))
    out.append(cb.reject("not yet"))  # refusing before any delivery only notes the reason
    return out
'''


def test_callbacks_cannot_be_forged_or_opened(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'sec.db'}")
    try:
        rt = Runtime(store)
        pid = rt.start("probe.flow", source=PROBES)
        Worker(rt, only=pid, notify=False).run(idle_exit=True)
        row = store.get_program(pid)
        assert row.status == "completed", row.error
        assert row.result == ["TypeError", "TypeError", "AttributeError", "AttributeError", "AttributeError",
                              "AttributeError", "TypeError", "TypeError", "AttributeError",
                              "<built-in function callback_reject>", None]
        (cb,) = [c for c in store.export_program(pid).callbacks]
        assert cb["status"] == "closed"  # (only its own link: the program has ended)
    finally:
        store.close()


@pytest.mark.parametrize("probe", ["cb._token", "cb._options", "cb.reject._bound", "cb.reject.__self__",
                                   "getattr(cb, 'reject')", "cb.__dict__"])
def test_internals_are_refused_before_the_program_runs(probe: str) -> None:
    source = f"from flowmetal import callback\n\ndef main():\n    cb = callback()\n    return {probe}\n"
    with pytest.raises(CheckFailed):
        compile_program(source, "probe.flow")
