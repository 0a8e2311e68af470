"""The pure standard modules programs may import besides json, math and re: one module
here per standard module, each with its members (`members()`), the registration of its
kinds of values (at import) and their snapshot encodings (`register_codec`).

Their rows in the allow-list are `lang/surface_stdlib.py`; `machine/stdmods.py` builds the
module objects from `BUILDERS`, and `machine/snapshot.py` applies `CODEC_HOOKS`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flowmetal.machine.stdlib import collections as _collections
from flowmetal.machine.stdlib import common as _common
from flowmetal.machine.stdlib import itertools as _itertools
from flowmetal.machine.stdlib import typing as _typing

__all__ = ["BUILDERS", "CODEC_HOOKS", "register_codecs"]

# module name -> its members (one line per module)
BUILDERS: dict[str, Callable[[], dict[str, Any]]] = {
    "typing": _typing.members,
    "itertools": _itertools.members,
    "collections": _collections.members,
}

CODEC_HOOKS: list[Callable[[Any], None]] = [
    _common.register_codec,
    _typing.register_codec,
    _itertools.register_codec,
    _collections.register_codec,
]


def register_codecs(codec: Any) -> None:
    """Teach a snapshot codec every value type of these modules."""
    for hook in CODEC_HOOKS:
        hook(codec)
