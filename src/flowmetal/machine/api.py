"""The machine's public face: compile a program, run it, step it through effects."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from flowmetal.lang.program import Program, compile_program
from flowmetal.machine.limits import Limits
from flowmetal.machine.machine import Blocked, Completed, Failed, Machine, Outcome
from flowmetal.machine.objects import EffectFunction, EffectRequest

__all__ = [
    "Blocked",
    "Completed",
    "EffectFunction",
    "EffectRequest",
    "Failed",
    "Limits",
    "Machine",
    "Outcome",
    "Program",
    "RunResult",
    "compile_program",
    "run_program",
    "run_source",
]


@dataclass
class RunResult:
    output: str
    result: Any
    error_line: str | None
    traceback: str | None
    error: BaseException | None = None


def run_program(
    program: Program,
    args: Mapping[str, Any] | None = None,
    *,
    limits: Limits | None = None,
    host_module: Mapping[str, Any] | None = None,
    handle_effect: Callable[[EffectRequest], Any] | None = None,
    on_output: Callable[[str], None] | None = None,
) -> RunResult:
    """Run to the end, answering effects synchronously with `handle_effect`."""
    machine = Machine(program, args, limits=limits, host_module=host_module)
    chunks: list[str] = []
    while True:
        outcome = machine.run()
        text = machine.take_output()
        if text:
            chunks.append(text)
            if on_output is not None:
                on_output(text)
        if isinstance(outcome, Completed):
            return RunResult("".join(chunks), outcome.value, None, None)
        if isinstance(outcome, Failed):
            return RunResult("".join(chunks), None, outcome.error_line, outcome.traceback, outcome.error)
        assert isinstance(outcome, Blocked)
        if handle_effect is None:
            raise RuntimeError(f"the program requested an effect ({outcome.requests[0].name}) but none can run here")
        for req in outcome.requests:
            try:
                value = handle_effect(req)
            except Exception as e:  # delivered to the program as its exception
                machine.reject(req.id, e)
            else:
                machine.resolve(req.id, value)


def run_source(source: str, filename: str = "<string>", args: Mapping[str, Any] | None = None,
               limits: Limits | None = None) -> RunResult:
    return run_program(compile_program(source, filename), args, limits=limits)
