"""Values of every kind the pure standard modules hand out (machine/stdlib/), made the way
programs make them: the closure tests (test_surface_closed.py) read every allowed attribute
of each and check that what comes back is a program value."""

from __future__ import annotations

from typing import Any

from flowmetal.machine.stdmods import get_module


def stdlib_values() -> list[Any]:
    typing = get_module("typing")
    values: list[Any] = [typing.List, typing.Optional[int], typing.TypeVar("T"), typing.NewType("Id", int)]
    return values
