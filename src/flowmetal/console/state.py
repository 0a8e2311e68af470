"""A program's state for the console: the state at an event (`describe()` of the
machine the runtime rebuilds there), the variables that changed between two events,
and which source lines to mark (each task's current line, the failing line)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from flowmetal.runtime.driver import Runtime
from flowmetal.runtime.inspect import describe
from flowmetal.store.base import Event, ProgramRow

_FRAME = re.compile(r'File "([^"]*)", line (\d+)')


@dataclass
class State:
    seq: int
    tasks: list[dict[str, Any]] = field(default_factory=list)
    globals: dict[str, str] = field(default_factory=dict)
    error: str | None = None  # the state could not be rebuilt (said why)


def state_at(runtime: Runtime, row: ProgramRow, seq: int) -> State:
    """The program's tasks, stacks, variables and waits right after event `seq`."""
    try:
        machine, at = runtime.load(row, seq)
    except Exception as e:  # a program that no longer compiles, a history that does not replay
        return State(seq, error=f"{type(e).__name__}: {e}")
    waits = (row.waiting_on or {}).get("waits") if seq == row.last_seq else None
    desc = describe(machine, waits)
    return State(at, desc["tasks"], desc["globals"])


def variables(state: State) -> dict[str, str]:
    """Every variable of a state under a readable path: the globals' names, and each local's
    task and chain of functions (task 1, main, f, y)."""
    out = {f"globals › {name}": value for name, value in state.globals.items()}
    for task in state.tasks:
        path = f"task {task['task']}"
        for frame in task["stack"]:
            path += f" › {frame['function']}"
            for name, value in frame["locals"].items():
                out[f"{path} › {name}"] = value
    return out


@dataclass
class Change:
    name: str
    before: str | None  # None: not there before
    after: str | None  # None: gone after


def diff(before: State, after: State) -> list[Change]:
    """The variables that differ between two states (added, removed or changed)."""
    old, new = variables(before), variables(after)
    changes = [Change(k, old.get(k), new.get(k)) for k in dict.fromkeys([*old, *new]) if old.get(k) != new.get(k)]
    return changes


def marks(state: State | None, filename: str, last_event: Event | None, seq: int) -> dict[int, str]:
    """Source line -> "current" (a task's innermost frame), "caller" (an outer frame), or
    "failing" (where the program's uncaught error was raised, at its last event)."""
    out: dict[int, str] = {}
    if state is not None:
        for task in state.tasks:
            frames = [f for f in task["stack"] if f["file"] == filename]
            for i, frame in enumerate(frames):
                if out.get(frame["line"]) != "current":
                    out[frame["line"]] = "current" if i == len(frames) - 1 else "caller"
    if last_event is not None and last_event.type == "failed" and seq == last_event.seq:
        lines = [int(line) for file, line in _FRAME.findall(str(last_event.data.get("traceback") or ""))
                 if file == filename]
        if lines:
            out[lines[-1]] = "failing"
    return out
