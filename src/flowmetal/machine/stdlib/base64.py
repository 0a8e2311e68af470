"""`base64` and `binascii` for programs: the host's own functions (pure computations on bytes),
minus those that read or write files (`encode`, `decode`)."""

from __future__ import annotations

import base64 as _base64
import binascii as _binascii
from functools import cache
from typing import Any

from flowmetal.machine.access import register_kind

__all__ = ["binascii_members", "members", "register_codec"]

BASE64_NAMES = ["b64encode", "b64decode", "standard_b64encode", "standard_b64decode", "urlsafe_b64encode", "urlsafe_b64decode", "b32encode", "b32decode", "b32hexencode", "b32hexdecode", "b16encode", "b16decode", "b85encode", "b85decode", "a85encode", "a85decode", "encodebytes", "decodebytes"]
BINASCII_NAMES = ["a2b_base64", "b2a_base64", "a2b_hex", "b2a_hex", "hexlify", "unhexlify", "crc32", "crc_hqx", "a2b_qp", "b2a_qp", "a2b_uu", "b2a_uu", "Error", "Incomplete"]


@cache
def members() -> dict[str, Any]:
    return {name: getattr(_base64, name) for name in BASE64_NAMES}


@cache
def binascii_members() -> dict[str, Any]:
    return {name: getattr(_binascii, name) for name in BINASCII_NAMES}


register_kind(_binascii.Error, "binascii.Error")
register_kind(_binascii.Incomplete, "binascii.Incomplete")


def register_codec(codec: Any) -> None:
    codec.register_exception(_binascii.Error, "binascii.Error")
    codec.register_exception(_binascii.Incomplete, "binascii.Incomplete")
