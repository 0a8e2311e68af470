"""A compiled program kept on disk, the way CPython keeps `.pyc` files.

Compiling the prelude costs every process that runs programs about 0.1 s, a third
of a worker's start (and so of how soon a restarted worker takes over a dead one's
programs). Its compiled form is saved next to it, in `__pycache__` (or under
`sys.pycache_prefix`), and loaded in well under a millisecond.

The file is a cache, not a record: it is `marshal` data (CPython's own format for
code objects, which keeps shared code objects shared), valid only for the exact
inputs named by its key — the source, the compiler's own modules and the Python
build. Anything unreadable, stale or malformed is ignored and compiled afresh; a
directory that cannot be written just means compiling next time too.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import marshal
import os
import sys
import types
from importlib import resources
from pathlib import Path
from typing import Any

from flowmetal.lang.lowering import UnitInfo
from flowmetal.lang.program import Program

_FORMAT = 1  # of the tuple below; part of the key


def cache_key(source: str) -> str:
    """What a compiled form depends on: the source, every module of the compiler, this Python."""
    h = hashlib.sha256()
    for part in (f"fmc{_FORMAT}", sys.version, str(marshal.version), source):
        h.update(part.encode("utf-8"))
        h.update(b"\0")
    lang = resources.files("flowmetal.lang")
    for entry in sorted(lang.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".py"):
            h.update(entry.name.encode("utf-8"))
            h.update(entry.read_bytes())
    return h.hexdigest()[:32]


def cache_path(source_path: str, key: str) -> Path:
    """Where the compiled form of `source_path` for `key` goes (`__pycache__` rules)."""
    pyc = Path(importlib.util.cache_from_source(source_path))
    return pyc.with_name(f"{Path(source_path).stem}.{key}.fmc")


def load(path: Path, key: str) -> Program | None:
    """The program saved at `path` for `key`, or None (missing, stale or unreadable)."""
    try:
        data = marshal.loads(path.read_bytes())
        return _program(data, key)
    except (OSError, EOFError, ValueError, TypeError, KeyError, IndexError):
        return None


def save(path: Path, key: str, program: Program) -> None:
    """Save `program` for `key` (atomically), and drop older compiled forms of the same source."""
    if sys.dont_write_bytecode or program.diagnostics:
        return
    data = (_FORMAT, key, program.filename, program.source, program.source_hash, program.defines_main,
            [_unit(u) for u in program.units.values()], program.codes)
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(marshal.dumps(data))
        os.replace(tmp, path)
        stem = path.name.split(".", 1)[0]
        for old in path.parent.glob(f"{stem}.*.fmc"):
            if old != path:
                old.unlink(missing_ok=True)


def _unit(u: UnitInfo) -> tuple[Any, ...]:
    return (u.uid, u.kind, u.name, u.qualname, u.filename, u.lineno, u.params, u.cellvars, u.frees, u.handlers,
            u.local_names, u.code, u.binder, u.lines, u.is_module)


def _program(data: Any, key: str) -> Program | None:
    fmt, saved_key, filename, source, source_hash, defines_main, units, codes = data
    if fmt != _FORMAT or saved_key != key:
        return None
    infos = {}
    for (uid, kind, name, qualname, ufile, lineno, params, cellvars, frees, handlers, local_names, code, binder,
         lines, is_module) in units:
        if not isinstance(code, types.CodeType):
            return None
        infos[uid] = UnitInfo(uid=uid, kind=kind, name=name, qualname=qualname, filename=ufile, lineno=lineno,
                              params=params, cellvars=cellvars, frees=frees, handlers=handlers,
                              local_names=local_names, code=code, binder=binder, lines=lines, is_module=is_module)
    return Program(filename=filename, source=source, source_hash=source_hash, units=infos, codes=codes,
                   code_keys={c: k for k, c in codes.items()}, defines_main=defines_main)
