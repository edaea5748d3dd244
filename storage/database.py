"""The storage seam: one `Database` interface, one implementation per backend.

Repositories are written once against this interface, in SQLite's SQL dialect with `?`
placeholders (`?1`, `?2` for a value used twice); the PostgreSQL implementation rewrites
placeholders to `$1…` and keeps everything else portable SQL. The call style:

    rows = await db.fetch_all(sql, params)      # a read, outside any transaction
    row = await db.fetch_one(sql, params)
    row = await db.write_one(sql, params)        # one writing statement, atomic on its own
    async with db.transaction() as tx:           # read-then-write, committed or rolled back
        await tx.lock_row("sessions", session_id)
        await tx.lock_key(f"fact:{user_id}:{space_id}:{attribute}")
        changed = await tx.execute(sql, params)  # rows changed
        new_id = await tx.insert(sql, params)    # the new row's id (RETURNING id)
        await tx.executemany(sql, rows)
        rows = await tx.fetch_all(sql, params)

`storage.connect.open_database(url)` picks the backend by the URL's scheme (`sqlite:///…`
or `postgresql://…`), connects, and applies the migrations of `storage/migrations/<backend>/`.
Every error leaves as a `storage.errors` exception.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from contextlib import AbstractAsyncContextManager
from importlib import resources
from typing import Any, ClassVar, Protocol

from storage.errors import SchemaTooNew
from storage.url import Backend, DatabaseURL

log = logging.getLogger(__name__)


class Row(Protocol):
    """A result row: by position (`row[0]`, `*row`) or by column name (`row["id"]`)."""

    def __getitem__(self, key: Any, /) -> Any: ...

    def __iter__(self) -> Iterator[Any]: ...

    def __len__(self) -> int: ...

    def keys(self) -> Any: ...


class Transaction(ABC):
    """The statements of one open transaction. Never outlives its `async with` block."""

    @abstractmethod
    async def execute(self, sql: str, params: Iterable[Any] = ()) -> int:
        """Run one statement; return the number of rows it changed."""

    @abstractmethod
    async def insert(self, sql: str, params: Iterable[Any] = ()) -> int | None:
        """Run an INSERT; return the new row's `id` (`RETURNING id` is added when absent),
        or None when ON CONFLICT DO NOTHING skipped it."""

    @abstractmethod
    async def executemany(self, sql: str, rows: Iterable[Iterable[Any]]) -> None: ...

    @abstractmethod
    async def fetch_all(self, sql: str, params: Iterable[Any] = ()) -> list[Row]: ...

    async def fetch_one(self, sql: str, params: Iterable[Any] = ()) -> Row | None:
        rows = await self.fetch_all(sql, params)
        return rows[0] if rows else None

    @abstractmethod
    async def lock_row(self, table: str, row_id: int) -> None:
        """Hold the row `table.id = row_id` against other writers until the end of the
        transaction. Read-then-write transactions whose check must still hold at their write
        lock what they check. A no-op on SQLite, whose write transactions run one at a time;
        on PostgreSQL `SELECT … FOR NO KEY UPDATE` (inserts referencing the row still go on)."""

    @abstractmethod
    async def lock_key(self, key: str, *, shared: bool = False) -> None:
        """Hold a lock named `key` until the end of the transaction: writers of one logical
        thing that has no row yet (one fact attribute of one user) run one after the other.
        `shared` holders run together, but not beside an exclusive holder.
        A no-op on SQLite; a transaction-level advisory lock on PostgreSQL."""

    @abstractmethod
    async def executescript_in_transaction(self, script: str) -> None:
        """Run a migration file's statements inside this transaction."""


class Database(ABC):
    """A connection (SQLite) or a pool (PostgreSQL), with the repositories' call style."""

    backend: ClassVar[Backend]
    url: DatabaseURL

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    def transaction(self, *, maintenance: bool = False) -> AbstractAsyncContextManager[Transaction]:
        """A write transaction. Commits on success, rolls back on any exception.

        `maintenance`: bulk work (an erasure, a retention pass) whose statements may run long
        on a big database; PostgreSQL does not hold them to the URL's `command_timeout`."""

    @abstractmethod
    async def fetch_all(self, sql: str, params: Iterable[Any] = ()) -> list[Row]: ...

    async def fetch_one(self, sql: str, params: Iterable[Any] = ()) -> Row | None:
        rows = await self.fetch_all(sql, params)
        return rows[0] if rows else None

    @abstractmethod
    async def write_one(self, sql: str, params: Iterable[Any] = ()) -> Row | None:
        """One writing statement (e.g. INSERT … RETURNING) as its own atomic transaction,
        with no BEGIN/COMMIT round trips. Returns its first row, if any."""

    @abstractmethod
    async def checkpoint(self) -> None:
        """After user-requested deletions: make the deleted text leave the storage as far as
        the backend allows. SQLite folds the WAL back into the file (`secure_delete` already
        overwrote the pages); PostgreSQL schedules a VACUUM (debounced, see storage.postgres) and
        records the deletion for the compaction (storage.compaction)."""

    async def flush(self) -> None:
        """Finish now what `checkpoint` deferred (PostgreSQL's VACUUM); SQLite defers nothing."""
        return None

    async def compact_erased(self, period: float) -> str:
        """One compaction pass, if due: PostgreSQL rewrites the tables that hold users' text
        once deletions are pending and nothing still sees their rows, at most once per
        `period` for every process of the database (see storage.compaction). SQLite has
        nothing to do (`secure_delete` overwrote the text at once). Returns the outcome:
        "nothing", "blocked", "not due", "busy" or "done"."""
        return "nothing"

    def keep_compacted(self, period: float) -> None:
        """Run `compact_erased(period)` every little while in the background, until `close()`
        (PostgreSQL; nothing on SQLite)."""
        return None

    @abstractmethod
    async def integrity_ok(self) -> bool: ...

    @abstractmethod
    async def table_names(self) -> list[str]:
        """Mnemo's tables (for the deletion test: every table must be known to erasure)."""

    async def schema_version(self) -> int:
        """The highest migration applied."""
        rows = await self.fetch_all("SELECT version FROM schema_version")
        return max((int(row[0]) for row in rows), default=0)

    # -- migrations -------------------------------------------------------------------------

    @abstractmethod
    async def _prepare_migrations(self, tx: Transaction) -> None:
        """Create the version table if needed; on PostgreSQL also take the migration lock
        (several processes may start at once). Runs first in every migration transaction."""

    async def _after_migration(self, tx: Transaction, version: int) -> None:
        """A backend's extra bookkeeping in the migration's transaction."""
        return None

    async def _migrate(self) -> None:
        """Apply every known migration not yet applied, each in one transaction with its row
        in `schema_version`; refuse a database that holds migrations this code does not know.

        Applied versions are a set, not a high-water mark: migrations written on parallel
        branches apply in any order, and only an unknown version means "newer Mnemo"."""
        known = migrations(self.backend)
        async with self.transaction() as tx:
            await self._prepare_migrations(tx)
            applied = await _applied(tx)
        unknown = sorted(applied - {version for version, _, _ in known})
        if unknown:
            newest = max(version for version, _, _ in known) if known else 0
            raise SchemaTooNew(
                f"the database {self.url} has schema version {unknown[-1]}, newer than this"
                f" Mnemo knows ({newest}): it was written by a newer Mnemo; upgrade Mnemo or"
                " use another DATABASE_URL"
            )
        for version, name, sql in known:
            if version in applied:
                continue
            async with self.transaction() as tx:
                await self._prepare_migrations(tx)
                if version in await _applied(tx):
                    continue  # another process applied it while we waited for the lock
                log.info("Applying database migration %04d_%s", version, name)
                await tx.executescript_in_transaction(sql)
                await tx.execute(
                    "INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)",
                    (version, name, time.time()),
                )
                await self._after_migration(tx, version)


async def _applied(tx: Transaction) -> set[int]:
    return {int(row[0]) for row in await tx.fetch_all("SELECT version FROM schema_version")}


def newest_schema_version(backend: Backend = "sqlite") -> int:
    """The schema version the migrations of this Mnemo lead to."""
    return migrations(backend)[-1][0]


def migrations(backend: Backend) -> list[tuple[int, str, str]]:
    """The numbered SQL files of storage/migrations/<backend>, in order."""
    folder = resources.files("storage") / "migrations" / backend
    found = []
    for entry in folder.iterdir():
        stem, _, suffix = entry.name.partition(".")
        if suffix != "sql":
            continue
        number, _, name = stem.partition("_")
        found.append((int(number), name, entry.read_text(encoding="utf-8")))
    return sorted(found)


def with_returning_id(sql: str) -> str:
    """An INSERT that returns the new row's id (both backends speak RETURNING)."""
    return sql if "RETURNING" in sql.upper() else f"{sql} RETURNING id"
