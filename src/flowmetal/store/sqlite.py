"""The embedded event store: one SQLite file (standard library `sqlite3`).

WAL mode so readers never block the writer; `synchronous=FULL` by default so
a commit survives power loss; every write is `BEGIN IMMEDIATE` (take the
write lock up front, so two workers never deadlock upgrading a read); a busy
timeout rides out the other processes' commits. A `schema_version` table
drives migrations.

Events are appended under the primary key `(program_id, seq)` — a second
writer at the same position fails (optimistic concurrency) — and only by the
holder of the program's lease whose fencing token still matches, so a worker
whose lease expired can never append.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, TypeVar

from flowmetal.store import ops_sql, records_sql
from flowmetal.store.base import (
    EVENT_VERSION,
    FINISHED,
    CallClaim,
    CallOutcome,
    CallRow,
    Claim,
    Commit,
    Conflict,
    Event,
    InboxMessage,
    Listener,
    NewProgram,
    ProgramDump,
    ProgramExists,
    ProgramFinished,
    ProgramPage,
    ProgramQuery,
    ProgramRow,
    StoreError,
    UnknownCall,
    UnknownProgram,
    dumps,
    finish_page,
    page_clause,
    started_data,
    user_channel,
)
from flowmetal.store.retry import settle
from flowmetal.store.shared import (
    CALL_COLUMNS,
    CALL_DEFAULTS,
    CALLBACK_COLUMNS,
    LEASED_CLAUSE,
    LOST_MIGRATION,
    TIMER_CLAUSE,
    TIMER_MIGRATION,
    branch_size,
    call_row,
    check,
    check_group,
    claim_candidates,
    ended_status,
    expired_attempt,
    first_attempt,
    holder_died,
    lease_end,
    local_owner_alive,
    pid_alive,
    rounds,
    runnable_after_holder_died,
)
from flowmetal.store.wake import SocketListener, notify_all

SCHEMA_VERSION = 7
_IN_CHUNK = 500  # ids per IN (...) list (SQLite limits the number of parameters)
T = TypeVar("T")

_MIGRATIONS: dict[int, list[str]] = {
    1: [
        """CREATE TABLE programs (
            id TEXT PRIMARY KEY,
            filename TEXT NOT NULL,
            source_hash TEXT NOT NULL,
            args TEXT NOT NULL,
            status TEXT NOT NULL,
            runnable INTEGER NOT NULL DEFAULT 1,
            wake_at REAL,
            waiting_on TEXT,
            last_seq INTEGER NOT NULL DEFAULT 0,
            result TEXT,
            error TEXT,
            cancel_requested INTEGER NOT NULL DEFAULT 0,
            parent_id TEXT,
            lease_owner TEXT,
            lease_pid INTEGER,
            lease_host TEXT,
            lease_expires REAL,
            fence INTEGER NOT NULL DEFAULT 0,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        )""",
        "CREATE INDEX programs_runnable ON programs (runnable, status)",
        "CREATE INDEX programs_wake ON programs (wake_at)",
        """CREATE TABLE sources (
            hash TEXT PRIMARY KEY,
            filename TEXT NOT NULL,
            source TEXT NOT NULL
        )""",
        """CREATE TABLE events (
            program_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            type TEXT NOT NULL,
            data TEXT NOT NULL,
            at REAL NOT NULL,
            PRIMARY KEY (program_id, seq)
        ) WITHOUT ROWID""",
        """CREATE TABLE checkpoints (
            program_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            state BLOB NOT NULL,
            PRIMARY KEY (program_id, seq)
        ) WITHOUT ROWID""",
        """CREATE TABLE inbox (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            program_id TEXT NOT NULL,
            channel TEXT NOT NULL,
            message TEXT NOT NULL,
            sent_at REAL NOT NULL
        )""",
        "CREATE INDEX inbox_program ON inbox (program_id, id)",
    ],
    2: [
        # effects performed by connectors (foreign functions, HTTP requests)
        """CREATE TABLE calls (
            key TEXT PRIMARY KEY,
            program_id TEXT NOT NULL,
            channel TEXT NOT NULL,
            kind TEXT NOT NULL,
            name TEXT NOT NULL,
            payload TEXT NOT NULL,
            policy TEXT NOT NULL,
            attempt_timeout REAL,
            deadline REAL,
            status TEXT NOT NULL,
            attempt INTEGER NOT NULL DEFAULT 0,
            next_at REAL,
            lease_owner TEXT,
            lease_expires REAL,
            attempt_deadline REAL,
            outcome TEXT,
            last_error TEXT,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        )""",
        "CREATE INDEX calls_due ON calls (kind, status, next_at)",
        "CREATE INDEX calls_program ON calls (program_id)",
        """CREATE TABLE callbacks (
            token TEXT PRIMARY KEY,
            program_id TEXT NOT NULL,
            channel TEXT NOT NULL,
            status TEXT NOT NULL,
            created_at REAL NOT NULL,
            delivered_at REAL
        )""",
        "CREATE INDEX callbacks_program ON callbacks (program_id)",
    ],
    3: [
        # listings page through programs in creation order (`page_programs`), optionally by status
        "CREATE INDEX programs_created ON programs (created_at, id)",
        "CREATE INDEX programs_status_created ON programs (status, created_at, id)",
    ],
    4: ops_sql.MIGRATION,  # deployments, schedules, hooks, retention, continue_as_new
    5: records_sql.MIGRATION,  # failed attempts, served function names, callback options
    6: [LOST_MIGRATION],  # attempts lost with their worker (not counted against the retry policy)
    7: TIMER_MIGRATION,  # timers and leases in indexes: idle rounds cost the same for any number of sleepers
}


def _row(r: sqlite3.Row) -> ProgramRow:
    return ProgramRow(
        id=r["id"],
        filename=r["filename"],
        source_hash=r["source_hash"],
        status=r["status"],
        args=json.loads(r["args"]),
        last_seq=r["last_seq"],
        created_at=r["created_at"],
        updated_at=r["updated_at"],
        result=json.loads(r["result"]) if r["result"] is not None else None,
        error=r["error"],
        waiting_on=json.loads(r["waiting_on"]) if r["waiting_on"] else None,
        wake_at=r["wake_at"],
        runnable=bool(r["runnable"]),
        cancel_requested=bool(r["cancel_requested"]),
        parent_id=r["parent_id"],
        lease_owner=r["lease_owner"],
        fence=r["fence"],
        deployment=r["deployment"],
        retain=r["retain"],
        run=r["run"],
    )


def _use_wal(conn: sqlite3.Connection) -> None:
    # WAL is a property of the file: only the first opener switches it, and the
    # switch needs an exclusive lock that SQLite reports as busy without waiting.
    if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        conn.execute("PRAGMA journal_mode=WAL")


def _table_exists(db: sqlite3.Connection, name: str) -> bool:
    return db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (name,)).fetchone() is not None


def _retry_locked(step: Callable[[], None], budget: float = 30.0) -> None:
    """Run `step`, retrying while another process holds a lock SQLite will not wait
    for (switching to WAL, recovering a WAL after a crash, two first openers)."""
    deadline = time.monotonic() + budget
    delay = 0.005
    while True:
        try:
            step()
            return
        except sqlite3.OperationalError as e:
            if ("locked" not in str(e) and "busy" not in str(e)) or time.monotonic() > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


class _Tx:
    """A SQLite connection as ops_sql's `Tx`."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def one(self, query: str, params: Sequence[Any] = ()) -> dict[str, Any] | None:
        r = self.conn.execute(query, params).fetchone()
        return dict(r) if r is not None else None

    def all(self, query: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        return [dict(r) for r in self.conn.execute(query, params).fetchall()]

    def run(self, query: str, params: Sequence[Any] = ()) -> int:
        return self.conn.execute(query, params).rowcount


class SQLiteStore(records_sql.CallRecords, ops_sql.SqlOperations):
    def __init__(self, path: str, *, synchronous: str = "FULL", url: str | None = None) -> None:
        self.path = path
        self.url = url or f"sqlite:///{path}"
        self.synchronous = synchronous
        self._local = threading.local()
        self._migrate()

    # -- connections --------------------------------------------------------------
    @property
    def db(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
            except sqlite3.Error as e:
                raise StoreError(f"cannot open the store {self.url}: {e}") from None
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA busy_timeout=30000")
            _retry_locked(lambda: _use_wal(conn))
            conn.execute(f"PRAGMA synchronous={self.synchronous}")
            conn.execute("PRAGMA foreign_keys=ON")
            self._local.conn = conn
        return conn

    @contextmanager
    def _write(self, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """A write transaction. `durable=False` skips the fsync for bookkeeping whose loss is
        harmless (claims, lease renewals): the next durable commit flushes it anyway, and a
        claim lost to a power failure dies with its holder."""
        db = self.db
        relaxed = not durable and self.synchronous in ("FULL", "EXTRA")
        if relaxed:
            db.execute("PRAGMA synchronous=NORMAL")
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        else:
            db.execute("COMMIT")
        finally:
            if relaxed:
                db.execute(f"PRAGMA synchronous={self.synchronous}")

    def _migrate(self) -> None:
        try:
            _retry_locked(self._migrate_once)
        except sqlite3.DatabaseError as e:
            raise StoreError(f"cannot use the store {self.url}: {e}") from None

    def _migrate_once(self) -> None:
        db = self.db
        if _table_exists(db, "schema_version"):
            row = db.execute("SELECT version FROM schema_version").fetchone()
            if row is not None and row[0] == SCHEMA_VERSION:
                return  # the common case: no write lock needed to open a current store
        with self._write() as db:
            db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = db.execute("SELECT version FROM schema_version").fetchone()
            current = row[0] if row else 0
            if current > SCHEMA_VERSION:
                raise StoreError(
                    f"the store {self.url} has schema version {current}; this Flowmetal knows up to "
                    f"{SCHEMA_VERSION} — upgrade Flowmetal"
                )
            for version in range(current + 1, SCHEMA_VERSION + 1):
                for statement in _MIGRATIONS[version]:
                    db.execute(statement)
            if current == 0:
                db.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
            elif current != SCHEMA_VERSION:
                db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # -- programs -------------------------------------------------------------------
    def create_program(self, new: NewProgram, now: float) -> bool:
        with self._write() as db:
            return self._create(db, new, now)

    def _create(self, db: sqlite3.Connection, new: NewProgram, now: float) -> bool:
        existing = db.execute("SELECT source_hash, args FROM programs WHERE id = ?", (new.id,)).fetchone()
        if existing is not None:
            if existing["source_hash"] == new.source_hash and json.loads(existing["args"]) == new.args:
                return False
            raise ProgramExists(f"a different program with id {new.id!r} already exists")
        db.execute("INSERT OR IGNORE INTO sources VALUES (?, ?, ?)", (new.source_hash, new.filename, new.source))
        db.execute(
            "INSERT INTO programs (id, filename, source_hash, args, status, runnable, last_seq, parent_id,"
            " deployment, retain, created_at, updated_at) VALUES (?, ?, ?, ?, 'running', 1, 1, ?, ?, ?, ?, ?)",
            (new.id, new.filename, new.source_hash, dumps(new.args), new.parent_id, new.deployment, new.retain,
             now, now),
        )
        data = started_data(new)
        db.execute("INSERT INTO events VALUES (?, 1, 'started', ?, ?)", (new.id, dumps(data), now))
        return True

    def get_program(self, program_id: str) -> ProgramRow:
        r = self.db.execute("SELECT * FROM programs WHERE id = ?", (program_id,)).fetchone()
        if r is None:
            raise UnknownProgram(f"no program with id {program_id!r} in {self.url}")
        return _row(r)

    def page_programs(self, query: ProgramQuery | None = None, limit: int | None = 100,
                      cursor: str | None = None) -> ProgramPage:
        query = query or ProgramQuery()
        clause, params = page_clause(query, limit, cursor, "?")
        rows = self.db.execute("SELECT * FROM programs" + clause, params).fetchall()
        return finish_page([_row(r) for r in rows], limit, query.newest_first)

    def count_programs(self) -> dict[str, int]:
        return {r[0]: r[1] for r in self.db.execute("SELECT status, count(*) FROM programs GROUP BY status")}

    def source(self, source_hash: str) -> tuple[str, str]:
        r = self.db.execute("SELECT filename, source FROM sources WHERE hash = ?", (source_hash,)).fetchone()
        if r is None:
            raise StoreError(f"the store has no source with hash {source_hash}")
        return r["filename"], r["source"]

    def events(self, program_id: str, after: int = 0, upto: int | None = None) -> list[Event]:
        limit = upto if upto is not None else 1 << 62
        rows = self.db.execute(
            "SELECT seq, type, data, at FROM events WHERE program_id = ? AND seq > ? AND seq <= ? ORDER BY seq",
            (program_id, after, limit),
        ).fetchall()
        return [Event(program_id, r["seq"], r["type"], json.loads(r["data"]), r["at"]) for r in rows]

    def checkpoint(self, program_id: str, at_or_before: int | None = None) -> tuple[int, bytes] | None:
        limit = at_or_before if at_or_before is not None else 1 << 62
        r = self.db.execute(
            "SELECT seq, state FROM checkpoints WHERE program_id = ? AND seq <= ? ORDER BY seq DESC LIMIT 1",
            (program_id, limit),
        ).fetchone()
        return (r["seq"], bytes(r["state"])) if r is not None else None

    # -- outside inputs -----------------------------------------------------------------
    def _live(self, db: sqlite3.Connection, program_id: str) -> sqlite3.Row:
        r = db.execute("SELECT status, error FROM programs WHERE id = ?", (program_id,)).fetchone()
        if r is None:
            raise UnknownProgram(f"no program with id {program_id!r} in {self.url}")
        if r["status"] == "moved":  # r["error"] says where to: "moved to ..."
            raise ProgramFinished(f"program {program_id!r} no longer runs in {self.url}: it was {r['error']}")
        if r["status"] in FINISHED:
            raise ProgramFinished(f"program {program_id!r} has already {r['status']}")
        return r

    def send(self, program_id: str, channel: str, message: Any, now: float) -> None:
        user_channel(channel)
        with self._write() as db:
            self._live(db, program_id)
            self._enqueue(db, program_id, channel, message, now)

    def _enqueue(self, db: sqlite3.Connection, program_id: str, channel: str, message: Any, now: float) -> None:
        db.execute("INSERT INTO inbox (program_id, channel, message, sent_at) VALUES (?, ?, ?, ?)",
                   (program_id, channel, dumps(message), now))
        db.execute("UPDATE programs SET runnable = 1 WHERE id = ? AND status NOT IN ('completed', 'failed', "
                   "'cancelled')", (program_id,))

    def inbox(self, program_id: str) -> list[InboxMessage]:
        rows = self.db.execute("SELECT id, channel, message FROM inbox WHERE program_id = ? ORDER BY id",
                               (program_id,)).fetchall()
        return [InboxMessage(r["id"], r["channel"], json.loads(r["message"])) for r in rows]

    def request_cancel(self, program_id: str, now: float) -> None:
        with self._write() as db:
            self._live(db, program_id)
            db.execute("UPDATE programs SET cancel_requested = 1, runnable = 1, updated_at = ? WHERE id = ?",
                       (now, program_id))

    def make_runnable(self, program_id: str, now: float) -> None:
        with self._write() as db:
            self._live(db, program_id)
            db.execute("UPDATE programs SET runnable = 1 WHERE id = ?", (program_id,))

    # -- workers ----------------------------------------------------------------------
    def claim(self, worker: str, pid: int, host: str, lease: float, now: float, limit: int,
              only: str | None = None) -> list[Claim]:
        self._clear_dead_leases(host, now)
        query = (
            "SELECT id, fence, lease_owner FROM programs WHERE +status IN ('running', 'waiting')"
            " AND (runnable = 1 OR (wake_at IS NOT NULL AND wake_at <= ?)"
            "      OR lease_owner IS NOT NULL)"  # an expired lease: its slice never committed
            " AND (lease_owner IS NULL OR lease_expires < ?)"
        )
        params: list[Any] = [now, now]
        if only is not None:  # a program and the children it started (not LIKE: ids may hold _ or %)
            query += " AND (id = ? OR substr(id, 1, ?) = ?)"
            params.extend([only, len(only) + 1, only + "."])
        else:  # (+status above: found by id among these, not searched by status)
            size = branch_size(limit)
            query += f" AND id IN ({claim_candidates('?', sqlite=True)})"
            params.extend([size, now, size, now, size])
        query += " ORDER BY updated_at LIMIT ?"
        params.append(limit)
        # look before taking the write lock: most claims of a busy store find nothing new, and
        # a read does not queue behind (or hold up) other processes' commits
        if not self.db.execute(query, params).fetchone():
            return []
        with self._write(durable=False) as db:
            rows = db.execute(query.replace("SELECT id, fence, lease_owner", "SELECT *", 1), params).fetchall()
            db.executemany(
                "UPDATE programs SET lease_owner = ?, lease_pid = ?, lease_host = ?, lease_expires = ?,"
                " fence = ?, runnable = 0 WHERE id = ?",
                [(worker, pid, host, now + lease, r["fence"] + 1, r["id"]) for r in rows])
            # what the first slices start from, read under the write lock (so as fresh as the claim)
            inboxes: dict[str, list[InboxMessage]] = {r["id"]: [] for r in rows}
            marks = ", ".join("?" * len(rows))
            for m in db.execute(f"SELECT id, program_id, channel, message FROM inbox WHERE program_id IN ({marks})"
                                " ORDER BY id", [r["id"] for r in rows]):
                inboxes[m["program_id"]].append(InboxMessage(m["id"], m["channel"], json.loads(m["message"])))
            return [Claim(r["id"], r["fence"] + 1, took_over=r["lease_owner"] is not None,
                          row=replace(_row(r), lease_owner=worker, fence=r["fence"] + 1, runnable=False),
                          inbox=inboxes[r["id"]]) for r in rows]

    def _clear_dead_leases(self, host: str, now: float) -> None:
        """On this machine a lease holder's death is provable: its process is gone.
        (Checked at most every 0.2 s: a busy worker claims far more often than workers die.)"""
        last = getattr(self._local, "dead_check", 0.0)
        if 0 <= now - last < 0.2:
            return
        self._local.dead_check = now
        rows = self.db.execute(
            "SELECT id, lease_pid, lease_owner, fence FROM programs INDEXED BY programs_leased"
            " WHERE lease_owner IS NOT NULL AND lease_host = ? AND lease_expires >= ?", (host, now)).fetchall()
        dead = [(r["id"], r["fence"], r["lease_pid"]) for r in rows
                if (r["lease_pid"] and not pid_alive(r["lease_pid"])) or not local_owner_alive(r["lease_owner"])]
        if not dead:
            return
        with self._write() as db:
            for program_id, fence, _ in dead:
                db.execute("UPDATE programs SET lease_owner = NULL, lease_expires = NULL,"
                           f" runnable = {runnable_after_holder_died('?')} WHERE id = ? AND fence = ?",
                           (now, program_id, fence))
        for program_id, _, pid in dead:
            holder_died(program_id, pid)

    def renew(self, worker: str, program_ids: list[str], lease: float, now: float) -> list[str]:
        held = []
        with self._write(durable=False) as db:
            for program_id in program_ids:
                cur = db.execute("UPDATE programs SET lease_expires = ? WHERE id = ? AND lease_owner = ?",
                                 (now + lease, program_id, worker))
                if cur.rowcount:
                    held.append(program_id)
        return held

    def release(self, worker: str, program_id: str, fence: int, runnable: bool = False) -> None:
        with self._write(durable=False) as db:
            db.execute("UPDATE programs SET lease_owner = NULL, lease_expires = NULL,"
                       " runnable = CASE WHEN ? THEN 1 ELSE runnable END WHERE id = ? AND fence = ?"
                       " AND lease_owner = ?", (runnable, program_id, fence, worker))

    def commit(self, commits: list[Commit], now: float) -> None:
        check_group(commits)
        with self._write() as db:
            for batch in rounds(commits):
                self._apply_batch(db, batch, now)

    def _apply_batch(self, db: sqlite3.Connection, batch: list[Commit], now: float) -> None:
        """Apply commits of distinct programs, each kind of row for all of them in one statement
        (the statements, not SQLite's work, are most of a commit's cost); the effect is that of
        applying them one after the other, as PostgreSQL's _apply_batch does."""
        current: dict[str, tuple[int, int, str | None]] = {}
        statuses: dict[str, str] = {}
        ids = [c.program_id for c in batch]
        for i in range(0, len(ids), _IN_CHUNK):
            part = ids[i:i + _IN_CHUNK]
            for r in db.execute("SELECT id, fence, last_seq, lease_owner, status FROM programs WHERE id IN"
                                f" ({','.join('?' * len(part))})", part):
                current[r[0]] = (r[1], r[2], r[3])
                statuses[r[0]] = r[4]
        for c in batch:
            check(c, current.get(c.program_id))
        for c in batch:
            if c.restart_args is not None:  # continue_as_new: rare, and a history of its own
                self._apply_restart(db, c, now)
        batch = [c for c in batch if c.restart_args is None]
        events = [(c.program_id, c.base_seq + i, etype, dumps({"v": EVENT_VERSION, **data}), now)
                  for c in batch for i, (etype, data) in enumerate(c.events, start=1)]
        try:
            db.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?)", events)
        except sqlite3.IntegrityError:
            raise Conflict(f"{batch[0].program_id!r}: an event after {batch[0].base_seq} already exists") from None
        checkpoints = [(c.program_id, c.base_seq + len(c.events), c.checkpoint) for c in batch
                       if c.checkpoint is not None]
        if checkpoints:
            db.executemany("INSERT OR REPLACE INTO checkpoints VALUES (?, ?, ?)", checkpoints)
        for c in batch:
            if c.consumed or c.starts or c.sends:
                self._apply_messages(db, c, now)
        calls = [(call.key, call.program_id, call.channel, call.kind, call.name, dumps(call.payload),
                  dumps(call.retry), call.attempt_timeout, call.deadline, *first_attempt(call, now), now, now)
                 for c in batch for call in c.calls]
        if calls:
            db.executemany(
                "INSERT INTO calls (key, program_id, channel, kind, name, payload, policy, attempt_timeout, deadline,"
                " status, attempt, next_at, lease_owner, lease_expires, attempt_deadline, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", calls)
        done = [(ended_status(message), dumps(message), now, key, c.call_owner)
                for c in batch for key, message in c.done_calls]
        if done:
            cur = db.executemany("UPDATE calls SET status = ?, outcome = ?, lease_owner = NULL, lease_expires = NULL,"
                                 " updated_at = ? WHERE key = ? AND status = 'claimed' AND lease_owner = ?", done)
            if cur.rowcount != len(done):  # (which one: the worker commits one by one after a Conflict)
                raise Conflict(f"a call's outcome found it no longer claimed by {done[0][-1]}")
        cancel = [(now, k) for c in batch for k in c.cancel_calls]
        if cancel:
            db.executemany("UPDATE calls SET status = 'cancelled', lease_owner = NULL, updated_at = ?"
                           " WHERE key = ? AND status IN ('pending', 'claimed')", cancel)
        callbacks = [(token, c.program_id, channel, now, dumps(options) if options else None)
                     for c in batch for token, channel, options in c.callbacks]
        if callbacks:
            db.executemany("INSERT INTO callbacks (token, program_id, channel, status, created_at, options)"
                           " VALUES (?, ?, ?, 'open', ?, ?) ON CONFLICT (token) DO UPDATE SET status = 'open',"
                           " options = excluded.options", callbacks)
        # SQLite rewrites the entries of every index on a column an UPDATE sets, changed or not: a
        # program that stays as it was (its status, its lease kept: a step among many) does not set
        # those columns, which saves two index pages per step in the commit's fsync
        same: list[tuple[Any, ...]] = []
        changed: list[tuple[Any, ...]] = []
        for c in batch:
            values = (c.base_seq + len(c.events), dumps(c.result) if c.status == "completed" else None, c.error,
                      dumps(c.waiting_on) if c.waiting_on is not None else None, c.wake_at, int(c.runnable), now)
            if c.keep_lease and c.status == statuses.get(c.program_id):
                same.append((*values, c.program_id))
            else:
                changed.append((c.status, *values, c.keep_lease, c.keep_lease, c.program_id))
        if same:
            db.executemany("UPDATE programs SET last_seq = ?, result = ?, error = ?, waiting_on = ?, wake_at = ?,"
                           " runnable = MAX(runnable, ?), updated_at = ? WHERE id = ?", same)
        if changed:
            db.executemany(
                "UPDATE programs SET status = ?, last_seq = ?, result = ?, error = ?, waiting_on = ?, wake_at = ?,"
                " runnable = MAX(runnable, ?), updated_at = ?,"
                " lease_owner = CASE WHEN ? THEN lease_owner END, lease_expires = CASE WHEN ? THEN lease_expires END"
                " WHERE id = ?", changed)
        finished = [(c.program_id,) for c in batch if c.status in FINISHED]
        if finished:
            db.executemany("UPDATE programs SET runnable = 0 WHERE id = ?", finished)
            # nobody is left to wait for its calls and callbacks
            db.executemany("UPDATE calls SET status = 'cancelled', lease_owner = NULL, updated_at = ?"
                           " WHERE program_id = ? AND status IN ('pending', 'claimed')",
                           [(now, pid) for (pid,) in finished])
            db.executemany("UPDATE callbacks SET status = 'closed' WHERE program_id = ? AND status = 'open'",
                           finished)

    def _apply_restart(self, db: sqlite3.Connection, c: Commit, now: float) -> None:
        """continue_as_new: what the last slice sent and started, then a fresh history."""
        assert c.restart_args is not None
        self._apply_messages(db, c, now)
        self._restart(_Tx(db), c.program_id, c.restart_args, now)

    def _apply_messages(self, db: sqlite3.Connection, c: Commit, now: float) -> None:
        """A commit's consumed messages, the programs it starts and the messages it sends."""
        if c.consumed:
            db.executemany("DELETE FROM inbox WHERE id = ?", [(i,) for i in c.consumed])
        for new in c.starts:
            self._create(db, new, now)
        for target, channel, message in c.sends:
            self._enqueue(db, target, channel, message, now)

    # -- ops_sql's primitives ---------------------------------------------------------------
    def _ops_write(self, fn: Callable[[ops_sql.Tx], T]) -> T:
        with self._write() as db:
            return fn(_Tx(db))

    def _ops_read(self, fn: Callable[[ops_sql.Tx], T]) -> T:
        db = self.db
        db.execute("BEGIN")  # one snapshot for the reads
        try:
            return fn(_Tx(db))
        finally:
            db.execute("COMMIT")

    def _ops_create(self, tx: ops_sql.Tx, new: NewProgram, now: float) -> bool:
        return self._create(tx.conn, new, now)

    def next_wake(self) -> float | None:
        # a timer of a program another worker holds is that worker's to fire: wake (at the
        # latest) when its lease would lapse, instead of spinning until it commits. (Two index
        # reads: the earliest unleased timer, and among the few leased programs.)
        r = self.db.execute("SELECT (SELECT wake_at FROM programs INDEXED BY programs_timer"
                            f"         WHERE {TIMER_CLAUSE} AND lease_owner IS NULL"
                            "         ORDER BY wake_at LIMIT 1),"
                            "        (SELECT MIN(MAX(wake_at, lease_expires)) FROM programs INDEXED BY programs_leased"
                            f"        WHERE {LEASED_CLAUSE} AND {TIMER_CLAUSE})").fetchone()
        due = [t for t in r if t is not None]
        return min(due) if due else None


    # -- moving programs ----------------------------------------------------------------
    # JSON-valued columns of calls, decoded in a ProgramDump so the dicts are portable
    # between backends (TEXT here, JSONB in PostgreSQL)
    _CALL_JSON = ("payload", "policy", "outcome", "last_error")

    def export_program(self, program_id: str) -> ProgramDump:
        db = self.db
        # one read transaction: every table is read at the same instant (WAL snapshot),
        # so a worker committing meanwhile cannot tear the dump
        db.execute("BEGIN")
        try:
            row = self.get_program(program_id)
            _, text = self.source(row.source_hash)
            events = self.events(program_id)
            checkpoint = self.checkpoint(program_id)
            inbox = self.inbox(program_id)
            calls = []
            for r in db.execute("SELECT * FROM calls WHERE program_id = ? ORDER BY created_at, key", (program_id,)):
                call = {c: r[c] for c in CALL_COLUMNS}
                for c in self._CALL_JSON:
                    call[c] = json.loads(call[c]) if call[c] is not None else None
                calls.append(call)
            callbacks = [{c: r[c] for c in CALLBACK_COLUMNS} for r in db.execute(
                "SELECT * FROM callbacks WHERE program_id = ? ORDER BY created_at, token", (program_id,))]
        finally:
            db.execute("COMMIT")
        return ProgramDump(row, text, events, checkpoint, inbox, calls, callbacks)

    def import_program(self, dump: ProgramDump, now: float) -> None:
        r = dump.row
        with self._write() as db:
            if db.execute("SELECT 1 FROM programs WHERE id = ?", (r.id,)).fetchone() is not None:
                raise ProgramExists(f"a program with id {r.id!r} already exists in {self.url}")
            db.execute("INSERT OR IGNORE INTO sources VALUES (?, ?, ?)", (r.source_hash, r.filename, dump.source))
            # runnable and unleased, so a worker of this store picks it up and carries on
            db.execute(
                "INSERT INTO programs (id, filename, source_hash, args, status, runnable, wake_at, waiting_on,"
                " last_seq, result, error, cancel_requested, parent_id, fence, created_at, updated_at, deployment,"
                " retain, run)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (r.id, r.filename, r.source_hash, dumps(r.args), r.status, int(r.status not in FINISHED),
                 r.wake_at, dumps(r.waiting_on) if r.waiting_on is not None else None, r.last_seq,
                 dumps(r.result) if r.status == "completed" else None, r.error, int(r.cancel_requested),
                 r.parent_id, r.fence, r.created_at, r.updated_at, r.deployment, r.retain, r.run))
            db.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?)",
                           [(r.id, e.seq, e.type, dumps(e.data), e.at) for e in dump.events])
            if dump.checkpoint is not None:
                db.execute("INSERT INTO checkpoints VALUES (?, ?, ?)", (r.id, dump.checkpoint[0], dump.checkpoint[1]))
            # message ids are this store's own (AUTOINCREMENT): renumbered, order kept
            db.executemany("INSERT INTO inbox (program_id, channel, message, sent_at) VALUES (?, ?, ?, ?)",
                           [(r.id, m.channel, dumps(m.message), now) for m in dump.inbox])
            try:
                for call in dump.calls:
                    values = {**CALL_DEFAULTS, **call, "program_id": r.id}
                    for c in self._CALL_JSON:
                        values[c] = dumps(values[c]) if values[c] is not None else None
                    db.execute(f"INSERT INTO calls ({', '.join(CALL_COLUMNS)}) VALUES"
                               f" ({', '.join('?' * len(CALL_COLUMNS))})", [values[c] for c in CALL_COLUMNS])
                for cb in dump.callbacks:
                    values = dict(cb, program_id=r.id)
                    db.execute(f"INSERT INTO callbacks ({', '.join(CALLBACK_COLUMNS)}) VALUES"
                               f" ({', '.join('?' * len(CALLBACK_COLUMNS))})", [values.get(c) for c in CALLBACK_COLUMNS])
            except sqlite3.IntegrityError as e:
                # keys embed the program id, so only a corrupt dump (or store) collides
                raise ProgramExists(f"cannot import {r.id!r} into {self.url}: {e}") from None

    def mark_moved(self, program_id: str, destination: str, now: float) -> None:
        with self._write() as db:
            self._live(db, program_id)
            # clearing the lease (and bumping the fence) makes a slice in progress fail its
            # commit with LeaseLost: nothing is appended here after the move
            db.execute(
                "UPDATE programs SET status = 'moved', error = ?, runnable = 0, lease_owner = NULL, lease_pid = NULL,"
                " lease_host = NULL, lease_expires = NULL, fence = fence + 1, updated_at = ? WHERE id = ?",
                (f"moved to {destination}", now, program_id))
            # its calls and callbacks now belong to the copy in the other store
            db.execute("UPDATE calls SET status = 'cancelled', lease_owner = NULL, updated_at = ?"
                       " WHERE program_id = ? AND status IN ('pending', 'claimed')", (now, program_id))
            db.execute("UPDATE callbacks SET status = 'closed' WHERE program_id = ? AND status = 'open'",
                       (program_id,))

    # -- wake-ups -----------------------------------------------------------------------
    def listener(self) -> Listener:
        return SocketListener(self._wake_dir)

    def notify(self) -> None:
        notify_all(self._wake_dir)

    @property
    def _wake_dir(self) -> str:
        return os.path.abspath(self.path) + ".wake"

    # -- connectors: calls ------------------------------------------------------------------
    def claim_calls(self, worker: str, kind: str, names: list[str] | None, lease: float, now: float,
                    limit: int) -> list[CallClaim]:
        if names is not None and not names:
            return []
        query = "SELECT * FROM calls WHERE kind = ? AND status = 'pending' AND next_at <= ?"
        params: list[Any] = [kind, now]
        if names is not None:
            query += f" AND name IN ({', '.join('?' * len(names))})"
            params.extend(names)
        query += " ORDER BY next_at, key LIMIT ?"
        params.append(limit)
        # look before taking the write lock (see `claim`)
        expired = self.db.execute("SELECT 1 FROM calls WHERE kind = ? AND status = 'claimed' AND lease_expires < ?"
                                  " LIMIT 1", (kind, now)).fetchone()
        dead = self._calls_of_dead_local_workers(self.db, kind, now)
        if not expired and not dead and not self.db.execute(query, params).fetchone():
            return []
        with self._write(durable=False) as db:
            self._expire_attempts(db, kind, now, dead)
            claims = []
            for r in db.execute(query, params).fetchall():
                attempt = r["attempt"] + 1
                attempt_deadline = now + r["attempt_timeout"] if r["attempt_timeout"] is not None else None
                db.execute("UPDATE calls SET status = 'claimed', attempt = ?, lease_owner = ?, lease_expires = ?,"
                           " attempt_deadline = ?, updated_at = ? WHERE key = ?",
                           (attempt, worker, lease_end(now, lease, attempt_deadline), attempt_deadline, now,
                            r["key"]))
                claims.append(CallClaim(r["key"], r["program_id"], r["kind"], r["name"], json.loads(r["payload"]),
                                        attempt, attempt_deadline))
            return claims

    def _expire_attempts(self, db: sqlite3.Connection, kind: str, now: float, dead: list[sqlite3.Row]) -> None:
        """Attempts whose holder went quiet (lease) or overran (timeout) count as failed."""
        rows = db.execute("SELECT * FROM calls WHERE kind = ? AND status = 'claimed' AND lease_expires < ?",
                          (kind, now)).fetchall()
        seen = {r["key"] for r in rows}
        for r in dead:  # read before the lock: settle only those still held by the dead process
            fresh = db.execute("SELECT * FROM calls WHERE key = ? AND status = 'claimed' AND lease_owner = ?"
                               " AND attempt = ?", (r["key"], r["lease_owner"], r["attempt"])).fetchone()
            if fresh is not None and fresh["key"] not in seen:
                rows.append(fresh)
        for r in rows:
            failed = expired_attempt(_Tx(db), r, now)
            if failed is not None:
                self._settle(db, r, failed, now)

    def _calls_of_dead_local_workers(self, db: sqlite3.Connection, kind: str, now: float) -> list[sqlite3.Row]:
        """Attempts held by a process of this machine that is gone: no need to wait out the lease.
        (Checked at most every 0.2 s per kind.)"""
        checks = self._local.__dict__.setdefault("dead_call_check", {})
        if 0 <= now - checks.get(kind, 0.0) < 0.2:
            return []
        checks[kind] = now
        rows = db.execute("SELECT * FROM calls WHERE kind = ? AND status = 'claimed' AND lease_expires >= ?",
                          (kind, now)).fetchall()
        return [r for r in rows if not local_owner_alive(r["lease_owner"])]

    def heartbeat_call(self, key: str, worker: str, attempt: int, lease: float, now: float) -> bool:
        with self._write(durable=False) as db:
            r = db.execute("SELECT attempt_deadline FROM calls WHERE key = ? AND status = 'claimed' AND attempt = ?"
                           " AND lease_owner = ? AND lease_expires >= ?", (key, attempt, worker, now)).fetchone()
            if r is None:
                return False
            db.execute("UPDATE calls SET lease_expires = ? WHERE key = ?",
                       (lease_end(now, lease, r["attempt_deadline"]), key))
            return True

    def finish_call(self, key: str, worker: str, attempt: int, outcome: CallOutcome, now: float) -> str:
        (status,) = self.finish_calls([(key, worker, attempt, outcome)], now)
        if status == "unknown":
            raise UnknownCall(f"no call with key {key!r} in {self.url}")
        return status

    def finish_calls(self, done: Sequence[tuple[str, str, int, CallOutcome]], now: float) -> list[str]:
        out = []
        with self._write() as db:
            for key, worker, attempt, outcome in done:
                r = db.execute("SELECT * FROM calls WHERE key = ?", (key,)).fetchone()
                if r is None:
                    out.append("unknown")
                elif r["status"] != "claimed" or r["attempt"] != attempt or r["lease_owner"] != worker:
                    out.append("stale")
                else:
                    out.append(self._settle(db, r, outcome, now))
        return out

    def _settle(self, db: sqlite3.Connection, r: sqlite3.Row, outcome: CallOutcome, now: float) -> str:
        """Apply one attempt's outcome: deliver it, or schedule the next attempt."""
        done = settle(json.loads(r["policy"]), r["attempt"] - r["lost"], outcome, r["deadline"], now)
        records_sql.record_attempt(_Tx(db), r, outcome, now)
        if done.message is None:
            db.execute("UPDATE calls SET status = 'pending', next_at = ?, lease_owner = NULL,"
                       " lease_expires = NULL, last_error = ?, updated_at = ? WHERE key = ?",
                       (done.retry_at, dumps(done.last_error), now, r["key"]))
            return "retrying"
        message = done.message
        db.execute("UPDATE calls SET status = ?, lease_owner = NULL, lease_expires = NULL, outcome = ?,"
                   " last_error = ?, updated_at = ? WHERE key = ?",
                   (ended_status(message), dumps(message), dumps(done.last_error) if done.last_error else r["last_error"], now,
                    r["key"]))
        live = db.execute("SELECT status FROM programs WHERE id = ?", (r["program_id"],)).fetchone()
        if live is not None and live["status"] not in FINISHED:
            self._enqueue(db, r["program_id"], r["channel"], message, now)
        return "done"

    def get_call(self, key: str) -> CallRow:
        r = self.db.execute("SELECT * FROM calls WHERE key = ?", (key,)).fetchone()
        if r is None:
            raise UnknownCall(f"no call with key {key!r} in {self.url}")
        return call_row(r)

    def list_calls(self, program_id: str | None = None, status: str | None = None) -> list[CallRow]:
        query, params = "SELECT * FROM calls WHERE 1 = 1", []
        if program_id is not None:
            query += " AND program_id = ?"
            params.append(program_id)
        if status is not None:
            query += " AND status = ?"
            params.append(status)
        return [call_row(r) for r in self.db.execute(query + " ORDER BY created_at, key", params).fetchall()]

    def next_call_due(self, kind: str) -> float | None:
        r = self.db.execute(
            "SELECT MIN(CASE WHEN status = 'pending' THEN next_at ELSE lease_expires END) FROM calls"
            " WHERE kind = ? AND status IN ('pending', 'claimed')", (kind,)).fetchone()
        return r[0] if r else None

    # -- connectors: callbacks ------------------------------------------------------------
    def deliver_callback(self, token: str, request: Any, now: float) -> str:
        with self._write() as db:
            r = db.execute("SELECT * FROM callbacks WHERE token = ?", (token,)).fetchone()
            if r is None:
                return "unknown"
            if r["status"] != "open":
                return "closed" if r["status"] == "closed" else "duplicate"
            db.execute("UPDATE callbacks SET status = 'delivered', delivered_at = ? WHERE token = ?", (now, token))
            self._enqueue(db, r["program_id"], r["channel"], request, now)
            return "accepted"
