"""Arguments are checked against `main`'s signature at start, before anything is stored:
`flowmetal start`/`run` exit 2, `POST /programs` answers 422, `Client.start` raises, and a
program's `start()` of a child raises TypeError — each with CPython's own message."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from flowmetal.runtime.arguments import BadArguments
from flowmetal.runtime.driver import Runtime
from flowmetal.store import open_store
from test_api import Server

SOURCE = "def main(order, n=1, *, tag='x'):\n    return [order, n, tag]\n"
CASES = [
    ({}, "main() missing 1 required positional argument: 'order'"),
    ({"order": 1, "colour": "red"}, "main() got an unexpected keyword argument 'colour'"),
]


def cpython_message(args: dict[str, object]) -> str:
    namespace: dict[str, object] = {}
    exec(SOURCE, namespace)
    try:
        namespace["main"](**args)  # type: ignore[operator]
    except TypeError as e:
        return str(e)
    raise AssertionError("CPython accepted the arguments")


@pytest.mark.parametrize(("args", "message"), CASES)
def test_the_message_is_cpythons(args: dict[str, object], message: str) -> None:
    assert cpython_message(args) == message


def test_cli_start_and_run_refuse_with_exit_2_and_store_nothing(tmp_path: Path) -> None:
    flow = tmp_path / "order.flow"
    flow.write_text(SOURCE)
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    for command in ("start", "run"):
        for args, message in CASES:
            import json

            r = subprocess.run([sys.executable, "-m", "flowmetal", command, str(flow), "--args", json.dumps(args),
                                "--store", url], capture_output=True, text=True, timeout=60)
            assert r.returncode == 2, (command, r.stdout, r.stderr)
            assert r.stderr.strip() == f"flowmetal: error: {flow}: {message}" and "Traceback" not in r.stderr
    store = open_store(url)
    try:
        assert store.list_programs() == []
        rt = Runtime(store)
        with pytest.raises(BadArguments, match="missing 1 required positional argument: 'order'"):
            rt.start(str(flow), {}, source=SOURCE)
        assert store.list_programs() == []
        pid = rt.start(str(flow), {"order": 7, "tag": "y"}, source=SOURCE)
        assert store.get_program(pid).args == {"order": 7, "tag": "y"}
        # a program without main() takes no arguments
        with pytest.raises(BadArguments, match="has no main"):
            rt.start("top.flow", {"x": 1}, source="print(1)\n")
    finally:
        store.close()


def test_api_refuses_with_422_and_stores_nothing(tmp_path: Path) -> None:
    server = Server(tmp_path, "--no-worker")
    try:
        for args, message in CASES:
            r = server.http.post("/programs", json={"source": SOURCE, "filename": "order.flow", "args": args})
            assert r.status_code == 422, r.text
            assert r.json()["error"] == {"type": "BadArguments", "message": f"order.flow: {message}"}
        assert server.http.get("/programs").json()["programs"] == []
        assert server.http.post("/programs", json={"source": SOURCE, "args": {"order": 1}}).status_code == 201
    finally:
        server.stop()


def test_a_child_started_with_bad_arguments_raises_type_error_in_the_parent(tmp_path: Path) -> None:
    (tmp_path / "child.flow").write_text(SOURCE)
    parent = tmp_path / "parent.flow"
    parent.write_text("from flowmetal import start\n\n"
                      "def main():\n"
                      "    try:\n"
                      "        start('child.flow', n=2)\n"
                      "    except TypeError as e:\n"
                      "        return str(e)\n")
    r = subprocess.run([sys.executable, "-m", "flowmetal", "run", str(parent), "--store",
                        f"sqlite:///{tmp_path / 'p.db'}"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == '"start(): child.flow: main() missing 1 required positional argument: \'order\'"'
