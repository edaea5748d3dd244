"""PostgreSQL for the benchmarks: BENCH_DATABASE_URL (or TEST_DATABASE_URL) names a server;
each benchmark fills a database of its own there, `mnemo_bench_<pid>_<random>`, dropped after.
`copy_sqlite` fills one with the rows of a SQLite database, so both backends hold the same.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from bench.core import BenchError
from storage import Storage
from storage.url import redact

__all__ = ["NOT_SET", "copy_sqlite", "redact", "server_url", "temporary_database"]

NOT_SET = (
    "PostgreSQL not measured: set BENCH_DATABASE_URL (or TEST_DATABASE_URL), e.g."
    " postgresql://postgres@127.0.0.1:5432/test, to measure it beside SQLite in the same run."
)


def server_url() -> str | None:
    for name in ("BENCH_DATABASE_URL", "TEST_DATABASE_URL"):
        if value := os.environ.get(name, "").strip():
            return value
    return None


@asynccontextmanager
async def temporary_database(admin_url: str) -> AsyncIterator[str]:
    """A new, empty database on the server of `admin_url`; dropped on exit, whatever happens."""
    import asyncpg

    name = f"mnemo_bench_{os.getpid()}_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield urlunsplit(urlsplit(admin_url)._replace(path=f"/{name}"))
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


# -- a copy of a SQLite database -----------------------------------------------------------

# Tables that only the SQLite schema has: the FTS5 recall index and its shadow tables (the
# PostgreSQL schema keeps a message's words in a generated column of `messages` instead).
SQLITE_ONLY_PREFIX = "messages_fts"
# Migration bookkeeping: `Storage.open` writes each backend's own.
NOT_COPIED = frozenset({"schema_version"})
# Tables that others reference (messages → sessions, fact_sources → facts): copied first,
# since COPY checks each row's foreign key as it lands.
PARENTS = ("sessions", "facts")
COPY_CHUNK = 50_000


async def copy_sqlite(path: Path, url: str) -> int:
    """Give the empty PostgreSQL database at `url` the real schema (its migrations, through
    `Storage.open`) and then every application row of the SQLite file `path`, by COPY; returns
    the number of rows copied.

    Identity columns take the copied ids as they are (COPY writes them, as INSERT ... OVERRIDING
    SYSTEM VALUE would), so their sequences are then moved past the largest id; VACUUM ANALYZE
    leaves the planner the statistics of a database that has been running, not of an empty one.
    The SQLite file is read with the blocking sqlite3 module: nothing else runs meanwhile.
    """
    import asyncpg

    await (await Storage.open(url)).close()
    source = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    target = await asyncpg.connect(url)
    try:
        copied = 0
        for table in _tables(source):
            copied += await _copy_table(source, target, table)
        await target.execute("VACUUM ANALYZE")
        return copied
    finally:
        await target.close()
        source.close()


def _tables(source: sqlite3.Connection) -> list[str]:
    """The SQLite file's application tables, parents first."""
    names = [
        name
        for (name,) in source.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
        if name not in NOT_COPIED and not name.startswith(SQLITE_ONLY_PREFIX)
    ]
    return sorted(names, key=lambda name: (name not in PARENTS, name))


async def _copy_table(source: sqlite3.Connection, target: Any, table: str) -> int:
    columns = await _shared_columns(source, target, table)
    listed = ", ".join(f'"{column}"' for column in columns)
    cursor = source.execute(f'SELECT {listed} FROM "{table}"')
    copied = 0
    while chunk := cursor.fetchmany(COPY_CHUNK):
        await target.copy_records_to_table(table, records=chunk, columns=columns)
        copied += len(chunk)
    if "id" in columns:  # NULL for a table without a sequence, and for an empty table: no-op
        await target.execute(
            f"SELECT setval(pg_get_serial_sequence($1, 'id'), max(id)) FROM \"{table}\"", table
        )
    return copied


async def _shared_columns(source: sqlite3.Connection, target: Any, table: str) -> list[str]:
    """The columns to copy: PostgreSQL's own, generated ones left out (such as `messages`'s
    `content_words`, which PostgreSQL computes); a SQLite column with no twin there would be
    data silently lost, so it stops the copy."""
    written = [
        row["column_name"]
        for row in await target.fetch(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND table_name = $1"
            " AND is_generated = 'NEVER' ORDER BY ordinal_position",
            table,
        )
    ]
    if not written:
        raise BenchError(f"PostgreSQL has no table {table}")
    present = {row[1] for row in source.execute(f'PRAGMA table_info("{table}")')}
    if missing := sorted(present - set(written)):
        raise BenchError(f"PostgreSQL has no column {', '.join(missing)} of table {table}")
    return [column for column in written if column in present]
