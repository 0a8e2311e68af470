"""Flowmetal: durable, evented, asynchronous programs in a deterministic Python subset.

Everything an application uses is importable from here (loaded on first use, so
`import flowmetal` stays light): `Client` and `AsyncClient` (a store or a node's HTTP
API), `FunctionWorker`, `function`, `CallContext`, `NonRetryable` (foreign functions)
and the exceptions they raise:

    FlowmetalError              base of every error of Flowmetal's own
    ├── UsageError              bad input from the user
    │   ├── BadArguments        the arguments do not fit main()'s signature
    │   └── ProgramRejected     a node refused the program (checking, its file)
    ├── CheckFailed             the program does not pass checking
    ├── StoreError              the store refused or failed
    │   ├── UnknownProgram, ProgramExists, ProgramFinished
    │   └── StoreUnavailable    the store's server cannot be reached now
    ├── ProgramFailedError      result() of a program that failed or was cancelled
    ├── ResultTimeout           result(timeout=...) ran out
    └── ApiError                any other error answer of a node (.status, .type)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# name -> the module that defines it
_EXPORTS = {
    "Client": "flowmetal.client", "AsyncClient": "flowmetal.client", "ProgramHandle": "flowmetal.client",
    "ProgramFailedError": "flowmetal.client", "ResultTimeout": "flowmetal.client",
    "ProgramRejected": "flowmetal.client", "ApiError": "flowmetal.client",
    "CallContext": "flowmetal.connectors.functions", "FunctionWorker": "flowmetal.connectors.functions",
    "NonRetryable": "flowmetal.connectors.functions", "function": "flowmetal.connectors.functions",
    "FlowmetalError": "flowmetal.errors", "UsageError": "flowmetal.errors", "CheckFailed": "flowmetal.errors",
    "BadArguments": "flowmetal.runtime.arguments",
    "StoreError": "flowmetal.store.base", "UnknownProgram": "flowmetal.store.base",
    "ProgramExists": "flowmetal.store.base", "ProgramFinished": "flowmetal.store.base",
    "StoreUnavailable": "flowmetal.store.base",
}
__all__ = [
    "ApiError",
    "AsyncClient",
    "BadArguments",
    "CallContext",
    "CheckFailed",
    "Client",
    "FlowmetalError",
    "FunctionWorker",
    "NonRetryable",
    "ProgramExists",
    "ProgramFailedError",
    "ProgramFinished",
    "ProgramHandle",
    "ProgramRejected",
    "ResultTimeout",
    "StoreError",
    "StoreUnavailable",
    "UnknownProgram",
    "UsageError",
    "__version__",
    "function",
]

if TYPE_CHECKING:
    from flowmetal.client import (
        ApiError,
        AsyncClient,
        Client,
        ProgramFailedError,
        ProgramHandle,
        ProgramRejected,
        ResultTimeout,
    )
    from flowmetal.connectors.functions import CallContext, FunctionWorker, NonRetryable, function
    from flowmetal.errors import CheckFailed, FlowmetalError, UsageError
    from flowmetal.runtime.arguments import BadArguments
    from flowmetal.store.base import (
        ProgramExists,
        ProgramFinished,
        StoreError,
        StoreUnavailable,
        UnknownProgram,
    )


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'flowmetal' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
