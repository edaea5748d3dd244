"""Daily token usage per user, per server and per member of a server, for the budgets in
bot/policy/limits.py and for /mnemo-admin stats."""

from __future__ import annotations

from storage.database import Database


class UsageRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(
        self,
        day: str,
        *,
        user_id: int,
        guild_id: int | None,
        tokens: int,
        per_user: bool = True,
        per_member: bool = True,
    ) -> None:
        """Add one call's tokens to the day's counters: the user's (`per_user`), the server's,
        and the member's in that server (`per_member`); one atomic statement (migration 19)."""
        await self._db.write_one(
            "INSERT INTO usage_charges (day, user_id, guild_id, tokens, per_user, per_member)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (day, user_id, guild_id, tokens, int(per_user), int(per_member)),
        )

    async def used(self, day: str, scope: str, scope_id: int) -> int:
        row = await self._db.fetch_one(
            "SELECT tokens FROM usage_daily WHERE day = ? AND scope = ? AND scope_id = ?",
            (day, scope, scope_id),
        )
        return int(row[0]) if row else 0

    async def guild_since(self, guild_id: int, first_day: str) -> int:
        """A server's tokens from `first_day` (YYYY-MM-DD, UTC) through today."""
        row = await self._db.fetch_one(
            "SELECT COALESCE(SUM(tokens), 0) FROM usage_daily"
            " WHERE scope = 'guild' AND scope_id = ? AND day >= ?",
            (guild_id, first_day),
        )
        return int(row[0]) if row else 0

    async def top_members(
        self, guild_id: int, first_day: str, *, limit: int = 5
    ) -> list[tuple[int, int]]:
        """(user id, tokens) of the server's heaviest users since `first_day`, most first."""
        rows = await self._db.fetch_all(
            "SELECT user_id, SUM(tokens) AS total FROM usage_members"
            " WHERE guild_id = ? AND day >= ? GROUP BY user_id"
            " ORDER BY total DESC, user_id LIMIT ?",
            (guild_id, first_day, limit),
        )
        return [(int(row["user_id"]), int(row["total"])) for row in rows]

    async def expire(self, *, before_day: str, rate_before: float) -> int:
        """Delete what only today's limits need once its day (or minute) is over: each user's
        daily token count before `before_day` (YYYY-MM-DD, UTC) and per-minute windows that
        began before `rate_before`. Servers' and members' counts stay (30 days of stats)."""
        async with self._db.transaction() as tx:
            days = await tx.execute(
                "DELETE FROM usage_daily WHERE scope = 'user' AND day < ?", (before_day,)
            )
            windows = await tx.execute(
                "DELETE FROM rate_windows WHERE window_start < ?", (rate_before,)
            )
        return days + windows
