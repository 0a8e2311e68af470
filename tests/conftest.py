"""Shared fixtures: a fresh store of every backend.

PostgreSQL tests need a server: set FLOWMETAL_TEST_POSTGRES_URL (e.g.
postgresql://postgres@127.0.0.1:5432/test). Each store gets a schema of its own,
`fm_test_<random>`, dropped (CASCADE) afterwards, so runs never see each other's
data. Unset, the PostgreSQL cases skip; set but unreachable, they fail — a CI
that meant to test PostgreSQL must not pass without it.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import pytest

from flowmetal.store import open_store
from flowmetal.store.base import Store

PG_ENV = "FLOWMETAL_TEST_POSTGRES_URL"
PG_SKIP_REASON = "FLOWMETAL_TEST_POSTGRES_URL is not set (PostgreSQL tests need a server)"
BACKENDS = ("sqlite", "postgres")

_schemas: list[str] = []  # created by pg_url(), dropped at the end of the session at the latest


def pg_base_url() -> str:
    """The server's URL (no schema); skips the calling test when none is configured."""
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(PG_SKIP_REASON)
    return base


def with_params(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in params]
    query += list(params.items())
    return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))


def pg_url(**params: str) -> str:
    """A store URL in a fresh schema of the test server (created on first open; dropped by
    `drop_schema`, or at the end of the session)."""
    schema = f"fm_test_{uuid.uuid4().hex[:12]}"
    _schemas.append(schema)
    return with_params(pg_base_url(), schema=schema, **params)


def schema_of(url: str) -> str:
    return dict(parse_qsl(urlsplit(url).query))["schema"]


def drop_schema(url: str) -> None:
    import psycopg
    from psycopg import sql

    schema = schema_of(url)
    if schema in _schemas:
        _schemas.remove(schema)
    try:
        conn = psycopg.connect(pg_base_url(), autocommit=True, connect_timeout=5)
    except psycopg.OperationalError:
        return  # the server is unreachable: the test using it has failed already, and said why
    with conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture(scope="session", autouse=True)
def _drop_leftover_schemas() -> Iterator[None]:
    yield
    if _schemas and os.environ.get(PG_ENV):
        for schema in list(_schemas):
            drop_schema(with_params(os.environ[PG_ENV], schema=schema))


@pytest.fixture
def store_url_factory(tmp_path: Path) -> Iterator[Callable[[str], str]]:
    """`make(backend)` -> the URL of a fresh, empty store of that backend ("sqlite" or "postgres")."""
    counter = itertools.count(1)
    made: list[str] = []

    def make(backend: str) -> str:
        if backend == "sqlite":
            return f"sqlite:///{tmp_path / f'store-{next(counter)}.db'}"
        if backend == "postgres":
            url = pg_url()
            made.append(url)
            return url
        raise ValueError(f"unknown backend {backend!r}")

    yield make
    for url in made:
        drop_schema(url)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def any_store(backend: str, store_url_factory: Callable[[str], str]) -> Iterator[Store]:
    """An open, empty store of each backend in turn."""
    store = open_store(store_url_factory(backend))
    yield store
    store.close()
