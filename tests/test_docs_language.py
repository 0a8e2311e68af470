"""Keep docs/language.md honest.

* The built-ins tables (between `<!-- builtins-table -->` markers) list
  exactly the names a program sees, and each exists at run time.
* The forbidden-names table (between `<!-- forbidden-table -->` markers)
  lists exactly `FORBIDDEN_BUILTINS`.
* The values table (between `<!-- surface-table -->` markers) is exactly what
  `lang/surface.py` renders: the documentation is generated from the allow-list.
* Every exported name of `json` and `re` is mentioned.
* Code examples run. A fence opened with `` ```python flow `` is a program; its
  trailing comment block states what it does:

      # Args: {"name": "Ada"}      keyword arguments for main() (JSON)
      # Output:                    the lines after it, each "# text" or "#",
      # hello                      are exactly what the program prints
      # Result: 'HELLO'            repr() of main()'s return value
      # Error: ValueError: bad     the program's final uncaught-exception line

  A fence opened with `` ```python flow-rejected `` must fail checking, with
  a diagnostic whose message is each `# Rejected: message` line.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from flowmetal.errors import CheckFailed
from flowmetal.lang.names import (
    BUILTIN_CONSTANTS,
    BUILTIN_EXCEPTIONS,
    BUILTIN_FUNCTIONS,
    FORBIDDEN_BUILTINS,
)
from flowmetal.lang.program import compile_program
from flowmetal.machine.api import run_program
from flowmetal.machine.builtins_table import make_builtins
from flowmetal.machine.stdmods import STD_MODULE_EXPORTS

DOC_PATH = Path(__file__).resolve().parent.parent / "docs" / "language.md"
MIN_RUNNABLE_EXAMPLES = 8

_FENCE = re.compile(r"^```(?P<info>[^\n`]*)\n(?P<body>.*?)^```[ \t]*$", re.S | re.M)
_ROW_NAME = re.compile(r"^\|\s*`(?P<name>[^`]+)`")
_MARKERS = ("# Output:", "# Result:", "# Error:", "# Args:")


def _doc() -> str:
    return DOC_PATH.read_text(encoding="utf-8")


def _region(text: str, tag: str) -> str:
    start, end = f"<!-- {tag} -->", f"<!-- /{tag} -->"
    assert text.count(start) == 1 and text.count(end) == 1, f"expected one {start} ... {end} region"
    return text[text.index(start) + len(start) : text.index(end)]


def _table_names(region: str) -> list[str]:
    """The backticked first-column names of every table row in a region."""
    names = []
    for line in region.splitlines():
        m = _ROW_NAME.match(line.strip())
        if m:
            names.append(m.group("name"))
    return names


# -- examples ---------------------------------------------------------------------


@dataclass
class Example:
    line: int  # line of the opening fence in the doc
    kind: str  # "flow" | "flow-rejected"
    source: str
    output: list[str] | None = None
    result: str | None = None
    error: str | None = None
    args: dict[str, Any] = field(default_factory=dict)
    rejected: list[str] = field(default_factory=list)

    @property
    def has_expectation(self) -> bool:
        return self.output is not None or self.result is not None or self.error is not None

    def __str__(self) -> str:
        return f"docs/language.md:{self.line}"


def _parse_example(line: int, kind: str, body: str) -> Example:
    lines = body.splitlines()
    if kind == "flow-rejected":
        rejected = [
            ln.removeprefix("# Rejected:").strip() for ln in lines if ln.startswith("# Rejected:")
        ]
        return Example(line, kind, body, rejected=rejected)
    cut = next(
        (i for i, ln in enumerate(lines) if any(ln.startswith(m) for m in _MARKERS)), len(lines)
    )
    ex = Example(line, kind, "\n".join(lines[:cut]) + "\n")
    collecting = False
    for ln in lines[cut:]:
        if ln.startswith("# Output:"):
            assert ex.output is None, f"{ex}: two '# Output:' blocks"
            ex.output = []
            collecting = True
        elif ln.startswith("# Result:"):
            ex.result = ln.removeprefix("# Result:").strip()
            collecting = False
        elif ln.startswith("# Error:"):
            ex.error = ln.removeprefix("# Error:").strip()
            collecting = False
        elif ln.startswith("# Args:"):
            ex.args = json.loads(ln.removeprefix("# Args:"))
            collecting = False
        elif collecting and (ln == "#" or ln.startswith("# ")):
            assert ex.output is not None
            ex.output.append(ln[2:])
        else:
            raise AssertionError(f"{ex}: unexpected line after the expectations: {ln!r}")
    return ex


def _examples() -> list[Example]:
    text = _doc()
    found = []
    for m in _FENCE.finditer(text):
        words = m.group("info").split()
        if len(words) >= 2 and words[0] == "python" and words[1] in ("flow", "flow-rejected"):
            line = text.count("\n", 0, m.start()) + 1
            found.append(_parse_example(line, words[1], m.group("body")))
    return found


EXAMPLES = _examples() if DOC_PATH.exists() else []
RUNNABLE = [e for e in EXAMPLES if e.kind == "flow"]
REJECTED = [e for e in EXAMPLES if e.kind == "flow-rejected"]


# -- tests ----------------------------------------------------------------------------


def test_doc_exists() -> None:
    assert DOC_PATH.exists(), DOC_PATH


def test_builtins_table_matches_the_language() -> None:
    names = _table_names(_region(_doc(), "builtins-table"))
    duplicates = sorted({n for n in names if names.count(n) > 1})
    assert not duplicates, f"listed twice: {duplicates}"
    runtime = make_builtins(print)
    unknown = sorted(set(names) - set(runtime))
    assert not unknown, f"documented but not built in: {unknown}"
    required = BUILTIN_FUNCTIONS | BUILTIN_EXCEPTIONS | BUILTIN_CONSTANTS
    missing = sorted(required - set(names))
    assert not missing, f"built in but not documented: {missing}"


def test_surface_table_is_generated_from_the_allow_list() -> None:
    from flowmetal.lang.surface import render_markdown

    assert _region(_doc(), "surface-table").strip() == render_markdown().strip(), (
        "docs/language.md's values table differs from lang/surface.py: "
        "regenerate it with `python -m flowmetal.lang.surface`")


def test_forbidden_table_matches_the_language() -> None:
    text = _doc()
    names = _table_names(_region(text, "forbidden-table"))
    assert sorted(names) == sorted(FORBIDDEN_BUILTINS), (
        f"missing: {sorted(set(FORBIDDEN_BUILTINS) - set(names))}, "
        f"extra: {sorted(set(names) - set(FORBIDDEN_BUILTINS))}"
    )
    for name in FORBIDDEN_BUILTINS:
        assert f"`{name}`" in text


@pytest.mark.parametrize("module", ["json", "re", "base64", "binascii", "hashlib", "hmac", "urllib.parse", "datetime",
                                    "zoneinfo", "time", "random", "uuid", "calendar"])
def test_module_exports_documented(module: str) -> None:
    text = _doc()
    missing = sorted(
        n
        for n in STD_MODULE_EXPORTS[module]
        if f"`{n}`" not in text and f"`{module}.{n}`" not in text
    )
    assert not missing, f"{module} exports not mentioned in the doc: {missing}"


def test_enough_runnable_examples() -> None:
    checked = [e for e in RUNNABLE if e.has_expectation]
    assert len(checked) >= MIN_RUNNABLE_EXAMPLES, (
        f"only {len(checked)} examples with expected output"
    )
    assert len(REJECTED) >= 3


@pytest.mark.parametrize("example", RUNNABLE, ids=str)
def test_example_runs(example: Example) -> None:
    program = compile_program(example.source, "example.flow")  # every example must at least check
    if not example.has_expectation:
        return
    res = run_program(program, example.args)
    if example.output is not None:
        expected = "".join(line + "\n" for line in example.output)
        assert res.output == expected, f"{example}: output differs\n{res.traceback or ''}"
    assert res.error_line == example.error, f"{example}: {res.traceback}"
    if example.result is not None:
        assert repr(res.result) == example.result


@pytest.mark.parametrize("example", REJECTED, ids=str)
def test_example_rejected(example: Example) -> None:
    assert example.rejected, f"{example}: a flow-rejected example needs '# Rejected:' lines"
    with pytest.raises(CheckFailed) as info:
        compile_program(example.source, "example.flow")
    messages = [d.message for d in info.value.diagnostics]
    for expected in example.rejected:
        assert expected in messages, f"{example}: {expected!r} not among {messages}"
