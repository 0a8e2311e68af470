"""Deployments: a program's source, and the sources of the programs it `start()`s, stored
under a name, so that nodes start programs by name instead of reading files.

A deployment *name* is told from a *path* by its shape alone (never by looking at the disk):
a path ends in `.flow` or contains a `/`; a name does neither (letters, digits, `.`, `_`,
`-`). `collect_bundle` reads a main program and follows every `start("literal.flow")` it
finds, transitively, so a deployment carries everything its programs start by path; inside
a deployed program such paths resolve within the same version (a running program stays on
the version it started with).
"""

from __future__ import annotations

import ast
import os
import posixpath
import re
from pathlib import Path

from flowmetal.errors import UsageError
from flowmetal.lang.program import source_hash

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def is_deployment_name(target: str) -> bool:
    return not target.endswith(".flow") and NAME.fullmatch(target) is not None


def check_name(name: str) -> str:
    if not is_deployment_name(name):
        raise UsageError(f"{name!r} is not a deployment name: use 1-100 letters, digits, '.', '_' or '-' "
                         "(starting with a letter or digit, not ending in .flow)")
    return name


def started_paths(source: str) -> list[str]:
    """The paths this program passes as a literal to `start(...)` (or `flowmetal.start(...)`)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []  # `check` reports it
    out = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        func = node.func
        named = (isinstance(func, ast.Name) and func.id == "start") or (
            isinstance(func, ast.Attribute) and func.attr == "start")
        first = node.args[0]
        if named and isinstance(first, ast.Constant) and isinstance(first.value, str):
            if not is_deployment_name(first.value):
                out.append(first.value)
    return out


def resolve(base_file: str, path: str) -> str:
    """A path a program in `base_file` (a bundle path) passes to `start()`, as a bundle path."""
    return posixpath.normpath(posixpath.join(posixpath.dirname(base_file), path))


def read_program(path: str | Path) -> str:
    """A program file's text; UsageError saying why it cannot be read."""
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except UnicodeDecodeError as e:
        raise UsageError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise UsageError(f"{path}: {e.strerror}") from None


def collect_bundle(files: list[str]) -> tuple[str, dict[str, tuple[str, str]]]:
    """(main path, {bundle path: (source hash, source)}) for `flowmetal deploy FILE...`: the first
    file is the main program; bundle paths are relative to its directory."""
    root = Path(files[0]).resolve().parent
    bundle: dict[str, tuple[str, str]] = {}

    def bundle_path(p: Path) -> str:
        return Path(os.path.relpath(p, root)).as_posix()

    queue = [Path(f).resolve() for f in files]
    while queue:
        path = queue.pop(0)
        key = bundle_path(path)
        if key in bundle:
            continue
        text = read_program(path)
        bundle[key] = (source_hash(text), text)
        for started in started_paths(text):
            target = (path.parent / started).resolve()
            if not target.exists():
                raise UsageError(f"{path}: start({started!r}) names {target}, which does not exist")
            queue.append(target)
    return bundle_path(Path(files[0]).resolve()), bundle
