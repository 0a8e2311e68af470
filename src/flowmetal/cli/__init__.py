"""The `flowmetal` command line: one module per command group.

Exit codes: 0 success; 1 the program raised an uncaught exception (or hit a
limit); 2 the program is invalid or the command was used wrongly.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import click

from flowmetal import __version__
from flowmetal.errors import CheckFailed, FlowmetalError


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


from flowmetal.cli.db import db  # noqa: E402  (commands are registered after `main`)
from flowmetal.cli.deploy import deploy, deployments  # noqa: E402
from flowmetal.cli.hooks import hook  # noqa: E402
from flowmetal.cli.logs import logs  # noqa: E402
from flowmetal.cli.move import export_cmd, fork, import_cmd  # noqa: E402
from flowmetal.cli.programs import (  # noqa: E402
    calls,
    cancel,
    check,
    history,
    inspect,
    list_,
    result,
    resume,
    run,
    send,
    start,
    status,
)
from flowmetal.cli.retention import prune  # noqa: E402
from flowmetal.cli.schedules import schedule  # noqa: E402
from flowmetal.cli.serve import serve  # noqa: E402
from flowmetal.cli.workers import functions, worker  # noqa: E402

for _command in (check, run, start, list_, status, result, send, history, inspect, logs, calls, cancel, resume, worker,
                 functions, export_cmd, import_cmd, fork, serve, db, deploy, deployments,
                 prune, schedule, hook):
    main.add_command(_command)
