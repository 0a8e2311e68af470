"""What the benchmark scripts share: their result rows and tables, and the wake-up
program (the same one on SQLite and PostgreSQL, so the two latencies compare)."""

from __future__ import annotations

from dataclasses import dataclass

WAKE = """\
from flowmetal import now, receive


def main(n=200):
    times = []
    for i in range(n):
        receive()
        times.append(now())
    return times
"""


@dataclass
class Row:
    figure: str
    value: str
    target: str = ""
    met: bool | None = None


def pct(xs: list[float], p: float) -> float:
    """The p-th percentile (nearest rank)."""
    s = sorted(xs)
    return s[max(0, min(len(s) - 1, round(p / 100 * (len(s) - 1))))]


def _mark(met: bool | None) -> str:
    return "" if met is None else ("yes" if met else "NO")


def print_table(rows: list[Row]) -> None:
    w0 = max(len(r.figure) for r in rows)
    w1 = max(len(r.value) for r in rows)
    w2 = max(len(r.target) for r in rows)
    print()
    print(f"{'figure':<{w0}}  {'value':>{w1}}  {'target':<{w2}}  met?")
    print("-" * (w0 + w1 + w2 + 10))
    for r in rows:
        print(f"{r.figure:<{w0}}  {r.value:>{w1}}  {r.target:<{w2}}  {_mark(r.met)}")


def markdown(rows: list[Row]) -> str:
    out = ["| figure | value | target | met? |", "|---|---:|---|---|"]
    out += [f"| {r.figure.strip()} | {r.value} | {r.target} | {_mark(r.met)} |" for r in rows]
    return "\n".join(out)
