"""Mnemo's data layer: one SQLite database, one repository per table group. All SQL is here."""

from __future__ import annotations

from pathlib import Path

from storage.database import Database
from storage.facts import FactRepository
from storage.messages import MessageRepository, SessionRepository
from storage.recall import RecallRepository
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
        self.recall = RecallRepository(db)

    @classmethod
    async def open(cls, path: Path) -> Storage:
        return cls(await Database.open(path))

    async def close(self) -> None:
        await self.db.close()


__all__ = ["Database", "Storage"]
