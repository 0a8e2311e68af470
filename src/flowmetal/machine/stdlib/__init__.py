"""The pure standard modules programs may import besides json, math and re: one module
here per standard module, each with its members (`members()`), the registration of its
kinds of values (at import) and their snapshot encodings (`register_codec`).

What a module keeps per program (random's generator, calendar's first weekday) and what it reads
from outside without waiting (the clock, a random seed) go through `context.py`.

Their rows in the allow-list are `lang/surface_stdlib.py` (the workflow modules':
`lang/surface_workflow.py`); `machine/stdmods.py` builds the
module objects from `BUILDERS`, and `machine/snapshot.py` applies `CODEC_HOOKS`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flowmetal.machine.stdlib import base64 as _base64
from flowmetal.machine.stdlib import calendar as _calendar
from flowmetal.machine.stdlib import collections as _collections
from flowmetal.machine.stdlib import collections_abc as _collections_abc
from flowmetal.machine.stdlib import common as _common
from flowmetal.machine.stdlib import context as _context
from flowmetal.machine.stdlib import copy as _copy
from flowmetal.machine.stdlib import dataclasses as _dataclasses
from flowmetal.machine.stdlib import datetime as _datetime
from flowmetal.machine.stdlib import decimal as _decimal
from flowmetal.machine.stdlib import enums as _enums
from flowmetal.machine.stdlib import fractions as _fractions
from flowmetal.machine.stdlib import functools as _functools
from flowmetal.machine.stdlib import hashlib as _hashlib
from flowmetal.machine.stdlib import heapq as _heapq
from flowmetal.machine.stdlib import hmac as _hmac
from flowmetal.machine.stdlib import itertools as _itertools
from flowmetal.machine.stdlib import namedtuples as _namedtuples
from flowmetal.machine.stdlib import operator as _operator
from flowmetal.machine.stdlib import pprint as _pprint
from flowmetal.machine.stdlib import queue as _queue
from flowmetal.machine.stdlib import random as _random
from flowmetal.machine.stdlib import statistics as _statistics
from flowmetal.machine.stdlib import string as _string
from flowmetal.machine.stdlib import textwrap as _textwrap
from flowmetal.machine.stdlib import time as _time
from flowmetal.machine.stdlib import typing as _typing
from flowmetal.machine.stdlib import urllib as _urllib
from flowmetal.machine.stdlib import uuid as _uuid
from flowmetal.machine.stdlib import zoneinfo as _zoneinfo

__all__ = ["BUILDERS", "CODEC_HOOKS", "PRELUDE_OVERRIDES", "register_codecs"]

def _submodule(name: str) -> Any:
    from flowmetal.machine.stdmods import get_module

    return get_module(name)


# module name -> its members (one line per module)
BUILDERS: dict[str, Callable[[], dict[str, Any]]] = {
    "typing": _typing.members,
    "itertools": _itertools.members,
    "collections": lambda: {**_collections.members(), "abc": _submodule("collections.abc")},
    "collections.abc": _collections_abc.members,
    "base64": _base64.members,
    "binascii": _base64.binascii_members,
    "hashlib": _hashlib.members,
    "hmac": _hmac.members,
    "urllib": _urllib.members,
    "urllib.parse": _urllib.parse_members,
    "operator": _operator.members,
    "functools": _functools.members,
    "dataclasses": _dataclasses.members,
    "enum": _enums.members,
    "heapq": _heapq.members,
    "bisect": _heapq.bisect_members,
    "copy": _copy.members,
    "string": _string.members,
    "fractions": _fractions.members,
    "statistics": _statistics.members,
    "datetime": _datetime.members,
    "zoneinfo": _zoneinfo.members,
    "decimal": _decimal.members,
    "time": _time.members,
    "random": _random.members,
    "uuid": _uuid.members,
    "calendar": _calendar.members,
    "textwrap": _textwrap.members,
    "pprint": _pprint.members,
    "queue": _queue.members,
}

CODEC_HOOKS: list[Callable[[Any], None]] = [
    _common.register_codec,
    _typing.register_codec,
    _itertools.register_codec,
    _collections.register_codec,
    _namedtuples.register_codec,
    _collections_abc.register_codec,
    _context.register_codec,
    _base64.register_codec,
    _hashlib.register_codec,
    _hmac.register_codec,
    _urllib.register_codec,
    _operator.register_codec,
    _functools.register_codec,
    _dataclasses.register_codec,
    _enums.register_codec,
    _heapq.register_codec,
    _copy.register_codec,
    _string.register_codec,
    _fractions.register_codec,
    _statistics.register_codec,
    _datetime.register_codec,
    _zoneinfo.register_codec,
    _decimal.register_codec,
    _random.register_codec,
    _uuid.register_codec,
    _calendar.register_codec,
    _textwrap.register_codec,
    _pprint.register_codec,
    _queue.register_codec,
    _time.register_codec,
]

# module function -> the name of its resumable version in `lang/prelude.flow`, which the machine
# runs instead when an argument is a function that may wait (as for `sorted` or `map`)
PRELUDE_OVERRIDES: dict[Any, str] = {
    _functools.reduce: "_reduce",
}


def register_codecs(codec: Any) -> None:
    """Teach a snapshot codec every value type of these modules."""
    for hook in CODEC_HOOKS:
        hook(codec)
