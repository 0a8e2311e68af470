"""The `flowmetal` command line.

Exit codes: 0 success; 1 the program raised an uncaught exception (or hit a
limit); 2 the program is invalid or the command was used wrongly.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import click

from flowmetal import __version__
from flowmetal.errors import CheckFailed, FlowmetalError, UsageError
from flowmetal.store.base import FINISHED


def _read_source(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except UnicodeDecodeError as e:
        raise UsageError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise UsageError(f"{path}: {e.strerror}") from None


def _parse_args(raw: str | None) -> dict[str, Any]:
    if raw is None:
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as e:
        raise UsageError(f"--args: malformed JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    if not isinstance(value, dict):
        raise UsageError("--args: expected a JSON object of keyword arguments, e.g. '{\"n\": 3}'")
    return value


class _Group(click.Group):
    """Maps Flowmetal's own errors to one clear line on stderr and their exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CheckFailed as e:
            for d in e.diagnostics:
                click.echo(d.format(), err=True)
            sys.exit(e.exit_code)
        except FlowmetalError as e:
            click.echo(f"flowmetal: error: {e}", err=True)
            sys.exit(e.exit_code)


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="flowmetal")
def main() -> None:
    """Flowmetal: durable, evented, asynchronous programs in a deterministic Python subset."""
    # the connection pool logs every reconnection attempt; the store reports an outage itself
    logging.getLogger("psycopg.pool").setLevel(logging.CRITICAL)


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
def check(files: tuple[str, ...]) -> None:
    """Validate programs; print every error and warning as FILE:LINE:COL."""
    from flowmetal.lang.check import check_source, has_errors
    from flowmetal.lang.program import default_modules

    failed = False
    for path in files:
        source = _read_source(path)
        _, diags = check_source(source, path, modules=default_modules())
        for d in diags:
            click.echo(d.format(), err=True)
        failed = failed or has_errors(diags)
    sys.exit(2 if failed else 0)


store_option = click.option("--store", "store_url", envvar="FLOWMETAL_STORE", default=None,
                            help="Store URL (default: $FLOWMETAL_STORE or sqlite:///flowmetal.db).")
json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON output.")


def _emit(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _run_embedded(rt: Any, program_id: str, until_waiting: bool = False, services: Any = None) -> Any:
    """Run a program (and children it starts) in this process until it ends, streaming output."""
    from flowmetal.runtime.worker import Worker

    # output is read back from the log, so lines printed by slices another process ran on
    # the same store (a `serve` or `worker` sharing it) are shown too, each once, in order
    shown = rt.store.get_program(program_id).last_seq if until_waiting else 0

    def stream(upto: int | None = None) -> None:
        nonlocal shown
        if upto is not None and upto <= shown:
            return
        for event in rt.store.events(program_id, after=shown):
            if event.type == "output":
                _emit(event.data["text"])
            shown = event.seq

    def on_slice(r: Any) -> None:
        if r.program_id == program_id:
            stream()

    worker = Worker(rt, concurrency=16, only=program_id, on_slice=on_slice,
                    functions=services.functions if services is not None else None,
                    http=services.http if services is not None else None)
    worker.install_signal_handlers()

    def done() -> bool:
        row = rt.store.get_program(program_id)
        stream(row.last_seq)
        if row.status in FINISHED:
            return True
        # with until_waiting: stop once it waits for something only the outside can bring
        return (until_waiting and row.status == "waiting" and not row.runnable and row.wake_at is None
                and not (services is not None and services.serves_any(rt.store.list_calls(program_id))))

    worker.run(until=done)
    stream()
    return rt.store.get_program(program_id)


def _finish(row: Any) -> None:
    if row.status == "completed":
        if row.result is not None:
            click.echo(json.dumps(row.result))
        sys.exit(0)
    if row.status in ("running", "waiting"):  # interrupted (SIGINT/SIGTERM): nothing is lost
        click.echo(f"flowmetal: interrupted; program {row.id} is {row.status} in the store: "
                   f"`flowmetal resume {row.id}` or `flowmetal worker` continues it", err=True)
        sys.exit(130)
    click.echo(row.error or row.status, err=True)
    sys.exit(1)


def _open(store_url: str | None) -> Any:
    from flowmetal.store import open_store

    return open_store(store_url)


def _runtime(store_url: str | None, public_url: str | None = None) -> Any:
    from flowmetal.runtime.driver import Runtime

    return Runtime(_open(store_url), reuse_machines=True, public_url=public_url)


def connector_options(fn: Any) -> Any:
    """--functions, --public-url and --no-http: what a process serves besides the interpreter."""
    fn = click.option("--no-http", is_flag=True, help="Do not run the HTTP request connector here.")(fn)
    fn = click.option("--public-url", envvar="FLOWMETAL_PUBLIC_URL",
                      help="Base URL of `flowmetal serve` as the outside sees it, for callback() URLs "
                           "(env FLOWMETAL_PUBLIC_URL).")(fn)
    fn = click.option("--functions", "functions_file", type=click.Path(dir_okay=False),
                      help="A Python file whose @flowmetal.function(\"name\") functions this process serves.")(fn)
    return fn


def _services(rt: Any, functions_file: str | None, no_http: bool, worker: Any = None) -> Any:
    from flowmetal.connectors.services import Services

    return Services(rt, functions_file=functions_file, http=not no_http, interpreter=worker is not None,
                    worker=worker)


def _notify(store: Any) -> None:
    store.notify()


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--args", "raw_args", help="The program's arguments as a JSON object (passed to main()).")
@click.option("--id", "program_id", help="Choose the program's id (default: a random one).")
@store_option
@connector_options
def run(file: str, raw_args: str | None, program_id: str | None, store_url: str | None,
        functions_file: str | None, public_url: str | None, no_http: bool) -> None:
    """Start a durable program and run it to its end in this process, streaming its output.

    If this process is killed, the program stays in the store: `flowmetal worker`
    or `flowmetal resume ID` finishes it.
    """
    args = _parse_args(raw_args)
    rt = _runtime(store_url, public_url)
    services = _services(rt, functions_file, no_http)  # checks --functions before anything is stored
    pid = rt.start(file, args, program_id=program_id, source=_read_source(file))
    program = rt.program_for(rt.store.get_program(pid))
    for d in program.diagnostics:
        click.echo(d.format(), err=True)
    services.start()
    try:
        row = _run_embedded(rt, pid, services=services)
    finally:
        services.stop()
    if row.status == "failed":
        ev = rt.store.events(pid, row.last_seq - 1)
        tb = ev[-1].data.get("traceback") if ev else None
        click.echo(tb or row.error, err=True, nl=not (tb or "").endswith("\n"))
        sys.exit(1)
    _finish(row)


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--args", "raw_args", help="The program's arguments as a JSON object.")
@click.option("--id", "program_id", help="Choose the program's id (starting twice with one id is idempotent).")
@store_option
def start(file: str, raw_args: str | None, program_id: str | None, store_url: str | None) -> None:
    """Start a durable program (a worker runs it); prints its id."""
    rt = _runtime(store_url)
    pid = rt.start(file, _parse_args(raw_args), program_id=program_id, source=_read_source(file))
    _notify(rt.store)
    click.echo(pid)


@main.command(name="list")
@click.option("--status", type=click.Choice(["running", "waiting", "completed", "failed", "cancelled",
                                             "moved"]))
@store_option
@json_option
def list_(status: str | None, store_url: str | None, as_json: bool) -> None:
    """List programs."""
    rows = _open(store_url).list_programs(status)
    if as_json:
        click.echo(json.dumps([r.to_json() for r in rows]))
        return
    for r in rows:
        click.echo(f"{r.id}  {r.status:<9}  {r.filename}  events={r.last_seq}")


@main.command()
@click.argument("program_id")
@store_option
@json_option
def status(program_id: str, store_url: str | None, as_json: bool) -> None:
    """A program's status: running, waiting, completed, failed or cancelled."""
    row = _open(store_url).get_program(program_id)
    if as_json:
        click.echo(json.dumps(row.to_json()))
        return
    click.echo(row.status)
    if row.waiting_on and row.status == "waiting":
        for w in row.waiting_on.get("waits") or []:
            click.echo(f"  waiting for {w['kind']}" + (f" on {w['channel']}" if w.get("channel") else ""))


@main.command()
@click.argument("program_id")
@click.option("--wait", is_flag=True, help="Wait for the program to finish.")
@click.option("--timeout", type=float, help="With --wait: give up after this many seconds.")
@store_option
@json_option
def result(program_id: str, wait: bool, timeout: float | None, store_url: str | None, as_json: bool) -> None:
    """A finished program's result (JSON); exit 1 if it failed."""
    from flowmetal.client import Client, ProgramFailedError, ResultTimeout

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


@main.command()
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
    store = _open(store_url)
    import time

    store.send(program_id, channel, value, time.time())
    _notify(store)


@main.command()
@click.argument("program_id")
@store_option
@json_option
def history(program_id: str, store_url: str | None, as_json: bool) -> None:
    """A program's events, one per line."""
    import datetime

    store = _open(store_url)
    store.get_program(program_id)
    for e in store.events(program_id):
        if as_json:
            click.echo(json.dumps(e.to_json()))
            continue
        when = datetime.datetime.fromtimestamp(e.at, tz=datetime.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        details = " ".join(f"{k}={json.dumps(v)}" for k, v in e.data.items() if k not in ("v", "traceback"))
        click.echo(f"{e.seq:>5}  {when}  {e.type:<16} {details}")


@main.command()
@click.argument("program_id")
@click.option("--at", "at_seq", type=int, help="The event number (default: the latest).")
@store_option
@json_option
def inspect(program_id: str, at_seq: int | None, store_url: str | None, as_json: bool) -> None:
    """A program's state at an event: stacks, variables, tasks, what it waits for."""
    from flowmetal.runtime.inspect import describe, format_description

    rt = _runtime(store_url)
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


@main.command()
@click.argument("program_id")
@store_option
def cancel(program_id: str, store_url: str | None) -> None:
    """Cancel a program: `Cancelled` is raised at its current wait so `finally` blocks run."""
    import time

    store = _open(store_url)
    store.request_cancel(program_id, time.time())
    _notify(store)


@main.command()
@click.argument("program_id")
@store_option
@connector_options
def resume(program_id: str, store_url: str | None, functions_file: str | None, public_url: str | None,
           no_http: bool) -> None:
    """Run a program in this process until it finishes or waits for something that has not happened."""
    import time

    rt = _runtime(store_url, public_url)
    row = rt.store.get_program(program_id)
    if row.status not in FINISHED:
        services = _services(rt, functions_file, no_http)
        rt.store.make_runnable(program_id, time.time())
        services.start()
        try:
            row = _run_embedded(rt, program_id, until_waiting=True, services=services)
        finally:
            services.stop()
    click.echo(row.status)


@main.command()
@store_option
@click.option("--concurrency", type=int, default=16, show_default=True, help="Programs claimed at once.")
@connector_options
def worker(store_url: str | None, concurrency: int, functions_file: str | None, public_url: str | None,
           no_http: bool) -> None:
    """Run programs from the store (and HTTP requests and --functions) until SIGTERM/SIGINT."""
    from flowmetal.runtime.worker import Worker

    rt = _runtime(store_url, public_url)
    services = _services(rt, functions_file, no_http)
    w = Worker(rt, concurrency=concurrency, functions=services.functions, http=services.http)
    w.install_signal_handlers()
    services.start()
    try:
        w.run()
    finally:
        services.stop()


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@store_option
@click.option("--concurrency", type=int, default=8, show_default=True, help="Calls performed at once.")
@click.option("--lease", type=float, default=30.0, show_default=True,
              help="Seconds a call stays ours without a heartbeat (a killed worker's calls move on after it).")
def functions(file: str, store_url: str | None, concurrency: int, lease: float) -> None:
    """Serve the @flowmetal.function("name") functions of a Python file until SIGTERM/SIGINT."""
    from flowmetal.connectors.functions import FunctionWorker, load_functions_file

    fw = FunctionWorker(_open(store_url), concurrency=concurrency, lease=lease)
    fw.add(load_functions_file(file))
    click.echo(f"flowmetal: serving {', '.join(sorted(fw.functions))}", err=True)
    fw.run()


# moving programs between stores, and forking them (flowmetal.cli_move)
from flowmetal.cli_move import export_cmd, fork, import_cmd  # noqa: E402  (registered after `main`)

main.add_command(export_cmd)
main.add_command(import_cmd)
main.add_command(fork)

# the HTTP API (flowmetal.cli_serve)
from flowmetal.cli_serve import serve  # noqa: E402

main.add_command(serve)

# the store's schema (flowmetal.cli_db)
from flowmetal.cli_db import db  # noqa: E402

main.add_command(db)
