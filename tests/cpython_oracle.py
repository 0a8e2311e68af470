"""Run Flowmetal test programs in CPython, the reference implementation.

A `.flow` program is Python 3.11 source. The oracle executes it the way Flowmetal
does: the module body runs in a fresh namespace whose `__name__` is
`"__main__"`, and then, if the module defined a callable `main` and has no top-level
`if __name__ ...:` test (a script calls its main itself), `main()` is called (its
return value is not printed). The result is the program's standard
output and the last line of the traceback of an uncaught exception (or None).

Programs run in a subprocess (with `PYTHONHASHSEED=0`) so they cannot disturb
the test process; many programs share one subprocess for speed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

# One (stdout, error line or None) pair per program.
Result = tuple[str, str | None]

_RUNNER = r"""
import contextlib
import decimal
import io
import json
import sys
import traceback


def has_main_guard(source):
    import ast
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return False
    return any(isinstance(s, ast.If) and any(isinstance(n, ast.Name) and n.id == "__name__"
                                             for n in ast.walk(s.test)) for s in tree.body)

def run_one(path):
    with open(path, encoding="utf-8") as f:
        source = f.read()
    decimal.setcontext(decimal.Context())  # each program starts with its own, as in Flowmetal
    out = io.StringIO()
    error = None
    namespace = {"__name__": "__main__"}
    try:
        with contextlib.redirect_stdout(out):
            exec(compile(source, path, "exec"), namespace)
            main = namespace.get("main")
            if callable(main) and not has_main_guard(source):
                main()
    except BaseException as exc:
        text = "".join(traceback.format_exception(exc)).rstrip("\n")
        error = text.splitlines()[-1] if text else type(exc).__name__
    return [out.getvalue(), error]


paths = json.loads(sys.stdin.read())
sys.stdout.write(json.dumps([run_one(p) for p in paths]))
"""


def run_many_in_cpython(
    paths: Iterable[str | os.PathLike[str]], timeout: float = 120.0
) -> dict[str, Result]:
    """Run every program in one CPython subprocess; results keyed by `str(path)`."""
    keys = [str(p) for p in paths]
    if not keys:
        return {}
    env = dict(os.environ, PYTHONHASHSEED="0", PYTHONIOENCODING="utf-8")
    proc = subprocess.run(
        [sys.executable, "-c", _RUNNER],
        input=json.dumps(keys),
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=env,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"CPython oracle runner failed:\n{proc.stderr}")
    results = json.loads(proc.stdout)
    return {key: (out, err) for key, (out, err) in zip(keys, results, strict=True)}


def run_in_cpython(path: str | os.PathLike[str]) -> Result:
    """Run one program in CPython: (stdout, last traceback line or None)."""
    return run_many_in_cpython([path])[str(path)]


def _main(argv: list[str]) -> int:
    """Debugging aid: `python tests/cpython_oracle.py prog.flow ...` shows each result."""
    paths = argv or sorted(str(p) for p in (Path(__file__).parent / "programs").glob("*.flow"))
    for key, (out, err) in run_many_in_cpython(paths).items():
        print(f"=== {key}")
        print(out, end="" if out.endswith("\n") or not out else "\n")
        if err is not None:
            print(f"!!! {err}")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
