"""Everything stored about one user: export it, count it, delete it.

`delete_user_data` is the one place that knows every table holding user data; the deletion test
fills every table and proves nothing of the user is left. Deletions are done with
`secure_delete` on, and the WAL is checkpointed afterwards so the text leaves the file.
Each erasure also advances the user's erasure generation for its scope, in the same
transaction, so no write begun before it can land after it (see `storage.erasures`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from storage.database import Database, Transaction
from storage.erasures import bump

RATE_WINDOW_KEPT_SECONDS = 60.0  # a per-minute window: kept by an erasure while it is current


@dataclass(frozen=True, slots=True)
class DeletedCounts:
    messages: int = 0
    summaries: int = 0
    facts: int = 0

    def __add__(self, other: DeletedCounts) -> DeletedCounts:
        return DeletedCounts(
            self.messages + other.messages,
            self.summaries + other.summaries,
            self.facts + other.facts,
        )


@dataclass(frozen=True, slots=True)
class GuildStats:
    sessions: int
    members: int
    messages: int
    facts: int
    tokens: int


class UserDataRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def session_ids(self, user_id: int, *, guild_id: int | None = None) -> list[int]:
        """The user's sessions, everywhere or in one server."""
        if guild_id is None:
            rows = await self._db.fetch_all("SELECT id FROM sessions WHERE user_id = ?", (user_id,))
        else:
            rows = await self._db.fetch_all(
                "SELECT id FROM sessions WHERE user_id = ? AND guild_id = ?", (user_id, guild_id)
            )
        return [row["id"] for row in rows]

    async def clear_session(self, channel_id: int, user_id: int) -> DeletedCounts:
        """Delete one conversation: its messages and its summary (facts stay)."""
        async with self._db.transaction(maintenance=True) as tx:
            await bump(tx, user_id, "channel", channel_id)
            counts = await _delete_sessions(
                tx, "channel_id = ? AND user_id = ?", (channel_id, user_id)
            )
        await self._db.checkpoint()
        return counts

    async def delete_user_data(self, user_id: int, *, now: float | None = None) -> DeletedCounts:
        """Delete every message, summary and fact of the user, in every server and DM.

        Kept against abuse, not memory: today's (UTC, at `now`) token count of the user and
        their current per-minute window, numbers with no content. An erasure must not reset
        a budget or a rate limit; they expire with their day (`UsageRepository.expire`). Past
        days' counts are deleted now."""
        now = time.time() if now is None else now
        today = datetime.fromtimestamp(now, tz=UTC).strftime("%Y-%m-%d")
        async with self._db.transaction(maintenance=True) as tx:
            await bump(tx, user_id, "user")
            counts = await _delete_sessions(tx, "user_id = ?", (user_id,))
            facts = await tx.execute("DELETE FROM facts WHERE user_id = ?", (user_id,))
            await tx.execute(
                "DELETE FROM usage_daily WHERE scope = 'user' AND scope_id = ? AND day < ?",
                (user_id, today),
            )
            await tx.execute(
                "DELETE FROM rate_windows WHERE user_id = ? AND window_start < ?",
                (user_id, now - RATE_WINDOW_KEPT_SECONDS),
            )
            await tx.execute("DELETE FROM usage_members WHERE user_id = ?", (user_id,))
        await self._db.checkpoint()
        return counts + DeletedCounts(facts=facts)

    async def delete_member_in_guild(self, user_id: int, guild_id: int) -> DeletedCounts:
        """Delete the user's data learned in one server, and nothing elsewhere."""
        async with self._db.transaction(maintenance=True) as tx:
            await bump(tx, user_id, "guild", guild_id)
            counts = await _delete_sessions(tx, "user_id = ? AND guild_id = ?", (user_id, guild_id))
            facts = await tx.execute(
                "DELETE FROM facts WHERE user_id = ? AND space_id = ?", (user_id, guild_id)
            )
            await tx.execute(
                "DELETE FROM usage_members WHERE user_id = ? AND guild_id = ?", (user_id, guild_id)
            )
        await self._db.checkpoint()
        return counts + DeletedCounts(facts=facts)

    async def delete_fact(self, user_id: int, space_id: int, fact_id: int) -> int:
        """Delete a fact of the user and its history (earlier values of the same attribute).
        Returns the number of rows deleted; 0 means not found or not the user's."""
        async with self._db.transaction() as tx:
            row = await tx.fetch_one(
                "SELECT attribute FROM facts WHERE id = ? AND user_id = ? AND space_id = ?",
                (fact_id, user_id, space_id),
            )
            if row is None:
                return 0
            deleted = await tx.execute(
                "DELETE FROM facts WHERE user_id = ? AND space_id = ? AND attribute = ?",
                (user_id, space_id, row["attribute"]),
            )
        await self._db.checkpoint()
        return deleted

    async def export(self, user_id: int) -> dict[str, Any]:
        """Everything stored about the user, as plain JSON-ready data."""
        sessions = await self._db.fetch_all(
            "SELECT id, guild_id, channel_id, summary, summary_updated_at, created_at"
            " FROM sessions WHERE user_id = ? ORDER BY id",
            (user_id,),
        )
        messages = await self._db.fetch_all(
            "SELECT session_id, discord_id, guild_id, channel_id, role, content, tokens,"
            " created_at FROM messages"
            " WHERE session_id IN (SELECT id FROM sessions WHERE user_id = ?) ORDER BY id",
            (user_id,),
        )
        facts = await self._db.fetch_all(
            "SELECT id, space_id, attribute, value, created_at, valid_until"
            " FROM facts WHERE user_id = ? ORDER BY id",
            (user_id,),
        )
        sources = await self._db.fetch_all(
            "SELECT fs.fact_id, fs.discord_message_id, fs.channel_id, fs.guild_id"
            " FROM fact_sources fs JOIN facts f ON f.id = fs.fact_id WHERE f.user_id = ?"
            " ORDER BY fs.fact_id, fs.message_id",
            (user_id,),
        )
        by_fact: dict[int, list[dict[str, Any]]] = {}
        for source in sources:
            by_fact.setdefault(source["fact_id"], []).append(
                {k: source[k] for k in ("discord_message_id", "channel_id", "guild_id")}
            )
        paused = await self._db.fetch_one(
            "SELECT paused_at FROM memory_pauses WHERE user_id = ?", (user_id,)
        )
        waiting = await self._db.fetch_all(
            "SELECT discord_id, guild_id, channel_id, arrived_at FROM queued_messages"
            " WHERE user_id = ? ORDER BY discord_id",
            (user_id,),
        )
        # Kept against abuse, ids and numbers only: about the user all the same.
        usage = await self._db.fetch_all(
            "SELECT day, tokens FROM usage_daily WHERE scope = 'user' AND scope_id = ?"
            " ORDER BY day",
            (user_id,),
        )
        usage_in_servers = await self._db.fetch_all(
            "SELECT day, guild_id, tokens FROM usage_members WHERE user_id = ?"
            " ORDER BY day, guild_id",
            (user_id,),
        )
        rate = await self._db.fetch_one(
            "SELECT window_start, count FROM rate_windows WHERE user_id = ?", (user_id,)
        )
        # That a server's admins blocked the user (not which admin: that is about them).
        blocks = await self._db.fetch_all(
            "SELECT guild_id, created_at FROM blocked_members WHERE user_id = ? ORDER BY guild_id",
            (user_id,),
        )
        erasures = await self._db.fetch_all(
            "SELECT scope, scope_id, generation FROM user_erasures WHERE user_id = ?"
            " ORDER BY scope, scope_id",
            (user_id,),
        )
        # Hybrid recall's vectors are numbers derived from the messages above, meaningful to
        # one embeddings model only: how many there are, per model, not the numbers.
        vectors = await self._db.fetch_all(
            "SELECT model, COUNT(*) AS messages FROM message_vectors WHERE user_id = ?"
            " GROUP BY model ORDER BY model",
            (user_id,),
        )
        return {
            "user_id": user_id,
            "memory_paused_since": paused["paused_at"] if paused else None,
            "sessions": [dict(row) for row in sessions],
            "messages": [dict(row) for row in messages],
            "facts": [{**dict(row), "sources": by_fact.get(row["id"], [])} for row in facts],
            "messages_waiting_their_turn": [dict(row) for row in waiting],
            "token_usage_by_day": [dict(row) for row in usage],
            "token_usage_by_day_in_servers": [dict(row) for row in usage_in_servers],
            "message_rate_window": dict(rate) if rate else None,
            "blocked_in_servers": [dict(row) for row in blocks],
            "erasure_counters": [dict(row) for row in erasures],
            "message_vectors": [dict(row) for row in vectors],
        }

    async def guild_stats(self, guild_id: int) -> GuildStats:
        """Counts for one server, without anyone's content."""
        row = await self._db.fetch_one(
            "SELECT (SELECT COUNT(*) FROM sessions WHERE guild_id = ?1),"
            " (SELECT COUNT(DISTINCT user_id) FROM sessions WHERE guild_id = ?1),"
            " (SELECT COUNT(*) FROM messages WHERE session_id IN"
            "  (SELECT id FROM sessions WHERE guild_id = ?1)),"
            " (SELECT COUNT(*) FROM facts WHERE space_id = ?1 AND valid_until IS NULL),"
            " (SELECT COALESCE(SUM(tokens), 0) FROM messages WHERE session_id IN"
            "  (SELECT id FROM sessions WHERE guild_id = ?1))",
            (guild_id,),
        )
        assert row is not None
        return GuildStats(*(int(value) for value in row))


async def _delete_sessions(tx: Transaction, where: str, params: tuple[Any, ...]) -> DeletedCounts:
    """Delete matching sessions and (by cascade) their messages, and the matching messages
    waiting for their turn; count what went."""
    row = await tx.fetch_one(
        "SELECT (SELECT COUNT(*) FROM messages WHERE session_id IN"
        f" (SELECT id FROM sessions WHERE {where})),"
        f" (SELECT COUNT(*) FROM sessions WHERE {where} AND summary != '')",
        params + params,
    )
    assert row is not None
    await tx.execute(f"DELETE FROM sessions WHERE {where}", params)
    # Messages still waiting for their turn (same columns): not answered after a restart.
    await tx.execute(f"DELETE FROM queued_messages WHERE {where}", params)
    return DeletedCounts(messages=int(row[0]), summaries=int(row[1]))
