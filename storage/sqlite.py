"""The SQLite implementation: one aiosqlite connection, serialized transactions.

aiosqlite runs every statement of one connection on one worker thread, and tasks that share a
connection share its transaction. So every access goes through one asyncio lock: a transaction
is `BEGIN IMMEDIATE … COMMIT` (or ROLLBACK on any error) with no other task's statement in
between, and a plain read never observes another task's half-done writes.

Queries use execute_fetchall: one hop to aiosqlite's thread instead of three (execute, fetch,
close). On the reply path that hop is most of the cost of a small indexed read.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any, NoReturn

import aiosqlite

from storage.database import Database, Row, Transaction, with_returning_id
from storage.errors import (
    IntegrityViolation,
    RetryableStorageError,
    StorageError,
    StorageUnavailable,
)
from storage.sqlite_checkpoints import WalCheckpointer
from storage.url import DatabaseURL

BUSY_TIMEOUT_MS = 5000
CONFIGURE_ATTEMPTS = 20
# A checkpoint that another connection's read kept from finishing is tried again, the delay
# doubling from the first to the last, until it folds the whole WAL back (or the bot stops).
CHECKPOINT_RETRY_FIRST_SECONDS = 0.5
CHECKPOINT_RETRY_MAX_SECONDS = 60.0
# The database file and its -wal/-shm hold members' messages: owner only (read and write).
PRIVATE_FILE_MODE = 0o600

log = logging.getLogger(__name__)

# Primary result codes (sqlite3.h) meaning "not now" rather than "never".
_UNAVAILABLE_CODES = {
    5,  # SQLITE_BUSY: locked by another connection past the busy timeout
    6,  # SQLITE_LOCKED
    7,  # SQLITE_NOMEM
    8,  # SQLITE_READONLY (a read-only file or directory)
    10,  # SQLITE_IOERR
    13,  # SQLITE_FULL: disk full
    14,  # SQLITE_CANTOPEN
    15,  # SQLITE_PROTOCOL
}


class SQLiteDatabase(Database):
    """Owns the aiosqlite connection. Open with `await storage.connect.open_database("sqlite:///…")`."""

    backend = "sqlite"

    def __init__(self, connection: aiosqlite.Connection, path: Path) -> None:
        self._conn = connection
        self.path = path
        self.url = DatabaseURL.sqlite(path)
        self._lock = asyncio.Lock()  # FIFO: waiters run in arrival order
        self._checkpoint_retry: asyncio.Task[None] | None = None
        self._checkpoints = WalCheckpointer(path)  # the WAL folded back off the reply path

    @classmethod
    async def connect(cls, path: Path) -> SQLiteDatabase:
        """Open (creating the directory and file if needed), configure and migrate."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: we issue BEGIN/COMMIT ourselves.
            _create_private(path)
            conn = await aiosqlite.connect(path, isolation_level=None)
        except (OSError, sqlite3.Error) as error:
            raise StorageUnavailable(f"cannot open the database file {path}: {error}") from error
        conn.row_factory = aiosqlite.Row
        db = cls(conn, path)
        try:
            await db._configure()
            await db._migrate()
            await db._checkpoints.start()
        except BaseException:
            await db._checkpoints.close()
            await conn.close()
            raise
        db.make_files_private()
        return db

    def make_files_private(self) -> None:
        """Owner-only modes on the file and its -wal and -shm (SQLite creates those with the
        process's umask, often world-readable)."""
        for file in (self.path, *(self.path.with_name(self.path.name + s) for s in _SIDECARS)):
            with suppress(FileNotFoundError):
                file.chmod(PRIVATE_FILE_MODE)

    async def close(self) -> None:
        await self._checkpoints.close()  # first: the bot's connection, closed last, folds the WAL
        if self._checkpoint_retry is not None:
            self._checkpoint_retry.cancel()
            with suppress(asyncio.CancelledError):
                await self._checkpoint_retry
        async with self._lock:
            await self._conn.close()

    async def _configure(self) -> None:
        # Two connections switching a new file to WAL at once can deadlock on its lock, and
        # SQLite then fails one at once rather than calling the busy handler: try again.
        # (A lock held for real waits the busy timeout, and then fails: not tried again.)
        loop = asyncio.get_running_loop()
        for attempt in range(CONFIGURE_ATTEMPTS):
            started = loop.time()
            try:
                return await self._configure_once()
            except RetryableStorageError as error:
                fast = loop.time() - started < BUSY_TIMEOUT_MS / 2000
                if "locked" not in str(error) or not fast or attempt == CONFIGURE_ATTEMPTS - 1:
                    raise
                await asyncio.sleep(0.05 * (attempt + 1))

    async def _configure_once(self) -> None:
        try:
            for pragma in (
                # First: switching to WAL needs a moment of exclusive access, which another
                # connection opening the file at the same time may hold.
                f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}",
                "PRAGMA journal_mode=WAL",
                # NORMAL survives a process crash; only FULL also survives power loss
                # (docs/operation.md, Storage and durability).
                "PRAGMA synchronous=NORMAL",
                # Not inside the commit that fills the WAL (a reply's INSERT): in the
                # background, on a connection of its own (storage/sqlite_checkpoints.py).
                "PRAGMA wal_autocheckpoint=0",
                "PRAGMA foreign_keys=ON",
                # Deleted text must not linger in free pages of the file.
                "PRAGMA secure_delete=ON",
            ):
                await self._conn.execute(pragma)
        except sqlite3.Error as error:
            _raise(error)

    # -- transactions and queries ----------------------------------------------------------

    @asynccontextmanager
    async def transaction(self, *, maintenance: bool = False) -> AsyncIterator[Transaction]:
        async with self._lock:
            try:
                await self._conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as error:
                _raise(error)
            try:
                yield SQLiteTransaction(self._conn)
            except BaseException:
                await self._rollback()
                raise
            try:
                await self._conn.execute("COMMIT")
            except sqlite3.Error as error:
                await self._rollback()
                _raise(error)

    async def _rollback(self) -> None:
        # SQLite may have rolled back already (e.g. after SQLITE_FULL): then nothing is open.
        with suppress(sqlite3.Error):
            await self._conn.execute("ROLLBACK")

    async def fetch_all(self, sql: str, params: Iterable[Any] = ()) -> list[Row]:
        async with self._lock:
            try:
                return list(await self._conn.execute_fetchall(sql, tuple(params)))
            except sqlite3.Error as error:
                _raise(error)

    async def write_one(self, sql: str, params: Iterable[Any] = ()) -> Row | None:
        # Autocommit: the statement is its own transaction.
        return await self.fetch_one(sql, params)

    async def checkpoint(self) -> None:
        """Fold the WAL back into the main file and truncate it (after user deletions).

        A reader of another connection (a second process, a backup) can keep the checkpoint
        from reaching the end of the WAL; SQLite then reports it busy and deleted text stays in
        `-wal`. So the result is read, and a busy checkpoint is tried again in the background
        until it completes (logged once per episode)."""
        if await self._checkpoint_once():
            return
        if self._checkpoint_retry is None or self._checkpoint_retry.done():
            log.warning(
                "The WAL checkpoint after a deletion was blocked by another connection's read;"
                " trying again until it completes (deleted text is in %s-wal meanwhile)",
                self.path.name,
            )
            self._checkpoint_retry = asyncio.create_task(
                self._retry_checkpoint(), name="sqlite-checkpoint-retry"
            )

    async def _checkpoint_once(self, *, wait: bool = True) -> bool:
        """One TRUNCATE checkpoint: True when the whole WAL was folded back and truncated.
        Without `wait` it does not wait the busy timeout for readers (a retry must not hold
        the connection, and so every reply, for seconds while a long read goes on)."""
        async with self._lock:
            try:
                if not wait:
                    await self._conn.execute("PRAGMA busy_timeout=0")
                try:
                    rows = await self._conn.execute_fetchall("PRAGMA wal_checkpoint(TRUNCATE)")
                finally:
                    if not wait:
                        await self._conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            except sqlite3.Error as error:
                _raise(error)
        busy = next(iter(rows))[0] if rows else 0
        return not busy

    async def _retry_checkpoint(self) -> None:
        delay = CHECKPOINT_RETRY_FIRST_SECONDS
        while True:
            await asyncio.sleep(delay)
            try:
                if await self._checkpoint_once(wait=False):
                    log.info("The delayed WAL checkpoint completed")
                    return
            except StorageError as error:
                log.warning("The delayed WAL checkpoint failed: %s", error)
            delay = min(delay * 2, CHECKPOINT_RETRY_MAX_SECONDS)

    @property
    def checkpoint_pending(self) -> bool:
        """A blocked checkpoint is waiting to be tried again."""
        return self._checkpoint_retry is not None and not self._checkpoint_retry.done()

    async def integrity_ok(self) -> bool:
        row = await self.fetch_one("PRAGMA integrity_check")
        return row is not None and row[0] == "ok"

    async def table_names(self) -> list[str]:
        rows = await self.fetch_all(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            " ORDER BY name"
        )
        return [row[0] for row in rows]

    # -- migrations -------------------------------------------------------------------------

    async def _prepare_migrations(self, tx: Transaction) -> None:
        """The version table, and for a database from before it (Mnemo ≤ schema 3, which kept
        only PRAGMA user_version) the rows of the migrations that user_version says ran."""
        exists = await tx.fetch_one(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
        )
        if exists:
            return
        await tx.execute(_VERSION_TABLE)
        row = await tx.fetch_one("PRAGMA user_version")
        legacy = int(row[0]) if row else 0
        await tx.executemany(
            "INSERT INTO schema_version (version, name, applied_at) VALUES (?, 'before the"
            " version table', NULL)",
            [(version,) for version in range(1, legacy + 1)],
        )

    async def _after_migration(self, tx: Transaction, version: int) -> None:
        # user_version mirrors the highest version, for `sqlite3 file 'PRAGMA user_version'`.
        current = await tx.fetch_one("SELECT MAX(version) FROM schema_version")
        await tx.execute(f"PRAGMA user_version={int(current[0]) if current else version:d}")


_VERSION_TABLE = (
    "CREATE TABLE schema_version (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL)"
)


class SQLiteTransaction(Transaction):
    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Iterable[Any] = ()) -> int:
        try:
            async with self._conn.execute(sql, tuple(params)) as cursor:
                return cursor.rowcount
        except sqlite3.Error as error:
            _raise(error)

    async def insert(self, sql: str, params: Iterable[Any] = ()) -> int | None:
        row = await self.fetch_one(with_returning_id(sql), params)
        return int(row[0]) if row is not None else None

    async def executemany(self, sql: str, rows: Iterable[Iterable[Any]]) -> None:
        try:
            await self._conn.executemany(sql, [tuple(row) for row in rows])
        except sqlite3.Error as error:
            _raise(error)

    async def fetch_all(self, sql: str, params: Iterable[Any] = ()) -> list[Row]:
        try:
            return list(await self._conn.execute_fetchall(sql, tuple(params)))
        except sqlite3.Error as error:
            _raise(error)

    async def lock_row(self, table: str, row_id: int) -> None:
        return  # BEGIN IMMEDIATE: no other writer runs until this transaction ends

    async def lock_key(self, key: str, *, shared: bool = False) -> None:
        return  # as lock_row

    async def executescript_in_transaction(self, script: str) -> None:
        # sqlite3's executescript() would COMMIT first; run the statements one by one instead.
        for statement in split_sql(script):
            await self.execute(statement)


def split_sql(script: str) -> list[str]:
    """Split a migration file into statements. A line ending in ';' ends a statement only
    where SQLite agrees it is complete, so a trigger's BEGIN … END body stays whole."""
    statements, pending = [], ""
    for line in script.splitlines():
        if line.strip().startswith("--"):
            continue
        pending += line + "\n"
        if line.rstrip().endswith(";") and sqlite3.complete_statement(pending):
            statements.append(pending.strip().removesuffix(";").strip())
            pending = ""
    if pending.strip():
        statements.append(pending.strip().removesuffix(";").strip())
    return [statement for statement in statements if statement]


def _raise(error: sqlite3.Error) -> NoReturn:
    """Translate a sqlite3 error into the storage layer's own."""
    code = getattr(error, "sqlite_errorcode", None)
    message = str(error)
    if isinstance(error, sqlite3.IntegrityError):
        raise IntegrityViolation(message) from error
    if code is not None and code & 0xFF in _UNAVAILABLE_CODES:
        raise StorageUnavailable(f"database unavailable: {message}") from error
    if isinstance(error, sqlite3.OperationalError) and "locked" in message:
        raise RetryableStorageError(message) from error
    raise StorageError(message) from error


_SIDECARS = ("-wal", "-shm")


def _create_private(path: Path) -> None:
    """Create a new database file owner-only before SQLite opens it (SQLite would create it
    with the umask's mode); an existing file keeps its contents and is chmod-ed after."""
    with suppress(FileExistsError):
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, PRIVATE_FILE_MODE))
