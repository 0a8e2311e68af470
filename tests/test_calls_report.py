"""Each failed attempt of a call is kept with the function's traceback, and shown by
`flowmetal calls ID` and the API (a real `flowmetal serve` with a --functions file)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from test_api import Server

FUNCTIONS = '''import flowmetal

@flowmetal.function("billing.refund")
def refund(ctx, amount):
    if ctx.attempt < 3:
        check_amount(amount, ctx.attempt)
    return {"refunded": amount, "attempt": ctx.attempt}


def check_amount(amount, attempt):
    raise ValueError(f"gateway said no to {amount} (attempt {attempt})")
'''

PROGRAM = '''from flowmetal import call, Retry

def main():
    return call("billing.refund", 42, retry=Retry(attempts=5, initial=0.05))
'''


def test_every_failed_attempt_is_kept_with_its_traceback(tmp_path: Path) -> None:
    (tmp_path / "fns.py").write_text(FUNCTIONS)
    srv = Server(tmp_path, "--functions", str(tmp_path / "fns.py"))
    try:
        pid = srv.start(PROGRAM)["id"]
        assert srv.result(pid).json()["result"] == {"refunded": 42, "attempt": 3}
        (call,) = srv.http.get(f"/programs/{pid}/calls").json()["calls"]
        assert (call["name"], call["status"], call["attempts"]) == ("billing.refund", "done", 3)
        failed = call["failed_attempts"]
        assert [a["attempt"] for a in failed] == [1, 2]
        for n, a in enumerate(failed, start=1):
            assert a["error"]["type"] == "ValueError"
            assert a["error"]["message"] == f"gateway said no to 42 (attempt {n})"
            tb = a["error"]["traceback"]
            assert "in refund\n    check_amount(amount, ctx.attempt)" in tb and "in check_amount" in tb
            assert a["at_iso"].endswith("Z") and a["worker"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWMETAL_")}
        cmd = [sys.executable, "-m", "flowmetal", "calls", pid, "--store", srv.url_store]
        text = subprocess.run(cmd, capture_output=True, text=True, timeout=30, env=env, cwd=tmp_path)
        assert text.returncode == 0, text.stderr
        lines = text.stdout.splitlines()
        assert lines[0].startswith(f"{pid}:") and "call billing.refund  done (3 attempts)" in lines[0]
        assert "attempt 1 failed at" in lines[1] and lines[1].endswith("ValueError: gateway said no to 42 (attempt 1)")
        assert any("in check_amount" in line and line.startswith("      ") for line in lines)
        assert sum("attempt 2 failed" in line for line in lines) == 1
        as_json = subprocess.run([*cmd, "--json"], capture_output=True, text=True, timeout=30, env=env, cwd=tmp_path)
        (row,) = json.loads(as_json.stdout)
        assert [a["error"]["traceback"] for a in row["failed_attempts"]] == [a["error"]["traceback"] for a in failed]
    finally:
        srv.stop()


def test_calls_of_a_program_without_calls(tmp_path: Path) -> None:
    from flowmetal.runtime.driver import Runtime
    from flowmetal.store import open_store

    store = open_store(f"sqlite:///{tmp_path / 's.db'}")
    pid = Runtime(store).start("x.flow", source="print(1)\n")
    store.close()
    cmd = [sys.executable, "-m", "flowmetal", "calls", pid, "--store", f"sqlite:///{tmp_path / 's.db'}"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and r.stdout == "" and r.stderr == f"program {pid} made no calls\n"
    r = subprocess.run([*cmd[:4], "nope", *cmd[5:]], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "no program with id 'nope'" in r.stderr and "Traceback" not in r.stderr
