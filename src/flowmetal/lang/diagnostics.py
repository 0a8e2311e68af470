"""Positioned messages about a program: `FILE:LINE:COL: error: MESSAGE`.

Lines and columns are 1-based, as editors count them (the `ast` module gives
0-based columns; converting is the caller's job via `Diagnostic.at`).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True, order=True)
class Diagnostic:
    filename: str
    line: int
    col: int
    severity: Severity
    message: str

    @classmethod
    def at(cls, filename: str, node: ast.AST, message: str, severity: Severity = "error") -> Diagnostic:
        line = getattr(node, "lineno", 1) or 1
        col = (getattr(node, "col_offset", 0) or 0) + 1
        return cls(filename, line, col, severity, message)

    def format(self) -> str:
        return f"{self.filename}:{self.line}:{self.col}: {self.severity}: {self.message}"
