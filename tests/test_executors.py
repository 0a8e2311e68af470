"""Programs cannot hurt the node: slices run in supervised executor processes.

Real processes throughout: executors are started, killed at their budget,
replaced after running out of memory; workers and nodes are started as the
`flowmetal` command, stopped with SIGTERM or killed with SIGKILL. No
assertion is about speed: each bound below (a few seconds) is far from both
the behaviour asked for and the one it replaces (a spin of a minute or more).
"""

from __future__ import annotations

import ctypes.util
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cli_checks import kill_all, wait_for
from flowmetal.runtime.driver import Runtime
from flowmetal.runtime.executors import ExecutorSettings, run_host_code
from flowmetal.runtime.programdirs import ProgramDirs
from flowmetal.runtime.worker import Worker
from flowmetal.store import open_store
from flowmetal.store.base import FINISHED, Store

VICTIM = """from flowmetal import sleep

def main():
    total = 0
    for i in range(5):
        sleep(0.01)
        total += i
    return total
"""

# each program ends with its own clear error (a loop may run out of fuel before the budget)
BAD = {
    "native_loop": ("def main():\n    n = 0\n    while True:\n        n += 1\n", r"SliceTimeout|FuelExhausted"),
    "comprehension": ("def main():\n    return sum(1 for _ in range(10**15))\n", r"SliceTimeout|FuelExhausted"),
    "regex": ("import re\n\ndef main():\n    return re.match('(a+)+$', 'a' * 40 + 'b') is None\n",
              r"SliceTimeout"),
    "power": ("def main():\n    x = 10 ** 10 ** 8\n    return 1\n", r"SliceTimeout|MemoryLimitExceeded"),
    "memory_hog": ("def main():\n    x = []\n    while True:\n        x.append(list(range(100000)))\n",
                   r"^MemoryLimitExceeded"),
    "output_flood": ("def main():\n    while True:\n        print('x' * 1000)\n", r"^OutputLimitExceeded"),
    # text no store can hold: said so (the executor used to die over it twice: ExecutorCrashed)
    "lone_surrogate": ("def main():\n    print('a \\ud800 b')\n    raise ValueError('\\udc00')\n",
                       r"^UnicodeEncodeError: the program recorded text that cannot be stored"),
}
SETTINGS = ExecutorSettings(processes=2, slice_timeout=1.0, memory_limit=256 << 20)


def _runtime(tmp_path: Path, settings: ExecutorSettings = SETTINGS) -> Runtime:
    store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    return Runtime(store, reuse_machines=True, executors=settings, programs=ProgramDirs([tmp_path]))


def _start(rt: Runtime, tmp_path: Path, name: str, source: str, **args: object) -> str:
    path = tmp_path / f"{name}.flow"
    path.write_text(source)
    return rt.start(str(path), dict(args), program_id=name)


def _run_until_finished(rt: Runtime, ids: list[str], limit: float = 60.0) -> Worker:
    worker = Worker(rt, notify=False)
    timer = threading.Timer(limit, worker.stop)  # a safety net, not an assertion
    timer.start()
    try:
        worker.run(until=lambda: all(rt.store.get_program(i).status in FINISHED for i in ids))
    finally:
        timer.cancel()
    return worker


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_program_fails_with_its_error_and_spares_the_others(tmp_path: Path, case: str) -> None:
    rt = _runtime(tmp_path)
    source, expected = BAD[case]
    bad = _start(rt, tmp_path, "bad", source)
    victims = [_start(rt, tmp_path, f"victim{i}", VICTIM) for i in range(3)]
    worker = _run_until_finished(rt, [bad, *victims])
    store = rt.store
    row = store.get_program(bad)
    assert row.status == "failed" and row.error is not None and re.search(expected, row.error), row.error
    assert "Traceback" not in row.error
    kinds = [e.type for e in store.events(bad)]
    assert kinds[0] == "started" and kinds[-1] == "failed" and kinds.count("failed") == 1
    if "SliceTimeout" in row.error:
        assert kinds == ["started", "failed"]  # nothing of the killed slice is kept
        assert "computed for 1.0 s without waiting" in row.error
        # inspecting it replays up to its last wait, not into the computation that was stopped
        assert Runtime(store).load(row)[1] == row.last_seq
    for v in victims:
        vrow = store.get_program(v)
        assert vrow.status == "completed" and vrow.result == 10
        if "SliceTimeout" in row.error:
            assert vrow.updated_at < row.updated_at  # finished while the bad one computed
    assert worker.stats.errors == []
    rt.close()


def test_the_budget_is_cpu_time_and_a_fresh_executor_takes_the_slot(tmp_path: Path) -> None:
    rt = _runtime(tmp_path, ExecutorSettings(processes=1, slice_timeout=1.0, memory_limit=256 << 20))
    bad = _start(rt, tmp_path, "bad", BAD["regex"][0])
    after = _start(rt, tmp_path, "after", VICTIM)
    _run_until_finished(rt, [bad, after])
    assert rt.store.get_program(bad).status == "failed"
    assert rt.store.get_program(after).status == "completed"  # the one slot got a new executor
    rt.close()


def test_a_program_that_never_waits_is_cancelled_within_the_budget(tmp_path: Path) -> None:
    rt = _runtime(tmp_path, ExecutorSettings(processes=1, slice_timeout=60.0))
    spinner = _start(rt, tmp_path, "spinner", BAD["regex"][0])  # no fuel limit stops a regex
    worker = Worker(rt, notify=False)
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        wait_for(lambda: rt.store.get_program(spinner).lease_owner is not None)
        rt.store.request_cancel(spinner, time.time())
        wait_for(lambda: rt.store.get_program(spinner).status in FINISHED, timeout=15)
    finally:
        worker.stop()
        thread.join(15)
    row = rt.store.get_program(spinner)
    assert row.status == "cancelled" and "cancelled while it computed" in (row.error or "")
    assert not thread.is_alive()


@pytest.mark.parametrize("path", ["/etc/hostname", "../secret.flow", "secret.json", "sub/../../secret.flow"])
def test_start_reads_programs_only_inside_the_program_directories(tmp_path: Path, path: str) -> None:
    home = tmp_path / "programs"
    home.mkdir()
    (tmp_path / "secret.flow").write_text("token = 'sk-live-123'\n")
    (home / "secret.json").write_text('{"token": "sk-live-456"}')
    rt = _runtime(home)
    parent = _start(rt, home, "parent", "from flowmetal import start\n\ndef main(path):\n"
                                        "    try:\n        start(path)\n    except ValueError as e:\n"
                                        "        return str(e)\n    return 'started'\n", path=path)
    _run_until_finished(rt, [parent])
    row = rt.store.get_program(parent)
    assert row.status == "completed" and row.result.startswith("start(): ")
    hostname = Path("/etc/hostname").read_text().strip() if Path("/etc/hostname").exists() else "sk-live"
    assert "sk-live" not in row.result and (not hostname or hostname not in row.result.replace(path, ""))
    assert [r.id for r in rt.store.list_programs()] == [parent]
    rt.close()


def test_a_child_next_to_its_parent_starts(tmp_path: Path) -> None:
    rt = _runtime(tmp_path)
    (tmp_path / "child.flow").write_text("def main(n):\n    return n * 2\n")
    parent = _start(rt, tmp_path, "parent", "from flowmetal import start\n\ndef main():\n"
                                            "    return start('child.flow', n=21).result()\n")
    _run_until_finished(rt, [parent])
    assert rt.store.get_program(parent).result == 42
    rt.close()


_HOST_CODE = """
import os, socket
out = {}
def attempt(name, fn):
    try:
        fn()
        out[name] = "allowed"
    except BaseException as e:
        out[name] = type(e).__name__
attempt("open", lambda: open("/etc/hostname").read())
attempt("create", lambda: open("/tmp/flowmetal-executor-test", "w"))
attempt("listdir", lambda: os.listdir("/"))
attempt("socket", lambda: socket.socket())
attempt("fork", lambda: os.fork())
attempt("exec", lambda: os.execv(os.sys.executable, ["python"]))
attempt("spawn", lambda: os.posix_spawn(os.sys.executable, ["python"], {}))
attempt("signal the worker", lambda: os.kill(os.getppid(), 0))
result = out
"""


@pytest.mark.skipif(not sys.platform.startswith("linux") or not ctypes.util.find_library("seccomp"),
                    reason="the OS hardening is Linux's, with libseccomp")
def test_host_code_in_an_executor_can_open_nothing_connect_nowhere_and_start_nothing(tmp_path: Path) -> None:
    rt = _runtime(tmp_path)
    out = run_host_code(rt, _HOST_CODE)
    assert out == {name: "PermissionError" for name in ("open", "create", "listdir", "socket", "fork", "exec",
                                                        "spawn", "signal the worker")}
    assert not Path("/tmp/flowmetal-executor-test").exists()
    # without the test hook, the same request is refused
    assert run_host_code(rt, "result = 1", ExecutorSettings(test_hook=False)) == "refused: no test hook"
    rt.close()


def test_the_pool_reports_its_hardening(tmp_path: Path) -> None:
    rt = _runtime(tmp_path)
    pid = _start(rt, tmp_path, "victim", VICTIM)
    worker = _run_until_finished(rt, [pid])
    layers = worker.slices.layers  # type: ignore[union-attr]
    assert layers is not None and layers["memory"] == "on" and layers["fds"] == "on"
    if sys.platform.startswith("linux"):
        assert layers["no_new_privs"] == "on"
        if ctypes.util.find_library("seccomp"):  # the system's libseccomp (Debian: libseccomp2)
            assert layers["seccomp"] == "on", layers
        if os.geteuid() == 0:
            assert layers["user"].startswith("on (uid ")
    rt.close()


# -- whole workers and nodes, as the `flowmetal` command -------------------------------------

def _flowmetal(*args: str, cwd: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWMETAL_")}
    return subprocess.Popen([sys.executable, "-m", "flowmetal", *args], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _children(pid: int) -> list[int]:
    """The processes `pid` started, from any of its threads."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found += [int(x) for x in (task / "children").read_text().split()]
        except OSError:
            pass
    return found


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    kill_all(started)


def _store(tmp_path: Path) -> tuple[str, Store]:
    url = f"sqlite:///{tmp_path / 'node.db'}"
    return url, open_store(url)


def test_sigterm_stops_a_worker_while_a_slice_spins(tmp_path: Path, procs: list[subprocess.Popen[str]]) -> None:
    url, store = _store(tmp_path)
    rt = Runtime(store)
    spinner = _start(rt, tmp_path, "spinner", BAD["regex"][0])  # no fuel limit stops a regex
    worker = _flowmetal("worker", "--store", url, "--slice-timeout", "120", "--no-http", cwd=tmp_path)
    procs.append(worker)
    wait_for(lambda: store.get_program(spinner).lease_owner is not None)
    time.sleep(0.3)  # well into the spin
    worker.send_signal(signal.SIGTERM)
    worker.wait(timeout=10)  # not the 120 s the slice could still compute
    assert worker.returncode == 0, worker.stderr.read() if worker.stderr else ""
    row = store.get_program(spinner)
    assert row.last_seq == 1 and row.lease_owner is None  # nothing kept, released for the next worker


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads process trees from /proc")
def test_two_workers_with_a_spinner_do_not_hang_each_other_after_kill_9(
        tmp_path: Path, procs: list[subprocess.Popen[str]]) -> None:
    url, store = _store(tmp_path)
    rt = Runtime(store)
    slow_victim = VICTIM.replace("sleep(0.01)", "sleep(0.2)")
    spinner = _start(rt, tmp_path, "spinner", BAD["regex"][0])
    victims = [_start(rt, tmp_path, f"victim{i}", slow_victim) for i in range(10)]
    first = _flowmetal("worker", "--store", url, "--slice-timeout", "2", "--no-http", cwd=tmp_path)
    procs.append(first)
    wait_for(lambda: store.get_program(spinner).lease_owner is not None
             and any(store.get_program(v).last_seq > 2 for v in victims))
    executors = _children(first.pid)
    assert executors
    first.kill()
    first.wait()
    wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in executors))  # they die with it
    second = _flowmetal("worker", "--store", url, "--slice-timeout", "2", "--no-http", cwd=tmp_path)
    procs.append(second)
    wait_for(lambda: all(store.get_program(i).status in FINISHED for i in [spinner, *victims]), timeout=60)
    second.send_signal(signal.SIGTERM)
    second.wait(timeout=10)
    assert store.get_program(spinner).status == "failed"
    assert "SliceTimeout" in (store.get_program(spinner).error or "")
    assert all(store.get_program(v).result == 10 for v in victims)


def test_a_node_answers_health_and_cancel_while_a_program_spins(tmp_path: Path,
                                                                procs: list[subprocess.Popen[str]]) -> None:
    url, _ = _store(tmp_path)
    node = _flowmetal("serve", "--store", url, "--port", "0", "--slice-timeout", "60", cwd=tmp_path)
    procs.append(node)
    assert node.stdout is not None
    line = node.stdout.readline()
    base = line.split()[3]
    http = httpx.Client(base_url=base, timeout=5)
    wait_for(lambda: _healthy(http))
    started = http.post("/programs", json={"source": BAD["regex"][0], "filename": "regex.flow"})
    assert started.status_code == 201
    pid = started.json()["id"]
    wait_for(lambda: http.get(f"/programs/{pid}").json()["status"] == "running")
    for _ in range(10):  # the regex holds no lock of the node's: each answer comes at once
        assert http.get("/health").status_code == 200
        time.sleep(0.1)
    state = http.get(f"/programs/{pid}/state")  # replayed in an executor of its own
    assert state.status_code == 200 and state.json()["seq"] == 1
    assert http.post(f"/programs/{pid}/cancel").status_code == 202
    wait_for(lambda: http.get(f"/programs/{pid}").json()["status"] == "cancelled", timeout=15)
    again = http.post("/programs", json={"source": BAD["regex"][0], "filename": "spin.flow"}).json()["id"]
    wait_for(lambda: http.get(f"/programs/{again}").json()["status"] == "running")
    time.sleep(0.3)
    node.send_signal(signal.SIGTERM)
    node.wait(timeout=10)
    assert node.returncode == 0
    http.close()


def _healthy(http: httpx.Client) -> bool:
    try:
        return http.get("/health").status_code == 200
    except httpx.TransportError:
        return False


CHAIN = """def main():
    e = None
    for i in range(3000):
        try:
            raise ValueError(i) from e
        except ValueError as x:
            e = x
    raise e
"""


@pytest.mark.parametrize("in_executor", [True, False])
def test_a_failure_of_flowmetal_itself_fails_the_program_durably(tmp_path: Path, in_executor: bool) -> None:
    """A 3,000-long exception chain (or whatever else breaks our own code while a slice runs)
    ends the program with an error that says so, instead of leaving it `running`."""
    store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    rt = Runtime(store, executors=SETTINGS if in_executor else None, programs=ProgramDirs([tmp_path]))
    pid = _start(rt, tmp_path, "chain", CHAIN)
    victim = _start(rt, tmp_path, "victim", VICTIM)
    worker = _run_until_finished(rt, [pid, victim])
    row = store.get_program(pid)
    assert row.status == "failed" and row.error is not None
    assert row.error.startswith(("InternalError: ", "ValueError: 2999")), row.error
    assert store.get_program(victim).result == 10
    assert worker.stats.errors == []
    rt.close()


STEADY = """from flowmetal import call

def main(n=40):
    total = 0
    for i in range(n):
        total += call("step", i)
    return total
"""

TURNING_BAD = """import re
from flowmetal import call

def main(how="spin"):
    for i in range(5):
        call("step", i)  # quick slices first: batched with the others
    if how == "spin":
        return re.match('(a+)+$', 'a' * 40 + 'b') is None
    x = []
    while True:
        x.append(list(range(100000)))
"""


def test_a_slice_that_breaks_its_executor_in_a_batch_spares_the_rest_of_the_batch(tmp_path: Path) -> None:
    # one executor, many programs whose calls finish together: their slices go to it in batches
    # (runtime/executors.py: BATCH); one slice of a batch computes past its budget, another runs
    # out of memory, and the slices queued behind them in the batch run in the fresh executor
    from flowmetal.connectors.functions import FunctionWorker
    from flowmetal.runtime import executors

    rt = _runtime(tmp_path, ExecutorSettings(processes=1, slice_timeout=1.0, memory_limit=256 << 20))
    functions = FunctionWorker(rt.store)
    functions.function("step")(lambda ctx, i: i)
    batches: list[int] = []
    real_batch = executors._Slot._batch

    def batch(slot: executors._Slot, jobs: list[executors.Job]) -> None:
        batches.append(len(jobs))
        real_batch(slot, jobs)

    executors._Slot._batch = batch  # type: ignore[method-assign]
    try:
        # (started first, so their slices come early in their batches, with others behind them)
        spin = _start(rt, tmp_path, "spin", TURNING_BAD, how="spin")
        hog = _start(rt, tmp_path, "hog", TURNING_BAD, how="hog")
        steady = [_start(rt, tmp_path, f"steady{i}", STEADY) for i in range(12)]
        ids = [spin, hog, *steady]
        worker = Worker(rt, notify=False, functions=functions)
        timer = threading.Timer(120, worker.stop)  # a safety net, not an assertion
        timer.start()
        try:
            worker.run(until=lambda: all(rt.store.get_program(i).status in FINISHED for i in ids))
        finally:
            timer.cancel()
    finally:
        executors._Slot._batch = real_batch  # type: ignore[method-assign]
    store = rt.store
    assert batches and max(batches) > 1, "no batch was sent"
    assert store.get_program(spin).status == "failed"
    assert (store.get_program(spin).error or "").startswith("SliceTimeout"), store.get_program(spin).error
    assert (store.get_program(hog).error or "").startswith("MemoryLimitExceeded"), store.get_program(hog).error
    for pid in steady:
        row = store.get_program(pid)
        assert (row.status, row.result) == ("completed", sum(range(40))), (pid, row.status, row.error)
        assert [c.attempt for c in store.list_calls(pid)] == [1] * 40  # each call once
    assert worker.stats.errors == []
    rt.close()
