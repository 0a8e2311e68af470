"""Keep docs/operations.md and docs/console.md honest: every metric the code registers
is documented (and nothing else), every option of the observing commands is named,
and the console's screenshots exist."""

from __future__ import annotations

import re
from pathlib import Path

from click.testing import CliRunner

from flowmetal.cli import main
from flowmetal.observe import metrics

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
