"""Mnemo's data layer: one database (SQLite or PostgreSQL), one repository per table group.

All SQL is here. Nothing above this package imports aiosqlite or asyncpg or sees their errors:
they leave as `storage.errors` exceptions.
"""

from __future__ import annotations

import os

from storage.database import Database
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
from storage.recall import RecallRepository
from storage.state import BotStateRepository
from storage.url import DatabaseURL
from storage.usage import UsageRepository
from storage.users import UserDataRepository


class Storage:
    """The database and its repositories, opened and closed together."""

    def __init__(self, db: Database) -> None:
        self.db = db
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

    @classmethod
    async def open(cls, target: str | os.PathLike[str] | DatabaseURL) -> Storage:
        """Open a DATABASE_URL (`sqlite:///…`, `postgresql://…`) or a SQLite file path."""
        return cls(await Database.create(target))

    async def close(self) -> None:
        await self.db.close()


__all__ = [
    "Database",
    "DatabaseURL",
    "RetryableStorageError",
    "SchemaTooNew",
    "Storage",
    "StorageError",
    "StorageUnavailable",
]
