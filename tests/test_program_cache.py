"""The prelude's compiled form kept on disk (flowmetal.lang.program_cache)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from flowmetal.lang import program_cache
from flowmetal.lang.program import Program, compile_program
from flowmetal.machine import prelude
from flowmetal.machine.api import Blocked, Completed, EffectFunction, Machine

SOURCE = """
def pick(xs):
    return sorted(x for x in xs if x % 2)

def main(xs):
    return [pick(xs), list(zip(xs, reversed(xs))), max(xs, key=lambda x: -x), sum(map(abs, xs))]
"""


def compiled_prelude() -> tuple[str, Program]:
    source = (Path(prelude.__file__).parent.parent / "lang" / "prelude.flow").read_text()
    return source, compile_program(source, prelude.PRELUDE_FILENAME, checked=False, effect_modules=frozenset(),
                                   all_resumable=True)


def saved_and_loaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Program, Program]:
    """The prelude compiled, and the same saved and loaded again."""
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    source, original = compiled_prelude()
    key = program_cache.cache_key(source)
    path = tmp_path / f"prelude.{key}.fmc"
    program_cache.save(path, key, original)
    loaded = program_cache.load(path, key)
    assert loaded is not None
    return original, loaded


def test_a_saved_program_loads_as_the_same_program(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    original, loaded = saved_and_loaded(tmp_path, monkeypatch)
    assert loaded.source_hash == original.source_hash
    assert sorted(loaded.codes) == sorted(original.codes)
    for uid, unit in original.units.items():
        got = loaded.units[uid]
        assert (got.name, got.qualname, got.kind, got.params, got.handlers, got.local_names, got.lines) == (
            unit.name, unit.qualname, unit.kind, unit.params, unit.handlers, unit.local_names, unit.lines)
        assert got.code.co_code == unit.code.co_code
        assert loaded.codes[f"unit:{uid}"] is got.code  # shared, as compiling makes them
    # every nested code object is the registered one (snapshots name code objects by key)
    for code in loaded.codes.values():
        for const in code.co_consts:
            if hasattr(const, "co_code"):
                assert loaded.code_keys[const] in loaded.codes


def test_stale_or_broken_files_are_ignored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    source, original = compiled_prelude()
    key = program_cache.cache_key(source)
    path = tmp_path / "prelude.x.fmc"
    program_cache.save(path, key, original)
    assert program_cache.load(path, key) is not None
    assert program_cache.load(path, program_cache.cache_key(source + "\n# edited")) is None  # another source
    path.write_bytes(path.read_bytes()[:1000])  # cut short
    assert program_cache.load(path, key) is None
    path.write_bytes(b"not marshal data")
    assert program_cache.load(path, key) is None
    assert program_cache.load(tmp_path / "missing.fmc", key) is None


def test_the_key_follows_the_compilers_own_source(tmp_path: Path) -> None:
    assert program_cache.cache_key("x = 1\n") == program_cache.cache_key("x = 1\n")
    assert program_cache.cache_key("x = 1\n") != program_cache.cache_key("x = 2\n")


def test_nothing_is_written_when_python_writes_no_bytecode(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    _, original = compiled_prelude()
    program_cache.save(tmp_path / "p.fmc", "k", original)
    assert list(tmp_path.iterdir()) == []


def test_saving_replaces_older_compiled_forms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    _, original = compiled_prelude()
    program_cache.save(tmp_path / "prelude.old.fmc", "old", original)
    program_cache.save(tmp_path / "prelude.new.fmc", "new", original)
    assert [p.name for p in tmp_path.iterdir()] == ["prelude.new.fmc"]


PROCESS = """
import json, sys
from flowmetal.lang.program import Program, compile_program
from flowmetal.machine import prelude
from flowmetal.machine.api import Machine
program = compile_program(sys.argv[1], "t.flow")
machine = Machine(program, {"xs": [5, -3, 8, 1, 4]})
print(json.dumps(machine.run().value))
"""


def test_processes_that_load_the_saved_prelude_compute_the_same(tmp_path: Path) -> None:
    """The first process compiles the prelude and saves it; the second loads it; both agree
    with a machine in this process."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(tmp_path / "pycache")
    outputs = [subprocess.run([sys.executable, "-c", PROCESS, SOURCE], env=env, capture_output=True, text=True,
                              check=True).stdout for _ in range(2)]
    assert list((tmp_path / "pycache").rglob("prelude.*.fmc"))
    here = Machine(compile_program(SOURCE, "t.flow"), {"xs": [5, -3, 8, 1, 4]}).run()
    assert isinstance(here, Completed)
    assert outputs[0] == outputs[1] != ""
    assert json.loads(outputs[0]) == json.loads(json.dumps(here.value)) == [
        [-3, 1, 5], [[5, 4], [-3, 1], [8, 8], [1, -3], [4, 5]], -3, 21]


def test_a_snapshot_taken_with_the_compiled_prelude_restores_with_the_loaded_one(tmp_path: Path,
                                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    original, loaded = saved_and_loaded(tmp_path, monkeypatch)
    host = {"probe": EffectFunction("probe")}
    program = compile_program("from flowmetal import probe\n"
                              "def main():\n"
                              "    xs = sorted([3, 1, 2], key=lambda x: -x)\n"
                              "    got = probe()\n"
                              "    return list(zip(xs, got))\n", "w.flow")
    monkeypatch.setattr(prelude, "program", lambda: original)
    m = Machine(program, {}, host_module=host)
    blocked = m.run()
    assert isinstance(blocked, Blocked)
    data = m.snapshot()
    monkeypatch.setattr(prelude, "program", lambda: loaded)
    restored = Machine.restore(data, host_module=host, program=program)
    restored.resolve(blocked.requests[0].id, ["a", "b", "c"])
    done = restored.run()
    assert isinstance(done, Completed) and done.value == [(3, "a"), (2, "b"), (1, "c")]
