"""The node's program directories: the only places `start(path)` in a program and
the API's `"path"` may read a program from.

A program path is relative, has no `..` component and names a `.flow` file.
A child started by a program is looked up next to its parent when the parent
lies inside a program directory, otherwise in the directories in order; the
file found (symlinks resolved) must lie inside one of them. Errors name the
path and the reason, never anything read from a file: a file that is not a
valid program is reported by its error positions only.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

MAX_SOURCE = 1 << 20  # bytes: a larger file is not a program a node reads on request


class ProgramPathError(ValueError):
    """A program path that is refused or names nothing readable."""


class ProgramDirs:
    """`dirs`: the program directories. `beside_parent`: a child may also be read from its
    parent's own directory (and below) — what a `Runtime` made in Python without `programs=`
    allows, so that a program's children may sit next to it wherever it is."""

    def __init__(self, dirs: Iterable[str | os.PathLike[str]], beside_parent: bool = False) -> None:
        self.dirs = [Path(d) for d in dirs] or [Path(".")]
        self.beside_parent = beside_parent

    def __repr__(self) -> str:
        return f"ProgramDirs({[str(d) for d in self.dirs]})"

    def _roots(self, extra: Path | None = None) -> list[Path]:
        return [Path(os.path.realpath(d)) for d in [*self.dirs, *([extra] if extra is not None else [])]]

    def _inside(self, path: str | Path, extra: Path | None = None) -> bool:
        real = Path(os.path.realpath(path))
        return any(real == root or root in real.parents for root in self._roots(extra))

    def read(self, path: str, relative_to: str | None = None, what: str = "start()") -> tuple[str, str]:
        """(filename, source) of the program `path` names; `relative_to`: the filename of the
        program that asks (a child is looked up next to it first)."""
        _check(path, what)
        candidates: list[Path] = []
        beside = None
        if relative_to is not None:
            parent_dir = Path(relative_to).parent
            if self.beside_parent:
                beside = parent_dir
            if self._inside(parent_dir, beside):
                candidates.append(parent_dir / path)
        candidates += [d / path for d in self.dirs]
        for candidate in candidates:
            if not candidate.is_file():
                continue
            if not self._inside(candidate, beside):
                raise ProgramPathError(f"{what}: {path!r} leads outside the program directories")
            try:
                with open(candidate, "rb") as f:
                    data = f.read(MAX_SOURCE + 1)
            except OSError as e:
                raise ProgramPathError(f"{what}: cannot read {path!r}: {e.strerror or type(e).__name__}") from None
            if len(data) > MAX_SOURCE:
                raise ProgramPathError(f"{what}: {path!r} is larger than {MAX_SOURCE} bytes")
            try:
                return str(candidate), data.decode("utf-8")
            except UnicodeDecodeError:
                raise ProgramPathError(f"{what}: {path!r} is not UTF-8 text") from None
        raise ProgramPathError(f"{what}: no program {path!r} in the program directories")


def _check(path: object, what: str) -> None:
    if not isinstance(path, str) or not path:
        raise ProgramPathError(f"{what}: a program path must be a non-empty str")
    if "\0" in path or "\\" in path:
        raise ProgramPathError(f"{what}: {path!r} is not a program path")
    pure = PurePosixPath(path)
    if pure.is_absolute() or path.startswith("~"):
        raise ProgramPathError(f"{what}: {path!r}: absolute paths are refused; name a program relative to "
                               "the program directories (--programs)")
    if ".." in pure.parts:
        raise ProgramPathError(f"{what}: {path!r}: '..' is refused in program paths")
    if pure.suffix != ".flow":
        raise ProgramPathError(f"{what}: {path!r}: only .flow files are programs")
