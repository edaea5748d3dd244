"""The PostgreSQL implementation: an asyncpg pool, one pooled connection per transaction.

Repositories speak SQLite's placeholders (`?`, `?1`); `pg_sql` rewrites them to `$1…` once per
distinct statement (cached), and asyncpg caches the prepared statement per connection. Behind
PgBouncer in transaction mode set `statement_cache_size=0` in DATABASE_URL's query string:
prepared statements do not survive a pooler that swaps server connections.

Reads and single writing statements run on any free pooled connection, each its own
transaction (autocommit). `transaction()` holds one connection from BEGIN to COMMIT, at READ
COMMITTED; read-then-write transactions lock what they check (`lock_row`), compare-and-set
their writes, and unique indexes (one current fact per attribute) hold under concurrency.

Erasure: PostgreSQL has no `secure_delete`. A deleted row stays in the table file as a dead
tuple until VACUUM, its bytes in free space after that, its words in the GIN index for good,
and in the WAL and any backup. After deletions the user asked for, `checkpoint()` schedules a
plain VACUUM of the database, debounced: erasures within `VACUUM_DELAY_SECONDS` share one.
VACUUM takes no lock that blocks reads or writes but reads every page not known all-visible,
so on a large database it costs I/O for a while; it cannot run inside a transaction, so it
runs on a connection of its own, in the background. `checkpoint()` also records the deletion
for the compaction that rewrites the tables holding text within ERASURE_COMPACT_SECONDS (see
storage.compaction: what is left where, and for how long).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager, suppress
from functools import lru_cache
from typing import Any, NoReturn

import asyncpg

from storage.compaction import CompactionPass, ErasureCompaction
from storage.database import Database, Row, Transaction, with_returning_id
from storage.errors import (
    IntegrityViolation,
    RetryableStorageError,
    StorageError,
    StorageUnavailable,
)
from storage.url import DatabaseURL, scrub

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_SECONDS = 10.0
CLOSE_TIMEOUT_SECONDS = 5.0
VACUUM_DELAY_SECONDS = 5.0
VACUUM_CLOSE_TIMEOUT_SECONDS = 3.0
MAINTENANCE_TIMEOUT_SECONDS = 6 * 3600.0
"""VACUUM, migrations and maintenance transactions (erasures, retention) may run long on a
big database: they are not held to the URL's `command_timeout`, which catches a server or
network that stopped answering mid-statement."""
MIGRATION_LOCK_KEY = 0x6D6E656D6F  # "mnemo": one process migrates at a time

# Quoted strings and identifiers, comments, and placeholders, in one left-to-right pass.
_TOKENS = re.compile(r"'(?:[^']|'')*'|\"[^\"]*\"|--[^\n]*|\?(\d*)")


@lru_cache(maxsize=2048)
def pg_sql(sql: str) -> str:
    """SQLite placeholders to PostgreSQL's: `?` takes the number after the highest one used
    so far, `?N` is `$N` (SQLite's own numbering rule), outside quotes and comments."""
    highest = 0

    def number(match: re.Match[str]) -> str:
        nonlocal highest
        if not match.group(0).startswith("?"):
            return match.group(0)
        digits = match.group(1)
        index = int(digits) if digits else highest + 1
        highest = max(highest, index)
        return f"${index}"

    return _TOKENS.sub(number, sql)


def _args(params: Iterable[Any]) -> tuple[Any, ...]:
    # PostgreSQL text cannot hold U+0000 (SQLite can): it is stored as U+FFFD instead, the
    # way bot/model/text.py stores a lone surrogate, rather than failing the write.
    return tuple(
        value.replace("\x00", "\ufffd") if type(value) is str and "\x00" in value else value
        for value in params
    )


class PostgresDatabase(Database):
    backend = "postgres"

    def __init__(self, pool: asyncpg.Pool, url: DatabaseURL) -> None:
        self._pool = pool
        self.url = url
        self._vacuum = _Vacuum(self)
        self.compaction = ErasureCompaction(self)

    @classmethod
    async def connect(cls, url: DatabaseURL) -> PostgresDatabase:
        try:
            pool = await asyncpg.create_pool(
                url.dsn,
                min_size=1,
                max_size=url.pool_size,
                statement_cache_size=url.statement_cache_size,
                timeout=CONNECT_TIMEOUT_SECONDS,
                command_timeout=url.command_timeout,
                reset=_keep_connection_as_is,
                server_settings={"application_name": "mnemo"},
            )
        except Exception as error:
            # Connection errors can quote the DSN: scrub it, and do not chain the original.
            reason = scrub(f"{type(error).__name__}: {error}", url)
            if isinstance(error, asyncpg.PostgresError) and not _not_now(error):
                # The server answered and refused: a wrong password or database name.
                raise StorageError(f"cannot use {url}: {reason}") from None
            raise StorageUnavailable(f"cannot connect to {url}: {reason}") from None
        db = cls(pool, url)
        try:
            await db._migrate()
        except BaseException:
            pool.terminate()
            raise
        return db

    async def close(self) -> None:
        await self.compaction.close()
        await self._vacuum.close()
        try:
            await asyncio.wait_for(self._pool.close(), CLOSE_TIMEOUT_SECONDS)
        except (TimeoutError, asyncpg.PostgresError, OSError):
            self._pool.terminate()

    # -- transactions and queries ----------------------------------------------------------

    @asynccontextmanager
    async def transaction(self, *, maintenance: bool = False) -> AsyncIterator[Transaction]:
        try:
            connection = await self._pool.acquire()
        except Exception as error:
            _raise(error, self.url)
        try:
            transaction = connection.transaction()
            try:
                await transaction.start()
            except Exception as error:
                _raise(error, self.url)
            try:
                timeout = MAINTENANCE_TIMEOUT_SECONDS if maintenance else None
                yield PostgresTransaction(connection, self.url, timeout)
            except BaseException:
                with suppress(Exception):  # a broken connection is reset by the pool
                    await transaction.rollback()
                raise
            try:
                await transaction.commit()
            except Exception as error:
                _raise(error, self.url)
        finally:
            await self._pool.release(connection)

    async def fetch_all(self, sql: str, params: Iterable[Any] = ()) -> list[Row]:
        try:
            return list(await self._pool.fetch(pg_sql(sql), *_args(params)))
        except Exception as error:
            _raise(error, self.url)

    async def write_one(self, sql: str, params: Iterable[Any] = ()) -> Row | None:
        try:
            row: Row | None = await self._pool.fetchrow(pg_sql(sql), *_args(params))
        except Exception as error:
            _raise(error, self.url)
        return row

    async def checkpoint(self) -> None:
        self._vacuum.request()
        await self.compaction.record()

    async def compact_erased(self, period: float) -> str:
        result: CompactionPass = await self.compaction.run(period)
        return result.outcome

    def keep_compacted(self, period: float) -> None:
        self.compaction.start(period)

    async def flush(self) -> None:
        await self._vacuum.run_now()

    async def integrity_ok(self) -> bool:
        # PostgreSQL checks its own pages (and checksums, if enabled); a cheap liveness probe.
        row = await self.fetch_one("SELECT 1")
        return row is not None and row[0] == 1

    async def table_names(self) -> list[str]:
        rows = await self.fetch_all(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY tablename"
        )
        return [row[0] for row in rows]

    async def vacuum(self) -> None:
        """VACUUM every table: dead tuples of deleted rows become free space."""
        try:
            async with self._pool.acquire() as connection:
                await connection.execute("VACUUM", timeout=MAINTENANCE_TIMEOUT_SECONDS)
        except Exception as error:
            _raise(error, self.url)

    async def rewrite(self, tables: Iterable[str], *, lock_timeout: float) -> list[str]:
        """VACUUM FULL each table (its toast table and indexes too) into new files, on a
        connection of its own that waits at most `lock_timeout` seconds for each table's
        ACCESS EXCLUSIVE lock (a StorageError past it). Returns the tables VACUUM skipped (it
        skips, with a warning, a table this role does not own)."""
        try:
            connection = await asyncpg.connect(
                self.url.dsn,
                timeout=CONNECT_TIMEOUT_SECONDS,
                statement_cache_size=0,
                server_settings={
                    "application_name": "mnemo-compaction",
                    "lock_timeout": str(max(1, round(lock_timeout * 1000))),
                },
            )
        except Exception as error:
            _raise(error, self.url)
        skipped = []
        try:
            for table in tables:
                node = "SELECT pg_relation_filenode(to_regclass($1))"
                before = await connection.fetchval(node, table)
                await connection.execute(
                    f"VACUUM FULL {table}", timeout=MAINTENANCE_TIMEOUT_SECONDS
                )
                if await connection.fetchval(node, table) == before:
                    skipped.append(table)
        except Exception as error:
            _raise(error, self.url)
        finally:
            try:
                await asyncio.wait_for(connection.close(), CLOSE_TIMEOUT_SECONDS)
            except (TimeoutError, asyncpg.PostgresError, OSError):
                connection.terminate()
        return skipped

    # -- migrations -------------------------------------------------------------------------

    async def _prepare_migrations(self, tx: Transaction) -> None:
        # Until commit: processes starting together migrate one after the other. A
        # transaction-level lock also works behind PgBouncer in transaction mode.
        # Waiting may last as long as another process's migration: a maintenance timeout.
        await tx.executescript_in_transaction(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})")
        await tx.execute(
            "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY,"
            " name TEXT NOT NULL, applied_at DOUBLE PRECISION)"
        )


class PostgresTransaction(Transaction):
    def __init__(
        self, connection: asyncpg.Connection, url: DatabaseURL, timeout: float | None = None
    ) -> None:
        self._conn = connection
        self._url = url
        self._timeout = timeout  # None: the pool's command_timeout

    async def execute(self, sql: str, params: Iterable[Any] = ()) -> int:
        try:
            status: str = await self._conn.execute(
                pg_sql(sql), *_args(params), timeout=self._timeout
            )
        except Exception as error:
            _raise(error, self._url)
        # "UPDATE 3", "DELETE 0", "INSERT 0 1": the count is the last word.
        last = status.rpartition(" ")[2]
        return int(last) if last.isdigit() else 0

    async def insert(self, sql: str, params: Iterable[Any] = ()) -> int | None:
        row = await self.fetch_one(with_returning_id(sql), params)
        return int(row[0]) if row is not None else None

    async def executemany(self, sql: str, rows: Iterable[Iterable[Any]]) -> None:
        batch = [_args(row) for row in rows]
        if not batch:
            return
        try:
            await self._conn.executemany(pg_sql(sql), batch, timeout=self._timeout)
        except Exception as error:
            _raise(error, self._url)

    async def fetch_all(self, sql: str, params: Iterable[Any] = ()) -> list[Row]:
        try:
            return list(await self._conn.fetch(pg_sql(sql), *_args(params), timeout=self._timeout))
        except Exception as error:
            _raise(error, self._url)

    async def lock_row(self, table: str, row_id: int) -> None:
        # NO KEY UPDATE: excludes other writers of the row, not inserts that reference it.
        await self.fetch_all(f"SELECT 1 FROM {table} WHERE id = ? FOR NO KEY UPDATE", (row_id,))

    async def lock_key(self, key: str, *, shared: bool = False) -> None:
        function = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
        await self.fetch_all(f"SELECT {function}(hashtextextended(?, 0))", (key,))

    async def executescript_in_transaction(self, script: str) -> None:
        try:
            # No arguments: several statements in one call.
            await self._conn.execute(script, timeout=MAINTENANCE_TIMEOUT_SECONDS)
        except Exception as error:
            _raise(error, self._url)


class _Vacuum:
    """At most one VACUUM pending: requests within VACUUM_DELAY_SECONDS share it."""

    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db
        self._task: asyncio.Task[None] | None = None
        self._again = False

    def request(self) -> None:
        if self._task is not None and not self._task.done():
            self._again = True  # one more pass after the current one (it may have started)
            return
        self._task = asyncio.create_task(self._run(VACUUM_DELAY_SECONDS), name="mnemo-vacuum")

    async def run_now(self) -> None:
        """Run the pending VACUUM at once and wait for it (or run one if none is pending)."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
        self._again = False
        await self._db.vacuum()

    async def close(self) -> None:
        """On shutdown, a pending VACUUM runs now, for a few seconds at most; left unfinished,
        autovacuum gets to the dead tuples eventually."""
        if self._task is None or self._task.done():
            return
        try:
            await asyncio.wait_for(self.run_now(), VACUUM_CLOSE_TIMEOUT_SECONDS)
        except (TimeoutError, StorageError) as error:
            log.warning("VACUUM after an erasure did not finish before shutdown: %s", error)

    async def _run(self, delay: float) -> None:
        while True:
            await asyncio.sleep(delay)
            self._again = False
            try:
                await self._db.vacuum()
            except StorageError as error:
                log.warning("VACUUM after an erasure failed (autovacuum will follow): %s", error)
            if not self._again:
                return


# SQLSTATE classes and codes (PostgreSQL, appendix A) that mean "not now".
_UNAVAILABLE_CLASSES = ("08", "53", "57P")  # connection; insufficient resources; shutdown
_RETRYABLE_CODES = ("40001", "40P01", "55P03", "57014")  # serialization, deadlock, lock, cancel


async def _keep_connection_as_is(connection: asyncpg.Connection) -> None:
    """What the pool runs on a connection it takes back, instead of asyncpg's default reset
    (`SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`), which costs one
    more round trip after every pooled statement: half the reply path's time on the server.
    Mnemo leaves no session state to reset: no SET, LISTEN, cursors or session-level advisory
    locks (its locks are transaction-level). asyncpg still rolls back a transaction left open
    before it calls this."""


def _not_now(error: BaseException) -> bool:
    """A server error that says "try later" (starting up, too many connections, …)."""
    return (getattr(error, "sqlstate", None) or "").startswith(_UNAVAILABLE_CLASSES)


def _raise(error: BaseException, url: DatabaseURL) -> NoReturn:
    """Translate an asyncpg (or socket) error into the storage layer's own."""
    if isinstance(error, asyncio.CancelledError):
        raise error
    message = scrub(str(error) or type(error).__name__, url)
    state = getattr(error, "sqlstate", None) or ""
    if isinstance(error, asyncpg.IntegrityConstraintViolationError):
        raise IntegrityViolation(message) from error
    if _not_now(error) or isinstance(
        error, OSError | TimeoutError | asyncpg.ConnectionDoesNotExistError
    ):
        raise StorageUnavailable(f"database unavailable: {message}") from error
    if state in _RETRYABLE_CODES:
        raise RetryableStorageError(message) from error
    if isinstance(error, asyncpg.InterfaceError) and "closed" in message:
        raise StorageUnavailable(f"database unavailable: {message}") from error
    raise StorageError(message) from error
