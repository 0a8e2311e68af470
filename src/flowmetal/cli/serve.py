"""`flowmetal serve`: the HTTP API (flowmetal.api) on uvicorn, and — unless
`--no-worker` — everything else one process can do next to it: the interpreter
(with its timers), the HTTP request connector and `--functions`.

SIGTERM/SIGINT: uvicorn stops accepting requests and finishes the ones in flight
(long-polls return early), then the background services stop and the process
exits 0.
"""

from __future__ import annotations

import ipaddress
import os
import signal
import socket
import sys
from typing import Any

import click

from flowmetal.cli.common import (
    NodeOptions,
    node_options,
    observe_options,
    retain_option,
    secrets_option,
    start_observing,
    stop_observing,
)
from flowmetal.errors import UsageError

DEFAULT_MAX_BODY = 1_048_576


def _bind(host: str, port: int) -> socket.socket:
    """Bind before serving, so a taken port is one clear error (and --port 0 picks a free one)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise UsageError(f"--host {host}: {e.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as e:
        sock.close()
        raise UsageError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    sock.set_inheritable(True)
    return sock


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _services(runtime: Any, functions_file: str | None, worker: bool, http: bool, concurrency: int,
              retain: str | None, secrets_file: str | None, egress: Any) -> Any:
    """What runs next to the API in this process (background threads; `.start()`, `.stop()`)."""
    from flowmetal.connectors.services import Services
    from flowmetal.durations import parse_duration

    keep = parse_duration(retain, "--retain") if retain is not None else None
    return Services(runtime, functions_file=functions_file, interpreter=worker, http=http,
                    concurrency=concurrency, housekeeping=worker, retain=keep, secrets_file=secrets_file,
                    egress=egress)


@click.command()
@click.option("--store", "store_url", envvar="FLOWMETAL_STORE", default=None,
              help="Store URL (default: $FLOWMETAL_STORE or sqlite:///flowmetal.db).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8400, show_default=True,
              help="Port to listen on (0: any free port; the line printed at start names it).")
@click.option("--token", envvar="FLOWMETAL_API_TOKEN",
              help="Require `Authorization: Bearer TOKEN` on every route but /health and /callbacks/* "
                   "(env FLOWMETAL_API_TOKEN).")
@click.option("--public-url", envvar="FLOWMETAL_PUBLIC_URL",
              help="This server's base URL as the outside sees it, for callback() URLs "
                   "(env FLOWMETAL_PUBLIC_URL; default http://HOST:PORT).")
@click.option("--functions", "functions_file", type=click.Path(dir_okay=False),
              help="A Python file whose @flowmetal.function(\"name\") functions this process serves.")
@click.option("--no-worker", is_flag=True,
              help="Only serve the API (and --functions): run no programs and no HTTP requests here.")
@click.option("--no-http", is_flag=True, help="Do not run the HTTP request connector here.")
@click.option("--concurrency", type=click.IntRange(1, 1024), default=16, show_default=True,
              help="Programs the in-process worker claims at once.")
@click.option("--max-body", type=click.IntRange(1), default=DEFAULT_MAX_BODY, show_default=True,
              help="Largest accepted request body, in bytes.")
@click.option("--callback-max-body", type=click.IntRange(1), default=DEFAULT_MAX_BODY, show_default=True,
              help="Largest accepted callback request body, in bytes.")
@click.option("--max-wait", type=click.FloatRange(0.0, 3600.0), default=60.0, show_default=True,
              help="The longest a long-poll (a result, a function claim) is held, in seconds.")
@secrets_option
@retain_option
@observe_options
@node_options
def serve(store_url: str | None, host: str, port: int, token: str | None, public_url: str | None,
          functions_file: str | None, no_worker: bool, no_http: bool, concurrency: int, max_body: int,
          callback_max_body: int, max_wait: float, secrets_file: str | None, retain: str | None, log_format: str,
          log_level: str, node: NodeOptions) -> None:
    """Serve the HTTP API (JSON; the OpenAPI document is at /openapi.json), the web console
    (at /ui) and metrics (at /metrics) until SIGTERM/SIGINT."""
    import uvicorn

    from flowmetal.api import create_app, drain
    from flowmetal.observe import logs
    from flowmetal.runtime.driver import Runtime
    from flowmetal.store import open_store

    start_observing(log_format, log_level, "flowmetal-serve")
    store = open_store(store_url)
    sock = _bind(host, port)
    try:
        base = f"http://{_url_host(host)}:{sock.getsockname()[1]}"
        public = (public_url or base).rstrip("/")
        # the API's own runtime only starts and inspects programs; the worker's keeps its
        # machines between slices, which an inspection must not take from it
        services = _services(Runtime(store, reuse_machines=True, public_url=public, executors=node.executors,
                                     programs=node.programs), functions_file,
                             worker=not no_worker, http=not (no_worker or no_http), concurrency=concurrency,
                             retain=retain, secrets_file=secrets_file, egress=node.egress)
        # (its replays for /state run in an executor of their own, under the slice budget)
        app = create_app(store, Runtime(store, public_url=public, programs=node.programs, executors=node.executors),
                         token=token or None, max_body=max_body, callback_max_body=callback_max_body,
                         max_wait=max_wait)

        class Server(uvicorn.Server):
            async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
                drain(app)  # long-polls answer now instead of holding the shutdown up
                await super().shutdown(sockets)

        # (log_config=None: uvicorn's errors go through our handler, in our format)
        server = Server(uvicorn.Config(app, log_level="warning", lifespan="on", server_header=False,
                                       timeout_graceful_shutdown=10, log_config=None))
    except BaseException:
        sock.close()
        raise
    if not token and not _is_loopback(host):
        click.echo(f"flowmetal: warning: serving on {host} without --token: anyone who can reach it can "
                   "start and control programs", err=True)

    # uvicorn handles SIGINT/SIGTERM while it runs, then restores the handlers it found and
    # re-raises the signal: these ones let the services below stop instead of dying mid-slice
    stopping_services = False

    def on_signal(signum: int, frame: Any) -> None:
        if stopping_services:  # a second signal while stopping: the user insists
            os._exit(128 + signum)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    services.start()
    click.echo(f"flowmetal: serving on {base} ({store.url})")
    logs.logger("serve").info("serving", extra={"fields": {
        "url": base, "console": f"{base}/ui", "store": store.url, "worker": not no_worker}})
    try:
        server.run(sockets=[sock])
    finally:
        stopping_services = True
        services.stop()
        sock.close()
        store.close()
        logs.logger("serve").info("stopped")
        stop_observing()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not server.started:
        click.echo("flowmetal: error: the server failed to start (see above)", err=True)
        sys.exit(1)
