"""Mnemo's data layer: one SQLite database, one repository per table group. All SQL is here."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from storage import sqlite_files
from storage.database import Database, newest_schema_version
from storage.facts import FactRepository
from storage.messages import MessageRepository, SessionRepository
from storage.sqlite_files import DatabaseUnusable
from storage.state import BotStateRepository
from storage.usage import UsageRepository
from storage.users import UserDataRepository


class Storage:
    """The database and its repositories, opened and closed together."""

    def __init__(self, db: Database, guard: sqlite_files.FileGuard | None = None) -> None:
        self.db = db
        self._guard = guard
        self.messages = MessageRepository(db)
        self.sessions = SessionRepository(db)
        self.facts = FactRepository(db)
        self.users = UserDataRepository(db)
        self.state = BotStateRepository(db)
        self.usage = UsageRepository(db)

    @classmethod
    async def open(cls, path: Path, *, backups: int = 0) -> Storage:
        """Open (creating and migrating) the database. One process at a time: another one
        is refused. With `backups`, an existing database is copied before migrations change
        it and the newest `backups` copies are kept. Raises DatabaseUnusable."""
        guard = await sqlite_files.prepare(
            path, newest_schema=newest_schema_version(), backups=backups
        )
        try:
            db = await Database.open(path)
        except (OSError, sqlite3.Error) as error:
            guard.release()
            raise sqlite_files.describe(path, error) from error
        except BaseException:
            guard.release()
            raise
        return cls(db, guard)

    @classmethod
    async def open_readonly(cls, path: Path) -> Storage:
        """Read an existing database without locking or changing it (for health checks)."""
        return cls(await sqlite_files.open_readonly(path))

    async def close(self) -> None:
        await self.db.close()
        if self._guard is not None:
            self._guard.release()


__all__ = ["Database", "DatabaseUnusable", "Storage"]
