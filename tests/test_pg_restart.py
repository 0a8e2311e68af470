"""PostgreSQL stopped and started again in the middle of a run: 30 programs
(tests/flows/cluster_job.flow: timers, foreign calls, messages, HTTP callbacks)
on 2 `flowmetal worker` processes, a `flowmetal functions` process and
`flowmetal serve --no-worker`. The server goes down (`pg_ctlcluster ... stop`,
which ends every connection) once a third of the programs have finished, stays
down for a few seconds, and comes back. The same processes must carry on — none
restarted by the test, none dead — and every program must finish exactly as an
uninterrupted run does (the checks of test_pg_cluster.py).

This restarts the server itself, so it disturbs anything else using it at that
moment: it runs only against a cluster of this machine that `pg_ctlcluster` can
control (the one at the port of FLOWMETAL_TEST_POSTGRES_URL), first waits for
other clients to leave the server alone, and always leaves the server running.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest

from conftest import drop_schema, pg_base_url, pg_url, schema_of
from flowmetal.store import open_store
from flowmetal.store.base import Store
from test_pg_cluster import PG_PARAMS, Cluster, Driver, assert_clean_end, run_until_done

PROGRAMS = 30
SPREAD = 6.0  # seconds over which the outside answers the programs
DOWN = 8.0  # seconds the server stays down: longer than the store's own retries of one operation
QUIET = 120.0  # how long to wait for other clients to leave the server alone before skipping


def _cluster_of(url: str) -> tuple[str, str]:
    """(version, name) of the local cluster serving `url`; skips the test when there is none."""
    if shutil.which("pg_ctlcluster") is None or shutil.which("pg_lsclusters") is None:
        pytest.skip("pg_ctlcluster/pg_lsclusters are not available: cannot restart the PostgreSQL server")
    parts = urlsplit(url)
    if parts.hostname not in (None, "", "localhost", "127.0.0.1", "::1"):
        pytest.skip(f"the test server {parts.hostname} is not on this machine: cannot restart it")
    port = str(parts.port or 5432)
    listing = subprocess.run(["pg_lsclusters", "--no-header"], capture_output=True, text=True, check=False)
    for line in listing.stdout.splitlines():
        fields = line.split()
        if len(fields) >= 5 and fields[2] == port:
            if os.geteuid() != 0 and fields[4] != getpass.getuser():
                pytest.skip(f"only root or {fields[4]} may stop and start the PostgreSQL cluster "
                            f"{fields[0]}/{fields[1]}")
            return fields[0], fields[1]
    pytest.skip(f"no cluster of this machine listens on port {port} (pg_lsclusters: {listing.stdout.strip()!r})")


def _accepts(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=2) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


def _wait_accepting(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not _accepts(url):
        assert time.monotonic() < deadline, f"the PostgreSQL server did not accept connections in {timeout} s"
        time.sleep(0.2)


def _pg_ctl(version: str, name: str, action: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, name, action],
                          capture_output=True, text=True, timeout=120, check=False)


def _own_ports() -> set[int]:
    """The local TCP ports of this process's sockets: sessions on them are this pytest run's own
    (e.g. a pool an earlier test left open), no one else's. Empty where /proc is not Linux's."""
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir("/proc/self/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/self/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[len("socket:["):-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError, IndexError, ValueError), open(table) as f:
            for line in f.read().splitlines()[1:]:
                fields = line.split()
                if fields[9] in inodes:
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def _others(base: str, schema: str) -> list[str]:
    """Client sessions on the server that are neither this test's processes nor this pytest
    process's (nor this query)."""
    with psycopg.connect(base, autocommit=True, connect_timeout=5) as conn:
        rows = conn.execute(
            "SELECT pid, application_name, datname, state, client_port FROM pg_stat_activity"
            " WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
            " AND application_name <> %s", (f"flowmetal {schema}"[:63],)).fetchall()
        own = _own_ports()
    return [f"{pid} {app or '-'} {db} {state}" for pid, app, db, state, port in rows if port not in own]


def _wait_for_quiet(base: str, schema: str, timeout: float) -> None:
    """Wait until nobody else has used the server for 2 s on end; skip if that does not happen
    within `timeout` s."""
    deadline = time.monotonic() + timeout
    quiet_since: float | None = None
    others: list[str] = []
    while time.monotonic() < deadline:
        others = _others(base, schema)
        if others:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= 2:
            return
        time.sleep(0.2)
    pytest.skip(f"other clients kept using the PostgreSQL server for {timeout:.0f} s; restarting it would "
                f"break them: {others}")


@pytest.fixture
def server() -> Iterator[tuple[str, Store, str, str]]:
    """(store URL in a fresh schema, the store, cluster version, cluster name); the server is
    running afterwards, whatever happened."""
    base = pg_base_url()  # skips when FLOWMETAL_TEST_POSTGRES_URL is unset
    version, name = _cluster_of(base)
    url = pg_url(**PG_PARAMS)
    _wait_for_quiet(base, schema_of(url), QUIET)
    store = open_store(url)
    try:
        yield url, store, version, name
    finally:
        if not _accepts(base):
            _pg_ctl(version, name, "start")
        _wait_accepting(base)
        store.close()
        drop_schema(url)


def test_workers_survive_a_postgresql_restart(server: tuple[str, Store, str, str], tmp_path: Path) -> None:
    url, store, version, name = server
    base = pg_base_url()
    began = time.monotonic()
    driver = Driver.start(store, PROGRAMS, seed=424242, spread=SPREAD)
    cluster = Cluster(url, tmp_path)
    outage = 0.0
    try:
        cluster.serve()
        workers = [cluster.spawn_worker(), cluster.spawn_worker()]
        everyone = [cluster.serve_proc, *workers, cluster.spawn_functions()]
        restarted_at = run_until_done(driver, cluster, deadline=time.monotonic() + 60,
                                      on_round=lambda finished: finished >= PROGRAMS // 3)
        assert restarted_at < PROGRAMS, "every program finished before the restart: none ran through it"
        driver.quiesce()  # no callback POST in flight while the server goes down
        _wait_for_quiet(base, schema_of(url), 10)
        stopped = time.monotonic()
        result = _pg_ctl(version, name, "stop")
        assert result.returncode == 0, f"pg_ctlcluster stop failed: {result.stdout}{result.stderr}"
        assert not _accepts(base), "the server still accepts connections after pg_ctlcluster stop"
        while time.monotonic() - stopped < DOWN:  # the outage: everyone keeps trying meanwhile
            down = [p.pid for p in everyone if p is not None and p.poll() is not None]
            assert not down, f"processes died while the server was down: {down}\n{cluster.logs()}"
            time.sleep(0.2)
        result = _pg_ctl(version, name, "start")
        assert result.returncode == 0, f"pg_ctlcluster start failed: {result.stdout}{result.stderr}"
        _wait_accepting(base)
        outage = time.monotonic() - stopped
        run_until_done(driver, cluster, deadline=time.monotonic() + 60)
        dead = {p.pid: p.returncode for p in everyone if p is not None and p.poll() is not None}
        assert not dead, f"processes died after the restart: {dead}\n{cluster.logs()}"
        assert cluster.workers == workers, "the worker processes are not the ones started before the restart"
    finally:
        codes = cluster.stop_all()
        driver.close()

    problems = driver.check_all()
    problems += [f"{key}: each attempt performed once: attempt {attempt} began {c} times"
                 for (key, attempt), c in Counter(cluster.starts()).items() if c > 1]
    noticed = Counter(role for role, _, log in cluster.procs.values() if log.exists()
                      for line in log.read_text(errors="replace").splitlines()
                      if line.startswith("flowmetal ") and "serving" not in line)
    print(f"\n{PROGRAMS} programs; the server went down at {restarted_at} finished, for {outage:.1f} s; "
          f"done at {time.monotonic() - began:.1f} s; what the processes logged: "
          f"{dict(noticed)} lines; callback POSTs retried: {driver.retried_posts}")
    assert_clean_end(problems, codes, cluster)

