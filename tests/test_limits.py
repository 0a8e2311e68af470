"""Limits that stop runaway programs: fuel, memory, recursion depth."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from flowmetal.machine.api import (
    Blocked,
    Completed,
    EffectFunction,
    Failed,
    Limits,
    Machine,
    compile_program,
    run_source,
)

HOST = {"probe": EffectFunction("probe")}


def run(source: str, limits: Limits | None = None) -> Any:
    return run_source(textwrap.dedent(source), "limits.flow", limits=limits)


def drive(source: str, limits: Limits | None = None, snapshot: bool = False) -> tuple[str, Any]:
    """Run a program that calls probe(x) (answered with x), optionally restoring at every wait."""
    program = compile_program(textwrap.dedent(source), "limits.flow")
    m = Machine(program, host_module=HOST, limits=limits)
    out = ""
    while True:
        outcome = m.run()
        out += m.take_output()
        if not isinstance(outcome, Blocked):
            return out, outcome
        if snapshot:
            m = Machine.restore(m.snapshot(), host_module=HOST, limits=limits, program=program)
        for req in outcome.requests:
            m.resolve(req.id, req.args[0])


def cpython_error_line(source: str, tmp_path: Path) -> tuple[str, str | None]:
    """stdout and the last traceback line of the program run by CPython (main() called)."""
    path = tmp_path / "prog.py"
    path.write_text(textwrap.dedent(source) + "\nif callable(globals().get('main')):\n    main()\n")
    proc = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=60,
                          check=False)
    err = proc.stderr.strip().splitlines()
    return proc.stdout, (err[-1] if err else None)


# --------------------------------------------------------------------------- fuel


@pytest.mark.parametrize(
    "source",
    [
        "while True:\n    pass\n",
        "x = 0\nwhile True:\n    x += 1\n",
        "def main():\n    while True:\n        pass\n",
        "for x in iter(int, 1):\n    pass\n",
        "def spin(n):\n    while n >= 0:\n        n += 1\n    return n\n\ndef main():\n    spin(0)\n",
        "print(sum(1 for _ in iter(int, 1)))\n",
        "print(any(x > 0 for x in iter(int, 1)))\n",
        "def main():\n    xs = [1]\n    for x in xs:\n        xs.append(x)\n",
    ],
    ids=["while-pass", "while-count", "in-main", "for-iter", "plain-function", "genexpr-sum",
         "genexpr-any", "self-feeding-for"],
)
def test_fuel_stops_infinite_loops(source: str) -> None:
    start = time.monotonic()
    res = run(source, Limits(fuel=200_000))
    assert res.error_line is not None
    assert "fuel" in res.error_line.lower(), res.error_line
    assert res.error_line.startswith("FuelExhausted")
    assert time.monotonic() - start < 10


def test_fuel_cannot_be_caught_by_the_program() -> None:
    res = run(
        """
        def main():
            for attempt in range(3):
                try:
                    while True:
                        pass
                except BaseException as e:
                    print("caught", type(e).__name__)
                except Exception:
                    print("caught")
                finally:
                    print("finally", attempt)
        """,
        Limits(fuel=100_000),
    )
    assert res.error_line is not None and "fuel" in res.error_line.lower()
    assert "caught" not in res.output


def test_finite_program_under_the_fuel_limit_completes() -> None:
    res = run(
        """
        def main():
            total = 0
            for i in range(1000):
                total += i
            n = 0
            while n < 500:
                n += 1
            print(total, n)
            return total
        """,
        Limits(fuel=500_000),
    )
    assert res.error_line is None, res.traceback
    assert res.output == "499500 500\n"
    assert res.result == 499500


def test_fuel_is_per_run_call() -> None:
    """Each run() gets a fresh budget: work split by waits may exceed one budget in total."""
    source = """
    from flowmetal import probe

    def main():
        total = 0
        for round in range(4):
            for i in range(60_000):
                total += 1
            probe(round)
        return total
    """
    _out, outcome = drive(source, Limits(fuel=100_000))
    assert outcome == Completed(240_000)
    _out, outcome = drive(source, Limits(fuel=100_000), snapshot=True)
    assert outcome == Completed(240_000)
    res = run("def main():\n    for i in range(300_000):\n        pass\n", Limits(fuel=100_000))
    assert res.error_line is not None and "fuel" in res.error_line.lower()


def test_fuel_counts_plain_recursion() -> None:
    """Recursion that stays under the depth limit still burns fuel (ticks on entry)."""
    res = run(
        """
        def fib(n):
            return n if n < 2 else fib(n - 1) + fib(n - 2)

        def main():
            print(fib(40))
        """,
        Limits(fuel=200_000),
    )
    assert res.error_line is not None and "fuel" in res.error_line.lower()


def test_unlimited_fuel() -> None:
    res = run("n = 0\nwhile n < 100_000:\n    n += 1\nprint(n)\n", Limits(fuel=None))
    assert res.output == "100000\n"


# --------------------------------------------------------------------------- memory


@pytest.mark.parametrize(
    "source",
    [
        "xs = []\nwhile True:\n    xs.append([0] * 10)\n",
        "def main():\n    d = {}\n    i = 0\n    while True:\n        d[i] = str(i)\n        i += 1\n",
        "xs = [[]]\nwhile True:\n    xs = [xs, xs, [1, 2]]\n",
    ],
    ids=["list-of-lists", "dict-of-str", "nested"],
)
def test_memory_limit_stops_growth(source: str) -> None:
    start = time.monotonic()
    res = run(source, Limits(memory_objects=200_000, fuel=None))
    assert res.error_line is not None
    assert "memory" in res.error_line.lower(), res.error_line
    assert time.monotonic() - start < 10


@pytest.mark.parametrize(
    "expr",
    ["[0] * 10**12", "10**12 * [0]", "'ab' * 10**10", "b'x' * 10**11", "(1, 2) * 10**12",
     "[0, 1] * (10**9 * 10**3)"],
)
def test_huge_repetition_fails_quickly_without_allocating(expr: str) -> None:
    start = time.monotonic()
    res = run(f"def main():\n    xs = {expr}\n    print(len(xs))\n")
    assert time.monotonic() - start < 2
    assert res.output == ""
    assert res.error_line is not None
    assert res.error_line.startswith("MemoryLimitExceeded"), res.error_line
    assert "repetition" in res.error_line


def test_moderate_repetition_is_fine() -> None:
    res = run("print(len([0] * 10**6), len('ab' * 1000), [1, 2] * 2, -1 * [3], 0 * 'x')\n")
    assert res.output == "1000000 2000 [1, 2, 1, 2] [] \n"


@pytest.mark.xfail(strict=True, reason="by design: only repetitions of *literal* sequences are checked "
                   "in the language; `s * n` with s a variable is bounded by the executor's memory limit "
                   "(MemoryLimitExceeded, tests/test_executors.py), because checking every `*` cost 3x on "
                   "multiplication-heavy code")
def test_repetition_of_a_variable_is_limited() -> None:
    res = run("def main():\n    s = 'ab'\n    n = 10**6\n    t = s * n\n    print(len(t))\n",
              Limits(max_sequence=100_000))
    assert res.error_line is not None and res.error_line.startswith("MemoryLimitExceeded")


@pytest.mark.parametrize(
    ("source", "error"),
    [
        ("print(sum(range(10**15)))", "FuelExhausted"),
        ("print(len(list(iter(int, 1))))", "FuelExhausted"),
        ("def main():\n    return sum(1 for _ in iter(int, 1))\n", "FuelExhausted"),
        ("print(max(x * 2 for x in range(10**15)))", "FuelExhausted"),
        ("print(sorted(map(abs, range(10**15)))[:1])", "FuelExhausted"),
        ("print(any(x < 0 for x in iter(int, 1)))", "FuelExhausted"),
        ("print([x for x in iter(int, 1)])", "FuelExhausted"),
        ("print(len(''.join(iter(lambda: 'a', None))))", "FuelExhausted"),
        ("print(len(list(range(10**12))))", "MemoryLimitExceeded"),
        ("print(len(bytes(10**12)))", "MemoryLimitExceeded"),
        ("x = 2 ** 10**10", "MemoryLimitExceeded"),
        ("n = 10\nx = n ** 10**8", "MemoryLimitExceeded"),
        ("x = pow(7, 10**12)", "MemoryLimitExceeded"),
        ("x = 1 << 10**12", "MemoryLimitExceeded"),
        ("import math\nx = math.factorial(10**8)", "MemoryLimitExceeded"),
        ("import math\nx = math.comb(10**9, 10**6)", "MemoryLimitExceeded"),
        ("print(len('a'.ljust(10**12)))", "MemoryLimitExceeded"),
        ("print(len('ab'.replace('a', 'x' * 1000) * 1 if False else 'a'.center(10**11)))", "MemoryLimitExceeded"),
        ("print(len((1).to_bytes(10**11, 'big')))", "MemoryLimitExceeded"),
        ("s = 'ab' * 1000\nprint(len(s.replace('a', 'b' * 10**6)))", "MemoryLimitExceeded"),
    ],
)
def test_work_inside_one_builtin_call_is_bounded(source: str, error: str) -> None:
    """Fuel and sizes are charged inside built-ins too: each of these fails fast with a clear
    error (a child process, so a regression shows as a timeout, not a hung test run)."""
    code = (
        "import sys\nfrom flowmetal.machine.api import Limits, run_source\n"
        f"r = run_source({source!r}, 'x.flow', limits=Limits(fuel=100_000, max_sequence=10**7, max_int_bits=10**7))\n"
        "print(r.error_line)\n"
    )
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=20, env=dict(os.environ), check=False)
    except subprocess.TimeoutExpired:
        pytest.fail("the program ran past its limits")
    assert proc.stdout.startswith(error + ":"), proc.stdout + proc.stderr


def test_fuel_and_size_checks_leave_ordinary_work_alone() -> None:
    res = run("import math\nprint(sum(range(1000)), max([3, 1]), sorted('cab'), 2 ** 100 % 7, 1 << 70,"
              " math.factorial(20), pow(3, 4, 5), len(list(range(5000))), 'x'.ljust(5) + '|')\n",
              Limits(fuel=100_000))
    assert res.error_line is None, res.traceback
    assert res.output == "499500 3 ['a', 'b', 'c'] 2 1180591620717411303424 2432902008176640000 1 5000 x    |\n"


# --------------------------------------------------------------------------- recursion

INFINITE_RESUMABLE = """
from flowmetal import probe

def down(n):
    probe(n % 3)
    return down(n + 1)

def main():
    try:
        down(0)
    except RecursionError as e:
        print("caught:", e)
    print("still running", probe(7))
    down(0)
"""


def test_infinite_recursion_through_resumable_functions() -> None:
    out, outcome = drive(INFINITE_RESUMABLE)
    assert out == "caught: maximum recursion depth exceeded\nstill running 7\n"
    assert isinstance(outcome, Failed)
    assert outcome.error_line == "RecursionError: maximum recursion depth exceeded"
    # repeats are folded as CPython folds them
    assert outcome.traceback.count("in down") == 3
    assert "  [Previous line repeated 996 more times]\n" in outcome.traceback


def test_infinite_recursion_with_snapshots() -> None:
    source = """
    from flowmetal import probe

    def down(n):
        if n % 150 == 0:
            probe(n)
        return down(n + 1)

    def main():
        try:
            down(1)
        except RecursionError as e:
            print("caught:", e)
        return "done"
    """
    assert drive(source) == drive(source, snapshot=True)
    out, outcome = drive(source, snapshot=True)
    assert out == "caught: maximum recursion depth exceeded\n"
    assert outcome == Completed("done")


def test_plain_recursion_error_is_catchable() -> None:
    res = run(
        """
        def f(n):
            return f(n + 1)

        def main():
            for i in range(3):
                try:
                    f(0)
                except RecursionError:
                    print("caught", i)
            return "ok"
        """
    )
    assert res.output == "caught 0\ncaught 1\ncaught 2\n"
    assert res.result == "ok"


@pytest.mark.parametrize("kind", ["resumable", "plain"])
def test_uncaught_recursion_error_line_matches_cpython(kind: str, tmp_path: Path) -> None:
    source = textwrap.dedent(
        """
        def f(n):
            return f(n + 1)

        def main():
            try:
                f(0)
            except RecursionError as e:
                print("caught:", e)
            f(0)
        """
    )
    expected_out, expected_err = cpython_error_line(source, tmp_path)
    assert expected_err == "RecursionError: maximum recursion depth exceeded"
    if kind == "resumable":
        source = source.replace("return f(n + 1)", "probe(0)\n    return f(n + 1)")
        source = "from flowmetal import probe\n" + source
        out, outcome = drive(source)
    else:
        res = run(source)
        out, outcome = res.output, res
    assert out == expected_out
    assert outcome.error_line == expected_err


def test_deep_resumable_recursion_to_900_works() -> None:
    source = """
    from flowmetal import probe

    def down(n):
        if n == 0:
            return probe(0)
        return down(n - 1) + 1

    def main():
        return down(900)
    """
    assert drive(source)[1] == Completed(900)
    # and the 900-deep stack snapshots and restores
    program = compile_program(textwrap.dedent(source), "deep.flow")
    m = Machine(program, host_module=HOST)
    assert isinstance(m.run(), Blocked)
    assert len(m.tasks[1].stack) > 900
    m2 = Machine.restore(m.snapshot(), host_module=HOST)
    (req,) = m2.run().requests  # type: ignore[union-attr]
    m2.resolve(req.id, 5)
    assert m2.run() == Completed(905)


def test_deep_plain_recursion_to_900_works() -> None:
    res = run("def down(n):\n    return 0 if n == 0 else down(n - 1) + 1\n\ndef main():\n    return down(900)\n")
    assert res.error_line is None, res.error_line
    assert res.result == 900


def test_recursion_limit_is_configurable() -> None:
    source = """
    from flowmetal import probe

    def down(n):
        if n == 0:
            return probe(0)
        return down(n - 1) + 1

    def main():
        try:
            return down(60)
        except RecursionError:
            return "too deep"
    """
    assert drive(source, Limits(depth=50))[1] == Completed("too deep")
    assert drive(source, Limits(depth=100))[1] == Completed(60)


def test_recursion_beyond_the_limit_never_crashes_the_host() -> None:
    """Mixed plain/resumable recursion, comprehensions and callbacks: always a RecursionError
    that the program can catch, never a host crash or a host RecursionError."""
    res_source = """
    from flowmetal import probe

    def a(n):
        return [b(n + 1) for _ in range(1)][0]

    def b(n):
        if n % 50 == 0:
            probe(n)
        return sorted([n], key=lambda x: a(x))[0]

    def plain(n):
        return max([n], key=lambda x: plain(x + 1))

    def main():
        try:
            a(0)
        except RecursionError as e:
            print("mixed:", type(e).__name__)
        try:
            plain(0)
        except RecursionError as e:
            print("plain:", type(e).__name__)
        return "survived"
    """
    out, outcome = drive(res_source)
    assert outcome == Completed("survived"), getattr(outcome, "traceback", outcome)
    assert out == "mixed: RecursionError\nplain: RecursionError\n"
    # the host's own recursion limit is restored after every run
    assert sys.getrecursionlimit() < 100_000
