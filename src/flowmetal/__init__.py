"""Flowmetal: durable, evented, asynchronous programs in a deterministic Python subset."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Client", "__version__"]

if TYPE_CHECKING:
    from flowmetal.client import Client


def __getattr__(name: str) -> Any:
    # keep `import flowmetal` light: the client pulls in the store and runtime
    if name == "Client":
        from flowmetal.client import Client

        return Client
    raise AttributeError(f"module 'flowmetal' has no attribute {name!r}")
