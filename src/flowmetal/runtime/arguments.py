"""Check a program's arguments against `main`'s signature before anything is stored.

`main` is called as `main(**args)`, so the arguments bind exactly as keyword arguments
to a Python function with the same parameters would. The check calls such a function:
a stub with `main`'s parameter list (defaults replaced by None, annotations dropped,
body `pass`), so the refusal is CPython's own message (`main() missing 1 required
positional argument: 'order'`). A program without a top-level `def main` takes no
arguments at all.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Callable
from typing import Any

from flowmetal.errors import UsageError
from flowmetal.lang.names import has_main_guard


class BadArguments(UsageError):
    """The arguments cannot be bound to `main` (exit 2, HTTP 422)."""


@functools.lru_cache(maxsize=256)
def _stub(source: str) -> Callable[..., None] | None:
    """A function with the parameters of the module's last top-level `def main` (None: no main)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None  # the checker reports it
    mains = [n for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name == "main"]
    if not mains or has_main_guard(tree):  # a script calls its main() itself, with no arguments
        return None
    params = mains[-1].args
    none = ast.Constant(None)
    plain = ast.arguments(
        posonlyargs=[ast.arg(a.arg) for a in params.posonlyargs],
        args=[ast.arg(a.arg) for a in params.args],
        vararg=ast.arg(params.vararg.arg) if params.vararg else None,
        kwonlyargs=[ast.arg(a.arg) for a in params.kwonlyargs],
        kw_defaults=[none if d is not None else None for d in params.kw_defaults],
        kwarg=ast.arg(params.kwarg.arg) if params.kwarg else None,
        defaults=[none for _ in params.defaults],
    )
    fn = ast.FunctionDef(name="main", args=plain, body=[ast.Pass()], decorator_list=[], returns=None)
    module = ast.fix_missing_locations(ast.Module(body=[fn], type_ignores=[]))
    namespace: dict[str, Any] = {"__builtins__": {}}
    exec(compile(module, "<main's signature>", "exec"), namespace)
    stub: Callable[..., None] = namespace["main"]
    return stub


def defines_main(source: str) -> bool:
    return _stub(source) is not None


def check_arguments(source: str, args: dict[str, Any], where: str) -> None:
    """BadArguments (with CPython's message) if `main(**args)` cannot bind `args`."""
    stub = _stub(source)
    if stub is None:
        if args:
            raise BadArguments(f"{where}: the program has no main() to take arguments "
                               f"(got {', '.join(map(repr, args))})")
        return
    try:
        stub(**args)
    except TypeError as e:
        raise BadArguments(f"{where}: {e}") from None
