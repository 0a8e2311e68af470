"""Flowmetal: durable, evented, asynchronous programs in a deterministic Python subset."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["CallContext", "Client", "FunctionWorker", "NonRetryable", "__version__", "function"]

if TYPE_CHECKING:
    from flowmetal.client import Client
    from flowmetal.connectors.functions import CallContext, FunctionWorker, NonRetryable, function

_CONNECTOR_NAMES = ("CallContext", "FunctionWorker", "NonRetryable", "function")


def __getattr__(name: str) -> Any:
    # keep `import flowmetal` light: the client pulls in the store and runtime
    if name == "Client":
        from flowmetal.client import Client

        return Client
    if name in _CONNECTOR_NAMES:
        from flowmetal.connectors import functions

        return getattr(functions, name)
    raise AttributeError(f"module 'flowmetal' has no attribute {name!r}")
