"""The web console's pages on a big node, measured against baselines in the same run (not a test).

    .venv/bin/python bench/bench_console.py              # 10,000 finished programs, 5,000 events
    .venv/bin/python bench/bench_console.py --markdown   # also a Markdown table
    .venv/bin/python bench/bench_console.py --quick      # 1,000 programs (a smoke run)

A SQLite store (in a temp dir) gets N finished programs, run for real by an
in-process worker, and one program with about 5,000 events in ~100 slices (a loop
of `now()` calls, a print and `sleep(0)` every 25 rounds). A `flowmetal serve
--no-worker` process serves it; each page is fetched over loopback HTTP, as a
browser would (the full HTML), `--repeat` times, alternating pages so they share the
machine's noise; the median and the worst are reported.

Pages: the programs list (first page, 50 rows, counts per status), the list filtered
by status and by text, a later page (cursor), the calls page; the 5,000-event
program at its latest event, at an early event (state rebuilt from a checkpoint),
and with a diff against another event.

Baselines, same run: `GET /health` (the HTTP round trip and the server's floor), and
the raw SQLite reads each page needs, with the standard library on the same file
(the list: the page's rows + counts by status; the program: all its events).
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from common import Row, markdown, print_table

FINISHED = """\
def main(i=0):
    return i * 2
"""
LONG = """\
from flowmetal import now, sleep


def main(n=2400):
    total = 0
    for i in range(n):
        t = now()
        total = total + i
        if i % 25 == 0:
            print("step", i, total)
            sleep(0)
    return total
"""


def build(directory: Path, programs: int) -> tuple[str, str]:
    """A store with `programs` finished programs and the long one; (store URL, long id)."""
    from flowmetal.runtime.driver import Runtime
    from flowmetal.runtime.worker import Worker
    from flowmetal.store import open_store

    (directory / "finished.flow").write_text(FINISHED)
    (directory / "long.flow").write_text(LONG)
    url = f"sqlite:///{directory / 'console.db'}"
    store = open_store(url + "?synchronous=OFF")  # (only the setup: the pages read)
    rt = Runtime(store, reuse_machines=True)
    t0 = time.perf_counter()
    for i in range(programs):
        rt.start(str(directory / "finished.flow"), {"i": i}, program_id=f"job-{i:05d}")
        if i % 500 == 499:
            Worker(rt, concurrency=64, notify=False).run(idle_exit=True)
    long_id = rt.start(str(directory / "long.flow"), {}, program_id="long")
    Worker(rt, concurrency=64, notify=False).run(idle_exit=True)
    while store.get_program(long_id).status != "completed":
        Worker(rt, concurrency=64, notify=False).run(idle_exit=True)
    events = store.get_program(long_id).last_seq
    print(f"setup: {programs} finished programs and one of {events} events in {time.perf_counter() - t0:.1f} s",
          file=sys.stderr)
    store.close()
    return url, long_id


def serve(directory: Path, url: str) -> tuple[subprocess.Popen[str], str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOWMETAL_", "OTEL_"))}
    proc = subprocess.Popen([sys.executable, "-m", "flowmetal", "serve", "--store", url, "--port", "0", "--no-worker",
                             "--log-level", "warning"], cwd=directory, env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    base = proc.stdout.readline().split()[3]
    deadline = time.monotonic() + 20
    while True:
        try:
            if httpx.get(f"{base}/health").status_code == 200:
                return proc, base
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit("the server did not come up")
        time.sleep(0.05)


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--programs", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    programs = 1_000 if args.quick else args.programs
    with tempfile.TemporaryDirectory(prefix="fm-bench-console-") as tmp:
        directory = Path(tmp)
        url, long_id = build(directory, programs)
        db = sqlite3.connect(directory / "console.db")
        events = db.execute("SELECT last_seq FROM programs WHERE id = ?", (long_id,)).fetchone()[0]
        proc, base = serve(directory, url)
        try:
            http = httpx.Client(base_url=base, timeout=60)

            def get(path: str) -> Callable[[], object]:
                def fetch() -> object:
                    r = http.get(path)
                    assert r.status_code == 200, (path, r.status_code, r.text[:300])
                    return r.text
                return fetch

            first = http.get("/ui/").text
            cursor = first.split('id="next-page" href="')[1].split('"')[0].replace("&amp;", "&")
            pages: dict[str, Callable[[], object]] = {
                "GET /health (HTTP floor)": get("/health"),
                "raw SQLite: list page rows + counts": lambda: (
                    db.execute("SELECT * FROM programs ORDER BY created_at DESC, id DESC LIMIT 51").fetchall(),
                    db.execute("SELECT status, count(*) FROM programs GROUP BY status").fetchall()),
                "raw SQLite: the program's events": lambda: db.execute(
                    "SELECT seq, type, data, at FROM events WHERE program_id = ? ORDER BY seq", (long_id,)).fetchall(),
                "list: first page": get("/ui/"),
                "list: status=completed": get("/ui/?status=completed"),
                "list: text filter (q=job-04)": get("/ui/?q=job-04"),
                "list: a later page (cursor)": get(cursor),
                "list: live refresh (programs.part)": get("/ui/programs.part"),
                "calls page": get("/ui/calls"),
                f"program ({events} events): latest event": get(f"/ui/programs/{long_id}"),
                f"program ({events} events): event 100": get(f"/ui/programs/{long_id}?at=100"),
                f"program ({events} events): diff of two events": get(
                    f"/ui/programs/{long_id}?at={events - 1}&against={events // 2}"),
            }
            for fetch in pages.values():  # warm up (program compiled, caches filled)
                fetch()
            samples: dict[str, list[float]] = {name: [] for name in pages}
            for _ in range(args.repeat):
                for name, fetch in pages.items():
                    samples[name].append(timed(fetch))
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    med = {name: statistics.median(xs) for name, xs in samples.items()}
    floor = med["GET /health (HTTP floor)"]
    raw_list = med["raw SQLite: list page rows + counts"]
    raw_events = med["raw SQLite: the program's events"]
    rows = [Row("GET /health (HTTP floor)", f"{floor * 1000:.2f} ms"),
            Row("raw SQLite: list page rows + counts", f"{raw_list * 1000:.2f} ms"),
            Row("raw SQLite: the program's events", f"{raw_events * 1000:.2f} ms")]
    for name in pages:
        if name.startswith(("GET /health", "raw SQLite")):
            continue
        m, worst = med[name], max(samples[name])
        base_name, base = (("raw events", raw_events) if name.startswith("program") else ("raw list", raw_list))
        target, met = "", None
        if name == "list: first page":
            target, met = "< 300 ms", m < 0.3
        elif name.startswith("program") and "latest" in name:
            target, met = "< 1 s", m < 1.0
        rows.append(Row(f"{name} (median; worst)", f"{m * 1000:.1f} ms; {worst * 1000:.1f} ms "
                        f"= {m / floor:.1f}x /health, {m / base:.1f}x {base_name}", target, met))
    print(f"\n{programs} finished programs + 1 of {events} events; {args.repeat} rounds; "
          f"{platform.python_implementation()} {platform.python_version()}, SQLite {sqlite3.sqlite_version}")
    print_table(rows)
    if args.markdown:
        print()
        print(markdown(rows))


if __name__ == "__main__":
    main()
