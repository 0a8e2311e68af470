"""Long-running processes: `flowmetal worker` and `flowmetal functions`."""

from __future__ import annotations

import click

from flowmetal.cli.common import (
    NodeOptions,
    connector_options,
    make_runtime,
    make_services,
    metrics_port_option,
    node_options,
    observe_options,
    open_store_at,
    retain_option,
    secrets_option,
    serve_metrics,
    start_observing,
    stop_observing,
    store_option,
)


@click.command()
@store_option
@click.option("--concurrency", type=int, default=16, show_default=True, help="Programs claimed at once.")
@connector_options
@retain_option
@observe_options
@metrics_port_option
@node_options
def worker(store_url: str | None, concurrency: int, functions_file: str | None, public_url: str | None,
           no_http: bool, secrets_file: str | None, retain: str | None, log_format: str, log_level: str,
           metrics_port: int | None, node: NodeOptions) -> None:
    """Run programs from the store (and HTTP requests, --functions and the retention policy) until
    SIGTERM/SIGINT."""
    from flowmetal.observe import logs
    from flowmetal.runtime.worker import Worker

    start_observing(log_format, log_level, "flowmetal-worker")
    rt = make_runtime(store_url, public_url, node)
    services = make_services(rt, functions_file, no_http, housekeeping=True, retain=retain,
                             secrets_file=secrets_file, node=node, concurrency=concurrency)
    w = Worker(rt, concurrency=concurrency, functions=services.functions, http=services.http)
    w.install_signal_handlers()
    serve_metrics(metrics_port, rt.store)
    services.start()
    # (started when the executors are up, slices can run; the worker claims meanwhile, and the
    # calls a killed predecessor held are run again meanwhile)
    w.wait_ready()
    logs.logger("worker").info("worker started", extra={"fields": {
        "store": rt.store.url, "concurrency": concurrency,
        "functions": sorted(services.functions.functions) if services.functions is not None else None}})
    try:
        w.run()
    finally:
        services.stop()
        logs.logger("worker").info("worker stopped")
        stop_observing()


@click.command()
@click.argument("file", type=click.Path(dir_okay=False))
@store_option
@click.option("--concurrency", type=int, default=8, show_default=True, help="Calls performed at once.")
@click.option("--lease", type=float, default=30.0, show_default=True,
              help="Seconds a call stays ours without a heartbeat (a killed worker's calls move on after it).")
@secrets_option
@observe_options
@metrics_port_option
def functions(file: str, store_url: str | None, concurrency: int, lease: float, secrets_file: str | None,
              log_format: str, log_level: str, metrics_port: int | None) -> None:
    """Serve the @flowmetal.function("name") functions of a Python file until SIGTERM/SIGINT."""
    from flowmetal.connectors.functions import FunctionWorker, load_functions_file
    from flowmetal.connectors.secrets import SecretSource

    start_observing(log_format, log_level, "flowmetal-functions")
    fw = FunctionWorker(open_store_at(store_url), concurrency=concurrency, lease=lease,
                        secrets=SecretSource(secrets_file))
    fw.add(load_functions_file(file))
    click.echo(f"flowmetal: serving {', '.join(sorted(fw.functions))}", err=True)
    serve_metrics(metrics_port, fw.store)
    try:
        fw.run()
    finally:
        stop_observing()
