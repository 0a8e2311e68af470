"""Deployments, schedules, webhook configurations and pruning, in SQL both backends run.

The statements are written once, with `?` placeholders; a backend hands them to its
connection through a `Tx` (PostgreSQL's turns `?` into `%s`). What differs is how a backend
runs a transaction and locks rows, so it provides `_ops_write`, `_ops_read`, `_ops_create`
(its own program insert, so programs started by a schedule are created exactly as any other)
and `_LOCK_SKIP` / `_LOCK` (PostgreSQL's `FOR UPDATE SKIP LOCKED` / `FOR UPDATE`; nothing in
SQLite, whose write transactions already exclude each other).
"""

from __future__ import annotations

import hashlib
import json
from abc import abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from flowmetal.store.base import EVENT_VERSION, FINISHED, NewProgram, ProgramExists, Store, dumps
from flowmetal.store.operations import (
    PROGRAM_TABLES,
    DeploymentRow,
    HookRow,
    OperationsError,
    Planner,
    PruneReport,
    PruneRule,
    ScheduleExists,
    ScheduleRow,
    UnknownDeployment,
    UnknownHook,
    UnknownSchedule,
)

T = TypeVar("T")

# schema version 3, as both backends create it (REAL becomes DOUBLE PRECISION in PostgreSQL)
MIGRATION = [
    "ALTER TABLE programs ADD COLUMN deployment TEXT",
    "ALTER TABLE programs ADD COLUMN retain REAL",
    "ALTER TABLE programs ADD COLUMN run INTEGER NOT NULL DEFAULT 1",
    "CREATE INDEX programs_parent ON programs (parent_id)",
    # what prune scans: finished programs, oldest first, and those with a retention of their own
    "CREATE INDEX programs_finished ON programs (updated_at)"
    " WHERE status IN ('completed', 'failed', 'cancelled', 'moved')",
    "CREATE INDEX programs_expiry ON programs ((updated_at + retain))"
    " WHERE retain IS NOT NULL AND status IN ('completed', 'failed', 'cancelled', 'moved')",
    """CREATE TABLE deployments (
        name TEXT PRIMARY KEY,
        latest INTEGER NOT NULL,
        retain REAL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    )""",
    """CREATE TABLE deployment_versions (
        name TEXT NOT NULL,
        version INTEGER NOT NULL,
        main TEXT NOT NULL,
        source_hash TEXT NOT NULL,
        files TEXT NOT NULL,
        bundle_hash TEXT NOT NULL,
        created_at REAL NOT NULL,
        PRIMARY KEY (name, version)
    )""",
    """CREATE TABLE schedules (
        name TEXT PRIMARY KEY,
        program TEXT NOT NULL,
        args TEXT NOT NULL,
        tz TEXT NOT NULL,
        cron TEXT,
        every REAL,
        overlap TEXT NOT NULL,
        catchup REAL NOT NULL,
        jitter REAL NOT NULL,
        retain REAL,
        paused INTEGER NOT NULL DEFAULT 0,
        next_tick REAL,
        due_at REAL,
        buffered REAL,
        last_run TEXT,
        runs INTEGER NOT NULL DEFAULT 0,
        skipped INTEGER NOT NULL DEFAULT 0,
        missed INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    )""",
    "CREATE INDEX schedules_due ON schedules (due_at) WHERE paused = 0",
    """CREATE TABLE hooks (
        name TEXT PRIMARY KEY,
        config TEXT NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    )""",
]

SCHEDULE_COLUMNS = ("name", "program", "args", "tz", "cron", "every", "overlap", "catchup", "jitter", "retain",
                    "paused", "next_tick", "due_at", "buffered", "last_run", "runs", "skipped", "missed",
                    "last_error", "created_at", "updated_at")
# what update_schedule may change
_SETTABLE = ("program", "args", "tz", "cron", "every", "overlap", "catchup", "jitter", "retain", "paused",
             "next_tick", "due_at", "buffered")
_LIVE = "('running', 'waiting')"
# due: its tick came, or a tick it buffered may start because its last run ended
_DUE = ("paused = 0 AND (due_at <= ? OR (buffered IS NOT NULL AND NOT EXISTS (SELECT 1 FROM programs p"
        f" WHERE p.id = schedules.last_run AND p.status IN {_LIVE})))")


class Tx(Protocol):
    """One transaction (or autocommit connection) of a backend, with `?` placeholders."""

    conn: Any

    def one(self, sql: str, params: Sequence[Any] = ()) -> dict[str, Any] | None: ...

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]: ...

    def run(self, sql: str, params: Sequence[Any] = ()) -> int: ...


def bundle_hash(files: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(sorted(files.items())).encode()).hexdigest()


def _marks(n: int) -> str:
    return ", ".join("?" * n)


def _schedule(r: dict[str, Any]) -> ScheduleRow:
    values = {c: r[c] for c in SCHEDULE_COLUMNS}
    values["args"] = json.loads(values["args"])
    values["paused"] = bool(values["paused"])
    return ScheduleRow(**values)


def _deployment(version: dict[str, Any], head: dict[str, Any]) -> DeploymentRow:
    return DeploymentRow(name=version["name"], version=version["version"], main=version["main"],
                         source_hash=version["source_hash"], files=json.loads(version["files"]),
                         created_at=version["created_at"], latest=head["latest"], retain=head["retain"])


class SqlOperations(Store):
    _LOCK_SKIP = ""  # appended to a SELECT of rows to take, skipping those another process holds
    _LOCK = ""  # appended to a SELECT of one row to lock until the transaction ends

    @abstractmethod
    def _ops_write(self, fn: Callable[[Tx], T]) -> T: ...

    @abstractmethod
    def _ops_read(self, fn: Callable[[Tx], T]) -> T: ...

    @abstractmethod
    def _ops_create(self, tx: Tx, new: NewProgram, now: float) -> bool:
        """The backend's program insert, inside `tx`: False if the same program exists."""

    # -- deployments ----------------------------------------------------------------------------
    def deploy(self, name: str, main: str, files: dict[str, tuple[str, str]], now: float,
               retain: float | None = None, set_retain: bool = False) -> tuple[DeploymentRow, bool]:
        if main not in files:
            raise OperationsError(f"deploy {name}: the main program {main!r} is not among the files")
        hashes = {path: h for path, (h, _) in sorted(files.items())}
        digest = bundle_hash(hashes)

        def run(tx: Tx) -> tuple[DeploymentRow, bool]:
            head = tx.one(f"SELECT * FROM deployments WHERE name = ?{self._LOCK}", (name,))
            if set_retain and head is not None:
                tx.run("UPDATE deployments SET retain = ?, updated_at = ? WHERE name = ?", (retain, now, name))
            if head is not None:
                latest = tx.one("SELECT * FROM deployment_versions WHERE name = ? AND version = ?",
                                (name, head["latest"]))
                if latest is not None and latest["bundle_hash"] == digest and latest["main"] == main:
                    return self._get_deployment(tx, name, None), False
            for path, (h, text) in files.items():
                if tx.one("SELECT 1 AS x FROM sources WHERE hash = ?", (h,)) is None:
                    tx.run("INSERT INTO sources VALUES (?, ?, ?)", (h, path, text))
            version = 1 if head is None else head["latest"] + 1
            tx.run("INSERT INTO deployment_versions VALUES (?, ?, ?, ?, ?, ?, ?)",
                   (name, version, main, hashes[main], dumps(hashes), digest, now))
            if head is None:
                tx.run("INSERT INTO deployments VALUES (?, ?, ?, ?, ?)", (name, version, retain, now, now))
            else:
                tx.run("UPDATE deployments SET latest = ?, updated_at = ? WHERE name = ?", (version, now, name))
            return self._get_deployment(tx, name, None), True

        return self._ops_write(run)

    def _get_deployment(self, tx: Tx, name: str, version: int | None) -> DeploymentRow:
        head = tx.one("SELECT * FROM deployments WHERE name = ?", (name,))
        if head is None:
            raise UnknownDeployment(f"no deployment named {name!r} in {self.url} (`flowmetal deploy FILE "
                                    f"--name {name}` makes one)")
        row = tx.one("SELECT * FROM deployment_versions WHERE name = ? AND version = ?",
                     (name, head["latest"] if version is None else version))
        if row is None:
            raise UnknownDeployment(f"deployment {name!r} has no version {version} (the latest is {head['latest']})")
        return _deployment(row, head)

    def get_deployment(self, name: str, version: int | None = None) -> DeploymentRow:
        return self._ops_read(lambda tx: self._get_deployment(tx, name, version))

    def list_deployments(self, name: str | None = None) -> list[DeploymentRow]:
        def run(tx: Tx) -> list[DeploymentRow]:
            if name is None:
                heads = tx.all("SELECT * FROM deployments ORDER BY name")
                by_name = {h["name"]: h for h in heads}
                rows = tx.all("SELECT v.* FROM deployment_versions v JOIN deployments d ON d.name = v.name"
                              " AND d.latest = v.version ORDER BY v.name")
                return [_deployment(r, by_name[r["name"]]) for r in rows]
            head = tx.one("SELECT * FROM deployments WHERE name = ?", (name,))
            if head is None:
                raise UnknownDeployment(f"no deployment named {name!r} in {self.url}")
            return [_deployment(r, head) for r in tx.all(
                "SELECT * FROM deployment_versions WHERE name = ? ORDER BY version", (name,))]

        return self._ops_read(run)

    def _deployed_program(self, tx: Tx, name: str, program_id: str, args: dict[str, Any],
                          retain: float | None, parent_id: str | None = None) -> NewProgram:
        """A program of the latest version of deployment `name` (UnknownDeployment if none)."""
        dep = self._get_deployment(tx, name, None)
        src = tx.one("SELECT source FROM sources WHERE hash = ?", (dep.source_hash,))
        if src is None:
            raise UnknownDeployment(f"deployment {dep.ref}: its source is missing from the store")
        return NewProgram(program_id, dep.main, src["source"], dep.source_hash, dict(args), parent_id=parent_id,
                          deployment=dep.ref, retain=retain if retain is not None else dep.retain)

    # -- schedules ------------------------------------------------------------------------------
    def create_schedule(self, schedule: ScheduleRow, now: float) -> None:
        def run(tx: Tx) -> None:
            if tx.one("SELECT 1 AS x FROM schedules WHERE name = ?", (schedule.name,)) is not None:
                raise ScheduleExists(f"a schedule named {schedule.name!r} exists already (delete it first)")
            self._get_deployment(tx, schedule.program, None)
            values = schedule.to_json()
            values.update(args=dumps(schedule.args), paused=int(schedule.paused), created_at=now, updated_at=now)
            tx.run(f"INSERT INTO schedules ({', '.join(SCHEDULE_COLUMNS)}) VALUES ({_marks(len(SCHEDULE_COLUMNS))})",
                   [values[c] for c in SCHEDULE_COLUMNS])

        self._ops_write(run)

    def _get_schedule(self, tx: Tx, name: str, lock: str = "") -> ScheduleRow:
        r = tx.one(f"SELECT * FROM schedules WHERE name = ?{lock}", (name,))
        if r is None:
            raise UnknownSchedule(f"no schedule named {name!r} in {self.url}")
        return _schedule(r)

    def get_schedule(self, name: str) -> ScheduleRow:
        return self._ops_read(lambda tx: self._get_schedule(tx, name))

    def list_schedules(self) -> list[ScheduleRow]:
        return self._ops_read(lambda tx: [_schedule(r) for r in tx.all("SELECT * FROM schedules ORDER BY name")])

    def update_schedule(self, name: str, changes: dict[str, Any], now: float) -> ScheduleRow:
        bad = sorted(set(changes) - set(_SETTABLE))
        if bad:
            raise OperationsError(f"a schedule's {', '.join(bad)} cannot be changed")
        values = dict(changes)
        if "args" in values:
            values["args"] = dumps(values["args"])
        if "paused" in values:
            values["paused"] = int(values["paused"])

        def run(tx: Tx) -> ScheduleRow:
            self._get_schedule(tx, name, self._LOCK)
            if values:
                assignments = ", ".join(f"{c} = ?" for c in values)
                tx.run(f"UPDATE schedules SET {assignments}, updated_at = ? WHERE name = ?",
                       [*values.values(), now, name])
            return self._get_schedule(tx, name)

        return self._ops_write(run)

    def delete_schedule(self, name: str) -> None:
        def run(tx: Tx) -> None:
            if tx.run("DELETE FROM schedules WHERE name = ?", (name,)) == 0:
                raise UnknownSchedule(f"no schedule named {name!r} in {self.url}")

        self._ops_write(run)

    def next_schedule_due(self) -> float | None:
        r = self._ops_read(lambda tx: tx.one("SELECT MIN(due_at) AS due FROM schedules WHERE paused = 0"))
        return r["due"] if r is not None else None

    def fire_schedules(self, plan: Planner, now: float, limit: int = 16) -> list[str]:
        query = f"SELECT * FROM schedules WHERE {_DUE} ORDER BY due_at LIMIT ?"
        # look before taking locks: most polls find nothing due
        if not self._ops_read(lambda tx: tx.all(query, (now, limit))):
            return []

        def run(tx: Tx) -> list[str]:
            started: list[str] = []
            for r in tx.all(query + self._LOCK_SKIP, (now, limit)):
                started += self._apply_tick(tx, _schedule(r), plan, now)
            return started

        return self._ops_write(run)

    def _last_run_live(self, tx: Tx, s: ScheduleRow) -> bool:
        if s.last_run is None:
            return False
        return tx.one(f"SELECT 1 AS x FROM programs WHERE id = ? AND status IN {_LIVE}", (s.last_run,)) is not None

    def _apply_tick(self, tx: Tx, s: ScheduleRow, plan: Planner, now: float) -> list[str]:
        live = self._last_run_live(tx, s)
        p = plan(s, live, now)
        if p.cancel_last and live:
            tx.run(f"UPDATE programs SET cancel_requested = 1, runnable = 1, updated_at = ? WHERE id = ?"
                   f" AND status IN {_LIVE}", (now, s.last_run))
        created, last, error = self._start_runs(tx, s, p.runs, now)
        tx.run("UPDATE schedules SET next_tick = ?, due_at = ?, buffered = ?, last_run = ?, runs = runs + ?,"
               " skipped = skipped + ?, missed = missed + ?, last_error = ?, updated_at = ? WHERE name = ?",
               (p.next_tick, p.due_at, p.buffered, last or s.last_run, len(created), p.skipped, p.missed,
                error or p.error, now, s.name))
        return created

    def _start_runs(self, tx: Tx, s: ScheduleRow, runs: list[tuple[str, float]],
                    now: float) -> tuple[list[str], str | None, str | None]:
        """Create the runs' programs: (ids created, the last id started or found, an error)."""
        created: list[str] = []
        last = None
        for program_id, _ in runs:
            try:
                new = self._deployed_program(tx, s.program, program_id, s.args, s.retain)
                if self._ops_create(tx, new, now):
                    created.append(program_id)
                last = program_id
            except ProgramExists:
                last = program_id  # a different program took the id (e.g. started by hand): leave it
            except UnknownDeployment as e:
                return created, last, str(e)
        return created, last, None

    def start_scheduled(self, name: str, runs: list[tuple[str, float]], now: float,
                        as_last: bool = True) -> list[str]:
        def run(tx: Tx) -> list[str]:
            s = self._get_schedule(tx, name, self._LOCK)
            created, last, error = self._start_runs(tx, s, runs, now)
            if error is not None:
                raise UnknownDeployment(error)
            if as_last and last is not None:
                tx.run("UPDATE schedules SET last_run = ?, runs = runs + ?, updated_at = ? WHERE name = ?",
                       (last, len(created), now, name))
            else:
                tx.run("UPDATE schedules SET runs = runs + ?, updated_at = ? WHERE name = ?",
                       (len(created), now, name))
            return created

        return self._ops_write(run)

    # -- webhooks -------------------------------------------------------------------------------
    def put_hook(self, name: str, config: dict[str, Any], now: float) -> None:
        def run(tx: Tx) -> None:
            if tx.run("UPDATE hooks SET config = ?, updated_at = ? WHERE name = ?", (dumps(config), now, name)) == 0:
                tx.run("INSERT INTO hooks VALUES (?, ?, ?, ?)", (name, dumps(config), now, now))

        self._ops_write(run)

    def get_hook(self, name: str) -> HookRow:
        r = self._ops_read(lambda tx: tx.one("SELECT * FROM hooks WHERE name = ?", (name,)))
        if r is None:
            raise UnknownHook(f"no hook named {name!r} in {self.url}")
        return HookRow(r["name"], json.loads(r["config"]), r["created_at"], r["updated_at"])

    def list_hooks(self) -> list[HookRow]:
        rows = self._ops_read(lambda tx: tx.all("SELECT * FROM hooks ORDER BY name"))
        return [HookRow(r["name"], json.loads(r["config"]), r["created_at"], r["updated_at"]) for r in rows]

    def delete_hook(self, name: str) -> None:
        def run(tx: Tx) -> None:
            if tx.run("DELETE FROM hooks WHERE name = ?", (name,)) == 0:
                raise UnknownHook(f"no hook named {name!r} in {self.url}")

        self._ops_write(run)

    # -- retention ------------------------------------------------------------------------------
    def prune(self, rule: PruneRule) -> PruneReport:
        statuses = [s for s in rule.statuses if s in FINISHED]
        if not statuses:
            return PruneReport()
        # each condition alone, so each can use its index (programs_finished, programs_expiry)
        conditions: list[tuple[str, float]] = []
        if rule.older_than is not None:
            conditions.append(("updated_at < ?", rule.now - rule.older_than))
        else:
            conditions.append(("retain IS NOT NULL AND updated_at + retain < ?", rule.now))
            if rule.default_retain is not None:
                conditions.append(("retain IS NULL AND updated_at < ?", rule.now - rule.default_retain))
        # a finished parent whose children still run is kept: they report their end to it
        queries = [(f"SELECT id FROM programs WHERE status IN ({_marks(len(statuses))}) AND {cond} AND NOT EXISTS"
                    f" (SELECT 1 FROM programs c WHERE c.parent_id = programs.id AND c.status IN {_LIVE})"
                    f" ORDER BY updated_at LIMIT ?", [*statuses, t, rule.batch]) for cond, t in conditions]

        def due(tx: Tx, lock: str) -> list[str]:
            ids: list[str] = []
            for query, params in queries:
                if len(ids) < rule.batch:
                    ids += [r["id"] for r in tx.all(query + lock, params)]
            return ids[:rule.batch]

        if not self._ops_read(lambda tx: due(tx, "")):
            return PruneReport()

        def run(tx: Tx) -> PruneReport:
            ids = due(tx, self._LOCK_SKIP)
            report = PruneReport()
            if not ids:
                return report
            marks = _marks(len(ids))
            for table in PROGRAM_TABLES:
                column = "id" if table == "programs" else "program_id"
                report.counts[table] = tx.run(f"DELETE FROM {table} WHERE {column} IN ({marks})", ids)
            return report

        return self._ops_write(run)

    # -- continue_as_new --------------------------------------------------------------------------
    def _restart(self, tx: Tx, program_id: str, args: dict[str, Any], now: float) -> None:
        """Start a program over under its id: a fresh history whose only event is `started`."""
        r = tx.one("SELECT filename, source_hash, parent_id, deployment, run FROM programs WHERE id = ?",
                   (program_id,))
        assert r is not None  # the commit checked its fence
        for table in ("events", "checkpoints", "calls", "call_attempts", "callbacks"):
            tx.run(f"DELETE FROM {table} WHERE program_id = ?", (program_id,))
        # messages on internal channels (results, callbacks, children) were for the old run
        tx.run("DELETE FROM inbox WHERE program_id = ? AND substr(channel, 1, 2) = '__'", (program_id,))
        run_no = r["run"] + 1
        tx.run("UPDATE programs SET status = 'running', runnable = 1, args = ?, last_seq = 1, result = NULL,"
               " error = NULL, waiting_on = NULL, wake_at = NULL, run = ?, lease_owner = NULL, lease_expires = NULL,"
               " updated_at = ? WHERE id = ?", (dumps(args), run_no, now, program_id))
        data: dict[str, Any] = {"v": EVENT_VERSION, "file": r["filename"], "source_hash": r["source_hash"],
                                "args": args, "parent": r["parent_id"], "run": run_no}
        if r["deployment"] is not None:
            data["deployment"] = r["deployment"]
        tx.run("INSERT INTO events VALUES (?, 1, 'started', ?, ?)", (program_id, dumps(data), now))
