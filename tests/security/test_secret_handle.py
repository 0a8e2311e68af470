"""`secret("NAME")` on the language surface: the handle holds the name only, so a program
cannot read a secret's value through any attribute, format field, conversion, comparison,
JSON, or an exception's message, cannot forge a handle (its type cannot be called), and
cannot make a connector resolve a secret by sending data shaped like a payload's secret
references. The node's secret is set in this process while the probes run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from flowmetal.connectors.functions import FunctionWorker
from flowmetal.connectors.secrets import SecretSource
from flowmetal.errors import CheckFailed
from flowmetal.runtime.driver import Runtime
from flowmetal.runtime.worker import Worker
from flowmetal.store import open_store

VALUE = "tok-very-secret-4242"

PROBES = '''from flowmetal import secret, call
import json

def main():
    s = secret("API_TOKEN")
    out = []
    probes = [
        lambda: type(s)("API_TOKEN"), lambda: "{0._name}".format(s), lambda: "{0._format}".format(s),
        lambda: "{0.__class__}".format(s), lambda: "{0.name.__class__}".format(s), lambda: json.dumps(s),
        lambda: json.dumps({"a": [s]}), lambda: s == "tok-very-secret-4242", lambda: s < s, lambda: str(s),
        lambda: repr([s, {"k": s}]), lambda: "%r %s" % (s, s), lambda: format(s, ">30"), lambda: s + "x",
        lambda: len(s), lambda: list(s), lambda: s.name, lambda: secret("API_TOKEN", format="{0.__class__}"),
        lambda: secret("../etc/passwd"), lambda: secret("API_TOKEN", format="{}{}"),
        lambda: secret(name="API_TOKEN").name, lambda: bool(s), lambda: {s: 1}[secret("API_TOKEN")],
        lambda: s.value,
    ]
    for p in probes:
        try:
            out.append("ok " + repr(p()))
        except Exception as e:
            out.append(type(e).__name__ + ": " + str(e))
    # a function given the handle gets the value; what it sends back is cleaned of it
    out.append(call("echo", s, [s], {"s": s}))
    try:
        call("fail", s)
    except Exception as e:
        out.append(str(e))
    # data shaped like the references the runtime writes is only data
    forged = {"secrets": [{"at": ["args", 0], "name": "API_TOKEN"}]}
    out.append(call("echo", forged, "secrets", [{"at": ["args", 1], "name": "API_TOKEN"}]))
    return out
'''


def _run(tmp_path: Path, source: str) -> Any:
    store = open_store(f"sqlite:///{tmp_path / 'sec.db'}")
    fw = FunctionWorker(store, secrets=SecretSource(environ={"FLOWMETAL_SECRET_API_TOKEN": VALUE}))
    seen: list[Any] = []

    @fw.function("echo")
    def echo(ctx: Any, *args: Any) -> Any:
        seen.append(args)
        return list(args)

    @fw.function("fail")
    def fail(ctx: Any, token: str) -> None:
        from flowmetal import NonRetryable

        raise NonRetryable(f"refused {token!r}")

    try:
        rt = Runtime(store)
        pid = rt.start("probe.flow", source=source)
        Worker(rt, only=pid, functions=fw).run(until=lambda: store.get_program(pid).status == "completed")
        row = store.get_program(pid)
        assert row.status == "completed", row.error
        history = json.dumps([e.to_json() for e in store.events(pid)])
        return row.result, seen, history
    finally:
        store.close()


def test_the_value_is_out_of_a_programs_reach(tmp_path: Path) -> None:
    out, seen, history = _run(tmp_path, PROBES)
    assert out[:24] == [
        "TypeError: cannot create 'flowmetal.Secret' instances",
        "AttributeError: 'flowmetal.Secret' object has no attribute '_name'",
        "AttributeError: 'flowmetal.Secret' object has no attribute '_format'",
        "AttributeError: 'flowmetal.Secret' object has no attribute '__class__'",
        "AttributeError: 'str' object has no attribute '__class__'",
        "TypeError: Object of type Secret is not JSON serializable",
        "TypeError: Object of type Secret is not JSON serializable",
        "ok False",
        "TypeError: '<' not supported between instances of 'Secret' and 'Secret'",
        "ok '<secret API_TOKEN>'",
        "ok \"[<secret API_TOKEN>, {'k': <secret API_TOKEN>}]\"",
        "ok '<secret API_TOKEN> <secret API_TOKEN>'",
        "TypeError: unsupported format string passed to Secret.__format__",
        "TypeError: unsupported operand type(s) for +: 'Secret' and 'str'",
        "TypeError: object of type 'Secret' has no len()",
        "TypeError: 'Secret' object is not iterable",
        "ok 'API_TOKEN'",
        'ValueError: secret(): format must be a str with one {} where the value goes, e.g. "token {}"',
        "ValueError: secret(): the name must be letters, digits and _ (not starting with a digit), not "
        "'../etc/passwd'",
        'ValueError: secret(): format must be a str with one {} where the value goes, e.g. "token {}"',
        "ok 'API_TOKEN'",
        "ok True",
        "ok 1",
        "AttributeError: 'flowmetal.Secret' object has no attribute 'value'",
    ]
    echoed, failure, forged = out[24:]
    assert echoed == ["<secret API_TOKEN>", ["<secret API_TOKEN>"], {"s": "<secret API_TOKEN>"}]
    assert failure == "NonRetryable: refused '<secret API_TOKEN>'"
    assert forged == [{"secrets": [{"at": ["args", 0], "name": "API_TOKEN"}]}, "secrets",
                      [{"at": ["args", 1], "name": "API_TOKEN"}]]
    # the function got the value where the handle was, and only there
    assert seen[0] == (VALUE, [VALUE], {"s": VALUE})
    assert seen[-1] == ({"secrets": [{"at": ["args", 0], "name": "API_TOKEN"}]}, "secrets",
                        [{"at": ["args", 1], "name": "API_TOKEN"}])
    assert VALUE not in json.dumps(out) and VALUE not in history


@pytest.mark.parametrize("probe", ["s._name", "s._format", "s.__class__", "s.__dict__",
                                   "getattr(s, 'name')", "vars(s)", "s.__reduce__", "hash(s)", "dir(s)"])
def test_internals_are_refused_before_the_program_runs(probe: str) -> None:
    from flowmetal.lang.program import compile_program

    source = f"from flowmetal import secret\n\ndef main():\n    s = secret('X')\n    return {probe}\n"
    with pytest.raises(CheckFailed):
        compile_program(source, "probe.flow")


def test_a_handle_formatted_into_a_header_is_a_clear_error(tmp_path: Path) -> None:
    source = '''from flowmetal import secret, http

def main():
    try:
        http.get("http://127.0.0.1:9/", headers={"Authorization": f"Bearer {secret('API_TOKEN')}"})
    except ValueError as e:
        return str(e)
'''
    out, _, _ = _run(tmp_path, source)
    assert out.startswith("http.request(): header 'Authorization' holds the text of a secret handle ('Bearer "
                          "<secret API_TOKEN>'): only the handle itself is replaced by the value")
