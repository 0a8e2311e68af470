"""`uuid` for programs: CPython's `UUID` objects and its name-based `uuid3`/`uuid5` (pure), and
`uuid4` drawn from the program's durable entropy (`context.entropy`: one recorded read, so a
replay makes the same UUIDs), never from `os.urandom`. `uuid1` and `getnode` are absent: they
read the host's network address and clock."""

from __future__ import annotations

import uuid as _uuid
from functools import cache
from typing import Any

from flowmetal.machine.access import register_kind
from flowmetal.machine.show import register_leaf
from flowmetal.machine.stdlib import context
from flowmetal.machine.stdlib.common import charge
from flowmetal.machine.stdlib.context import builtin

__all__ = ["members", "register_codec", "uuid4"]

UUID = _uuid.UUID


def uuid4() -> _uuid.UUID:
    """A random UUID (version 4) from the program's entropy."""
    return UUID(int=context.entropy("uuid.uuid4()").bits(128), version=4)


def _named(fn: Any, name: str) -> Any:
    def make(namespace: Any, name_: Any) -> _uuid.UUID:
        if isinstance(name_, str | bytes):
            charge(len(name_) // 64)
        return fn(namespace, name_)

    return builtin(make, name)


@cache
def members() -> dict[str, Any]:
    return {
        "UUID": UUID,
        "uuid3": _named(_uuid.uuid3, "uuid3"),
        "uuid5": _named(_uuid.uuid5, "uuid5"),
        "uuid4": builtin(uuid4, "uuid4"),
        "NAMESPACE_DNS": _uuid.NAMESPACE_DNS,
        "NAMESPACE_URL": _uuid.NAMESPACE_URL,
        "NAMESPACE_OID": _uuid.NAMESPACE_OID,
        "NAMESPACE_X500": _uuid.NAMESPACE_X500,
        "RESERVED_NCS": _uuid.RESERVED_NCS,
        "RFC_4122": _uuid.RFC_4122,
        "RESERVED_MICROSOFT": _uuid.RESERVED_MICROSOFT,
        "RESERVED_FUTURE": _uuid.RESERVED_FUTURE,
    }


register_kind(UUID, "uuid.UUID")
register_leaf(UUID)


def register_codec(codec: Any) -> None:
    codec.register(UUID, "uuid.UUID", state=lambda u: u.hex, build=lambda h: UUID(hex=str(h)))
