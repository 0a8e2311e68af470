"""Load the prelude (`lang/prelude.flow`) and map CPython built-ins to its
resumable versions."""

from __future__ import annotations

import builtins as host
from functools import cache
from importlib import resources
from typing import Any

from flowmetal.lang.program import Program, compile_program
from flowmetal.machine.values import FmFrozenSet, FmSet

PRELUDE_FILENAME = "<prelude>"
_MISSING = object()

# built-in object (as programs see it) -> prelude function name
_OVERRIDDEN = {
    host.list: "list",
    host.tuple: "tuple",
    FmSet: "set",
    FmFrozenSet: "frozenset",
    host.dict: "dict",
    host.sum: "sum",
    host.any: "any",
    host.all: "all",
    host.next: "next",
    host.sorted: "sorted",
    host.min: "min",
    host.max: "max",
    host.map: "map",
    host.filter: "filter",
    host.zip: "zip",
    host.enumerate: "enumerate",
}


@cache
def program() -> Program:
    from flowmetal.lang import program_cache

    file = resources.files("flowmetal.lang").joinpath("prelude.flow")
    source = file.read_text(encoding="utf-8")
    key = program_cache.cache_key(source)
    path = program_cache.cache_path(str(file), key)
    compiled = program_cache.load(path, key)
    if compiled is None:
        compiled = compile_program(source, PRELUDE_FILENAME, checked=False, effect_modules=frozenset(),
                                   all_resumable=True)
        program_cache.save(path, key, compiled)
    return compiled


def _sort_by_keys(items: list[Any], keys: list[Any], reverse: bool) -> list[Any]:
    order = host.sorted(range(len(items)), key=keys.__getitem__, reverse=reverse)
    return [items[i] for i in order]


def _sort_in_place(items: list[Any], keys: list[Any], reverse: bool) -> None:
    items[:] = _sort_by_keys(items, keys, reverse)


@cache
def prelude_builtins() -> dict[str, Any]:
    from flowmetal.machine import classes
    from flowmetal.machine.objects import Generator

    return {
        "_host_list": host.list,
        "_host_tuple": host.tuple,
        "_host_set": FmSet,
        "_host_frozenset": FmFrozenSet,
        "_host_dict": host.dict,
        "_host_sum": host.sum,
        "_host_next": host.next,
        "_is_generator": lambda x: type(x) is Generator,
        "_sort_by_keys": _sort_by_keys,
        "_sort_in_place": _sort_in_place,
        "_less": lambda a, b: a < b,
        "_greater": lambda a, b: a > b,
        "_MISSING": _MISSING,
        "_new_instance": classes.new_instance,
        "_init_of": classes.init_of,
        "_split_init": classes.split_init,
        "_check_init_result": classes.check_init_result,
    }


def overrides(prelude_globals: dict[str, Any]) -> dict[Any, Any]:
    from flowmetal.machine.stdlib import (
        PRELUDE_OVERRIDES,  # the standard modules' (functools.reduce)
    )

    table = {obj: prelude_globals[name] for obj, name in _OVERRIDDEN.items()}
    table.update((obj, prelude_globals[name]) for obj, name in PRELUDE_OVERRIDES.items())
    return table
