"""A program prints the same text in every process: no repr shows a memory address, no set
or dict view iterates in hash order, and int<->str conversions follow Flowmetal's own digit
limit whatever the host's. Checked in separate processes under several PYTHONHASHSEED values
(and host digit limits), for a program written to hit every known source of difference and
for the whole differential corpus."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
CORPUS = sorted((HERE.parent / "programs").glob("*.flow"))

RUNNER = """
import hashlib, json, sys
from flowmetal.lang.program import compile_program
from flowmetal.machine.api import run_program
from flowmetal.machine.objects import EffectFunction
out = {}
for path in sys.argv[1:]:
    program = compile_program(open(path, encoding="utf-8").read(), path)
    res = run_program(program, host_module={"probe": EffectFunction("probe")},
                      handle_effect=lambda req: req.args[0] if req.args else None)
    out[path] = [res.output, res.error_line, repr(res.result)]
print(json.dumps(out))
"""


def run_in_process(paths: list[Path], seed: str, digits: str | None = None) -> dict[str, list[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONHASHSEED"] = seed
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    if digits is not None:
        env["PYTHONINTMAXSTRDIGITS"] = digits
    proc = subprocess.run([sys.executable, "-c", RUNNER, *map(str, paths)], capture_output=True, text=True,
                          env=env, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    result: dict[str, list[str]] = json.loads(proc.stdout)
    return result


def test_the_determinism_program_prints_the_same_everywhere() -> None:
    program = [HERE / "determinism.flow"]
    runs = [run_in_process(program, seed, digits) for seed, digits in
            (("0", None), ("1", "0"), ("12345", "100000"), ("random", None))]
    first = runs[0][str(program[0])]
    assert first[1] is None, first
    assert "0x" not in first[0], [line for line in first[0].splitlines() if "0x" in line]
    assert "<function plain>|<function plain>" in first[0]
    assert "<list_iterator object>" in first[0] and "<built-in function print>" in first[0]
    assert "ValueError: Exceeds the limit (4300 digits)" in first[0]
    assert "{'pear', 'apple', 'fig', 'kiwi', 'plum', 'date'}" in first[0]
    for other in runs[1:]:
        assert other == runs[0]


@pytest.fixture(scope="module")
def corpus_baseline() -> dict[str, list[str]]:
    return run_in_process(CORPUS, "0")


@pytest.mark.parametrize("seed", ["1", "424242"])
def test_the_corpus_prints_the_same_under_other_hash_seeds(seed: str, corpus_baseline: dict[str, list[str]]) -> None:
    other = run_in_process(CORPUS, seed)
    differs = [Path(p).name for p in corpus_baseline if corpus_baseline[p] != other[p]]
    assert not differs, differs
