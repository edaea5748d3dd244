"""Small key/value state of the bot itself."""

from __future__ import annotations

from storage.database import Database


class BotStateRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, key: str) -> str | None:
        row = await self._db.fetch_one("SELECT value FROM bot_state WHERE key = ?", (key,))
        return row["value"] if row else None

    async def set(self, key: str, value: str) -> None:
        # One autocommit statement: no write lock held across event-loop hops (the heartbeat
        # writes this every 30 s while other programs may read or write the file).
        await self._db.write_one(
            "INSERT INTO bot_state (key, value) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )
