"""Messages waiting for their turn: a user's message that arrived while an earlier one of the
same conversation was being answered, not stored yet (it is stored when its turn comes, so
that the conversation is stored in order).

Only ids are kept, never text: after a crash the message is fetched from Discord again, as it
is then (edited, or gone), and answered like a new one. A row lives from the message's arrival
to the end of its turn.
"""

from __future__ import annotations

from storage.database import Database
from storage.models import QueuedMessage, SessionKey


class QueuedMessageRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(self, key: SessionKey, discord_id: int, *, fence: int, now: float) -> None:
        """Note a waiting message with the erasure fence read as it arrived: an erasure
        committed between that read and this insert does not find the row, so the fence is
        what tells, after a restart, that the message was erased meanwhile."""
        await self._db.write_one(
            "INSERT INTO queued_messages"
            " (discord_id, guild_id, channel_id, user_id, fence, arrived_at)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (discord_id) DO NOTHING",
            (discord_id, key.guild_id, key.channel_id, key.user_id, fence, now),
        )

    async def remove(self, discord_id: int) -> None:
        await self._db.write_one("DELETE FROM queued_messages WHERE discord_id = ?", (discord_id,))

    async def left_behind(self, *, since: float, before: float) -> list[QueuedMessage]:
        """Messages that arrived in [since, before) and whose turn never ended (their process
        died), in arrival order. Rows older than `since` are dropped: too late to answer."""
        await self._db.write_one("DELETE FROM queued_messages WHERE arrived_at < ?", (since,))
        rows = await self._db.fetch_all(
            "SELECT discord_id, guild_id, channel_id, user_id, fence, arrived_at"
            " FROM queued_messages"
            " WHERE arrived_at < ? ORDER BY discord_id",
            (before,),
        )
        return [QueuedMessage(*row) for row in rows]
