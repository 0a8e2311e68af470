"""The `flowmetal check` and `flowmetal run` commands: exit codes, where output
goes, error formats. Most tests use click's CliRunner (fast, in process); a few
run the real `flowmetal` executable and `python -m flowmetal`."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from flowmetal.cli import main as cli_main

VENV_BIN = Path(sys.executable).parent
FLOWMETAL_EXE = VENV_BIN / "flowmetal"
DIAG = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+):(?P<col>\d+): (?P<sev>error|warning): .+$")

VALID = """\
def main(n=2, who="world"):
    for i in range(n):
        print("hello", who, i)
    return {"n": n, "squares": [i * i for i in range(n)]}
"""

NO_RESULT = """\
def main():
    print("just output")
"""

FAILING = """\
def lookup(d, key):
    return d[key]


def main():
    print("before the error")
    lookup({"a": 1}, "b")
"""

INVALID = """\
import os


async def thing():
    pass


def main():
    print(eval("1 + 1"))
    return open("x")
"""


@pytest.fixture
def files(tmp_path: Path) -> Path:
    for name, text in {"valid.flow": VALID, "no_result.flow": NO_RESULT, "failing.flow": FAILING,
                       "invalid.flow": INVALID}.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    return tmp_path


@pytest.fixture
def cli(files: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Invoke the CLI in process, in the files' directory, with a store in tmp_path."""
    monkeypatch.chdir(files)
    monkeypatch.setenv("FLOWMETAL_STORE", f"sqlite:///{files / 'store.db'}")
    runner = CliRunner()

    def invoke(*args: str) -> Any:
        return runner.invoke(cli_main, list(args), catch_exceptions=False)

    return invoke


def stderr_lines(result: Any) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


# --------------------------------------------------------------------------- check


def test_check_valid(cli: Any) -> None:
    r = cli("check", "valid.flow")
    assert r.exit_code == 0
    assert r.stdout == "valid.flow: ok\n"
    assert r.stderr == ""


def test_check_invalid_lists_every_error(cli: Any) -> None:
    r = cli("check", "invalid.flow")
    assert r.exit_code == 2
    assert r.stdout == ""
    lines = stderr_lines(r)
    assert len(lines) == 4, lines
    parsed = [DIAG.match(line) for line in lines]
    assert all(parsed), lines
    assert [(m["file"], int(m["line"]), int(m["col"]), m["sev"]) for m in parsed if m] == [
        ("invalid.flow", 1, 8, "error"),
        ("invalid.flow", 4, 1, "error"),
        ("invalid.flow", 9, 11, "error"),
        ("invalid.flow", 10, 12, "error"),
    ]
    assert "'os'" in lines[0] and "async" in lines[1] and "eval" in lines[2] and "open" in lines[3]
    assert "Traceback" not in r.stderr


def test_check_several_files(cli: Any, files: Path) -> None:
    (files / "syntax.flow").write_text("def f(:\n    pass\n")
    r = cli("check", "valid.flow", "invalid.flow", "syntax.flow")
    assert r.exit_code == 2
    lines = stderr_lines(r)
    assert {DIAG.match(line)["file"] for line in lines} == {"invalid.flow", "syntax.flow"}  # type: ignore[index]
    assert any(line.startswith("syntax.flow:1:7: error:") for line in lines), lines


def test_check_warning_only_exits_zero(cli: Any, files: Path) -> None:
    (files / "warn.flow").write_text("def main():\n    print(undefined_name)\n")
    r = cli("check", "warn.flow")
    assert r.exit_code == 0
    assert r.stdout == "warn.flow: ok (1 warning)\n"
    (line,) = stderr_lines(r)
    m = DIAG.match(line)
    assert m and (m["file"], m["line"], m["sev"]) == ("warn.flow", "2", "warning"), line


def test_check_missing_file(cli: Any) -> None:
    r = cli("check", "nope.flow")
    assert r.exit_code == 2
    assert stderr_lines(r) == ["flowmetal: error: nope.flow: no such file"]


def test_check_needs_a_file(cli: Any) -> None:
    r = cli("check")
    assert r.exit_code == 2
    assert "Usage" in r.stderr


def test_check_not_utf8(cli: Any, files: Path) -> None:
    (files / "latin.flow").write_bytes(b"x = '\xe9'\n")
    r = cli("check", "latin.flow")
    assert r.exit_code == 2
    (line,) = stderr_lines(r)
    assert line.startswith("flowmetal: error: latin.flow: not UTF-8")


# --------------------------------------------------------------------------- run


def test_run_prints_output_and_json_result(cli: Any) -> None:
    r = cli("run", "valid.flow")
    assert r.exit_code == 0, r.stderr
    assert r.stdout == 'hello world 0\nhello world 1\n{"n": 2, "squares": [0, 1]}\n'
    assert r.stderr == ""


def test_run_passes_args_to_main(cli: Any) -> None:
    r = cli("run", "valid.flow", "--args", '{"n": 3, "who": "flow"}')
    assert r.exit_code == 0, r.stderr
    out = r.stdout.splitlines()
    assert out[:3] == ["hello flow 0", "hello flow 1", "hello flow 2"]
    assert json.loads(out[3]) == {"n": 3, "squares": [0, 1, 4]}


def test_run_without_result_prints_only_output(cli: Any) -> None:
    r = cli("run", "no_result.flow")
    assert r.exit_code == 0
    assert r.stdout == "just output\n"


def test_run_uncaught_exception(cli: Any) -> None:
    r = cli("run", "failing.flow")
    assert r.exit_code == 1
    assert r.stdout == "before the error\n"
    assert r.stderr == (
        "Traceback (most recent call last):\n"
        '  File "failing.flow", line 7, in main\n'
        '    lookup({"a": 1}, "b")\n'
        '  File "failing.flow", line 2, in lookup\n'
        "    return d[key]\n"
        "KeyError: 'b'\n"
    )


def test_run_invalid_program(cli: Any) -> None:
    r = cli("run", "invalid.flow")
    assert r.exit_code == 2
    assert r.stdout == ""
    lines = stderr_lines(r)
    assert len(lines) == 4 and all(DIAG.match(line) for line in lines), lines


@pytest.mark.parametrize(
    "raw, message",
    [
        ("{bad", "--args: malformed JSON"),
        ("", "--args: malformed JSON"),
        ("[1, 2]", "--args: expected a JSON object"),
        ('"n"', "--args: expected a JSON object"),
    ],
)
def test_run_malformed_args(cli: Any, raw: str, message: str) -> None:
    r = cli("run", "valid.flow", "--args", raw)
    assert r.exit_code == 2
    assert r.stdout == ""
    (line,) = stderr_lines(r)
    assert line.startswith(f"flowmetal: error: {message}"), line
    assert "Traceback" not in r.stderr


def test_run_unknown_argument_is_refused_before_it_starts(cli: Any) -> None:
    r = cli("run", "valid.flow", "--args", '{"m": 1}')
    assert r.exit_code == 2
    assert stderr_lines(r) == ["flowmetal: error: valid.flow: main() got an unexpected keyword argument 'm'"]


def test_run_missing_file(cli: Any) -> None:
    r = cli("run", "nope.flow")
    assert r.exit_code == 2
    assert stderr_lines(r) == ["flowmetal: error: nope.flow: no such file"]


def test_run_module_without_main(cli: Any, files: Path) -> None:
    (files / "script.flow").write_text("total = sum(range(5))\nprint('total', total)\n")
    r = cli("run", "script.flow")
    assert r.exit_code == 0
    assert r.stdout == "total 10\n"


@pytest.mark.parametrize(
    "value, printed",
    [("42", "42"), ("'text'", '"text"'), ("[1, 'a', None, True]", '[1, "a", null, true]'),
     ("{'k': [1.5]}", '{"k": [1.5]}'), ("0", "0"), ("False", "false"), ("''", '""')],
)
def test_run_result_is_printed_as_json(cli: Any, files: Path, value: str, printed: str) -> None:
    (files / "ret.flow").write_text(f"def main():\n    return {value}\n")
    r = cli("run", "ret.flow")
    assert r.exit_code == 0, r.stderr
    assert r.stdout == printed + "\n"


def test_run_unicode_output(cli: Any, files: Path) -> None:
    (files / "uni.flow").write_text("def main():\n    print('héllo → wörld ✓', end='')\n    return 'ü'\n",
                                    encoding="utf-8")
    r = cli("run", "uni.flow")
    assert r.exit_code == 0
    assert r.stdout == 'héllo → wörld ✓"\\u00fc"\n'


def test_run_error_in_module_body(cli: Any, files: Path) -> None:
    (files / "modfail.flow").write_text("print('loading')\nx = 1 // 0\n\ndef main():\n    print('never')\n")
    r = cli("run", "modfail.flow")
    assert r.exit_code == 1
    assert r.stdout == "loading\n"
    assert r.stderr.endswith("ZeroDivisionError: integer division or modulo by zero\n")
    assert 'File "modfail.flow", line 2, in <module>' in r.stderr


# --------------------------------------------------------------------------- real processes


def _env(tmp_path: Path) -> dict[str, str]:
    return dict(os.environ, FLOWMETAL_STORE=f"sqlite:///{tmp_path / 'proc.db'}")


def test_executable_run_and_check(files: Path) -> None:
    assert FLOWMETAL_EXE.exists()
    env = _env(files)
    p = subprocess.run([str(FLOWMETAL_EXE), "run", "valid.flow", "--args", '{"n": 1}'], cwd=files,
                       capture_output=True, text=True, timeout=60, env=env, check=False)
    assert (p.returncode, p.stdout, p.stderr) == (0, 'hello world 0\n{"n": 1, "squares": [0]}\n', "")
    p = subprocess.run([str(FLOWMETAL_EXE), "run", "failing.flow"], cwd=files, capture_output=True,
                       text=True, timeout=60, env=env, check=False)
    assert p.returncode == 1
    assert p.stdout == "before the error\n"
    assert p.stderr.startswith("Traceback (most recent call last):\n")
    assert p.stderr.endswith("KeyError: 'b'\n")
    p = subprocess.run([str(FLOWMETAL_EXE), "check", "invalid.flow"], cwd=files, capture_output=True,
                       text=True, timeout=60, env=env, check=False)
    assert p.returncode == 2
    assert len(p.stderr.splitlines()) == 4


def test_executable_malformed_args_has_no_traceback(files: Path) -> None:
    p = subprocess.run([str(FLOWMETAL_EXE), "run", "valid.flow", "--args", "{nope"], cwd=files,
                       capture_output=True, text=True, timeout=60, env=_env(files), check=False)
    assert p.returncode == 2
    assert p.stdout == ""
    assert len(p.stderr.splitlines()) == 1
    assert p.stderr.startswith("flowmetal: error: --args: malformed JSON")


def test_python_dash_m_help(tmp_path: Path) -> None:
    p = subprocess.run([sys.executable, "-m", "flowmetal", "--help"], capture_output=True, text=True,
                       timeout=60, cwd=tmp_path, check=False)
    assert p.returncode == 0
    assert p.stdout.startswith("Usage: python -m flowmetal [OPTIONS] COMMAND [ARGS]...")
    commands = re.findall(r"^  (\w+)\s", p.stdout.split("Commands:")[1], re.MULTILINE)
    assert {"check", "run"} <= set(commands)
    p = subprocess.run([sys.executable, "-m", "flowmetal", "--version"], capture_output=True, text=True,
                       timeout=60, cwd=tmp_path, check=False)
    assert p.returncode == 0
    assert re.fullmatch(r"flowmetal, version \d+\.\d+\.\d+\S*\n", p.stdout)


def test_subcommand_help(cli: Any) -> None:
    for command in ("check", "run"):
        r = cli(command, "--help")
        assert r.exit_code == 0
        assert r.stdout.startswith(f"Usage: main {command}") or "Usage:" in r.stdout
    r = cli("run", "--help")
    assert "--args" in r.stdout
