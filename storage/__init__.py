"""Mnemo's data layer: one SQLite database, one repository per table group. All SQL is here."""

from __future__ import annotations

from pathlib import Path

from storage.database import Database
from storage.erasures import ErasureRepository
from storage.facts import FactRepository
from storage.fleet import FleetRepository
from storage.guild_settings import GuildSettingsRepository
from storage.messages import MessageRepository, SessionRepository
from storage.state import BotStateRepository
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

    @classmethod
    async def open(cls, path: Path) -> Storage:
        return cls(await Database.open(path))

    async def close(self) -> None:
        await self.db.close()


__all__ = ["Database", "Storage"]
