"""Golden tests for the checker: each `tests/golden/errors/NAME.flow` is checked
and its diagnostics must equal `NAME.expected` line for line.

To regenerate the expected files after a deliberate change, run

    FLOWMETAL_REGEN_GOLDEN=1 .venv/bin/pytest tests/test_check_golden.py

and review the diff by eye before committing it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from flowmetal.lang.check import check_source

GOLDEN_DIR = Path(__file__).parent / "golden" / "errors"
CASES = sorted(GOLDEN_DIR.glob("*.flow"))
REGEN = os.environ.get("FLOWMETAL_REGEN_GOLDEN") == "1"

# A fixed stand-in for what the host passes, so these tests do not depend on
# the machine's module tables.
MODULES: dict[str, frozenset[str] | None] = {
    "json": frozenset({"dumps", "loads", "JSONDecodeError"}),
    "math": frozenset({"sqrt", "pi", "e", "inf", "nan", "floor", "ceil", "isclose"}),
    "re": None,
    "flowmetal": frozenset({"sleep"}),
}


def render(path: Path) -> str:
    _tree, diagnostics = check_source(path.read_text(encoding="utf-8"), path.name, modules=MODULES)
    return "".join(d.format() + "\n" for d in diagnostics)


def test_enough_cases() -> None:
    assert len(CASES) >= 30


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_golden(path: Path) -> None:
    expected_path = path.with_suffix(".expected")
    actual = render(path)
    if REGEN:
        expected_path.write_text(actual, encoding="utf-8")
    assert expected_path.exists(), (
        f"missing {expected_path.name}; run with FLOWMETAL_REGEN_GOLDEN=1"
    )
    assert actual == expected_path.read_text(encoding="utf-8")
