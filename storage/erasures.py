"""Erasure generations: the durable fence that keeps erased memory erased.

A session's *fence* is the sum of the generations that cover it: the user's own, the user's in
the session's server, and the user's in the session's channel. Generations only grow, so any
erasure that covers the session changes the sum. Work that began before an erasure carries the
old fence; its writes are conditioned on it in the same statement or transaction, and land
nothing once it changed. The fence lives in the database, so it holds after a restart and across
processes sharing the database.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Literal

from storage.database import Database, Transaction
from storage.models import SessionKey

Scope = Literal["user", "guild", "channel"]

# The fence of one (user, guild, channel) as an SQL expression; parameters: fence_params().
FENCE_SQL = (
    "(SELECT COALESCE(SUM(generation), 0) FROM user_erasures WHERE user_id = ?"
    " AND (scope = 'user' OR (scope = 'guild' AND scope_id = ?)"
    " OR (scope = 'channel' AND scope_id = ?)))"
)

# The fence of background work on the row of `sessions` in the enclosing query (no parameters):
# the erasure fence plus the session's revision, which every edit or deletion of one of its
# messages advances. A summary or facts read before either must not land.
SESSION_FENCE_SQL = (
    "(sessions.revision + (SELECT COALESCE(SUM(e.generation), 0) FROM user_erasures e"
    " WHERE e.user_id = sessions.user_id AND (e.scope = 'user'"
    " OR (e.scope = 'guild' AND e.scope_id = COALESCE(sessions.guild_id, 0))"
    " OR (e.scope = 'channel' AND e.scope_id = sessions.channel_id))))"
)


class ErasedMeanwhile(Exception):
    """A write of a user's memory was refused: the user's memory was erased since it began."""


def fence_params(key: SessionKey) -> tuple[int, int, int]:
    # DMs have no server: guild scope 0 is never bumped (admins erase in real servers only).
    return (key.user_id, key.guild_id or 0, key.channel_id)


def erasure_lock(user_id: int) -> str:
    """The lock an erasure of the user holds exclusively, and fenced writers that may create
    rows hold shared: under READ COMMITTED a writer's fence check and its insert of a new
    session could otherwise both miss an erasure committing between them (write skew)."""
    return f"erasure:{user_id}"


async def bump(tx: Transaction, user_id: int, scope: Scope, scope_id: int = 0) -> None:
    """Advance a generation, in the erasure's own transaction (before its deletions), and
    record when (what the channel context, kept outside the database, is checked against)."""
    await tx.lock_key(erasure_lock(user_id))
    await tx.execute(
        "INSERT INTO user_erasures (user_id, scope, scope_id, generation, erased_at)"
        " VALUES (?, ?, ?, 1, ?) ON CONFLICT (user_id, scope, scope_id)"
        " DO UPDATE SET generation = user_erasures.generation + 1,"
        " erased_at = excluded.erased_at",
        (user_id, scope, scope_id, time.time()),
    )


async def fence_in(tx: Transaction, key: SessionKey) -> int:
    row = await tx.fetch_one(f"SELECT {FENCE_SQL}", fence_params(key))
    assert row is not None
    return int(row[0])


class ErasureRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def fence(self, key: SessionKey) -> int:
        """The session's current fence: read it when work for the session begins."""
        row = await self._db.fetch_one(f"SELECT {FENCE_SQL}", fence_params(key))
        assert row is not None
        return int(row[0])

    async def fence_and_pause(self, key: SessionKey) -> tuple[int, bool]:
        """The fence, and whether the user paused their memory (`memory_pauses`, which
        storage.guild_settings writes): what every arriving message needs, in one read."""
        row = await self._db.fetch_one(
            f"SELECT {FENCE_SQL}, EXISTS (SELECT 1 FROM memory_pauses WHERE user_id = ?)",
            (*fence_params(key), key.user_id),
        )
        assert row is not None
        return int(row[0]), bool(row[1])

    async def erased_at(
        self, guild_id: int, channel_id: int, user_ids: Sequence[int]
    ) -> dict[int, float]:
        """When each of these users' memory in this channel was last erased (everything, the
        server or the channel), for those who ever were: one statement."""
        if not user_ids:
            return {}
        ids = sorted(set(user_ids))
        marks = ", ".join("?" * len(ids))
        rows = await self._db.fetch_all(
            "SELECT user_id, MAX(erased_at) FROM user_erasures"
            f" WHERE user_id IN ({marks}) AND (scope = 'user'"
            " OR (scope = 'guild' AND scope_id = ?) OR (scope = 'channel' AND scope_id = ?))"
            " GROUP BY user_id",
            (*ids, guild_id, channel_id),
        )
        return {int(row[0]): float(row[1]) for row in rows}

    async def mark_forgotten(
        self, discord_id: int, channel_id: int, *, now: float, keep_seconds: float
    ) -> None:
        """Keep a forgotten message's id (never its text) for `keep_seconds`, so that a line
        read again from Discord stays out; older marks go in the same transaction."""
        async with self._db.transaction() as tx:
            await tx.execute(
                "DELETE FROM forgotten_messages WHERE forgotten_at < ?", (now - keep_seconds,)
            )
            await tx.execute(
                "INSERT INTO forgotten_messages (discord_id, channel_id, forgotten_at)"
                " VALUES (?, ?, ?) ON CONFLICT (discord_id) DO UPDATE SET"
                " forgotten_at = excluded.forgotten_at",
                (discord_id, channel_id, now),
            )

    async def forgotten(self, channel_id: int, discord_ids: Sequence[int]) -> set[int]:
        """Which of these messages of the channel were forgotten ("Forget this"): one statement."""
        if not discord_ids:
            return set()
        ids = sorted(set(discord_ids))
        marks = ", ".join("?" * len(ids))
        rows = await self._db.fetch_all(
            "SELECT discord_id FROM forgotten_messages"
            f" WHERE channel_id = ? AND discord_id IN ({marks})",
            (channel_id, *ids),
        )
        return {int(row[0]) for row in rows}
