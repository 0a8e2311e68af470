"""`urllib.parse` for programs (and `urllib`, whose one member is `parse`): the host's own
functions, which compute on strings only, and its result tuples as values that snapshots keep.

`urlencode(quote_via=...)` calls back: a program function given there runs like any other
callback of a host function (it may not wait)."""

from __future__ import annotations

import urllib.parse as _parse
from functools import cache
from typing import Any

from flowmetal.machine.access import register_kind

__all__ = ["RESULT_TYPES", "members", "parse_members", "register_codec"]

PARSE_NAMES = ["urlparse", "urlunparse", "urljoin", "urldefrag", "urlsplit", "urlunsplit", "urlencode", "parse_qs", "parse_qsl", "quote", "quote_plus", "quote_from_bytes", "unquote", "unquote_plus", "unquote_to_bytes", "DefragResult", "ParseResult", "SplitResult", "DefragResultBytes", "ParseResultBytes", "SplitResultBytes"]
RESULT_TYPES: tuple[type, ...] = (
    _parse.ParseResult, _parse.SplitResult, _parse.DefragResult,
    _parse.ParseResultBytes, _parse.SplitResultBytes, _parse.DefragResultBytes,
)


@cache
def parse_members() -> dict[str, Any]:
    return {name: getattr(_parse, name) for name in PARSE_NAMES}


@cache
def members() -> dict[str, Any]:
    from flowmetal.machine.stdmods import get_module

    return {"parse": get_module("urllib.parse")}


for _t in RESULT_TYPES:
    register_kind(_t, _t.__name__)


def register_codec(codec: Any) -> None:
    for t in RESULT_TYPES:
        codec.register(t, f"urllib.parse.{t.__name__}", state=tuple, build=lambda s, t=t: t(*s))
