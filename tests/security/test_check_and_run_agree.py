"""`flowmetal check` runs the whole compiler, so whatever `run` would refuse or choke on is
reported first, at a position, and no host traceback ever reaches the user from compiling."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

PROGRAMS = {
    "list_nested_200": ("x = " + "[" * 199 + "]" * 199 + "\nprint(len(x))\n", 0),
    "unary_chain_450": ("x = " + "-" * 450 + "1\nprint(x)\n", 0),
    "binop_chain_2000": ("x = " + "1 + " * 2000 + "1\nprint(x)\n", 2),
    "unary_chain_5000": ("x = " + "-" * 5000 + "1\n", 2),
    "nested_calls_600": ("def f(x):\n    return x\nprint(" + "f(" * 600 + "1" + ")" * 600 + ")\n", 2),
    "deep_statements": ("".join(" " * i + "if True:\n" for i in range(90)) + " " * 90 + "print('deep')\n", 0),
}


def flowmetal(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWMETAL_")}
    return subprocess.run([sys.executable, "-m", "flowmetal", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=120, check=False)


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_check_and_run_agree(name: str, tmp_path: Path) -> None:
    source, expected = PROGRAMS[name]
    path = tmp_path / f"{name}.flow"
    path.write_text(source, encoding="utf-8")
    checked = flowmetal("check", path.name, cwd=tmp_path)
    ran = flowmetal("run", path.name, "--store", f"sqlite:///{tmp_path / 'x.db'}", cwd=tmp_path)
    for r in (checked, ran):
        assert "Traceback" not in r.stderr and "Traceback" not in r.stdout, r.stderr
    assert checked.returncode == expected, checked.stderr
    if expected == 0:
        assert ran.returncode == 0, ran.stderr
    else:
        assert ran.returncode == 2
        line = checked.stderr.strip().splitlines()[0]
        assert line.startswith(f"{path.name}:") and ": error: " in line, line
        assert ran.stderr.strip().splitlines()[0] == line
