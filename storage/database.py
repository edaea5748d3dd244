"""The one SQLite connection: PRAGMAs, serialized transactions and migrations.

aiosqlite runs every statement of one connection on one worker thread, and tasks that share a
connection share its transaction. So every access goes through one asyncio lock: a transaction
is `BEGIN IMMEDIATE … COMMIT` (or ROLLBACK on any error) with no other task's statement in
between, and a plain read never observes another task's half-done writes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import aiosqlite

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 5000

Row = aiosqlite.Row


class Database:
    """Owns the aiosqlite connection. Create with `await Database.open(path)`."""

    def __init__(self, connection: aiosqlite.Connection, path: Path) -> None:
        self._conn = connection
        self.path = path
        self._lock = asyncio.Lock()  # FIFO: waiters run in arrival order

    @classmethod
    async def open(cls, path: Path) -> Database:
        """Open (creating the directory and file if needed), configure and migrate."""
        path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN/COMMIT ourselves.
        conn = await aiosqlite.connect(path, isolation_level=None)
        conn.row_factory = aiosqlite.Row
        db = cls(conn, path)
        try:
            await db._configure()
            await db._migrate()
        except BaseException:
            await conn.close()
            raise
        return db

    async def close(self) -> None:
        async with self._lock:
            await self._conn.close()

    async def _configure(self) -> None:
        for pragma in (
            "PRAGMA journal_mode=WAL",
            # NORMAL survives a process crash; only FULL also survives power loss (README).
            "PRAGMA synchronous=NORMAL",
            "PRAGMA foreign_keys=ON",
            f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}",
            # Deleted text must not linger in free pages of the file.
            "PRAGMA secure_delete=ON",
        ):
            await self._conn.execute(pragma)

    # -- transactions and queries ----------------------------------------------------------

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """A write transaction. Commits on success, rolls back on any exception."""
        async with self._lock:
            await self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield Transaction(self._conn)
            except BaseException:
                await self._conn.execute("ROLLBACK")
                raise
            await self._conn.execute("COMMIT")

    # Queries use execute_fetchall: one hop to aiosqlite's thread instead of three (execute,
    # fetch, close). On the reply path that hop is most of the cost of a small indexed read.

    async def fetch_all(self, sql: str, params: Iterable[Any] = ()) -> list[Row]:
        async with self._lock:
            return list(await self._conn.execute_fetchall(sql, tuple(params)))

    async def fetch_one(self, sql: str, params: Iterable[Any] = ()) -> Row | None:
        rows = await self.fetch_all(sql, params)
        return rows[0] if rows else None

    async def write_one(self, sql: str, params: Iterable[Any] = ()) -> Row | None:
        """One writing statement (e.g. INSERT … RETURNING) as its own atomic transaction:
        autocommit, no BEGIN/COMMIT round trips. Returns its first row, if any."""
        return await self.fetch_one(sql, params)

    async def checkpoint(self) -> None:
        """Fold the WAL back into the main file and truncate it (after user deletions)."""
        async with self._lock:
            await self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    async def integrity_ok(self) -> bool:
        row = await self.fetch_one("PRAGMA integrity_check")
        return row is not None and row[0] == "ok"

    # -- migrations -------------------------------------------------------------------------

    async def schema_version(self) -> int:
        row = await self.fetch_one("PRAGMA user_version")
        return int(row[0]) if row else 0

    async def _migrate(self) -> None:
        current = await self.schema_version()
        for version, name, sql in _migrations():
            if version <= current:
                continue
            log.info("Applying database migration %04d_%s", version, name)
            async with self.transaction() as tx:
                await tx.executescript_in_transaction(sql)
                await tx.execute(f"PRAGMA user_version={version:d}")


class Transaction:
    """The statements of one open transaction. Never outlives its `async with` block."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Iterable[Any] = ()) -> int:
        """Run one statement; return the number of rows it changed."""
        async with self._conn.execute(sql, tuple(params)) as cursor:
            return cursor.rowcount

    async def insert(self, sql: str, params: Iterable[Any] = ()) -> int | None:
        """Run an INSERT; return the new rowid, or None when OR IGNORE skipped it."""
        async with self._conn.execute(sql, tuple(params)) as cursor:
            return cursor.lastrowid if cursor.rowcount > 0 else None

    async def executemany(self, sql: str, rows: Iterable[Iterable[Any]]) -> None:
        await self._conn.executemany(sql, [tuple(row) for row in rows])

    async def fetch_all(self, sql: str, params: Iterable[Any] = ()) -> list[Row]:
        return list(await self._conn.execute_fetchall(sql, tuple(params)))

    async def fetch_one(self, sql: str, params: Iterable[Any] = ()) -> Row | None:
        rows = await self.fetch_all(sql, params)
        return rows[0] if rows else None

    async def executescript_in_transaction(self, script: str) -> None:
        # sqlite3's executescript() would COMMIT first; run the statements one by one instead.
        for statement in _split_sql(script):
            await self._conn.execute(statement)


def newest_schema_version() -> int:
    """The schema version the migrations of this Mnemo lead to."""
    return max(version for version, _, _ in _migrations())


def _migrations() -> list[tuple[int, str, str]]:
    """The numbered SQL files of storage/migrations, in order."""
    folder = resources.files("storage") / "migrations"
    found = []
    for entry in folder.iterdir():
        stem, _, suffix = entry.name.partition(".")
        if suffix != "sql":
            continue
        number, _, name = stem.partition("_")
        found.append((int(number), name, entry.read_text(encoding="utf-8")))
    return sorted(found)


def _split_sql(script: str) -> list[str]:
    """Split a migration file into statements (our files keep ';' only at statement ends)."""
    lines = [line for line in script.splitlines() if not line.strip().startswith("--")]
    return [part.strip() for part in "\n".join(lines).split(";") if part.strip()]
