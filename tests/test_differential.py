"""Differential tests: every program in tests/programs must behave in Flowmetal
exactly as it does in CPython (same stdout, same final exception line).

CPython is the oracle (see tests/cpython_oracle.py); its results are computed
once per session for the whole corpus. Programs named `err_*.flow` are expected
to end with an uncaught exception; all others must finish cleanly in CPython.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cpython_oracle import Result, run_many_in_cpython

PROGRAMS_DIR = Path(__file__).parent / "programs"
PROGRAMS = sorted(PROGRAMS_DIR.glob("*.flow"))
MIN_PROGRAMS = 170


@pytest.fixture(scope="session")
def cpython_results() -> dict[str, Result]:
    return run_many_in_cpython(PROGRAMS)


def test_corpus_is_large_enough() -> None:
    assert len(PROGRAMS) >= MIN_PROGRAMS, f"only {len(PROGRAMS)} programs in {PROGRAMS_DIR}"


def test_corpus_runs_in_cpython(cpython_results: dict[str, Result]) -> None:
    problems = []
    for path in PROGRAMS:
        _, error = cpython_results[str(path)]
        expects_error = path.name.startswith("err_")
        if expects_error and error is None:
            problems.append(f"{path.name}: expected an uncaught exception, finished cleanly")
        elif not expects_error and error is not None:
            problems.append(f"{path.name}: unexpected uncaught exception: {error}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", PROGRAMS, ids=lambda p: p.name)
def test_matches_cpython(path: Path, cpython_results: dict[str, Result]) -> None:
    api = pytest.importorskip("flowmetal.machine.api")
    expected_output, expected_error = cpython_results[str(path)]
    source = path.read_text(encoding="utf-8")
    res = api.run_source(source, filename=str(path))
    assert res.output == expected_output
    assert res.error_line == expected_error, res.traceback
