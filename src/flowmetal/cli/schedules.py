"""`flowmetal schedule ...`: create, list, pause, resume, trigger, delete and backfill schedules."""

from __future__ import annotations

import json
import time
from typing import Any

import click

from flowmetal.cli.common import json_option, open_store_at, parse_args, store_option
from flowmetal.durations import format_duration, parse_duration
from flowmetal.store.operations import OVERLAP_POLICIES, ScheduleExists, ScheduleRow


def describe(s: ScheduleRow, now: float) -> dict[str, Any]:
    from flowmetal.runtime.schedules import schedule_json

    return schedule_json(s, now)


@click.group()
def schedule() -> None:
    """Run a deployment on a cron schedule in a time zone, or every N seconds."""


@schedule.command()
@click.argument("name")
@click.argument("program")
@click.option("--cron", help="A cron expression: minute hour day month weekday, e.g. '0 2 * * *'.")
@click.option("--every", help="Instead of --cron: a fixed interval, e.g. 90s, 15m, 1h (ticks aligned to the epoch).")
@click.option("--tz", default="UTC", show_default=True, help="The time zone the cron expression is read in.")
@click.option("--args", "raw_args", help="The runs' arguments as a JSON object.")
@click.option("--overlap", type=click.Choice(list(OVERLAP_POLICIES)), default="skip", show_default=True,
              help="A tick while the last run still runs: skip it, buffer one, allow all, or cancel the "
                   "running one.")
@click.option("--catchup", default="1h", show_default=True,
              help="Start ticks missed while no worker ran if they are at most this old.")
@click.option("--jitter", default="0s", show_default=True, help="Delay each start by up to this much.")
@click.option("--retain", help="Keep the runs this long after they end (default: the deployment's or node's).")
@click.option("--paused", is_flag=True, help="Create it paused.")
@store_option
@json_option
def create(name: str, program: str, cron: str | None, every: str | None, tz: str, raw_args: str | None,
           overlap: str, catchup: str, jitter: str, retain: str | None, paused: bool, store_url: str | None,
           as_json: bool) -> None:
    """Create schedule NAME running PROGRAM: a deployment's name, or a .flow file (deployed as NAME)."""
    from flowmetal.runtime.deployments import is_deployment_name
    from flowmetal.runtime.schedules import new_schedule

    now = time.time()
    row = new_schedule(name, name if not is_deployment_name(program) else program, parse_args(raw_args),
                       cron=cron, every=parse_duration(every, "--every") if every is not None else None, tz=tz,
                       overlap=overlap, catchup=parse_duration(catchup, "--catchup"),
                       jitter=parse_duration(jitter, "--jitter"),
                       retain=parse_duration(retain, "--retain") if retain is not None else None, paused=paused,
                       now=now)
    store = open_store_at(store_url)
    if any(s.name == name for s in store.list_schedules()):  # before deploying anything for it
        raise ScheduleExists(f"a schedule named {name!r} exists already (delete it first)")
    if not is_deployment_name(program):
        from flowmetal.lang.program import compile_cached
        from flowmetal.runtime.deployments import collect_bundle

        main, bundle = collect_bundle([program])
        compile_cached(bundle[main][1], program)  # raises CheckFailed
        dep, _ = store.deploy(name, main, bundle, now)
        click.echo(f"deployed {program} as {dep.name} version {dep.version}", err=True)
    store.create_schedule(row, now)
    store.notify()
    out = describe(store.get_schedule(name), now)
    click.echo(json.dumps(out) if as_json else f"{name}: next run {out['next_run']}")


@schedule.command(name="list")
@store_option
@json_option
def list_(store_url: str | None, as_json: bool) -> None:
    """Schedules with their next run."""
    now = time.time()
    rows = [describe(s, now) for s in open_store_at(store_url).list_schedules()]
    if as_json:
        click.echo(json.dumps(rows))
        return
    for s in rows:
        when = f"--cron '{s['cron']}' --tz {s['tz']}" if s["cron"] else f"--every {format_duration(s['every'])}"
        state = "paused" if s["paused"] else f"next {s['next_run']}" if s["next_run"] else "no more runs"
        counts = f"runs={s['runs']} skipped={s['skipped']} missed={s['missed']}"
        error = f"  error: {s['last_error']}" if s["last_error"] else ""
        click.echo(f"{s['name']}  {s['program']}  {when}  overlap={s['overlap']}  {state}  {counts}{error}")


def _one(action: str) -> Any:
    """pause, resume, trigger and delete: NAME and --store."""

    def make(fn: Any) -> Any:
        fn = store_option(fn)
        fn = click.argument("name")(fn)
        return schedule.command(name=action)(fn)

    return make


@_one("pause")
def pause_cmd(name: str, store_url: str | None) -> None:
    """Stop starting runs (the running ones go on)."""
    from flowmetal.runtime.schedules import pause

    pause(open_store_at(store_url), name, time.time())
    click.echo(f"{name}: paused")


@_one("resume")
def resume_cmd(name: str, store_url: str | None) -> None:
    """Start runs again, from the next tick on (ticks that fell while paused are not started)."""
    from flowmetal.runtime.schedules import resume

    store = open_store_at(store_url)
    s = resume(store, name, time.time())
    store.notify()
    click.echo(f"{name}: next run {describe(s, time.time())['next_run']}")


@_one("trigger")
def trigger_cmd(name: str, store_url: str | None) -> None:
    """Start a run now, whatever the overlap policy; prints its id."""
    from flowmetal.runtime.schedules import trigger

    click.echo(trigger(open_store_at(store_url), name, time.time()))


@_one("delete")
def delete_cmd(name: str, store_url: str | None) -> None:
    """Delete the schedule (its runs are left alone)."""
    open_store_at(store_url).delete_schedule(name)


@schedule.command(name="backfill")
@click.argument("name")
@click.option("--from", "start", required=True, help="ISO-8601 time (in the schedule's zone without an offset).")
@click.option("--to", "end", required=True, help="ISO-8601 time; ticks at both ends included.")
@store_option
def backfill_cmd(name: str, start: str, end: str, store_url: str | None) -> None:
    """Start now a run for every tick between two times that has none; prints their ids."""
    from flowmetal.runtime.schedules import backfill, parse_when

    store = open_store_at(store_url)
    tz = store.get_schedule(name).tz
    for program_id in backfill(store, name, parse_when(start, tz, "--from"), parse_when(end, tz, "--to"),
                               time.time()):
        click.echo(program_id)
