"""`flowmetal db`: the store's database schema.

`flowmetal db migrate` brings a store's schema up to this Flowmetal's version
and prints it. SQLite stores migrate whenever they are opened, so for them it
only reports; a PostgreSQL store opened with `?migrate=false` (or with
FLOWMETAL_NO_AUTO_MIGRATE=1) is never changed by anything else, so that
schema changes can be applied deliberately, e.g. once before a deployment.
"""

from __future__ import annotations

import click


@click.group()
def db() -> None:
    """Manage the store's database schema."""


@db.command()
@click.option("--store", "store_url", envvar="FLOWMETAL_STORE", default=None,
              help="Store URL (default: $FLOWMETAL_STORE or sqlite:///flowmetal.db).")
def migrate(store_url: str | None) -> None:
    """Apply the store's pending schema migrations; print the schema version."""
    from flowmetal.store import migrate_store

    click.echo(f"schema version {migrate_store(store_url)}")
