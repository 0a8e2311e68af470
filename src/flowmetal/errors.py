"""The exception tree of Flowmetal's own code (not the exceptions *programs* raise).

    FlowmetalError                 base; carries the CLI exit code
    ├── CheckFailed                the program is invalid (exit 2); holds Diagnostics
    ├── UsageError                 bad arguments from the user (exit 2)
    ├── SnapshotError              a snapshot cannot be written or read
    └── MachineError               misuse of the machine API by a host (a bug in the host)

Program-level failures (an uncaught exception inside a .flow program, a limit
being hit) are not Python exceptions of ours: the machine reports them as a
`Failure` outcome, and the CLI maps that to exit code 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flowmetal.lang.diagnostics import Diagnostic


class FlowmetalError(Exception):
    exit_code = 1


class CheckFailed(FlowmetalError):
    """Raised when a program does not pass validation; lists every problem found."""

    exit_code = 2

    def __init__(self, diagnostics: Sequence[Diagnostic]) -> None:
        self.diagnostics = list(diagnostics)
        super().__init__("\n".join(d.format() for d in self.diagnostics))


class UsageError(FlowmetalError):
    exit_code = 2


class SnapshotError(FlowmetalError):
    pass


class MachineError(FlowmetalError):
    pass
