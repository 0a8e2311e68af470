"""Event stores: where programs, their event logs and checkpoints live."""

from __future__ import annotations

import os

from flowmetal.store.base import Store, StoreError

DEFAULT_URL = "sqlite:///flowmetal.db"


def store_url(explicit: str | None = None) -> str:
    """`--store URL`, else `FLOWMETAL_STORE`, else a file in the current directory."""
    return explicit or os.environ.get("FLOWMETAL_STORE") or DEFAULT_URL


def sqlite_path(url: str) -> str | None:
    """The file of a `sqlite://` URL (None for other stores)."""
    if not url.startswith("sqlite:///"):
        return None
    return url[len("sqlite:///"):].partition("?")[0] or None


def open_store(url: str | None = None) -> Store:
    url = store_url(url)
    if url.startswith("sqlite://"):
        from flowmetal.store.sqlite import SQLiteStore

        rest = url[len("sqlite://"):]
        if not rest.startswith("/") or rest == "/":
            raise StoreError(f"bad store URL {url!r}: use sqlite:///relative.db or sqlite:////absolute/path.db")
        path = rest[1:]  # sqlite:///x.db -> x.db ; sqlite:////abs/x.db -> /abs/x.db
        synchronous = "FULL"
        if "?" in path:
            path, _, query = path.partition("?")
            for part in query.split("&"):
                key, _, value = part.partition("=")
                if key == "synchronous" and value.upper() in ("OFF", "NORMAL", "FULL", "EXTRA"):
                    synchronous = value.upper()
        return SQLiteStore(path, synchronous=synchronous, url=url)
    if url.startswith(("postgresql://", "postgres://")):
        from flowmetal.store.postgres import PostgresStore

        return PostgresStore(url)
    raise StoreError(f"unknown store URL {url!r}: expected sqlite:///PATH or postgresql://HOST/DB")


def migrate_store(url: str | None = None) -> int:
    """Bring the store's schema up to date (whatever the URL says about migrating on open);
    returns the schema version."""
    url = store_url(url)
    if url.startswith(("postgresql://", "postgres://")):
        from flowmetal.store.postgres import migrate_url

        return migrate_url(url)
    from flowmetal.store.sqlite import SCHEMA_VERSION

    open_store(url).close()  # SQLite migrates on open
    return SCHEMA_VERSION


__all__ = ["DEFAULT_URL", "Store", "StoreError", "migrate_store", "open_store", "store_url"]
