"""Daily token usage per user and per server, for the budgets in bot/limits.py."""

from __future__ import annotations

from storage.database import Database


class UsageRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(self, day: str, *, user_id: int, guild_id: int | None, tokens: int) -> None:
        rows = [(day, "user", user_id, tokens)]
        if guild_id is not None:
            rows.append((day, "guild", guild_id, tokens))
        async with self._db.transaction() as tx:
            await tx.executemany(
                "INSERT INTO usage_daily (day, scope, scope_id, tokens) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (day, scope, scope_id)"
                " DO UPDATE SET tokens = usage_daily.tokens + excluded.tokens",
                rows,
            )

    async def used(self, day: str, scope: str, scope_id: int) -> int:
        row = await self._db.fetch_one(
            "SELECT tokens FROM usage_daily WHERE day = ? AND scope = ? AND scope_id = ?",
            (day, scope, scope_id),
        )
        return int(row[0]) if row else 0
