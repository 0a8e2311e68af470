"""The shared event store: PostgreSQL (psycopg 3 and a psycopg_pool connection pool).

The semantics are the SQLite store's (tests/test_store_contract.py runs against
both); what differs is how concurrency is made safe without one global write
lock, and two scheduling details that matter once several worker processes
share the store: which due programs a claim prefers, and `next_wake` ignoring
the timers of programs another worker holds until its lease lapses.

* A worker's commit locks the rows of every program it touches
  (`SELECT ... FOR UPDATE`, in id order so two group commits cannot deadlock)
  before it checks fences and sequence numbers, so the checks are race-free.
* Transactions that touch both a program and its calls or callbacks lock the
  program first, the same order as a commit, for the same reason.
* Claims (`programs` and `calls`) take rows with `FOR UPDATE SKIP LOCKED`:
  concurrent claimers never wait for each other and never share a row.
* Bookkeeping whose loss is harmless (claims, lease renewals, heartbeats)
  commits with `synchronous_commit = off`, like SQLite's `durable=False`.
* Wake-ups are `NOTIFY flowmetal_<schema>`, heard by listeners holding a
  dedicated `LISTEN` connection.
* Round trips are what operations cost, so a claim also returns the claimed
  programs' rows and inboxes, which the slices about to run read (see
  `_prefetched`), a commit writes each table once for the whole group
  (`unnest` of arrays), and a claim prefers the programs this process ran
  last, whose machines are still in its memory (see `_AFFINITY`).

URL: `postgresql://user:password@host:port/db?schema=NAME&migrate=false&pool_size=10&pool_timeout=15`.
`schema` (default: the one in `options=-csearch_path=...`, else `public`) holds the
tables, so several stores can share one database; `migrate=false` (or
FLOWMETAL_NO_AUTO_MIGRATE=1) makes an out-of-date schema an error instead of
migrating it on open (`flowmetal db migrate` does it then); `pool_size` bounds
the connections of one process, and `pool_timeout` is how long an operation waits
for one (e.g. while the server restarts) before raising StoreUnavailable. The
other query parameters are libpq's.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import select
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

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
    StoreUnavailable,
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
    HOST,
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
    local_owner_alive,
    pid_alive,
    rounds,
    runnable_after_holder_died,
)

SCHEMA_VERSION = 7

_MIGRATIONS: dict[int, list[str]] = {
    1: [
        """CREATE TABLE programs (
            id TEXT PRIMARY KEY,
            filename TEXT NOT NULL,
            source_hash TEXT NOT NULL,
            args TEXT NOT NULL,
            status TEXT NOT NULL,
            runnable INTEGER NOT NULL DEFAULT 1,
            wake_at DOUBLE PRECISION,
            waiting_on TEXT,
            last_seq BIGINT NOT NULL DEFAULT 0,
            result TEXT,
            error TEXT,
            cancel_requested INTEGER NOT NULL DEFAULT 0,
            parent_id TEXT,
            lease_owner TEXT,
            lease_pid INTEGER,
            lease_host TEXT,
            lease_expires DOUBLE PRECISION,
            fence BIGINT NOT NULL DEFAULT 0,
            created_at DOUBLE PRECISION NOT NULL,
            updated_at DOUBLE PRECISION NOT NULL
        )""",
        "CREATE INDEX programs_runnable ON programs (runnable, status)",
        "CREATE INDEX programs_wake ON programs (wake_at)",
        # what `claim` scans: live programs, oldest first (finished ones pile up, unread)
        "CREATE INDEX programs_live ON programs (updated_at) WHERE status IN ('running', 'waiting')",
        """CREATE TABLE sources (
            hash TEXT PRIMARY KEY,
            filename TEXT NOT NULL,
            source TEXT NOT NULL
        )""",
        """CREATE TABLE events (
            program_id TEXT NOT NULL,
            seq BIGINT NOT NULL,
            type TEXT NOT NULL,
            data TEXT NOT NULL,
            at DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (program_id, seq)
        )""",
        """CREATE TABLE checkpoints (
            program_id TEXT NOT NULL,
            seq BIGINT NOT NULL,
            state BYTEA NOT NULL,
            PRIMARY KEY (program_id, seq)
        )""",
        """CREATE TABLE inbox (
            id BIGSERIAL PRIMARY KEY,
            program_id TEXT NOT NULL,
            channel TEXT NOT NULL,
            message TEXT NOT NULL,
            sent_at DOUBLE PRECISION NOT NULL
        )""",
        "CREATE INDEX inbox_program ON inbox (program_id, id)",
    ],
    2: [
        """CREATE TABLE calls (
            key TEXT PRIMARY KEY,
            program_id TEXT NOT NULL,
            channel TEXT NOT NULL,
            kind TEXT NOT NULL,
            name TEXT NOT NULL,
            payload TEXT NOT NULL,
            policy TEXT NOT NULL,
            attempt_timeout DOUBLE PRECISION,
            deadline DOUBLE PRECISION,
            status TEXT NOT NULL,
            attempt INTEGER NOT NULL DEFAULT 0,
            next_at DOUBLE PRECISION,
            lease_owner TEXT,
            lease_expires DOUBLE PRECISION,
            attempt_deadline DOUBLE PRECISION,
            outcome TEXT,
            last_error TEXT,
            created_at DOUBLE PRECISION NOT NULL,
            updated_at DOUBLE PRECISION NOT NULL
        )""",
        "CREATE INDEX calls_due ON calls (kind, status, next_at)",
        "CREATE INDEX calls_program ON calls (program_id)",
        """CREATE TABLE callbacks (
            token TEXT PRIMARY KEY,
            program_id TEXT NOT NULL,
            channel TEXT NOT NULL,
            status TEXT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            delivered_at DOUBLE PRECISION
        )""",
        "CREATE INDEX callbacks_program ON callbacks (program_id)",
    ],
    3: [
        # listings page through programs in creation order (`page_programs`), optionally by status
        "CREATE INDEX programs_created ON programs (created_at, id)",
        "CREATE INDEX programs_status_created ON programs (status, created_at, id)",
    ],
    # deployments, schedules, hooks, retention, continue_as_new (the statements both backends run)
    4: [statement.replace(" REAL", " DOUBLE PRECISION") for statement in ops_sql.MIGRATION],
    # failed attempts, served function names, callback options
    5: [statement.replace(" REAL", " DOUBLE PRECISION") for statement in records_sql.MIGRATION],
    # attempts lost with their worker (not counted against the retry policy)
    6: [LOST_MIGRATION],
    # timers and leases in indexes: idle rounds cost the same for any number of sleeping programs
    7: TIMER_MIGRATION,
}

# URL query parameters that are Flowmetal's, not libpq's
_OWN_PARAMS = ("schema", "migrate", "pool_size", "pool_timeout")
_CONNECT_TIMEOUT = 5  # seconds (libpq's connect_timeout)
_POOL_TIMEOUT = 15.0  # default seconds to wait for a pooled connection, e.g. while the server restarts
_READ_ATTEMPTS = 4
_WRITE_ATTEMPTS = 4
# In a FROM list, switches the statement's (autocommit) transaction to asynchronous commit:
# one round trip instead of BEGIN; SET LOCAL; ...; COMMIT. The setting is read when the
# transaction commits, after the statement ran. For bookkeeping whose loss is harmless.
_RELAXED = "(SELECT set_config('synchronous_commit', 'off', true)) AS relaxed"
_PROGRAM_COLUMNS = ("id, filename, source_hash, status, args, last_seq, created_at, updated_at, result, error,"
                    " waiting_on, wake_at, runnable, cancel_requested, parent_id, lease_owner, fence, deployment,"
                    " retain, run")
# JSON-valued columns of calls: decoded in a ProgramDump, like the SQLite store's dumps
_CALL_JSON = ("payload", "policy", "outcome", "last_error")
_P_COLUMNS = ", ".join(f"p.{c.strip()}" for c in _PROGRAM_COLUMNS.split(","))
_LIVE_STATUSES = "('running', 'waiting')"
_DONE_STATUSES = "('completed', 'failed', 'cancelled')"  # _enqueue's test, as in the SQLite store

# Oldest first, but a program this process ran last (lease_pid/lease_host outlive the lease) counts
# as this much older: its machine is probably still in this worker's memory, while another worker
# would have to restore it from the checkpoint. (Bounded: nobody's program waits longer than this
# for being someone else's.)
_AFFINITY = 0.5  # seconds
# markers of _commit's checks failing in SQL (a cast error: plain SQL cannot raise otherwise)
_CHECK_FAILED = "flowmetal-check-failed"
_CALL_CHECK_FAILED = "flowmetal-call-check-failed"
_PREFETCH_TTL = 1.0  # seconds a claim's prefetched rows serve reads (a round lasts milliseconds)

Conn = psycopg.Connection[Any]
T = TypeVar("T")


# -- the URL ---------------------------------------------------------------------------------

@dataclass
class PgSettings:
    conninfo: str  # the URL without Flowmetal's own parameters: what libpq gets
    schema: str
    auto_migrate: bool
    pool_size: int
    pool_timeout: float
    display: str  # the URL with any password hidden, for messages


@dataclass
class _Prefetch:
    at: float  # time.monotonic() of the claim
    rows: dict[str, ProgramRow]
    inboxes: dict[str, list[InboxMessage]]


def parse_url(url: str) -> PgSettings:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    own = {k: v for k, v in query if k in _OWN_PARAMS}
    libpq = [(k, v) for k, v in query if k not in _OWN_PARAMS]
    # quote, not quote_plus: libpq decodes %XX in URLs but not "+"
    conninfo = urlunsplit(parts._replace(query=urlencode(libpq, quote_via=quote)))
    schema = own.get("schema") or _schema_from_options(dict(libpq).get("options", "")) or "public"
    auto = own.get("migrate", "true").lower() not in ("false", "0", "no", "off")
    if os.environ.get("FLOWMETAL_NO_AUTO_MIGRATE", "").lower() in ("1", "true", "yes"):
        auto = False
    try:
        pool_size = max(2, int(own.get("pool_size", "10")))
        pool_timeout = max(0.1, float(own.get("pool_timeout", _POOL_TIMEOUT)))
    except ValueError:
        raise StoreError("bad store URL: pool_size and pool_timeout must be numbers") from None
    display = url
    if parts.password:
        display = urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1)))
    return PgSettings(conninfo, schema, auto, pool_size, pool_timeout, display)


def _schema_from_options(options: str) -> str | None:
    """The first schema of `-c search_path=...` (or `-csearch_path=`, `--search_path=`) in libpq options."""
    words = options.replace("-c ", "-c").split()
    for word in words:
        for prefix in ("-csearch_path=", "--search_path="):
            if word.startswith(prefix):
                first = word[len(prefix):].split(",")[0].strip().strip('"')
                return first or None
    return None


def _lock_key(schema: str) -> int:
    """A stable 64-bit advisory lock key per schema, so migrators of one schema take turns."""
    digest = hashlib.sha256(f"flowmetal-migrate:{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


# -- schema versions ------------------------------------------------------------------------------

def schema_version(conn: Conn, schema: str) -> int:
    """The schema's version; 0 when it has no tables yet."""
    table = sql.SQL("{}.schema_version").format(sql.Identifier(schema)).as_string(conn)
    row = conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()
    if row is None or row[0] is None:
        return 0
    got = conn.execute(sql.SQL("SELECT version FROM {}.schema_version").format(sql.Identifier(schema))).fetchone()
    return int(got[0]) if got else 0


def migrate(conn: Conn, schema: str, display: str) -> int:
    """Bring `schema` up to SCHEMA_VERSION; returns the version. Safe with concurrent migrators:
    they queue on a transaction-scoped advisory lock and re-read the version once inside."""
    if schema_version(conn, schema) == SCHEMA_VERSION:
        return SCHEMA_VERSION  # the common case: no lock, no DDL
    ident = sql.Identifier(schema)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_lock_key(schema),))
        exists = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone()
        if exists is None:  # (CREATE SCHEMA IF NOT EXISTS would need the CREATE privilege even then)
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(ident))
        conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(ident))
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = conn.execute("SELECT version FROM schema_version").fetchone()
        current = int(row[0]) if row else 0
        if current > SCHEMA_VERSION:
            raise StoreError(f"the store {display} has schema version {current}; this Flowmetal knows up to "
                             f"{SCHEMA_VERSION} — upgrade Flowmetal")
        for version in range(current + 1, SCHEMA_VERSION + 1):
            for statement in _MIGRATIONS[version]:
                conn.execute(statement)
        if row is None:
            conn.execute("INSERT INTO schema_version VALUES (%s)", (SCHEMA_VERSION,))
        elif current != SCHEMA_VERSION:
            conn.execute("UPDATE schema_version SET version = %s", (SCHEMA_VERSION,))
    return SCHEMA_VERSION


def migrate_url(url: str) -> int:
    """`flowmetal db migrate`: apply pending migrations to the store at `url`; the version."""
    settings = parse_url(url)
    with connect(settings) as conn:
        return migrate(conn, settings.schema, settings.display)


def connect(settings: PgSettings) -> Conn:
    """One autocommit connection outside the pool (migrations, listeners), with a clear error."""
    params: dict[str, Any] = {"connect_timeout": _CONNECT_TIMEOUT, **_app_name(settings)}
    try:
        return psycopg.connect(settings.conninfo, autocommit=True, **params)
    except psycopg.OperationalError as e:
        raise StoreUnavailable(f"cannot connect to the store {settings.display}: {_first_line(e)}") from None


def _app_name(settings: PgSettings) -> dict[str, str]:
    # shows up in pg_stat_activity (and lets tests find this store's connections)
    if "application_name" in settings.conninfo:
        return {}
    return {"application_name": f"flowmetal {settings.schema}"[:63]}


def _check_connection(conn: Conn) -> None:
    """The pool's check before lending a connection, so dead ones are replaced: an idle
    connection has nothing to say, so if its socket is readable the server closed it (a restart,
    pg_terminate_backend) or sent an error, and ConnectionPool.check_connection probes it with a
    round trip. A healthy one costs one select() instead of a round trip per operation."""
    if conn.closed or conn.broken:
        raise psycopg.OperationalError("the connection is closed")
    if _readable([conn.fileno()], 0):
        ConnectionPool.check_connection(conn)


def _readable(fds: list[int], timeout: float) -> set[int]:
    """Which of `fds` have something to read, waiting up to `timeout` s (poll: unlike select,
    fine with descriptor numbers above 1023)."""
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN | select.POLLPRI)
    return {fd for fd, _ in poller.poll(max(0.0, timeout) * 1000)}


def _lost(e: psycopg.Error) -> bool:
    """A failure of the connection or the server rather than of the statement (worth retrying):
    no SQLSTATE (the client lost the connection), a connection exception (08), an operator
    intervention such as a shutdown (57P) or the server out of resources (53)."""
    state = e.sqlstate
    return state is None or state.startswith(("08", "57P", "53"))


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


# -- wake-ups -------------------------------------------------------------------------------------

class PgListener(Listener):
    """LISTEN on a dedicated connection; `wait` selects on it and on a socket pair that
    `interrupt` writes to (safe from a signal handler). If the connection breaks (the server
    restarted) `wait` sleeps instead of raising and reconnects next time; callers poll anyway."""

    def __init__(self, settings: PgSettings, channel: str) -> None:
        self.settings = settings
        self.channel = channel
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._conn: Conn | None = None
        self._heard = False  # a notification psycopg received while running LISTEN itself
        self._closed = False
        self._connect()

    def _connect(self) -> bool:
        try:
            conn = connect(self.settings)
        except StoreError:
            return False
        try:
            conn.add_notify_handler(self._on_notify)
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
        except psycopg.Error:
            conn.close()
            return False
        self._conn = conn
        return True

    def _on_notify(self, _: psycopg.Notify) -> None:
        self._heard = True

    def wait(self, timeout: float) -> bool:
        timeout = max(0.0, timeout)
        self.heard = True
        if self._conn is None:
            if not self._closed and self._connect():
                return True  # wake-ups sent while disconnected were lost: look for work now
            self._sleep(timeout)
            return False
        if self._heard:
            self._heard = False
            return True
        fd, wake = self._conn.fileno(), self._wake_r.fileno()
        ready = _readable([fd, wake], timeout)
        woken = False
        if wake in ready:
            self._drain_interrupts()
            woken = True
        self.heard = fd in ready and self._read_notifications()
        return woken or self.heard

    def _read_notifications(self) -> bool:
        conn = self._conn
        assert conn is not None
        heard = False
        try:
            pgconn = conn.pgconn
            pgconn.consume_input()
            while pgconn.notifies() is not None:
                heard = True
            if pgconn.status != psycopg.pq.ConnStatus.OK:
                raise psycopg.OperationalError("the listening connection closed")
        except psycopg.Error:
            self._drop()
            return True  # whatever happened, looking for work is the safe answer
        return heard

    def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None

    def _sleep(self, timeout: float) -> None:
        if _readable([self._wake_r.fileno()], timeout):
            self._drain_interrupts()

    def _drain_interrupts(self) -> None:
        with contextlib.suppress(OSError):
            while self._wake_r.recv(64):
                pass

    def interrupt(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"!")

    def close(self) -> None:
        self._closed = True
        self._drop()
        self._wake_r.close()
        self._wake_w.close()


# -- the store ------------------------------------------------------------------------------------

class _Tx:
    """A psycopg connection as ops_sql's `Tx` (`?` placeholders become `%s`)."""

    def __init__(self, conn: Conn) -> None:
        self.conn = conn

    def one(self, query: str, params: Sequence[Any] = ()) -> dict[str, Any] | None:
        return self.conn.cursor(row_factory=dict_row).execute(query.replace("?", "%s"), params).fetchone()

    def all(self, query: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        return self.conn.cursor(row_factory=dict_row).execute(query.replace("?", "%s"), params).fetchall()

    def run(self, query: str, params: Sequence[Any] = ()) -> int:
        return self.conn.execute(query.replace("?", "%s"), params).rowcount


class PostgresStore(records_sql.CallRecords, ops_sql.SqlOperations):
    _LOCK_SKIP = " FOR UPDATE SKIP LOCKED"
    _LOCK = " FOR UPDATE"

    def __init__(self, url: str) -> None:
        self.url = url
        self.settings = parse_url(url)
        self.schema = self.settings.schema
        self.channel = f"flowmetal_{self.schema}"
        self._local = threading.local()
        self._prepare_schema()
        self.pool: ConnectionPool[Conn] = ConnectionPool(
            self.settings.conninfo, min_size=1, max_size=self.settings.pool_size, open=True,
            kwargs={"autocommit": True, "connect_timeout": _CONNECT_TIMEOUT, **_app_name(self.settings)},
            configure=self._configure, check=_check_connection, timeout=self.settings.pool_timeout,
            name=f"flowmetal-{self.schema}")

    def _prepare_schema(self) -> None:
        with connect(self.settings) as conn:
            if self.settings.auto_migrate:
                migrate(conn, self.schema, self.settings.display)
                return
            version = schema_version(conn, self.schema)
        if version < SCHEMA_VERSION:
            have = f"schema version {version}" if version else "no Flowmetal tables"
            raise StoreError(f"the store {self.settings.display} has {have}; this Flowmetal needs schema "
                             f"version {SCHEMA_VERSION} and the URL says not to migrate on open "
                             "(migrate=false or FLOWMETAL_NO_AUTO_MIGRATE): run `flowmetal db migrate --store URL`")
        if version > SCHEMA_VERSION:
            raise StoreError(f"the store {self.settings.display} has schema version {version}; this Flowmetal "
                             f"knows up to {SCHEMA_VERSION} — upgrade Flowmetal")

    def _configure(self, conn: Conn) -> None:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(self.schema)))

    def close(self) -> None:
        self.pool.close()

    # -- running statements ------------------------------------------------------------------
    def _read(self, fn: Callable[[Conn], T]) -> T:
        """Run a read. A connection lost mid-way (the server restarted) is retried with backoff:
        reading twice is harmless."""
        delay = 0.05
        for attempt in range(_READ_ATTEMPTS):
            try:
                with self.pool.connection() as conn:
                    return fn(conn)
            except PoolClosed:
                raise StoreError(f"the store {self.settings.display} was closed") from None
            except PoolTimeout as e:
                raise self._unavailable(e) from None
            except psycopg.Error as e:
                if not _lost(e):
                    raise self._failed(e) from None
                if attempt == _READ_ATTEMPTS - 1:
                    raise self._unavailable(e) from None
            time.sleep(delay)
            delay *= 4
        raise AssertionError("unreachable")

    def _write(self, fn: Callable[[Conn], T], *, tx: bool = True, idempotent: bool = False,
               pipeline: bool = False) -> T:
        """Run a write, in one transaction when `tx` (else `fn` is a single autocommit statement);
        with `pipeline`, in pipeline mode: BEGIN, `fn`'s statements and COMMIT go out together, one
        round trip if `fn` reads nothing (an error skips the rest, COMMIT too: then ROLLBACK).
        Retried when it certainly did not commit (a deadlock victim, or a connection lost before
        COMMIT was sent) or when doing it twice is harmless (`idempotent`); a connection lost while
        committing leaves the outcome unknown, so that raises StoreUnavailable."""
        self._local.prefetch = None  # this thread changes things: reads go to the database again
        delay = 0.02
        for attempt in range(_WRITE_ATTEMPTS):
            body_done = False
            try:
                with self.pool.connection() as conn:
                    if not tx:
                        return fn(conn)
                    if pipeline:
                        return self._pipelined(conn, fn)
                    with conn.transaction():
                        result = fn(conn)
                        body_done = True
                    return result
            except PoolClosed:
                raise StoreError(f"the store {self.settings.display} was closed") from None
            except PoolTimeout as e:
                raise self._unavailable(e) from None
            except psycopg.errors.TransactionRollback as e:
                # a deadlock victim or serialization failure: rolled back, so run it again
                if attempt == _WRITE_ATTEMPTS - 1:
                    raise self._failed(e) from None
            except (psycopg.errors.UniqueViolation, psycopg.errors.InvalidTextRepresentation):
                raise  # the caller knows what a duplicate key (or a failed check: see _commit) means for it
            except psycopg.Error as e:
                if not _lost(e):
                    raise self._failed(e) from None
                certainly_not_applied = tx and not body_done and not pipeline  # (pipelined: COMMIT was sent)
                if attempt == _WRITE_ATTEMPTS - 1 or not (certainly_not_applied or idempotent):
                    raise self._unavailable(e, maybe_applied=not certainly_not_applied) from None
            time.sleep(delay)
            delay *= 4
        raise AssertionError("unreachable")

    @staticmethod
    def _pipelined(conn: Conn, fn: Callable[[Conn], T]) -> T:
        # (BEGIN and COMMIT as statements: psycopg's transaction() syncs the pipeline before COMMIT)
        try:
            with conn.pipeline():
                conn.execute("BEGIN")
                result = fn(conn)
                conn.execute("COMMIT")
        except BaseException:
            if not conn.broken and conn.pgconn.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                with contextlib.suppress(psycopg.Error):
                    conn.execute("ROLLBACK")
            raise
        return result

    def _failed(self, e: BaseException) -> StoreError:
        return StoreError(f"the store {self.settings.display}: {_first_line(e)}")

    def _unavailable(self, e: BaseException, maybe_applied: bool = False) -> StoreUnavailable:
        what = "; the operation may or may not have been applied" if maybe_applied else ""
        return StoreUnavailable(f"the store {self.settings.display} is unavailable: {_first_line(e)}{what}")

    # -- programs -------------------------------------------------------------------------------
    def create_program(self, new: NewProgram, now: float) -> bool:
        try:
            return self._write(lambda conn: self._create(conn, new, now))
        except psycopg.errors.UniqueViolation:
            # someone created the same id at the same instant: now it exists, so compare with it
            return self._write(lambda conn: self._create(conn, new, now))

    def _create(self, conn: Conn, new: NewProgram, now: float) -> bool:
        existing = conn.execute("SELECT source_hash, args FROM programs WHERE id = %s", (new.id,)).fetchone()
        if existing is not None:
            if existing[0] == new.source_hash and json.loads(existing[1]) == new.args:
                return False
            raise ProgramExists(f"a different program with id {new.id!r} already exists")
        self._insert_new(conn, new, now)
        return True

    def _insert_new(self, conn: Conn, new: NewProgram, now: float) -> None:
        conn.execute("INSERT INTO sources VALUES (%s, %s, %s) ON CONFLICT (hash) DO NOTHING",
                     (new.source_hash, new.filename, new.source))
        conn.execute(
            "INSERT INTO programs (id, filename, source_hash, args, status, runnable, last_seq, parent_id,"
            " deployment, retain, created_at, updated_at)"
            " VALUES (%s, %s, %s, %s, 'running', 1, 1, %s, %s, %s, %s, %s)",
            (new.id, new.filename, new.source_hash, dumps(new.args), new.parent_id, new.deployment, new.retain,
             now, now))
        data = started_data(new)
        conn.execute("INSERT INTO events VALUES (%s, 1, 'started', %s, %s)", (new.id, dumps(data), now))

    def get_program(self, program_id: str) -> ProgramRow:
        claimed = self._prefetched("rows", program_id)
        if claimed is not None:
            return claimed
        r = self._read(lambda conn: conn.execute(
            f"SELECT {_PROGRAM_COLUMNS} FROM programs WHERE id = %s", (program_id,)).fetchone())
        if r is None:
            raise UnknownProgram(f"no program with id {program_id!r} in {self.settings.display}")
        return _program_row(r)

    def page_programs(self, query: ProgramQuery | None = None, limit: int | None = 100,
                      cursor: str | None = None) -> ProgramPage:
        q = query or ProgramQuery()
        clause, params = page_clause(q, limit, cursor, "%s")
        rows = self._read(lambda conn: conn.execute(f"SELECT {_PROGRAM_COLUMNS} FROM programs" + clause,
                                                    params).fetchall())
        return finish_page([_program_row(r) for r in rows], limit, q.newest_first)

    def count_programs(self) -> dict[str, int]:
        rows = self._read(lambda conn: conn.execute("SELECT status, count(*) FROM programs GROUP BY status").fetchall())
        return {status: int(n) for status, n in rows}

    def source(self, source_hash: str) -> tuple[str, str]:
        r = self._read(lambda conn: conn.execute("SELECT filename, source FROM sources WHERE hash = %s",
                                                 (source_hash,)).fetchone())
        if r is None:
            raise StoreError(f"the store has no source with hash {source_hash}")
        return r[0], r[1]

    def events(self, program_id: str, after: int = 0, upto: int | None = None) -> list[Event]:
        limit = upto if upto is not None else 1 << 62
        rows = self._read(lambda conn: conn.execute(
            "SELECT seq, type, data, at FROM events WHERE program_id = %s AND seq > %s AND seq <= %s ORDER BY seq",
            (program_id, after, limit)).fetchall())
        return [Event(program_id, r[0], r[1], json.loads(r[2]), r[3]) for r in rows]

    def checkpoint(self, program_id: str, at_or_before: int | None = None) -> tuple[int, bytes] | None:
        limit = at_or_before if at_or_before is not None else 1 << 62
        r = self._read(lambda conn: conn.execute(
            "SELECT seq, state FROM checkpoints WHERE program_id = %s AND seq <= %s ORDER BY seq DESC LIMIT 1",
            (program_id, limit)).fetchone())
        return (r[0], bytes(r[1])) if r is not None else None

    # -- outside inputs -----------------------------------------------------------------------
    def _why_not_live(self, conn: Conn, program_id: str) -> StoreError:
        """The error for an update that matched no live program: unknown, moved or finished."""
        r = conn.execute("SELECT status, error FROM programs WHERE id = %s", (program_id,)).fetchone()
        if r is None:
            return UnknownProgram(f"no program with id {program_id!r} in {self.settings.display}")
        if r[0] == "moved":  # error says where to: "moved to ..."
            return ProgramFinished(f"program {program_id!r} no longer runs in {self.settings.display}: it was {r[1]}")
        return ProgramFinished(f"program {program_id!r} has already {r[0]}")

    def _live_update(self, program_id: str, assignments: str, params: tuple[Any, ...]) -> None:
        """One statement: update a live program, or say why there is none."""
        def run(conn: Conn) -> StoreError | None:
            cur = conn.execute(f"UPDATE programs SET {assignments} WHERE id = %s AND status IN {_LIVE_STATUSES}",
                               (*params, program_id))
            return self._why_not_live(conn, program_id) if cur.rowcount == 0 else None
        error = self._write(run, tx=False, idempotent=True)
        if error is not None:
            raise error

    def send(self, program_id: str, channel: str, message: Any, now: float) -> None:
        user_channel(channel)
        # one statement: the message is queued only if the program is live, which it marks runnable
        def run(conn: Conn) -> StoreError | None:
            cur = conn.execute(
                "WITH target AS (UPDATE programs SET runnable = 1 WHERE id = %s AND status IN"
                f" {_LIVE_STATUSES} RETURNING id)"
                " INSERT INTO inbox (program_id, channel, message, sent_at) SELECT id, %s, %s, %s FROM target",
                (program_id, channel, dumps(message), now))
            return self._why_not_live(conn, program_id) if cur.rowcount == 0 else None
        error = self._write(run, tx=False)
        if error is not None:
            raise error

    def _enqueue(self, conn: Conn, program_id: str, channel: str, message: Any, now: float) -> None:
        conn.execute("INSERT INTO inbox (program_id, channel, message, sent_at) VALUES (%s, %s, %s, %s)",
                     (program_id, channel, dumps(message), now))
        conn.execute(f"UPDATE programs SET runnable = 1 WHERE id = %s AND status NOT IN {_DONE_STATUSES}",
                     (program_id,))

    def inbox(self, program_id: str) -> list[InboxMessage]:
        claimed = self._prefetched("inboxes", program_id)
        if claimed is not None:
            return claimed
        rows = self._read(lambda conn: conn.execute(
            "SELECT id, channel, message FROM inbox WHERE program_id = %s ORDER BY id", (program_id,)).fetchall())
        return [InboxMessage(r[0], r[1], json.loads(r[2])) for r in rows]

    def program_and_inbox(self, claim: Claim) -> tuple[ProgramRow, list[InboxMessage]]:
        if claim.row is None or claim.inbox is None:
            self.read_for_slices([claim])  # one round trip for both
        return super().program_and_inbox(claim)

    def read_for_slices(self, claims: list[Claim]) -> None:
        # one round trip for all: programs continued after their calls, by the worker's thread,
        # before it hands them to executor threads (which would read them one by one)
        wanted = {c.program_id: c for c in claims if c.row is None or c.inbox is None}
        if not wanted:
            return
        rows = self._read(lambda conn: conn.execute(
            f"SELECT {_P_COLUMNS}, i.id, i.channel, i.message FROM programs p LEFT JOIN inbox i"
            " ON i.program_id = p.id WHERE p.id = ANY(%s) ORDER BY p.id, i.id", (list(wanted),)).fetchall())
        for r in rows:
            n = len(r) - 3
            claim = wanted[r[0]]
            if claim.row is None or claim.inbox is None:
                claim.row, claim.inbox = _program_row(r[:n]), []
            if r[n] is not None:
                claim.inbox.append(InboxMessage(r[n], r[n + 1], json.loads(r[n + 2])))

    def request_cancel(self, program_id: str, now: float) -> None:
        self._live_update(program_id, "cancel_requested = 1, runnable = 1, updated_at = %s", (now,))

    def make_runnable(self, program_id: str, now: float) -> None:
        self._live_update(program_id, "runnable = 1", ())

    # -- workers ----------------------------------------------------------------------------------
    def claim(self, worker: str, pid: int, host: str, lease: float, now: float, limit: int,
              only: str | None = None) -> list[Claim]:
        self._clear_dead_leases(host, now)
        where = (f"status IN {_LIVE_STATUSES}"
                 " AND (runnable = 1 OR (wake_at IS NOT NULL AND wake_at <= %s)"
                 "      OR lease_owner IS NOT NULL)"  # an expired lease: its slice never committed
                 " AND (lease_owner IS NULL OR lease_expires < %s)")
        params: list[Any] = [worker, pid, host, now + lease, now, now]
        if only is not None:  # a program and the children it started (not LIKE: ids may hold _ or %)
            where += " AND (id = %s OR left(id, %s) = %s)"
            params.extend([only, len(only) + 1, only + "."])
        else:  # (= ANY(ARRAY(...)): the candidates are read once, then each row by its key, whatever
            # the planner's statistics say)
            size = branch_size(limit)
            where += f" AND id = ANY(ARRAY({claim_candidates('%s')}))"
            params.extend([size, now, size, now, size])
        params.extend([pid, host, limit])
        returning = ", ".join(f"p.{c.strip()}" for c in _PROGRAM_COLUMNS.split(","))
        query = (
            "UPDATE programs AS p SET lease_owner = %s, lease_pid = %s, lease_host = %s,"
            " lease_expires = %s, fence = p.fence + 1, runnable = 0"
            f" FROM (SELECT id, lease_owner AS old_owner FROM programs WHERE {where}"
            f" ORDER BY updated_at - CASE WHEN lease_pid = %s AND lease_host = %s THEN {_AFFINITY} ELSE 0 END LIMIT %s FOR UPDATE SKIP LOCKED) AS c,"
            f" {_RELAXED} WHERE p.id = c.id RETURNING {returning}, c.old_owner")
        raw = self._write(lambda conn: conn.execute(query, params).fetchall(), tx=False)
        taken_over = {r[0] for r in raw if r[-1] is not None}  # (id is the first column)
        rows = [r[:-1] for r in raw]
        # (not retried on a lost connection: a claim that did commit would hold its programs until
        # the lease ran out; raising lets the worker back off and claim afresh)
        programs = sorted((_program_row(r) for r in rows), key=lambda row: (row.updated_at, row.id))
        self._local.prefetch = _Prefetch(time.monotonic(), {row.id: row for row in programs},
                                         self._inboxes([row.id for row in programs]))
        prefetch = self._local.prefetch
        return [Claim(row.id, row.fence, took_over=row.id in taken_over, row=row,
                      inbox=prefetch.inboxes.get(row.id)) for row in programs]

    def _inboxes(self, program_ids: list[str]) -> dict[str, list[InboxMessage]]:
        """The inboxes of programs just claimed, for the slices about to run (see _prefetched).
        Read by a statement of its own, after the claim: a statement reads the snapshot taken when
        it began, but locks the newest version of a row, so a message sent in between would be
        missing from an inbox read by the claim statement itself while its `runnable = 1` was
        overwritten by the claim — and the program would wait for a message it already has.
        Only a hint: if it cannot be read now, the worker reads each inbox itself."""
        if not program_ids:
            return {}
        try:
            rows = self._read(lambda conn: conn.execute(
                "SELECT program_id, id, channel, message FROM inbox WHERE program_id = ANY(%s)"
                " ORDER BY id", (program_ids,)).fetchall())
        except StoreError:
            return {}
        inboxes: dict[str, list[InboxMessage]] = {pid: [] for pid in program_ids}
        for program_id, message_id, channel, message in rows:
            inboxes[program_id].append(InboxMessage(message_id, channel, json.loads(message)))
        return inboxes

    def _prefetched(self, kind: str, program_id: str) -> Any:
        """What `claim` read about a program it just leased to this thread, once. The worker reads
        each claimed program's row and inbox right away to run its slice; the claim returned them
        already, saving two round trips per slice. As fresh as a read at claim time: anything
        that changes a leased program meanwhile (a message, a cancel) also makes it runnable, so
        it is claimed again once this slice commits. Served for a second at most, and never
        after this thread writes anything (its commit, a release, a send...)."""
        prefetch: _Prefetch | None = getattr(self._local, "prefetch", None)
        if prefetch is None or time.monotonic() - prefetch.at > _PREFETCH_TTL:
            return None
        return getattr(prefetch, kind).pop(program_id, None)

    def _clear_dead_leases(self, host: str, now: float) -> None:
        """On this machine a lease holder's death is provable: its process is gone.
        (Checked at most every 0.2 s: a busy worker claims far more often than workers die.)"""
        last = getattr(self._local, "dead_check", 0.0)
        if 0 <= now - last < 0.2:
            return
        self._local.dead_check = now
        rows = self._read(lambda conn: conn.execute(
            "SELECT id, lease_pid, lease_owner, fence FROM programs WHERE lease_owner IS NOT NULL AND lease_host = %s"
            " AND lease_expires >= %s", (host, now)).fetchall())
        for program_id, lease_pid, lease_owner, fence in rows:
            if (lease_pid and not pid_alive(lease_pid)) or not local_owner_alive(lease_owner):
                # one row per statement: never holds one program's lock while waiting for another's
                self._clear_lease(program_id, fence, now)
                holder_died(program_id, lease_pid)

    def _clear_lease(self, program_id: str, fence: int, now: float) -> None:
        self._write(lambda conn: conn.execute(
            f"UPDATE programs SET lease_owner = NULL, lease_expires = NULL, runnable = {runnable_after_holder_died('%s')}"
            " WHERE id = %s AND fence = %s", (now, program_id, fence)), tx=False, idempotent=True)

    def renew(self, worker: str, program_ids: list[str], lease: float, now: float) -> list[str]:
        if not program_ids:
            return []
        rows = self._write(lambda conn: conn.execute(
            f"UPDATE programs SET lease_expires = %s FROM {_RELAXED} WHERE id = ANY(%s) AND lease_owner = %s"
            " RETURNING id", (now + lease, program_ids, worker)).fetchall(), tx=False, idempotent=True)
        held = {r[0] for r in rows}
        return [p for p in program_ids if p in held]

    def release(self, worker: str, program_id: str, fence: int, runnable: bool = False) -> None:
        self._write(lambda conn: conn.execute(
            "UPDATE programs SET lease_owner = NULL, lease_expires = NULL,"
            f" runnable = CASE WHEN %s THEN 1 ELSE runnable END FROM {_RELAXED}"
            " WHERE id = %s AND fence = %s AND lease_owner = %s", (runnable, program_id, fence, worker)),
            tx=False, idempotent=True)

    def commit(self, commits: list[Commit], now: float) -> None:
        if not commits:
            return
        try:
            self._write(lambda conn: self._commit(conn, commits, now), pipeline=True)
        except psycopg.errors.InvalidTextRepresentation as e:
            # one of _commit's checks failed (the group was rolled back): say which
            text = _first_line(e)  # invalid input syntax for type integer: "<marker> <details>"
            if _CALL_CHECK_FAILED in text:
                key, owner = text.split(_CALL_CHECK_FAILED, 1)[1].strip().rstrip('"').rsplit(" ", 1)
                raise Conflict(f"call {key!r} is no longer claimed by {owner}") from None
            if _CHECK_FAILED not in text:
                raise self._failed(e) from None
            self._explain_failed_check(commits)
            raise Conflict(f"commit conflicts with another writer: {_first_line(e)}") from None
        except psycopg.errors.UniqueViolation as e:
            # an event at a taken position, or a child id started twice at once
            raise Conflict(f"commit conflicts with another writer: {_first_line(e)}") from None

    def _explain_failed_check(self, commits: list[Commit]) -> None:
        """Raise what failed of the group's checks (UnknownProgram, LeaseLost, Conflict), read again."""
        rows = self._read(lambda conn: conn.execute(
            "SELECT id, fence, last_seq, lease_owner FROM programs WHERE id = ANY(%s)",
            ([c.program_id for c in commits],)).fetchall())
        state = {r[0]: (r[1], r[2], r[3]) for r in rows}
        seen: set[str] = set()
        for c in commits:
            if c.program_id not in seen:
                seen.add(c.program_id)
                check(c, state.get(c.program_id))

    def _commit(self, conn: Conn, commits: list[Commit], now: float) -> None:
        # One round trip for the whole group, COMMIT included (pipeline mode; see _write): lock
        # every program the commits append to or send to, in id order (so two group commits never
        # deadlock); check fences and sequence numbers in SQL against the locked rows (a failed
        # check is an error, so the server skips the rest and rolls back: `commit` then says which
        # check failed); write everything. Nothing is read back before COMMIT.
        check_group(commits)
        ids = sorted({c.program_id for c in commits} | {t for c in commits for t, _, _ in c.sends})
        first: dict[str, Commit] = {}
        for c in commits:
            first.setdefault(c.program_id, c)
        # One statement: the lock (every row, whatever join the planner picks: the count reads
        # them all), then the check against the locked rows' latest versions.
        conn.execute(
            "WITH p AS MATERIALIZED (SELECT id, fence, lease_owner, last_seq FROM programs"
            "  WHERE id IN (SELECT jsonb_array_elements_text(%s::jsonb)) ORDER BY id FOR UPDATE),"
            " n AS (SELECT count(*) FROM p)"
            " SELECT CASE WHEN p.id IS NULL OR p.fence <> e.fence OR p.lease_owner IS NULL OR p.last_seq <> e.seq"
            f" THEN ('{_CHECK_FAILED} ' || e.id)::int END"
            f" FROM n, {_rows('id text, fence bigint, seq bigint')} AS e LEFT JOIN p ON p.id = e.id",
            (_doc(ids), _doc([(c.program_id, c.fence, c.base_seq) for c in first.values()])))
        for batch in rounds(commits):
            self._apply_batch(conn, batch, now)

    def _apply_batch(self, conn: Conn, batch: list[Commit], now: float) -> None:
        """Apply commits of distinct programs with a few set-based statements (round trips are
        what a commit costs); the effect is the SQLite store's `_apply_batch`. The rows go in as
        one JSON document per statement (see _rows)."""
        restarts = [c for c in batch if c.restart_args is not None]
        if restarts:  # continue_as_new: rare enough to apply one by one
            for c in restarts:
                self._apply_restart(conn, c, now)
            batch = [c for c in batch if c.restart_args is None]
            if not batch:
                return
        self._insert_events(conn, batch, now)
        checkpoints = {(c.program_id, c.base_seq + len(c.events)): c.checkpoint
                       for c in batch if c.checkpoint is not None}
        if checkpoints:
            conn.execute(
                "INSERT INTO checkpoints SELECT * FROM unnest(%b::text[], %b::bigint[], %b::bytea[])"
                " ON CONFLICT (program_id, seq) DO UPDATE SET state = EXCLUDED.state",
                ([k[0] for k in checkpoints], [k[1] for k in checkpoints], list(checkpoints.values())))
        consumed = [i for c in batch for i in c.consumed]
        if consumed:
            conn.execute("DELETE FROM inbox WHERE id = ANY(%s)", (consumed,))
        for c in batch:
            for new in c.starts:
                self._create(conn, new, now)
        self._send_all(conn, [s for c in batch for s in c.sends], now)
        self._insert_calls(conn, batch, now)
        self._record_done_calls(conn, batch, now)
        cancel = [k for c in batch for k in c.cancel_calls]
        if cancel:
            conn.execute("UPDATE calls SET status = 'cancelled', lease_owner = NULL, updated_at = %s"
                         " WHERE key = ANY(%s) AND status IN ('pending', 'claimed')", (now, cancel))
        callbacks = [(token, c.program_id, channel, now, dumps(options) if options else None)
                     for c in batch for token, channel, options in c.callbacks]
        if callbacks:
            with conn.cursor() as cur:
                cur.executemany("INSERT INTO callbacks (token, program_id, channel, status, created_at, options)"
                                " VALUES (%s, %s, %s, 'open', %s, %s) ON CONFLICT (token) DO UPDATE SET"
                                " status = 'open', options = EXCLUDED.options", callbacks)
        self._update_programs(conn, batch, now)

    def _insert_events(self, conn: Conn, batch: list[Commit], now: float) -> None:
        rows = [(c.program_id, c.base_seq + i, etype, dumps({"v": EVENT_VERSION, **data}))
                for c in batch for i, (etype, data) in enumerate(c.events, start=1)]
        if not rows:
            return
        try:
            conn.execute(f"INSERT INTO events SELECT p, s, t, d, %s FROM {_rows('p text, s bigint, t text, d text')}"
                         " AS e", (now, _doc(rows)))
        except psycopg.errors.UniqueViolation:
            first = batch[0]
            raise Conflict(f"{first.program_id!r}: an event after {first.base_seq} already exists") from None

    def _send_all(self, conn: Conn, sends: list[tuple[str, str, Any]], now: float) -> None:
        if not sends:
            return
        # unnest keeps the list's order, so the inbox ids keep the order the messages were sent in
        conn.execute(
            "INSERT INTO inbox (program_id, channel, message, sent_at)"
            f" SELECT p, ch, m, %s FROM {_rows('p text, ch text, m text')} AS s ORDER BY n",
            (now, _doc([(s[0], s[1], dumps(s[2])) for s in sends])))
        conn.execute(f"UPDATE programs SET runnable = 1 WHERE id = ANY(%s) AND status NOT IN {_DONE_STATUSES}",
                     (sorted({s[0] for s in sends}),))

    def _insert_calls(self, conn: Conn, batch: list[Commit], now: float) -> None:
        # pending, or already claimed by the worker that performs it in process (NewCall.owner)
        rows = [(call.key, call.program_id, call.channel, call.kind, call.name, dumps(call.payload),
                 dumps(call.retry), call.attempt_timeout, call.deadline, *first_attempt(call, now), now, now)
                for c in batch for call in c.calls]
        if rows:
            conn.execute(
                "INSERT INTO calls (key, program_id, channel, kind, name, payload, policy, attempt_timeout,"
                " deadline, status, attempt, next_at, lease_owner, lease_expires, attempt_deadline, created_at,"
                " updated_at) SELECT key, program_id, channel, kind, name, payload, policy, attempt_timeout,"
                " deadline, status, attempt, next_at, lease_owner, lease_expires, attempt_deadline, created_at,"
                " updated_at FROM " + _rows("key text, program_id text, channel text, kind text, name text,"
                                           " payload text, policy text, attempt_timeout float8, deadline float8,"
                                           " status text, attempt int, next_at float8, lease_owner text,"
                                           " lease_expires float8, attempt_deadline float8, created_at float8,"
                                           " updated_at float8") + " AS r ORDER BY n",
                (_doc([[_f(v) if type(v) is float else v for v in row] for row in rows]),))

    def _record_done_calls(self, conn: Conn, batch: list[Commit], now: float) -> None:
        """Outcomes of calls the committing worker performed in process: each call must still be
        claimed by that worker (else its attempt was given up meanwhile: an error in SQL, which
        `commit` turns into Conflict)."""
        done = [(key, dumps(message), c.call_owner, ended_status(message))
                for c in batch for key, message in c.done_calls]
        if not done:
            return
        conn.execute(
            f"WITH d AS {_rows('key text, outcome text, owner text, status text')},"
            " u AS (UPDATE calls AS c SET status = d.status, outcome = d.outcome,"
            " lease_owner = NULL, lease_expires = NULL, updated_at = %s FROM d"
            " WHERE c.key = d.key AND c.status = 'claimed' AND c.lease_owner = d.owner RETURNING c.key)"
            f" SELECT CASE WHEN u.key IS NULL THEN ('{_CALL_CHECK_FAILED} ' || d.key || ' ' || d.owner)::int END"
            " FROM d LEFT JOIN u ON u.key = d.key",
            (_doc(done), now))

    def _update_programs(self, conn: Conn, batch: list[Commit], now: float) -> None:
        conn.execute(
            "UPDATE programs AS p SET status = u.status, last_seq = u.last_seq, result = u.result, error = u.error,"
            " waiting_on = u.waiting_on, wake_at = u.wake_at, runnable = GREATEST(p.runnable, u.runnable),"
            " updated_at = %s,"
            " lease_owner = CASE WHEN u.keep THEN p.lease_owner END,"
            " lease_expires = CASE WHEN u.keep THEN p.lease_expires END"
            " FROM " + _rows("id text, status text, last_seq bigint, result text, error text, waiting_on text,"
                             " wake_at float8, runnable int, keep bool") + " AS u"
            " WHERE p.id = u.id",
            (now, _doc([(c.program_id, c.status, c.base_seq + len(c.events),
                         dumps(c.result) if c.status == "completed" else None, c.error,
                         dumps(c.waiting_on) if c.waiting_on is not None else None, _f(c.wake_at), int(c.runnable),
                         c.keep_lease) for c in batch])))
        finished = [c.program_id for c in batch if c.status in FINISHED]
        if finished:
            self._finish(conn, finished, now)

    def _finish(self, conn: Conn, program_ids: list[str], now: float) -> None:
        """Finished (or moved away): never runnable again, and nobody is left to wait for its
        calls and callbacks."""
        conn.execute("UPDATE programs SET runnable = 0 WHERE id = ANY(%s)", (program_ids,))
        conn.execute("UPDATE calls SET status = 'cancelled', lease_owner = NULL, updated_at = %s"
                     " WHERE program_id = ANY(%s) AND status IN ('pending', 'claimed')", (now, program_ids))
        conn.execute("UPDATE callbacks SET status = 'closed' WHERE program_id = ANY(%s) AND status = 'open'",
                     (program_ids,))

    def _apply_restart(self, conn: Conn, c: Commit, now: float) -> None:
        """continue_as_new: what the last slice sent and started, then a fresh history."""
        assert c.restart_args is not None
        if c.consumed:
            conn.execute("DELETE FROM inbox WHERE id = ANY(%s)", (c.consumed,))
        for new in c.starts:
            self._create(conn, new, now)
        self._send_all(conn, c.sends, now)
        self._restart(_Tx(conn), c.program_id, c.restart_args, now)

    # -- ops_sql's primitives -------------------------------------------------------------------
    def _ops_write(self, fn: Callable[[ops_sql.Tx], T]) -> T:
        for attempt in range(3):
            try:
                return self._write(lambda conn: fn(_Tx(conn)))
            except psycopg.errors.UniqueViolation as e:
                # two processes inserted the same key at once (a deployment's first version, a
                # source, a run): the loser looks again and finds the winner's row
                if attempt == 2:
                    raise self._failed(e) from None
        raise AssertionError("unreachable")

    def _ops_read(self, fn: Callable[[ops_sql.Tx], T]) -> T:
        return self._read(lambda conn: fn(_Tx(conn)))

    def _ops_create(self, tx: ops_sql.Tx, new: NewProgram, now: float) -> bool:
        return self._create(tx.conn, new, now)

    def next_wake(self) -> float | None:
        # A program leased by another process is that process's to run: for this one its timer
        # is due when the lease lapses. (Its past-due wake_at would make idle workers poll in a
        # busy loop while another worker runs it.)
        # (Two index reads: the earliest unleased timer, and among the few leased programs.)
        r = self._read(lambda conn: conn.execute(
            f"SELECT (SELECT wake_at FROM programs WHERE {TIMER_CLAUSE} AND lease_owner IS NULL"
            "         ORDER BY wake_at LIMIT 1),"
            "        (SELECT MIN(CASE WHEN lease_pid = %s AND lease_host = %s THEN wake_at"
            "                    ELSE GREATEST(wake_at, lease_expires) END)"
            f"        FROM programs WHERE {LEASED_CLAUSE} AND {TIMER_CLAUSE})",
            (os.getpid(), HOST)).fetchone())
        due = [t for t in r or () if t is not None]
        return min(due) if due else None

    # -- moving programs ------------------------------------------------------------------------
    def export_program(self, program_id: str) -> ProgramDump:
        def run(conn: Conn) -> ProgramDump:
            # one snapshot for every table, so a worker committing meanwhile cannot tear the dump
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            r = conn.execute(f"SELECT {_PROGRAM_COLUMNS} FROM programs WHERE id = %s", (program_id,)).fetchone()
            if r is None:
                raise UnknownProgram(f"no program with id {program_id!r} in {self.settings.display}")
            row = _program_row(r)
            text = conn.execute("SELECT source FROM sources WHERE hash = %s", (row.source_hash,)).fetchone()
            if text is None:
                raise StoreError(f"the store has no source with hash {row.source_hash}")
            events = [Event(program_id, e[0], e[1], json.loads(e[2]), e[3]) for e in conn.execute(
                "SELECT seq, type, data, at FROM events WHERE program_id = %s ORDER BY seq", (program_id,))]
            ck = conn.execute("SELECT seq, state FROM checkpoints WHERE program_id = %s ORDER BY seq DESC LIMIT 1",
                              (program_id,)).fetchone()
            inbox = [InboxMessage(m[0], m[1], json.loads(m[2])) for m in conn.execute(
                "SELECT id, channel, message FROM inbox WHERE program_id = %s ORDER BY id", (program_id,))]
            calls = [_decode_call(c) for c in conn.cursor(row_factory=dict_row).execute(
                f"SELECT {', '.join(CALL_COLUMNS)} FROM calls WHERE program_id = %s ORDER BY created_at, key",
                (program_id,))]
            callbacks = conn.cursor(row_factory=dict_row).execute(
                f"SELECT {', '.join(CALLBACK_COLUMNS)} FROM callbacks WHERE program_id = %s"
                " ORDER BY created_at, token", (program_id,)).fetchall()
            return ProgramDump(row, text[0], events, (ck[0], bytes(ck[1])) if ck else None, inbox, calls,
                               [dict(cb) for cb in callbacks])
        return self._write(run, idempotent=True)  # a transaction (for the snapshot) that writes nothing

    def import_program(self, dump: ProgramDump, now: float) -> None:
        try:
            self._write(lambda conn: self._import(conn, dump, now))
        except psycopg.errors.UniqueViolation as e:
            raise ProgramExists(f"cannot import {dump.row.id!r} into {self.settings.display}: "
                                f"{_first_line(e)}") from None

    def _import(self, conn: Conn, dump: ProgramDump, now: float) -> None:
        r = dump.row
        if conn.execute("SELECT 1 FROM programs WHERE id = %s", (r.id,)).fetchone() is not None:
            raise ProgramExists(f"a program with id {r.id!r} already exists in {self.settings.display}")
        conn.execute("INSERT INTO sources VALUES (%s, %s, %s) ON CONFLICT (hash) DO NOTHING",
                     (r.source_hash, r.filename, dump.source))
        # runnable and unleased, so a worker of this store picks it up and carries on
        conn.execute(
            "INSERT INTO programs (id, filename, source_hash, args, status, runnable, wake_at, waiting_on,"
            " last_seq, result, error, cancel_requested, parent_id, fence, created_at, updated_at, deployment,"
            " retain, run)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (r.id, r.filename, r.source_hash, dumps(r.args), r.status, int(r.status not in FINISHED),
             r.wake_at, dumps(r.waiting_on) if r.waiting_on is not None else None, r.last_seq,
             dumps(r.result) if r.status == "completed" else None, r.error, int(r.cancel_requested),
             r.parent_id, r.fence, r.created_at, r.updated_at, r.deployment, r.retain, r.run))
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO events VALUES (%s, %s, %s, %s, %s)",
                            [(r.id, e.seq, e.type, dumps(e.data), e.at) for e in dump.events])
            if dump.checkpoint is not None:
                cur.execute("INSERT INTO checkpoints VALUES (%s, %s, %s)",
                            (r.id, dump.checkpoint[0], dump.checkpoint[1]))
            # message ids are this store's own (BIGSERIAL): renumbered, order kept
            cur.executemany("INSERT INTO inbox (program_id, channel, message, sent_at) VALUES (%s, %s, %s, %s)",
                            [(r.id, m.channel, dumps(m.message), now) for m in dump.inbox])
            for call in dump.calls:
                values = _encode_call({**CALL_DEFAULTS, **call, "program_id": r.id})
                cur.execute(f"INSERT INTO calls ({', '.join(CALL_COLUMNS)}) VALUES"
                            f" ({', '.join(['%s'] * len(CALL_COLUMNS))})", [values.get(c) for c in CALL_COLUMNS])
            for cb in dump.callbacks:
                values = dict(cb, program_id=r.id)
                cur.execute(f"INSERT INTO callbacks ({', '.join(CALLBACK_COLUMNS)}) VALUES"
                            f" ({', '.join(['%s'] * len(CALLBACK_COLUMNS))})",
                            [values.get(c) for c in CALLBACK_COLUMNS])

    def mark_moved(self, program_id: str, destination: str, now: float) -> None:
        def run(conn: Conn) -> None:
            r = conn.execute("SELECT status FROM programs WHERE id = %s FOR UPDATE", (program_id,)).fetchone()
            if r is None or r[0] not in ("running", "waiting"):
                raise self._why_not_live(conn, program_id)
            # clearing the lease (and bumping the fence) makes a slice in progress fail its
            # commit with LeaseLost: nothing is appended here after the move
            conn.execute(
                "UPDATE programs SET status = 'moved', error = %s, runnable = 0, lease_owner = NULL,"
                " lease_pid = NULL, lease_host = NULL, lease_expires = NULL, fence = fence + 1, updated_at = %s"
                " WHERE id = %s", (f"moved to {destination}", now, program_id))
            # its calls and callbacks now belong to the copy in the other store
            self._finish(conn, [program_id], now)
        self._write(run)

    # -- wake-ups -----------------------------------------------------------------------------
    def listener(self) -> Listener:
        return PgListener(self.settings, self.channel)

    def notify(self) -> None:
        # Best effort: the change it announces is committed already, and listeners also poll,
        # so a notification lost to a broken connection only delays the work.
        with contextlib.suppress(StoreError, psycopg.Error):
            self._write(lambda conn: conn.execute(sql.SQL("NOTIFY {}").format(sql.Identifier(self.channel))),
                        tx=False, idempotent=True)

    # -- connectors: calls ------------------------------------------------------------------------
    def claim_calls(self, worker: str, kind: str, names: list[str] | None, lease: float, now: float,
                    limit: int) -> list[CallClaim]:
        if names is not None and not names:
            return []
        self._expire_attempts(kind, now)
        where = "kind = %s AND status = 'pending' AND next_at <= %s"
        params: list[Any] = [worker, now, now, now, lease, now, kind, now]
        if names is not None:
            where += " AND name = ANY(%s)"
            params.append(names)
        params.append(limit)
        query = (
            "UPDATE calls AS c SET status = 'claimed', attempt = c.attempt + 1, lease_owner = %s,"
            " attempt_deadline = %s + c.attempt_timeout,"  # NULL without a timeout
            " lease_expires = LEAST(%s + c.attempt_timeout, %s + %s),"  # LEAST skips the NULL
            " updated_at = %s"
            f" FROM (SELECT key FROM calls WHERE {where} ORDER BY next_at, key LIMIT %s FOR UPDATE SKIP LOCKED) AS d,"
            f" {_RELAXED} WHERE c.key = d.key"
            " RETURNING c.key, c.program_id, c.kind, c.name, c.payload, c.attempt, c.attempt_deadline, c.next_at")
        rows = self._write(lambda conn: conn.execute(query, params).fetchall(), tx=False)
        rows.sort(key=lambda r: (r[7], r[0]))
        return [CallClaim(r[0], r[1], r[2], r[3], json.loads(r[4]), r[5], r[6]) for r in rows]

    def _expire_attempts(self, kind: str, now: float) -> None:
        """Attempts whose holder went quiet (lease) or overran (timeout) count as failed; so do
        attempts held by a process of this machine that is gone, without waiting out the lease."""
        check_dead = self._dead_call_check_due(kind, now)
        held = self._read(lambda conn: conn.execute(
            "SELECT key, program_id, lease_owner, attempt, lease_expires FROM calls WHERE kind = %s"
            " AND status = 'claimed'" + ("" if check_dead else " AND lease_expires < %s"),
            (kind,) if check_dead else (kind, now)).fetchall())
        expired = {r[0] for r in held if r[4] is not None and r[4] < now}
        dead = {(r[0], r[2], r[3]) for r in held
                if r[4] is not None and r[4] >= now and not local_owner_alive(r[2])}
        if not expired and not dead:
            return

        def run(conn: Conn) -> None:
            # programs first (sorted), then their calls: the order a commit locks them in
            owners = sorted({r[1] for r in held if r[0] in expired or (r[0], r[2], r[3]) in dead})
            statuses = self._lock_programs(conn, owners)
            rows = conn.cursor(row_factory=dict_row).execute(
                "SELECT * FROM calls WHERE key = ANY(%s) AND status = 'claimed' ORDER BY key FOR UPDATE SKIP LOCKED",
                (sorted(expired | {d[0] for d in dead}),)).fetchall()
            for r in rows:
                # (as read under the lock: still expired, or still held by the same dead process)
                if not ((r["lease_expires"] is not None and r["lease_expires"] < now)
                        or (r["key"], r["lease_owner"], r["attempt"]) in dead):
                    continue
                failed = expired_attempt(_Tx(conn), r, now)
                if failed is not None:
                    self._settle(conn, r, failed, now, statuses.get(r["program_id"]))
        self._write(run)

    def _dead_call_check_due(self, kind: str, now: float) -> bool:
        """Whether to look for calls held by dead local processes (at most every 0.2 s per kind)."""
        checks: dict[str, float] = self._local.__dict__.setdefault("dead_call_check", {})
        if 0 <= now - checks.get(kind, 0.0) < 0.2:
            return False
        checks[kind] = now
        return True

    def _lock_programs(self, conn: Conn, program_ids: list[str]) -> dict[str, str]:
        rows = conn.execute("SELECT id, status FROM programs WHERE id = ANY(%s) ORDER BY id FOR UPDATE",
                            (program_ids,)).fetchall()
        return {r[0]: r[1] for r in rows}

    def heartbeat_call(self, key: str, worker: str, attempt: int, lease: float, now: float) -> bool:
        rows = self._write(lambda conn: conn.execute(
            "UPDATE calls SET lease_expires = LEAST(%s, attempt_deadline)"
            f" FROM {_RELAXED} WHERE key = %s AND status = 'claimed' AND attempt = %s AND lease_owner = %s"
            " AND lease_expires >= %s RETURNING key", (now + lease, key, attempt, worker, now)).fetchall(),
            tx=False, idempotent=True)
        return bool(rows)

    def finish_call(self, key: str, worker: str, attempt: int, outcome: CallOutcome, now: float) -> str:
        (status,) = self.finish_calls([(key, worker, attempt, outcome)], now)
        if status == "unknown":
            raise UnknownCall(f"no call with key {key!r} in {self.settings.display}")
        return status

    def finish_calls(self, done: Sequence[tuple[str, str, int, CallOutcome]], now: float) -> list[str]:
        if not done:
            return []
        keys = sorted({d[0] for d in done})

        def run(conn: Conn) -> list[str]:
            owners = conn.execute("SELECT program_id FROM calls WHERE key = ANY(%s)", (keys,)).fetchall()
            # the programs first (sorted), as a commit locks them; then their calls (sorted)
            statuses = self._lock_programs(conn, sorted({o[0] for o in owners}))
            rows = {r["key"]: r for r in conn.cursor(row_factory=dict_row).execute(
                "SELECT * FROM calls WHERE key = ANY(%s) ORDER BY key FOR UPDATE", (keys,)).fetchall()}
            out = []
            for key, worker, attempt, outcome in done:
                r = rows.get(key)
                if r is None:
                    out.append("unknown")
                elif r["status"] != "claimed" or r["attempt"] != attempt or r["lease_owner"] != worker:
                    out.append("stale")
                else:
                    out.append(self._settle(conn, r, outcome, now, statuses.get(r["program_id"])))
                    rows[key] = dict(r, status="settled")  # (the same attempt twice: the second is stale)
            return out
        return self._write(run)

    def _settle(self, conn: Conn, r: dict[str, Any], outcome: CallOutcome, now: float,
                program_status: str | None) -> str:
        """Apply one attempt's outcome: deliver it, or schedule the next attempt."""
        done = settle(json.loads(r["policy"]), r["attempt"] - r["lost"], outcome, r["deadline"], now)
        records_sql.record_attempt(_Tx(conn), r, outcome, now)
        if done.message is None:
            conn.execute("UPDATE calls SET status = 'pending', next_at = %s, lease_owner = NULL,"
                         " lease_expires = NULL, last_error = %s, updated_at = %s WHERE key = %s",
                         (done.retry_at, dumps(done.last_error), now, r["key"]))
            return "retrying"
        message = done.message
        conn.execute("UPDATE calls SET status = %s, lease_owner = NULL, lease_expires = NULL, outcome = %s,"
                     " last_error = %s, updated_at = %s WHERE key = %s",
                     (ended_status(message), dumps(message), dumps(done.last_error) if done.last_error else r["last_error"], now,
                      r["key"]))
        if program_status is not None and program_status not in FINISHED:
            self._enqueue(conn, r["program_id"], r["channel"], message, now)
        return "done"

    def get_call(self, key: str) -> CallRow:
        r = self._read(lambda conn: conn.cursor(row_factory=dict_row).execute(
            "SELECT * FROM calls WHERE key = %s", (key,)).fetchone())
        if r is None:
            raise UnknownCall(f"no call with key {key!r} in {self.settings.display}")
        return call_row(r)

    def list_calls(self, program_id: str | None = None, status: str | None = None) -> list[CallRow]:
        query, params = "SELECT * FROM calls WHERE TRUE", []
        if program_id is not None:
            query += " AND program_id = %s"
            params.append(program_id)
        if status is not None:
            query += " AND status = %s"
            params.append(status)
        rows = self._read(lambda conn: conn.cursor(row_factory=dict_row).execute(
            query + " ORDER BY created_at, key", params).fetchall())
        return [call_row(r) for r in rows]

    def next_call_due(self, kind: str) -> float | None:
        r = self._read(lambda conn: conn.execute(
            "SELECT MIN(CASE WHEN status = 'pending' THEN next_at ELSE lease_expires END) FROM calls"
            " WHERE kind = %s AND status IN ('pending', 'claimed')", (kind,)).fetchone())
        return r[0] if r else None

    # -- connectors: callbacks --------------------------------------------------------------------
    def deliver_callback(self, token: str, request: Any, now: float) -> str:
        def run(conn: Conn) -> str:
            owner = conn.execute("SELECT program_id FROM callbacks WHERE token = %s", (token,)).fetchone()
            if owner is None:
                return "unknown"
            self._lock_programs(conn, [owner[0]])  # the program first, as a commit does
            r = conn.execute("SELECT status, program_id, channel FROM callbacks WHERE token = %s FOR UPDATE",
                             (token,)).fetchone()
            if r is None or r[0] != "open":
                return "closed" if r is not None and r[0] == "closed" else "duplicate"
            conn.execute("UPDATE callbacks SET status = 'delivered', delivered_at = %s WHERE token = %s",
                         (now, token))
            self._enqueue(conn, r[1], r[2], request, now)
            return "accepted"
        return self._write(run)


# -- helpers ---------------------------------------------------------------------------------------

# A set of rows as one parameter: a JSON array of arrays, encoded by json in C, read back in SQL
# column by column. psycopg dumps list parameters (arrays) element by element in Python: with
# several arrays per statement that was the largest cost of a group commit.
_doc = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode


def _f(x: float | None) -> float | str | None:
    """A float for _doc: JSON has no infinities (a program may sleep for ever); float8 reads the
    string."""
    return x if x is None or math.isfinite(x) else ("NaN" if x != x else "Infinity" if x > 0 else "-Infinity")


def _rows(columns: str) -> str:
    """`(SELECT ... )` over the rows of one _doc parameter (`%s`): `columns` names and types the
    arrays' elements in order ("name type, ..."); `n` numbers the rows from 1."""
    picks = ", ".join(f"(r.x->>{i})::{kind} AS {name}"
                      for i, (name, kind) in enumerate(c.split() for c in columns.split(",")))
    return f"(SELECT {picks}, r.n FROM jsonb_array_elements(%s::jsonb) WITH ORDINALITY AS r(x, n))"


def _program_row(r: Any) -> ProgramRow:
    return ProgramRow(
        id=r[0], filename=r[1], source_hash=r[2], status=r[3], args=json.loads(r[4]), last_seq=r[5],
        created_at=r[6], updated_at=r[7], result=json.loads(r[8]) if r[8] is not None else None, error=r[9],
        waiting_on=json.loads(r[10]) if r[10] else None, wake_at=r[11], runnable=bool(r[12]),
        cancel_requested=bool(r[13]), parent_id=r[14], lease_owner=r[15], fence=r[16], deployment=r[17],
        retain=r[18], run=r[19],
    )


def _decode_call(r: dict[str, Any]) -> dict[str, Any]:
    out = dict(r)
    for c in _CALL_JSON:
        out[c] = json.loads(out[c]) if out[c] is not None else None
    return out


def _encode_call(r: dict[str, Any]) -> dict[str, Any]:
    out = dict(r)
    for c in _CALL_JSON:
        out[c] = dumps(out[c]) if out.get(c) is not None else None
    return out

