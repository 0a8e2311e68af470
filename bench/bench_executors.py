"""What running slices in executor processes costs: the same workloads, in the same
run, with slices in the worker's own process (before: `LocalSlices`) and in
executor processes (after: what `flowmetal worker`, `run` and `serve` do).

    .venv/bin/python bench/bench_executors.py [--rounds 3] [--markdown] [--dir /some/disk]

1. sequential in-process calls: one program making N `call("echo", i)` that the
   worker performs itself (one commit per step); steps/s.
2. 100 programs at once, each making 20 such calls; steps/s.
3. kill -9 recovery: 100 programs of 20 calls, the worker killed once about half
   the steps are done, a fresh worker process started; seconds from its start
   until all 100 completed (its start-up measured apart: process start until it
   claims).

Baseline: raw SQLite single-row commits/s on the same disk, measured between
the rounds. Medians of `--rounds` runs, before and after alternating.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import raw_commits
from flowmetal.connectors.functions import FunctionWorker
from flowmetal.runtime.driver import Runtime
from flowmetal.runtime.executors import ExecutorSettings
from flowmetal.runtime.worker import Worker
from flowmetal.store import open_store
from flowmetal.store.base import FINISHED

CALLS = """
from flowmetal import call
def main(n):
    total = 0
    for i in range(n):
        total += call("echo", i)
    return total
"""
MODES = ("in process (before)", "executors (after)")


def _runtime(url: str, executors: bool) -> Runtime:
    return Runtime(open_store(url), reuse_machines=True,
                   executors=ExecutorSettings() if executors else None)


def _functions(store: Any) -> FunctionWorker:
    fw = FunctionWorker(store, concurrency=8)
    fw.function("echo")(lambda ctx, x: x)
    return fw


SPIN = "def main():\n    n = 0\n    while True:\n        n += 1\n"


def run_steps(base: Path, executors: bool, programs: int, steps: int, spinner: bool = False) -> float:
    """steps/s of `programs` programs of `steps` in-process calls each, from a worker started
    beforehand (its executors ready); with `spinner`, next to a program that never waits."""
    db = base / f"steps-{time.monotonic_ns()}.db"
    url = f"sqlite:///{db}"
    rt = _runtime(url, executors)
    store = rt.store
    path = base / "calls.flow"
    path.write_text(CALLS)
    worker = Worker(rt, concurrency=128, functions=_functions(store), notify=True)
    if executors:  # the executors start with the worker: wait until they are ready
        warm = rt.start(str(path), {"n": 1})
        worker.run(until=lambda: store.get_program(warm).status in FINISHED)
        worker = Worker(rt, concurrency=128, functions=_functions(store), notify=True)
    if spinner:
        spin = base / "spin.flow"
        spin.write_text(SPIN)
        rt.start(str(spin))
    ids = [rt.start(str(path), {"n": steps}) for _ in range(programs)]
    start = time.perf_counter()
    finished_at: list[float] = []

    def done() -> bool:  # (the run itself ends only once a spinner's slice has been stopped too)
        if not finished_at and all(store.get_program(i).status in FINISHED for i in ids):
            finished_at.append(time.perf_counter())
        return bool(finished_at)

    worker.run(until=done)
    took = finished_at[0] - start
    assert all(store.get_program(i).result == steps * (steps - 1) // 2 for i in ids)
    rt.close()
    return programs * steps / took


_WORKER = """
import sys, time
from flowmetal.runtime.driver import Runtime
from flowmetal.runtime.executors import ExecutorSettings
from flowmetal.runtime.worker import Worker
from flowmetal.store import open_store
from flowmetal.connectors.functions import FunctionWorker
url, executors = sys.argv[1], sys.argv[2] == "1"
rt = Runtime(open_store(url), reuse_machines=True, executors=ExecutorSettings() if executors else None)
fw = FunctionWorker(rt.store, concurrency=8)
fw.function("echo")(lambda ctx, x: x)
w = Worker(rt, concurrency=128, functions=fw)
w.install_signal_handlers()
fw.start()  # also serves calls left by a dead worker (as `flowmetal worker --functions` does)
print("ready", time.time(), flush=True)
try:
    w.run()
finally:
    fw.stop(5)
"""


def recovery(base: Path, executors: bool, programs: int = 100, steps: int = 20) -> tuple[float, float]:
    """(seconds from the new worker's start until all complete, of which start-up until it is
    ready) after a kill -9 once about half the steps are done."""
    url = f"sqlite:///{base / f'recovery-{time.monotonic_ns()}.db'}"
    store = open_store(url)
    rt = Runtime(store)
    path = base / "calls.flow"
    path.write_text(CALLS)
    ids = [rt.start(str(path), {"n": steps}) for _ in range(programs)]
    cmd = [sys.executable, "-c", _WORKER, url, "1" if executors else "0"]
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    total = programs * (2 + 2 * steps)
    while sum(store.get_program(i).last_seq for i in ids) < total / 2:
        time.sleep(0.005)
    first.send_signal(signal.SIGKILL)
    first.wait()
    start = time.time()
    second = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert second.stdout is not None
    ready = float(second.stdout.readline().split()[1]) - start
    while not all(store.get_program(i).status in FINISHED for i in ids):
        time.sleep(0.005)
    took = time.time() - start
    second.send_signal(signal.SIGTERM)
    second.wait(30)
    assert all(store.get_program(i).result == steps * (steps - 1) // 2 for i in ids)
    return took, ready


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=300, help="calls of the sequential program")
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--dir", default=None)
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="fm-bench-exec-", dir=args.dir))
    figures: dict[str, dict[str, list[float]]] = {m: {} for m in MODES}
    raws: list[float] = []

    def add(mode: str, name: str, value: float) -> None:
        figures[mode].setdefault(name, []).append(value)

    for r in range(args.rounds):
        for executors in ((False, True) if r % 2 == 0 else (True, False)):
            mode = MODES[executors]
            raws.append(raw_commits(base / "raw.db"))
            add(mode, "sequential in-process calls, steps/s", run_steps(base, executors, 1, args.steps))
            add(mode, "100 programs x 20 in-process calls at once, steps/s", run_steps(base, executors, 100, 20))
            if executors:
                add(mode, "100 programs x 20 calls next to a program that never waits, steps/s",
                    run_steps(base, executors, 100, 20, spinner=True))
            took, ready = recovery(base, executors)
            add(mode, "kill -9 recovery of 100 programs, s (new worker start -> all completed)", took)
            add(mode, "  of which the new worker's start-up until ready, s", ready)
            print(f"round {r + 1}, {mode}: " + ", ".join(f"{k.split(',')[0]} {v[-1]:.3g}"
                                                           for k, v in figures[mode].items()), flush=True)
    names = list(figures[MODES[1]])
    rows = [("raw SQLite commits/s, median (min-max) of the run",
             f"{statistics.median(raws):,.0f} ({min(raws):,.0f}-{max(raws):,.0f})", "", "")]
    for name in names:
        after = statistics.median(figures[MODES[1]][name])
        if name not in figures[MODES[0]]:  # executors only: compared with the same run without the spinner
            alone = statistics.median(figures[MODES[1]]["100 programs x 20 in-process calls at once, steps/s"])
            rows.append((name, "(cannot stop it)", f"{after:,.3g}", f"{(after - alone) / alone * 100:+.0f}% vs alone"))
            continue
        before = statistics.median(figures[MODES[0]][name])
        change = (after - before) / before * 100
        rows.append((name, f"{before:,.3g}", f"{after:,.3g}", f"{change:+.0f}%"))
    print()
    if args.markdown:
        print(f"| figure (median of {args.rounds}) | in process (before) | executors (after) | change |")
        print("|---|---:|---:|---:|")
        for figure, b, a, c in rows:
            print(f"| {figure} | {b} | {a} | {c} |")
    else:
        for figure, b, a, c in rows:
            print(f"{figure:<80} {b:>12} {a:>12} {c:>7}")
    print(f"\n{os.cpu_count()} CPUs; executors: one per CPU")


if __name__ == "__main__":
    main()
