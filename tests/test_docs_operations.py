"""Keep docs/operations.md and docs/console.md honest: every metric the code registers
is documented (and nothing else), every option of the documented commands is named, the
daylight-saving examples are what the scheduler computes, and the console's screenshots exist."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import click
from click.testing import CliRunner

from flowmetal.cli import main
from flowmetal.observe import metrics
from flowmetal.runtime.schedules import make_spec, next_tick, run_id

DOCS = Path(__file__).parent.parent / "docs"


def test_every_metric_is_documented_and_every_documented_one_exists() -> None:
    text = (DOCS / "operations.md").read_text()
    documented = set(re.findall(r"^\| `(flowmetal_[a-z_]+)` \|", text, re.M))
    registered = {"flowmetal_programs"}
    for family in metrics.REGISTRY.collect():
        suffix = "_total" if family.type == "counter" else ""
        registered.add(family.name + suffix)
    assert documented == registered


def test_the_commands_options_are_documented() -> None:
    text = (DOCS / "operations.md").read_text()
    for command, options in (("worker", ("--log-format", "--log-level", "--metrics-port")),
                             ("functions", ("--log-format", "--log-level", "--metrics-port")),
                             ("serve", ("--log-format", "--log-level")),
                             ("logs", ("--follow", "--json", "--after"))):
        help_text = CliRunner().invoke(main, [command, "--help"]).output
        for option in options:
            assert option in help_text, (command, option)
            assert option in text, option


def test_console_screenshots_exist() -> None:
    text = (DOCS / "console.md").read_text()
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert images == ["console-programs.png", "console-program.png"]
    for name in images:
        data = (DOCS / name).read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000


# -- deployments, schedules, hooks, retention ----------------------------------------

DOC = (DOCS / "operations.md").read_text()
README = (Path(__file__).parent.parent / "README.md").read_text()


def _command(*path: str) -> click.Command:
    cmd: click.Command = main
    for name in path:
        assert isinstance(cmd, click.Group)
        cmd = cmd.commands[name]
    return cmd


def test_every_option_is_documented() -> None:
    commands = [("deploy",), ("deployments",), ("prune",), *[("schedule", c) for c in _group("schedule")],
                *[("hook", c) for c in _group("hook")]]
    for path in commands:
        assert f"{path[-1]}" in DOC, path
        for param in _command(*path).params:
            for opt in getattr(param, "opts", []):
                if opt.startswith("--") and opt not in ("--store", "--json"):
                    assert opt in DOC, (path, opt)
    assert "--retain" in DOC and "flowmetal worker --retain" in DOC


def _group(name: str) -> list[str]:
    group = _command(name)
    assert isinstance(group, click.Group)
    return sorted(group.commands)


def test_the_daylight_saving_examples_are_what_the_scheduler_does() -> None:
    spec = make_spec("30 2 * * *", None, "Europe/Paris")

    def after(text: str) -> str:
        t = next_tick(spec, dt.datetime.fromisoformat(text).timestamp())
        assert t is not None
        return run_id("x", t, spec.tz).split("T")[1]

    assert after("2026-03-29T00:00:00+01:00") == "03:00:00+02:00" and "`03:00+02:00`" in DOC
    assert after("2026-10-25T00:00:00+02:00") == "02:30:00+02:00" and "`02:30+02:00` only" in DOC
    assert after("2026-10-25T02:31:00+02:00") == "02:30:00+01:00"  # the next day's: not the repeat
    t = next_tick(spec, dt.datetime.fromisoformat("2026-10-25T02:31:00+02:00").timestamp())
    assert t is not None and dt.datetime.fromtimestamp(t, spec.tz).day == 26


def test_the_readme_shows_a_schedule() -> None:
    using = README.split("## Using it", 1)[1].split("\n## ", 1)[0]
    assert "flowmetal schedule create nightly nightly --cron \"0 2 * * *\" --tz Europe/Paris" in using
    assert "nightly@2026-12-08T02:00:00+01:00" in using
