"""Secrets in programs: `secret("NAME")` is an opaque handle, never the value.

A program can pass a handle to `http.*` (a header's value, `auth=`, a field of `json=`,
`data=` or `params=`) and to `call()` arguments. The handle holds only the secret's name
(and an optional `format`, e.g. `"token {}"`); it prints, formats and compares as
`<secret NAME>`, and a snapshot stores the name. When a slice records a call, `extract`
replaces every handle in the request with the text `<secret NAME>` and lists where each one
was (`"secrets": [{"at": [...], "name": ..., "format": ...}]`); only the connector that
performs the request looks the value up, in its node's configuration, at request time
(connectors/secrets.py). So the event log, the calls table, exports and the API hold the
reference, never the value.
"""

from __future__ import annotations

import re
from typing import Any

from flowmetal.machine.access import register_kind
from flowmetal.machine.show import register_leaf

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")


class Secret:
    """What `secret("NAME")` returns: a reference to a value the program never sees."""

    __slots__ = ("_format", "_name")

    def __init__(self, name: str, format: str | None = None) -> None:
        self._name = name
        self._format = format

    @property
    def name(self) -> str:
        return self._name

    def __repr__(self) -> str:
        return f"<secret {self._name}>"

    def __eq__(self, other: object) -> bool:
        return type(other) is Secret and (other._name, other._format) == (self._name, self._format)

    def __hash__(self) -> int:
        return hash(("secret", self._name, self._format))


def secret(name: Any = None, *, format: Any = None) -> Secret:
    """`secret("NAME", format=None)`: a handle on the node's secret NAME. `format` puts the value
    into a text where `{}` stands (`format="token {}"`)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(f"secret(): the name must be letters, digits and _ (not starting with a digit), "
                         f"not {name!r}")
    if format is not None and (not isinstance(format, str) or format.count("{}") != 1):
        raise ValueError("secret(): format must be a str with one {} where the value goes, e.g. \"token {}\"")
    return Secret(name, format)


def extract(value: Any, at: tuple[Any, ...], refs: list[dict[str, Any]]) -> Any:
    """`value` with every secret handle replaced by `<secret NAME>`; where each was goes to `refs`."""
    kind = type(value)
    if kind is Secret:
        ref: dict[str, Any] = {"at": list(at), "name": value._name}
        if value._format is not None:
            ref["format"] = value._format
        refs.append(ref)
        return repr(value)
    if kind is dict:
        return {k: extract(v, (*at, k), refs) for k, v in value.items()}
    if kind is list or kind is tuple:
        return [extract(v, (*at, i), refs) for i, v in enumerate(value)]
    return value


def mentions_handle(text: Any) -> bool:
    """A text into which a handle was formatted (`f"Bearer {token}"`): a mistake, since only the
    handle itself is replaced by the value."""
    return isinstance(text, str) and "<secret " in text


def register_kinds() -> None:
    register_kind(Secret, "flowmetal.Secret")
    register_leaf(Secret)


def register_codec(codec: Any) -> None:
    codec.register(Secret, "fm.secret", state=lambda s: [s._name, s._format], build=lambda s: Secret(*s))
