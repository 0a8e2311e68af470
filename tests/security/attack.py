"""Running a hostile program and telling how it was stopped.

Every attack either is refused before it runs (`CheckFailed`, with a position), or
fails inside the program with a Python-like error. Each payload tries, once it has
escaped, to create a marker file (`touch`) in a fresh directory, so a test can also
assert that no host effect happened.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flowmetal.errors import CheckFailed
from flowmetal.lang.program import compile_program
from flowmetal.machine.api import EffectRequest, Limits, run_program


@dataclass
class Outcome:
    refused: list[str]  # check errors (FILE:LINE:COL: error: ...), if refused before running
    output: str = ""
    error_line: str | None = None
    result: Any = None

    @property
    def ran(self) -> bool:
        return not self.refused


def attempt(source: str, marker: Path | None = None, limits: Limits | None = None,
            effects: dict[str, Any] | None = None) -> Outcome:
    """Check and run `source` (the marker's path is substituted for MARKER); the host's own
    stdout/stderr are captured, so an escape that prints is seen as well."""
    if marker is not None:
        source = source.replace("MARKER", str(marker))
    try:
        program = compile_program(source, "attack.flow")
    except CheckFailed as e:
        return Outcome([d.format() for d in e.diagnostics])
    answers = effects or {}

    def handle(req: EffectRequest) -> Any:
        if req.name in answers:
            return answers[req.name]
        return req.args[0] if req.args else None

    from flowmetal.machine.objects import EffectFunction

    host = {name: EffectFunction(name) for name in ("probe", "sleep", *answers)}
    captured = io.StringIO()
    with contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured):
        res = run_program(program, limits=limits, host_module=host, handle_effect=handle)
    assert captured.getvalue() == "", f"the host printed: {captured.getvalue()!r}"
    return Outcome([], res.output, res.error_line, res.result)


@contextlib.contextmanager
def no_host_effect(tmp_path: Path) -> Iterator[Path]:
    """A marker path the payloads try to create; asserts afterwards that nothing was created
    in its directory and that no process was started (the child count is unchanged)."""
    marker = tmp_path / "escaped"
    before = _children()
    yield marker
    assert not marker.exists(), "the attack created a file on the host"
    assert list(tmp_path.iterdir()) == [], "the attack wrote into the host's file system"
    assert _children() <= before, "the attack started a process"


def _children() -> int:
    """How many processes this one has started and not yet reaped (Linux; 0 elsewhere)."""
    if sys.platform != "linux":
        return 0
    me = str(os.getpid())
    count = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            if stat.read_text().rsplit(")", 1)[1].split()[1] == me:
                count += 1
    return count


def stopped(outcome: Outcome, *kinds: str) -> None:
    """The attack was refused before running, or ended in one of the given Python errors."""
    if outcome.refused:
        assert all(":" in line and "error:" in line for line in outcome.refused), outcome.refused
        return
    assert outcome.error_line is not None, f"the attack ran to the end: {outcome.output!r} {outcome.result!r}"
    assert outcome.error_line.split(":")[0] in kinds, outcome.error_line
