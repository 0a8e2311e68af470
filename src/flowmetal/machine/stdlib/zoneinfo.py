"""`zoneinfo` for programs: IANA time zones read only from the `tzdata` package shipped with
Flowmetal, never from the host's /usr/share/zoneinfo, so a program's results do not depend on
the machine it runs on.

`ZoneInfo` is a subclass of CPython's whose constructor reads the zone's bytes from `tzdata`
(through `ZoneInfo.from_file`, CPython's own parser) and keeps one instance per key in this
process: as in CPython, `ZoneInfo(key) is ZoneInfo(key)`, which matters because datetimes that
share a tzinfo object compare and subtract as wall times. Zones are immutable, so programs can
share them; a snapshot writes the key and a restore takes the same instance.

Executors cannot read files once locked down: `preload()` (called by their warm-up) reads every
zone's bytes first.
"""

from __future__ import annotations

import io
import zoneinfo as _zoneinfo
from functools import cache
from importlib import resources
from typing import Any

from flowmetal.machine.access import register_kind
from flowmetal.machine.show import register_leaf
from flowmetal.machine.stdlib.context import builtin
from flowmetal.machine.values import FmSet

__all__ = ["ZoneInfo", "members", "preload", "register_codec", "zone"]

_DATA: dict[str, bytes] = {}  # key -> the zone file's bytes (read once)
_ZONES: dict[str, ZoneInfo] = {}  # key -> the one instance of this process


@cache
def available_keys() -> frozenset[str]:
    """The keys tzdata has (its `zones` list)."""
    return frozenset(resources.files("tzdata").joinpath("zones").read_text(encoding="utf-8").split())


def _data(key: str) -> bytes:
    data = _DATA.get(key)
    if data is None:
        data = _DATA[key] = resources.files("tzdata.zoneinfo").joinpath(key).read_bytes()
    return data


def preload() -> None:
    """Read every zone now (an executor does before it locks itself down)."""
    for key in available_keys():
        _data(key)


def _check_key(key: Any) -> str:
    if not isinstance(key, str):
        raise TypeError(f"expected str, bytes or os.PathLike object, not {type(key).__name__}")
    if key not in available_keys():
        raise _zoneinfo.ZoneInfoNotFoundError(f"No time zone found with key {key}")
    return key


class ZoneInfo(_zoneinfo.ZoneInfo):
    """CPython's ZoneInfo, built from the bytes of the `tzdata` package."""

    def __new__(cls, key: Any) -> ZoneInfo:  # (CPython's reads the host's files first)
        found = _ZONES.get(key) if isinstance(key, str) else None
        if found is None:
            key = _check_key(key)
            found = _ZONES[key] = cls.from_file(io.BytesIO(_data(key)), key=key)
        return found

    def __repr__(self) -> str:
        return f"zoneinfo.ZoneInfo(key={self.key!r})"


ZoneInfo.__module__ = "zoneinfo"
ZoneInfo.__qualname__ = "ZoneInfo"


def zone(key: str) -> ZoneInfo:
    return ZoneInfo(key)


def _available_timezones() -> FmSet:
    # (a program's set: iterated in a fixed order, sorted here, not in the host's hash order)
    return FmSet(sorted(available_keys()))


@cache
def members() -> dict[str, Any]:
    return {
        "ZoneInfo": ZoneInfo,
        "ZoneInfoNotFoundError": _zoneinfo.ZoneInfoNotFoundError,
        "available_timezones": builtin(_available_timezones, "available_timezones"),
    }


register_kind(ZoneInfo, "zoneinfo.ZoneInfo")
register_kind(_zoneinfo.ZoneInfoNotFoundError, "zoneinfo.ZoneInfoNotFoundError")
register_leaf(ZoneInfo)


def register_codec(codec: Any) -> None:
    codec.register(ZoneInfo, "zoneinfo.ZoneInfo", state=lambda z: z.key, build=lambda key: ZoneInfo(str(key)))
    codec.register_exception(_zoneinfo.ZoneInfoNotFoundError, "zoneinfo.ZoneInfoNotFoundError")
