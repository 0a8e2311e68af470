"""Event stores: where programs, their event logs and checkpoints live."""

from __future__ import annotations

import os

from flowmetal.store.base import Store, StoreError

DEFAULT_URL = "sqlite:///flowmetal.db"


def store_url(explicit: str | None = None) -> str:
    """`--store URL`, else `FLOWMETAL_STORE`, else a file in the current directory."""
    return explicit or os.environ.get("FLOWMETAL_STORE") or DEFAULT_URL


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
        raise StoreError("the PostgreSQL store is not available in this version of Flowmetal")
    raise StoreError(f"unknown store URL {url!r}: expected sqlite:///PATH")


__all__ = ["DEFAULT_URL", "Store", "StoreError", "open_store", "store_url"]
