"""Moving programs between stores, and forking them: `flowmetal export`, `import`, `fork`.

A program moves as an `.fmx` file (flowmetal.store.fmx): its whole history,
latest checkpoint, unread messages, calls and callbacks. A worker of the
destination store continues it from there. Only one store may run a program,
so `import` takes a live program only from a file written with `export
--detach`, which marks it "moved" in the source store once the file is safely
written; a finished program may always be imported (an archive copy). Its calls
move with it (an attempt in flight at the move is given up there and retried by
the destination's connectors, as after a crash); callback URLs it handed out
before the move still name the old store, which now answers them as closed.

`fork` starts a new program from another's state at an earlier event (see
flowmetal.runtime.fork).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit, urlunsplit

import click

from flowmetal.errors import FlowmetalError, UsageError
from flowmetal.store.base import FINISHED, ProgramDump, ProgramRow, Store

_ENDED = ("completed", "failed", "cancelled")  # finished here *and* everywhere: safe to copy

store_option = click.option("--store", "store_url", envvar="FLOWMETAL_STORE", default=None,
                            help="Store URL (default: $FLOWMETAL_STORE or sqlite:///flowmetal.db).")


class MoveRefused(FlowmetalError):
    exit_code = 2


def _open(store_url: str | None) -> Store:
    from flowmetal.store import open_store

    return open_store(store_url)


def _public_url(url: str) -> str:
    """A store URL fit to write into a file that travels: without its password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1)))


def _live_status(row: ProgramRow) -> str:
    """The status a moved program had before it was detached (a slice sets it anew anyway)."""
    return "waiting" if row.waiting_on is not None else "running"


def _as_detached(dump: ProgramDump) -> ProgramDump:
    """A dump of a program detached from its store, as the destination should recreate it."""
    if dump.row.status != "moved":
        return dump
    return replace(dump, row=replace(dump.row, status=_live_status(dump.row), error=None))


def _write_file(path: str, data: bytes) -> None:
    """Write `data` to `path` durably and atomically: a crash leaves the old file or the whole new one."""
    target = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent or Path("."))
    except OSError as e:
        raise UsageError(f"cannot write {path}: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            _write_all(f, data)
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise UsageError(f"cannot write {path}: {e.strerror or e}") from None
    with contextlib.suppress(OSError):  # make the rename itself durable (not possible everywhere)
        dir_fd = os.open(target.parent or Path("."), os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _write_all(f: BinaryIO, data: bytes) -> None:
    """Write every byte, or raise: a buffered write that fails part way (a reader that went
    away, a full disk) may return a short count instead of raising."""
    view = memoryview(data)
    while view:
        n = f.write(view)
        if not n:
            raise OSError(errno.EIO, "short write")
        view = view[n:]
    f.flush()


def _write_stdout(data: bytes) -> None:
    try:
        _write_all(sys.stdout.buffer, data)
    except OSError as e:
        # nothing more can reach the reader; keep the interpreter's exit flush from complaining
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise UsageError(f"cannot write the export to standard output: {e.strerror or e}") from None
    with contextlib.suppress(OSError):  # redirected to a file: make it durable; a pipe cannot be synced
        os.fsync(sys.stdout.buffer.fileno())


def _changed(before: ProgramDump, after: ProgramDump) -> bool:
    """Did the program take in or produce anything between two dumps?"""
    return (after.row.last_seq != before.row.last_seq or after.row.cancel_requested != before.row.cancel_requested
            or [m.id for m in after.inbox] != [m.id for m in before.inbox])


@click.command(name="export")
@click.argument("program_id")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write to FILE (default: standard output).")
@click.option("--detach", is_flag=True,
              help="Once the file is written, mark the program moved here so only its new store runs it.")
@store_option
def export_cmd(program_id: str, output: str | None, detach: bool, store_url: str | None) -> None:
    """Write a program (history, checkpoint, messages) to a portable .fmx file."""
    from flowmetal.store.fmx import dump_fmx

    store = _open(store_url)
    dump = store.export_program(program_id)
    status = dump.row.status
    if detach and status in _ENDED:
        raise UsageError(f"program {program_id} has already {status}: there is nothing to detach "
                         "(export it without --detach; a finished program may be imported anywhere)")
    # re-exporting a moved program gives its frozen final state (e.g. when the first file was lost);
    # without --detach the file says it is not live here, which `import` refuses
    already_moved = status == "moved"
    if detach:
        dump = _as_detached(dump)
    destination = f"export file {os.path.abspath(output)}" if output else "an export file (standard output)"

    def write(d: ProgramDump) -> None:
        data = dump_fmx(d, detached=detach, origin=_public_url(store.url))
        if output:
            _write_file(output, data)
        else:
            _write_stdout(data)

    write(dump)
    if not detach or already_moved:
        return
    # only now that the file is safely written may this store let go of the program
    store.mark_moved(program_id, destination, time.time())
    # a worker, a message or a timer may have advanced it between the export and the mark (after
    # the mark nothing can: its lease is gone); the file must hold its final state
    final = store.export_program(program_id)
    if not _changed(dump, final):
        return
    if output:
        write(_as_detached(final))
        return
    raise FlowmetalError(f"program {program_id} changed while it was being exported, so the document written "
                         f"is out of date; it is now detached here — run `flowmetal export {program_id} --detach "
                         f"-o FILE` to export its final state")


@click.command(name="import")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@store_option
def import_cmd(file: str, store_url: str | None) -> None:
    """Recreate a program from an .fmx file in this store (a worker here continues it); prints its id."""
    from flowmetal.store.fmx import load_fmx

    try:
        data = sys.stdin.buffer.read() if file == "-" else Path(file).read_bytes()
    except FileNotFoundError:
        raise UsageError(f"{file}: no such file") from None
    except OSError as e:
        raise UsageError(f"{file}: {e.strerror or e}") from None
    dump, meta = load_fmx(data)
    row = dump.row
    if not meta.detached and row.status not in _ENDED:
        how = (f"it had already been moved away from {meta.origin} ({row.error})" if row.status == "moved"
               else f"it is still {row.status} in {meta.origin}")
        raise MoveRefused(f"refusing to import program {row.id}: {how}, and a program may run in only one "
                          f"store — export it with `flowmetal export {row.id} --detach` (or let it finish)")
    _check_runnable_here(dump)
    store = _open(store_url)
    store.import_program(dump, time.time())
    store.notify()
    click.echo(row.id)


def _check_runnable_here(dump: ProgramDump) -> None:
    """Refuse a file this Flowmetal could not continue, before it reaches the store (where the
    program would only fail at its next slice)."""
    from flowmetal.lang.program import compile_cached, source_hash
    from flowmetal.machine.api import Machine
    from flowmetal.runtime import actions
    from flowmetal.store.fmx import FmxError

    row = dump.row
    if source_hash(dump.source) != row.source_hash:
        raise FmxError(f"malformed export file: the source of program {row.id} does not match its hash")
    if dump.checkpoint is None or row.status in FINISHED:
        return
    program = compile_cached(dump.source, row.filename)  # CheckFailed: this version rejects the program
    Machine.restore(dump.checkpoint[1], host_module=actions.host_module(), program=program,
                    codec_extensions=actions.register_codec)  # SnapshotError: an unreadable snapshot


@click.command()
@click.argument("program_id")
@click.option("--at", "at_seq", type=int, required=True, help="The event to fork at (see `flowmetal history`).")
@click.option("--send", "messages", multiple=True, metavar="JSON",
              help="A message for the fork (repeatable), queued before it runs.")
@click.option("--channel", default="inbox", show_default=True, help="The channel of the --send messages.")
@click.option("--id", "new_id", help="The fork's id (default: ID-fork-RANDOM).")
@store_option
def fork(program_id: str, at_seq: int, messages: tuple[str, ...], channel: str, new_id: str | None,
         store_url: str | None) -> None:
    """Start a new program from a program's state at event SEQ; prints the new id.

    The original is not touched. What it waited for at SEQ starts over in the fork
    (a sleep restarts, a receive takes the --send messages).
    """
    from flowmetal.runtime.fork import fork_program

    values: list[Any] = []
    for raw in messages:
        try:
            values.append(json.loads(raw))
        except json.JSONDecodeError as e:
            raise UsageError(f"--send: malformed JSON message: {e.msg} at line {e.lineno} column {e.colno}") from None
    forked = fork_program(_open(store_url), program_id, at_seq, values, channel, new_id)
    if forked.children:  # (see runtime/fork.py) said up front, not discovered as a wait that never ends
        shown = ", ".join(forked.children[:5]) + (", ..." if len(forked.children) > 5 else "")
        click.echo(f"flowmetal: warning: {program_id} started {len(forked.children)} child program(s) before event "
                   f"{at_seq} ({shown}); the fork does not copy them, so it never hears from them", err=True)
    click.echo(forked.id)
