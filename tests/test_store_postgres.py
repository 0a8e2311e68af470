"""What only the PostgreSQL store has to prove (the shared contract is in
test_store_contract.py): its URL, migrations (concurrent first-time migrators,
`migrate=false`, `flowmetal db migrate`), claimers and group commits racing in
threads, and surviving lost connections and a server outage — simulated by
killing its backends, and by cutting a TCP proxy between Flowmetal and the
server, so nothing here restarts the (shared) server itself.
"""

from __future__ import annotations

import contextlib
import os
import random
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from click.testing import CliRunner

from conftest import drop_schema, pg_base_url, pg_url, schema_of, with_params
from flowmetal.cli import main as cli_main
from flowmetal.runtime.driver import Runtime
from flowmetal.runtime.worker import Worker
from flowmetal.store import open_store
from flowmetal.store.base import Commit, NewProgram, StoreError
from flowmetal.store.postgres import SCHEMA_VERSION, PostgresStore, parse_url

HOST = socket.gethostname()
ME = os.getpid()
SOURCE = "def main():\n    return 1\n"


def new(pid: str) -> NewProgram:
    return NewProgram(pid, "prog.flow", SOURCE, "hash", {})


@pytest.fixture
def url() -> Iterator[str]:
    u = pg_url()
    yield u
    drop_schema(u)


@pytest.fixture
def store(url: str) -> Iterator[PostgresStore]:
    s = open_store(url)
    assert isinstance(s, PostgresStore)
    yield s
    s.close()


def admin() -> Any:
    import psycopg

    return psycopg.connect(pg_base_url(), autocommit=True, connect_timeout=5)


def versions(url: str) -> list[int]:
    with admin() as conn:
        return [r[0] for r in conn.execute(f'SELECT version FROM "{schema_of(url)}".schema_version')]


# -- the URL (no server needed) -------------------------------------------------------------------

def test_url_parameters_are_flowmetals_or_libpqs() -> None:
    s = parse_url("postgresql://u:secret@db:5433/app?schema=jobs&sslmode=disable&migrate=false&pool_size=4"
                  "&pool_timeout=2.5")
    assert (s.schema, s.auto_migrate, s.pool_size, s.pool_timeout) == ("jobs", False, 4, 2.5)
    assert s.conninfo == "postgresql://u:secret@db:5433/app?sslmode=disable"
    assert "secret" not in s.display and "u:***@db" in s.display
    s = parse_url("postgres://db/app?options=-c%20search_path%3Dother,public")
    assert (s.schema, s.auto_migrate) == ("other", True)
    assert s.conninfo == "postgres://db/app?options=-c%20search_path%3Dother%2Cpublic"
    assert parse_url("postgresql:///app").schema == "public"


def test_no_auto_migrate_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWMETAL_NO_AUTO_MIGRATE", "1")
    assert parse_url("postgresql:///app").auto_migrate is False


# -- migrations -------------------------------------------------------------------------------------

def test_first_use_creates_the_schema_and_its_version(store: PostgresStore, url: str) -> None:
    assert versions(url) == [SCHEMA_VERSION]
    store.close()
    again = open_store(url)  # a current schema opens without migrating
    assert versions(url) == [SCHEMA_VERSION]
    again.close()


def test_concurrent_first_migrations_are_safe(url: str) -> None:
    code = "import sys; from flowmetal.store import open_store; open_store(sys.argv[1]).close()"
    procs = [subprocess.Popen([sys.executable, "-c", code, url], stderr=subprocess.PIPE) for _ in range(5)]
    errors = [p.communicate(timeout=60)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0] * 5, errors
    assert versions(url) == [SCHEMA_VERSION]


def test_migrate_false_refuses_an_old_schema_until_db_migrate(url: str) -> None:
    manual = with_params(url, migrate="false")
    with pytest.raises(StoreError, match="flowmetal db migrate"):
        open_store(manual)
    result = CliRunner().invoke(cli_main, ["db", "migrate", "--store", manual])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"schema version {SCHEMA_VERSION}"
    open_store(manual).close()
    assert versions(url) == [SCHEMA_VERSION]


def test_newer_schema_is_refused(store: PostgresStore, url: str) -> None:
    with admin() as conn:
        conn.execute(f'UPDATE "{schema_of(url)}".schema_version SET version = version + 1')
    with pytest.raises(StoreError, match="upgrade Flowmetal"):
        open_store(url)


def test_unreachable_server_is_a_clear_error() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(StoreError, match="cannot connect"):
        open_store(f"postgresql://nobody:pw@127.0.0.1:{port}/db")


# -- concurrency --------------------------------------------------------------------------------------

def test_concurrent_claimers_never_share_a_program(store: PostgresStore, url: str) -> None:
    for i in range(120):
        store.create_program(new(f"p{i:03d}"), float(i))
    stores = [open_store(url) for _ in range(4)]
    got: list[list[str]] = [[] for _ in stores]
    start = threading.Barrier(len(stores))

    def claimer(k: int) -> None:
        start.wait()
        while True:
            claims = stores[k].claim(f"w{k}", ME, HOST, 600.0, 100.0, 7)
            if not claims:
                return
            got[k].extend(c.program_id for c in claims)

    threads = [threading.Thread(target=claimer, args=(k,)) for k in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for s in stores:
        s.close()
    everything = [pid for g in got for pid in g]
    assert sorted(everything) == [f"p{i:03d}" for i in range(120)]  # each exactly once
    assert sum(1 for g in got if g) > 1  # they really raced


def test_racing_group_commits_that_send_to_each_other_do_not_deadlock(store: PostgresStore, url: str) -> None:
    """Each round, every thread commits its programs in one transaction, each sending to a random
    program (often one another thread is committing): row locks are taken in id order, so no
    deadlock, and every message and event lands exactly once."""
    ids = [f"p{i:02d}" for i in range(24)]
    for pid in ids:
        store.create_program(new(pid), 1.0)
    stores = [open_store(url) for _ in range(4)]
    sent = [0] * len(stores)
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        rng = random.Random(k)
        s = stores[k]
        try:
            for _ in range(15):
                claims = s.claim(f"w{k}", ME, HOST, 600.0, 100.0, 6)
                rows = {c.program_id: s.get_program(c.program_id) for c in claims}
                commits = [Commit(c.program_id, c.fence, rows[c.program_id].last_seq,
                                  events=[("output", {"text": "x"})], runnable=True,
                                  sends=[(rng.choice(ids), "inbox", k)]) for c in claims]
                s.commit(commits, 100.0)
                sent[k] += len(commits)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for s in stores:
        s.close()
    assert errors == []
    assert sum(len(store.inbox(pid)) for pid in ids) == sum(sent)
    for pid in ids:
        assert [e.seq for e in store.events(pid)] == list(range(1, store.get_program(pid).last_seq + 1))


def test_a_message_sent_while_a_claim_runs_is_never_stranded(store: PostgresStore, url: str) -> None:
    """A message lands while a claim of its program runs: the claim either hands the slice the
    message or leaves the program runnable, never neither (the program would then wait forever
    for a message it has). The claim sorts 1,500 runnable programs before it locks the one it
    takes, which widens the moment a racing send can commit in; 200 rounds hit it dozens of times."""
    for i in range(1500):  # newer than every program raced for, so never claimed
        store.create_program(new(f"f{i:04d}"), 1.0)
    sender = open_store(url)
    rng = random.Random(7)
    stranded: list[str] = []
    hits = 0

    def send(pid: str, i: int, go: threading.Barrier) -> None:
        go.wait()
        time.sleep(rng.uniform(0, 0.004))
        sender.send(pid, "inbox", i, 50.0)

    try:
        for i in range(200):
            pid = f"p{i:03d}"
            store.create_program(new(pid), 0.0)
            go = threading.Barrier(2)
            t = threading.Thread(target=send, args=(pid, i, go))
            t.start()
            go.wait()
            claims = store.claim("w", ME, HOST, 600.0, 100.0, 1)
            t.join()
            if [c.program_id for c in claims] != [pid]:  # the send held its row: skipped, not raced
                for c in claims:
                    store.release("w", c.program_id, c.fence)
                continue
            if i not in [m.message for m in store.inbox(pid)]:  # what the slice would see
                hits += 1
                if not sender.get_program(pid).runnable:
                    stranded.append(pid)
    finally:
        sender.close()
    assert stranded == []
    assert hits > 0  # the sends did race the claims


def test_a_timer_of_a_program_another_process_holds_is_due_when_its_lease_lapses(store: PostgresStore) -> None:
    store.create_program(new("p1"), 1.0)
    (c,) = store.claim("w1", ME, HOST, 10.0, 100.0, 10)
    store.commit([Commit("p1", c.fence, 1, events=[("output", {"text": "x"})], wake_at=105.0)], 101.0)
    assert store.next_wake() == 105.0
    (c,) = store.claim("w1", ME, HOST, 10.0, 106.0, 10)  # this process holds it (lease until 116)
    assert store.next_wake() == 105.0  # its timers are this process's to handle
    store.release("w1", "p1", c.fence)
    store.claim("far", 999_999_999, "elsewhere", 10.0, 107.0, 10)  # another process holds it
    # its timer is past, but only that process can act on it: this one may sleep until the lease lapses
    assert store.next_wake() == 117.0


def test_claim_prefers_programs_this_process_ran_last_within_a_bound(store: PostgresStore) -> None:
    """Its machine is likely still in this worker's memory; but a program waits at most half a
    second longer for being another worker's."""
    for pid in ("mine", "theirs", "old"):
        store.create_program(new(pid), 1.0)
    claims = {c.program_id: c for c in store.claim("w-other", 999_999_999, "elsewhere", 10.0, 5.0, 10)}
    store.commit([Commit("theirs", claims["theirs"].fence, 1, runnable=True)], 10.0)
    store.commit([Commit("old", claims["old"].fence, 1, runnable=True)], 9.0)
    store.release("w-other", "mine", claims["mine"].fence)
    store.make_runnable("mine", 10.0)
    (mine,) = store.claim("w1", ME, HOST, 10.0, 20.0, 1, "mine")
    store.commit([Commit("mine", mine.fence, 1, runnable=True)], 10.3)  # after "theirs", by this process
    # "mine" (10.3, counted as 9.8) comes before "theirs" (10.0), but not before "old" (9.0)
    assert {c.program_id for c in store.claim("w1", ME, HOST, 10.0, 20.0, 2)} == {"old", "mine"}
    assert [c.program_id for c in store.claim("w1", ME, HOST, 10.0, 20.0, 2)] == ["theirs"]


# -- lost connections and outages -----------------------------------------------------------------------

def kill_backends(url: str) -> int:
    """Terminate every server process serving this store (as a server restart would)."""
    with admin() as conn:
        rows = conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
                            (f"flowmetal {schema_of(url)}",)).fetchall()
    return len(rows)


def test_killed_connections_are_replaced(store: PostgresStore, url: str) -> None:
    store.create_program(new("p1"), 1.0)
    listener = store.listener()
    try:
        assert listener.wait(0.01) is False
        assert kill_backends(url) >= 2  # the pool's and the listener's
        assert store.get_program("p1").status == "running"  # a read after the loss
        store.send("p1", "inbox", 1, 2.0)  # a write after the loss
        assert [m.message for m in store.inbox("p1")] == [1]
        for _ in range(3):
            listener.wait(0.2)  # never raises: it notices, then reconnects ("look for work")
        while listener.wait(0.05):
            pass
        store.notify()
        assert listener.wait(5.0) is True  # it hears wake-ups again
    finally:
        listener.close()


class Proxy:
    """A TCP proxy to the server that can be cut (every connection dropped, new ones refused)
    and restored: a network failure or server restart, as far as Flowmetal can tell."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()
        self.listen()

    def listen(self) -> None:
        self.server = socket.socket()
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", self.port))
        self.port = self.server.getsockname()[1]
        self.server.listen(64)
        threading.Thread(target=self._accept, args=(self.server,), daemon=True).start()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            with self.lock:
                self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        with contextlib.suppress(OSError):
            self.server.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept(); close() alone would not
        self.server.close()
        with self.lock:
            conns, self.conns = self.conns, []
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def close(self) -> None:
        self.cut()


WAITER = """\
from flowmetal import receive, sleep


def main(n=3):
    total = 0
    for i in range(n):
        sleep(0)
        total += receive()
    return total
"""


def test_a_worker_survives_an_outage(url: str, caplog: pytest.LogCaptureFixture) -> None:
    direct = open_store(url)  # creates the schema; sends messages while the proxy is cut
    target = parse_url(pg_base_url())
    parts = urlsplit(target.conninfo)
    proxy = Proxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    # waiting at most 0.3 s for a connection, its operations fail during the outage
    via_proxy = open_store(with_params(urlsplit(url)._replace(
        netloc=f"{parts.username + '@' if parts.username else ''}127.0.0.1:{proxy.port}").geturl(),
        pool_timeout="0.3"))
    rt = Runtime(via_proxy, reuse_machines=True)
    ids = [rt.start("waiter.flow", {"n": 3}, program_id=f"w{i}", source=WAITER) for i in range(3)]
    worker = Worker(rt, lease=2.0, concurrency=8)
    done = threading.Event()

    def finished() -> bool:
        return all(direct.get_program(pid).status == "completed" for pid in ids)

    thread = threading.Thread(target=lambda: (worker.run(until=finished), done.set()), daemon=True)
    thread.start()
    try:
        def send_round(k: int) -> None:
            for pid in ids:
                direct.send(pid, "inbox", k, time.time())
            direct.notify()

        send_round(1)
        deadline = time.monotonic() + 20
        while any(direct.inbox(pid) for pid in ids) and time.monotonic() < deadline:
            time.sleep(0.02)
        proxy.cut()  # mid-run: every connection of the worker drops, reconnecting is refused
        send_round(10)
        time.sleep(1.5)
        assert thread.is_alive()
        assert "the store is unavailable" in caplog.text  # it said so (flowmetal.store's log), and waits
        proxy.listen()  # the server is back
        send_round(100)
        assert done.wait(40), [direct.get_program(pid).status for pid in ids]
        assert "the store is back" in caplog.text
        assert [direct.get_program(pid).result for pid in ids] == [111] * 3
        for pid in ids:
            events = direct.events(pid)
            assert [e.seq for e in events] == list(range(1, len(events) + 1))
            assert [e.type for e in events].count("message_received") == 3
    finally:
        worker.stop()
        thread.join(10)
        proxy.close()
        via_proxy.close()
        direct.close()
