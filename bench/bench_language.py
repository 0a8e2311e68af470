"""Flowmetal vs CPython on the same programs, measured in the same run (not a test).

    .venv/bin/python bench/bench_language.py                 # table on stdout
    .venv/bin/python bench/bench_language.py --markdown      # also a Markdown table
    .venv/bin/python bench/bench_language.py --repeat 7 --only fib,closure

Each workload is one `.flow`-compatible program whose work happens in `main()`.
CPython runs it with `exec` of the compiled source in fresh globals followed by
`main()`; Flowmetal compiles it once (outside the timing) and runs it with
`run_program`. Both are timed as best-of-N wall time, the two alternating so
they share the machine's noise, and their printed output and `main()`'s return
value must agree. With `--all-resumable N`, an extra "all-res" column runs the
same program compiled with `all_resumable=True` (every function lowered to a
state machine), to show what the plain/resumable split buys (slow: fib alone
takes ~20 s per run that way).

Workloads are sized for roughly 0.15-0.5 s of CPython time, except `genexp_escape`
and `effect_loop`, whose Flowmetal side is ~50-300x slower: they are sized for
~1-2 s of Flowmetal time instead (the ratio does not depend on the size).

The "resumable units" column lists the functions the compiler made resumable
(everything else is plain CPython code). For the general-case workloads the
note gives Flowmetal's extra cost per slow operation, (Flowmetal - CPython) / ops.

The snapshot benchmark suspends a program on a `probe` effect with a
10,000-element list in a variable and a 50-deep stack of resumable frames, and
reports the snapshot's size and the median `snapshot()` / `Machine.restore()`
times over 20 runs.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# Imported up front (Machine imports it lazily) so one run uses one version of the code.
import flowmetal.machine.snapshot  # noqa: F401
from flowmetal.machine.api import (
    Blocked,
    Completed,
    EffectFunction,
    Machine,
    Program,
    compile_program,
    run_program,
)

COMPUTE_TARGET = 10.0  # Flowmetal / CPython on the compute workloads
LIBRARY_TARGET = 2.0  # Flowmetal / CPython on the standard-library workloads (issue 11)
COMPUTE_STRETCH = 5.0
SNAPSHOT_TARGET_MS = 5.0  # snapshot + restore


@dataclass
class Workload:
    name: str
    group: str  # "compute" (targets apply) or "general"
    what: str
    source: str
    effects: bool = False  # main waits on `probe` (imported from flowmetal)
    ops: int = 0  # count of the operation that makes it slow (for a per-op cost), if any
    op: str = ""


# ---------------------------------------------------------------------------
# Compute workloads: the obvious ones
# ---------------------------------------------------------------------------

FIB = """
def fib(n):
    if n < 2:
        return n
    return fib(n - 1) + fib(n - 2)


def main():
    r = fib(31)
    print("fib(31) =", r)
    return r
"""

ARITH = """
def main():
    total = 0
    for i in range(650000):
        total += (i * i) % 7 - i // 3
        if i & 1:
            total ^= i
    x = 0.0
    y = 1.0
    for i in range(1, 400000):
        x += 1.0 / (i * i) + (i % 5) * 0.25
        y = y * 0.999 + x / i
    n = 0
    for a in range(450):
        for b in range(450):
            n += (a * b) % 11
    print(total, round(x, 6), round(y, 6), n)
    return total + n
"""

STRINGS = """
def main():
    parts = []
    for i in range(200000):
        parts.append(f"item-{i:05d}:{i * 7 % 17}")
    text = ",".join(parts)
    fields = text.split(",")
    acc = ""
    for f in fields[:50000]:
        acc += f.replace("item", "it")[:6] + "|"
    total = 0
    for f in fields:
        name, val = f.split(":")
        total += int(val) + len(name.upper())
    shout = text.upper().replace("-", "_").replace(":", "=")
    words = " ".join(f"{w.strip()}!" for w in fields[:32000])
    rev = "".join(reversed(words[:2000]))
    print(len(text), len(acc), total, shout.count("ITEM_"), len(words), rev[:12])
    return total
"""

DICTS = """
def main():
    d = {}
    for i in range(200000):
        d["k" + str(i)] = i
    hits = 0
    for i in range(0, 400000, 2):
        if ("k" + str(i)) in d:
            hits += 1
    for i in range(0, 200000, 3):
        del d["k" + str(i)]
    counts = {}
    for i in range(240000):
        key = i % 97
        counts[key] = counts.get(key, 0) + 1
    stack = []
    for i in range(320000):
        stack.append(i)
        if i % 3 == 0:
            stack.pop()
    squares = {k: v * v for k, v in d.items() if v % 2}
    evens = [x for x in stack if x % 2 == 0]
    nested = [[j for j in range(i % 10)] for i in range(20000)]
    merged = dict(zip(range(4000), evens))
    print(len(d), hits, len(counts), len(stack), len(squares), len(evens), sum(len(x) for x in nested), len(merged))
    return hits
"""

SORTING = """
def main():
    recs = []
    seed = 12345
    depts = ("eng", "ops", "research", "sales")
    for i in range(65000):
        seed = (seed * 1103515245 + 12345) % 2147483648
        recs.append({"id": i, "name": "n" + str(seed % 1000), "score": seed % 997, "dept": depts[seed % 4]})
    a = sorted(recs, key=lambda r: r["score"])
    b = sorted(recs, key=lambda r: (r["dept"], -r["score"], r["name"]))
    c = sorted(recs, key=lambda r: r["name"], reverse=True)
    rows = [(r["dept"], r["score"], r["id"]) for r in recs]
    rows.sort()
    rows.sort(key=lambda t: t[1], reverse=True)
    best = max(recs, key=lambda r: (r["score"], r["id"]))
    print(a[0]["id"], b[0]["id"], c[0]["id"], rows[0], best["id"])
    return a[-1]["id"] + b[-1]["id"]
"""

# ---------------------------------------------------------------------------
# General-case workloads: what real programs also do
# ---------------------------------------------------------------------------

HIGHER_ORDER = """
def apply(f, xs):
    return [f(x) for x in xs]


def double(x):
    return x * 2


def main():
    xs = list(range(500))
    total = 0
    for _ in range(3750):
        total += sum(apply(double, xs))
        total += sum(apply(lambda x: x + 1, xs))
    print(total)
    return total
"""

CLOSURES = """
def make_counter(step):
    count = 0

    def inc():
        nonlocal count
        count += step
        return count

    return inc


def main():
    total = 0
    for k in range(1600):
        c = make_counter(k)
        for _ in range(1500):
            total += c()
    print(total)
    return total
"""

EXCEPTIONS = """
def parse(s):
    return int(s)


def check(i):
    if i % 5 == 0:
        raise KeyError(i)
    return i


def main():
    total = 0
    bad = 0
    missing = 0
    for i in range(250000):
        s = str(i) if i % 3 else "x" + str(i)
        try:
            total += parse(s)
        except ValueError:
            bad += 1
        try:
            total += check(i)
        except KeyError as e:
            missing += e.args[0] % 2
        finally:
            total += 1
    print(total, bad, missing)
    return total
"""

JSON = """
import json


def main():
    total = 0
    for i in range(7500):
        doc = {"id": i, "name": "user" + str(i), "tags": ["a", "b", str(i % 7)], "score": i * 0.5,
               "nested": {"xs": [1, 2, 3, i], "ok": i % 2 == 0, "none": None}}
        s = json.dumps(doc, sort_keys=True)
        back = json.loads(s)
        s2 = json.dumps(back, indent=2)
        total += len(s) + len(s2) + back["id"] + len(back["tags"])
    print(total)
    return total
"""

REGEX = """
import re

TOKEN = re.compile(r"\\s*(?:(\\d+\\.\\d*|\\d+)|([A-Za-z_]\\w*)|(\\S))")


def tokenize(line):
    out = []
    for m in TOKEN.finditer(line):
        num, name, op = m.groups()
        if num is not None:
            out.append(("num", num))
        elif name is not None:
            out.append(("name", name))
        elif op is not None:
            out.append(("op", op))
    return out


def main():
    lines = ["x" + str(i) + " = (alpha_" + str(i % 9) + " + 3.25) * beta / " + str(i) for i in range(30000)]
    kinds = {}
    for line in lines:
        for kind, text in tokenize(line):
            kinds[kind] = kinds.get(kind, 0) + 1
    words = re.findall(r"[a-z]+", " ".join(lines[:1000]))
    cleaned = re.sub(r"\\d+", "#", " ".join(lines[:1000]))
    print(sorted(kinds.items()), len(words), len(cleaned))
    return len(words)
"""

GENEXP = """
def main():
    total = 0
    for r in range(1600):
        xs = range(r, r + 1000)
        squares = (x * x for x in xs)
        odd = (s for s in squares if s % 2)
        small = (s % 1000 for s in odd)
        total += sum(small)
    print(total)
    return total
"""

GENEXP_ESCAPE = """
def evens(xs):
    return (x for x in xs if x % 2 == 0)


def scaled(it, k):
    return (x * k for x in it)


def main():
    total = 0
    for r in range(300):
        total += sum(scaled(evens(range(r, r + 1000)), 3))
    print(total)
    return total
"""

GENERATORS = """
def naturals(start):
    n = start
    while True:
        yield n
        n += 1


def take(n, it):
    for i, x in enumerate(it):
        if i >= n:
            return
        yield x


def chunks(it, size):
    buf = []
    for x in it:
        buf.append(x)
        if len(buf) == size:
            yield buf
            buf = []
    if buf:
        yield buf


def inorder(node):
    if node:
        left, key, right = node
        yield from inorder(left)
        yield key
        yield from inorder(right)


def build(lo, hi):
    if lo >= hi:
        return None
    mid = (lo + hi) // 2
    return (build(lo, mid), mid, build(mid + 1, hi))


def averager():
    total, count, avg = 0, 0, None
    while True:
        x = yield avg
        total += x
        count += 1
        avg = total / count


def main():
    total = 0
    for r in range(120):
        total += sum(x for x in take(1000, naturals(r)) if x % 3)
        total += sum(len(c) for c in chunks(take(500, naturals(r)), 7))
    tree = build(0, 4000)
    walked = 0
    for _ in range(12):
        walked += sum(inorder(tree))
    avg = averager()
    next(avg)
    for v in range(60000):
        last = avg.send(v)
    print(total, walked, last)
    return total
"""

VISITOR = """
def build(depth):
    if depth == 0:
        return []
    return [build(depth - 1) for _ in range(3)]


def walk(node, visit, depth):
    visit(depth)
    total = 1
    for child in node:
        total += walk(child, visit, depth + 1)
    return total


def main():
    tree = build(9)
    seen = {}

    def visit(d):
        seen[d] = seen.get(d, 0) + 1

    n = 0
    for _ in range(32):
        n += walk(tree, visit, 0)
    print(n, sorted(seen.items()))
    return n
"""

# ---------------------------------------------------------------------------
# Standard-library workloads: programs that lean on the pure modules
# ---------------------------------------------------------------------------

ITERTOOLS = """
from itertools import accumulate, chain, combinations, count, cycle, groupby, islice, pairwise, permutations
from itertools import product, starmap, takewhile, zip_longest


def tour_length(order, dist):
    return sum(dist[a][b] for a, b in pairwise(chain(order, order[:1])))


def main():
    n = 8
    dist = [[(i * 7 + j * 13) % 17 + 1 for j in range(n)] for i in range(n)]
    best = min(permutations(range(1, n)), key=lambda p: tour_length((0,) + p, dist))
    weights = [3, 34, 4, 12, 5, 2, 27, 9, 14, 8, 21, 6, 17, 11, 19, 23, 7, 1]
    hits = sum(1 for r in range(1, 6) for c in combinations(weights, r) if sum(c) == 40)
    grid = sum(x * y - z for x, y, z in product(range(40), range(40), range(25)))
    words = sorted(f"w{(i * 7919) % 1000:03d}" for i in range(20000))
    groups = [(k, len(list(g))) for k, g in groupby(words, key=lambda w: w[:3])]
    running = list(accumulate(range(100000), lambda a, b: a + b))
    firsts = list(takewhile(lambda x: x < 10**6, accumulate(count(1), lambda a, b: a * b)))
    dealt = list(islice(cycle("ABCD"), 50000))
    pairs = list(zip_longest(range(50000), "xyz", fillvalue="-"))
    powers = sum(starmap(pow, zip(range(1, 30000), cycle([2, 3]))))
    print(best, hits, grid, len(groups), groups[:2], running[-1], firsts, dealt.count("C"), pairs[3], powers % 1000)
    return hits
"""

# The program's own classes: instances made and updated in methods, operator dunders, a
# property, inheritance with super(), instances as dict keys, sorting by __lt__, exceptions.
CLASSES = """
class Vec:
    def __init__(self, x, y):
        self.x = x
        self.y = y

    def __add__(self, other):
        return Vec(self.x + other.x, self.y + other.y)

    def __mul__(self, k):
        return Vec(self.x * k, self.y * k)

    def __eq__(self, other):
        return self.x == other.x and self.y == other.y

    def __hash__(self):
        return self.x * 31 + self.y

    def dot(self, other):
        return self.x * other.x + self.y * other.y

    @property
    def norm1(self):
        return abs(self.x) + abs(self.y)


class Node:
    def __init__(self, key):
        self.key = key
        self.left = None
        self.right = None


class Tree:
    def __init__(self):
        self.root = None
        self.size = 0

    def insert(self, key):
        if self.root is None:
            self.root = Node(key)
            self.size += 1
            return
        node = self.root
        while True:
            if key < node.key:
                if node.left is None:
                    node.left = Node(key)
                    break
                node = node.left
            elif key > node.key:
                if node.right is None:
                    node.right = Node(key)
                    break
                node = node.right
            else:
                return
        self.size += 1

    def __contains__(self, key):
        node = self.root
        while node is not None:
            if key == node.key:
                return True
            node = node.left if key < node.key else node.right
        return False

    def depth(self, node):
        if node is None:
            return 0
        return 1 + max(self.depth(node.left), self.depth(node.right))


class Account:
    def __init__(self, owner, balance=0):
        self.owner = owner
        self._balance = balance
        self.history = []

    @property
    def balance(self):
        return self._balance

    def deposit(self, amount):
        if amount <= 0:
            raise ValueError("amount must be positive")
        self._balance += amount
        self.history.append(amount)


class Savings(Account):
    def __init__(self, owner, rate):
        super().__init__(owner)
        self.rate = rate

    def add_interest(self):
        self.deposit(self._balance * self.rate // 100 + 1)


class Task:
    def __init__(self, prio, name):
        self.prio = prio
        self.name = name

    def __lt__(self, other):
        return self.prio < other.prio


def main():
    total = Vec(0, 0)
    seen = {}
    for i in range(30000):
        v = Vec(i % 17, i % 23) * 2 + Vec(1, -1)
        total = total + v
        seen[v] = seen.get(v, 0) + 1
    dots = sum(Vec(i, i + 1).dot(Vec(2, 3)) for i in range(20000))
    norms = sum(Vec(-i, i).norm1 for i in range(20000))
    t = Tree()
    for i in range(12000):
        t.insert((i * 7919) % 10007)
    found = sum(1 for k in range(0, 10007, 3) if k in t)
    accounts = [Savings(f"a{i}", i % 5 + 1) for i in range(300)]
    errors = 0
    for rnd in range(20):
        for a in accounts:
            a.add_interest()
            try:
                a.deposit(rnd - 10)
            except ValueError:
                errors += 1
    balance = sum(a.balance for a in accounts)
    tasks = sorted(Task((i * 37) % 101, f"t{i}") for i in range(20000))
    print(total.x, total.y, len(seen), dots, norms, t.size, found, t.depth(t.root), balance, errors,
          tasks[0].name, tasks[-1].prio)
    return balance
"""

EFFECT_LOOP = """
from flowmetal import probe


def main():
    total = 0
    for i in range(100000):
        total += probe(i)
    print(total)
    return total
"""

WORKLOADS: list[Workload] = [
    Workload("fib", "compute", "recursive fib(31)", FIB),
    Workload("arith", "compute", "int/float loops", ARITH),
    Workload("strings", "compute", "f-strings, join, +=, split/replace", STRINGS),
    Workload("dicts", "compute", "dict/list churn, comprehensions", DICTS),
    Workload("sorting", "compute", "sorted/sort with lambda & tuple keys", SORTING),
    Workload("higher_order", "general", "apply(f, xs) calls a parameter", HIGHER_ORDER,
             ops=3750 * 2 * 500, op="call of f"),
    Workload("closures", "general", "closure counters called via a variable", CLOSURES,
             ops=1600 * 1500, op="call of c"),
    Workload("exceptions", "general", "try/except/finally in a loop", EXCEPTIONS),
    Workload("json", "general", "json dumps/loads round trips", JSON),
    Workload("regex", "general", "re tokenizer, findall, sub", REGEX, ops=30000 * 11, op="match"),
    Workload("genexp", "general", "chained generator expressions", GENEXP,
             ops=1600 * 2000, op="generator step"),
    Workload("genexp_escape", "general", "generator expressions returned from functions", GENEXP_ESCAPE,
             ops=300 * 1000, op="generator step"),
    Workload("generators", "general", "generator functions: pipelines, yield from recursion, send()",
             GENERATORS, ops=120 * 2500 + 12 * 4000 * 13 + 60000, op="generator step"),
    Workload("visitor", "general", "recursive tree walk taking a callback", VISITOR,
             ops=32 * 29524, op="call of walk"),
    Workload("itertools", "library", "permutations/combinations/product/groupby/accumulate/...", ITERTOOLS),
    Workload("classes", "library", "classes: dunders, properties, super(), a BST, objects as keys", CLASSES),
    Workload("effect_loop", "general", "probe() effect once per iteration", EFFECT_LOOP, effects=True,
             ops=100000, op="wait"),
]

PROBE_HOST = {"probe": EffectFunction("probe")}
_EFFECT_IMPORT = "from flowmetal import probe\n"


def _echo(req: Any) -> Any:
    return req.args[0]


def _cpython_probe(x: Any) -> Any:
    return x


# ---------------------------------------------------------------------------
# Runners
# ---------------------------------------------------------------------------


def cpython_runner(w: Workload) -> Callable[[], tuple[str, Any]]:
    """exec of the same source in fresh globals, then main(). The one difference for
    effect programs: CPython has no `flowmetal` module, so `probe` is a plain function."""
    source = w.source.replace(_EFFECT_IMPORT, "") if w.effects else w.source
    code = compile(source, f"{w.name}.py", "exec")
    extra: dict[str, Any] = {"probe": _cpython_probe} if w.effects else {}

    def run() -> tuple[str, Any]:
        g: dict[str, Any] = {"__name__": "__main__", **extra}
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            exec(code, g)
            result = g["main"]()
        return buf.getvalue(), result

    return run


def flowmetal_runner(w: Workload, prog: Program) -> Callable[[], tuple[str, Any]]:
    host = PROBE_HOST if w.effects else None
    handler = _echo if w.effects else None

    def run() -> tuple[str, Any]:
        r = run_program(prog, host_module=host, handle_effect=handler)
        if r.error_line is not None:
            raise RuntimeError(f"Flowmetal run failed: {r.error_line}\n{r.traceback}")
        return r.output, r.result

    return run


def best_of(fns: list[Callable[[], Any]], repeat: int) -> list[tuple[float, float]]:
    """Best (wall, CPU) time of each fn over `repeat` rounds, the fns alternating within a round.

    Wall time is the figure; process CPU time is kept alongside because on a shared box
    it is less disturbed by other processes (the program is single-threaded, so uncontended
    the two agree)."""
    best = [(float("inf"), float("inf"))] * len(fns)
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            gc.collect()
            c0 = time.process_time()
            t0 = time.perf_counter()
            fn()
            wall = time.perf_counter() - t0
            cpu = time.process_time() - c0
            best[i] = (min(best[i][0], wall), min(best[i][1], cpu))
    return best


def resumable_units(prog: Program) -> str:
    names = [u.name for u in prog.units.values() if u.kind != "plain" and not u.is_module]
    return ",".join(sorted(set(names))) or "-"


@dataclass
class Row:
    w: Workload
    cpython: float | None = None
    flowmetal: float | None = None
    cpython_cpu: float | None = None
    flowmetal_cpu: float | None = None
    all_res: float | None = None
    resumable: str = ""
    status: str = "ok"

    @property
    def ratio(self) -> float | None:
        if self.cpython and self.flowmetal:
            return self.flowmetal / self.cpython
        return None

    @property
    def ratio_cpu(self) -> float | None:
        if self.cpython_cpu and self.flowmetal_cpu:
            return self.flowmetal_cpu / self.cpython_cpu
        return None

    @property
    def ratio_all(self) -> float | None:
        if self.cpython and self.all_res:
            return self.all_res / self.cpython
        return None


def bench_workload(w: Workload, repeat: int, all_res_repeat: int) -> Row:
    row = Row(w)
    try:
        prog = compile_program(w.source, f"{w.name}.flow")
    except Exception as e:  # a check/compile failure is a finding, not a crash
        row.status = f"compile failed: {type(e).__name__}: {str(e).strip().splitlines()[0]}"
        return row
    row.resumable = resumable_units(prog)
    cp = cpython_runner(w)
    fm = flowmetal_runner(w, prog)
    expected = cp()
    runners = [cp, fm]
    try:
        got = fm()
    except Exception as e:
        row.status = f"run failed: {str(e).strip().splitlines()[0]}"
        return row
    if got != expected:
        row.status = f"MISMATCH: cpython={expected!r} flowmetal={got!r}"
        return row
    (row.cpython, row.cpython_cpu), (row.flowmetal, row.flowmetal_cpu) = best_of(runners, repeat)
    if all_res_repeat > 0:
        try:
            prog_all = compile_program(w.source, f"{w.name}.flow", all_resumable=True)
            fa = flowmetal_runner(w, prog_all)
            got_all = fa()
            if got_all != expected:
                row.status = f"MISMATCH (all_resumable): cpython={expected!r} flowmetal={got_all!r}"
            else:
                row.all_res = best_of([fa], all_res_repeat)[0][0]
        except Exception as e:
            row.status = f"all_resumable failed: {str(e).strip().splitlines()[0]}"
    return row


def fixed_cost(repeat: int) -> float:
    """run_program on `def main(): return 1`: Machine set-up (prelude, globals) and one run()."""
    prog = compile_program("def main():\n    return 1\n", "empty.flow")
    run_program(prog)
    return _median_ms(lambda: run_program(prog), max(20, repeat))


# ---------------------------------------------------------------------------
# Snapshot benchmark
# ---------------------------------------------------------------------------

SNAPSHOT_PROGRAM = """
from flowmetal import probe


def dive(n, xs):
    if n == 1:
        return probe(len(xs))
    return dive(n - 1, xs) + 1


def main():
    big = list(range(10000))
    return dive(50, big)
"""


@dataclass
class Timing:
    median_ms: float
    min_ms: float

    def __str__(self) -> str:
        return f"{self.median_ms:.2f} ms (min {self.min_ms:.2f})"


@dataclass
class SnapRow:
    size: int
    frames: int
    snapshot: Timing
    restore: Timing  # Machine.restore(data): finds the program from the snapshot's source (compile cache)
    restore_cached: Timing  # Machine.restore(data, program=prog): the host kept the compiled program
    total: Timing  # snapshot() then restore(), timed together
    total_cached: Timing
    compile: Timing  # compile_program of the source: what a restore pays when nothing is cached
    resumed_ok: bool


def _times_ms(fn: Callable[[], Any], n: int) -> Timing:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return Timing(statistics.median(times) * 1e3, min(times) * 1e3)


def _median_ms(fn: Callable[[], Any], n: int) -> float:
    return _times_ms(fn, n).median_ms


def bench_snapshot(n: int = 20) -> SnapRow:
    prog = compile_program(SNAPSHOT_PROGRAM, "snap.flow")
    m = Machine(prog, {}, host_module=PROBE_HOST)
    out = m.run()
    assert isinstance(out, Blocked), out
    frames = len(m.tasks[1].stack)
    data = m.snapshot()
    Machine.restore(data, host_module=PROBE_HOST)  # warm
    snap = _times_ms(m.snapshot, n)
    restore = _times_ms(lambda: Machine.restore(data, host_module=PROBE_HOST), n)
    cached = _times_ms(lambda: Machine.restore(data, host_module=PROBE_HOST, program=prog), n)
    total = _times_ms(lambda: Machine.restore(m.snapshot(), host_module=PROBE_HOST), n)
    total_cached = _times_ms(lambda: Machine.restore(m.snapshot(), host_module=PROBE_HOST, program=prog), n)
    compiling = _times_ms(lambda: compile_program(SNAPSHOT_PROGRAM, "snap.flow"), n)
    # The restored machine must finish the run: 10,000 + 49 levels adding one each.
    m2 = Machine.restore(data, host_module=PROBE_HOST)
    req = m2.run()
    ok = False
    if isinstance(req, Blocked):
        m2.resolve(req.requests[0].id, req.requests[0].args[0])
        done = m2.run()
        ok = isinstance(done, Completed) and done.value == 10000 + 49
    return SnapRow(len(data), frames, snap, restore, cached, total, total_cached, compiling, ok)


# ---------------------------------------------------------------------------
# Reporting
# ---------------------------------------------------------------------------


def _fmt_s(t: float | None) -> str:
    return "-" if t is None else f"{t * 1e3:8.1f}"


def _fmt_ratio(r: float | None) -> str:
    return "-" if r is None else f"{r:6.2f}x"


def _verdict(row: Row) -> str:
    if row.status != "ok":
        return row.status
    r = row.ratio
    assert r is not None
    if row.w.group == "library":
        return f"{'meets' if r <= LIBRARY_TARGET else 'MISSES'} target (<={LIBRARY_TARGET:g}x)"
    if row.w.group != "compute":
        if row.w.ops and row.cpython is not None and row.flowmetal is not None:
            extra = (row.flowmetal - row.cpython) / row.w.ops * 1e6
            return f"+{extra:.2f} us per {row.w.op}"
        return ""
    if r <= COMPUTE_STRETCH:
        return "meets stretch (<=5x)"
    if r <= COMPUTE_TARGET:
        return "meets target (<=10x)"
    return "MISSES target (>10x)"


def machine_description() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}, "
            f"{platform.python_implementation()} {platform.python_version()}")


def print_table(rows: list[Row], snap: SnapRow | None, repeat: int, fixed_ms: float) -> None:
    print(f"machine: {machine_description()}")
    print(f"fixed cost of run_program on an empty main(): {fixed_ms:.2f} ms (median)")
    print(f"best of {repeat} wall time per workload, ms; ratio = Flowmetal / CPython wall time; "
          "cpu-rat = the same with process CPU time; all-res = every function resumable (wall)")
    print(f"targets: compute workloads <= {COMPUTE_TARGET:g}x CPython (stretch {COMPUTE_STRETCH:g}x); "
          f"snapshot+restore <= {SNAPSHOT_TARGET_MS:g} ms")
    head = (f"{'workload':13} {'CPython':>8} {'Flowmetal':>9} {'ratio':>7} {'cpu-rat':>8} {'all-res':>8}  "
            f"{'resumable units':22} note")
    for group, title in (("compute", "compute workloads"), ("general", "general-case workloads"),
                         ("library", "standard-library workloads")):
        print()
        print(f"== {title}")
        print(head)
        for row in rows:
            if row.w.group != group:
                continue
            print(f"{row.w.name:13} {_fmt_s(row.cpython):>8} {_fmt_s(row.flowmetal):>9} "
                  f"{_fmt_ratio(row.ratio):>7} {_fmt_ratio(row.ratio_cpu):>8} {_fmt_ratio(row.ratio_all):>8}  "
                  f"{row.resumable:22} {_verdict(row)}")
    if snap is not None:
        print()
        print("== snapshot (10,000-element list + 50 resumable frames; median of 20, min in parentheses)")
        print(f"size {snap.size} bytes, {snap.frames} frames on the stack")
        print(f"snapshot()                          {snap.snapshot}")
        print(f"Machine.restore(data)               {snap.restore}")
        print(f"Machine.restore(data, program=prog) {snap.restore_cached}")
        print(f"snapshot+restore                    {snap.total}  {_snap_verdict(snap.total)}")
        print(f"snapshot+restore, cached program    {snap.total_cached}  {_snap_verdict(snap.total_cached)}")
        print(f"compile_program of the source       {snap.compile}  (added by a restore with nothing cached)")
        print(f"restored machine resumed to the right result: {snap.resumed_ok}")


def _snap_verdict(t: Timing) -> str:
    ok = "meets" if t.median_ms <= SNAPSHOT_TARGET_MS else "MISSES"
    return f"{ok} target (<= {SNAPSHOT_TARGET_MS:g} ms)"


def print_markdown(rows: list[Row], snap: SnapRow | None, repeat: int, fixed_ms: float) -> None:
    print(f"Machine: {machine_description()}. Best of {repeat}, wall time. "
          f"Fixed cost of `run_program` on an empty `main()`: {fixed_ms:.2f} ms.")
    print()
    with_all = any(r.all_res is not None for r in rows)
    all_head, all_rule = (" all-resumable ratio |", "---:|") if with_all else ("", "")
    print(f"| group | workload | what | CPython ms | Flowmetal ms | ratio | CPU-time ratio |{all_head} "
          "resumable units | note |")
    print(f"|---|---|---|---:|---:|---:|---:|{all_rule}---|---|")
    for row in rows:
        all_cell = f" {_fmt_ratio(row.ratio_all).strip()} |" if with_all else ""
        print(f"| {row.w.group} | {row.w.name} | {row.w.what} | {_fmt_s(row.cpython).strip()} | "
              f"{_fmt_s(row.flowmetal).strip()} | {_fmt_ratio(row.ratio).strip()} | "
              f"{_fmt_ratio(row.ratio_cpu).strip()} |{all_cell} "
              f"{row.resumable} | {_verdict(row) or '-'} |")
    if snap is not None:
        print()
        print("| snapshot measure | median of 20 | min | target |")
        print("|---|---:|---:|---|")
        print(f"| snapshot size | {snap.size:,} bytes | | |")
        print(f"| resumable frames on the stack | {snap.frames} | | |")
        for label, t, target in (
            ("`snapshot()`", snap.snapshot, ""),
            ("`Machine.restore(data)`", snap.restore, ""),
            ("`Machine.restore(data, program=prog)`", snap.restore_cached, ""),
            ("snapshot + restore", snap.total, _snap_verdict(snap.total)),
            ("snapshot + restore, cached program", snap.total_cached, _snap_verdict(snap.total_cached)),
            ("`compile_program` (a restore with nothing cached adds this)", snap.compile, ""),
        ):
            print(f"| {label} | {t.median_ms:.2f} ms | {t.min_ms:.2f} ms | {target} |")
        print(f"| restored machine finishes correctly | {snap.resumed_ok} | | |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5, help="best-of-N rounds per workload (default 5)")
    ap.add_argument("--markdown", action="store_true", help="also print the results as Markdown tables")
    ap.add_argument("--only", default="", help="comma-separated workload names")
    ap.add_argument("--all-resumable", type=int, default=0, metavar="N",
                    help="also time each program compiled with all_resumable=True, best of N (slow: 0 = skip)")
    ap.add_argument("--no-snapshot", action="store_true", help="skip the snapshot benchmark")
    args = ap.parse_args(argv)
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    snap: SnapRow | None = None
    snap_error = ""
    if not args.no_snapshot:
        print("running snapshot ...", file=sys.stderr, flush=True)
        try:
            snap = bench_snapshot()
        except Exception as e:  # report it next to the workload figures rather than lose them
            snap_error = f"snapshot benchmark failed: {type(e).__name__}: {e}"
    rows = []
    for w in WORKLOADS:
        if only and w.name not in only:
            continue
        print(f"running {w.name} ...", file=sys.stderr, flush=True)
        rows.append(bench_workload(w, args.repeat, args.all_resumable))
    fixed_ms = fixed_cost(args.repeat)
    print_table(rows, snap, args.repeat, fixed_ms)
    if args.markdown:
        print()
        print_markdown(rows, snap, args.repeat, fixed_ms)
    if snap_error:
        print()
        print(snap_error)
    ok = all(r.status == "ok" for r in rows) and not snap_error and (snap is None or snap.resumed_ok)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
