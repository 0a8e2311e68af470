"""Schedules: when ticks fall, which to start, and the thread that starts them.

A schedule ticks either on a cron expression in a time zone (croniter over wall-clock times,
zoneinfo with the `tzdata` package, so results do not depend on the host) or every N whole
seconds (aligned to the Unix epoch). Each tick's run is a program whose id is the schedule's
name and the tick's local time, `NAME@2026-12-08T02:00:00+01:00`; the store creates it in the
same transaction that moves the schedule on, and refuses a second program with that id, so a
tick starts exactly once however many schedulers (workers) share the store.

Daylight-saving time, for cron schedules (as Vixie cron does it):
* a time of day that does not exist that day (inside a spring-forward gap) runs once, when
  the gap ends (`30 2 * * *` in Europe/Paris on the last Sunday of March: at 03:00+02:00);
* a time of day that occurs twice (inside a fall-back repeat) runs once, at its first
  occurrence (`30 2 * * *` on the last Sunday of October: at 02:30+02:00 only);
* except for expressions whose minute or hour field starts with `*` (every minute, hourly...):
  they follow real time, so they do not run in a gap and run in both passes of a repeat
  (the two runs' ids differ by their UTC offset).

Overlap policies, for a tick that comes while the schedule's last run is still running:
`skip` (the default: the tick is dropped), `buffer` (one tick waits and starts when the run
ends; more are dropped), `allow` (it starts anyway) and `cancel` (the running one is asked to
cancel, at its current wait, and the new one starts at once). Ticks missed while no scheduler
ran are started late if they are at most `catchup` seconds old (default 1 h), subject to the
overlap policy; older ones are counted as missed. `jitter` delays each tick's start by a
pseudo-random amount below it, the same in every process (the id keeps the nominal time).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from flowmetal.errors import UsageError
from flowmetal.observe.logs import event, logger
from flowmetal.store.base import Store
from flowmetal.store.operations import OVERLAP_POLICIES, ScheduleRow, TickPlan

MAX_DST_SHIFT = dt.timedelta(hours=3)  # more than any UTC offset change a zone has made at once
MAX_RUNS_PER_FIRE = 100  # a catch-up starts at most this many runs per transaction (the rest next)
MAX_COUNT = 10_000  # ticks counted one by one when a long downtime is skipped
MAX_BACKFILL = 1000
log = logger("schedules")
POLL = 1.0  # seconds between a scheduler's looks at the store, at most


@dataclass(frozen=True)
class Spec:
    tz: ZoneInfo
    cron: str | None = None
    every: int | None = None

    @property
    def fixed_time(self) -> bool:
        """A cron expression naming its minutes and hours (DST gaps and repeats run it once)."""
        assert self.cron is not None
        minute, hour = self.cron.split()[:2]
        return not (minute.startswith("*") or hour.startswith("*"))


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise UsageError(f"--tz: unknown time zone {name!r} (use an IANA name such as Europe/Paris or UTC)") from None


def make_spec(cron: str | None, every: float | None, tz: str) -> Spec:
    if (cron is None) == (every is None):
        raise UsageError("give a schedule either --cron EXPRESSION or --every DURATION")
    if every is not None:
        if every < 1 or every != int(every):
            raise UsageError(f"--every: a whole number of seconds, at least 1 (not {every:g})")
        return Spec(zone(tz), every=int(every))
    assert cron is not None
    if len(cron.split()) != 5 or not croniter.is_valid(cron):
        raise UsageError(f"--cron: {cron!r} is not a cron expression (five fields: minute hour day month "
                         "weekday, e.g. '0 2 * * *')")
    return Spec(zone(tz), cron=" ".join(cron.split()))


def spec_of(s: ScheduleRow) -> Spec:
    return make_spec(s.cron, s.every, s.tz)


def run_id(name: str, tick: float, tz: ZoneInfo) -> str:
    """`NAME@2026-12-08T02:00:00+01:00`: the tick's local time, with its UTC offset."""
    return f"{name}@{dt.datetime.fromtimestamp(tick, tz).isoformat(timespec='seconds')}"


def jitter_of(name: str, tick: float, jitter: float) -> float:
    """The same pseudo-random delay below `jitter` in every process."""
    if jitter <= 0:
        return 0.0
    digest = hashlib.sha256(f"{name}@{tick!r}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * jitter


def next_tick(spec: Spec, after: float) -> float | None:
    """The first tick strictly after `after` (epoch seconds); None if the expression never matches."""
    if spec.every is not None:
        return (int(after // spec.every) + 1) * float(spec.every)
    assert spec.cron is not None
    wall = dt.datetime.fromtimestamp(after, spec.tz).replace(tzinfo=None)
    # start early enough that a wall time mapping to an instant after `after` is not passed over
    it = croniter(spec.cron, wall - MAX_DST_SHIFT)
    best: tuple[float, dt.datetime] | None = None
    for _ in range(MAX_COUNT):
        try:
            w = it.get_next(dt.datetime)
        except Exception:  # croniter found no match within its horizon (e.g. 30 February)
            return best[0] if best else None
        if best is not None and w > best[1] + MAX_DST_SHIFT:
            return best[0]  # later wall times can only map to later instants
        for u in _instants(w, spec.tz, spec.fixed_time):
            if u > after and (best is None or u < best[0]):
                best = (u, w)
    return best[0] if best else None


def _instants(wall: dt.datetime, tz: ZoneInfo, fixed_time: bool) -> list[float]:
    """The instants a cron match at local wall time `wall` runs at (see the module's DST rules)."""
    first = wall.replace(tzinfo=tz, fold=0).timestamp()
    second = wall.replace(tzinfo=tz, fold=1).timestamp()
    if first == second:
        return [first]
    if first < second:  # a repeated wall time: first and second occurrence
        return [first] if fixed_time else [first, second]
    # a wall time inside a gap (zoneinfo maps fold=0 past it, fold=1 before it)
    if not fixed_time:
        return []
    lo, hi = int(second), int(first) + 1  # the gap's end: the first instant whose wall time is past `wall`
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if dt.datetime.fromtimestamp(mid, tz).replace(tzinfo=None) > wall:
            hi = mid
        else:
            lo = mid
    return [float(hi)]


def ticks_between(spec: Spec, start: float, end: float, limit: int = MAX_BACKFILL) -> list[float]:
    """Ticks `start <= t <= end`, oldest first (UsageError past `limit`)."""
    out: list[float] = []
    t = next_tick(spec, start - 1e-6)
    while t is not None and t <= end:
        if len(out) == limit:
            raise UsageError(f"more than {limit} ticks between these times: backfill a shorter range")
        out.append(t)
        t = next_tick(spec, t)
    return out


def first_tick(s: ScheduleRow, now: float) -> tuple[float | None, float | None]:
    """(next_tick, due_at) for a schedule created or resumed at `now`."""
    t = next_tick(spec_of(s), now)
    return t, None if t is None else t + jitter_of(s.name, t, s.jitter)


def plan(s: ScheduleRow, live: bool, now: float) -> TickPlan:
    """What a due schedule does now (the store applies it with the programs it starts)."""
    try:
        return _plan(s, spec_of(s), live, now)
    except Exception as e:  # a schedule that cannot be computed stops, and says why
        return TickPlan(next_tick=None, due_at=None, buffered=s.buffered, error=f"{type(e).__name__}: {e}")


def _plan(s: ScheduleRow, spec: Spec, live: bool, now: float) -> TickPlan:
    p = TickPlan(next_tick=s.next_tick, due_at=s.due_at, buffered=s.buffered)
    running = live
    if s.buffered is not None and not live:  # the run it waited for has ended
        p.runs.append((run_id(s.name, s.buffered, spec.tz), s.buffered))
        p.buffered, running = None, True
    if s.due_at is None or s.due_at > now or s.next_tick is None:
        return p
    t: float | None = s.next_tick
    horizon = now - max(s.catchup, 0.0)
    if s.next_tick < horizon:  # downtime: ticks older than the catch-up window are missed
        t, p.missed = _skip_to(spec, s.next_tick, horizon)
    due: list[float] = []
    while t is not None and t + jitter_of(s.name, t, s.jitter) <= now and len(due) < MAX_RUNS_PER_FIRE:
        due.append(t)
        t = next_tick(spec, t)
    if s.overlap == "cancel" and due:
        # the newest tick supersedes the rest; whatever runs is asked to stop
        p.skipped += len(due) - 1
        p.cancel_last = running
        p.runs.append((run_id(s.name, due[-1], spec.tz), due[-1]))
        due = []
    for tick in due:
        if not running or s.overlap == "allow":
            p.runs.append((run_id(s.name, tick, spec.tz), tick))
            running = True
        elif s.overlap == "buffer" and p.buffered is None:
            p.buffered = tick
        else:
            p.skipped += 1
    p.next_tick = t
    p.due_at = None if t is None else t + jitter_of(s.name, t, s.jitter)
    return p


def _skip_to(spec: Spec, t: float, horizon: float) -> tuple[float | None, int]:
    """(the first tick at or after `horizon`, how many ticks from `t` were passed over)."""
    if spec.every is not None:
        first = next_tick(spec, horizon - 1e-6)
        return first, round(((first or t) - t) / spec.every)
    missed = 0
    nxt: float | None = t
    while nxt is not None and nxt < horizon and missed < MAX_COUNT:
        missed += 1
        nxt = next_tick(spec, nxt)
    if nxt is not None and nxt < horizon:
        nxt = next_tick(spec, horizon - 1e-6)
    return nxt, missed


# -- what the CLI and the API do with schedules --------------------------------------------------

def new_schedule(name: str, program: str, args: dict[str, Any], *, cron: str | None = None,
                 every: float | None = None, tz: str = "UTC", overlap: str = "skip", catchup: float = 3600.0,
                 jitter: float = 0.0, retain: float | None = None, paused: bool = False,
                 now: float) -> ScheduleRow:
    """A checked schedule, its first tick computed (UsageError says what is wrong)."""
    from flowmetal.runtime.deployments import check_name, is_deployment_name

    check_name(name)
    if not is_deployment_name(program):
        raise UsageError(f"{program!r}: a schedule runs a deployment (deploy the file with `flowmetal deploy`)")
    if overlap not in OVERLAP_POLICIES:
        raise UsageError(f"--overlap: one of {', '.join(OVERLAP_POLICIES)}, not {overlap!r}")
    if catchup < 0 or jitter < 0:
        raise UsageError("--catchup and --jitter cannot be negative")
    spec = make_spec(cron, every, tz)
    row = ScheduleRow(name=name, program=program, args=args, tz=tz, cron=spec.cron,
                      every=float(spec.every) if spec.every is not None else None, overlap=overlap,
                      catchup=catchup, jitter=jitter, retain=retain, paused=paused)
    if next_tick(spec, now) is None:
        raise UsageError(f"--cron: {cron!r} never matches a date")
    row.next_tick, row.due_at = first_tick(row, now)
    return row


def schedule_json(s: ScheduleRow, now: float) -> dict[str, Any]:
    """A schedule as the CLI and the API show it: its row, its next run's id (in its own zone)
    and in how many seconds that run starts."""
    out = s.to_json()
    upcoming = not s.paused and s.next_tick is not None
    out["next_run"] = run_id(s.name, s.next_tick, zone(s.tz)) if upcoming and s.next_tick is not None else None
    out["next_run_in"] = max(0.0, s.due_at - now) if upcoming and s.due_at is not None else None
    return out


def pause(store: Store, name: str, now: float) -> ScheduleRow:
    return store.update_schedule(name, {"paused": True}, now)


def resume(store: Store, name: str, now: float) -> ScheduleRow:
    """Ticks that fell while it was paused are not started: it goes on from now."""
    s = store.get_schedule(name)
    next_at, due_at = first_tick(s, now)
    return store.update_schedule(name, {"paused": False, "next_tick": next_at, "due_at": due_at, "buffered": None},
                                 now)


def trigger(store: Store, name: str, now: float) -> str:
    """Start a run now, whatever the overlap policy: `NAME@<now>.manual` (one per second)."""
    s = store.get_schedule(name)
    program_id = run_id(s.name, float(int(now)), zone(s.tz)) + ".manual"
    store.start_scheduled(name, [(program_id, now)], now)
    store.notify()
    return program_id


def backfill(store: Store, name: str, start: float, end: float, now: float) -> list[str]:
    """Start a run for every tick from `start` to `end` (inclusive) now, whatever the overlap
    policy; ticks that ran already (same id) are not started again. The ids started."""
    s = store.get_schedule(name)
    spec = spec_of(s)
    if end < start:
        raise UsageError("--to is before --from")
    ticks = ticks_between(spec, start, end)
    created = store.start_scheduled(name, [(run_id(s.name, t, spec.tz), t) for t in ticks], now, as_last=False)
    if created:
        store.notify()
    return created


def parse_when(text: str, tz: str, what: str) -> float:
    """An ISO-8601 date or time; without an offset it is read in the schedule's zone."""
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{what}: {text!r} is not an ISO-8601 time (e.g. 2026-12-01T02:00 or "
                         "2026-12-01T02:00:00+01:00)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=zone(tz))
    return when.timestamp()


class Scheduler:
    """Starts due schedules' runs from this process (every worker runs one; the store makes sure
    each tick starts once). Sleeps until the next tick is due, looking again at least every
    POLL seconds (a buffered tick, a schedule created elsewhere)."""

    def __init__(self, store: Store, *, clock: Callable[[], float] = time.time, poll: float = POLL) -> None:
        self.store = store
        self.clock = clock
        self.poll = poll
        self.stop_requested = threading.Event()
        self.started = 0

    def fire_once(self) -> list[str]:
        ids: list[str] = []
        while True:
            got = self.store.fire_schedules(plan, self.clock())
            ids += got
            if not got:
                break
        if ids:
            self.started += len(ids)
            self.store.notify()  # a worker may be asleep
            for program_id in ids:
                event(log, logging.INFO, "scheduled run started", program=program_id)
        return ids

    def run(self) -> None:
        while not self.stop_requested.is_set():
            timeout = self.poll
            try:
                self.fire_once()
                due = self.store.next_schedule_due()
                if due is not None:
                    # (due already: another scheduler holds it; look again in a moment)
                    timeout = min(self.poll, max(0.05, due - self.clock()))
            except Exception as e:  # the store is unreachable for now: try again
                event(log, logging.WARNING, "cannot start scheduled runs", error=str(e))
            self.stop_requested.wait(timeout)

    def stop(self) -> None:
        self.stop_requested.set()
