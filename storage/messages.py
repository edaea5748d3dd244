"""Messages and the sessions they belong to."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from storage.database import Database, Row
from storage.models import Role, Session, SessionKey, SessionStats, StoredMessage

_MESSAGE_COLUMNS = (
    "id, session_id, discord_id, guild_id, channel_id, user_id, role, content, tokens, created_at"
)
_SESSION_COLUMNS = (
    "id, guild_id, channel_id, user_id, summary, summary_tokens, summary_updated_at,"
    " summarized_through, facts_through"
)

# A message into its (channel, user) session; ignored when its Discord id is already stored.
# (SQLite needs the WHERE before ON CONFLICT in INSERT … SELECT; PostgreSQL takes it as is.)
INSERT_INTO_SESSION = (
    "INSERT INTO messages (session_id, discord_id, guild_id, channel_id, user_id,"
    " role, content, tokens, created_at)"
    " SELECT id, ?, ?, ?, ?, ?, ?, ?, ? FROM sessions WHERE channel_id = ? AND user_id = ?"
    " ON CONFLICT DO NOTHING RETURNING id, session_id"
)


class MessageRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(
        self,
        key: SessionKey,
        *,
        role: Role,
        content: str,
        tokens: int,
        discord_id: int | None,
        now: float,
    ) -> StoredMessage | None:
        """Store a message, creating its session on first use.

        Returns None when a message with this Discord id is already stored (a redelivered
        gateway event), so the caller answers each message once.
        """
        values = (discord_id, key.guild_id, key.channel_id, key.user_id, role, content, tokens, now)
        # Fast path, one statement: the session usually exists already.
        row = await self._db.write_one(INSERT_INTO_SESSION, (*values, key.channel_id, key.user_id))
        if row is None:
            row = await self._add_with_new_session(key, values, now)
        if row is None:
            return None
        return StoredMessage(row["id"], row["session_id"], *values)

    async def _add_with_new_session(
        self, key: SessionKey, values: tuple[object, ...], now: float
    ) -> Row | None:
        async with self._db.transaction() as tx:
            await tx.execute(
                "INSERT INTO sessions (guild_id, channel_id, user_id, created_at)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (channel_id, user_id) DO NOTHING",
                (key.guild_id, key.channel_id, key.user_id, now),
            )
            return await tx.fetch_one(INSERT_INTO_SESSION, (*values, key.channel_id, key.user_id))

    async def newest(
        self, session_id: int, *, after_id: int, before_id: int | None = None, limit: int = 64
    ) -> list[StoredMessage]:
        """Up to `limit` messages with after_id < id < before_id, newest first (on the index)."""
        upper = before_id if before_id is not None else 2**63 - 1
        rows = await self._db.fetch_all(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE session_id = ? AND id > ? AND id < ?"
            " ORDER BY id DESC LIMIT ?",
            (session_id, after_id, upper, limit),
        )
        return [_message(row) for row in rows]

    async def oldest(
        self, session_id: int, *, after_id: int, limit: int, role: Role | None = None
    ) -> list[StoredMessage]:
        """Up to `limit` messages after `after_id`, oldest first (optionally of one role)."""
        role_clause = "AND role = ?" if role else ""
        params: tuple[object, ...] = (session_id, after_id, *((role,) if role else ()), limit)
        rows = await self._db.fetch_all(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE session_id = ? AND id > ?"
            f" {role_clause} ORDER BY id LIMIT ?",
            params,
        )
        return [_message(row) for row in rows]

    async def by_ids(self, ids: Sequence[int]) -> list[StoredMessage]:
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        rows = await self._db.fetch_all(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE id IN ({marks}) ORDER BY id", ids
        )
        return [_message(row) for row in rows]

    async def stats(self, session: Session) -> SessionStats:
        row = await self._db.fetch_one(
            "SELECT COUNT(*) AS total,"
            " COALESCE(SUM(CASE WHEN id > ?1 THEN 1 ELSE 0 END), 0) AS unsummarized,"
            " COALESCE(SUM(CASE WHEN id > ?1 THEN tokens ELSE 0 END), 0) AS tokens,"
            " COALESCE(SUM(CASE WHEN id > ?2 AND role = 'user' THEN 1 ELSE 0 END), 0) AS unread"
            " FROM messages WHERE session_id = ?3",
            (session.summarized_through, session.facts_through, session.id),
        )
        assert row is not None
        return SessionStats(row["total"], row["unsummarized"], row["tokens"], row["unread"])

    async def pending(self, session: Session) -> tuple[int, int]:
        """(unsummarized tokens, user messages not yet read for facts), scanning only the
        range past the older watermark, on the (session_id, id) index."""
        older = min(session.summarized_through, session.facts_through)
        row = await self._db.fetch_one(
            "SELECT COALESCE(SUM(CASE WHEN id > ?1 THEN tokens ELSE 0 END), 0),"
            " COALESCE(SUM(CASE WHEN id > ?2 AND role = 'user' THEN 1 ELSE 0 END), 0)"
            " FROM messages WHERE session_id = ?3 AND id > ?4",
            (session.summarized_through, session.facts_through, session.id, older),
        )
        assert row is not None
        return int(row[0]), int(row[1])

    async def edit(self, discord_id: int, content: str, tokens: int) -> StoredMessage | None:
        """Replace a stored user message's text after the user edited it in Discord."""
        async with self._db.transaction() as tx:
            changed = await tx.execute(
                "UPDATE messages SET content = ?, tokens = ?"
                " WHERE discord_id = ? AND role = 'user'",
                (content, tokens, discord_id),
            )
            if not changed:
                return None
            row = await tx.fetch_one(
                f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE discord_id = ?", (discord_id,)
            )
        return _message(row) if row else None

    async def delete_by_discord_id(self, discord_id: int) -> MessageDeletion | None:
        """Delete a message the user deleted in Discord, with what was derived from it alone.

        In one transaction: the row, every fact whose only source it was, and the session's
        summary if it covered the message (reset, to be rebuilt from what remains).
        """
        # Most deletions in a server are of messages never stored: answer those with a read.
        if (
            await self._db.fetch_one("SELECT 1 FROM messages WHERE discord_id = ?", (discord_id,))
            is None
        ):
            return None
        async with self._db.transaction() as tx:
            found = await tx.fetch_one(
                "SELECT session_id FROM messages WHERE discord_id = ?", (discord_id,)
            )
            if found is None:
                return None
            # A summary or extraction of this session landing between our read and our
            # writes would keep the text: hold the session (see save_summary).
            await tx.lock_row("sessions", found["session_id"])
            row = await tx.fetch_one(
                "SELECT m.id, m.session_id, m.id <= s.summarized_through AS summarized"
                " FROM messages m JOIN sessions s ON s.id = m.session_id WHERE m.discord_id = ?",
                (discord_id,),
            )
            if row is None:
                return None
            facts = await tx.execute(
                "DELETE FROM facts WHERE id IN"
                " (SELECT fact_id FROM fact_sources WHERE message_id = ?1)"
                " AND NOT EXISTS (SELECT 1 FROM fact_sources other WHERE other.fact_id = facts.id"
                " AND other.message_id != ?1)",
                (row["id"],),
            )
            await tx.execute("DELETE FROM messages WHERE id = ?", (row["id"],))
            if row["summarized"]:
                await tx.execute(
                    "UPDATE sessions SET summary = '', summary_tokens = 0,"
                    " summary_updated_at = NULL, summarized_through = 0 WHERE id = ?",
                    (row["session_id"],),
                )
        await self._db.checkpoint()
        return MessageDeletion(row["session_id"], bool(row["summarized"]), facts)

    async def delete_expired(self, older_than: float) -> int:
        """Retention: delete raw messages older than the cutoff that a summary already holds;
        never one that is not yet summarized."""
        async with self._db.transaction() as tx:
            deleted = await tx.execute(
                "DELETE FROM messages WHERE created_at < ? AND id <= (SELECT summarized_through"
                " FROM sessions WHERE sessions.id = messages.session_id)",
                (older_than,),
            )
        if deleted:
            await self._db.checkpoint()
        return deleted


@dataclass(frozen=True, slots=True)
class MessageDeletion:
    session_id: int
    summary_reset: bool
    facts_deleted: int


class SessionRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, session_id: int) -> Session | None:
        row = await self._db.fetch_one(
            f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE id = ?", (session_id,)
        )
        return _session(row) if row else None

    async def find(self, channel_id: int, user_id: int) -> Session | None:
        row = await self._db.fetch_one(
            f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE channel_id = ? AND user_id = ?",
            (channel_id, user_id),
        )
        return _session(row) if row else None

    async def all_ids(self) -> list[int]:
        rows = await self._db.fetch_all("SELECT id FROM sessions ORDER BY id")
        return [row["id"] for row in rows]

    async def lagging(self, summary_trigger_tokens: int) -> list[tuple[int, bool, bool]]:
        """Sessions whose background work lags: (id, summary due, facts unread)."""
        unsummarized = "SUM(CASE WHEN m.id > s.summarized_through THEN m.tokens ELSE 0 END)"
        unread = "SUM(CASE WHEN m.id > s.facts_through AND m.role = 'user' THEN 1 ELSE 0 END)"
        rows = await self._db.fetch_all(
            f"SELECT s.id, {unsummarized} AS unsummarized, {unread} AS unread"
            " FROM sessions s JOIN messages m ON m.session_id = s.id"
            " AND m.id > CASE WHEN s.summarized_through < s.facts_through"
            " THEN s.summarized_through ELSE s.facts_through END"
            # PostgreSQL allows no select alias in HAVING: the expressions again.
            f" GROUP BY s.id HAVING {unsummarized} > ? OR {unread} > 0",
            (summary_trigger_tokens,),
        )
        return [
            (row["id"], row["unsummarized"] > summary_trigger_tokens, row["unread"] > 0)
            for row in rows
        ]

    async def save_summary(
        self,
        session_id: int,
        *,
        expected_through: int,
        new_through: int,
        summary: str,
        tokens: int,
        now: float,
    ) -> bool:
        """Replace the summary and move its watermark in one transaction.

        Only lands if the watermark is still where the job read it (compare-and-set), and
        only while the folded messages still exist: a session cleared meanwhile gets nothing.
        """
        async with self._db.transaction() as tx:
            # Held until commit, so a deletion of a folded message (which holds it too)
            # runs wholly before this check or wholly after this write.
            await tx.lock_row("sessions", session_id)
            still_there = await tx.fetch_one(
                "SELECT 1 FROM messages WHERE session_id = ? AND id = ?", (session_id, new_through)
            )
            if still_there is None:
                return False
            changed = await tx.execute(
                "UPDATE sessions SET summary = ?, summary_tokens = ?, summary_updated_at = ?,"
                " summarized_through = ? WHERE id = ? AND summarized_through = ?",
                (summary, tokens, now, new_through, session_id, expected_through),
            )
        return changed == 1


def _message(row: Row) -> StoredMessage:
    # Positional: _MESSAGE_COLUMNS lists the fields in StoredMessage's order, and building
    # 64 records by column name is measurable on the reply path.
    return StoredMessage(*row)


def _session(row: Row) -> Session:
    return Session(
        row["id"],
        row["guild_id"],
        row["channel_id"],
        row["user_id"],
        row["summary"],
        row["summary_tokens"],
        row["summary_updated_at"],
        row["summarized_through"],
        row["facts_through"],
    )
