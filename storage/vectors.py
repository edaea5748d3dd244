"""Message vectors for hybrid recall: one float32 blob per message, scoped like the words.

All vector SQL is here (migration 0017). Storage keeps bytes and never computes with them:
`bot.memory.vectors` embeds, caches each scope's matrix and searches it. A vector is written
only for a message that is still stored with the very text that was embedded (one statement
checks both), so a deletion, an erasure or an edit that came first leaves nothing behind; the
foreign key and the edit trigger take a vector away with its text afterwards.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from storage.database import Database


@dataclass(frozen=True, slots=True)
class ToEmbed:
    """A stored message without a vector of the current model."""

    message_id: int
    content: str


@dataclass(frozen=True, slots=True)
class VectorRow:
    """One vector of a scope, with what recall needs to know of its message."""

    message_id: int
    session_id: int
    created_at: float
    vector: bytes
    place_id: int = 0  # where it was said (`StoredMessage.place`): the audience rule's filter


ScopeVersion = tuple[int, int]
"""(COUNT, MAX(id)) of a scope's vectors of one model: changes with every write and deletion."""


class VectorRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def missing(self, session_id: int, model: str, *, limit: int) -> list[ToEmbed]:
        """The session's oldest messages with no vector of `model` (blank ones never need one)."""
        rows = await self._db.fetch_all(
            "SELECT m.id, m.content FROM messages m"
            " LEFT JOIN message_vectors v ON v.message_id = m.id AND v.model = ?"
            " WHERE m.session_id = ? AND v.id IS NULL AND TRIM(m.content) <> ''"
            " ORDER BY m.id LIMIT ?",
            (model, session_id, limit),
        )
        return [ToEmbed(int(row[0]), str(row[1])) for row in rows]

    async def sessions_missing(self, model: str) -> list[int]:
        """Sessions with a message that has no vector of `model` (at start-up: after a crash,
        or a new EMBEDDING_MODEL, whose vectors are computed again in the background)."""
        rows = await self._db.fetch_all(
            "SELECT DISTINCT m.session_id FROM messages m"
            " LEFT JOIN message_vectors v ON v.message_id = m.id AND v.model = ?"
            " WHERE v.id IS NULL AND TRIM(m.content) <> ''",
            (model,),
        )
        return [int(row[0]) for row in rows]

    async def save(self, model: str, embedded: Sequence[tuple[ToEmbed, bytes]]) -> int:
        """Store each message's vector (replacing one of another model), if the message is
        still stored with the text embedded; returns how many were stored."""
        stored = 0
        async with self._db.transaction() as tx:
            for item, vector in embedded:
                await tx.execute(
                    "DELETE FROM message_vectors WHERE message_id = ?", (item.message_id,)
                )
                stored += await tx.execute(
                    "INSERT INTO message_vectors (message_id, user_id, space_id, model, vector)"
                    " SELECT id, user_id, COALESCE(guild_id, 0), ?, ? FROM messages"
                    " WHERE id = ? AND content = ?",
                    (model, vector, item.message_id, item.content),
                )
        return stored

    async def version(self, user_id: int, space_id: int, model: str) -> ScopeVersion:
        """The scope's (count, newest id) of `model`'s vectors: one read of the index."""
        row = await self._db.fetch_one(
            "SELECT COUNT(*), COALESCE(MAX(id), 0) FROM message_vectors"
            " WHERE user_id = ? AND space_id = ? AND model = ?",
            (user_id, space_id, model),
        )
        return (int(row[0]), int(row[1])) if row else (0, 0)

    async def scope(
        self, user_id: int, space_id: int, model: str
    ) -> tuple[ScopeVersion, list[VectorRow]]:
        """Every vector of `model` of this user in this space, in message order, and the
        version they are (of the rows read: one statement, so the two agree)."""
        rows = await self._db.fetch_all(
            "SELECT v.message_id, m.session_id, m.created_at, v.vector, v.id,"
            " COALESCE(m.place_id, m.channel_id)"
            " FROM message_vectors v JOIN messages m ON m.id = v.message_id"
            " WHERE v.user_id = ? AND v.space_id = ? AND v.model = ?"
            " ORDER BY v.message_id",
            (user_id, space_id, model),
        )
        version = (len(rows), max((int(row[4]) for row in rows), default=0))
        found = [
            VectorRow(int(row[0]), int(row[1]), float(row[2]), bytes(row[3]), int(row[5]))
            for row in rows
        ]
        return version, found

    async def count(self, model: str | None = None) -> int:
        """Vectors stored (of `model`, or of any)."""
        if model is None:
            row = await self._db.fetch_one("SELECT COUNT(*) FROM message_vectors")
        else:
            row = await self._db.fetch_one(
                "SELECT COUNT(*) FROM message_vectors WHERE model = ?", (model,)
            )
        return int(row[0]) if row else 0
