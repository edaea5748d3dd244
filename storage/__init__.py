"""Mnemo's data layer: one database (SQLite or PostgreSQL), one repository per table group.

All SQL is here. Nothing above this package imports aiosqlite or asyncpg or sees their errors:
they leave as `storage.errors` exceptions.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from storage import sqlite_files
from storage.capabilities import ModelCapabilityRepository
from storage.connect import as_url, open_database
from storage.database import Database, newest_schema_version
from storage.erasures import ErasureRepository
from storage.errors import (
    RetryableStorageError,
    SchemaTooNew,
    StorageError,
    StorageUnavailable,
)
from storage.facts import FactRepository
from storage.fleet import FleetRepository
from storage.guild_settings import GuildSettingsRepository
from storage.messages import MessageRepository, SessionRepository
from storage.queued import QueuedMessageRepository
from storage.recall import RecallRepository
from storage.sqlite_files import DatabaseUnusable
from storage.state import BotStateRepository
from storage.url import DatabaseURL
from storage.usage import UsageRepository
from storage.users import UserDataRepository
from storage.vectors import VectorRepository


class Storage:
    """The database and its repositories, opened and closed together."""

    def __init__(
        self,
        db: Database,
        guard: sqlite_files.FileGuard | None = None,
        *,
        backup_max_age: float | None = None,
    ) -> None:
        self.db = db
        self._guard = guard
        self._backup_max_age = backup_max_age
        self.messages = MessageRepository(db)
        self.sessions = SessionRepository(db)
        self.facts = FactRepository(db)
        self.users = UserDataRepository(db)
        self.state = BotStateRepository(db)
        self.usage = UsageRepository(db)
        self.fleet = FleetRepository(db)
        self.guild_settings = GuildSettingsRepository(db)
        self.erasures = ErasureRepository(db)
        self.recall = RecallRepository(db)
        self.queued = QueuedMessageRepository(db)
        self.capabilities = ModelCapabilityRepository(db)
        self.vectors = VectorRepository(db)

    @classmethod
    async def open(
        cls,
        target: str | os.PathLike[str] | DatabaseURL,
        *,
        backups: int = 0,
        backup_days: float | None = None,
    ) -> Storage:
        """Open (creating and migrating) a DATABASE_URL (`sqlite:///…`, `postgresql://…`) or
        a SQLite file path.

        A SQLite file is used by one process at a time (another one is refused), a database
        from a newer Mnemo is refused before anything is written, and with `backups` an
        existing file is copied before migrations change it (the newest `backups` copies are
        kept, and with `backup_days` none older than that). Raises DatabaseUnusable for a
        SQLite file that cannot be used, StorageError for a PostgreSQL server that cannot."""
        url = as_url(target)
        if url.path is None:
            return cls(await open_database(url))
        max_age = None if backup_days is None else backup_days * 86400
        guard = await sqlite_files.prepare(
            url.path, newest_schema=newest_schema_version(), backups=backups, backup_max_age=max_age
        )
        try:
            db = await open_database(url)
        except SchemaTooNew:
            guard.release()
            raise
        except StorageError as error:
            guard.release()
            raise sqlite_files.describe(url.path, error.__cause__ or error) from error
        except BaseException:
            guard.release()
            raise
        return cls(db, guard, backup_max_age=max_age)

    @classmethod
    async def open_readonly(cls, path: Path) -> Storage:
        """Read an existing database without locking or changing it (for health checks)."""
        return cls(await sqlite_files.open_readonly(path))

    async def expire_backups(self) -> int:
        """Delete SQLite upgrade backups past their age (the retention pass); 0 elsewhere."""
        path = getattr(self.db, "path", None)
        if self._backup_max_age is None or not isinstance(path, Path):
            return 0
        return await asyncio.to_thread(sqlite_files.expire_backups, path, self._backup_max_age)

    def keep_erasures_compacted(self, period: float) -> None:
        """PostgreSQL: what deletions leave in the database's files is rewritten out of them
        within about `period` seconds (ERASURE_COMPACT_SECONDS; see storage.compaction), by
        whichever process of the fleet gets to it. Nothing to do on SQLite."""
        self.db.keep_compacted(period)

    async def close(self) -> None:
        await self.db.close()
        if self._guard is not None:
            self._guard.release()


__all__ = [
    "Database",
    "DatabaseURL",
    "DatabaseUnusable",
    "RetryableStorageError",
    "SchemaTooNew",
    "Storage",
    "StorageError",
    "StorageUnavailable",
]
