"""`flowmetal logs ID [--follow]`: a program's output and events as they happen, one
line per event (`--json`: the events as JSON lines), until it ends with --follow."""

from __future__ import annotations

import datetime
import json

import click

from flowmetal.cli.common import emit, json_option, open_store_at, store_option
from flowmetal.store.base import FINISHED

POLL = 0.5  # seconds between looks at the store while following (a notify wakes it sooner)


def _line(entry: object) -> str:
    from flowmetal.runtime.timeline import Entry

    assert isinstance(entry, Entry)
    when = datetime.datetime.fromtimestamp(entry.at, tz=datetime.UTC).strftime("%H:%M:%S.%f")[:-3]
    lines = entry.summary.split("\n") or [""]
    head = f"{entry.seq:>5} {when} {entry.type:<16} "
    return "\n".join([head + lines[0], *(" " * len(head) + rest for rest in lines[1:])]) + "\n"


@click.command()
@click.argument("program_id")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new events until the program ends.")
@click.option("--after", type=click.IntRange(0), default=0, help="Start after this event number.")
@store_option
@json_option
def logs(program_id: str, follow: bool, after: int, store_url: str | None, as_json: bool) -> None:
    """A program's output and events, one per line (`--follow`: until it ends)."""
    from flowmetal.runtime.timeline import Timeline

    store = open_store_at(store_url, existing=True)
    store.get_program(program_id)  # UnknownProgram: one clear line
    summaries = Timeline(store.list_calls(program_id))
    summaries.feed(store.events(program_id, 0, after))  # the requests answered later
    shown = after
    listener = store.listener() if follow else None
    try:
        while True:
            row = store.get_program(program_id)
            events = store.events(program_id, shown)
            if events:
                summaries.by_key.update((c.key, c) for c in store.list_calls(program_id))
                for entry, event in zip(summaries.feed(events), events):
                    emit(json.dumps(event.to_json()) + "\n" if as_json else _line(entry))
                shown = events[-1].seq
            if not follow or (row.status in FINISHED and row.last_seq <= shown):
                return
            assert listener is not None
            listener.wait(POLL)
    except KeyboardInterrupt:
        return
    finally:
        if listener is not None:
            listener.close()
        store.close()


__all__ = ["logs"]
