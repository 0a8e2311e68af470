"""Commands about programs: check, run, start, list, status, result, send, history,
inspect, cancel and resume."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from flowmetal.cli.common import (
    NodeOptions,
    connector_options,
    finish,
    json_option,
    make_runtime,
    make_services,
    node_options,
    notify_store,
    open_store_at,
    parse_args,
    read_source,
    run_embedded,
    store_option,
)
from flowmetal.errors import FlowmetalError, UsageError
from flowmetal.store.base import FINISHED, STATUSES


@click.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
def check(files: tuple[str, ...]) -> None:
    """Validate programs; print every error and warning as FILE:LINE:COL."""
    from flowmetal.errors import CheckFailed
    from flowmetal.lang.check import check_source, has_errors
    from flowmetal.lang.program import compile_program, default_modules

    failed = False
    for path in files:
        source = read_source(path)
        _, diags = check_source(source, path, modules=default_modules())
        if not has_errors(diags):
            try:  # the whole compiler runs, so `check` reports whatever `run` would refuse
                compile_program(source, path)
            except CheckFailed as e:
                diags = sorted(diags + e.diagnostics)
        for d in diags:
            click.echo(d.format(), err=True)
        if not has_errors(diags):
            warnings = f" ({len(diags)} warning{'s' if len(diags) != 1 else ''})" if diags else ""
            click.echo(f"{path}: ok{warnings}")
        failed = failed or has_errors(diags)
    sys.exit(2 if failed else 0)


def source_of(target: str) -> str | None:
    """The source of a .flow path; None for a deployment's name (the store has its source)."""
    from flowmetal.runtime.deployments import is_deployment_name

    return None if is_deployment_name(target) else read_source(target)


@click.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--args", "raw_args", help="The program's arguments as a JSON object (passed to main(); stored in "
              "its history: pass a secret's name, and secret(name) in the program).")
@click.option("--id", "program_id", help="Choose the program's id (default: a random one).")
@store_option
@connector_options
@node_options
def run(file: str, raw_args: str | None, program_id: str | None, store_url: str | None,
        functions_file: str | None, public_url: str | None, no_http: bool, secrets_file: str | None,
        node: NodeOptions) -> None:
    """Start a durable program and run it to its end in this process, streaming its output.

    If this process is killed, the program stays in the store: `flowmetal worker`
    or `flowmetal resume ID` finishes it.
    """
    args = parse_args(raw_args)
    source = source_of(file)
    if not node.programs_given and source is not None:  # the program's own directory, for its children
        node = node.with_program_dir(str(Path(file).parent))
    rt = make_runtime(store_url, public_url, node)
    # (checks --functions and --secrets before anything is stored)
    services = make_services(rt, functions_file, no_http, secrets_file=secrets_file, node=node)
    pid = rt.start(file, args, program_id=program_id, source=source)
    program = rt.program_for(rt.store.get_program(pid))
    for d in program.diagnostics:
        click.echo(d.format(), err=True)
    services.start()
    try:
        row = run_embedded(rt, pid, services=services)
    finally:
        services.stop()
    _report_end(rt, row)


def _report_end(rt: Any, row: Any) -> None:
    """What `run` and `resume` print when the program ends: its result, or its traceback."""
    if row.status == "failed":
        ev = rt.store.events(row.id, row.last_seq - 1)
        tb = ev[-1].data.get("traceback") if ev else None
        click.echo(tb or row.error, err=True, nl=not (tb or "").endswith("\n"))
        sys.exit(1)
    finish(row)


@click.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--args", "raw_args", help="The program's arguments as a JSON object (stored in its history: "
              "pass a secret's name, and secret(name) in the program).")
@click.option("--id", "program_id", help="Choose the program's id (starting twice with one id is idempotent).")
@store_option
def start(file: str, raw_args: str | None, program_id: str | None, store_url: str | None) -> None:
    """Start a durable program (a worker runs it); prints its id.

    FILE is a .flow file, or the name of a deployment (`flowmetal deploy`), whose latest
    version starts."""
    rt = make_runtime(store_url)
    pid = rt.start(file, parse_args(raw_args), program_id=program_id, source=source_of(file))
    notify_store(rt.store)
    click.echo(pid)


@click.command(name="list")
@click.option("--status", multiple=True, type=click.Choice(STATUSES),
              help="Only programs with this status (repeat for several).")
@click.option("--file", "file_part", help="Only programs whose file name contains this text.")
@click.option("--since", help="Only programs created at or after this time (ISO-8601 or epoch seconds).")
@click.option("--before", help="Only programs created before this time (ISO-8601 or epoch seconds).")
@click.option("--newest-first", is_flag=True, help="Newest programs first (default: oldest first).")
@click.option("--limit", type=click.IntRange(1), default=100, show_default=True, help="At most this many programs.")
@click.option("--cursor", help="Continue a listing where the previous page ended.")
@store_option
@json_option
def list_(status: tuple[str, ...], file_part: str | None, since: str | None, before: str | None,
          newest_first: bool, limit: int, cursor: str | None, store_url: str | None, as_json: bool) -> None:
    """List programs, oldest first, a page at a time (times are UTC)."""
    from flowmetal.store.base import ProgramQuery, iso

    query = ProgramQuery(status=status or None, file=file_part, created_since=_time_option("--since", since),
                         created_before=_time_option("--before", before), newest_first=newest_first)
    page = open_store_at(store_url, existing=True).page_programs(query, limit, cursor)
    if as_json:
        import time

        from flowmetal.runtime.waits import describe_waits

        now = time.time()
        click.echo(json.dumps([dict(r.to_json(), waiting_for=describe_waits(None, r, now)) for r in page.programs]))
    elif page.programs:
        def when(at: float) -> str:
            return (iso(at) or "")[:19].replace("T", " ")

        import time

        from flowmetal.runtime.waits import describe_waits

        now = time.time()

        def waiting_for(r: Any) -> str:
            waits = describe_waits(None, r, now)
            return "" if not waits else waits[0] + (f" (+{len(waits) - 1} more)" if len(waits) > 1 else "")

        rows = [(r.id, r.status, when(r.created_at), when(r.updated_at), str(r.last_seq), r.filename,
                 waiting_for(r)) for r in page.programs]
        header = ("ID", "STATUS", "CREATED", "UPDATED", "EVENTS", "FILE", "WAITING FOR")
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
        for row in [header, *rows]:
            cells = [cell.rjust(w) if i == 4 else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths))]
            click.echo("  ".join([*cells, row[-1]]).rstrip())
    else:
        click.echo("no programs", err=True)
    if page.next_cursor is not None:
        click.echo(f"(more: add --cursor {page.next_cursor} for the next {limit})", err=True)


def _time_option(name: str, value: str | None) -> float | None:
    from flowmetal.store.base import parse_time

    if value is None:
        return None
    try:
        return parse_time(value)
    except ValueError as e:
        raise UsageError(f"{name}: {e}") from None


@click.command()
@click.argument("program_id")
@store_option
@json_option
def status(program_id: str, store_url: str | None, as_json: bool) -> None:
    """A program's status: running, waiting, completed, failed or cancelled."""
    import time

    from flowmetal.runtime.waits import describe_waits, unread_messages

    store = open_store_at(store_url, existing=True)
    row = store.get_program(program_id)
    waits = describe_waits(store, row, time.time())
    unread = unread_messages(row, store.inbox(program_id))
    if as_json:
        click.echo(json.dumps(dict(row.to_json(), waiting_for=waits, unread=unread)))
        return
    click.echo(row.status)
    for line in waits:
        click.echo(f"  waiting for {line}")
    for line in unread:
        click.echo(f"  unread: {line}")


@click.command()
@click.argument("program_id")
@click.option("--wait", is_flag=True, help="Wait for the program to finish.")
@click.option("--timeout", type=float, help="With --wait: give up after this many seconds.")
@store_option
@json_option
def result(program_id: str, wait: bool, timeout: float | None, store_url: str | None, as_json: bool) -> None:
    """A finished program's result (JSON); exit 1 if it failed."""
    from flowmetal.client import Client, ProgramFailedError, ResultTimeout

    open_store_at(store_url, existing=True).close()
    client = Client(store_url)
    row = client.store.get_program(program_id)
    if wait and row.status not in FINISHED:
        try:
            client.result(program_id, timeout)
        except (ProgramFailedError, ResultTimeout):
            pass
        row = client.store.get_program(program_id)
    if row.status == "completed":
        click.echo(json.dumps(row.result))
        return
    if row.status in ("failed", "cancelled"):
        raise _ProgramEnded(f"program {program_id} {row.status}: {row.error}")
    if row.status == "moved":  # its result will be in the store it was imported into
        raise _ProgramEnded(f"program {program_id} no longer runs in this store: it was {row.error}")
    raise _ProgramEnded(f"program {program_id} has not finished (it is {row.status})")


class _ProgramEnded(FlowmetalError):
    exit_code = 1


@click.command()
@click.argument("program_id")
@click.argument("message")
@click.option("--channel", default="inbox", show_default=True)
@store_option
def send(program_id: str, message: str, channel: str, store_url: str | None) -> None:
    """Send a JSON message to a program."""
    try:
        value = json.loads(message)
    except json.JSONDecodeError as e:
        raise UsageError(f"malformed JSON message: {e.msg} at line {e.lineno} column {e.colno}") from None
    store = open_store_at(store_url)
    import time

    store.send(program_id, channel, value, time.time())
    notify_store(store)
    row = store.get_program(program_id)
    receiving = sorted({str(w.get("channel")) for w in ((row.waiting_on or {}).get("waits") or [])
                        if w.get("kind") == "receive"})
    if row.status == "waiting" and receiving and channel not in receiving:
        click.echo(f"note: program {program_id} is not receiving on {json.dumps(channel)} now (it receives on "
                   f"{', '.join(json.dumps(c) for c in receiving)}); the message waits in its inbox", err=True)


@click.command()
@click.argument("program_id")
@store_option
@json_option
def history(program_id: str, store_url: str | None, as_json: bool) -> None:
    """A program's events, one per line."""
    import datetime

    store = open_store_at(store_url, existing=True)
    store.get_program(program_id)
    for e in store.events(program_id):
        if as_json:
            click.echo(json.dumps(e.to_json()))
            continue
        when = datetime.datetime.fromtimestamp(e.at, tz=datetime.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        details = " ".join(f"{k}={json.dumps(v)}" for k, v in e.data.items() if k not in ("v", "traceback"))
        click.echo(f"{e.seq:>5}  {when}  {e.type:<16} {details}")


@click.command()
@click.argument("program_id")
@click.option("--at", "at_seq", type=int, help="The event number (default: the latest).")
@store_option
@json_option
def inspect(program_id: str, at_seq: int | None, store_url: str | None, as_json: bool) -> None:
    """A program's state at an event: stacks, variables, tasks, what it waits for."""
    from flowmetal.runtime.inspect import describe, format_description

    rt = make_runtime(store_url)
    row = rt.store.get_program(program_id)
    if at_seq is not None and not 1 <= at_seq <= row.last_seq:
        raise UsageError(f"--at must be between 1 and {row.last_seq}")
    machine, seq = rt.load(row, at_seq)
    waits = (row.waiting_on or {}).get("waits") if at_seq is None else None
    desc = describe(machine, waits)
    if as_json:
        click.echo(json.dumps({"id": program_id, "seq": seq, **desc}))
    else:
        click.echo(format_description(program_id, seq, desc))


@click.command()
@click.argument("program_id")
@store_option
def cancel(program_id: str, store_url: str | None) -> None:
    """Cancel a program: `Cancelled` is raised at its current wait so `finally` blocks run."""
    import time

    store = open_store_at(store_url)
    store.request_cancel(program_id, time.time())
    notify_store(store)


@click.command()
@click.argument("program_id")
@store_option
@connector_options
@node_options
def resume(program_id: str, store_url: str | None, functions_file: str | None, public_url: str | None,
           no_http: bool, secrets_file: str | None, node: NodeOptions) -> None:
    """Run a program in this process until it finishes or waits for something that has not happened."""
    import time

    rt = make_runtime(store_url, public_url, node)
    row = rt.store.get_program(program_id)
    if row.status not in FINISHED:
        services = make_services(rt, functions_file, no_http, secrets_file=secrets_file, node=node)
        rt.store.make_runnable(program_id, time.time())
        services.start()
        try:
            row = run_embedded(rt, program_id, until_waiting=True, services=services)
        finally:
            services.stop()
    if row.status in ("completed", "failed", "cancelled"):
        _report_end(rt, row)  # as `run` does: the result (or the traceback, exit 1)
    click.echo(row.status)  # waiting for something only the outside can bring (or moved away)


@click.command()
@click.argument("program_id")
@store_option
@json_option
def calls(program_id: str, store_url: str | None, as_json: bool) -> None:
    """A program's calls (foreign functions and HTTP requests), each failed attempt with its error
    and the function's traceback."""
    from flowmetal.runtime.calls import call_report, format_calls

    store = open_store_at(store_url, existing=True)
    store.get_program(program_id)
    report = call_report(store, program_id)
    if as_json:
        click.echo(json.dumps(report))
    elif report:
        click.echo(format_calls(report))
    else:
        click.echo(f"program {program_id} made no calls", err=True)
