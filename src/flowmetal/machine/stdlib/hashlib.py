"""`hashlib` for programs: the guaranteed algorithms, with hash objects that survive snapshots.

CPython's hash objects cannot be written out mid-update (their state is OpenSSL's), so ours keep
what they were fed: a snapshot writes the algorithm and the bytes, and a restore feeds them to a
fresh host object. The digest is the host's own, computed in C; the cost is the memory of the
data fed so far (as a program that kept the data itself would use). `algorithms_available` is the
guaranteed set on every host, so a program never depends on the host's OpenSSL build.
"""

from __future__ import annotations

import hashlib as _hashlib
from functools import cache
from typing import Any

from flowmetal.machine.access import register_kind
from flowmetal.machine.show import register_leaf
from flowmetal.machine.stdlib.context import builtin, charge, check_size
from flowmetal.machine.values import FmFrozenSet

__all__ = ["HASH", "algorithm_of", "hash_named", "members", "register_codec"]

ALGORITHMS: tuple[str, ...] = tuple(sorted(_hashlib.algorithms_guaranteed))
_XOF = frozenset({"shake_128", "shake_256"})
# each algorithm's host constructor, used once here so that OpenSSL has loaded everything it reads
# from disk before an executor's lockdown
_CONSTRUCTORS = {name: getattr(_hashlib, name) for name in ALGORITHMS}
for _name in ALGORITHMS:
    _CONSTRUCTORS[_name](b"")


class HASH:
    """A hash object: the host's, plus how it was made and the bytes fed so far (for snapshots)."""

    __slots__ = ("_fm_fed", "_fm_h", "_fm_name", "_fm_params")

    def __init__(self, name: str, host: Any, fed: bytes, params: dict[str, Any]) -> None:
        self._fm_name = name  # our constructor's name (blake2b, sha256, ...)
        self._fm_h = host
        self._fm_fed = bytearray(fed)
        self._fm_params = params  # the constructor's other arguments (blake2's key, digest_size, ...)

    @property
    def name(self) -> str:
        return self._fm_h.name

    @property
    def digest_size(self) -> int:
        return self._fm_h.digest_size

    @property
    def block_size(self) -> int:
        return self._fm_h.block_size

    def update(self, data: Any, /) -> None:
        self._fm_h.update(data)  # the host's checks and errors (str, buffer types)
        self._fm_fed += data

    def digest(self, *length: Any) -> bytes:
        self._check_length(length)
        return self._fm_h.digest(*length)

    def hexdigest(self, *length: Any) -> str:
        self._check_length(length)
        return self._fm_h.hexdigest(*length)

    def copy(self) -> HASH:
        return HASH(self._fm_name, self._fm_h.copy(), bytes(self._fm_fed), self._fm_params)

    def _check_length(self, length: tuple[Any, ...]) -> None:
        if length and type(length[0]) is int:
            check_size(length[0] * 2, f"{self.name}.hexdigest()")
            charge(length[0] // 64)

    def __repr__(self) -> str:
        return f"<{self.name} _hashlib.HASH object>"


HASH.__module__ = "_hashlib"


def _make(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> HASH:
    host = _CONSTRUCTORS[name](*args, **kwargs)  # the host's checks and errors
    params = dict(kwargs)
    data = args[0] if args else params.pop("data", params.pop("string", b""))
    params.pop("string", None)
    for key, value in params.items():
        if not isinstance(value, bytes | int | bool):
            raise TypeError(f"{name}(): {key} must be bytes or an int")
    return HASH(name, host, bytes(data), params)


def _constructor(name: str) -> Any:
    def make(*args: Any, **kwargs: Any) -> HASH:
        return _make(name, args, kwargs)

    return builtin(make, f"openssl_{name}" if name not in ("blake2b", "blake2s") else name)


def hash_named(name: Any, data: Any = b"", **kwargs: Any) -> HASH:
    """`hashlib.new(name, data)`, restricted to the guaranteed algorithms."""
    if not isinstance(name, str):
        raise TypeError(f"new() argument 'name' must be str, not {type(name).__name__}")
    key = name.lower()
    if key not in _CONSTRUCTORS:
        raise ValueError(f"unsupported hash type {name}")
    return _make(key, (data,), kwargs)


def _new(name: Any, data: Any = b"", *, usedforsecurity: bool = True, string: Any = None) -> HASH:
    if string is not None:
        data = string
    return hash_named(name, data, usedforsecurity=usedforsecurity)


def _pbkdf2_hmac(hash_name: Any, password: Any, salt: Any, iterations: Any, dklen: Any = None) -> bytes:
    if isinstance(hash_name, str) and hash_name.lower() not in _CONSTRUCTORS:
        raise ValueError(f"unsupported hash type {hash_name}")
    if type(iterations) is int:
        charge(iterations)  # its work is the iteration count: fuel for every round
    if type(dklen) is int:
        check_size(dklen, "pbkdf2_hmac()")
    return _hashlib.pbkdf2_hmac(hash_name, password, salt, iterations, dklen)


def algorithm_of(constructor: Any) -> str | None:
    """The algorithm of one of our constructors (`hashlib.sha256`), e.g. as hmac's digestmod."""
    return _ALGORITHM_OF.get(getattr(constructor, "__code__", None))


_ALGORITHM_OF: dict[Any, str] = {}


@cache
def members() -> dict[str, Any]:
    out: dict[str, Any] = {name: _constructor(name) for name in ALGORITHMS}
    _ALGORITHM_OF.update((fn.__code__, name) for name, fn in out.items())
    out["new"] = builtin(_new, "__hash_new")
    out["pbkdf2_hmac"] = builtin(_pbkdf2_hmac, "pbkdf2_hmac")
    guaranteed = FmFrozenSet(ALGORITHMS)
    out["algorithms_guaranteed"] = guaranteed
    out["algorithms_available"] = guaranteed
    return out


register_kind(HASH, "_hashlib.HASH")
register_leaf(HASH)


def register_codec(codec: Any) -> None:
    def state(h: HASH) -> list[Any]:
        return [h._fm_name, bytes(h._fm_fed), h._fm_params]

    def build(s: list[Any]) -> HASH:
        name, fed, params = str(s[0]), bytes(s[1]), dict(s[2])
        if name not in _CONSTRUCTORS:
            raise ValueError(f"unknown hash algorithm {name!r}")
        return _make(name, (fed,), params)

    codec.register(HASH, "hashlib.HASH", state=state, build=build)
