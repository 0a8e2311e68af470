"""Long-running processes: `flowmetal worker` and `flowmetal functions`."""

from __future__ import annotations

import click

from flowmetal.cli.common import (
    connector_options,
    make_runtime,
    make_services,
    open_store_at,
    retain_option,
    store_option,
)


@click.command()
@store_option
@click.option("--concurrency", type=int, default=16, show_default=True, help="Programs claimed at once.")
@connector_options
@retain_option
def worker(store_url: str | None, concurrency: int, functions_file: str | None, public_url: str | None,
           no_http: bool, retain: str | None) -> None:
    """Run programs from the store (and HTTP requests, --functions and the retention policy) until
    SIGTERM/SIGINT."""
    from flowmetal.runtime.worker import Worker

    rt = make_runtime(store_url, public_url)
    services = make_services(rt, functions_file, no_http, housekeeping=True, retain=retain)
    w = Worker(rt, concurrency=concurrency, functions=services.functions, http=services.http)
    w.install_signal_handlers()
    services.start()
    try:
        w.run()
    finally:
        services.stop()


@click.command()
@click.argument("file", type=click.Path(dir_okay=False))
@store_option
@click.option("--concurrency", type=int, default=8, show_default=True, help="Calls performed at once.")
@click.option("--lease", type=float, default=30.0, show_default=True,
              help="Seconds a call stays ours without a heartbeat (a killed worker's calls move on after it).")
def functions(file: str, store_url: str | None, concurrency: int, lease: float) -> None:
    """Serve the @flowmetal.function("name") functions of a Python file until SIGTERM/SIGINT."""
    from flowmetal.connectors.functions import FunctionWorker, load_functions_file

    fw = FunctionWorker(open_store_at(store_url), concurrency=concurrency, lease=lease)
    fw.add(load_functions_file(file))
    click.echo(f"flowmetal: serving {', '.join(sorted(fw.functions))}", err=True)
    fw.run()
