"""`flowmetal prune`: delete finished programs with their events, checkpoints, messages,
calls and callbacks."""

from __future__ import annotations

import json
import time

import click

from flowmetal.cli.common import json_option, open_store_at, store_option
from flowmetal.durations import parse_duration
from flowmetal.store.base import FINISHED
from flowmetal.store.operations import PruneRule


@click.command()
@click.option("--older-than", "older_than", help="Delete programs that finished more than this long ago (e.g. "
                                                 "30d), whatever their retention. Default: those whose own "
                                                 "retention (deployment, schedule) ran out.")
@click.option("--retain", help="Without --older-than: the retention of programs that have none of their own.")
@click.option("--status", "statuses", multiple=True, type=click.Choice(list(FINISHED)),
              help="Only programs that ended so (repeatable; default: every finished status).")
@click.option("--batch", type=click.IntRange(1, 10000), default=200, show_default=True,
              help="Programs deleted per transaction.")
@store_option
@json_option
def prune(older_than: str | None, retain: str | None, statuses: tuple[str, ...], batch: int,
          store_url: str | None, as_json: bool) -> None:
    """Delete finished programs and everything of theirs, in batches (safe while workers run)."""
    rule = PruneRule(time.time(), older_than=parse_duration(older_than, "--older-than") if older_than else None,
                     default_retain=parse_duration(retain, "--retain") if retain else None,
                     statuses=statuses or FINISHED, batch=batch)
    report = open_store_at(store_url).prune_all(rule, pause=lambda: time.sleep(0.05))
    if as_json:
        click.echo(json.dumps(report.counts))
        return
    rest = ", ".join(f"{n} {table}" for table, n in report.counts.items() if table != "programs")
    click.echo(f"pruned {report.programs} program{'' if report.programs == 1 else 's'} ({rest})")
