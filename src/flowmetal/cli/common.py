"""What the command groups share: reading program files and JSON arguments, the
--store/--json/connector options, opening the store or a runtime, and running a
program here until it ends."""

from __future__ import annotations

import functools
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from flowmetal.errors import UsageError
from flowmetal.store.base import FINISHED


def read_source(path: str) -> str:
    from flowmetal.runtime.deployments import read_program

    return read_program(path)


def parse_args(raw: str | None) -> dict[str, Any]:
    if raw is None:
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as e:
        raise UsageError(f"--args: malformed JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    if not isinstance(value, dict):
        raise UsageError("--args: expected a JSON object of keyword arguments, e.g. '{\"n\": 3}'")
    return value


store_option = click.option("--store", "store_url", envvar="FLOWMETAL_STORE", default=None,
                            help="Store URL (default: $FLOWMETAL_STORE or sqlite:///flowmetal.db).")
json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON output.")


def emit(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def run_embedded(rt: Any, program_id: str, until_waiting: bool = False, services: Any = None) -> Any:
    """Run a program (and children it starts) in this process until it ends, streaming output."""
    from flowmetal.observe.logs import for_foreground
    from flowmetal.runtime.worker import Worker

    for_foreground()  # this command shows the program's output and end itself

    # output is read back from the log, so lines printed by slices another process ran on
    # the same store (a `serve` or `worker` sharing it) are shown too, each once, in order
    first = rt.store.get_program(program_id)
    shown = first.last_seq if until_waiting else 0
    run = first.run

    def stream(upto: int | None = None, now_run: int | None = None) -> None:
        nonlocal shown, run
        if now_run is not None and now_run != run:  # continue_as_new: a fresh history from event 1
            shown, run = 0, now_run
        if upto is not None and upto <= shown:
            return
        for event in rt.store.events(program_id, after=shown):
            if event.type == "output":
                emit(event.data["text"])
            shown = event.seq

    def on_slice(r: Any) -> None:
        if r.program_id == program_id:
            stream(None, rt.store.get_program(program_id).run)

    worker = Worker(rt, concurrency=16, only=program_id, on_slice=on_slice,
                    functions=services.functions if services is not None else None,
                    http=services.http if services is not None else None)
    worker.install_signal_handlers()

    def done() -> bool:
        row = rt.store.get_program(program_id)
        stream(row.last_seq, row.run)
        if row.status in FINISHED:
            return True
        # with until_waiting: stop once it waits for something only the outside can bring
        return (until_waiting and row.status == "waiting" and not row.runnable and row.wake_at is None
                and not (services is not None and services.serves_any(rt.store.list_calls(program_id))))

    worker.run(until=done)
    stream()
    return rt.store.get_program(program_id)


def finish(row: Any) -> None:
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


def open_store_at(store_url: str | None, existing: bool = False) -> Any:
    """The store; with `existing`, a SQLite file that is not there is an error (a read-only
    command run in the wrong directory must not leave an empty store behind)."""
    from flowmetal.store import open_store, sqlite_path
    from flowmetal.store import store_url as resolve

    url = resolve(store_url)
    path = sqlite_path(url)
    if existing and path is not None and not Path(path).exists():
        raise UsageError(f"no store at {path} ({url}): run this where the store is, or give --store URL "
                         "(or FLOWMETAL_STORE)")
    return open_store(store_url)


def make_runtime(store_url: str | None, public_url: str | None = None, node: NodeOptions | None = None) -> Any:
    """A runtime for the store; with `node`, one that runs programs in executor processes."""
    from flowmetal.runtime.driver import Runtime

    if node is None:
        return Runtime(open_store_at(store_url), reuse_machines=True, public_url=public_url)
    return Runtime(open_store_at(store_url), reuse_machines=True, public_url=public_url, executors=node.executors,
                   programs=node.programs)


@dataclass
class NodeOptions:
    """How a process that runs programs isolates them (see docs/security.md)."""

    executors: Any  # ExecutorSettings
    programs: Any  # ProgramDirs
    programs_given: bool = True  # --programs was given (else: the current directory)
    egress: Any = None  # EgressPolicy

    def with_program_dir(self, directory: str) -> NodeOptions:
        from flowmetal.runtime.programdirs import ProgramDirs

        return NodeOptions(self.executors, ProgramDirs([*self.programs.dirs, Path(directory)]), self.programs_given,
                           self.egress)


_SIZE = re.compile(r"(?i)\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*")


def parse_size(text: str, what: str) -> int | None:
    """`512M`, `2G`, `1048576` or `none` -> bytes (None: no limit)."""
    if text.strip().lower() in ("none", "off", "0"):
        return None
    m = _SIZE.fullmatch(text)
    if m is None:
        raise UsageError(f"{what}: expected a size such as 512M or 2G (or none), not {text!r}")
    scale = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}[m.group(2).lower()]
    return int(float(m.group(1)) * scale)


def node_options(fn: Any) -> Any:
    """--executors, --slice-timeout, --memory-limit and --programs: for commands that run programs."""
    from flowmetal.runtime.executors import SLICE_TIMEOUT

    @functools.wraps(fn)
    def wrapper(*args: Any, executors: int | None, slice_timeout: float, memory_limit: str,
                program_dirs: tuple[str, ...], allow_hosts: tuple[str, ...], deny_hosts: tuple[str, ...],
                **kwargs: Any) -> Any:
        from flowmetal.connectors.egress import DEFAULT_DENY, EgressPolicy, PolicyError
        from flowmetal.runtime.executors import ExecutorSettings, default_processes
        from flowmetal.runtime.programdirs import ProgramDirs

        try:
            egress = EgressPolicy(allow_hosts, deny_hosts or DEFAULT_DENY)
        except PolicyError as e:
            raise UsageError(f"--allow-hosts/--deny-hosts: {e}") from None

        settings = ExecutorSettings(processes=executors or default_processes(), slice_timeout=slice_timeout,
                                    memory_limit=parse_size(memory_limit, "--memory-limit"))
        kwargs["node"] = NodeOptions(settings, ProgramDirs(program_dirs or ["."]), bool(program_dirs), egress)
        return fn(*args, **kwargs)

    for option in reversed([
        click.option("--executors", type=click.IntRange(1, 256), default=None,
                     help="Executor processes that run program slices (default: one per CPU core)."),
        click.option("--slice-timeout", type=click.FloatRange(0.1), default=SLICE_TIMEOUT, show_default=True,
                     help="CPU seconds a program may compute without waiting before it fails (SliceTimeout)."),
        click.option("--memory-limit", default="512M", show_default=True,
                     help="Memory each executor process may use beyond its start-up size (e.g. 1G, or none)."),
        click.option("--programs", "program_dirs", multiple=True, type=click.Path(file_okay=False),
                     help="A directory start() and the API's \"path\" may read programs from (repeatable; "
                          "default: the current directory)."),
        click.option("--allow-hosts", multiple=True, metavar="HOSTS",
                     help="Only these hosts, addresses, networks or classes may be requested by http "
                          "(comma-separated, repeatable; default: all that are not denied)."),
        click.option("--deny-hosts", multiple=True, metavar="HOSTS",
                     help="Hosts, addresses, networks or classes http may never request (default: "
                          "link-local,metadata — cloud metadata services; 'none' allows all)."),
    ]):
        wrapper = option(wrapper)
    return wrapper


secrets_option = click.option(
    "--secrets", "secrets_file", type=click.Path(dir_okay=False), envvar="FLOWMETAL_SECRETS_FILE",
    help="A file of the secrets programs may use with secret(\"NAME\"): a JSON object or NAME=value lines "
         "(env FLOWMETAL_SECRETS_FILE; FLOWMETAL_SECRET_NAME variables work too).")


def connector_options(fn: Any) -> Any:
    """--functions, --public-url, --no-http and --secrets: what a process serves besides the interpreter."""
    fn = secrets_option(fn)
    fn = click.option("--no-http", is_flag=True, help="Do not run the HTTP request connector here.")(fn)
    fn = click.option("--public-url", envvar="FLOWMETAL_PUBLIC_URL",
                      help="Base URL of `flowmetal serve` as the outside sees it, for callback() URLs "
                           "(env FLOWMETAL_PUBLIC_URL).")(fn)
    fn = click.option("--functions", "functions_file", type=click.Path(dir_okay=False),
                      help="A Python file whose @flowmetal.function(\"name\") functions this process serves.")(fn)
    return fn


def make_services(rt: Any, functions_file: str | None, no_http: bool, worker: Any = None,
                  housekeeping: bool = False, retain: str | None = None, secrets_file: str | None = None,
                  node: NodeOptions | None = None, concurrency: int = 16) -> Any:
    from flowmetal.connectors.services import Services
    from flowmetal.durations import parse_duration

    keep = parse_duration(retain, "--retain") if retain is not None else None
    return Services(rt, functions_file=functions_file, http=not no_http, interpreter=worker is not None,
                    worker=worker, housekeeping=housekeeping, retain=keep, secrets_file=secrets_file,
                    egress=node.egress if node is not None else None, concurrency=concurrency)


retain_option = click.option(
    "--retain", help="Delete finished programs this long after they end (e.g. 30d), unless their deployment "
                     "or schedule says otherwise (default: keep them).")


def notify_store(store: Any) -> None:
    store.notify()


def observe_options(fn: Any) -> Any:
    """--log-format, --log-level (and the OTEL_* variables, read by `start_observing`)."""
    fn = click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info",
                      show_default=True, envvar="FLOWMETAL_LOG_LEVEL",
                      help="Log events at this level and above (env FLOWMETAL_LOG_LEVEL).")(fn)
    fn = click.option("--log-format", type=click.Choice(["human", "json"]), default="human", show_default=True,
                      envvar="FLOWMETAL_LOG_FORMAT",
                      help="Log lines for people, or one JSON object per line (env FLOWMETAL_LOG_FORMAT).")(fn)
    return fn


metrics_port_option = click.option(
    "--metrics-port", type=click.IntRange(0, 65535), default=None, envvar="FLOWMETAL_METRICS_PORT",
    help="Serve Prometheus metrics at http://127.0.0.1:PORT/metrics (env FLOWMETAL_METRICS_PORT).")


def start_observing(log_format: str, log_level: str, service: str) -> None:
    """Logs to stderr in the chosen format; traces if the OTEL_* variables ask for them."""
    from flowmetal.observe import logs, tracing

    logs.configure(log_format, log_level)
    tracing.setup(service)


def stop_observing() -> None:
    from flowmetal.observe import tracing

    tracing.shutdown()


def serve_metrics(port: int | None, store: Any) -> None:
    """With --metrics-port: serve /metrics on loopback from a background thread."""
    if port is None:
        return
    import logging

    from flowmetal.observe import logs, metrics
    from flowmetal.store.base import STATUSES

    bound = metrics.serve_http(port, store.count_programs, STATUSES)
    logs.event(logs.logger("metrics"), logging.INFO, "serving metrics",
               url=f"http://127.0.0.1:{bound}/metrics")
