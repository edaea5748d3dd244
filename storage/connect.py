"""Opening a database by its URL: one registry from URL scheme to backend.

A new backend is one module with a `Database` subclass, one opener here registered in
`BACKENDS` under its `storage.url.Backend` name, and a folder of migrations in
`storage/migrations/<backend>/`. Each opener imports its backend when first used: asyncpg is
needed only by a bot that runs on PostgreSQL.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from pathlib import Path

from storage.database import Database
from storage.errors import StorageError
from storage.url import Backend, DatabaseURL


async def _open_sqlite(url: DatabaseURL) -> Database:
    from storage.sqlite import SQLiteDatabase

    assert url.path is not None
    return await SQLiteDatabase.connect(url.path)


async def _open_postgres(url: DatabaseURL) -> Database:
    try:
        from storage.postgres import PostgresDatabase
    except ImportError as error:  # installed with --no-deps, or asyncpg removed
        raise StorageError(
            "DATABASE_URL is a PostgreSQL URL but asyncpg is not installed:"
            " pip install 'mnemo[postgres]'"
        ) from error
    return await PostgresDatabase.connect(url)


BACKENDS: dict[Backend, Callable[[DatabaseURL], Awaitable[Database]]] = {
    "sqlite": _open_sqlite,
    "postgres": _open_postgres,
}


def as_url(target: str | os.PathLike[str] | DatabaseURL) -> DatabaseURL:
    """A DATABASE_URL, a parsed one, or a SQLite file path, as a parsed URL."""
    if isinstance(target, DatabaseURL):
        return target
    if isinstance(target, os.PathLike):
        return DatabaseURL.sqlite(Path(target))
    return DatabaseURL.parse(target)


async def open_database(target: str | os.PathLike[str] | DatabaseURL) -> Database:
    """Connect to `target` (a DATABASE_URL, a parsed one, or a SQLite file path), apply the
    pending migrations, and return the open database."""
    url = as_url(target)
    return await BACKENDS[url.backend](url)
