"""`hmac` for programs (webhook signatures are the main use): `new`, `digest` and
`compare_digest`, with HMAC objects that survive snapshots.

As with `hashlib`, CPython's HMAC objects cannot be written out mid-update, so ours keep the key,
the algorithm and what they were fed, and a restore recomputes the host object from them.
`digestmod` is an algorithm's name or one of `hashlib`'s constructors (`hashlib.sha256`).
"""

from __future__ import annotations

import hmac as _hmac
from functools import cache
from typing import Any

from flowmetal.machine.access import register_kind
from flowmetal.machine.show import register_leaf
from flowmetal.machine.stdlib import hashlib as fm_hashlib
from flowmetal.machine.stdlib.context import builtin

__all__ = ["HMAC", "members", "register_codec"]


def _algorithm(digestmod: Any) -> str:
    if digestmod is None or digestmod == "":
        raise TypeError("Missing required parameter 'digestmod'.")
    if isinstance(digestmod, str):
        name = digestmod.lower()
        if name not in fm_hashlib.ALGORITHMS:
            raise ValueError(f"unsupported hash type {digestmod}")
        return name
    found = fm_hashlib.algorithm_of(digestmod)
    if found is None:
        raise TypeError("digestmod must be the name of a hash algorithm or a hashlib constructor "
                        "(hashlib.sha256) in Flowmetal")
    return found


class HMAC:
    """An HMAC object: the host's, plus its key, algorithm and the bytes fed (for snapshots)."""

    __slots__ = ("_fm_alg", "_fm_fed", "_fm_h", "_fm_key")

    def __init__(self, key: bytes, algorithm: str, fed: bytes, host: Any = None) -> None:
        self._fm_key = key
        self._fm_alg = algorithm
        self._fm_fed = bytearray(fed)
        self._fm_h = host if host is not None else _hmac.new(key, fed, algorithm)

    @property
    def name(self) -> str:
        return self._fm_h.name

    @property
    def digest_size(self) -> int:
        return self._fm_h.digest_size

    @property
    def block_size(self) -> int:
        return self._fm_h.block_size

    def update(self, msg: Any, /) -> None:
        self._fm_h.update(msg)
        self._fm_fed += msg

    def digest(self) -> bytes:
        return self._fm_h.digest()

    def hexdigest(self) -> str:
        return self._fm_h.hexdigest()

    def copy(self) -> HMAC:
        return HMAC(self._fm_key, self._fm_alg, bytes(self._fm_fed), self._fm_h.copy())

    def __repr__(self) -> str:
        return "<hmac.HMAC object>"


HMAC.__module__ = "hmac"


def _new(key: Any, msg: Any = None, digestmod: Any = "") -> HMAC:
    if not isinstance(key, bytes):
        raise TypeError(f"key: expected bytes or bytearray, but got {type(key).__name__!r}")
    algorithm = _algorithm(digestmod)
    host = _hmac.new(key, msg, algorithm)  # the host's checks of msg
    return HMAC(key, algorithm, b"" if msg is None else bytes(msg), host)


def _digest(key: Any, msg: Any, digest: Any) -> bytes:
    return _hmac.digest(key, msg, _algorithm(digest))


@cache
def members() -> dict[str, Any]:
    return {
        "new": builtin(_new, "new"),
        "digest": builtin(_digest, "digest"),
        "compare_digest": _hmac.compare_digest,
    }


register_kind(HMAC, "hmac.HMAC")
register_leaf(HMAC)


def register_codec(codec: Any) -> None:
    def build(s: list[Any]) -> HMAC:
        key, algorithm, fed = bytes(s[0]), str(s[1]), bytes(s[2])
        if algorithm not in fm_hashlib.ALGORITHMS:
            raise ValueError(f"unknown hash algorithm {algorithm!r}")
        return HMAC(key, algorithm, fed)

    codec.register(HMAC, "hmac.HMAC", state=lambda h: [h._fm_key, h._fm_alg, bytes(h._fm_fed)], build=build)
