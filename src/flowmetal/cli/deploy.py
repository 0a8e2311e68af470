"""Deployments: `flowmetal deploy FILE... [--name NAME]` and `flowmetal deployments [NAME]`."""

from __future__ import annotations

import datetime
import json
import os
import time
from pathlib import Path

import click

from flowmetal.cli.common import json_option, open_store_at, store_option
from flowmetal.durations import format_duration, parse_duration


def when(t: float | None) -> str:
    if t is None:
        return "-"
    return datetime.datetime.fromtimestamp(t, tz=datetime.UTC).isoformat(timespec="seconds")


@click.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--name", help="The deployment's name (default: the first file's name without .flow).")
@click.option("--retain", help="Keep this deployment's finished programs this long (e.g. 30d; 'none': "
                               "the node's default).")
@store_option
@json_option
def deploy(files: tuple[str, ...], name: str | None, retain: str | None, store_url: str | None,
           as_json: bool) -> None:
    """Store FILE (the main program) and every program it start()s by path under a name.

    Deploying changed sources makes a new version; `flowmetal start NAME` starts the latest,
    and programs already running stay on the version they started with."""
    from flowmetal.lang.program import compile_cached
    from flowmetal.runtime.deployments import check_name, collect_bundle

    name = check_name(name or Path(files[0]).name.removesuffix(".flow"))
    main, bundle = collect_bundle(list(files))
    root = Path(files[0]).resolve().parent
    for path, (_, text) in bundle.items():
        compile_cached(text, os.path.relpath(root / path))  # raises CheckFailed, naming the file as typed
    keep = None if retain is None or retain.lower() == "none" else parse_duration(retain, "--retain")
    store = open_store_at(store_url)
    dep, created = store.deploy(name, main, bundle, time.time(), retain=keep, set_retain=retain is not None)
    if as_json:
        click.echo(json.dumps({**dep.to_json(), "created": created}))
        return
    what = "deployed" if created else "unchanged:"
    others = f" (+{len(dep.files) - 1} started program{'s' if len(dep.files) > 2 else ''})" if len(dep.files) > 1 else ""
    click.echo(f"{what} {dep.name} version {dep.version}{others}")


@click.command()
@click.argument("name", required=False)
@store_option
@json_option
def deployments(name: str | None, store_url: str | None, as_json: bool) -> None:
    """List deployments (their latest versions), or every version of NAME."""
    rows = open_store_at(store_url).list_deployments(name)
    if as_json:
        click.echo(json.dumps([r.to_json() for r in rows]))
        return
    for r in rows:
        retain = f"  retain={format_duration(r.retain)}" if r.retain is not None else ""
        click.echo(f"{r.name}  version {r.version}{' (latest)' if name and r.version == r.latest else ''}  "
                   f"{r.main}  files={len(r.files)}  {when(r.created_at)}{retain}")
