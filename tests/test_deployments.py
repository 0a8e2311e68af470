"""Deployments: programs stored under a name and started by it (CLI, HTTP API, Client and
`start()` inside programs), pinned to the version they started with; and continue_as_new,
which starts a program over under its id with an empty history. In process with a fake clock
(tests/test_runtime.py's Env), plus one pass through the real `flowmetal` command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import anyio
import httpx
import pytest

from cli_checks import one_clear_line
from flowmetal.api import create_app
from flowmetal.client import Client
from flowmetal.runtime.deployments import collect_bundle, is_deployment_name
from flowmetal.runtime.driver import Runtime
from flowmetal.runtime.programdirs import ProgramDirs
from flowmetal.store.operations import UnknownDeployment
from test_runtime import Env

MAIN = '''from flowmetal import receive, start

def main(n=1):
    go = receive()
    child = start("lib/child.flow", x=n)
    return {"main": 1, "child": child.result(), "go": go}
'''
CHILD = '''def main(x=0):
    return {"version": VERSION, "x": x}

VERSION = 1
'''


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


def deploy(env: Env, root: Path, name: str = "job", *files: str) -> int:
    main, bundle = collect_bundle([str(root / f) for f in (files or ("main.flow",))])
    dep, _ = env.store.deploy(name, main, bundle, env.clock())
    return dep.version


@pytest.fixture
def env(tmp_path: Path) -> Env:
    e = Env(tmp_path / "store", programs=ProgramDirs([tmp_path]))  # where start("x.flow") may read
    yield e
    e.store.close()


def test_names_and_paths_are_told_apart_by_their_shape() -> None:
    assert is_deployment_name("nightly") and is_deployment_name("billing.v2") and is_deployment_name("a-b_c")
    for path in ("job.flow", "lib/job", "./job", "", "-x", "a b"):
        assert not is_deployment_name(path)


def test_running_programs_stay_on_their_version(env: Env, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(src, {"main.flow": MAIN, "lib/child.flow": CHILD})
    assert deploy(env, src) == 1
    first = env.rt.start("job", {"n": 5}, program_id="first")
    assert env.drive("first").status == "waiting"
    # a new version of the child program: the running program keeps its own
    write(src, {"lib/child.flow": CHILD.replace("VERSION = 1", "VERSION = 2")})
    assert deploy(env, src) == 2
    second = env.rt.start("job", {"n": 6}, program_id="second")
    for pid in (first, second):
        env.send(pid, "go")
        assert env.drive(pid).status == "completed"
    assert env.row("first").result["child"] == {"version": 1, "x": 5}
    assert env.row("second").result["child"] == {"version": 2, "x": 6}
    assert (env.row("first").deployment, env.row("second").deployment) == ("job@1", "job@2")
    assert env.row("first.2").deployment == "job@1" and env.row("first.2").filename == "lib/child.flow"
    # the node never read the files: removing them changes nothing
    (src / "lib" / "child.flow").unlink()
    env.rt.start("job", {}, program_id="third")
    env.drive("third")
    env.send("third", "go")
    assert env.drive("third").result["child"]["version"] == 2


def test_a_deployed_program_starts_only_what_its_version_holds(env: Env, tmp_path: Path) -> None:
    src = tmp_path / "src"
    sneaky = 'from flowmetal import start\n\ndef main(path="x"):\n    return start(path).result()\n'
    write(src, {"main.flow": sneaky, "other.flow": "def main():\n    return 'read from disk'\n"})
    deploy(env, src, "sneaky")
    env.rt.start("sneaky", {"path": "other.flow"}, program_id="s")
    row = env.drive("s")
    assert row.status == "failed"
    assert "'other.flow' is not part of deployment sneaky@1" in (row.error or "")
    # it may start another deployment by name (its latest version)
    deploy(env, src, "other", "other.flow")
    env.rt.start("sneaky", {"path": "other"}, program_id="t")
    assert env.drive("t").result == "read from disk"
    assert env.row("t.1").deployment == "other@1"
    env.rt.start("sneaky", {"path": "missing"}, program_id="u")
    assert "no deployment named 'missing'" in (env.drive("u").error or "")


def test_the_api_and_the_client_start_deployments(env: Env, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(src, {"main.flow": MAIN, "lib/child.flow": CHILD})
    deploy(env, src)
    app = create_app(env.store, Runtime(env.store, clock=env.clock))

    async def requests() -> None:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as http:
            r = await http.post("/programs", json={"program": "job", "args": {"n": 2}, "id": "via-api"})
            assert r.status_code == 201, r.text
            assert (r.json()["deployment"], r.json()["file"]) == ("job@1", "main.flow")
            r = await http.post("/programs", json={"program": "nope"})
            assert (r.status_code, r.json()["error"]["type"]) == (404, "UnknownDeployment")
            r = await http.post("/programs", json={"program": "lib/child.flow"})
            assert r.status_code == 422 and "not a deployment name" in r.json()["error"]["message"]
            r = await http.post("/programs", json={"program": "job", "path": "main.flow"})
            assert r.status_code == 422
            r = await http.post("/programs", json={"program": "job", "version": 9})
            assert (r.status_code, r.json()["error"]["type"]) == (404, "UnknownDeployment")

    anyio.run(requests)
    client = Client(env.url)
    handle = client.start("job", {"n": 3}, id="via-client")
    assert env.store.get_program(handle.id).deployment == "job@1"
    with pytest.raises(UnknownDeployment):
        client.start("nope")


def test_deploy_and_start_by_name_on_the_command_line(tmp_path: Path) -> None:
    write(tmp_path, {"main.flow": MAIN, "lib/child.flow": CHILD, "bad.flow": "import os\n",
                     "lost.flow": 'from flowmetal import start\nstart("nowhere.flow")\n'})
    store = f"sqlite:///{tmp_path / 'fm.db'}"

    def fm(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "flowmetal", *args, "--store", store], capture_output=True,
                              text=True, cwd=tmp_path, timeout=60)

    r = fm("deploy", "main.flow", "--name", "job", "--retain", "30d")
    assert (r.returncode, r.stdout) == (0, "deployed job version 1 (+1 started program)\n"), r.stderr
    assert fm("deploy", "main.flow", "--name", "job").stdout == "unchanged: job version 1 (+1 started program)\n"
    listing = json.loads(fm("deployments", "--json").stdout)
    assert [(d["name"], d["version"], d["retain"], sorted(d["files"])) for d in listing] == [
        ("job", 1, 30 * 86400.0, ["lib/child.flow", "main.flow"])]
    started = fm("start", "job", "--args", '{"n": 4}')
    assert started.returncode == 0, started.stderr
    pid = started.stdout.strip()
    status = json.loads(fm("status", pid, "--json").stdout)
    assert (status["deployment"], status["args"]) == ("job@1", {"n": 4})
    assert "no deployment named 'nope'" in one_clear_line(fm("start", "nope"))
    assert "bad.flow:1:8: error" in fm("deploy", "bad.flow").stderr
    assert "does not exist" in one_clear_line(fm("deploy", "lost.flow"))
    assert "not a deployment name" in one_clear_line(fm("deploy", "main.flow", "--name", "a/b"))
    assert "is not a duration" in one_clear_line(fm("deploy", "main.flow", "--retain", "soon"))


# -- continue_as_new ---------------------------------------------------------------------------

LOOP = '''from flowmetal import continue_as_new, program_id, sleep, start

def main(round=1, total=0):
    kid = start("kid.flow", round=round)
    total = total + kid.result()
    print("round", round, "total", total)
    sleep(3600)
    if round < 4:
        continue_as_new(round=round + 1, total=total)
    return {"id": program_id(), "round": round, "total": total}
'''


def test_continue_as_new_keeps_the_id_and_starts_an_empty_history(env: Env, tmp_path: Path) -> None:
    write(tmp_path, {"loop.flow": LOOP, "kid.flow": "def main(round=0):\n    return round * 10\n"})
    pid = env.rt.start(str(tmp_path / "loop.flow"), {}, program_id="eternal")
    longest: dict[int, int] = {}  # run -> its longest history
    for _ in range(200):
        row = env.row(pid)
        longest[row.run] = max(longest.get(row.run, 0), row.last_seq)
        if row.status == "completed":
            break
        if not env.worker.step():
            env.clock.t = max(env.clock.t, env.store.next_wake() or env.clock.t)
    # each run's history starts empty: it never holds the earlier runs' events
    assert sorted(longest) == [1, 2, 3, 4]
    assert longest[1] == longest[2] == longest[3] < longest[4], longest  # the last one also completes
    row = env.drive(pid)
    assert row.status == "completed"
    assert row.result == {"id": "eternal", "round": 4, "total": 100}
    assert row.run == 4 and row.args == {"round": 4, "total": 60}
    events = env.events(pid)
    assert events[0].type == "started" and events[0].data["run"] == 4 and events[0].data["args"] == row.args
    # one run's history only: its own output, its own child, nothing of the earlier runs
    assert env.output(pid) == "round 4 total 100\n"
    assert len(events) == row.last_seq < 30
    kids = sorted(r.id for r in env.store.list_programs() if r.parent_id == "eternal")
    assert kids == ["eternal.1", "eternal.1.r2", "eternal.1.r3", "eternal.1.r4"]
    assert [env.row(k).args["round"] for k in kids] == [1, 2, 3, 4]


def test_continue_as_new_refuses_positional_and_non_json_arguments(env: Env, tmp_path: Path) -> None:
    write(tmp_path, {"a.flow": "from flowmetal import continue_as_new\ncontinue_as_new(1)\n",
                     "b.flow": "from flowmetal import continue_as_new\ncontinue_as_new(x={1, 2})\n"})
    env.rt.start(str(tmp_path / "a.flow"), {}, program_id="a")
    assert "keywords only" in (env.drive("a").error or "")
    env.rt.start(str(tmp_path / "b.flow"), {}, program_id="b")
    assert "JSON-representable" in (env.drive("b").error or "")
    assert env.row("a").run == env.row("b").run == 1


def test_continue_as_new_shows_programs_nothing_of_the_host(env: Env, tmp_path: Path) -> None:
    from flowmetal.errors import CheckFailed

    for probe in ("continue_as_new._fm_name", "continue_as_new.__self__", "continue_as_new.__class__.__mro__"):
        (tmp_path / "probe.flow").write_text(f"from flowmetal import continue_as_new\nx = {probe}\n")
        with pytest.raises(CheckFailed):
            env.rt.start(str(tmp_path / "probe.flow"), {})
    # what a program can learn of it: its type's name and that it is callable
    (tmp_path / "look.flow").write_text("from flowmetal import continue_as_new\n"
                                        "def main():\n    return [type(continue_as_new).__name__, "
                                        "repr(continue_as_new)]\n")
    env.rt.start(str(tmp_path / "look.flow"), {}, program_id="look")
    kind, shown = env.drive("look").result
    assert "0x" not in shown and "flowmetal.runtime" not in shown and "EffectFunction" not in kind + shown


def test_an_exported_program_keeps_its_deployment_retention_and_run(env: Env, tmp_path: Path) -> None:
    import json as _json

    from flowmetal.store import open_store
    from flowmetal.store.fmx import dump_fmx, load_fmx

    src = tmp_path / "src"
    write(src, {"main.flow": MAIN, "lib/child.flow": CHILD})
    main, bundle = collect_bundle([str(src / "main.flow")])
    env.store.deploy("job", main, bundle, env.clock(), retain=3600.0, set_retain=True)
    env.rt.start("job", {"n": 1}, program_id="moving")
    env.drive("moving")
    data = dump_fmx(env.store.export_program("moving"), detached=False, origin=env.url)
    dump, _ = load_fmx(data)
    assert (dump.row.deployment, dump.row.retain, dump.row.run) == ("job@1", 3600.0, 1)
    other = open_store(f"sqlite:///{tmp_path / 'other.db'}")
    try:
        other.import_program(dump, env.clock())
        row = other.get_program("moving")
        assert (row.deployment, row.retain, row.run) == ("job@1", 3600.0, 1)
    finally:
        other.close()
    # a file written before deployments existed: no deployment, no retention, the first run
    doc = _json.loads(data)
    for name in ("deployment", "retain", "run"):
        del doc["program"][name]
    old, _ = load_fmx(_json.dumps(doc).encode())
    assert (old.row.deployment, old.row.retain, old.row.run) == (None, None, 1)
